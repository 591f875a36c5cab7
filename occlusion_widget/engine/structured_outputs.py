"""Segmenters and detectors in every method: target objects (or None) -> one ``output=`` callable.

A classifier's targets are class indices and its score a softmax or logit. A segmenter (torchvision's dict
``{"out": (N, C, H, W)}`` or a bare (N, C, H, W) tensor) or a detector (a list of dicts with ``boxes``,
``labels``, ``scores``) has no score per class: :mod:`.targets` defines *target objects* that read one
number from such an output. :func:`resolve_structured` looks at the model's output on the unoccluded input
and, when the targets are target objects (or None with such an output), builds the one callable
(:func:`~.targets.targets_output`) that scores ALL targets from the same forward passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import cast

import numpy as np

from .targets import SegmentationTarget, Target, TargetsOutput, default_targets, targets_output
from .targets_adapters import output_kind

__all__ = ["StructuredTargets", "TARGET_HINT", "check_min_score", "is_target_objects", "resolve_structured"]

#: What to pass for a segmenter or a detector, for error messages.
TARGET_HINT = ("for a segmenter pass targets=[SegmentationTarget(label, region)], for a detector "
               "targets=[DetectionTarget(box, label)] (occlusion_widget.engine.targets), or targets=None to "
               "explain everything the model finds")


def is_target_objects(targets: object) -> bool:
    """True for a :class:`Target` or a non-empty list / tuple of them."""
    if isinstance(targets, Target):
        return True
    return isinstance(targets, (list, tuple)) and bool(targets) and all(isinstance(t, Target) for t in targets)


def check_min_score(min_score: object) -> float:
    """``min_score`` as a float, or a ValueError naming it."""
    if isinstance(min_score, bool) or not isinstance(min_score, Real) or not math.isfinite(min_score):
        raise ValueError(f"min_score={min_score!r} is not allowed; use a finite number (detections with a score "
                         ">= min_score are explained when targets=None)")
    return float(min_score)


@dataclass
class StructuredTargets:
    """The targets of a segmenter or detector, resolved on the unoccluded input.

    Attributes
    ----------
    output : TargetsOutput
        ``f(raw_output) -> (N, K)``: every target's score, prepared on the unoccluded output.
    targets : list of Target
    labels : list of str
        The maps' names: each target's name, with ``"class {label}"`` replaced by the category name.
    kind : "segmentation" or "detection"
    """

    output: TargetsOutput
    targets: list[Target]
    labels: list[str]
    kind: str

    @property
    def indices(self) -> np.ndarray:
        """(K,) int64: the column of each target in ``output``'s scores, 0..K-1."""
        return np.arange(len(self.targets), dtype=np.int64)


def _kind(raw: object) -> str | None:
    try:
        return output_kind(raw)
    except TypeError:
        return None


def _label(target: Target, categories: Sequence[str] | None) -> str:
    """A target's name, "class 15 ..." -> "person ..." where the category is known."""
    default = f"class {getattr(target, 'label', '')}"
    label = getattr(target, "label", -1)
    if categories is not None and target.name.startswith(default) and 0 <= label < len(categories):
        return categories[label] + target.name[len(default):]
    return target.name


def resolve_structured(raw: object, targets: object, output: object, top_k: int | None, min_score: float,
                       categories: Sequence[str] | None = None, *, layer: str | None = None,
                       method: str = "occlusion_sensitivity") -> StructuredTargets | None:
    """Target objects (or None with a segmenter's or detector's output) -> one scoring callable.

    Parameters
    ----------
    raw : the model's raw output on ONE unoccluded input
    targets : None, int(s), a Target or a list of them
    output : "probability", "logit" or callable
        A string is used as the default segmentation targets' score (softmax or raw class score);
        a callable means the caller scores the output itself (no target objects allowed then).
    top_k : int, optional
        With ``targets=None``: at most this many targets.
    min_score : float
        With ``targets=None`` and a detector: explain detections with ``score >= min_score``.
    categories : sequence of str, optional
        Class names by index (the wrapper's labels), for the maps' names.
    layer : str, optional
        ``layer=`` of the sweep: target objects cannot be combined with it.
    method : str
        The public function, for error messages.

    Returns
    -------
    StructuredTargets or None
        None: the classifier path (int targets, or None with a classifier's (N, classes) output).

    Raises
    ------
    TypeError
        Target objects for a model whose output is neither a segmentation nor a detection output,
        or targets of the other kind.
    ValueError
        Target objects with ``top_k``, ``layer`` or a callable ``output``; a detector that finds
        nothing with ``score >= min_score``.
    """
    objects = is_target_objects(targets)
    if not objects and targets is not None:
        return None  # int targets: the classifier path (which refuses dict / list outputs clearly)
    if objects and layer is not None:
        raise ValueError(f"{method}: layer= and SegmentationTarget / DetectionTarget targets: give one of them")
    if objects and callable(output):
        raise ValueError(f"{method}: output= a callable and SegmentationTarget / DetectionTarget targets: give one "
                         "of them (the targets define the score)")
    if layer is not None or callable(output):
        return None
    kind = _kind(raw)
    if objects:
        if top_k is not None:
            raise ValueError("targets and top_k: give one of them, not both")
        chosen = [targets] if isinstance(targets, Target) else list(cast(Iterable[Target], targets))
        if kind is None:
            raise TypeError(f"{method}: targets={chosen[0]!r} needs a segmenter's output ((N, C, H, W) class scores "
                            "or a dict with 'out') or a detector's (a list of dicts with 'boxes', 'labels', "
                            "'scores'); this model returned something else. Use int targets for a classifier, or "
                            "targets_output(targets, adapter=...) as output= for another output form")
        wrong = [t for t in chosen if t.kind != kind]
        if wrong:
            raise TypeError(f"{method}: targets={wrong[0]!r} is a {wrong[0].kind} target, but the model's output is a "
                            f"{kind} output; use {'SegmentationTarget' if kind == 'segmentation' else 'DetectionTarget'}")
    else:
        if kind is None:
            return None
        min_score = check_min_score(min_score)
        chosen = default_targets(raw, kind, min_score, top_k)
        if kind == "segmentation" and output in ("probability", "logit"):
            for t in chosen:  # fresh objects: the method's score kind applies to its default targets
                cast(SegmentationTarget, t).output = output
        if not chosen:
            raise ValueError(f"{method}: targets=None and the detector finds nothing with score >= "
                             f"min_score={min_score}; lower min_score or pass targets=[DetectionTarget(box, label)]")
    scorer = targets_output(chosen).prepare(raw)
    labels = [_label(t, categories) for t in chosen]
    scorer.labels = labels
    return StructuredTargets(scorer, chosen, labels, kind)

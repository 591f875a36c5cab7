"""Deletion and insertion curves (Petsiuk et al. 2018, RISE): does the map rank
pixels the way the network uses them?"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ..engine.grid import resolve_pair
from ..engine.inputs import Output, resolve_fill
from ..engine.structured_outputs import is_target_objects
from ..engine.sweep import DEFAULT_BATCH
from .common import (
    check_callbacks,
    check_cancel,
    check_class_index,
    check_positive_int,
    map_for,
    prepared,
    scorer,
    structured_targets,
)


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Deletion and insertion curves of one map for one target.

    Attributes
    ----------
    fractions : float64 (S + 1,)
        Fraction of pixels removed (deletion) or revealed (insertion): 0, 1/S, ..., 1.
    deletion_scores : float32 (S + 1,)
        Target score with the top ``fractions[i]`` of pixels replaced by the fill.
        Starts at the score of the input, ends at that of the fill image.
    insertion_scores : float32 (S + 1,)
        Target score of the fill image with the top ``fractions[i]`` of pixels
        restored. Starts at the fill image's score, ends at the input's.
    deletion_auc : float
        Area under the deletion curve (trapezoid rule over [0, 1]): lower is better.
    insertion_auc : float
        Area under the insertion curve: higher is better.
    target : int
    output : str
        The score recorded (``"probability"`` by default).
    n_pixels : (S + 1,) int
        Pixels removed / revealed at each step: ``round(fractions * H * W)``.
    """

    fractions: np.ndarray
    deletion_scores: np.ndarray
    insertion_scores: np.ndarray
    deletion_auc: float
    insertion_auc: float
    target: int
    output: str
    n_pixels: np.ndarray = field(repr=False)

    @property
    def difference(self) -> float:
        """``insertion_auc - deletion_auc``: one number, higher is better."""
        return self.insertion_auc - self.deletion_auc


def auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Trapezoid-rule area under ``scores`` over ``fractions``."""
    f, s = np.asarray(fractions, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    return float(np.sum((s[1:] + s[:-1]) * np.diff(f)) / 2)


def deletion_insertion(
    model,
    image: object,
    saliency_map: np.ndarray | torch.Tensor,
    target: int,
    *,
    steps: int = 20,
    mask_value: float | str | object = "auto",
    mask_size: int | tuple[int, int] | str = "auto",
    output: Output = "probability",
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    progress: Callable[[int, int, None], None] | None = None,
    cancel: threading.Event | None = None,
) -> FaithfulnessCurve:
    """Score a map by deleting (or inserting) pixels in its order of importance.

    Pixels are ranked by ``saliency_map``, highest first; ties keep raster
    order (a stable sort), so a constant map deletes top-left to bottom-right.
    At step i the top ``round(i / steps * H * W)`` pixels are replaced, in
    every channel, by the fill (deletion) or restored onto the fill
    (insertion). The ``2 * steps`` distinct images (the input and the fill
    image are shared by both curves) go through the network in batches.

    Parameters
    ----------
    model : ImageClassifier or nn.Module
    image : tensor (C, H, W) or anything the wrapper's ``preprocess`` takes
    saliency_map : (H, W) array or tensor
        Any importance map at the input's size (``maps[k]`` of a result), higher
        = more important. (L,) for a 1-D signal. Must be finite.
    target : int, or a SegmentationTarget / DetectionTarget
        The class whose score is recorded; for a segmenter or a detector, the target
        object whose score is (``curve.target`` is then 0).
    steps : int
        Curve points minus one.
    mask_value : "auto", float, per-channel sequence or "blur"
        What a removed pixel becomes, as in :func:`occlusion_sensitivity`
        ("auto": each channel's mean; "blur": a blurred copy of the input).
    mask_size : "auto", int or (h, w)
        Only used by ``mask_value="blur"`` (sigma = half of it, as in the engine).
    output : "probability", "logit" or callable
        The score recorded; the class probability by default.
    batch_size : int, optional
        Images per forward pass (default 32 on CPU, 256 on CUDA).
    progress : callable(done, total, None), optional
        Called after each batch with the images scored so far (of ``2 * steps``).
    cancel : threading.Event, optional
        Checked between batches; when set, raises :class:`Cancelled`.

    Returns
    -------
    FaithfulnessCurve
    """
    return _deletion_insertion(model, image, saliency_map, target, steps=steps, mask_value=mask_value,
                               mask_size=mask_size, output=output, batch_size=batch_size, device=device,
                               progress=progress, cancel=cancel, method="deletion_insertion")


def _deletion_insertion(model, image, saliency_map, target, *, steps, mask_value, mask_size, output, batch_size,
                        device, progress, cancel, method: str) -> FaithfulnessCurve:
    """:func:`deletion_insertion`; ``method`` names the public function in error messages."""
    target_object = target if is_target_objects(target) else None
    if target_object is not None:
        if isinstance(target_object, (list, tuple)) and len(target_object) != 1:
            raise ValueError(f"target: give ONE target object (a curve scores one target), got {len(target_object)}")
        target = 0
    target = check_class_index(target)
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size", allow_none=True)
    check_callbacks(progress, cancel)
    with prepared(model, image, device, cancel) as p, torch.no_grad():
        x = p.x
        spatial = tuple(x.shape[1:])
        smap = torch.as_tensor(np.asarray(saliency_map.detach().cpu() if isinstance(saliency_map, torch.Tensor)
                                          else saliency_map, dtype=np.float64))
        if p.is_signal and smap.ndim == 1:
            smap = smap[None]
        if tuple(smap.shape) != spatial:
            raise ValueError(f"saliency_map: shape {tuple(smap.shape)} does not match the input's {spatial}; "
                             "pass maps[k] (at the input size), not the raw grid")
        if not torch.isfinite(smap).all():
            raise ValueError("saliency_map: holds NaN or infinite values (an incomplete result?)")
        fill, _ = resolve_fill(mask_value, x, resolve_pair(mask_size, "mask_size", spatial, 0.2))
        if target_object is not None:  # one output= callable scoring it, prepared on the input
            output, _, _ = structured_targets(p, target_object, None, output, 0.5, method)
        score, output_name = scorer(p.module, output, p.is_signal, method)
        n_classes = None

        n = smap.numel()
        order = torch.from_numpy(np.argsort(-smap.flatten().numpy(), kind="stable"))
        rank = torch.empty(n, dtype=torch.long)
        rank[order] = torch.arange(n)
        rank = rank.view(spatial).to(p.device)
        fractions = np.linspace(0.0, 1.0, steps + 1)
        counts = np.rint(fractions * n).astype(np.int64)
        # Deletion of k pixels and insertion of n - k pixels differ, except at the
        # ends: deleting none = inserting all (the input), deleting all = inserting
        # none (the fill). Each distinct image is scored once.
        wanted = [(int(c), True) for c in counts] + [(int(c), False) for c in counts]
        canonical = [(0, True) if (not d and c == n) else (n, True) if (not d and c == 0) else (c, d) for c, d in wanted]
        plan = list(dict.fromkeys(canonical))
        batch = batch_size or DEFAULT_BATCH.get(p.device.type, 32)
        channels_last = any(isinstance(m, torch.nn.Conv2d) for m in p.module.modules()) and not p.is_signal
        scored = np.zeros(len(plan), dtype=np.float32)
        for start in range(0, len(plan), batch):
            check_cancel(cancel)
            chunk = plan[start : start + batch]
            k = torch.tensor([c for c, _ in chunk], device=p.device)
            deleting = torch.tensor([d for _, d in chunk], device=p.device)
            chosen = rank[None] < k[:, None, None]  # (B, H, W): the top-k pixels
            use_fill = (chosen == deleting[:, None, None])[:, None]  # deletion: chosen -> fill; insertion: the rest
            images = torch.where(use_fill, fill[None], x[None])
            if channels_last:  # 1.3-1.6x faster convolutions on CPU, as in the engine
                images = images.contiguous(memory_format=torch.channels_last)
            scores = score(images)
            if n_classes is None:
                n_classes = scores.shape[1]
                if not 0 <= int(target) < n_classes:
                    raise ValueError(f"target={target!r} outside [0, {n_classes}); the output has {n_classes} classes")
            scored[start : start + len(chunk)] = scores[:, int(target)].float().cpu().numpy()
            if progress is not None:
                progress(min(start + batch, len(plan)), len(plan), None)
        index = {key: i for i, key in enumerate(plan)}
        values = scored[[index[key] for key in canonical]]
    deletion, insertion = values[: steps + 1], values[steps + 1 :]
    return FaithfulnessCurve(
        fractions=fractions, deletion_scores=deletion.copy(), insertion_scores=insertion.copy(),
        deletion_auc=auc(fractions, deletion), insertion_auc=auc(fractions, insertion),
        target=int(target), output=output_name, n_pixels=counts,
    )


#: The options of :func:`deletion_insertion` that :func:`faithfulness_table` passes on.
CURVE_OPTIONS = ("steps", "mask_value", "mask_size", "output", "batch_size", "device")


@dataclass(frozen=True)
class FaithfulnessTable:
    """Deletion / insertion AUCs of several maps of one image and target.

    ``curves`` maps a method name to its :class:`FaithfulnessCurve`, in the
    order given. Shown as a markdown table in Jupyter; ``str()`` gives plain text.
    """

    curves: dict[str, FaithfulnessCurve]
    target: int
    label: str | None = None

    def rows(self) -> list[tuple[str, float, float, float]]:
        """(method, deletion AUC, insertion AUC, insertion - deletion) per method."""
        return [(name, c.deletion_auc, c.insertion_auc, c.difference) for name, c in self.curves.items()]

    def best(self) -> dict[str, str]:
        """The method with the lowest deletion AUC and the one with the highest insertion AUC."""
        rows = self.rows()
        return {"deletion": min(rows, key=lambda r: r[1])[0], "insertion": max(rows, key=lambda r: r[2])[0]}

    def to_markdown(self) -> str:
        head = "| method | deletion AUC (lower is better) | insertion AUC (higher is better) | insertion - deletion |"
        lines = [head, "|---|---:|---:|---:|"]
        lines += [f"| {m} | {d:.3f} | {i:.3f} | {diff:+.3f} |" for m, d, i, diff in self.rows()]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        what = self.label if self.label else f"class {self.target}"
        return f"**Faithfulness for {what}**\n\n" + self.to_markdown()

    def __str__(self) -> str:
        width = max([len("method")] + [len(m) for m in self.curves])
        lines = [f"{'method':<{width}}  deletion  insertion  ins-del"]
        lines += [f"{m:<{width}}  {d:8.3f}  {i:9.3f}  {diff:+7.3f}" for m, d, i, diff in self.rows()]
        return "\n".join(lines)


def faithfulness_table(
    model,
    image: object,
    maps: Mapping[str, object],
    target: int,
    *,
    label: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
    **kwargs,
) -> FaithfulnessTable:
    """Deletion and insertion curves for several maps of one image.

    Parameters
    ----------
    model, image, target
        As for :func:`deletion_insertion`.
    maps : mapping of name -> (H, W) array, OcclusionResult or AttributionResult
        A result contributes its map for ``target`` (it must be one of its targets).
    label : str, optional
        The class name, for display.
    progress : callable(done, total, name), optional
        Called after each map with the name just scored.
    cancel : threading.Event, optional
        Checked between batches; when set, raises :class:`Cancelled`.
    **kwargs
        ``steps``, ``mask_value``, ``mask_size``, ``output``, ``batch_size``,
        ``device``: passed to :func:`deletion_insertion`.
    """
    check_callbacks(progress, cancel)
    target = check_class_index(target)
    unknown = sorted(set(kwargs) - set(CURVE_OPTIONS))
    if unknown:
        raise TypeError(f"faithfulness_table: unexpected keyword arguments {unknown}; the curves take "
                        f"{', '.join(CURVE_OPTIONS)}")
    defaults = inspect.signature(deletion_insertion).parameters
    options = {name: kwargs.get(name, defaults[name].default) for name in CURVE_OPTIONS}
    curves: dict[str, FaithfulnessCurve] = {}
    for i, (name, value) in enumerate(maps.items()):
        smap = value if isinstance(value, (np.ndarray, torch.Tensor)) else map_for(value, target)
        curves[name] = _deletion_insertion(model, image, smap, target, cancel=cancel, progress=None,
                                           method="faithfulness_table", **options)
        if progress is not None:
            progress(i + 1, len(maps), name)
    return FaithfulnessTable(curves, int(target), label)

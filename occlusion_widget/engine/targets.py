"""Targets for segmentation and detection models: which number of the model's output a map explains.

A classifier's target is a class index. A segmenter or a detector has no single score per class, so a
*target object* says how to read one number per input from the model's output (pytorch-grad-cam style):

- :class:`SegmentationTarget`: the mean of one class's probability (or logit) over a region.
- :class:`DetectionTarget`: how well one detection survives the occlusion (D-RISE's IoU x score, or
  pytorch-grad-cam's box score).

:func:`targets_output` turns K targets into ONE ``output=`` callable for :func:`occlusion_sensitivity`, so all
K maps come from the same forward passes; :func:`default_targets` picks every detection or every predicted
class; :func:`explain_targets` does both and names the maps. Model outputs are read through *adapters*
(:func:`adapt_output`): torchvision segmenters (a dict with ``"out"``), torchvision detectors (a list of dicts
with ``boxes``/``labels``/``scores``), or any function from the raw output to one of those two forms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from .targets_adapters import Detections, adapt_output, output_kind

__all__ = [
    "Detections", "DetectionTarget", "SegmentationTarget", "Target", "TargetsOutput",
    "adapt_output", "default_targets", "explain_targets", "targets_output",
]

Box = Sequence[float] | np.ndarray | torch.Tensor
Adapter = Callable[[object], object]


def _check_box(box: Box, name: str) -> torch.Tensor:
    """A float64 (4,) tensor (x0, y0, x1, y1) with x0 < x1 and y0 < y1, or a ValueError naming ``name``."""
    try:
        t = torch.as_tensor(np.asarray(box if not isinstance(box, torch.Tensor) else box.detach().cpu(),
                                       dtype=np.float64)).flatten()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}={box!r} is not allowed; use (x0, y0, x1, y1) in input pixels") from exc
    if t.numel() != 4 or not torch.isfinite(t).all() or not (t[0] < t[2] and t[1] < t[3]):
        raise ValueError(f"{name}={box!r} is not allowed; use 4 finite numbers (x0, y0, x1, y1) in input "
                         "pixels with x0 < x1 and y0 < y1 (torchvision's box order)")
    return t


class Target:
    """What every target shares: ``prepare`` once on the unoccluded output, then ``__call__`` on any batch.

    Subclasses set ``kind`` ("segmentation" or "detection") and ``name`` (the map's label).
    ``__call__`` takes the model's output for N inputs, raw (a torchvision output) or already adapted
    (``(N, C, H, W)`` class scores or a list of N :class:`Detections`), and returns (N,) scores.
    """

    kind: str = ""
    name: str = ""

    @property
    def prepared(self) -> bool:
        """False while the target still needs the unoccluded output (``prepare``)."""
        return True

    def prepare(self, base_output: object) -> Target:
        """Read what the target needs from the unoccluded output (a batch of one); returns self."""
        return self

    def __call__(self, output: object) -> torch.Tensor:
        raise NotImplementedError


class SegmentationTarget(Target):
    """The mean, over a region, of class ``label``'s probability (softmax over classes) or logit.

    Parameters
    ----------
    label : int
        The class (channel of the segmenter's (N, C, H, W) output).
    region : "predicted", bool array (H, W), box (x0, y0, x1, y1) or None
        "predicted": the pixels the model assigns to ``label`` (argmax over classes) on the unoccluded
        input, fixed by :meth:`prepare`; a bool mask at input size; a box in input pixels (pixel (r, c)
        is inside when x0 <= c < x1 and y0 <= r < y1, after rounding the edges); None: the whole image.
    output : "probability" or "logit"
        Score each pixel by the softmax over the C classes, or by the raw class score.
    name : str, optional
        The map's label (default "class {label}").

    Notes
    -----
    torchvision segmenters return scores at input size. For a model whose output is smaller (h, w),
    a bool mask is averaged down to (h, w) (each output pixel weighted by the fraction of it inside
    the mask) and a box is scaled by (h/H, w/W) when ``image_size=(H, W)`` is given; without it a box
    is taken in output pixels.
    """

    kind = "segmentation"
    label: int
    output: str
    region: str | None  # "predicted", "mask", "box" or None (the whole output)
    image_size: tuple[int, int] | None

    def __init__(self, label: int, region: object = "predicted", *, output: str = "probability",
                 name: str | None = None, image_size: tuple[int, int] | None = None) -> None:
        if isinstance(label, bool) or not isinstance(label, (Integral, np.integer)) or label < 0:
            raise ValueError(f"label={label!r} is not allowed; use a class index, an int >= 0")
        if output not in ("probability", "logit"):
            raise ValueError(f"output={output!r} is not allowed; use 'probability' or 'logit'")
        self.label, self.output = int(label), output
        self.name = name or f"class {self.label}"
        self.image_size = image_size
        self._box: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None  # bool (H, W): a given mask, or the predicted region
        if isinstance(region, str):
            if region != "predicted":
                raise ValueError(f"region={region!r} is not allowed; use 'predicted', a bool mask (H, W), "
                                 "a box (x0, y0, x1, y1) or None")
            self.region = "predicted"
        elif region is None:
            self.region = None
        else:
            arr = region.detach().cpu().numpy() if isinstance(region, torch.Tensor) else np.asarray(region)
            if arr.dtype == bool:
                if arr.ndim != 2:
                    raise ValueError(f"region: a bool mask must be (H, W), got shape {arr.shape}")
                if not arr.any():
                    raise ValueError("region: the bool mask is all False; the mean over no pixel is undefined")
                self.region, self._mask = "mask", torch.from_numpy(arr.copy())
            else:
                self.region, self._box = "box", _check_box(region, "region")

    @property
    def prepared(self) -> bool:
        return self.region != "predicted" or self._mask is not None

    def prepare(self, base_output: object) -> SegmentationTarget:
        """Fix the predicted region: pixels whose argmax over classes is ``label`` on the unoccluded input.

        Raises ``ValueError`` when the model assigns no pixel to ``label`` (the mean would be undefined).
        """
        if self.region != "predicted":
            return self
        scores = self._scores(base_output)
        if scores.shape[0] != 1:
            raise ValueError(f"SegmentationTarget.prepare: expected the output of ONE unoccluded input, "
                             f"got a batch of {scores.shape[0]}")
        mask = (scores[0].argmax(dim=0) == self.label).cpu()
        if not mask.any():
            raise ValueError(f"SegmentationTarget(label={self.label}, region='predicted'): the model assigns "
                             f"no pixel to class {self.label} on the unoccluded input; use region=None, a bool "
                             "mask or a box instead")
        self._mask = mask
        return self

    def _scores(self, output: object) -> torch.Tensor:
        scores = adapt_output(output, "segmentation")
        if not 0 <= self.label < scores.shape[1]:
            raise ValueError(f"SegmentationTarget: label={self.label} outside [0, {scores.shape[1]}); "
                             f"the model outputs {scores.shape[1]} classes")
        return scores

    def weights(self, size: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
        """The region as float weights (h, w) at the output's size, summing to 1."""
        h, w = size
        if self.region is None:
            weights = torch.ones(h, w)
        elif self.region == "box":
            assert self._box is not None  # set with region "box"
            box = self._box.clone()
            if self.image_size is not None:
                box = box * torch.tensor([w / self.image_size[1], h / self.image_size[0]] * 2, dtype=box.dtype)
            x0, y0, x1, y1 = (int(v) for v in box.round().tolist())
            weights = torch.zeros(h, w)
            weights[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
        else:
            if self._mask is None:
                raise RuntimeError("SegmentationTarget(region='predicted') is not prepared: call "
                                   "target.prepare(model(image)) first, or use targets_output()")
            weights = self._mask.float()
            if tuple(weights.shape) != (h, w):  # a mask at input size, output smaller (or larger)
                weights = F.interpolate(weights[None, None], size=(h, w), mode="area" if h <= weights.shape[0]
                                        else "nearest")[0, 0]
        total = weights.sum()
        if total <= 0:
            raise ValueError(f"SegmentationTarget(label={self.label}): the region holds no pixel of the "
                             f"({h}, {w}) output (a box outside the image?)")
        return (weights / total).to(device)

    def __call__(self, output: object) -> torch.Tensor:
        """(N,) the region's mean probability (or logit) of ``label``, for the N inputs of ``output``."""
        scores = self._scores(output).float()
        per_pixel = scores.softmax(dim=1)[:, self.label] if self.output == "probability" else scores[:, self.label]
        return (per_pixel * self.weights((scores.shape[2], scores.shape[3]), scores.device)).sum(dim=(1, 2))

    def __repr__(self) -> str:
        shown: dict[str | None, object] = {"mask": "<mask>", "box": None}
        region = shown.get(self.region, self.region)
        if self.region == "box":
            assert self._box is not None  # set with region "box"
            region = tuple(round(v, 1) for v in self._box.tolist())
        return f"SegmentationTarget(label={self.label}, region={region!r}, output={self.output!r})"


class DetectionTarget(Target):
    """How well the detection ``(box, label)`` survives: a score from the detections of each input.

    Parameters
    ----------
    box : (x0, y0, x1, y1)
        The detection to explain, in input pixels (torchvision's order), usually one the model found on
        the unoccluded input.
    label : int
        Its class.
    iou_threshold : float in [0, 1]
        How much a detection must overlap ``box`` to count as the same object.
    score : "drise" or "box_score"
        ``"drise"`` (default; the idea of D-RISE, Petsiuk et al., CVPR 2021, in the form a torchvision
        detector allows, which reports only its top class's score): over the detections d of an input
        with ``d.label == label`` and ``IoU(d.box, box) >= iou_threshold``, the largest
        ``IoU(d.box, box) * d.score``; 0 when none qualifies. On the unoccluded input this is the
        detection's own score (IoU 1). It lies in [0, 1] and falls when occlusion moves, shrinks or
        drops the detection. (D-RISE proper multiplies IoU by an objectness and the cosine similarity of
        the class-probability vectors, which torchvision's post-processed output does not expose.)
        ``"box_score"`` (pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` for one box): take the detection
        d with the largest IoU with ``box`` among ALL detections, whatever their label; the score is
        ``IoU(d.box, box) + d.score`` when that IoU is strictly above ``iou_threshold`` and
        ``d.label == label``, else 0. It lies in [0, 2]; a better-overlapping detection of another class
        zeroes it.
    name : str, optional
        The map's label (default "class {label} (x0, y0, x1, y1)").
    """

    kind = "detection"
    SCORES = ("drise", "box_score")
    box: torch.Tensor
    label: int
    iou_threshold: float
    score: str

    def __init__(self, box: Box, label: int, iou_threshold: float = 0.5, score: str = "drise",
                 *, name: str | None = None) -> None:
        self.box = _check_box(box, "box").float()
        if isinstance(label, bool) or not isinstance(label, (Integral, np.integer)):
            raise ValueError(f"label={label!r} is not allowed; use the detection's class index, an int")
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, Real) or not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold={iou_threshold!r} is not allowed; use a number in [0, 1]")
        if score not in self.SCORES:
            raise ValueError(f"score={score!r} is not allowed; use 'drise' or 'box_score'")
        self.label, self.iou_threshold, self.score = int(label), float(iou_threshold), score
        self.name = name or f"class {self.label} {tuple(int(round(v)) for v in self.box.tolist())}"

    def __call__(self, output: object) -> torch.Tensor:
        """(N,) this target's score on each of the N inputs' detections."""
        return detection_scores([self], adapt_output(output, "detection"))[:, 0]

    def __repr__(self) -> str:
        return (f"DetectionTarget(box={tuple(round(v, 1) for v in self.box.tolist())}, label={self.label}, "
                f"iou_threshold={self.iou_threshold}, score={self.score!r})")


def detection_scores(targets: Sequence[DetectionTarget], detections: Sequence[Detections]) -> torch.Tensor:
    """(N, K) scores of K detection targets on N inputs' detections, one IoU matrix per input."""
    device = detections[0].boxes.device if detections else torch.device("cpu")
    boxes = torch.stack([t.box for t in targets]).to(device)                       # (K, 4)
    labels = torch.tensor([t.label for t in targets], device=device)               # (K,)
    thr = torch.tensor([t.iou_threshold for t in targets], device=device)          # (K,)
    drise = torch.tensor([t.score == "drise" for t in targets], device=device)     # (K,)
    rows = []
    for det in detections:
        if det.boxes.shape[0] == 0:
            rows.append(torch.zeros(len(targets), device=device))
            continue
        iou = box_iou(boxes, det.boxes.float().to(device))                         # (K, D)
        same = labels[:, None] == det.labels.to(device)[None, :]                   # (K, D)
        scores = det.scores.float().to(device)[None, :]
        # D-RISE: max IoU * score over same-label detections with IoU >= threshold.
        ok = same & (iou >= thr[:, None])
        d_rise = torch.where(ok, iou * scores, torch.zeros_like(iou)).amax(dim=1)
        # box_score: the best-IoU detection of any label; IoU + score if IoU > thr and its label matches.
        best_iou, best = iou.max(dim=1)
        hit = (best_iou > thr) & same.gather(1, best[:, None])[:, 0]
        box_score = torch.where(hit, best_iou + scores[0, best], torch.zeros_like(best_iou))
        rows.append(torch.where(drise, d_rise, box_score))
    return torch.stack(rows)


class TargetsOutput:
    """An ``output=`` callable scoring K targets on the same forward passes: raw output -> (N, K).

    Targets that still need the unoccluded output (``SegmentationTarget(region="predicted")``) are
    prepared on the FIRST call, which must be a batch of one: :func:`occlusion_sensitivity` always scores
    the unoccluded input first. Call :meth:`prepare` yourself to fix them from another output; a
    ``TargetsOutput`` built for one image should not be reused for another (build a new one, as
    :func:`explain_targets` does).

    Attributes
    ----------
    targets : list of Target
    labels : list of str
        Each target's ``name``, for the result's labels.
    """

    def __init__(self, targets: Sequence[Target] | Target, adapter: Adapter | None = None) -> None:
        if isinstance(targets, Target):
            targets = [targets]
        targets = list(targets) if isinstance(targets, (list, tuple)) else targets
        if not isinstance(targets, list) or not targets:
            raise ValueError("targets: give a non-empty list of SegmentationTarget / DetectionTarget objects")
        bad = [t for t in targets if not isinstance(t, Target)]
        if bad:
            raise TypeError(f"targets: {bad[0]!r} is not a target; use SegmentationTarget or DetectionTarget")
        kinds = {t.kind for t in targets}
        if len(kinds) != 1:
            raise ValueError("targets: mix of segmentation and detection targets; one model output cannot be both")
        if adapter is not None and not callable(adapter):
            raise TypeError(f"adapter={adapter!r} is not allowed; use None or a function of the model's output")
        self.targets, self.adapter, self.kind = targets, adapter, kinds.pop()
        self.labels = [t.name for t in targets]
        self.__name__ = f"{len(targets)} {self.kind} target{'s' * (len(targets) != 1)}"

    def _adapt(self, raw: object) -> torch.Tensor | list[Detections]:
        return adapt_output(self.adapter(raw) if self.adapter is not None else raw, self.kind)

    def prepare(self, base_output: object) -> TargetsOutput:
        """Prepare every unprepared target from the raw output of the unoccluded input; returns self."""
        adapted = self._adapt(base_output)
        for t in self.targets:
            if not t.prepared:
                t.prepare(adapted)
        return self

    def __call__(self, raw: object) -> torch.Tensor:
        adapted = self._adapt(raw)
        if not all(t.prepared for t in self.targets):
            n = adapted.shape[0] if isinstance(adapted, torch.Tensor) else len(adapted)
            if n != 1:
                raise ValueError("targets_output: a target needs the unoccluded output first (region="
                                 f"'predicted'), but the first call scored a batch of {n}; call .prepare(model(image))")
            for t in self.targets:
                if not t.prepared:
                    t.prepare(adapted)
        if self.kind == "detection":
            # kind "detection": every target is a DetectionTarget and ``adapted`` a list of Detections
            dets = cast("list[DetectionTarget]", self.targets)
            return detection_scores(dets, cast("list[Detections]", adapted))  # one IoU matrix per input for all K
        return torch.stack([t(adapted) for t in self.targets], dim=1)


def targets_output(targets: Sequence[Target] | Target, adapter: Adapter | None = None) -> TargetsOutput:
    """One ``output=`` callable that scores ALL ``targets`` from the same forward passes.

    ``occlusion_sensitivity(model, image, output=targets_output(ts), targets=list(range(len(ts))))`` gives
    one map per target from a single sweep.

    Parameters
    ----------
    targets : sequence of SegmentationTarget or DetectionTarget (one kind)
    adapter : callable, optional
        Maps the model's raw output to what the targets read: (N, C, H, W) class scores, or one
        detection set per input (a list of N dicts with ``boxes`` (D, 4) xyxy, ``labels`` (D,),
        ``scores`` (D,), or of N tuples ``(boxes, labels, scores)``). None: torchvision outputs
        (a dict with ``"out"``, a tensor (N, C, H, W), or a list of detection dicts) are read as they are.

    Returns
    -------
    TargetsOutput
        ``f(raw_output) -> (N, K)`` float scores; ``f.labels`` names the K maps.
    """
    return TargetsOutput(targets, adapter)


@dataclass
class _Found:
    score: float
    target: Target


def default_targets(model_output: object, kind: str = "auto", min_score: float = 0.5, top_k: int | None = None,
                    *, categories: Sequence[str] | None = None, adapter: Adapter | None = None,
                    iou_threshold: float = 0.5, score: str = "drise") -> list[Target]:
    """Targets for everything the model found on the unoccluded input.

    Parameters
    ----------
    model_output : the raw output of the model on ONE input
    kind : "auto", "detection" or "segmentation"
    min_score : float
        Detection: keep detections with ``score >= min_score``. Ignored for segmentation.
    top_k : int, optional
        At most this many targets.
    categories : sequence of str, optional
        Class names by index (e.g. ``weights.meta["categories"]``) for the targets' names.
    adapter, iou_threshold, score
        As in :func:`targets_output` and :class:`DetectionTarget`.

    Returns
    -------
    list of Target
        Detection: one :class:`DetectionTarget` per detection, best score first. Segmentation: one
        prepared ``SegmentationTarget(label, "predicted")`` per class present in the argmax prediction,
        largest area first (class 0, usually background, included when present).
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 1):
        raise ValueError(f"top_k={top_k!r} is not allowed; use None or a positive int")
    if isinstance(min_score, bool) or not isinstance(min_score, Real):
        raise ValueError(f"min_score={min_score!r} is not allowed; use a number")
    raw = adapter(model_output) if adapter is not None else model_output
    if kind == "auto":
        kind = output_kind(raw)
    if kind not in ("detection", "segmentation"):
        raise ValueError(f"kind={kind!r} is not allowed; use 'auto', 'detection' or 'segmentation'")
    adapted = adapt_output(raw, kind)
    n = adapted.shape[0] if isinstance(adapted, torch.Tensor) else len(adapted)
    if n != 1:
        raise ValueError(f"model_output: expected the output for ONE input, got a batch of {n}")

    def cat(label: int) -> str:
        return categories[label] if categories is not None and 0 <= label < len(categories) else f"class {label}"

    found: list[_Found] = []
    if kind == "detection":
        det = adapted[0]
        for b, lab, s in zip(det.boxes.tolist(), det.labels.tolist(), det.scores.tolist(), strict=True):
            if s >= min_score:
                name = f"{cat(int(lab))} {s:.2f} ({', '.join(str(int(round(v))) for v in b)})"
                found.append(_Found(s, DetectionTarget(b, int(lab), iou_threshold, score, name=name)))
    else:
        pred = adapted[0].argmax(dim=0)
        counts = torch.bincount(pred.flatten(), minlength=adapted.shape[1])
        for lab in torch.nonzero(counts).flatten().tolist():
            frac = float(counts[lab]) / pred.numel()
            t = SegmentationTarget(lab, "predicted", name=f"{cat(lab)} ({100 * frac:.0f}% of pixels)")
            found.append(_Found(frac, t.prepare(adapted)))
    found.sort(key=lambda f: -f.score)  # stable: equal scores keep the model's order
    return [f.target for f in found[:top_k]]


def explain_targets(model: nn.Module, image: torch.Tensor, targets: Sequence[Target] | None = None, *,
                    kind: str = "auto", adapter: Adapter | None = None, min_score: float = 0.5,
                    top_k: int | None = None, categories: Sequence[str] | None = None, **sweep: Any):
    """Occlusion maps of every target (default: everything the model finds) from ONE sweep.

    Parameters
    ----------
    model : nn.Module
        A segmenter or a detector taking a (B, C, H, W) batch (wrap a torchvision detector in
        :class:`DetectorModule` to bound its memory).
    image : tensor (C, H, W)
        In the model's input space ([0, 1] pixels for torchvision detectors and segmenters' own transforms).
    targets : sequence of Target, optional
        None: :func:`default_targets` of the model's output on ``image`` (``kind``, ``min_score``,
        ``top_k``, ``categories``).
    **sweep
        Passed to :func:`occlusion_sensitivity` (mask_size, stride, batch_size, ...).

    Returns
    -------
    OcclusionResult
        ``maps`` (K, H, W): the drop of each target's score; ``labels``: the targets' names;
        ``base_scores``: their scores on the unoccluded input. ``extra`` is untouched.
    """
    from dataclasses import replace

    from .model_state import prepared_module
    from .sweep import occlusion_sensitivity

    if "output" in sweep or "top_k" in sweep:
        raise ValueError("explain_targets: output= and top_k= are set from the targets; pass targets= instead")
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise TypeError("image: expected a tensor (C, H, W) in the model's input space")
    if targets is None:
        module = prepared_module(model, image.device)
        with torch.inference_mode():
            base = module(image[None])
        targets = default_targets(base, kind, min_score, top_k, categories=categories, adapter=adapter)
        if not targets:
            raise ValueError(f"explain_targets: the model finds nothing to explain on this image "
                             f"(no detection with score >= min_score={min_score})")
    out = targets_output(targets, adapter)
    result = occlusion_sensitivity(model, image, list(range(len(out.targets))), output=out, **sweep)
    try:
        return replace(result, labels=list(out.labels))
    except TypeError:  # a result type without a labels field
        return result

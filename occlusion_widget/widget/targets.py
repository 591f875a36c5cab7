"""Segmenters and detectors in the widget: what the model outputs on the clean image, and targets as data.

The widget keeps its targets as JSON *specs* (synced with the browser, cache keys that equal themselves)
and builds fresh :class:`~occlusion_widget.engine.targets.SegmentationTarget` /
:class:`~occlusion_widget.engine.targets.DetectionTarget` objects from them for every computation (a
``region="predicted"`` target is prepared on the image it is computed for, so objects are not reused).

Specs
-----
- ``{"kind": "segmentation", "label": int, "region": "predicted" | None | [x0, y0, x1, y1]}``
- ``{"kind": "detection", "box": [x0, y0, x1, y1], "label": int, "score": float}`` (``score``: the detection's
  confidence on the clean image, for its name; optional ``iou_threshold`` and ``rule`` ("drise", "box_score")).

Nothing here runs threads; :func:`inspect_output` runs one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..engine.model_state import prepared_module
from ..engine.targets import DetectionTarget, SegmentationTarget, Target
from ..engine.targets_adapters import adapt_output, output_kind

KINDS = ("classification", "segmentation", "detection")

#: Legend colours of segmentation classes (RGB), by class index modulo its length; class 0 is drawn clear.
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
           (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195), (128, 128, 0), (0, 0, 128)]


def category(label: int, categories: Sequence[str] | None) -> str:
    """The class name of ``label`` (``"class {label}"`` without categories)."""
    return categories[label] if categories is not None and 0 <= label < len(categories) else f"class {label}"


def colour(label: int) -> list[int]:
    """The legend colour (RGB) of a segmentation class."""
    return list(PALETTE[0]) if label == 0 else list(PALETTE[1 + (label - 1) % (len(PALETTE) - 1)])


@dataclass
class Structure:
    """What a model outputs on the clean image, as the widget shows it.

    Attributes
    ----------
    kind : "classification", "segmentation" or "detection"
    detections : list of dict
        Detection: every detection ``{"box": [x0, y0, x1, y1], "label", "score", "name"}``, best first.
    mask : uint8 (H, W) or None
        Segmentation: the predicted class per pixel (argmax over classes).
    legend : list of dict
        Segmentation: one ``{"id", "name", "color": [r, g, b], "fraction"}`` per predicted class, largest first.
    """

    kind: str = "classification"
    detections: list[dict] = field(default_factory=list)
    mask: np.ndarray | None = None
    legend: list[dict] = field(default_factory=list)
    error: str = ""  # the model raised on the clean image: the sweep reports it; inspected again on recompute


def _detections(raw: object, categories: Sequence[str] | None) -> list[dict]:
    det = adapt_output(raw, "detection")[0]
    out: list[dict[str, Any]] = []
    for box, label, score in zip(det.boxes.tolist(), det.labels.tolist(), det.scores.tolist(), strict=True):
        out.append({"box": [float(v) for v in box], "label": int(label), "score": float(score),
                    "name": f"{category(int(label), categories)} {score:.2f}"})
    out.sort(key=lambda d: -d["score"])
    return out


def _segmentation(raw: object, categories: Sequence[str] | None) -> tuple[np.ndarray, list[dict]]:
    scores = adapt_output(raw, "segmentation")
    pred = scores[0].argmax(dim=0).cpu().numpy()
    if scores.shape[1] > 256:
        raise ValueError(f"the segmenter outputs {scores.shape[1]} classes; the widget shows at most 256")
    counts = np.bincount(pred.ravel(), minlength=scores.shape[1])
    legend = [{"id": int(c), "name": category(int(c), categories), "color": colour(int(c)),
               "fraction": float(counts[c] / pred.size)} for c in np.argsort(-counts, kind="stable") if counts[c]]
    return pred.astype(np.uint8), legend


def describe_output(raw: object, categories: Sequence[str] | None = None) -> Structure:
    """The :class:`Structure` of one input's raw model output (a classifier's: kind only)."""
    try:
        kind = output_kind(raw)
    except TypeError:
        return Structure()
    if kind == "detection":
        return Structure(kind, detections=_detections(raw, categories))
    mask, legend = _segmentation(raw, categories)
    return Structure(kind, mask=mask, legend=legend)


def inspect_output(module: torch.nn.Module, x: torch.Tensor, categories: Sequence[str] | None = None) -> Structure:
    """Run ``module`` once on ``x`` (C, H, W) (eval mode, through ``prepared_module``) and describe its output."""
    with torch.inference_mode():
        raw = prepared_module(module, x.device)(x[None])
    return describe_output(raw, categories)


def default_specs(structure: Structure, top_k: int, min_score: float) -> list[dict]:
    """The engine's default targets as specs: detections with ``score >= min_score``, best first, or each
    predicted class, largest area first; at most ``top_k``."""
    if structure.kind == "detection":
        found = [d for d in structure.detections if d["score"] >= min_score]
        return [{"kind": "detection", "box": d["box"], "label": d["label"], "score": d["score"]} for d in found[:top_k]]
    if structure.kind == "segmentation":
        return [{"kind": "segmentation", "label": e["id"], "region": "predicted"} for e in structure.legend[:top_k]]
    return []


def index_specs(structure: Structure, targets: Sequence[int]) -> list[dict]:
    """``targets`` (ints) of a segmenter (class labels, their predicted regions) or a detector (indices into
    ``structure.detections``) as specs; a ValueError names a bad one."""
    if structure.kind == "segmentation":
        return [{"kind": "segmentation", "label": int(t), "region": "predicted"} for t in targets]
    n = len(structure.detections)
    bad = [t for t in targets if not 0 <= t < n]
    if bad:
        raise ValueError(f"targets={list(targets)}: for a detector, targets are indices into the widget's "
                         f"detections (0..{n - 1}); {bad[0]} is not one")
    return [spec_of_detection(structure.detections[t]) for t in targets]


def spec_of_detection(d: dict) -> dict:
    return {"kind": "detection", "box": list(d["box"]), "label": int(d["label"]), "score": float(d["score"])}


def spec_of(target: Target) -> dict:
    """A target object as a spec; a ValueError for what the widget cannot show (a bool mask region)."""
    if isinstance(target, DetectionTarget):
        return {"kind": "detection", "box": target.box.tolist(), "label": target.label,
                "iou_threshold": target.iou_threshold, "rule": target.score}
    if isinstance(target, SegmentationTarget):
        if target.region == "mask":
            raise ValueError(f"targets: {target!r} has a bool mask region; the widget takes region='predicted', "
                             "None or a box (x0, y0, x1, y1); call occlusion_sensitivity for mask regions")
        if target.region == "box":
            assert target._box is not None, "a box region keeps its box"
            region: list | str | None = target._box.tolist()
        else:
            region = target.region
        return {"kind": "segmentation", "label": target.label, "region": region}
    raise TypeError(f"targets: {target!r} is not a SegmentationTarget or DetectionTarget")


def check_spec(spec: Any, kind: str) -> dict:
    """``spec`` if it is a well-formed spec of ``kind``, else a ValueError naming what is wrong."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("segmentation", "detection"):
        raise ValueError(f"target_objects: {spec!r} is not a target; use {{'kind': 'segmentation', 'label', "
                         "'region'}} or {'kind': 'detection', 'box', 'label'}")
    if spec["kind"] != kind:
        raise ValueError(f"target_objects: a {spec['kind']} target, but the model is a "
                         f"{kind if kind != 'classification' else 'classifier'}")
    build(spec, "probability")  # the target's own checks (label, box) name the bad value
    return spec


def target_name(spec: dict, categories: Sequence[str] | None) -> str:
    """A tab's name: the class name (a region box appended), or "label score" for a detection."""
    name = category(int(spec["label"]), categories)
    if spec["kind"] == "detection":
        if spec.get("score") is not None:
            return f"{name} {float(spec['score']):.2f}"
        return f"{name} ({', '.join(str(int(round(v))) for v in spec['box'])})"
    region = spec.get("region", "predicted")
    if isinstance(region, (list, tuple)):
        return f"{name} in ({', '.join(str(int(round(v))) for v in region)})"
    return name if region == "predicted" else f"{name} (whole image)"


def build(spec: dict, output: str, categories: Sequence[str] | None = None) -> Target:
    """A fresh target object from ``spec``; ``output`` ("probability" or "logit") scores a segment."""
    name = target_name(spec, categories)
    if spec["kind"] == "detection":
        return DetectionTarget(spec["box"], spec["label"], spec.get("iou_threshold", 0.5), spec.get("rule", "drise"),
                               name=name)
    region = spec.get("region", "predicted")
    return SegmentationTarget(spec["label"], tuple(region) if isinstance(region, list) else region,
                              output=output if output in ("probability", "logit") else "probability", name=name)


def build_all(specs: Sequence[dict], output: str, categories: Sequence[str] | None = None) -> list[Target]:
    return [build(dict(s), output, categories) for s in specs]


__all__ = ["KINDS", "PALETTE", "Structure", "build", "build_all", "category", "check_spec", "default_specs",
           "describe_output", "index_specs", "inspect_output", "spec_of", "spec_of_detection", "target_name"]

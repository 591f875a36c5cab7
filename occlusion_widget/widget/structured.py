"""The widget's side of segmenters and detectors: synced state of the model's clean output, targets from
clicks and dragged regions (the same trait changes the browser makes), and the mask preview of their
outputs. Pure functions of the widget's traits and its :class:`~.targets.Structure`; the maths is the
engine's (:mod:`occlusion_widget.engine.targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine.targets import Target
from . import params as _params
from .targets import Structure, inspect_output, spec_of, spec_of_detection


def structure_traits(structure: Structure) -> dict[str, Any]:
    """The synced ``output_kind``, ``detections`` and ``segmentation`` of a model's clean output."""
    segmentation: dict[str, Any] = {}
    if structure.mask is not None:
        segmentation = {"data": structure.mask.tobytes(), "shape": list(structure.mask.shape),
                        "legend": structure.legend}
    return {"output_kind": structure.kind, "detections": list(structure.detections), "segmentation": segmentation}


def inspect(source: Any) -> Structure:
    """The :class:`Structure` of ``source``'s model on its image (one forward pass). A model that raises
    gets a classifier's structure with ``error`` set (the sweep then shows the model's error)."""
    try:
        return inspect_output(source.classifier.module, source.x, source.classifier.labels)
    except Exception as exc:  # noqa: BLE001 - a user's model may raise anything; the sweep reports it
        return Structure(error=f"{type(exc).__name__}: {exc}")


def refresh(widget: Any) -> None:
    """Inspect the widget's model on its image again and publish ``output_kind``, ``detections``, ``segmentation``."""
    structure = widget._structure = inspect(widget._source)
    for name, value in structure_traits(structure).items():
        setattr(widget, name, value)


def split_targets(targets: Any) -> tuple[list[int] | None, list[dict] | None]:
    """The constructor's ``targets``: class indices (``targets``) or target objects (``target_objects``)."""
    if targets is None:
        return None, None
    items: list[Any] = [targets] if isinstance(targets, Target) else list(targets)  # user-supplied values
    if items and all(isinstance(t, Target) for t in items):
        return None, [spec_of(t) for t in items]
    if any(isinstance(t, Target) for t in items):
        raise TypeError("targets: a mix of target objects and class indices; give one kind")
    return [int(t) for t in items], None


def current_specs(widget: Any) -> list[dict]:
    """The targets explained now, as specs ([] for a classifier or when there is nothing to explain)."""
    try:
        return _params.target_specs(widget) or []
    except ValueError:
        return []


def _same_detection(a: dict, b: dict) -> bool:
    return a.get("kind") == "detection" and b.get("kind") == "detection" and int(a["label"]) == int(b["label"]) \
        and all(abs(float(u) - float(v)) < 1e-3 for u, v in zip(a["box"], b["box"], strict=False))


def explain_detection(widget: Any, index: int) -> int:
    """Show detection ``index`` (into ``widget.detections``): its tab is selected, or added and selected.
    Returns the tab's index. The browser makes the same trait changes when a box is clicked."""
    detections = widget.detections
    if widget.output_kind != "detection":
        raise ValueError("explain_detection: the model is not a detector")
    if not isinstance(index, int) or not 0 <= index < len(detections):
        raise ValueError(f"index={index!r} is not allowed; use 0..{len(detections) - 1} (an index into w.detections)")
    spec = spec_of_detection(detections[index])
    specs = current_specs(widget)
    for i, s in enumerate(specs):
        if _same_detection(s, spec):
            widget.selected = i
            return i
    with widget.hold_trait_notifications():
        widget.target_objects = [*specs, spec]
        widget.selected = len(specs)
    return len(specs)


def explain_region(widget: Any, box: Sequence[float], label: int | None = None) -> int:
    """Explain class ``label`` (default: the current tab's class) over ``box`` (x0, y0, x1, y1) in input
    pixels, as a new tab (selected): ``SegmentationTarget(label, region=box)``. Returns its index."""
    if widget.output_kind != "segmentation":
        raise ValueError("explain_region: the model is not a segmenter")
    specs = current_specs(widget)
    if label is None:
        if not specs:
            raise ValueError("explain_region: no current class; pass label=")
        label = int(specs[min(max(widget.selected, 0), len(specs) - 1)]["label"])
    spec = {"kind": "segmentation", "label": int(label), "region": [float(v) for v in box]}
    with widget.hold_trait_notifications():
        widget.target_objects = [*specs, spec]
        widget.selected = len(specs)
    return len(specs)


def widget_repr(widget: Any) -> str:
    """``OcclusionWidget(model=..., method=..., targets or top_k, status=..., scores or error)``."""
    if not hasattr(widget, "_source"):
        return "OcclusionWidget()"
    if widget.target_objects is not None:
        which = f"target_objects=[{len(widget.target_objects)} {widget.output_kind} targets]"
    else:
        which = f"targets={list(widget.targets)}" if widget.targets is not None else f"top_k={widget.top_k}"
    status = widget.status
    if status == "running" and not widget._controller.busy:  # nothing runs: say what is shown
        status = "done" if widget._result is not None and widget._result.complete else "idle"
    text = f"OcclusionWidget(model={widget.model_name!r}, method={widget.method!r}, {which}, status={status!r}"
    result = widget._result
    if status == "done" and result is not None:
        output = getattr(result.params, "output", "")
        names = result.labels or [f"class {int(c)}" for c in result.targets]
        shown = ", ".join(f"{name!r}: {float(score):.3g}" for name, score in zip(names, result.base_scores, strict=False))
        text += f", {output} {{{shown}}}"
    elif status == "error":
        text += f", error={widget.error!r}"
    return text + ")"


def with_targets(classes: list[dict], specs: list[dict]) -> list[dict]:
    """The synced ``classes`` with each tab's target spec (the browser matches clicked boxes to tabs)."""
    if not specs or len(specs) != len(classes):
        return classes
    return [{**c, "target": s} for c, s in zip(classes, specs, strict=True)]


__all__ = ["current_specs", "explain_detection", "explain_region", "inspect", "split_targets", "structure_traits", "widget_repr",
           "with_targets"]

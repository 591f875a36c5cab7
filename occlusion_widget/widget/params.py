"""From the widget's traits to what it computes: each method's keyword arguments, read from the
method registry (:data:`~occlusion_widget.methods.registry.METHODS`: which trait feeds which
parameter), one :class:`~occlusion_widget.widget.plan.MapRequest` per method, and the
:class:`~occlusion_widget.widget.plan.ComputePlan` of everything shown. Pure functions of the
traits: nothing here runs a model.
"""

from __future__ import annotations

from typing import Any

from ..methods.registry import METHODS, MethodSpec, get_method
from .plan import ComputePlan, MapRequest
from .runner import PreparedInput
from .targets import default_specs, index_specs
from .traits import ENGINE_PARAMS, WidgetTraits


def target_specs(traits: WidgetTraits) -> list[dict] | None:
    """A segmenter's or detector's targets as specs (see :mod:`.targets`): ``target_objects``, else
    ``targets`` (class labels of a segmenter, indices into ``detections`` of a detector), else the
    engine's defaults (``top_k``, ``min_score``); None for a classifier. A ValueError when there is
    nothing to explain or an index is bad."""
    structure = getattr(traits, "_structure", None)
    if structure is None or structure.kind == "classification":
        return None
    if traits.target_objects is not None:
        return [dict(s) for s in traits.target_objects]
    if traits.targets is not None:
        return index_specs(structure, traits.targets)
    specs = default_specs(structure, traits.top_k, traits.min_score)
    if not specs:
        raise ValueError(f"nothing to explain: the detector finds no detection with score >= "
                         f"min_score={traits.min_score}; lower min_score")
    return specs


def classes(traits: WidgetTraits) -> dict[str, Any]:
    """``{"targets": [...]}`` when classes are given, else ``{"top_k": k}``; a segmenter's or detector's
    targets as specs (built into target objects by :func:`~.plan.compute_map`)."""
    specs = target_specs(traits)
    if specs is not None:
        return {"targets": specs}
    return {"targets": list(traits.targets)} if traits.targets is not None else {"top_k": traits.top_k}


def engine_params(traits: WidgetTraits) -> dict[str, Any]:
    """The keyword arguments a sweep passes to :func:`occlusion_sensitivity` (and the preview reads)."""
    return {**{name: getattr(traits, name) for name in ENGINE_PARAMS}, **classes(traits)}


def method_params(traits: WidgetTraits, method: str) -> dict[str, Any]:
    """``method``'s keyword arguments: each registry parameter fed by a trait, the classes and the device."""
    spec = get_method(method)
    params: dict[str, Any] = {p.name: getattr(traits, p.trait) for p in spec.params if p.trait}
    for name, value in params.items():
        if spec.param(name).kind == "baseline" and isinstance(value, list):
            params[name] = tuple(value)  # one value per channel (a list would read as an input-shaped array)
    return {**params, "device": traits.device, **classes(traits)}


def _uses_layer_trait(spec: MethodSpec) -> bool:
    return any(p.trait == "layer" for p in spec.params)


def map_request(traits: WidgetTraits, method: str) -> MapRequest:
    """``method``'s maps as the widget asks for them: display parameters (``spec.display_params``,
    re-applied to a cached result) kept apart, and why it cannot be asked for, if so."""
    spec = get_method(method)
    try:
        params = method_params(traits, method)
    except ValueError as exc:  # no target to explain: shown as the map's error
        return MapRequest(method, {}, error=str(exc))
    display = {name: params.pop(name) for name in spec.display_params if name in params}
    error = None
    if traits.layer is not None and not _uses_layer_trait(spec):
        which = ", ".join(s.name for s in METHODS.values() if _uses_layer_trait(s))
        error = (f"layer={traits.layer!r} explains a layer's channels, which only {which} does; "
                 f"set layer=None for {method}")
    return MapRequest(method, params, display.get("upsampling"), error=error)


def compute_plan(traits: WidgetTraits, source: PreparedInput) -> ComputePlan:
    """Everything the widget shows for its current traits: the method's maps, the compare view
    (every registered method) and the layer view."""
    requests = {name: map_request(traits, name) for name in METHODS}
    compare: tuple[MapRequest, ...] = tuple(requests.values()) if traits.compare else ()
    if traits.compare and traits.layer is not None:  # the curves score classes, not a layer's channels
        error = f"layer={traits.layer!r}: the compare view explains classes; set layer=None"
        compare = tuple(MapRequest(name, {}, error=error) for name in METHODS)
    curve = {"steps": traits.compare_steps, "mask_value": traits.mask_value, "mask_size": traits.mask_size,
             "device": traits.device}
    layer_view = {"layer": traits.activation_layer, "strength": traits.layer_strength, "top": traits.layer_channels,
                  "device": traits.device}
    # The layer list feeds a dropdown: wanted when the method shows a layer control (Grad-CAM's) or a view is open.
    layer_control = any(p.kind == "layer" and p.trait and not p.python_only for p in get_method(traits.method).params)
    return ComputePlan(
        source, requests[traits.method], compare, traits.selected, curve,
        layer_list=layer_control or traits.compare or traits.show_layers,
        activations=layer_view if traits.show_layers else None,
    )


__all__ = ["target_specs", "classes", "compute_plan", "engine_params", "map_request", "method_params"]

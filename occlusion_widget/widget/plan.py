"""What the widget computes and shows, as data: a :class:`ComputePlan` of :class:`MapRequest`
pieces, the functions that compute one piece (:func:`compute_map`,
:func:`compute_curve`, :func:`conv_layers`), and the view states the
controller publishes (:class:`CompareState`, :class:`LayerState`).
No threads here: :class:`~occlusion_widget.widget.controller.Controller` runs the pieces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ..engine import MapResult, resolve_sizes
from ..engine.grid import MaskGrid, lattice_steps
from ..engine.inputs import resolve_device
from ..methods import (
    Cancelled,
    Comparison,
    FaithfulnessCurve,
    FaithfulnessTable,
    LayerActivations,
    default_layer,
    deletion_insertion,
    spatial_layers,
)
from ..methods.registry import get_method
from .runner import PreparedInput, ResultCache, freeze
from .targets import build, build_all

#: Bounds of the batch size the widget picks on CPU when the user gives none
#: (see :func:`responsive_batch`).
CPU_BATCH_RANGE = (8, 24)


def responsive_batch(shape: tuple[int, ...], params: dict) -> int | None:
    """A CPU batch size that puts the first full-coverage map on screen early.

    A batch is the unit of streaming and of cancellation, so the engine's 32
    (~1.1 s on 2 cores) is too coarse for a widget. The coarsest lattice
    (which the engine runs first, see ``lattice_steps``) is split into equal
    batches of at most 24, so the first map covering the whole image lands
    right after the batches that hold the lattice: for the default 11x11 grid
    its 9 positions are the first batch. None when the parameters are invalid
    (the engine reports that).
    """
    lo, hi = CPU_BATCH_RANGE
    try:
        mask, stride = resolve_sizes(shape, params.get("mask_size", "auto"), params.get("stride", "auto"))
        gy, gx = MaskGrid.build(shape, mask, stride, bool(params.get("mask_clipping", True))).shape
    except (ValueError, TypeError):
        return None
    step = lattice_steps((gy, gx))[0]
    coarse = -(-gy // step) * -(-gx // step)
    batches = -(-coarse // hi)
    return max(lo, -(-coarse // batches))

# --- what to compute ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MapRequest:
    """One method's maps for all targets.

    ``params`` are the method function's keyword arguments (``targets`` or
    ``top_k`` included); ``upsampling``, a display parameter of the method
    (``MethodSpec.display_params``), is kept apart and applied to the cached
    result, so switching it never recomputes (None: the method's own).
    ``error``: why the widget cannot ask for this map (published as the error instead).
    """

    method: str
    params: dict = field(hash=False)
    upsampling: str | None = None
    error: str | None = None

    def key(self, source: PreparedInput) -> Hashable:
        return source.key("map", self.method, freeze(self.params), self.error)

    def shown(self, result: MapResult) -> MapResult:
        """The result as displayed: with this request's upsampling, if it sets one."""
        if self.upsampling is None or result.params.upsampling == self.upsampling:
            return result
        return result.with_upsampling(self.upsampling)


@dataclass(frozen=True)
class ComputePlan:
    """Everything the widget shows now. Pieces are computed in this order: the
    main map, the layer list and activations, the other methods' maps, then
    the faithfulness curves of the compare view's class."""

    source: PreparedInput
    main: MapRequest
    compare: tuple[MapRequest, ...] = ()  # the compare view's methods (display order); () when it is closed
    selected: int = 0  # the class tab: the compare view explains targets[selected]
    curve_params: dict = field(default_factory=dict, hash=False)  # deletion_insertion keyword arguments
    layer_list: bool = False  # the layer names (Grad-CAM's and the layer view's dropdowns)
    activations: dict | None = field(default=None, hash=False)  # layer_activations keyword arguments; None: no layer view

    def map_specs(self) -> list[MapRequest]:
        specs, keys = [], set()
        for spec in (self.main, *self.compare):
            if spec.key(self.source) not in keys:
                keys.add(spec.key(self.source))
                specs.append(spec)
        return specs

    def target(self, cache: ResultCache) -> int | None:
        """The compare view's class: ``targets[selected]`` of the first map computed."""
        for spec in self.map_specs():
            result = cache.get(spec.key(self.source))
            if result is not None and len(result.targets):
                return int(result.targets[min(max(self.selected, 0), len(result.targets) - 1)])
        return None

    def curve_key(self, spec: MapRequest, target: int) -> Hashable:
        return self.source.key("curve", spec.key(self.source), spec.upsampling, target, freeze(self.curve_params))

    def pieces(self, cache: ResultCache) -> list[Piece]:
        specs = self.map_specs()
        out = [Piece("map", specs[0].key(self.source), specs[0])]
        if self.layer_list:
            out.append(Piece("layers", self.source.key("layers")))
        if self.activations is not None:
            out.append(Piece("activations", self.source.key("activations", freeze(self.activations))))
        out += [Piece("map", spec.key(self.source), spec) for spec in specs[1:]]
        target = self.target(cache) if self.compare else None
        if target is not None:
            out += [Piece("curve", self.curve_key(spec, target), (spec, target)) for spec in self.compare]
        return out


@dataclass(frozen=True)
class Piece:
    """One unit of background work: a map, the layer list, activations or a faithfulness curve."""

    kind: str  # "map", "layers", "activations" or "curve"
    key: Hashable
    spec: Any = None


def compute_map(source: PreparedInput, request: MapRequest, progress: Callable,
                cancel: threading.Event) -> MapResult | None:
    """One method's maps through its registry function; None when cancelled.

    The methods' one cancellation contract (see :class:`~occlusion_widget.engine.MapResult`):
    on ``cancel`` a method returns what it has with ``complete=False``; only complete
    results are kept (the partial map stays as last published).
    """
    if request.error:
        raise ValueError(request.error)
    spec = get_method(request.method)
    params = dict(request.params)
    if request.upsampling is not None:
        params["upsampling"] = request.upsampling
    x = source.x
    targets = params.get("targets")
    if targets and isinstance(targets[0], dict):  # a segmenter's or detector's specs: fresh target objects
        params["targets"] = build_all(targets, str(params.get("output", "probability")), source.classifier.labels)
    if spec.kind == "perturbation" and params.get("batch_size") is None \
            and resolve_device(params.get("device", "auto")).type == "cpu":
        params["batch_size"] = responsive_batch(tuple(x.shape[1:]), params)  # partial maps arrive early
    result = spec.function(source.classifier, x, progress=progress, cancel=cancel, **params)
    return result if result.complete else None


def compute_curve(source: PreparedInput, result: MapResult, target: int, params: dict,
                  cancel: threading.Event, request: MapRequest | None = None) -> FaithfulnessCurve | None:
    """Deletion and insertion curves of ``result``'s map for ``target`` (None when cancelled: the
    curves are no method and raise :class:`Cancelled`). A segmenter's or detector's ``target`` is an
    index into ``request``'s target specs."""
    if result.maps.shape[-2:] != tuple(source.x.shape[1:]):
        result = result.with_upsampling("nearest")  # occlusion with upsampling "none": one cell per position
    scored: Any = target
    specs = (request.params.get("targets") if request is not None else None) or []
    if specs and isinstance(specs[0], dict):
        scored = build(dict(specs[target]), "probability", source.classifier.labels)
    try:
        return deletion_insertion(source.classifier, source.x, result.map_of(target), scored, cancel=cancel, **params)
    except Cancelled:
        return None


@dataclass(frozen=True)
class LayerList:
    """The layers offered in the dropdowns: (name, (C, h, w), module type) in forward order."""

    layers: list[tuple[str, tuple[int, ...], str]]
    default: str


def conv_layers(source: PreparedInput) -> LayerList:
    """The convolutions among :func:`spatial_layers`, and the default layer (Grad-CAM's)."""
    default = default_layer(source.classifier, source.x)
    modules = dict(source.classifier.module.named_modules())
    return LayerList([(name, shape, type(modules[name]).__name__) for name, shape in spatial_layers(source.classifier, source.x)
                      if isinstance(modules[name], nn.Conv2d) or name == default], default)


# --- what the views show -------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One method in the compare view. Statuses: pending, running, done, error or stopped."""

    method: str
    result: MapResult | None
    curve: FaithfulnessCurve | None
    status: str
    curve_status: str
    error: str = ""


@dataclass(frozen=True)
class CompareState:
    target: int | None
    label: str | None
    panels: tuple[Panel, ...]

    @property
    def complete(self) -> bool:
        return all(p.status == "done" and p.curve_status == "done" for p in self.panels)

    def comparison(self, image: np.ndarray) -> Comparison | None:
        """As :func:`occlusion_widget.methods.compare_methods` returns it, once everything is done."""
        if not self.complete or self.target is None:
            return None
        curves: dict[str, FaithfulnessCurve] = {}
        results: dict[str, MapResult] = {}
        for p in self.panels:
            assert p.curve is not None and p.result is not None, "complete: every panel and curve is done"
            curves[p.method], results[p.method] = p.curve, p.result
        probability = float(next(iter(curves.values())).deletion_scores[0])  # the input's probability
        return Comparison(self.target, self.label, probability, results,
                          FaithfulnessTable(curves, self.target, self.label), image, {})


@dataclass(frozen=True)
class LayerState:
    layers: LayerList | None
    activations: LayerActivations | None
    status: str
    error: str = ""




__all__ = [
    "CPU_BATCH_RANGE",
    "CompareState",
    "ComputePlan",
    "LayerList",
    "LayerState",
    "MapRequest",
    "Panel",
    "Piece",
    "compute_curve",
    "compute_map",
    "conv_layers",
    "responsive_batch",
]

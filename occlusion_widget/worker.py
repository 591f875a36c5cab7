"""Background computation for the widget: maps, the method comparison and the layer view,
off the kernel's thread (mask previews: :mod:`.preview`).

Data flows one way: the widget describes what it shows as a :class:`Plan` (the
current method's maps; optionally the four methods side by side with their
deletion / insertion AUCs, and a layer's activations) and hands it to a
:class:`Controller`. The controller computes the plan's missing *pieces* one
after another in ONE background thread (a :class:`LatestRunner`), caches them
and hands them to a *sink* (the widget), which turns them into synced state.
Nothing here knows about traitlets; nothing in the widget does maths: pieces
call the engine and :mod:`occlusion_widget.methods`.

Guarantees
----------
* Latest wins: a new plan cancels the piece in flight (the engine and the
  gradient methods stop within one batch) unless that piece is the one the new
  plan needs next, so e.g. a class tab clicked in the compare view does not
  restart the sweep it is waiting for.
* Stale results are never published: a publication checks, under one lock,
  that its piece belongs to the current plan; once :meth:`Controller.request`
  returns, nothing computed for an older plan is shown.
* Partial maps (occlusion, SmoothGrad) are throttled (at most one every
  ``min_interval`` seconds), except the first occlusion map that covers the
  whole input, and the final one.
* Finished pieces are cached (LRU) by model, image digest, method and
  parameters; a plan whose main map is cached is published at once, on the
  caller's thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Protocol, Union

import numpy as np
import torch
from torch import nn

from .engine import occlusion_sensitivity
from .engine.grid import MaskGrid, lattice_steps, resolve_pair
from .engine.inputs import prepare_input, resolve_device
from .engine.result import OcclusionResult
from .methods import (
    AttributionResult, Cancelled, Comparison, FaithfulnessCurve, FaithfulnessTable, LayerActivations,
    default_layer, deletion_insertion, grad_cam, layer_activations, saliency, smoothgrad, spatial_layers,
)
from .methods.common import map_for
from .methods.compare import METHODS
from .models import ImageClassifier, as_classifier

log = logging.getLogger(__name__)

MapResult = Union[OcclusionResult, AttributionResult]

#: Bounds of the batch size the widget picks on CPU when the user gives none
#: (see :func:`responsive_batch`).
CPU_BATCH_RANGE = (8, 24)

#: The longest a sweep waits at one batch boundary while mask previews run (seconds).
MAX_PREVIEW_PAUSE = 3.0

#: Methods whose partial maps are worth showing (SmoothGrad's running mean; a half-done
#: Grad-CAM or saliency is just some targets' maps, and takes well under a second anyway).
STREAMING = ("occlusion", "smoothgrad")


def responsive_batch(shape: tuple[int, int], params: dict) -> int | None:
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
        mask = resolve_pair(params.get("mask_size", "auto"), "mask_size", shape, 0.2)
        stride = resolve_pair(params.get("stride", "auto"), "stride", shape, 0.1)
        gy, gx = MaskGrid.build(shape, mask, stride, bool(params.get("mask_clipping", True))).shape
    except (ValueError, TypeError):
        return None
    step = lattice_steps((gy, gx))[0]
    coarse = -(-gy // step) * -(-gx // step)
    batches = -(-coarse // hi)
    return max(lo, -(-coarse // batches))


class Sink(Protocol):
    """What the controller calls to publish (the widget implements it), always under its lock.

    The ``on_*`` map calls concern the plan's main map; ``on_views`` gets the
    comparison and layer view states, rebuilt from the cache whenever a piece
    starts or ends (None where the plan has no such view).
    """

    def on_started(self) -> None: ...
    def on_partial(self, result: MapResult | None, done: int, total: int) -> None: ...
    def on_finished(self, result: MapResult, cached: bool) -> None: ...
    def on_failed(self, message: str) -> None: ...
    def on_cancelled(self) -> None: ...
    def on_views(self, compare: "CompareState | None", layers: "LayerState | None") -> None: ...


class LatestRunner:
    """One daemon thread that runs the most recently submitted job.

    ``submit`` replaces any job still waiting and (unless ``cancel_running`` is
    False) sets the cancel event of the job that is running; ``fn(job, cancel)``
    should return soon after that.
    """

    def __init__(self, fn: Callable[[Any, threading.Event], None], name: str):
        self._fn, self._name = fn, name
        self._cond = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._cancel: threading.Event | None = None
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, job: Any, cancel_running: bool = True) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending, self._has_pending = job, True
            if self._cancel is not None and cancel_running:
                self._cancel.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def cancel(self) -> None:
        """Drop the waiting job and cancel the running one."""
        with self._cond:
            self._pending, self._has_pending = None, False
            if self._cancel is not None:
                self._cancel.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is running or waiting; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy or self._has_pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy or self._has_pending

    def close(self, timeout: float = 0.0) -> None:
        """Cancel everything and end the thread (waiting up to ``timeout`` s for the running job)."""
        with self._cond:
            self._closed = True
            self._pending, self._has_pending = None, False
            if self._cancel is not None:
                self._cancel.set()
            self._cond.notify_all()
            thread = self._thread
        if timeout and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._has_pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job, self._pending, self._has_pending = self._pending, None, False
                cancel = self._cancel = threading.Event()
                self._busy = True
            try:
                self._fn(job, cancel)
            except Exception:  # noqa: BLE001 - a worker thread must survive anything
                log.exception("%s: job failed", self._name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class Throttle:
    """At most one event per ``min_interval`` seconds, unless forced."""

    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic):
        self.min_interval, self._clock, self._last = min_interval, clock, -float("inf")

    def ready(self, force: bool = False) -> bool:
        now = self._clock()
        if force or now - self._last >= self.min_interval:
            self._last = now
            return True
        return False


class ResultCache:
    """A small LRU of finished pieces (maps, curves, layer lists, activations)."""

    def __init__(self, maxsize: int = 48):
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def freeze(value: object) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, torch.device):
        return str(value)
    return value  # type: ignore[return-value]


@dataclass
class Source:
    """The model and the input as the network sees it, prepared once."""

    classifier: ImageClassifier
    x: torch.Tensor  # (C, H, W)
    digest: str

    @classmethod
    def prepare(cls, model: object, image: object) -> "Source":
        classifier = as_classifier(model)  # type: ignore[arg-type]
        x, is_signal = prepare_input(classifier, image)
        if is_signal:
            raise ValueError("image: the widget shows images (C, H, W); for a 1-D signal call occlusion_sensitivity")
        digest = hashlib.sha1(x.cpu().numpy().tobytes()).hexdigest()
        return cls(classifier, x, digest)

    def key(self, *parts: Hashable) -> Hashable:
        # The wrapper itself (hashed by identity) rather than id(): the cache keeps it alive, so
        # a new model can never be mistaken for a collected one.
        return (self.classifier, self.digest) + parts


# --- what to compute ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MapSpec:
    """One method's maps for all targets.

    ``params`` are the method function's keyword arguments (``targets`` or
    ``top_k`` included); occlusion's ``upsampling`` is kept apart and applied to
    the cached sweep, so switching it never recomputes. ``error``: why the
    widget cannot ask for this map (published as the error instead).
    """

    method: str
    params: dict = field(hash=False)
    upsampling: str = "bicubic"
    error: str | None = None

    def key(self, source: Source) -> Hashable:
        return source.key("map", self.method, freeze(self.params), self.error)

    def shown(self, result: MapResult) -> MapResult:
        """The result as displayed: occlusion sweeps with this spec's upsampling."""
        if self.method != "occlusion" or result.params.upsampling == self.upsampling:
            return result
        return result.with_upsampling(self.upsampling)


@dataclass(frozen=True)
class Plan:
    """Everything the widget shows now. Pieces are computed in this order: the
    main map, the layer list and activations, the other methods' maps, then
    the faithfulness curves of the compare view's class."""

    source: Source
    main: MapSpec
    compare: tuple[MapSpec, ...] = ()  # the compare view's methods (display order); () when it is closed
    selected: int = 0  # the class tab: the compare view explains targets[selected]
    curve_params: dict = field(default_factory=dict, hash=False)  # deletion_insertion keyword arguments
    layer_list: bool = False  # the layer names (Grad-CAM's and the layer view's dropdowns)
    activations: dict | None = field(default=None, hash=False)  # layer_activations keyword arguments; None: no layer view

    def map_specs(self) -> list[MapSpec]:
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

    def curve_key(self, spec: MapSpec, target: int) -> Hashable:
        return self.source.key("curve", spec.key(self.source), spec.upsampling, target, freeze(self.curve_params))

    def pieces(self, cache: ResultCache) -> list["_Piece"]:
        specs = self.map_specs()
        out = [_Piece("map", specs[0].key(self.source), specs[0])]
        if self.layer_list:
            out.append(_Piece("layers", self.source.key("layers")))
        if self.activations is not None:
            out.append(_Piece("activations", self.source.key("activations", freeze(self.activations))))
        out += [_Piece("map", spec.key(self.source), spec) for spec in specs[1:]]
        target = self.target(cache) if self.compare else None
        if target is not None:
            out += [_Piece("curve", self.curve_key(spec, target), (spec, target)) for spec in self.compare]
        return out


@dataclass(frozen=True)
class _Piece:
    kind: str  # "map", "layers", "activations" or "curve"
    key: Hashable
    spec: Any = None


def compute_map(source: Source, spec: MapSpec, progress: Callable, cancel: threading.Event) -> MapResult | None:
    """One method's maps (None when cancelled): the engine or :mod:`occlusion_widget.methods`."""
    if spec.error:
        raise ValueError(spec.error)
    params = dict(spec.params)
    model, x = source.classifier, source.x
    if spec.method == "occlusion":
        if params.get("batch_size") is None and resolve_device(params.get("device", "auto")).type == "cpu":
            params["batch_size"] = responsive_batch(tuple(x.shape[1:]), params)
        result = occlusion_sensitivity(model, x, upsampling=spec.upsampling, progress=progress, cancel=cancel, **params)
        return result if result.complete else None  # cancelled: the partial map stays as last published
    function = {"grad_cam": grad_cam, "saliency": saliency, "smoothgrad": smoothgrad}[spec.method]
    try:
        return function(model, x, progress=progress, cancel=cancel, **params)
    except Cancelled:
        return None


def compute_curve(source: Source, result: MapResult, target: int, params: dict,
                  cancel: threading.Event) -> FaithfulnessCurve | None:
    """Deletion and insertion curves of ``result``'s map for ``target`` (None when cancelled)."""
    if result.maps.shape[-2:] != tuple(source.x.shape[1:]):
        result = result.with_upsampling("nearest")  # occlusion with upsampling "none": one cell per position
    try:
        return deletion_insertion(source.classifier, source.x, map_for(result, target), target, cancel=cancel, **params)
    except Cancelled:
        return None


@dataclass(frozen=True)
class LayerList:
    """The layers offered in the dropdowns: (name, (C, h, w), module type) in forward order."""

    layers: list[tuple[str, tuple[int, ...], str]]
    default: str


def conv_layers(source: Source) -> LayerList:
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
        curves = {p.method: p.curve for p in self.panels}
        probability = float(next(iter(curves.values())).deletion_scores[0])  # the input's probability
        return Comparison(self.target, self.label, probability, {p.method: p.result for p in self.panels},
                          FaithfulnessTable(curves, self.target, self.label), image, {})


@dataclass(frozen=True)
class LayerState:
    layers: LayerList | None
    activations: LayerActivations | None
    status: str
    error: str = ""


def _message(exc: Exception) -> str:
    return str(exc) if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: {exc}"


class Controller:
    """Computes a sink's :class:`Plan` piece by piece in one background thread.

    Parameters
    ----------
    sink : Sink
    min_interval : float
        The least time between two published partial maps (seconds).
    """

    def __init__(self, sink: Sink, min_interval: float = 0.2, cache_size: int = 48):
        self.sink = sink
        self.min_interval = min_interval
        self.cache = ResultCache(cache_size)
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._running: Hashable = None  # the key of the piece in flight
        self._failed: dict[Hashable, str] = {}
        self._stopped = False
        self._shown: Hashable = None  # what on_finished published last, to skip re-publishing it
        self._runner = LatestRunner(self._run, "occlusion-worker")
        self._paused_until = 0.0

    # --- requests (any thread, normally the kernel's) ---------------------------------------

    def request(self, plan: Plan) -> None:
        """Show ``plan``: cached pieces at once, the rest in the background."""
        with self._lock:
            self._plan, self._stopped = plan, False
            self._failed.clear()
            cached = self.cache.get(plan.main.key(plan.source))
            if cached is not None:
                self._finish_main(plan, cached, cached=True)
            else:
                self._shown = None
                self.sink.on_started()
            todo = self._next(plan)
            keep = todo is not None and todo.key == self._running
            self._publish_views()
        if todo is None:
            self._runner.cancel()
        else:
            self._runner.submit(plan, cancel_running=not keep)

    def yield_to_preview(self, seconds: float = 0.3) -> None:
        """Let mask previews have the CPU: the worker waits at its next batch
        boundary until no preview was asked for during ``seconds``."""
        self._paused_until = time.monotonic() + seconds

    def cancel(self) -> None:
        """Stop: a partial map stays and status becomes "cancelled"; views keep what is done."""
        with self._lock:
            self._stopped = True
            self._runner.cancel()
            plan = self._plan
            main = plan.main.key(plan.source) if plan is not None else None
            if main is not None and self.cache.get(main) is None and main not in self._failed:
                self._shown = None
                self.sink.on_cancelled()
            self._publish_views()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing runs or waits; False on timeout."""
        return self._runner.wait_idle(timeout)

    @property
    def busy(self) -> bool:
        return self._runner.busy

    def close(self, timeout: float = 0.0) -> None:
        with self._lock:
            self._plan = None
        self._runner.close(timeout)

    # --- the worker thread ---------------------------------------------------------------------

    def _next(self, plan: Plan) -> _Piece | None:
        return next((p for p in plan.pieces(self.cache) if p.key not in self._failed and self.cache.get(p.key) is None), None)

    def _run(self, _plan: Plan, cancel: threading.Event) -> None:
        while not cancel.is_set():
            with self._lock:
                plan = self._plan
                piece = None if plan is None or self._stopped else self._next(plan)
                if piece is None:
                    return
                self._running = piece.key
                self._publish_views()
            value, error = None, None
            try:
                value = self._compute(plan, piece, cancel)
            except Exception as exc:  # noqa: BLE001 - the engine's errors name the parameter; a model may raise anything
                error = _message(exc)
            with self._lock:
                self._running = None
                if error is not None:
                    self._failed[piece.key] = error
                elif value is not None:
                    self.cache.put(piece.key, value)
                current = self._plan
                if current is not None and piece.key == current.main.key(current.source):
                    if error is not None:
                        self._shown = None
                        self.sink.on_failed(error)
                    elif value is not None:
                        self._finish_main(current, value, cached=False)
                self._publish_views()

    def _compute(self, plan: Plan, piece: _Piece, cancel: threading.Event) -> Any:
        source = plan.source
        if piece.kind == "map":
            return compute_map(source, piece.spec, self._progress(piece, cancel), cancel)
        if piece.kind == "curve":
            spec, target = piece.spec
            return compute_curve(source, spec.shown(self.cache.get(spec.key(source))), target, plan.curve_params, cancel)
        if piece.kind == "layers":
            return conv_layers(source)
        return layer_activations(source.classifier, source.x, **plan.activations)

    def _progress(self, piece: _Piece, cancel: threading.Event) -> Callable:
        throttle = Throttle(self.min_interval)
        covered = False
        method = piece.spec.method

        def progress(done: int, total: int, partial: MapResult | None) -> None:
            nonlocal covered
            first_cover = False
            if method == "occlusion" and partial is not None:
                first_cover = not covered and not np.isnan(partial.grid).any()
                covered = covered or first_cover
            if done < total and throttle.ready(force=first_cover):
                with self._lock:
                    plan = self._plan
                    if not cancel.is_set() and plan is not None and piece.key == plan.main.key(plan.source):
                        shown = plan.main.shown(partial) if partial is not None and method in STREAMING else None
                        self.sink.on_partial(shown, done, total)
            # While the user drags the mask, previews come first (bounded, so the work still moves).
            limit = time.monotonic() + MAX_PREVIEW_PAUSE
            while time.monotonic() < min(self._paused_until, limit) and not cancel.is_set():
                time.sleep(0.01)

        return progress

    # --- publication (lock held) ---------------------------------------------------------------

    def _finish_main(self, plan: Plan, result: MapResult, cached: bool) -> None:
        shown_key = (plan.main.key(plan.source), plan.main.upsampling)
        if cached and shown_key == self._shown:
            return  # on screen already (e.g. a class tab clicked in the compare view)
        try:
            shown = plan.main.shown(result)
        except ValueError as exc:  # a bad upsampling name
            self._shown = None
            self.sink.on_failed(str(exc))
            return
        self._shown = shown_key
        self.sink.on_finished(shown, cached=cached)

    def _status(self, key: Hashable) -> str:
        if key == self._running:
            return "running"
        if key in self._failed:
            return "error"
        return "stopped" if self._stopped else "pending"

    def _publish_views(self) -> None:
        plan = self._plan
        if plan is None:
            return
        compare = None
        if plan.compare:
            target = plan.target(self.cache)
            panels, label = [], None
            for spec in plan.compare:
                key = spec.key(plan.source)
                result = self.cache.get(key)
                curve_key = plan.curve_key(spec, target) if target is not None else None
                curve = self.cache.get(curve_key) if curve_key is not None else None
                status = "done" if result is not None else self._status(key)
                curve_status = "done" if curve is not None else "pending" if curve_key is None else self._status(curve_key)
                if result is not None and target is not None and result.labels and target in result.targets:
                    label = result.labels[int(np.flatnonzero(result.targets == target)[0])]
                error = self._failed.get(key) or self._failed.get(curve_key, "")
                panels.append(Panel(spec.method, spec.shown(result) if result is not None else None, curve, status, curve_status, error))
            compare = CompareState(target, label, tuple(panels))
        layers = None
        if plan.layer_list or plan.activations is not None:
            names_key = plan.source.key("layers")
            acts_key = plan.source.key("activations", freeze(plan.activations)) if plan.activations is not None else None
            acts = self.cache.get(acts_key) if acts_key is not None else None
            status = "done" if acts is not None or acts_key is None else self._status(acts_key)
            error = self._failed.get(acts_key) or self._failed.get(names_key, "")
            layers = LayerState(self.cache.get(names_key), acts, status, error)
        self.sink.on_views(compare, layers)


__all__ = [
    "METHODS", "CompareState", "Controller", "LatestRunner", "LayerList", "LayerState", "MapSpec", "Panel",
    "Plan", "ResultCache", "Sink", "Source", "Throttle", "compute_curve", "compute_map", "conv_layers",
    "responsive_batch",
]

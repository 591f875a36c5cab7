"""Background computation for the widget: maps, the method comparison and the layer view,
off the kernel's thread (mask previews: :mod:`.preview`).

Data flows one way: the widget describes what it shows as a :class:`~occlusion_widget.widget.plan.ComputePlan` (the
current method's maps; optionally every registered method side by side with their
deletion / insertion AUCs, and a layer's activations) and hands it to a
:class:`Controller`. The controller computes the plan's missing *pieces* one
after another in ONE background thread (a :class:`~occlusion_widget.widget.runner.LatestRunner`), caches them
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
* Partial maps (of methods whose registry spec ``streams``: occlusion, SmoothGrad) are throttled (at most one every
  ``min_interval`` seconds), except the first occlusion map that covers the
  whole input, and the final one.
* Finished pieces are cached (LRU, bounded in bytes) by model, image digest,
  method and parameters; a plan whose main map is cached is published at once,
  on the caller's thread.
* Bounded work: a piece is computed at most :data:`MAX_ATTEMPTS` times for one
  plan (a result that cannot be found in the cache again is an error, not a
  loop), and any error, whether the computation's or the publication's, ends
  as status "error" with a message; the next request computes again.
* Memory goes back to the system after every piece (:func:`~occlusion_widget.widget.runner.trim_memory`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import numpy as np

from ..engine.result import MapResult
from ..methods import layer_activations
from ..methods.registry import get_method
from .plan import (
    CompareState,
    ComputePlan,
    LayerState,
    Panel,
    Piece,
    compute_curve,
    compute_map,
    conv_layers,
)
from .runner import LatestRunner, ResultCache, Throttle, freeze, trim_memory

log = logging.getLogger(__name__)

#: The longest a sweep waits at one batch boundary while mask previews run (seconds).
MAX_PREVIEW_PAUSE = 3.0

#: How often one piece may be computed for one plan before the controller gives up on it.
MAX_ATTEMPTS = 2


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
    def on_views(self, compare: CompareState | None, layers: LayerState | None) -> None: ...


def _message(exc: Exception) -> str:
    return str(exc) if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: {exc}"


class Controller:
    """Computes a sink's :class:`ComputePlan` piece by piece in one background thread.

    Parameters
    ----------
    sink : Sink
    min_interval : float
        The least time between two published partial maps (seconds).
    """

    def __init__(self, sink: Sink, min_interval: float = 0.2, cache_size: int = 48, cache_bytes: int = 256 * 2**20):
        self.sink = sink
        self.min_interval = min_interval
        self.cache = ResultCache(cache_size, cache_bytes)
        self._lock = threading.Lock()
        self._plan: ComputePlan | None = None
        self._running: Hashable = None  # the key of the piece in flight
        self._failed: dict[Hashable, str] = {}
        self._stopped = False
        self._shown: Hashable = None  # what on_finished published last, to skip re-publishing it
        self._runner = LatestRunner(self._run, "occlusion-worker")
        self._paused_until = 0.0
        self._attempts: list = []  # keys of the pieces computed for the current plan (a list: keys may hold NaN)

    # --- requests (any thread, normally the kernel's) ---------------------------------------

    def request(self, plan: ComputePlan) -> None:
        """Show ``plan``: cached pieces at once, the rest in the background."""
        with self._lock:
            self._plan, self._stopped = plan, False
            self._failed.clear()
            self._attempts = []
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

    def _next(self, plan: ComputePlan) -> Piece | None:
        return next((p for p in plan.pieces(self.cache) if p.key not in self._failed and self.cache.get(p.key) is None), None)

    def _run(self, _plan: ComputePlan, cancel: threading.Event) -> None:
        while not cancel.is_set():
            with self._lock:
                plan = self._plan
                piece = None if plan is None or self._stopped else self._next(plan)
                if plan is None or piece is None:
                    return
                if self._attempts.count(piece.key) >= MAX_ATTEMPTS or len(self._attempts) >= self._budget(plan):
                    self._give_up(plan, piece)
                    continue
                self._attempts.append(piece.key)
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
            del value  # the cache holds what is kept; the rest goes back to the system
            trim_memory()

    @staticmethod
    def _budget(plan: ComputePlan) -> int:
        """The most computations one plan may take: MAX_ATTEMPTS per piece it can ever have."""
        return MAX_ATTEMPTS * (len(plan.map_specs()) + len(plan.compare) + 2)

    def _give_up(self, plan: ComputePlan, piece: Piece) -> None:
        """``piece`` was computed but is still missing (lock held): fail it instead of looping.

        Over the plan's whole budget (keys that never equal themselves, e.g. holding a NaN,
        defeat the per-piece count), everything stops.
        """
        error = f"the {piece.kind} was computed but could not be kept in the cache (its key cannot be found again); not retrying"
        log.warning("occlusion-worker: %s", error)
        self._failed[piece.key] = error
        if len(self._attempts) >= self._budget(plan):
            self._stopped = True
        if self._stopped or piece.key == plan.main.key(plan.source):
            self._shown = None
            self.sink.on_failed(error)
        self._publish_views()

    def _compute(self, plan: ComputePlan, piece: Piece, cancel: threading.Event) -> Any:
        source = plan.source
        if piece.kind == "map":
            return compute_map(source, piece.spec, self._progress(piece, cancel), cancel)
        if piece.kind == "curve":
            spec, target = piece.spec
            return compute_curve(source, spec.shown(self.cache.get(spec.key(source))), target, plan.curve_params, cancel,
                                 spec)
        if piece.kind == "layers":
            return conv_layers(source)
        assert plan.activations is not None, "a layers piece is planned only with the layer view's parameters"
        return layer_activations(source.classifier, source.x, **plan.activations)

    def _progress(self, piece: Piece, cancel: threading.Event) -> Callable:
        throttle = Throttle(self.min_interval)
        covered = False
        spec = get_method(piece.spec.method)
        perturbation = spec.kind == "perturbation"  # only a sweep's grid has gaps (NaN) to fill first

        def progress(done: int, total: int, partial: MapResult | None) -> None:
            nonlocal covered
            first_cover = False
            if perturbation and partial is not None:
                first_cover = not covered and not np.isnan(partial.grid).any()
                covered = covered or first_cover
            if done < total and throttle.ready(force=first_cover):
                with self._lock:
                    plan = self._plan
                    if not cancel.is_set() and plan is not None and piece.key == plan.main.key(plan.source):
                        # Partial maps only of methods whose partial maps are worth showing (spec.streams).
                        shown = plan.main.shown(partial) if partial is not None and spec.streams else None
                        self.sink.on_partial(shown, done, total)
            # While the user drags the mask, previews come first (bounded, so the work still moves).
            limit = time.monotonic() + MAX_PREVIEW_PAUSE
            while time.monotonic() < min(self._paused_until, limit) and not cancel.is_set():
                time.sleep(0.01)

        return progress

    # --- publication (lock held) ---------------------------------------------------------------

    def _finish_main(self, plan: ComputePlan, result: MapResult, cached: bool) -> None:
        shown_key = (plan.main.key(plan.source), plan.main.upsampling)
        if cached and shown_key == self._shown:
            return  # on screen already (e.g. a class tab clicked in the compare view)
        try:
            shown = plan.main.shown(result)
            self.sink.on_finished(shown, cached=cached)
        except Exception as exc:
            log.debug("publishing the map failed", exc_info=True)
            self._shown = None
            self.sink.on_failed(_message(exc))
            return
        self._shown = shown_key

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
                shown = spec.shown(result) if result is not None else None
                panels.append(Panel(spec.method, shown, curve, status, curve_status, error))
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


__all__ = ["MAX_ATTEMPTS", "MAX_PREVIEW_PAUSE", "Controller", "Sink"]

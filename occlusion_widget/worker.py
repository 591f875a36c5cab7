"""Background computation for the widget: sweeps off the kernel's thread (mask previews: :mod:`.preview`).

Data flows one way: the widget hands parameters to a :class:`SweepController`,
which runs the engine in a background thread and hands results to a *sink*
(the widget), which turns them into synced state. Nothing here knows about
traitlets; nothing in the widget does maths.

Guarantees
----------
* Latest wins: a new request cancels the running sweep (the engine stops
  within one batch) and the new sweep starts as soon as that batch is done.
* Stale results are never published: every request bumps a generation
  number, and a sweep may publish only while its generation is current; the
  check and the publication happen under one lock, so once :meth:`request`
  returns no older sweep can publish anything.
* Partial results are throttled (at most one every ``min_interval`` seconds),
  except the first one that covers the whole input and the final one.
* Finished sweeps are cached by (model, image digest, parameters); a cached
  request is published at once, on the caller's thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Protocol

import numpy as np
import torch

from .engine import occlusion_sensitivity
from .engine.grid import MaskGrid, lattice_steps, resolve_pair
from .engine.inputs import prepare_input, resolve_device
from .engine.result import OcclusionResult
from .models import ImageClassifier, as_classifier

log = logging.getLogger(__name__)

#: Bounds of the batch size the widget picks on CPU when the user gives none
#: (see :func:`responsive_batch`).
CPU_BATCH_RANGE = (8, 24)

#: The longest a sweep waits at one batch boundary while mask previews run (seconds).
MAX_PREVIEW_PAUSE = 3.0


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
    """What the controller calls to publish (the widget implements it)."""

    def on_started(self) -> None: ...
    def on_partial(self, result: OcclusionResult, done: int, total: int) -> None: ...
    def on_finished(self, result: OcclusionResult, cached: bool) -> None: ...
    def on_failed(self, message: str) -> None: ...
    def on_cancelled(self) -> None: ...


class LatestRunner:
    """One daemon thread that runs the most recently submitted job.

    ``submit`` replaces any job still waiting and sets the cancel event of the
    job that is running; ``fn(job, cancel)`` should return soon after that.
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

    def submit(self, job: Any) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending, self._has_pending = job, True
            if self._cancel is not None:
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
    """A small LRU of finished results."""

    def __init__(self, maxsize: int = 32):
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, OcclusionResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> OcclusionResult | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, result: OcclusionResult) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def freeze(value: object) -> Hashable:
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


@dataclass
class _Job:
    generation: int
    key: Hashable
    params: dict
    source: Source
    upsampling: str = "bicubic"


class SweepController:
    """Runs sweeps for a sink: latest request wins, stale results never land.

    Parameters
    ----------
    sink : Sink
        Gets ``on_started``, ``on_partial``, ``on_finished``, ``on_failed`` and
        ``on_cancelled``, always with the generation lock held.
    min_interval : float
        The least time between two published partial results (seconds).
    """

    def __init__(self, sink: Sink, min_interval: float = 0.2, cache_size: int = 32):
        self.sink = sink
        self.min_interval = min_interval
        self.cache = ResultCache(cache_size)
        self._lock = threading.Lock()
        self._generation = 0
        self._runner = LatestRunner(self._run, "occlusion-sweep")
        self._paused_until = 0.0

    # --- requests (any thread, normally the kernel's) ---------------------------------------

    def request(self, source: Source, params: dict) -> None:
        """Compute occlusion maps for ``params`` (engine keyword arguments).

        ``upsampling`` is applied to a cached sweep of the same positions, so
        switching it is instant once the grid is known.
        """
        params = dict(params)
        upsampling = params.pop("upsampling", "bicubic")
        # The wrapper itself (hashed by identity) rather than id(): the cache keeps it alive, so
        # a new model can never be mistaken for a collected one.
        key = (source.classifier, source.digest, tuple(sorted((k, freeze(v)) for k, v in params.items())))
        with self._lock:
            self._generation += 1
            generation = self._generation
            cached = self.cache.get(key)
            if cached is not None:
                self._runner.cancel()
                try:
                    result = cached if cached.params.upsampling == upsampling else cached.with_upsampling(upsampling)
                except ValueError as exc:  # a bad upsampling name
                    self.sink.on_failed(str(exc))
                    return
                self.sink.on_finished(result, cached=True)
                return
            self.sink.on_started()
        self._runner.submit(_Job(generation, key, params, source, upsampling))

    def yield_to_preview(self, seconds: float = 0.3) -> None:
        """Let mask previews have the CPU: the sweep waits at its next batch
        boundary until no preview was asked for during ``seconds``."""
        self._paused_until = time.monotonic() + seconds

    def cancel(self) -> None:
        """Stop the running sweep; its partial result stays, status becomes "cancelled"."""
        with self._lock:
            self._generation += 1
            self._runner.cancel()
            self.sink.on_cancelled()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no sweep runs or waits; False on timeout."""
        return self._runner.wait_idle(timeout)

    @property
    def busy(self) -> bool:
        return self._runner.busy

    def close(self, timeout: float = 0.0) -> None:
        with self._lock:
            self._generation += 1
        self._runner.close(timeout)

    # --- the sweep thread ---------------------------------------------------------------------

    def _publish(self, generation: int, fn: Callable[[], None]) -> bool:
        with self._lock:
            if generation != self._generation:
                return False
            fn()
            return True

    def _run(self, job: _Job, cancel: threading.Event) -> None:
        if job.generation != self._generation:
            return
        throttle = Throttle(self.min_interval)
        covered = False
        params = dict(job.params)

        def progress(done: int, total: int, partial: OcclusionResult) -> None:
            nonlocal covered
            first_cover = not covered and not np.isnan(partial.grid).any()
            covered = covered or first_cover
            if done < total and throttle.ready(force=first_cover):
                self._publish(job.generation, lambda: self.sink.on_partial(partial, done, total))
            # While the user drags the mask, previews come first (bounded, so the sweep still moves).
            limit = time.monotonic() + MAX_PREVIEW_PAUSE
            while time.monotonic() < min(self._paused_until, limit) and not cancel.is_set():
                time.sleep(0.01)

        try:
            if params.get("batch_size") is None and resolve_device(params.get("device", "auto")).type == "cpu":
                params["batch_size"] = responsive_batch(tuple(job.source.x.shape[1:]), params)
            result = occlusion_sensitivity(
                job.source.classifier, job.source.x, upsampling=job.upsampling,
                progress=progress, cancel=cancel, **params,
            )
        except Exception as exc:  # noqa: BLE001 - the engine's errors name the parameter; a model may raise anything
            message = str(exc) if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: {exc}"
            self._publish(job.generation, lambda: self.sink.on_failed(message))
            return
        if not result.complete:
            return  # cancelled: whoever cancelled it has published already
        self.cache.put(job.key, result)
        self._publish(job.generation, lambda: self.sink.on_finished(result, cached=False))

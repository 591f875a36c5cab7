"""Background computation for the widget: sweeps and mask previews off the kernel's thread.

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
import math
import logging
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Protocol

import numpy as np
import torch

from .engine import occlusion_sensitivity
from .engine.grid import MaskGrid, lattice_steps, resolve_pair
from .engine.inputs import prepare_input, resolve_device, resolve_fill, score_function
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


def _freeze(value: object) -> Hashable:
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_freeze(v) for v in value)
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
        key = (source.classifier, source.digest, tuple(sorted((k, _freeze(v)) for k, v in params.items())))
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
        gate = _HookGate(job.source.classifier.module, params.get("layer"))

        def progress(done: int, total: int, partial: OcclusionResult) -> None:
            nonlocal covered
            gate.release()
            first_cover = not covered and not np.isnan(partial.grid).any()
            covered = covered or first_cover
            if done < total and throttle.ready(force=first_cover):
                self._publish(job.generation, lambda: self.sink.on_partial(partial, done, total))
            # While the user drags the mask, previews come first (bounded, so the sweep still moves).
            limit = time.monotonic() + MAX_PREVIEW_PAUSE
            while time.monotonic() < min(self._paused_until, limit) and not cancel.is_set():
                time.sleep(0.01)
            gate.acquire()

        try:
            if params.get("batch_size") is None and resolve_device(params.get("device", "auto")).type == "cpu":
                params["batch_size"] = responsive_batch(tuple(job.source.x.shape[1:]), params)
            gate.acquire()
            result = occlusion_sensitivity(
                job.source.classifier, job.source.x, upsampling=job.upsampling,
                progress=progress, cancel=cancel, **params,
            )
        except Exception as exc:  # noqa: BLE001 - the engine's errors name the parameter; a model may raise anything
            message = str(exc) if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: {exc}"
            self._publish(job.generation, lambda: self.sink.on_failed(message))
            return
        finally:
            gate.release()
        if not result.complete:
            return  # cancelled: whoever cancelled it has published already
        self.cache.put(job.key, result)
        self._publish(job.generation, lambda: self.sink.on_finished(result, cached=False))


class _HookGate:
    """Forwards that watch a layer (``layer=``) go through a forward hook, and
    hooks belong to the module, not to a thread: a sweep and a preview must not
    run such a module at the same time. The sweep holds the gate during its
    batches and lets go between them; without ``layer`` the gate does nothing.
    """

    _locks: "weakref.WeakKeyDictionary[torch.nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
    _guard = threading.Lock()

    def __init__(self, module: torch.nn.Module, layer: str | None):
        self._lock = None
        if layer is not None:
            with _HookGate._guard:
                self._lock = _HookGate._locks.setdefault(module, threading.Lock())
        self._held = False

    def acquire(self) -> None:
        if self._lock is not None and not self._held:
            self._lock.acquire()
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    def __enter__(self) -> "_HookGate":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- mask preview: one occluded forward pass ---------------------------------------------------


def mask_box(cy: float, cx: float, mask: tuple[int, int], shape: tuple[int, int], clipping: bool) -> tuple[int, int, int, int]:
    """``[y0, x0, y1, x1)`` of a mask centred at pixel (cy, cx).

    Same rule as the sweep: the mask starts at ``c - m // 2``. With clipping
    it is cut to the image; without, it is moved inside (always full size).
    Mirrored by ``maskBox`` in ``js/geometry.js``.
    """
    out = []
    for c, m, n in zip((cy, cx), mask, shape):
        m = min(int(m), n)
        start = math.floor(c + 0.5) - m // 2  # round half up, like Math.round
        if clipping:
            out.append((max(start, 0), min(start + m, n)))
        else:
            start = min(max(start, 0), n - m)
            out.append((start, start + m))
    (y0, y1), (x0, x1) = out
    return y0, x0, y1, x1


@dataclass(frozen=True)
class Preview:
    """The answer to a preview request."""

    seq: int
    box: tuple[int, int, int, int]
    base: list[tuple[int, float]]  # top-5 (class, score), unoccluded
    occluded: list[tuple[int, float]]  # top-5 (class, score) with the mask
    targets: list[tuple[int, float, float]]  # (class, unoccluded, occluded) for each target
    fill: np.ndarray | None  # the (C, H, W) replacement values when they changed, else None
    elapsed_s: float


class PreviewEngine:
    """Scores the input with one mask at a given position (about one forward pass)."""

    def __init__(self) -> None:
        self._fills: dict[Hashable, torch.Tensor] = {}
        self._base: dict[Hashable, torch.Tensor] = {}
        self._last_fill_key: Hashable = None
        self._lock = threading.Lock()

    @torch.inference_mode()
    def compute(self, source: Source, seq: int, cy: float, cx: float, params: dict, k: int = 5) -> Preview:
        """Scores with the mask centred at pixel (cy, cx); ``params`` are the
        sweep's engine parameters (``targets`` or ``top_k`` pick the classes
        whose scores come back in ``Preview.targets``)."""
        start = time.perf_counter()
        x = source.x
        shape = tuple(x.shape[1:])
        mask = resolve_pair(params.get("mask_size", "auto"), "mask_size", shape, 0.2)  # type: ignore[arg-type]
        if any(m > n for m, n in zip(mask, shape)):
            raise ValueError(f"mask_size={mask} is larger than the input {shape}")
        box = mask_box(cy, cx, mask, shape, bool(params.get("mask_clipping", True)))
        module = source.classifier.module.eval()
        device = resolve_device(params.get("device", "auto"))
        score, _ = score_function(module, params.get("output", "probability"), params.get("layer"), False)
        with self._lock:
            fill_key = (source.digest, _freeze(params.get("mask_value", "auto")), mask)
            fill = self._fills.get(fill_key)
            if fill is None:
                fill, _ = resolve_fill(params.get("mask_value", "auto"), x, mask)
                self._fills = {fill_key: fill}
            fill_changed = fill_key != self._last_fill_key
            self._last_fill_key = fill_key
            base_key = (id(module), source.digest, str(params.get("output")), params.get("layer"), str(device), params.get("precision"))
            base = self._base.get(base_key)
        y0, x0, y1, x1 = box
        occluded = x.clone()
        occluded[:, y0:y1, x0:x1] = fill[:, y0:y1, x0:x1]
        batch = occluded[None] if base is not None else torch.stack([x, occluded])
        module.to(device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=params.get("precision") == "bfloat16")
        with _HookGate(module, params.get("layer")), autocast:
            scores = score(batch.to(device)).float().cpu()
        if base is None:
            base = scores[0]
            with self._lock:
                self._base = {base_key: base}
        after = scores[-1]
        kk = min(k, base.numel())
        targets = params.get("targets")
        if targets is None:
            targets = base.topk(min(int(params.get("top_k") or 1), base.numel())).indices.tolist()
        top = lambda s: [(int(i), float(s[i])) for i in s.topk(kk).indices]  # noqa: E731
        return Preview(
            seq=seq, box=box, base=top(base), occluded=top(after),
            targets=[(int(t), float(base[t]), float(after[t])) for t in targets if 0 <= t < base.numel()],
            fill=fill.cpu().numpy() if fill_changed else None,
            elapsed_s=time.perf_counter() - start,
        )

"""The widget's background plumbing, free of maths and of traitlets: a latest-wins
worker thread (:class:`LatestRunner`), a :class:`Throttle`, an LRU
:class:`ResultCache` bounded in bytes with its keys (:func:`freeze`), the prepared
model and input (:class:`PreparedInput`), and process-level care: :func:`trim_memory`
and the exit hook that stops every runner before torch is torn down.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import dataclasses
import hashlib
import logging
import math
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine.inputs import prepare_input
from ..models import ImageClassifier, as_classifier

log = logging.getLogger(__name__)

#: Every runner alive, for the exit hook (weak: a collected widget's runners drop out).
_RUNNERS: weakref.WeakSet[LatestRunner] = weakref.WeakSet()
#: The longest the exit hook waits, in all, for running jobs to stop (seconds).
EXIT_TIMEOUT = 10.0


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
        _RUNNERS.add(self)

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

    @property
    def alive(self) -> bool:
        """Whether the thread still runs (it ends soon after :meth:`close`)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

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
            except Exception:
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
    """An LRU of finished pieces (maps, curves, layer lists, activations), bounded in
    number and in bytes (the arrays and tensors each value holds, see :func:`nbytes`).

    The newest item is always kept, even when it alone is over ``max_bytes``:
    the widget shows it, and dropping it would make the worker compute it again.
    """

    def __init__(self, maxsize: int = 48, max_bytes: int = 256 * 2**20):
        if maxsize < 1 or max_bytes < 0:
            raise ValueError(f"ResultCache(maxsize={maxsize}, max_bytes={max_bytes}): use maxsize >= 1 and max_bytes >= 0")
        self.maxsize, self.max_bytes = maxsize, max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any) -> None:
        size = nbytes(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.maxsize or self._bytes > self.max_bytes):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached values' arrays."""
        return self._bytes

    def peek(self, key: Hashable) -> Any:
        """Like :meth:`get`, without making ``key`` the most recently used."""
        with self._lock:
            item = self._items.get(key)
            return item[0] if item is not None else None

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def nbytes(value: object, _depth: int = 0) -> int:
    """The bytes of the numpy arrays and torch tensors ``value`` holds: directly, in
    dataclass fields, in dicts, lists and tuples (a few levels deep)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return int(value.element_size() * value.nelement())
    if _depth > 4 or value is None or isinstance(value, (str, bytes, int, float, bool)):
        return len(value) if isinstance(value, bytes) else 0
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts: Any = (getattr(value, f.name, None) for f in dataclasses.fields(value))
    elif isinstance(value, dict):
        parts = value.values()
    elif isinstance(value, (list, tuple)):
        parts = value
    else:
        return 0
    return sum(nbytes(part, _depth + 1) for part in parts)


def freeze(value: object) -> Hashable:
    """A hashable cache key for ``value`` that equals itself: floats are rounded,
    and a NaN (never equal to itself) becomes a fixed marker."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return ("<nan>",) if math.isnan(value) else round(float(value), 9)
    if isinstance(value, torch.device):
        return str(value)
    return value


#: Warnings raised while a source is prepared that the widget shows inline (``notice``), by class name
#: (``occlusion_widget.models.RawModuleNotice``: a plain nn.Module gets [0, 1] pixels, not normalised).
NOTICES = ("RawModuleNotice",)
#: The notice each module got, for later sources: models.py warns once per module.
_NOTICES_SEEN: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


@dataclass
class PreparedInput:
    """The model and the input as the network sees it, prepared once.

    ``notice``: the text of a :data:`NOTICES` warning raised while preparing
    them ('' when there was none); the warning is still issued as usual.
    """

    classifier: ImageClassifier
    x: torch.Tensor  # (C, H, W)
    digest: str
    notice: str = ""

    @classmethod
    def prepare(cls, model: object, image: object) -> PreparedInput:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # seen once already in this process: the widget still shows it
            classifier = as_classifier(model)  # type: ignore[arg-type]
            x, is_signal = prepare_input(classifier, image)
        notices = []
        for w in caught:  # issued again outside the recording, so the usual filters still apply
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            if type(w.message).__name__ in NOTICES:
                notices.append(str(w.message))
        if is_signal:
            raise ValueError("image: the widget shows images (C, H, W); for a 1-D signal call occlusion_sensitivity")
        notice = "\n".join(dict.fromkeys(notices))
        if notice:
            _NOTICES_SEEN[classifier.module] = notice
        elif getattr(classifier, "_raw_module", False) and not isinstance(image, torch.Tensor):
            notice = _NOTICES_SEEN.get(classifier.module, "")  # warned for an earlier image (a tensor gets none)
        digest = hashlib.sha1(x.cpu().numpy().tobytes()).hexdigest()
        return cls(classifier, x, digest, notice)

    def key(self, *parts: Hashable) -> Hashable:
        # The wrapper itself (hashed by identity) rather than id(): the cache keeps it alive, so
        # a new model can never be mistaken for a collected one.
        return (self.classifier, self.digest) + parts


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def trim_memory() -> bool:
    """Give freed heap memory back to the system (glibc's ``malloc_trim(0)``).

    A sweep allocates and frees hundreds of MB of activations; glibc keeps
    freed blocks in its arenas, so without this the process's RSS grows with
    every parameter change although the live data stay small. False where
    there is no glibc (macOS, Windows, musl): nothing to do there.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


@atexit.register  # registered once, at import: after torch's own hooks, so it runs before them
def _stop_all_runners(timeout: float = EXIT_TIMEOUT) -> None:
    """Cancel every runner's job and wait (up to ``timeout`` s in all) for its thread.

    A daemon thread still inside torch when the interpreter shuts down aborts
    the process ("terminate called without an active exception", status 134)
    instead of exiting with the script's own status.
    """
    runners = list(_RUNNERS)
    for runner in runners:  # cancel all first: they stop in parallel
        runner.close()
    deadline = time.monotonic() + timeout
    for runner in runners:
        thread = runner._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


__all__ = ["EXIT_TIMEOUT", "LatestRunner", "PreparedInput", "ResultCache", "Throttle", "freeze", "nbytes", "trim_memory"]

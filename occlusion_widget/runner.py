"""The widget's background plumbing, free of maths and of traitlets: a latest-wins
worker thread (:class:`LatestRunner`), a :class:`Throttle`, an LRU
:class:`ResultCache` with its keys (:func:`freeze`), and the prepared model and
input (:class:`Source`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numpy as np
import torch

from .engine.inputs import prepare_input
from .models import ImageClassifier, as_classifier

log = logging.getLogger(__name__)


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


__all__ = ["LatestRunner", "ResultCache", "Source", "Throttle", "freeze"]

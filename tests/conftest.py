"""Shared by the widget tests: a tiny classifier, the ``image`` and ``make_widget`` fixtures, and helpers
(``from conftest import assert_close, near, patch_method, synced_maps, tiny_model, wait_done``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from torch import nn

from occlusion_widget.models import ImageClassifier

if TYPE_CHECKING:
    from occlusion_widget.widget import OcclusionWidget

LABELS = [f"thing {i}" for i in range(10)]


class Tiny(nn.Module):
    """A small deterministic CNN; ``delay`` seconds per forward make sweeps slow enough to interrupt."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, 10)
        self.delay = delay
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        y = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4)
        return self.head(y.flatten(1)) * 3


def tiny_model(delay: float = 0.0) -> ImageClassifier:
    return ImageClassifier(Tiny(delay).eval(), (32, 32), LABELS, name="tiny")


def _scale(expected: object, scale: object) -> float:
    """The magnitude tolerances are relative to: ``scale`` if given, else the largest |expected|."""
    return float(np.abs(np.asarray(expected if scale is None else scale, dtype=np.float64)).max(initial=0.0)) or 1.0


def assert_close(actual: object, expected: object, rtol: float = 1e-5, scale: object = None, **kwargs) -> None:
    """``assert_allclose`` with the absolute tolerance relative to the magnitude compared
    (``scale``, e.g. the scores whose difference a map holds; default: the largest |expected|)."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * _scale(expected, scale), **kwargs)


def near(expected: object, rtol: float = 1e-5, scale: object = None):
    """``pytest.approx`` with the absolute tolerance relative to the magnitude (see :func:`assert_close`)."""
    return pytest.approx(float(expected), rel=rtol, abs=rtol * _scale(expected, scale))


def patch_method(monkeypatch: pytest.MonkeyPatch, name: str, function: Callable) -> Callable:
    """Make the registry's method ``name`` call ``function`` (the widget calls methods through
    ``METHODS[name].function``); returns the real function. Undone with ``monkeypatch``."""
    from occlusion_widget.methods.registry import METHODS

    real = METHODS[name].function
    monkeypatch.setitem(METHODS, name, dataclasses.replace(METHODS[name], function=function))
    return real


def synced_maps(w: OcclusionWidget) -> np.ndarray:
    data = w.map_data
    return np.frombuffer(data["data"], dtype="<f4").reshape(data["shape"])


def wait_done(w: OcclusionWidget, timeout: float = 60) -> None:
    w.wait(timeout)
    assert w.status == "done", (w.status, w.error)


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def make_widget():
    """``make_widget(*args, **kwargs)``: an OcclusionWidget, closed after the test."""
    from occlusion_widget.widget import OcclusionWidget

    made: list[OcclusionWidget] = []

    def make(*args, **kwargs) -> OcclusionWidget:
        w = OcclusionWidget(*args, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture(scope="module")
def one_thread():
    """Many small ops: on a shared 2-core machine one thread avoids OpenMP barrier stalls (5x faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

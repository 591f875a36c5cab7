"""torch.fx tracing in one thread never changes what the model computes in another.

fx patches ``nn.Module.__call__`` and ``__getattr__`` for the whole process while it
traces; the incremental path traces the user's model on the widget's worker thread
while the notebook may run the same model. These tests race the two on a model with
many small submodules (so that a trace takes long enough for the race to happen).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from occlusion_widget.engine.incremental import IncrementalEvaluator, graph
from occlusion_widget.engine.sweep import occlusion_sensitivity

pytestmark = pytest.mark.usefixtures("one_thread")


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.act(self.conv(x))


class Deep(nn.Module):
    """A stem, 60 residual 1x1 blocks (slow to trace, fast to run on 8x8), a linear head."""

    def __init__(self, depth: int = 60, c: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(c) for _ in range(depth)])
        self.head = nn.Linear(c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def _race(model: nn.Module, x: torch.Tensor, expected: torch.Tensor, work, seconds: float) -> list[str]:
    """Run ``model(x)`` in a tight loop in a thread while ``work()`` repeats in this one;
    the list of what went wrong in the thread (wrong outputs, exceptions)."""
    errors: list[str] = []
    stop = threading.Event()
    calls = [0]

    def loop() -> None:
        while not stop.is_set():
            try:
                with torch.no_grad():
                    out = model(x)
                if not isinstance(out, torch.Tensor) or not torch.equal(out, expected):
                    errors.append(f"wrong output: {type(out).__name__}")
            except Exception as exc:  # noqa: BLE001 - any exception is a failure here
                errors.append(f"{type(exc).__name__}: {str(exc)[:80]}")
            calls[0] += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    end = time.monotonic() + seconds
    rounds = 0
    try:
        while time.monotonic() < end and len(errors) < 5:
            work()
            rounds += 1
    finally:
        stop.set()
        t.join(10)
    assert rounds >= 2 and calls[0] >= 10, (rounds, calls[0])  # the race really ran
    return errors


def test_forward_in_another_thread_is_exact_while_tracing():
    model = Deep().eval()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
    # The same model traced fresh, and fresh instances of its class (the class's
    # forward is what fx patches around), alternately.
    others = iter(lambda: Deep(seed=1).eval(), None)
    flip = [False]

    def work() -> None:
        flip[0] = not flip[0]
        graph.trace(model if flip[0] else next(others), fresh=True)

    errors = _race(model, x, expected, work, seconds=3.0)
    assert not errors, errors[:3]


def test_building_the_evaluator_leaves_the_users_model_alone():
    # A user hook on a non-leaf block and state the forward writes must never see
    # a Proxy; batch-norm folding acts on the traced copy only.
    class WithBN(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            self.last_shape = x.shape
            return self.head(self.body(x).mean((2, 3)))

    model = WithBN()
    model.body[1].running_mean.uniform_(-0.5, 0.5)
    model.body[1].running_var.uniform_(0.5, 2)
    model.eval()
    seen: list[type] = []
    model.body.register_forward_hook(lambda m, i, o: seen.append(type(o)))
    x = torch.rand(3, 10, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(x[None])
    attrs = set(vars(model))
    seen.clear()
    ev = IncrementalEvaluator.build(model, x, x * 0)
    assert all(t is torch.Tensor for t in seen), seen
    assert set(vars(model)) == attrs and isinstance(model.last_shape, torch.Size)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        assert torch.equal(model(x[None]), ref)
    assert torch.allclose(ev(np.zeros((0, 4), dtype=np.int64)), torch.zeros(0, 3))


def _sweep(model: nn.Module, x: torch.Tensor):
    return occlusion_sensitivity(model, x, top_k=2, mask_size=3, stride=2, output="logit", batch_size=16,
                                 device="cpu", strategy="incremental")


def test_two_sweeps_on_an_untraced_model_in_two_threads():
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = _sweep(Deep().eval(), x)
    assert expected.params.strategy == "incremental"
    for _ in range(3):
        model = Deep().eval()  # untraced: both threads race to trace it
        results: list = [None, None]
        errors: list[BaseException] = []

        def run(i: int, model: nn.Module, results: list, errors: list[BaseException]) -> None:
            try:
                results[i] = _sweep(model, x)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i, model, results, errors)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        scale = float(np.abs(expected.grid).max())
        for r in results:
            np.testing.assert_array_equal(r.targets, expected.targets)
            np.testing.assert_allclose(r.grid, expected.grid, rtol=1e-5, atol=1e-5 * scale)

"""A sweep never changes the user's module: training flags, device, memory format (issue: shared models)."""

import threading

import numpy as np
import pytest
import torch
from helpers import small_cnn
from torch import nn

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.engine.model_state import prepared_module


class Net(nn.Module):
    """Conv, batch norm and dropout: train mode gives different (random) scores from eval mode.

    ``train()`` calls are recorded, so a test sees any flip of the flags, even one restored later.
    """

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 5)
        self.train_calls: list[bool] = []
        with torch.no_grad():  # non-trivial running statistics, so eval differs from batch statistics
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)

    def train(self, mode: bool = True):
        self.train_calls.append(mode)
        return super().train(mode)

    def forward(self, x):
        y = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.head(y.mean(dim=(2, 3)))


def sweep(model, image, **kwargs):
    return occlusion_sensitivity(model, image, [0, 3], mask_size=4, stride=4, output="logit", strategy="full",
                                 **kwargs)


def test_train_mode_model_gives_eval_maps_and_stays_in_train_mode():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = Net().train()
    model.train_calls.clear()
    stats = model.bn.running_mean.clone()
    in_train = sweep(model, image)
    assert model.train_calls == [], "the sweep must not flip the user's flags, not even temporarily"
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(model.bn.running_mean, stats, rtol=0, atol=0)  # no batch statistics recorded
    in_eval = sweep(model.eval(), image)
    np.testing.assert_allclose(in_train.grid, in_eval.grid, rtol=1e-5, atol=1e-6 * np.abs(in_eval.grid).max())
    np.testing.assert_allclose(in_train.base_scores, in_eval.base_scores, rtol=1e-5)


def test_flags_seen_from_inside_the_forward_pass():
    seen = []

    class Spy(Net):
        def forward(self, x):
            seen.append((self.training, self.drop.training))
            return super().forward(x)

    model = Spy().train()
    sweep(model, torch.rand(3, 16, 16))
    assert model.training and model.drop.training
    assert seen and all(flags == (False, False) for flags in seen)  # the sweep runs an eval-mode view


def test_weights_memory_format_and_identity_unchanged():
    model = small_cnn()
    weights = {name: (p, p.data_ptr(), p.stride()) for name, p in model.named_parameters()}
    occlusion_sensitivity(model, torch.rand(3, 16, 16), 0, mask_size=4, stride=4)
    for name, p in model.named_parameters():
        before, ptr, stride = weights[name]
        assert p is before and p.data_ptr() == ptr and p.stride() == stride, name
    assert model[0].weight.is_contiguous()  # not converted to channels_last


def test_two_threads_sweeping_one_shared_train_mode_model():
    model = Net().train()
    images = [torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(s)) for s in (2, 3)]
    expected = [sweep(model, im, batch_size=3) for im in images]
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(i):
        try:
            barrier.wait()
            results[i] = [sweep(model, images[i], batch_size=3) for _ in range(3)]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i in (0, 1):
        for got in results[i]:
            ref = expected[i].grid
            np.testing.assert_allclose(got.grid, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    assert all(m.training for m in model.modules())


def test_prepared_module_returns_the_module_itself_when_nothing_changes():
    model = small_cnn()  # eval, on the CPU
    assert prepared_module(model, torch.device("cpu")) is model
    view = prepared_module(model.train(), torch.device("cpu"))
    assert view is not model and not any(m.training for m in view.modules())
    assert all(m.training for m in model.modules())
    # The view shares the weights: training the user's model shows in the next view, and in this one.
    assert all(a is b for a, b in zip(view.parameters(), model.parameters(), strict=True))
    with torch.no_grad():
        model[0].weight.add_(1.0)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(view(x), model.eval()(x))
        torch.testing.assert_close(prepared_module(model.train(), torch.device("cpu"))(x), model.eval()(x))


def test_prepared_module_channels_last_copies_only_the_view():
    model = small_cnn()
    view = prepared_module(model, torch.device("cpu"), channels_last=True)
    assert view is not model
    assert view[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[0].weight.is_contiguous() and not model[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(view(x), model(x), rtol=1e-5, atol=1e-5)


def test_prepared_module_keeps_tied_weights_tied_and_hooks_apart():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    model = Tied().train()
    view = prepared_module(model, torch.device("cpu"))
    assert view.a.weight is view.b.weight
    fired = []
    handle = view.a.register_forward_hook(lambda *args: fired.append(1))
    model(torch.rand(1, 4))
    assert fired == [], "a hook put on the view must not fire on the user's module"
    handle.remove()


def test_prepared_module_refuses_meta_weights():
    with pytest.raises(ValueError, match="not materialised"):
        prepared_module(small_cnn().to("meta"), torch.device("cpu"))

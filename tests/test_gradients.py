"""Gradient saliency and SmoothGrad against autograd computed by hand."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from occlusion_widget.methods import AttributionResult, saliency, smoothgrad
from occlusion_widget.models import ImageClassifier


def tiny_cnn(classes: int = 5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, classes),
    ).eval()


class Linear(nn.Module):
    """logits = [sum(w0 * x), sum(w1 * x)]: the gradient of class k is w_k everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)  # (2, C, H, W)

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.w)


@pytest.fixture
def image():
    return torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(1))


def autograd_gradient(model, x, target, output="logit"):
    x = x[None].clone().requires_grad_(True)
    out = model(x)
    if output == "probability":
        out = out.softmax(1)
    out[0, target].backward()
    return x.grad[0]


@pytest.mark.parametrize("output", ["logit", "probability"])
@pytest.mark.parametrize("reduce", ["max", "sum"])
def test_saliency_equals_autograd(image, output, reduce):
    model = tiny_cnn()
    res = saliency(model, image, targets=[3, 0], reduce=reduce, output=output, device="cpu")
    assert isinstance(res, AttributionResult) and res.method == "saliency"
    assert res.maps.shape == res.grid.shape == (2, 12, 10)
    for k, t in enumerate([3, 0]):
        g = autograd_gradient(model, image, t, output).abs()
        expected = g.amax(0) if reduce == "max" else g.sum(0)
        np.testing.assert_allclose(res.maps[k], expected.numpy(), rtol=1e-5, atol=1e-6 * float(expected.max()))
    scores = model(image[None])
    scores = scores.softmax(1) if output == "probability" else scores
    np.testing.assert_allclose(res.base_scores, scores[0, [3, 0]].detach().numpy(), rtol=1e-6)
    assert res.params.output == output and res.params.reduce == reduce
    np.testing.assert_array_equal(res.image, image.numpy())


def test_saliency_default_target_and_top_k(image):
    model = tiny_cnn()
    logits = model(image[None])[0]
    assert saliency(model, image, device="cpu").targets.tolist() == [int(logits.argmax())]
    assert saliency(model, image, top_k=3, device="cpu").targets.tolist() == logits.topk(3).indices.tolist()


def test_linear_model_saliency_is_the_weight_and_smoothgrad_equals_it(image):
    w = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    model = Linear(w)
    sal = saliency(model, image, targets=[0, 1], device="cpu")
    np.testing.assert_allclose(sal.maps, w.abs().amax(1).numpy(), rtol=1e-6)
    sg = smoothgrad(model, image, targets=[0, 1], n_samples=5, noise_level=0.3, device="cpu")
    np.testing.assert_allclose(sg.maps, sal.maps, rtol=1e-5)  # a constant gradient is unchanged by noise
    np.testing.assert_allclose(sg.extra["mean_gradient"], w.numpy(), rtol=1e-5)


def test_smoothgrad_equals_mean_of_noisy_gradients(image):
    model = tiny_cnn()
    n, level = 6, 0.2
    res = smoothgrad(model, image, targets=[1, 4], n_samples=n, noise_level=level, seed=7, batch_size=4, device="cpu")
    sigma = level * float(image.max() - image.min())
    gen = torch.Generator().manual_seed(7)
    noise = [torch.randn(image.shape, generator=gen) for _ in range(n)]  # the documented noise sequence
    for k, t in enumerate([1, 4]):
        mean = torch.stack([autograd_gradient(model, image + sigma * e, t) for e in noise]).mean(0)
        expected = mean.abs().amax(0).numpy()
        np.testing.assert_allclose(res.maps[k], expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert res.params.noise_sigma == pytest.approx(sigma) and res.params.n_samples == n
    assert res.n_forward == 1 + 2  # the clean pass, then batches of 4 and 2
    # The noise does not depend on the batching; noise_level=0 is plain saliency.
    again = smoothgrad(model, image, targets=[1, 4], n_samples=n, noise_level=level, seed=7, batch_size=n, device="cpu")
    np.testing.assert_allclose(again.maps, res.maps, rtol=1e-5, atol=1e-6 * res.maps.max())
    zero = smoothgrad(model, image, targets=[1], n_samples=2, noise_level=0.0, device="cpu")
    np.testing.assert_allclose(zero.maps, saliency(model, image, targets=[1], device="cpu").maps, rtol=1e-5)


def test_smoothgrad_progress_gives_running_means_and_cancel_raises(image):
    model = tiny_cnn()
    seen = []
    smoothgrad(model, image, n_samples=5, batch_size=2, device="cpu",
               progress=lambda done, total, partial: seen.append((done, total, partial.complete)))
    assert seen == [(2, 5, False), (4, 5, False), (5, 5, True)]

    cancel = threading.Event()

    def stop_after_first(done, total, partial):
        cancel.set()

    # The one cancellation contract: the result so far, complete=False, never an exception.
    partial = smoothgrad(model, image, n_samples=6, batch_size=2, device="cpu", progress=stop_after_first, cancel=cancel)
    two = smoothgrad(model, image, n_samples=2, device="cpu")
    assert not partial.complete and partial.params.n_samples == 6
    np.testing.assert_allclose(partial.maps, two.maps, rtol=1e-5, atol=1e-6 * np.abs(two.maps).max(),
                               err_msg="the mean over the 2 copies done (the noise does not depend on batches)")
    nothing = saliency(model, image, top_k=2, device="cpu", cancel=cancel)
    assert not nothing.complete and np.isnan(nothing.maps).all(), "cancelled before any target: NaN, not zeros"
    assert nothing.targets.tolist() == saliency(model, image, top_k=2, device="cpu").targets.tolist()
    assert np.isnan(smoothgrad(model, image, n_samples=4, device="cpu", cancel=cancel).maps).all()


def test_saliency_cancelled_after_one_target_keeps_it(image):
    model = tiny_cnn()
    cancel = threading.Event()
    partial = saliency(model, image, top_k=3, device="cpu", cancel=cancel, progress=lambda *a: cancel.set())
    full = saliency(model, image, top_k=3, device="cpu")
    assert not partial.complete
    np.testing.assert_allclose(partial.maps[0], full.maps[0], rtol=1e-6, atol=1e-7 * np.abs(full.maps).max())
    assert np.isnan(partial.maps[1:]).all() and np.isnan(partial.grid[1:]).all()


def test_parameter_gradients_are_left_alone(image):
    """Gradients are taken with autograd.grad: the user's .grad stay as they were (None here).
    (That the train/eval state is never flipped: tests/test_methods_errors.py.)"""
    model = tiny_cnn()
    saliency(model, image, device="cpu")
    smoothgrad(model, image, n_samples=2, device="cpu")
    assert all(p.grad is None for p in model.parameters())


def test_works_inside_inference_mode_and_through_the_wrapper():
    model = tiny_cnn()
    clf = ImageClassifier(model, (12, 12), labels=[f"c{i}" for i in range(5)])
    pixels = (np.random.default_rng(0).random((20, 16, 3)) * 255).astype(np.uint8)
    with torch.inference_mode():
        x = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(3))
        res = saliency(clf, x, device="cpu")
    expected = autograd_gradient(model, x.clone(), int(res.targets[0])).abs().amax(0).numpy()
    np.testing.assert_allclose(res.maps[0], expected, rtol=1e-5, atol=1e-6 * expected.max())
    res = smoothgrad(clf, pixels, targets=2, n_samples=2, device="cpu")
    assert res.maps.shape == (1, 12, 12) and res.labels == ["c2"]


def test_one_dimensional_signal():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3)).eval()
    x = torch.rand(2, 16)
    res = saliency(model, x, targets=1, device="cpu")
    assert res.maps.shape == res.grid.shape == (1, 16) and res.is_signal
    np.testing.assert_allclose(res.maps[0], autograd_gradient(model, x, 1).abs().amax(0).numpy(), rtol=1e-5)


@pytest.mark.parametrize("kwargs, error", [
    (dict(reduce="mean"), ValueError),
    (dict(n_samples=0), ValueError),
    (dict(noise_level=-0.1), ValueError),
    (dict(batch_size=0), ValueError),
    (dict(output="softmax"), ValueError),
    (dict(targets=[99]), ValueError),
    (dict(cancel=object()), TypeError),
])
def test_bad_arguments(image, kwargs, error):
    with pytest.raises(error):
        smoothgrad(tiny_cnn(), image, n_samples=kwargs.pop("n_samples", 1), device="cpu", **kwargs)

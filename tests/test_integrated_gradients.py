"""Integrated Gradients: equal to Captum's, complete, batched, and strict about its parameters."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from conftest import Tiny, tiny_model
from torch import nn

from occlusion_widget.methods.integrated_gradients import RULES, integrated_gradients, quadrature


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))


def captum_ig(forward, x: torch.Tensor, baseline: torch.Tensor, target: int, steps: int, method: str) -> np.ndarray:
    ig = IntegratedGradients(forward)
    return ig.attribute(x[None], baselines=baseline[None], target=target, n_steps=steps, method=method)[0].numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-5) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rel, atol=rel * np.abs(expected).max())


@pytest.mark.parametrize(
    "rule, baseline",
    [("gausslegendre", 0.2), ("riemann_middle", (0.1, 0.5, 0.9)), ("riemann_left", "tensor"), ("riemann_right", 0.0)],
)
def test_equals_captum_for_two_targets(x, rule, baseline):
    model = Tiny().eval()
    if baseline == "tensor":
        baseline = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(7))
    full = (baseline if isinstance(baseline, torch.Tensor)
            else torch.as_tensor(baseline, dtype=torch.float32).view(-1, 1, 1).expand(3, 32, 32))
    result = integrated_gradients(model, x, [2, 5], baseline=baseline, steps=23, rule=rule, batch_size=5, device="cpu")
    assert result.method == "integrated_gradients" and result.targets.tolist() == [2, 5]
    assert result.n_forward == 1 + 5  # input and baseline together, then ceil(23 / 5) batches
    for k, t in enumerate([2, 5]):
        expected = captum_ig(model, x, full.contiguous(), t, 23, rule)
        assert_close(result.extra["attributions"][k], expected)
        assert_close(result.maps[k], expected.sum(axis=0))
    np.testing.assert_array_equal(result.grid, result.maps)


def test_default_steps_and_rule_are_captums_defaults_with_probability_output(x):
    model = Tiny().eval()
    result = integrated_gradients(model, x, top_k=2, output="probability", device="cpu")
    probs = model(x[None]).softmax(dim=1)[0].detach()
    assert result.targets.tolist() == probs.topk(2).indices.tolist()
    assert_close(result.base_scores, probs[result.targets].numpy())
    assert result.params.steps == 50 and result.params.rule == "gausslegendre" and result.params.output == "probability"
    for k, t in enumerate(result.targets):
        ig = IntegratedGradients(lambda batch: model(batch).softmax(dim=1))
        expected = ig.attribute(x[None], baselines=torch.zeros(1, 3, 32, 32), target=int(t))[0].numpy()
        assert_close(result.extra["attributions"][k], expected)


def test_trapezoid_is_the_textbook_rule_and_captums_differs_by_n_minus_1_over_n(x):
    # A linear model has a constant gradient: IG is exact for any rule whose weights sum to 1.
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)).eval()
    result = integrated_gradients(linear, x, [0, 3], rule="riemann_trapezoid", steps=9, device="cpu")
    weight = linear[1].weight.detach().numpy().reshape(4, 3, 32, 32)
    assert_close(result.extra["attributions"], weight[[0, 3]] * x.numpy()[None])
    model = Tiny().eval()
    ours = integrated_gradients(model, x, 4, rule="riemann_trapezoid", steps=9, baseline=0.3, device="cpu")
    captum = captum_ig(model, x, torch.full((3, 32, 32), 0.3), 4, 9, "riemann_trapezoid")
    assert_close(ours.extra["attributions"][0] * 8 / 9, captum)


@pytest.mark.parametrize("rule", RULES)
def test_quadrature_weights_sum_to_one_and_nodes_lie_in_the_unit_interval(rule):
    alphas, weights = quadrature(rule, 7)
    assert alphas.shape == weights.shape == (7,)
    assert abs(weights.sum() - 1.0) < 1e-12 and alphas.min() >= 0 and alphas.max() <= 1
    # integral_0^1 a da = 1/2: exact for the symmetric rules, off by 1/(2n) for the one-sided sums.
    error = 1 / 14 if rule in ("riemann_left", "riemann_right") else 0.0
    assert abs(abs((weights * alphas).sum() - 0.5) - error) < 1e-12


class Smooth(nn.Module):
    """A CNN with smooth activations: the path integrand is smooth, so Gauss-Legendre converges fast."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x) * 2), 4).flatten(1)) * 4


def test_completeness_sum_equals_score_difference(x):
    model = Smooth().eval()
    baseline = torch.full((3, 32, 32), 0.5)
    result = integrated_gradients(model, x, [0, 1, 4], baseline=0.5, steps=32, device="cpu")
    with torch.no_grad():
        difference = (model(x[None])[0] - model(baseline[None])[0]).double().numpy()[[0, 1, 4]]
    sums = result.extra["attributions"].reshape(3, -1).sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(sums, difference, rtol=1e-4, atol=1e-4 * np.abs(difference).max())
    np.testing.assert_allclose(result.maps.reshape(3, -1).sum(axis=1, dtype=np.float64), difference, rtol=1e-4,
                               atol=1e-4 * np.abs(difference).max())
    np.testing.assert_allclose(result.extra["delta"], sums - difference, atol=1e-5 * np.abs(difference).max())
    np.testing.assert_allclose(result.extra["baseline_scores"], model(baseline[None])[0].detach().numpy()[[0, 1, 4]],
                               rtol=1e-5, atol=1e-6)


def test_quadrature_error_shrinks_with_steps_on_a_relu_network(x):
    model = Tiny().eval()
    coarse = integrated_gradients(model, x, [0, 1, 2], rule="riemann_middle", steps=2, device="cpu")
    fine = integrated_gradients(model, x, [0, 1, 2], rule="riemann_middle", steps=128, batch_size=64, device="cpu")
    assert np.abs(fine.extra["delta"]).max() < np.abs(coarse.extra["delta"]).max() / 4
    scale = np.abs(fine.base_scores - fine.extra["baseline_scores"]).max()
    assert np.abs(fine.extra["delta"]).max() < 2e-2 * scale


def test_batch_size_does_not_change_the_result_and_numpy_ints_are_accepted(x):
    model = Tiny().eval()
    one = integrated_gradients(model, x, np.int64(3), steps=np.int64(12), batch_size=np.int64(1), device="cpu")
    all_at_once = integrated_gradients(model, x, 3, steps=12, batch_size=12, device="cpu")
    assert type(one.params.steps) is int and one.params.steps == 12 and one.n_forward == 13
    assert_close(one.maps, all_at_once.maps)


def test_wrapper_labels_and_the_signal_form():
    classifier = tiny_model()
    result = integrated_gradients(classifier, torch.rand(3, 32, 32), top_k=2, steps=4, device="cpu")
    assert result.labels == [classifier.label(int(t)) for t in result.targets]

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.Softplus(), nn.Flatten(), nn.Linear(4 * 40, 3)).eval()
    signal = torch.randn(2, 40, generator=torch.Generator().manual_seed(2))
    baseline = torch.randn(2, 40, generator=torch.Generator().manual_seed(3))
    result = integrated_gradients(net, signal, [0, 2], baseline=baseline, steps=10, device="cpu")
    assert result.maps.shape == (2, 40) and result.extra["attributions"].shape == (2, 2, 40)
    assert result.image.shape == (2, 40) and result.is_signal
    for k, t in enumerate([0, 2]):
        assert_close(result.extra["attributions"][k], captum_ig(net, signal, baseline, t, 10, "gausslegendre"))


def test_progress_reports_each_batch_and_cancel_raises(x):
    model = Tiny().eval()
    calls = []
    integrated_gradients(model, x, steps=12, batch_size=5, device="cpu", progress=lambda *a: calls.append(a))
    assert calls == [(5, 12, None), (10, 12, None), (12, 12, None)]

    cancel, seen = threading.Event(), []

    def stop_after_first(done, total, _partial):
        seen.append(done)
        cancel.set()

    partial = integrated_gradients(model, x, steps=12, batch_size=5, device="cpu", progress=stop_after_first,
                                   cancel=cancel)
    assert seen == [5]
    assert not partial.complete and np.isnan(partial.maps).all(), "part of a path integral is no map: NaN"
    assert "attributions" not in partial.extra and partial.params.steps == 12


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"steps": 0}, ValueError, "steps=0"),
        ({"steps": 2.5}, ValueError, "steps=2.5"),
        ({"steps": True}, ValueError, "steps=True"),
        ({"steps": "50"}, ValueError, "steps='50'"),
        ({"rule": "simpson"}, ValueError, "rule='simpson'"),
        ({"rule": "riemann_trapezoid", "steps": 1}, ValueError, "steps=1 is not allowed with rule='riemann_trapezoid'"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"baseline": "blur"}, TypeError, "baseline='blur'"),
        ({"baseline": None}, TypeError, "baseline=None"),
        ({"baseline": True}, TypeError, "baseline=True"),
        ({"baseline": {"r": 0}}, TypeError, "baseline: a dict"),
        ({"baseline": float("nan")}, ValueError, "baseline: holds NaN"),
        ({"baseline": (0.1, 0.2)}, ValueError, "baseline: shape (2,)"),
        ({"baseline": np.zeros((3, 16, 16))}, ValueError, "baseline: shape (3, 16, 16) does not fit the input (3, 32, 32)"),
    ],
)
def test_bad_parameters_are_refused_naming_them(x, kwargs, error, words):
    with pytest.raises(error) as info:
        integrated_gradients(Tiny().eval(), x, device="cpu", **kwargs)
    assert words in str(info.value)  # each names the parameter (and says what is allowed)
    assert "use " in str(info.value)


class Sqrt(nn.Module):
    """sqrt of [0, 1] pixels: finite scores, an infinite gradient at 0 (the black baseline, alpha = 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x.flatten(1)[:, :4])


def test_nan_scores_gradients_and_detached_models_are_refused(x):
    with pytest.raises(ValueError, match="gradient of class 0's score holds NaN or infinite values"):
        integrated_gradients(Sqrt(), x, 0, rule="riemann_left", steps=4, device="cpu")
    with pytest.raises(ValueError, match="NaN or infinite scores on the baseline"):
        integrated_gradients(lambda_module(lambda b: b.flatten(1)[:, :3].log()), x, 0, steps=4, device="cpu")
    with pytest.raises(ValueError, match="does not require grad"):
        integrated_gradients(lambda_module(lambda b: b.flatten(1)[:, :3].detach()), x, 0, steps=4, device="cpu")
    with pytest.raises(TypeError, match="progress=5 is not allowed"):
        integrated_gradients(Tiny().eval(), x, progress=5, device="cpu")


def lambda_module(fn) -> nn.Module:
    class Wrapped(nn.Module):
        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return fn(batch)

    return Wrapped()

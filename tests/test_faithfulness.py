"""Deletion / insertion curves on a linear model, where the ideal order and the
curves are known by hand; the AUC table and compare_methods."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from occlusion_widget.methods import (
    METHODS,
    Cancelled,
    auc,
    compare_methods,
    comparison_figure,
    deletion_insertion,
    faithfulness_table,
    saliency,
)


class Linear(nn.Module):
    """logits = [sum(w * x), 0]: p(class 0) = sigmoid(sum(w * x))."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)

    def forward(self, x):
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


FILL = 0.25
STEPS = 4


@pytest.fixture
def setup():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, generator=gen)
    w = torch.randn(2, 3, 4, generator=gen) * 0.5
    contributions = (w * (x - FILL)).sum(0).double().numpy()  # each pixel's exact share of the logit
    return Linear(w), x, w, contributions


def hand_curves(x, w, contributions, order):
    """Logit after removing / revealing the first k pixels of ``order`` (k = 0, 3, 6, 9, 12)."""
    base = float((w * x).sum())
    fill_score = float((w * FILL).sum())
    ks = [0, 3, 6, 9, 12]
    sorted_c = contributions.flatten()[order]
    deletion = np.array([base - sorted_c[:k].sum() for k in ks])
    insertion = np.array([fill_score + sorted_c[:k].sum() for k in ks])
    return deletion, insertion


def close(actual, expected):
    """Equal to float32 precision, relative to the curve's magnitude (a logit can cross 0)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def trapezoid(y):
    return sum((y[i] + y[i + 1]) / 2 * 0.25 for i in range(4))


def test_linear_logit_curves_and_auc_by_hand(setup):
    model, x, w, contributions = setup
    curve = deletion_insertion(model, x, contributions, target=0, steps=STEPS, mask_value=FILL, output="logit",
                               device="cpu")
    order = np.argsort(-contributions.flatten(), kind="stable")
    deletion, insertion = hand_curves(x, w, contributions, order)
    np.testing.assert_allclose(curve.fractions, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(curve.n_pixels, [0, 3, 6, 9, 12])
    close(curve.deletion_scores, deletion)
    close(curve.insertion_scores, insertion)
    scale = max(np.abs(deletion).max(), np.abs(insertion).max())
    assert curve.deletion_auc == pytest.approx(trapezoid(deletion), rel=1e-5, abs=1e-6 * scale)
    assert curve.insertion_auc == pytest.approx(trapezoid(insertion), rel=1e-5, abs=1e-6 * scale)
    assert curve.difference == pytest.approx(trapezoid(insertion) - trapezoid(deletion), rel=1e-5, abs=1e-6 * scale)
    assert curve.output == "logit" and curve.target == 0


def test_linear_probability_curves_by_hand(setup):
    model, x, w, contributions = setup
    curve = deletion_insertion(model, x, torch.from_numpy(contributions), 0, steps=STEPS, mask_value=FILL,
                               device="cpu")  # the class probability is the default
    order = np.argsort(-contributions.flatten(), kind="stable")
    deletion, insertion = (1 / (1 + np.exp(-c)) for c in hand_curves(x, w, contributions, order))
    np.testing.assert_allclose(curve.deletion_scores, deletion, rtol=1e-5)
    np.testing.assert_allclose(curve.insertion_scores, insertion, rtol=1e-5)
    assert curve.deletion_auc == pytest.approx(trapezoid(deletion), rel=1e-5)


def test_the_exact_contributions_are_the_best_order(setup):
    """Deleting in order of w * (x - fill) lowers the score fastest at every step; any other map does no better."""
    model, x, _, contributions = setup
    ideal = deletion_insertion(model, x, contributions, 0, steps=12, mask_value=FILL, device="cpu")
    reverse = deletion_insertion(model, x, -contributions, 0, steps=12, mask_value=FILL, device="cpu")
    rng = np.random.default_rng(0)
    for other in [reverse] + [deletion_insertion(model, x, rng.random((3, 4)), 0, steps=12, mask_value=FILL,
                                                 device="cpu") for _ in range(3)]:
        assert np.all(ideal.deletion_scores <= other.deletion_scores + 1e-6)
        assert np.all(ideal.insertion_scores >= other.insertion_scores - 1e-6)
        assert ideal.deletion_auc <= other.deletion_auc + 1e-7
        assert ideal.insertion_auc >= other.insertion_auc - 1e-7
    assert ideal.deletion_auc < reverse.deletion_auc and ideal.insertion_auc > reverse.insertion_auc


def test_ties_keep_raster_order(setup):
    model, x, w, contributions = setup
    curve = deletion_insertion(model, x, np.ones((3, 4)), 0, steps=STEPS, mask_value=FILL, output="logit",
                               device="cpu")
    deletion, insertion = hand_curves(x, w, contributions, np.arange(12))
    close(curve.deletion_scores, deletion)
    close(curve.insertion_scores, insertion)


def test_large_ties_keep_raster_order_at_every_step():
    """64 pixels in 3 tied levels: an unstable sort (numpy's default introsort) reorders pixels within a
    level, which changes the curve at steps inside a level; one pixel per step sees every position."""
    gen = torch.Generator().manual_seed(4)
    x, w = torch.rand(2, 8, 8, generator=gen), torch.randn(2, 8, 8, generator=gen)
    levels = (np.arange(64) * 7) % 3  # 0, 1, 2, 0, 1, 2, ... ties within each level
    curve = deletion_insertion(Linear(w), x, levels.reshape(8, 8).astype(float), 0, steps=64, mask_value=FILL,
                               output="logit", device="cpu")
    order = np.concatenate([np.flatnonzero(levels == v) for v in (2, 1, 0)])  # highest level first, raster order
    contributions = (w * (x - FILL)).sum(0).double().numpy().flatten()[order]
    base, fill_score = float((w * x).sum()), float((w * FILL).sum())
    deletion = base - np.concatenate([[0.0], np.cumsum(contributions)])
    insertion = fill_score + np.concatenate([[0.0], np.cumsum(contributions)])
    scale = np.abs(deletion).max()
    np.testing.assert_allclose(curve.deletion_scores, deletion, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(curve.insertion_scores, insertion, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("mask_value", ["auto", [0.1, 0.9], "blur", 0.0])
def test_the_fill_follows_mask_value(setup, mask_value):
    model, x, w, _ = setup
    curve = deletion_insertion(model, x, np.random.default_rng(1).random((3, 4)), 0, steps=3, mask_value=mask_value,
                               mask_size=2, output="logit", device="cpu")
    base = float((w * x).sum())
    tol = dict(rel=1e-5, abs=1e-6 * abs(base))
    assert curve.deletion_scores[0] == pytest.approx(base, **tol)
    assert curve.insertion_scores[-1] == pytest.approx(base, **tol)
    assert curve.deletion_scores[-1] == pytest.approx(curve.insertion_scores[0], **tol)
    if mask_value == "auto":
        fill = x.mean(dim=(1, 2), keepdim=True)
    elif mask_value == "blur":  # a blurred copy: neither the input nor a constant
        assert curve.deletion_scores[-1] != pytest.approx(base, **tol)
        return
    else:
        fill = torch.tensor(mask_value, dtype=torch.float32).view(-1, 1, 1)
    assert curve.deletion_scores[-1] == pytest.approx(float((w * fill).sum()), **tol)


def test_batching_progress_and_cancel(setup):
    model, x, _, contributions = setup
    one = deletion_insertion(model, x, contributions, 0, steps=STEPS, batch_size=1, device="cpu")
    calls = []
    many = deletion_insertion(model, x, contributions, 0, steps=STEPS, batch_size=4, device="cpu",
                              progress=lambda done, total, _: calls.append((done, total)))
    np.testing.assert_allclose(one.deletion_scores, many.deletion_scores, rtol=1e-6)
    assert calls == [(4, 8), (8, 8)]  # 2 * steps distinct images: the input and the fill are shared
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        deletion_insertion(model, x, contributions, 0, steps=STEPS, batch_size=2, device="cpu", cancel=cancel,
                           progress=lambda *a: cancel.set())


@pytest.mark.parametrize("kwargs, match", [
    (dict(saliency_map=np.ones((4, 3))), "shape"),
    (dict(saliency_map=np.full((3, 4), np.nan)), "NaN"),
    (dict(target=5), "outside"),
    (dict(steps=0), "steps"),
    (dict(mask_value="zero"), "mask_value"),
])
def test_errors(setup, kwargs, match):
    model, x, _, contributions = setup
    args = dict(saliency_map=contributions, target=0) | kwargs
    with pytest.raises(ValueError, match=match):
        deletion_insertion(model, x, args.pop("saliency_map"), args.pop("target"), device="cpu", **args)


def test_auc_trapezoid():
    assert auc(np.array([0, 0.5, 1]), np.array([1, 1, 0])) == pytest.approx(0.75)


def test_table_scores_arrays_and_results(setup):
    model, x, _, contributions = setup
    sal = saliency(model, x, targets=[1, 0], device="cpu")
    table = faithfulness_table(model, x, {"exact": contributions, "saliency": sal}, 0, label="zero",
                               steps=STEPS, mask_value=FILL, device="cpu")
    assert list(table.curves) == ["exact", "saliency"]
    assert table.curves["saliency"].deletion_auc == pytest.approx(
        deletion_insertion(model, x, sal.maps[1], 0, steps=STEPS, mask_value=FILL, device="cpu").deletion_auc)
    assert table.best()["deletion"] == "exact"
    md = table.to_markdown()
    assert md.count("\n") == 3 and "| exact |" in md and "deletion AUC" in md
    assert "zero" in table._repr_markdown_() and "saliency" in str(table)
    with pytest.raises(ValueError, match="not among"):
        faithfulness_table(model, x, {"saliency": sal}, 3, steps=STEPS, device="cpu")


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 4),
    ).eval()


def test_compare_methods_every_registered_method():
    model = tiny_cnn()
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    stages = []
    comp = compare_methods(model, x, mask_size=4, stride=4, mask_value=-3.0, n_samples=3, steps=4, device="cpu",
                           progress=lambda done, total, stage: stages.append((done, total, stage)))
    probs = model(x[None]).softmax(1)[0].detach()
    fill_probability = float(model(torch.full((1, 3, 16, 16), -3.0)).softmax(1)[0, comp.target].detach())
    assert abs(fill_probability - comp.probability) > 1e-3  # so the ends below tell the images apart
    assert comp.target == int(probs.argmax()) and comp.probability == pytest.approx(float(probs.max()), rel=1e-5)
    assert list(comp.results) == list(METHODS) == list(comp.table.curves)
    for method in METHODS:
        assert comp.map(method).shape == (16, 16)
        assert comp.results[method].targets.tolist() == [comp.target]
        curve = comp.table.curves[method]
        assert curve.deletion_scores[0] == pytest.approx(comp.probability, rel=1e-4)
        # Every curve ends at the fill image (mask_value=-3: every pixel -3).
        assert curve.deletion_scores[-1] == pytest.approx(fill_probability, rel=1e-4)
        assert curve.insertion_scores[0] == pytest.approx(fill_probability, rel=1e-4)
        assert curve.deletion_auc == pytest.approx(auc(curve.fractions, curve.deletion_scores), rel=1e-6)
    assert comp.results["grad_cam"].grid.shape == (1, 8, 8)
    assert [s for _, _, s in stages] == list(METHODS) + [f"{m}/faithfulness" for m in METHODS]
    assert len(METHODS) == 5 and "integrated_gradients" in METHODS, "the registry's methods, IG included"
    assert stages[-1][:2] == (10, 10)
    fig = comparison_figure(comp)
    assert len(fig.axes) == 10
    ig_panel = fig.axes[METHODS.index("integrated_gradients")].images[-1]
    assert ig_panel.norm.vmin == -ig_panel.norm.vmax, "signed maps (IG) on a scale centred on 0"
    assert fig.axes[METHODS.index("grad_cam")].images[-1].norm.vmin == 0
    assert fig.axes[METHODS.index("integrated_gradients")].get_title().startswith("Integrated Gradients")

    only = compare_methods(model, x, target=1, methods=["saliency", "grad_cam"], steps=2, device="cpu")
    assert list(only.results) == ["saliency", "grad_cam"] and only.target == 1
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        compare_methods(model, x, steps=2, device="cpu", cancel=cancel)
    with pytest.raises(ValueError, match="methods"):
        compare_methods(model, x, methods=["lime"], device="cpu")


def test_compare_methods_takes_each_methods_own_parameters():
    from occlusion_widget.methods import integrated_gradients, smoothgrad

    model = tiny_cnn()
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))
    comp = compare_methods(model, x, methods=["integrated_gradients", "smoothgrad"], steps=2, device="cpu",
                           n_samples=2, method_params={"integrated_gradients": {"steps": 4, "baseline": 0.5},
                                                       "smoothgrad": {"noise_level": 0.3}})
    ig = integrated_gradients(model, x, comp.target, steps=4, baseline=0.5, device="cpu")
    sg = smoothgrad(model, x, comp.target, n_samples=2, noise_level=0.3, device="cpu")
    np.testing.assert_allclose(comp.map("integrated_gradients"), ig.maps[0], rtol=1e-5,
                               atol=1e-5 * np.abs(ig.maps).max())
    np.testing.assert_allclose(comp.map("smoothgrad"), sg.maps[0], rtol=1e-5, atol=1e-5 * np.abs(sg.maps).max())
    assert comp.results["integrated_gradients"].params.steps == 4, "IG's steps, not the curves' steps=2"
    with pytest.raises(TypeError, match="n_sample"):
        compare_methods(model, x, methods=["smoothgrad"], method_params={"smoothgrad": {"n_sample": 3}})
    with pytest.raises(ValueError, match="not among methods"):
        compare_methods(model, x, methods=["saliency"], method_params={"grad_cam": {}})

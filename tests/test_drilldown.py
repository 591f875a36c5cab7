"""Approximate drill-down maps: exact where refined, cheap, and close to the exact map."""

import numpy as np
import pytest
import torch
import torchvision
from helpers import CountingModule, LinearScore, small_cnn
from torch import nn

from occlusion_widget.engine.drilldown import drilldown_sensitivity, map_agreement
from occlusion_widget.engine.sweep import occlusion_sensitivity
from occlusion_widget.models import Normalize

pytestmark = pytest.mark.usefixtures("one_thread")


def _blob_model(size: int = 48) -> nn.Module:
    """A linear score whose weight is a Gaussian blob plus a weaker one: a smooth map with one peak."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    blob = torch.exp(-((yy - 30) ** 2 + (xx - 14) ** 2) / 40) + 0.3 * torch.exp(-((yy - 10) ** 2 + (xx - 36) ** 2) / 60)
    return LinearScore(blob.expand(3, size, size))


def test_fraction_one_is_the_exact_map():
    torch.manual_seed(0)
    model, x = small_cnn(), torch.rand(3, 32, 32)
    exact = occlusion_sensitivity(model, x, [1, 3], mask_size=6, stride=3, output="logit")
    approx = drilldown_sensitivity(model, x, [1, 3], fraction=1.0, mask_size=6, stride=3, output="logit")
    assert approx.grid.shape == exact.grid.shape
    np.testing.assert_allclose(approx.grid, exact.grid, rtol=1e-5, atol=1e-6 * np.abs(exact.grid).max())
    np.testing.assert_array_equal(approx.boxes, exact.boxes)
    assert approx.computed.all() and approx.params.strategy == "drilldown"
    agreement = map_agreement(approx, exact)
    assert agreement["pearson"] == pytest.approx(1.0, abs=1e-5) and agreement["top_overlap"] == 1.0


def test_refined_positions_are_exact_and_fewer_positions_run():
    torch.manual_seed(1)
    x = 0.8 + 0.05 * torch.rand(3, 48, 48)  # occluding with 0 removes the blob's evidence
    model = _blob_model()
    exact = occlusion_sensitivity(model, x, 0, mask_size=8, stride=2, output="logit", mask_value=0.0)
    counting = CountingModule(model)
    approx = drilldown_sensitivity(counting, x, 0, fraction=0.25, coarse_factor=2, mask_size=8, stride=2,
                                   output="logit", mask_value=0.0, batch_size=64)
    info = approx.extra["drilldown"]
    n = info["fine_positions"]
    assert n == exact.grid[0].size
    assert info["coarse_positions"] + info["refined_positions"] <= int(np.ceil(0.25 * n)) + info["coarse_positions"]
    evaluated = sum(counting.batch_sizes) - 2  # minus the unoccluded pass of the coarse and the refining sweep
    assert evaluated == info["coarse_positions"] + info["refined_positions"] < 0.5 * n
    # Every evaluated position holds the exact value; the rest are interpolated.
    np.testing.assert_allclose(approx.grid[:, approx.computed], exact.grid[:, approx.computed], rtol=1e-5,
                               atol=1e-6 * np.abs(exact.grid).max())
    assert (~approx.computed).sum() == info["interpolated_positions"] > 0
    # The strongest region was refined: the exact maximum is among the computed positions.
    assert approx.computed.ravel()[np.argmax(exact.grid[0])]
    agreement = map_agreement(approx, exact)
    assert agreement["pearson"] > 0.95
    assert agreement["top_overlap"] > 0.9 and 0 < agreement["top_iou"] <= agreement["top_overlap"]


def test_drilldown_on_a_cnn_agrees_with_the_exact_map():
    torch.manual_seed(2)
    net = torchvision.models.resnet18(num_classes=5)
    model = nn.Sequential(Normalize([0.5] * 3, [0.25] * 3), net).eval()
    x = torch.rand(3, 48, 48)
    exact = occlusion_sensitivity(model, x, None, mask_size=12, stride=4, output="logit")
    approx = drilldown_sensitivity(model, x, None, fraction=0.3, mask_size=12, stride=4, output="logit")
    agreement = map_agreement(approx, exact)
    assert agreement["pearson"] > 0.8
    assert agreement["top_overlap"] >= 0.5
    assert set(agreement["per_target"]) == {"pearson", "top_overlap", "top_iou"}


def test_map_agreement_of_unrelated_maps_is_low():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 40, 40)), rng.random((2, 40, 40))
    agreement = map_agreement(a, b)
    assert abs(agreement["pearson"]) < 0.2 and agreement["top_overlap"] < 0.3
    assert map_agreement(a, a)["top_iou"] == 1.0
    with pytest.raises(ValueError, match="shapes"):
        map_agreement(a, b[:, :20])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(fraction=0), ValueError, "fraction"),
    (dict(fraction=1.5), ValueError, "fraction"),
    (dict(coarse_factor=0), ValueError, "coarse_factor"),
    (dict(progress=lambda *a: None), TypeError, "progress"),
    (dict(bogus=1), TypeError, "bogus"),
])
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        drilldown_sensitivity(small_cnn(), torch.rand(3, 16, 16), 0, **kwargs)


def test_top_outputs_on_the_fine_grid():
    model, x = small_cnn(), torch.rand(3, 32, 32)
    exact = occlusion_sensitivity(model, x, [1, 3], mask_size=6, stride=3)
    approx = drilldown_sensitivity(model, x, [1, 3], fraction=0.3, mask_size=6, stride=3)
    assert approx.top_ids.shape == exact.top_ids.shape
    done = approx.computed
    assert 0 < done.sum() < done.size
    np.testing.assert_array_equal(approx.top_ids[done], exact.top_ids[done])
    np.testing.assert_allclose(approx.top_scores[done], exact.top_scores[done], rtol=1e-5)
    assert (approx.top_ids[~done] == -1).all() and np.isnan(approx.top_scores[~done]).all()

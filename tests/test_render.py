"""Static figures: colour scale from the registry (signed / sequential), captions, percentile clipping."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import tiny_model

from occlusion_widget import methods, occlusion_sensitivity
from occlusion_widget.methods.registry import METHODS
from occlusion_widget.render import caption, colour_limit, figure, figure_png, is_signed


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.rand(3, 32, 32)


def _panel(fig):
    """The map image of the first panel (the second image drawn on its axes) and its colour bar."""
    ax = fig.axes[0]
    return ax.images[-1], next(a for a in fig.axes if a.get_label() == "<colorbar>")


def test_colour_limit_without_percentile_is_the_largest_magnitude():
    values = np.array([[-3.0, 1.0], [2.0, np.nan]])
    assert colour_limit(values, signed=True) == 3.0
    assert colour_limit(values, signed=False) == 2.0
    assert colour_limit(np.zeros(4), signed=True) == 1.0, "a flat map still gets a usable scale"
    assert colour_limit(np.full(3, np.nan), signed=False) == 1.0


def test_colour_limit_clips_one_outlier_at_the_percentile():
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, size=(50, 50))
    values[7, 9] = 1e6  # one extreme value
    clipped = colour_limit(values, signed=True, percentile=99)
    assert clipped == pytest.approx(np.percentile(np.abs(values), 99), rel=1e-12)
    assert 0.9 < clipped < 1.0, "the scale follows the bulk of the map, not the outlier"
    assert colour_limit(values, signed=True, percentile=100) == 1e6
    positive = np.abs(values)
    assert colour_limit(positive, signed=False, percentile=99) == pytest.approx(np.percentile(positive, 99), rel=1e-12)


@pytest.mark.parametrize("bad", [0, -5, 100.5, float("nan"), True, "99"])
def test_percentile_outside_0_100_is_refused(bad, x):
    with pytest.raises(ValueError, match=r"percentile=.*\(0, 100\]"):
        colour_limit(np.ones(3), signed=True, percentile=bad)
    res = occlusion_sensitivity(tiny_model(), x, mask_size=8, stride=8)
    with pytest.raises(ValueError, match="percentile="):
        figure(res, percentile=bad)


def test_figure_with_percentile_saturates_and_says_so(x):
    res = occlusion_sensitivity(tiny_model(), x, mask_size=8, stride=8)
    maps = res.maps.copy()
    maps[0, 3, 3] = 100 * np.abs(maps).max()
    res = replace(res, maps=maps)
    image, bar = _panel(figure(res))
    assert image.norm.vmax == pytest.approx(np.abs(maps[0]).max()) and image.norm.vmin == -image.norm.vmax
    assert "clipped" not in bar.get_ylabel()
    image, bar = _panel(figure(res, percentile=99))
    assert image.norm.vmax == pytest.approx(colour_limit(maps[0], True, 99))
    assert image.norm.vmax < np.abs(maps[0]).max() / 10
    assert "clipped at the 99th percentile" in bar.get_ylabel()
    assert "clipped at the 99.5th percentile" in _panel(figure(res, percentile=99.5))[1].get_ylabel()


def test_scale_and_caption_come_from_the_registry(x):
    model = tiny_model()
    occ = occlusion_sensitivity(model, x, mask_size=8, stride=8)
    cam = methods.grad_cam(model, x)
    ig = methods.integrated_gradients(model, x, steps=4)
    assert is_signed(occ) and is_signed(ig) and not is_signed(cam)
    assert caption(occ) == "score drop when occluded"
    assert caption(cam) == f"{METHODS['grad_cam'].title} attribution"
    image, _ = _panel(figure(ig))
    assert image.norm.vmin == -image.norm.vmax, "Integrated Gradients' signed maps are centred on 0"
    image, _ = _panel(figure(cam))
    assert image.norm.vmin == 0 and image.get_cmap().name == "inferno"


def test_an_unknown_method_is_scaled_by_the_sign_of_its_data(x):
    sal = methods.saliency(tiny_model(), x)
    mine = replace(sal, method="my_method")
    assert not is_signed(mine) and caption(mine) == "my-method attribution"
    assert is_signed(replace(mine, maps=mine.maps - mine.maps.mean()))


def test_a_cancelled_gradient_result_draws_as_incomplete(x):
    sal = methods.saliency(tiny_model(), x)
    partial = replace(sal, complete=False)
    assert "incomplete" in figure(partial)._suptitle.get_text()
    assert figure_png(partial)[:4] == b"\x89PNG"

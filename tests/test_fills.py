"""Soft (Gaussian) masks and inpainting as a fill."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import LinearScore
from skimage.restoration import inpaint_biharmonic

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.engine.fills import gaussian_window, inpaint


def _axis_window(n: int, start: int, m: int) -> np.ndarray:
    """The documented 1-D window: (g - g(m/2)) / (1 - g(m/2)) clipped at 0, sigma = m / 4, centre start + m/2 - 0.5."""
    t = np.arange(n) - (start + m / 2 - 0.5)
    sigma = m / 4
    g = np.exp(-0.5 * (t / sigma) ** 2)
    edge = np.exp(-0.5 * (m / 2 / sigma) ** 2)
    return np.clip((g - edge) / (1 - edge), 0, None)


def test_gaussian_window_weights():
    w = gaussian_window(torch.tensor([[4, 6], [-3, 10]]), (7, 8), (20, 20)).numpy()
    assert w.shape == (2, 20, 20) and w.min() >= 0 and w.max() <= 1
    first = w[0]
    odd = gaussian_window(torch.tensor([[4, 4]]), (7, 7), (20, 20)).numpy()[0]
    assert odd[7, 7] == pytest.approx(1.0) and odd.argmax() == 7 * 20 + 7  # an odd mask peaks at 1 in its centre
    assert first[7, 9] == pytest.approx(first[7, 10])  # even width 8: symmetric about 9.5
    outside = np.ones((20, 20), bool)
    outside[4:11, 6:14] = False
    assert (first[outside] == 0).all() and (first[~outside] > 0).all()  # nothing changes outside the window
    np.testing.assert_allclose(first, np.outer(_axis_window(20, 4, 7), _axis_window(20, 6, 8)), rtol=1e-5, atol=1e-7)
    # A window that starts above the input (a clipped edge mask) keeps its centre there.
    np.testing.assert_allclose(w[1], np.outer(_axis_window(20, -3, 7), _axis_window(20, 10, 8)), rtol=1e-5, atol=1e-7)
    row = first[7, 6:14]
    assert (np.diff(row[:4]) > 0).all() and (np.diff(row[4:]) < 0).all()  # rises to the centre, falls after


def test_gaussian_masks_in_the_sweep_blend_the_fill():
    g = torch.Generator().manual_seed(0)
    x, weight = torch.rand(3, 16, 16, generator=g), torch.randn(3, 16, 16, generator=g)
    res = occlusion_sensitivity(LinearScore(weight), x, 0, mask_size=6, stride=5, mask_value=0.25,
                                mask_shape="gaussian", output="logit")
    assert res.params.mask_shape == "gaussian" and res.params.strategy == "full"
    starts = [s - 3 for s in range(0, 16, 5)]  # clipping: centres 0, 5, 10, 15
    want = np.zeros((4, 4))
    for i, y in enumerate(starts):
        for j, c in enumerate(starts):
            w = np.outer(_axis_window(16, y, 6), _axis_window(16, c, 6))
            want[i, j] = float((weight.numpy() * w * (x.numpy() - 0.25)).sum())  # drop = sum(a * w * (x - fill))
    np.testing.assert_allclose(res.grid[0], want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    iy, ix = np.unravel_index(np.argmax(want), want.shape)
    w = np.outer(_axis_window(16, starts[iy], 6), _axis_window(16, starts[ix], 6))
    np.testing.assert_allclose(res.most_important(0).occluded_image, x.numpy() * (1 - w) + 0.25 * w, atol=1e-6)


def test_inpaint_fill_matches_smooth_surroundings():
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    image = np.stack([xx, yy, 0.5 * xx + 0.3 * yy]).astype(np.float32)  # a smooth gradient
    mask = np.zeros((40, 40), bool)
    mask[12:24, 15:27] = True
    filled = inpaint(image, mask)
    assert np.abs(filled - image)[:, mask].max() < 1e-3  # a linear ramp is continued inside the hole
    assert (filled[:, ~mask] == image[:, ~mask]).all()
    grey_error = np.abs(image[:, mask] - image.mean(axis=(1, 2))[:, None]).max()
    assert grey_error > 0.1  # what a constant fill would get wrong
    # The crop around the hole gives what inpainting the whole image gives (a smooth image: scikit-image
    # clips to the range of what it is given, and the crop's range is narrower than a noisy image's).
    noisy = (0.5 + 0.2 * np.sin(3.1 * xx + 5 * yy) * np.cos(4 * xx)[None] * np.array([1, -0.5, 0.8])[:, None, None])
    noisy = noisy.astype(np.float32)
    whole = np.moveaxis(inpaint_biharmonic(np.moveaxis(noisy, 0, -1).astype(np.float64), mask, channel_axis=-1), -1, 0)
    np.testing.assert_allclose(inpaint(noisy, mask), whole, rtol=1e-5, atol=1e-6)


def test_inpaint_in_the_sweep_and_its_refusals():
    g = torch.Generator().manual_seed(1)
    x, weight = torch.rand(3, 16, 16, generator=g), torch.randn(3, 16, 16, generator=g)
    res = occlusion_sensitivity(LinearScore(weight), x, 0, mask_size=6, stride=5, mask_value="inpaint",
                                output="logit", batch_size=5)
    assert res.params.mask_value == "inpaint"
    want = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            y0, x0, y1, x1 = res.boxes[i, j]
            mask = np.zeros((16, 16), bool)
            mask[y0:y1, x0:x1] = True
            want[i, j] = float((weight.numpy() * (x.numpy() - inpaint(x.numpy(), mask))).sum())
    np.testing.assert_allclose(res.grid[0], want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    best = res.most_important(0)
    mask = np.zeros((16, 16), bool)
    mask[best.box[0]:best.box[2], best.box[1]:best.box[3]] = True
    np.testing.assert_allclose(best.occluded_image, inpaint(x.numpy(), mask), atol=1e-6)
    with pytest.raises(ValueError, match="strategy='incremental' needs box masks"):
        occlusion_sensitivity(LinearScore(weight), x, 0, mask_value="inpaint", strategy="incremental")
    with pytest.raises(ValueError, match="'inpaint'"):
        occlusion_sensitivity(LinearScore(weight), x, 0, mask_value="paint")
    with pytest.raises(ValueError, match="mask_shape='round' is not allowed"):
        occlusion_sensitivity(LinearScore(weight), x, 0, mask_shape="round")

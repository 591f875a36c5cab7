"""Exact values: a linear score, where every change is computable by hand."""

import numpy as np
import pytest
import torch
from helpers import LinearScore

from occlusion_widget import occlusion_sensitivity


def hand_spans(n: int, m: int, s: int, clipping: bool) -> list[tuple[int, int]]:
    """Mask extents along one axis, written straight from the MATLAB semantics."""
    if clipping:
        return [(max(0, c - m // 2), min(n, c - m // 2 + m)) for c in range(0, n, s)]
    return [(a, a + m) for a in range(0, n - m + 1, s)]


def hand_grid(x, w, fill, mask, stride, clipping):
    """change = sum over the box of w * (x - fill)."""
    _, h, wd = x.shape
    ys = hand_spans(h, mask[0], stride[0], clipping)
    xs = hand_spans(wd, mask[1], stride[1], clipping)
    grid = np.zeros((len(ys), len(xs)))
    for i, (y0, y1) in enumerate(ys):
        for j, (x0, x1) in enumerate(xs):
            grid[i, j] = (w[:, y0:y1, x0:x1] * (x[:, y0:y1, x0:x1] - fill[:, None, None])).sum()
    return grid


@pytest.mark.parametrize("clipping", [True, False])
@pytest.mark.parametrize(
    "shape,mask,stride",
    [
        ((3, 20, 20), (5, 5), (3, 3)),  # odd mask
        ((3, 20, 20), (4, 4), (2, 2)),  # even mask
        ((3, 17, 29), (6, 3), (4, 5)),  # non-square image, rectangular mask and stride
        ((1, 12, 9), (12, 2), (1, 2)),  # mask as tall as the image
    ],
)
def test_linear_grid_matches_hand_computation(shape, mask, stride, clipping):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=gen)
    w = torch.randn(shape, generator=gen)
    fill = x.mean(dim=(1, 2))
    result = occlusion_sensitivity(
        LinearScore(w), x, targets=[0, 1], mask_size=mask, stride=stride,
        mask_clipping=clipping, output="logit", device="cpu", batch_size=7,
    )
    expected = hand_grid(x.double().numpy(), w.double().numpy(), fill.double().numpy(), mask, stride, clipping)
    assert result.grid.shape == (2, *expected.shape)
    tol = dict(rtol=1e-5, atol=1e-6 * np.abs(expected).max())  # float32 sums: error relative to the largest
    np.testing.assert_allclose(result.grid[0], expected, **tol)
    np.testing.assert_allclose(result.grid[1], -expected, **tol)
    np.testing.assert_allclose(result.base_scores[0], float((x * w).sum()), rtol=1e-5)
    assert result.complete and result.computed.all()


def test_scalar_and_per_channel_mask_values():
    gen = torch.Generator().manual_seed(2)
    x, w = torch.rand(3, 10, 10, generator=gen), torch.randn(3, 10, 10, generator=gen)
    for value, fill in [(0.5, np.full(3, 0.5)), ([0.1, 0.2, 0.3], np.array([0.1, 0.2, 0.3]))]:
        result = occlusion_sensitivity(LinearScore(w), x, 0, mask_size=3, stride=2, mask_value=value, output="logit")
        expected = hand_grid(x.double().numpy(), w.double().numpy(), fill, (3, 3), (2, 2), True)
        np.testing.assert_allclose(result.grid[0], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
        np.testing.assert_allclose(result.params.mask_value, fill, rtol=1e-6)


def test_auto_parameters_follow_matlab_rule():
    x = torch.rand(3, 224, 160)
    result = occlusion_sensitivity(LinearScore(torch.ones_like(x)), x, 0, output="logit", upsampling="none")
    assert result.params.mask_size == (45, 32)  # round(0.2 * N)
    assert result.params.stride == (22, 16)  # round(0.1 * N)
    assert result.grid.shape == (1, 11, 10)  # centres 0, 22, ..., 220 and 0, 16, ..., 144
    np.testing.assert_allclose(result.params.mask_value, x.mean(dim=(1, 2)).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(result.boxes[0, 0], [0, 0, 23, 16])  # clipped at the corner
    np.testing.assert_array_equal(result.boxes[-1, -1], [220 - 22, 144 - 16, 224, 160])


def test_one_dimensional_signal():
    gen = torch.Generator().manual_seed(3)
    x, w = torch.rand(2, 50, generator=gen), torch.randn(2, 50, generator=gen)
    result = occlusion_sensitivity(LinearScore(w), x, 0, mask_size=7, stride=3, output="logit")
    expected = hand_grid(x[:, None].double().numpy(), w[:, None].double().numpy(),
                         x.mean(1).double().numpy(), (1, 7), (1, 3), True)[0]
    assert result.is_signal
    assert result.grid.shape == (1, len(expected)) and result.maps.shape == (1, 50)
    assert result.boxes.shape == (len(expected), 2)
    np.testing.assert_allclose(result.grid[0], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert result.params.mask_size == (7,) and result.params.stride == (3,)

"""3-D volumes (C, D, H, W): exact values on a linear model, the N-axis grid, errors, and MONAI parity."""

import itertools
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import LinearScore
from torch import nn

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.engine.grid import MaskGrid, axis_spans, lattice_steps, resolve_sizes
from occlusion_widget.engine.volume import from_monai, monai_map


def whole_volume_conv(w: torch.Tensor) -> nn.Module:
    """A Conv3d whose kernel is the whole volume: outputs [sum(w * x), -sum(w * x)] (a linear score)."""
    c, d, h, wd = w.shape
    conv = nn.Conv3d(c, 2, (d, h, wd), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([w, -w]))
    return nn.Sequential(conv, nn.Flatten())


def hand_spans(n, m, s, clipping):
    """Mask extents along one axis, straight from the MATLAB semantics (as in test_engine_exact)."""
    if clipping:
        return [(max(0, c - m // 2), min(n, c - m // 2 + m)) for c in range(0, n, s)]
    return [(a, a + m) for a in range(0, n - m + 1, s)]


def hand_grid(x, w, fill, mask, stride, clipping):
    """change = sum over the box of w * (x - fill), for every (z, y, x) position."""
    spans = [hand_spans(n, m, s, clipping) for n, m, s in zip(x.shape[1:], mask, stride, strict=True)]
    grid = np.zeros([len(a) for a in spans])
    for idx in itertools.product(*(range(len(a)) for a in spans)):
        box = (slice(None),) + tuple(slice(*spans[axis][i]) for axis, i in enumerate(idx))
        grid[idx] = (w[box] * (x[box] - fill[:, None, None, None])).sum()
    return grid, spans


def tol(expected):
    return dict(rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("clipping", [True, False])
@pytest.mark.parametrize("shape,mask,stride", [
    ((2, 7, 9, 11), (3, 4, 5), (2, 3, 4)),   # odd and even masks, a different stride per axis
    ((1, 6, 6, 6), (6, 2, 3), (1, 2, 2)),    # mask as deep as the volume
])
def test_linear_volume_matches_hand_computation(shape, mask, stride, clipping):
    gen = torch.Generator().manual_seed(1)
    x, w = torch.rand(shape, generator=gen), torch.randn(shape, generator=gen)
    fill = x.mean(dim=(1, 2, 3))
    result = occlusion_sensitivity(whole_volume_conv(w), x, targets=[0, 1], mask_size=mask, stride=stride,
                                   mask_clipping=clipping, output="logit", device="cpu", batch_size=5)
    expected, spans = hand_grid(x.double().numpy(), w.double().numpy(), fill.double().numpy(), mask, stride, clipping)
    assert result.grid.shape == (2, *expected.shape)
    np.testing.assert_allclose(result.grid[0], expected, **tol(expected))
    np.testing.assert_allclose(result.grid[1], -expected, **tol(expected))
    np.testing.assert_allclose(result.base_scores[0], float((x * w).sum()), rtol=1e-5)
    assert result.maps.shape == (2, *shape[1:]) and result.boxes.shape == (*expected.shape, 6)
    for idx in itertools.product(*(range(n) for n in expected.shape)):
        box = [spans[a][i][0] for a, i in enumerate(idx)] + [spans[a][i][1] for a, i in enumerate(idx)]
        np.testing.assert_array_equal(result.boxes[idx], box)
    assert result.params.mask_size == mask and result.params.stride == stride
    assert result.params.strategy == "full" and result.complete and result.computed.all()


@pytest.mark.parametrize("value,fill", [(0.5, np.full(2, 0.5)), ([0.1, 0.7], np.array([0.1, 0.7]))])
def test_volume_scalar_and_per_channel_fills(value, fill):
    gen = torch.Generator().manual_seed(2)
    x, w = torch.rand(2, 6, 7, 8, generator=gen), torch.randn(2, 6, 7, 8, generator=gen)
    result = occlusion_sensitivity(LinearScore(w), x, 0, mask_size=3, stride=2, mask_value=value, output="logit",
                                   input_kind="volume")
    expected, _ = hand_grid(x.double().numpy(), w.double().numpy(), fill, (3, 3, 3), (2, 2, 2), True)
    np.testing.assert_allclose(result.grid[0], expected, **tol(expected))
    np.testing.assert_allclose(result.params.mask_value, fill, rtol=1e-6)


def test_auto_sizes_per_axis_and_one_rule_for_every_rank():
    assert resolve_sizes((20, 30, 40)) == ((4, 6, 8), (2, 3, 4))
    assert resolve_sizes((20, 30, 40), (2, 3, 4), 1) == ((2, 3, 4), (1, 1, 1))
    assert resolve_sizes((224, 160)) == ((45, 32), (22, 16))  # the 2-D rule is the same function
    with pytest.raises(TypeError, match=r"mask_size=\(2, 3\).*\(d, h, w\) triple"):
        resolve_sizes((20, 30, 40), (2, 3))
    with pytest.raises(ValueError, match="larger than the input"):
        resolve_sizes((4, 30, 40), (5, 3, 3))
    x = torch.rand(1, 20, 30, 40)
    result = occlusion_sensitivity(LinearScore(torch.ones_like(x)), x, 0, output="logit", upsampling="none",
                                   input_kind="volume")
    assert result.params.mask_size == (4, 6, 8) and result.params.stride == (2, 3, 4)
    assert result.grid.shape == (1, 10, 10, 10) and result.maps.shape == result.grid.shape


def test_mask_grid_is_one_code_for_one_two_and_three_axes():
    for shape, mask, stride in [((13,), (4,), (3,)), ((9, 13), (3, 4), (2, 3)), ((5, 9, 13), (2, 3, 4), (2, 2, 3))]:
        for clipping in (True, False):
            grid = MaskGrid.build(shape, mask, stride, clipping)
            spans = [axis_spans(n, m, s, clipping) for n, m, s in zip(shape, mask, stride, strict=True)]
            assert grid.shape == tuple(len(a) for a, _ in spans) and grid.boxes.shape[-1] == 2 * len(shape)
            for idx in itertools.product(*(range(n) for n in grid.shape)):
                expected = [spans[a][0][i] for a, i in enumerate(idx)] + [spans[a][1][i] for a, i in enumerate(idx)]
                np.testing.assert_array_equal(grid.boxes[idx], expected)
            order = grid.coarse_to_fine()
            assert sorted(order.tolist()) == list(range(grid.size))
            step = lattice_steps(grid.shape)[0]
            n_coarse = int(np.prod([-(-g // step) for g in grid.shape]))
            first = np.array(np.unravel_index(order[:n_coarse], grid.shape))
            assert (first % step == 0).all()  # the coarse lattice comes first


def test_pixel_mean_most_important_and_upsampling():
    gen = torch.Generator().manual_seed(3)
    x, w = torch.rand(1, 6, 7, 8, generator=gen), torch.randn(1, 6, 7, 8, generator=gen)
    result = occlusion_sensitivity(whole_volume_conv(w), x, 0, mask_size=(3, 3, 4), stride=2, output="logit")
    # pixel_mean: every voxel's mean over the boxes that cover it, by brute force.
    total, count = np.zeros((6, 7, 8)), np.zeros((6, 7, 8))
    for idx in np.ndindex(*result.grid.shape[1:]):
        z0, y0, x0, z1, y1, x1 = result.boxes[idx]
        total[z0:z1, y0:y1, x0:x1] += result.grid[(0, *idx)]
        count[z0:z1, y0:y1, x0:x1] += 1
    expected = np.where(count > 0, total / np.maximum(count, 1), 0)
    np.testing.assert_allclose(result.pixel_mean()[0], expected, **tol(expected))
    best = result.most_important(0)
    where = np.unravel_index(int(np.argmax(result.grid[0])), result.grid.shape[1:])
    assert best.index == tuple(int(i) for i in where) and best.drop == pytest.approx(result.grid[0].max())
    np.testing.assert_array_equal(best.box, result.boxes[where])
    z0, y0, x0, z1, y1, x1 = best.box
    occluded = x.numpy().copy()
    occluded[:, z0:z1, y0:y1, x0:x1] = x.mean().item()
    np.testing.assert_allclose(best.occluded_image, occluded, rtol=1e-6)
    assert float((torch.as_tensor(best.occluded_image) * w).sum()) == pytest.approx(best.occluded_score, rel=1e-4)
    assert result.worst_position(0) == tuple(i * 2 for i in best.index)
    # "bicubic" (the default) on a volume is trilinear; "nearest" and "none" as in 2-D.
    assert result.params.upsampling == "trilinear"
    t = torch.from_numpy(result.grid)[None]
    trilinear = F.interpolate(t, size=(6, 7, 8), mode="trilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(result.maps, trilinear, **tol(trilinear))
    nearest = result.with_upsampling("nearest")
    np.testing.assert_allclose(nearest.maps, F.interpolate(t, size=(6, 7, 8), mode="nearest-exact")[0].numpy())
    assert result.with_upsampling("none").maps.shape == result.grid.shape
    assert result.with_upsampling("bicubic").params.upsampling == "trilinear"


def test_positions_progress_cancel_coarse_to_fine():
    x = torch.rand(1, 12, 12, 12)
    model = LinearScore(torch.randn(1, 12, 12, 12, generator=torch.Generator().manual_seed(4)))
    kw = dict(mask_size=2, stride=1, output="logit", input_kind="volume")
    full = occlusion_sensitivity(model, x, 0, upsampling="none", **kw)
    assert full.grid.shape == (1, 12, 12, 12)
    seen = []
    partial = occlusion_sensitivity(model, x, 0, batch_size=216, **kw,
                                    progress=lambda done, total, r: seen.append((done, total, r)))
    assert [d for d, _, _ in seen][-1] == 12 ** 3 and seen[0][1] == 12 ** 3
    first = seen[0][2]  # 216 positions: the 6x6x6 lattice of step 2 is done, the rest filled from it
    assert not first.complete and first.computed.sum() == 216 and np.isfinite(first.grid).all()
    assert first.computed[::2, ::2, ::2].all() and lattice_steps((12, 12, 12)) == (4, 2, 1)
    np.testing.assert_allclose(first.grid[0, 4, 4, 4], full.grid[0, 4, 4, 4], rtol=1e-6)
    assert first.grid[0, 4, 4, 5] in (full.grid[0, 4, 4, 4], full.grid[0, 4, 4, 6])  # a nearest lattice point
    np.testing.assert_allclose(partial.grid, full.grid, rtol=1e-6)
    cancel = threading.Event()
    stopped = occlusion_sensitivity(model, x, 0, batch_size=27, **kw, progress=lambda *_: cancel.set(), cancel=cancel)
    assert not stopped.complete and stopped.computed.sum() == 27 and stopped.computed[::4, ::4, ::4].all()
    chosen = np.zeros((12, 12, 12), dtype=bool)
    chosen[2:4, 5, :3] = True
    only = occlusion_sensitivity(model, x, 0, positions=chosen, **kw)
    np.testing.assert_array_equal(only.computed, chosen)
    np.testing.assert_allclose(only.grid[0][chosen], full.grid[0][chosen], rtol=1e-6)
    assert np.isnan(only.grid[0][~chosen]).all()


def test_input_kind_is_read_from_the_first_convolution_and_wrong_guesses_are_refused():
    conv3 = nn.Sequential(nn.Conv3d(2, 3, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten())
    conv2 = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    vol = torch.rand(2, 6, 7, 8)
    assert occlusion_sensitivity(conv3, vol, 0, mask_size=3, stride=3).grid.shape == (1, 2, 3, 3)
    assert occlusion_sensitivity(conv3, vol[None], 0, mask_size=3, stride=3).grid.shape == (1, 2, 3, 3)
    image_batch = torch.rand(1, 2, 7, 8)  # a Conv2d model: still a batch of one image
    assert occlusion_sensitivity(conv2, image_batch, 0, mask_size=3, stride=3).grid.shape == (1, 3, 3)
    with pytest.raises(ValueError, match=r"read as an image .*input_kind='image'.*nn\.Conv3d.*volume \(C, D, H, W\)"):
        occlusion_sensitivity(conv3, vol, input_kind="image")
    with pytest.raises(ValueError, match=r"read as a volume .*nn\.Conv2d.*an image \(C, H, W\)"):
        occlusion_sensitivity(conv2, vol[None])
    with pytest.raises(ValueError, match=r"read as an image \(C, H, W\).*nn\.Conv3d"):
        occlusion_sensitivity(conv3, vol[0, :3])
    with pytest.raises(ValueError, match=r"volume of shape \(3, 6, 7, 8\) has 3 channels.*\(2, D, H, W\)"):
        occlusion_sensitivity(conv3, torch.rand(3, 6, 7, 8))
    with pytest.raises(ValueError, match=r"input_kind='cube' is not allowed; use one of 'auto'"):
        occlusion_sensitivity(conv3, vol, input_kind="cube")
    with pytest.raises(ValueError, match=r"batch of one \(1, C, D, H, W\)"):
        occlusion_sensitivity(conv3, torch.rand(2, 2, 6, 7, 8))


@pytest.mark.parametrize("kwargs,match", [
    (dict(strategy="incremental"), "strategy='incremental' does not take volumes.*future work"),
    (dict(mask_value="blur"), "mask_value='blur' is for images"),
    (dict(mask_value="inpaint"), "mask_value='inpaint' is for images"),
    (dict(segments=np.zeros((6, 7), dtype=int)), "segments= takes a label image"),
    (dict(upsampling="bilinear"), "upsampling='bilinear' is not allowed"),
])
def test_what_volumes_refuse(kwargs, match):
    conv3 = nn.Sequential(nn.Conv3d(1, 3, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten())
    with pytest.raises(ValueError, match=match):
        occlusion_sensitivity(conv3, torch.rand(1, 6, 7, 8), 0, **kwargs)


def test_trilinear_is_refused_on_images():
    x = torch.rand(1, 8, 8)
    with pytest.raises(ValueError, match="'trilinear' is for volumes"):
        occlusion_sensitivity(LinearScore(x), x, 0, upsampling="trilinear")


def test_from_monai_parameters():
    assert from_monai((32, 32, 32), 16, 0.5, 0.0) == dict(mask_size=(16, 16, 16), stride=(8, 8, 8),
                                                           mask_clipping=False, mask_value=0.0)
    assert from_monai((16, 23, 32), (16, 8, 8), 0.6, 1.0)["stride"] == (16, 3, 3)  # int(8 * 0.4) = 3
    with pytest.raises(ValueError, match="not a multiple of the step"):
        from_monai((30, 32, 32), 16, 0.5)
    with pytest.raises(ValueError, match="mode='gaussian' has no exact counterpart"):
        from_monai((32, 32, 32), 16, 0.5, "gaussian")


def test_matches_monai_occlusion_sensitivity():
    """Logits and softmax in one run of each: MONAI's map is base - pixel_mean() where the windows coincide."""
    monai = pytest.importorskip("monai")
    from monai.networks.nets import DenseNet121
    from monai.visualize import OcclusionSensitivity

    torch.manual_seed(0)
    model = DenseNet121(spatial_dims=3, in_channels=1, out_channels=3).eval()
    x = torch.rand(1, 1, 32, 32, 32)

    def both(out):  # (N, 3) logits -> (N, 6): logits, then probabilities
        return torch.cat([out, out.softmax(1)], dim=1)

    occ = OcclusionSensitivity(model, mask_size=16, n_batch=27, verbose=False, mode=0.0, overlap=0.5, activate=both)
    with torch.no_grad():
        expected = occ(x)[0][0].numpy()  # (6, D, H, W)
    result = occlusion_sensitivity(model, x, targets=list(range(6)), output=both, device="cpu", batch_size=27,
                                   **from_monai((32, 32, 32), 16, 0.5, 0.0))
    assert result.grid.shape == (6, 3, 3, 3) and monai.__version__
    ours = monai_map(result)
    for rows in (slice(0, 3), slice(3, 6)):  # each kind relative to its own magnitude
        np.testing.assert_allclose(ours[rows], expected[rows], rtol=1e-5, atol=1e-5 * np.abs(expected[rows]).max())

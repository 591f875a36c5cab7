"""Region masks: one position per label of a label image (or SLIC superpixels), against Captum."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from captum.attr import FeatureAblation
from helpers import CountingModule, small_cnn

from occlusion_widget import occlusion_sensitivity


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))


def _labels(seed: int = 1) -> np.ndarray:
    """Irregular regions with non-contiguous label values: 9 blocks, some merged, labels scrambled."""
    blocks = np.arange(9).reshape(3, 3).repeat(8, 0).repeat(8, 1)
    blocks[blocks == 4] = 0  # one segment in two pieces
    values = np.array([70, 3, 12, 5, 70, 40, 9, 21, 33])  # any ints; 4 was merged into 0 -> 70
    return values[blocks]


@pytest.mark.parametrize("output", ["probability", "logit"])
def test_segments_equal_captum_feature_ablation(x, output):
    net = torch.nn.Sequential(small_cnn(), torch.nn.Linear(10, 10)).eval()  # large logits: drops of ~0.1
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(10) * 8)
        net[1].bias.zero_()
    labels = _labels()
    res = occlusion_sensitivity(net, x, top_k=2, segments=labels, mask_value=0.3, output=output, batch_size=3)
    ids = np.unique(labels)
    assert res.grid.shape == (2, len(ids)) and res.maps.shape == (2, 24, 24)
    np.testing.assert_array_equal(res.extra["segment_ids"], ids)

    def forward(t):
        out = net(t)
        return out.softmax(dim=1) if output == "probability" else out

    mask = torch.as_tensor(np.searchsorted(ids, labels))[None, None]
    for k, t in enumerate(res.targets.tolist()):
        theirs = FeatureAblation(forward).attribute(x[None], baselines=0.3, target=t, feature_mask=mask)[0]
        for c in range(3):  # one value per pixel, the same in every channel
            # Differences of float32 scores: rounding of the scores themselves (~1e-7 of them) bounds it.
            np.testing.assert_allclose(res.maps[k], theirs[c].numpy(), rtol=1e-5,
                                       atol=1e-6 * float(np.abs(res.base_scores).max()))
        assert float(theirs.abs().max()) > 1e-3  # a real signal, not rounding noise
    np.testing.assert_allclose(res.pixel_mean(), res.maps, rtol=0, atol=0)


def test_segments_run_in_batches_with_progress_and_cancel(x):
    net = CountingModule(small_cnn())
    labels = _labels()
    seen = []
    res = occlusion_sensitivity(net, x, top_k=3, segments=labels, batch_size=3,
                                progress=lambda done, total, partial: seen.append((done, total, partial.complete)))
    assert net.batch_sizes == [1, 3, 3, 2] and res.grid.shape == (3, 8)  # all 3 targets from one sweep
    assert seen[-1] == (8, 8, True) and [s[0] for s in seen] == [3, 6, 8]
    cancel = threading.Event()

    def stop(done, total, partial):
        cancel.set()

    part = occlusion_sensitivity(net, x, segments=labels, batch_size=3, progress=stop, cancel=cancel)
    assert not part.complete and part.computed.sum() == 3
    assert np.isnan(part.grid[0, 3:]).all() and np.isfinite(part.grid[0, :3]).all()
    painted = part.maps[0][np.searchsorted(np.unique(labels), labels) >= 3]
    assert np.isnan(painted).all()
    best = res.most_important(0)
    j = best.index[0]
    inside = np.searchsorted(np.unique(labels), labels) == j
    assert np.allclose(best.occluded_image[:, inside], res.fill[:, inside])
    assert np.allclose(best.occluded_image[:, ~inside], x.numpy()[:, ~inside])


def test_slic_segments_and_bad_segments_are_refused(x):
    smooth = torch.zeros(3, 32, 32)
    smooth[0, :, 16:] = 1.0  # two colour halves, so SLIC has edges to follow
    smooth[1, 16:, :] = 1.0
    res = occlusion_sensitivity(small_cnn(), smooth, segments="slic", n_segments=4)
    assert res.segments.shape == (32, 32) and res.grid.shape[1] == int(res.segments.max()) + 1 >= 4
    assert res.params.segments.startswith("slic")
    for a, b in [((0, 0), (0, 31)), ((0, 0), (31, 0)), ((0, 0), (31, 31))]:  # the quadrants stay apart
        assert res.segments[a] != res.segments[b]
    with pytest.raises(ValueError, match="segments='felzenszwalb' is not allowed"):
        occlusion_sensitivity(small_cnn(), x, segments="felzenszwalb")
    with pytest.raises(ValueError, match="spatial size"):
        occlusion_sensitivity(small_cnn(), x, segments=np.zeros((5, 5), int))
    with pytest.raises(TypeError, match="int label image"):
        occlusion_sensitivity(small_cnn(), x, segments=np.zeros((24, 24)))
    with pytest.raises(ValueError, match="n_segments=0"):
        occlusion_sensitivity(small_cnn(), x, segments="slic", n_segments=0)
    with pytest.raises(ValueError, match="mask_shape='gaussian' with segments"):
        occlusion_sensitivity(small_cnn(), x, segments=_labels(), mask_shape="gaussian")

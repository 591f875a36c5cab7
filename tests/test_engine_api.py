"""The engine's contract: one sweep for all targets, bounded batches, options, errors, cancellation."""

import threading

import numpy as np
import pytest
import torch
from helpers import CountingModule, LinearScore, small_cnn
from torch import nn

from occlusion_widget import from_torchvision, occlusion_sensitivity


def test_forward_batches_do_not_grow_with_targets():
    x = torch.rand(3, 32, 32)
    counts = []
    for targets in ([0], [0, 1, 2], list(range(10))):
        model = CountingModule(small_cnn())
        result = occlusion_sensitivity(model, x, targets, mask_size=6, stride=4, batch_size=16)
        assert result.grid.shape[0] == len(targets)
        counts.append(len(model.batch_sizes))
    assert counts[0] == counts[1] == counts[2] == 1 + int(np.ceil(8 * 8 / 16))


def test_top_k_and_target_order():
    model, x = small_cnn(), torch.rand(3, 24, 24)
    probs = model(x[None]).softmax(1)[0].detach()
    top = occlusion_sensitivity(model, x, top_k=3, mask_size=6, stride=6)
    assert top.targets.tolist() == probs.topk(3).indices.tolist()
    np.testing.assert_allclose(top.base_scores, probs.topk(3).values.numpy(), rtol=1e-5)
    single = occlusion_sensitivity(model, x, mask_size=6, stride=6)
    assert single.targets.tolist() == [int(probs.argmax())]
    both = occlusion_sensitivity(model, x, [7, 2], mask_size=6, stride=6)
    alone = occlusion_sensitivity(model, x, 2, mask_size=6, stride=6)
    assert both.targets.tolist() == [7, 2]
    np.testing.assert_allclose(both.grid[1], alone.grid[0], rtol=1e-5, atol=1e-6 * np.abs(alone.grid).max())


def test_dense_stride_one_map_is_bounded_by_batch_size():
    x = torch.rand(1, 224, 224)
    model = CountingModule(LinearScore(torch.randn(1, 224, 224)), max_batch=512)
    result = occlusion_sensitivity(model, x, 0, mask_size=9, stride=1, batch_size=512, output="logit", upsampling="none")
    assert result.grid.shape == (1, 224, 224)  # 50,176 positions
    assert max(model.batch_sizes) <= 512
    assert sum(model.batch_sizes) == 50176 + 1  # + the unoccluded pass
    assert np.isfinite(result.grid).all()


def test_progress_and_coarse_to_fine_partial_results():
    model, x = small_cnn(), torch.rand(3, 40, 40)
    seen = []

    def progress(done, total, partial):
        seen.append((done, total, partial))

    result = occlusion_sensitivity(model, x, 0, mask_size=4, stride=2, batch_size=25, progress=progress)
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and dones[-1] == seen[-1][1] == 400
    first = seen[0][2]
    # The first batch holds the whole every-4th lattice (5 x 5), so the partial map already spans the image.
    assert not first.complete and first.computed.sum() == 25
    assert first.computed[::4, ::4].all() and np.isfinite(first.grid).all()
    np.testing.assert_allclose(first.grid[0][::4, ::4], result.grid[0][::4, ::4], rtol=1e-5,
                               atol=1e-6 * np.abs(result.grid).max())
    assert seen[-1][2].complete


def test_cancel_returns_partial_result_within_one_batch():
    model = CountingModule(small_cnn())
    x, cancel = torch.rand(3, 40, 40), threading.Event()

    def progress(done, total, partial):
        cancel.set()

    result = occlusion_sensitivity(model, x, 0, mask_size=4, stride=2, batch_size=30, progress=progress, cancel=cancel)
    assert not result.complete
    assert result.computed.sum() == 30 and len(model.batch_sizes) == 2
    assert np.isfinite(result.maps).all()


def test_out_of_memory_halves_the_batch_and_goes_on():
    class Fragile(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = small_cnn()
            self.sizes = []

        def forward(self, x):
            if x.shape[0] > 5:
                raise torch.OutOfMemoryError("simulated")
            self.sizes.append(x.shape[0])
            return self.inner(x)

    model, x = Fragile(), torch.rand(3, 20, 20)
    result = occlusion_sensitivity(model, x, 0, mask_size=4, stride=2, batch_size=20)
    reference = occlusion_sensitivity(model.inner, x, 0, mask_size=4, stride=2, batch_size=5)
    assert result.complete and result.params.batch_size == 5
    np.testing.assert_allclose(result.grid, reference.grid, rtol=1e-5, atol=1e-6 * np.abs(reference.grid).max())


def test_layer_channel_total_activation():
    model, x = small_cnn(), torch.rand(3, 16, 16)
    result = occlusion_sensitivity(model, x, [0, 5], layer="3", mask_size=4, stride=4, mask_value=0.0, upsampling="none")
    conv_stack = model[:4]
    base = conv_stack(x[None]).sum(dim=(2, 3))[0]
    occluded = x.clone()
    occluded[:, 2:6, 0:2] = 0.0  # position (1, 0): centre (4, 0), mask 4 -> rows [2, 6), cols [0, 2) after clipping
    after = conv_stack(occluded[None]).sum(dim=(2, 3))[0]
    expected = (base - after)[[0, 5]].detach().numpy()
    np.testing.assert_allclose(result.grid[:, 1, 0], expected, rtol=1e-4, atol=1e-5 * np.abs(base.detach().numpy()).max())
    assert result.labels == ["3[0]", "3[5]"]


def test_custom_output_callable():
    w = torch.randn(3, 8, 8)
    x = torch.rand(3, 8, 8)
    doubled = occlusion_sensitivity(LinearScore(w), x, 0, mask_size=2, stride=2, output=lambda out: 2 * out[:, :1])
    plain = occlusion_sensitivity(LinearScore(w), x, 0, mask_size=2, stride=2, output="logit")
    np.testing.assert_allclose(doubled.grid, 2 * plain.grid, rtol=1e-5, atol=1e-6 * np.abs(plain.grid).max())


def test_blur_mask_value_and_most_important():
    w = torch.zeros(3, 32, 32)
    w[:, 20:26, 8:14] = 1.0  # only this patch counts
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(5)) + 1.0
    result = occlusion_sensitivity(LinearScore(w), x, 0, mask_size=6, stride=2, mask_value=0.0,
                                   mask_clipping=False, output="logit")
    best = result.most_important(0)
    np.testing.assert_array_equal(best.box, [20, 8, 26, 14])
    assert best.drop == pytest.approx(float(x[:, 20:26, 8:14].sum()), rel=1e-5)
    assert (best.occluded_image[:, 20:26, 8:14] == 0).all()
    np.testing.assert_array_equal(best.occluded_image[:, :20], x[:, :20].numpy())

    blurred = occlusion_sensitivity(LinearScore(w), x, 0, mask_size=6, stride=2, mask_value="blur", output="logit")
    assert blurred.params.mask_value == "blur"
    assert blurred.fill.shape == x.shape and not np.allclose(blurred.fill, x.numpy())
    assert abs(blurred.fill.mean() - x.mean().item()) < 0.05  # blur keeps the colour, removes detail
    assert blurred.fill.std() < x.numpy().std()


def test_upsampling_modes_and_training_flag_restored():
    model = small_cnn().train()
    x = torch.rand(3, 30, 30)
    none = occlusion_sensitivity(model, x, 0, mask_size=6, stride=5, upsampling="none")
    nearest = occlusion_sensitivity(model, x, 0, mask_size=6, stride=5, upsampling="nearest")
    bicubic = occlusion_sensitivity(model, x, 0, mask_size=6, stride=5)
    assert model.training, "the model's train/eval state must be left as it was"
    np.testing.assert_array_equal(none.maps, none.grid)
    assert nearest.maps.shape == bicubic.maps.shape == (1, 30, 30)
    np.testing.assert_array_equal(nearest.maps[0, ::5, ::5], none.grid[0])  # nearest copies grid values
    assert set(np.unique(nearest.maps)) <= set(np.unique(none.grid))


def test_bfloat16_precision_is_close_to_float32():
    model, x = small_cnn(), torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(6))
    exact = occlusion_sensitivity(model, x, [1, 4], mask_size=8, stride=4, output="logit")
    fast = occlusion_sensitivity(model, x, [1, 4], mask_size=8, stride=4, output="logit", precision="bfloat16")
    assert fast.params.precision == "bfloat16" and fast.grid.dtype == np.float32
    assert np.corrcoef(exact.grid.ravel(), fast.grid.ravel())[0, 1] > 0.7  # bf16 keeps ~3 significant digits
    assert np.abs(exact.grid - fast.grid).max() < 0.1 * np.abs(exact.grid).max() + 1e-2


def test_pil_image_through_torchvision_adapter():
    from PIL import Image

    classifier = from_torchvision("resnet18", weights=None)
    assert len(classifier.labels) == 1000 and classifier.input_size == (224, 224)
    img = Image.fromarray((np.random.default_rng(0).random((100, 150, 3)) * 255).astype(np.uint8))
    result = occlusion_sensitivity(classifier, img, top_k=2, mask_size=112, stride=112, batch_size=8)
    assert result.image.shape == (3, 224, 224) and result.maps.shape == (2, 224, 224)
    assert result.labels == [classifier.labels[t] for t in result.targets]


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        (dict(mask_size=40), ValueError, ["mask_size", "larger"]),
        (dict(mask_size=(4, 0)), ValueError, ["mask_size", "positive"]),
        (dict(stride=0), ValueError, ["stride", "positive"]),
        (dict(stride=-2), ValueError, ["stride"]),
        (dict(stride="fine"), ValueError, ["stride", "auto"]),
        (dict(mask_size=2.5), TypeError, ["mask_size"]),
        (dict(targets=10), ValueError, ["targets", "[0, 10)"]),
        (dict(targets=[1, -1]), ValueError, ["targets"]),
        (dict(targets="cat"), TypeError, ["targets"]),
        (dict(targets=1, top_k=2), ValueError, ["top_k"]),
        (dict(top_k=11), ValueError, ["top_k"]),
        (dict(output="softmax"), ValueError, ["output", "probability"]),
        (dict(mask_value="grey"), ValueError, ["mask_value", "blur"]),
        (dict(mask_value=[0.1, 0.2]), ValueError, ["mask_value", "channels"]),
        (dict(upsampling="linear"), ValueError, ["upsampling", "bicubic"]),
        (dict(batch_size=0), ValueError, ["batch_size"]),
        (dict(mask_clipping="on"), TypeError, ["mask_clipping"]),
        (dict(layer="nope"), ValueError, ["layer", "nope"]),
        (dict(device="tpu"), ValueError, ["device"]),
        (dict(precision="float16"), ValueError, ["precision", "bfloat16"]),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs, error, words):
    targets = kwargs.pop("targets", None)
    with pytest.raises(error) as info:
        occlusion_sensitivity(small_cnn(), torch.rand(3, 32, 32), targets, **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "image,words",
    [
        (torch.full((3, 8, 8), float("nan")), ["image", "NaN"]),
        (torch.rand(2, 3, 8, 8), ["image", "batch of one"]),
        (torch.rand(8), ["image", "dimensions"]),
        (torch.randint(0, 255, (3, 8, 8)), ["image", "float"]),
        ("/no/such/file.png", ["image", "no file"]),
    ],
)
def test_bad_images_name_the_parameter(image, words):
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as info:
        occlusion_sensitivity(small_cnn(), image)
    for word in words:
        assert word in str(info.value)


def test_a_failing_model_surfaces_its_own_error():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("shapes do not match in layer 7")

    with pytest.raises(RuntimeError, match="layer 7"):
        occlusion_sensitivity(Broken(), torch.rand(3, 8, 8))


def test_positions_restricts_the_sweep():
    model = CountingModule(small_cnn())
    x = torch.rand(3, 24, 24)
    full = occlusion_sensitivity(model.inner, x, [0, 3], mask_size=4, stride=2)
    region = np.zeros(full.grid.shape[1:], bool)
    region[2:5, 3:9] = True  # 18 positions
    part = occlusion_sensitivity(model, x, [0, 3], mask_size=4, stride=2, positions=region, batch_size=8)
    assert sum(model.batch_sizes) == 1 + 18
    np.testing.assert_array_equal(part.computed, region)
    np.testing.assert_allclose(part.grid[:, region], full.grid[:, region], rtol=1e-5, atol=1e-6 * np.abs(full.grid).max())
    assert np.isnan(part.grid[:, ~region]).all()
    with pytest.raises(ValueError, match="positions"):
        occlusion_sensitivity(model, x, 0, mask_size=4, stride=2, positions=np.ones((3, 3), bool))


def _occluded_forward(model, result, iy, ix):
    """The model's probabilities with the mask at grid position (iy, ix), built here from boxes and fill."""
    y0, x0, y1, x1 = result.boxes[iy, ix]
    occluded = result.image.copy()
    occluded[:, y0:y1, x0:x1] = result.fill[:, y0:y1, x0:x1]
    with torch.no_grad():
        return model(torch.from_numpy(occluded)[None]).softmax(1)[0]


@pytest.mark.parametrize("strategy", ["full", "incremental"])
def test_top_outputs_at_each_position_match_direct_forward_passes(strategy):
    model, x = small_cnn(), torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(8))
    result = occlusion_sensitivity(model, x, 0, mask_size=8, stride=4, mask_value=0.0, strategy=strategy,
                                   batch_size=7)
    assert result.params.strategy == strategy
    gy, gx = result.grid.shape[1:]
    assert result.top_ids.shape == (gy, gx, 5) and result.top_ids.dtype == np.int64
    assert result.top_scores.shape == (gy, gx, 5) and result.top_scores.dtype == np.float32
    for iy, ix in [(0, 0), (2, 3), (gy - 1, gx - 1), (1, gx - 2)]:
        expected = _occluded_forward(model, result, iy, ix).topk(5)
        np.testing.assert_array_equal(result.top_ids[iy, ix], expected.indices.numpy())
        np.testing.assert_allclose(result.top_scores[iy, ix], expected.values.numpy(), rtol=1e-4)
    with torch.no_grad():
        base = model(x[None]).softmax(1)[0].topk(5)
    np.testing.assert_array_equal(result.base_top_ids, base.indices.numpy())
    np.testing.assert_allclose(result.base_top_scores, base.values.numpy(), rtol=1e-5)
    # The target's own column is consistent with the map: score at the position = base - drop.
    col = result.top_ids == result.targets[0]
    drop = np.broadcast_to(result.grid[0][..., None], col.shape)
    np.testing.assert_allclose(result.top_scores[col], (result.base_scores[0] - drop)[col], rtol=1e-4,
                               atol=1e-6 * np.abs(result.base_scores).max())


def test_top_outputs_with_few_outputs_signals_and_unselected_positions():
    # k = min(5, outputs): a callable with 3 columns.
    model, x = small_cnn(), torch.rand(3, 16, 16)
    three = occlusion_sensitivity(model, x, 0, mask_size=4, stride=4, output=lambda out: out[:, :3])
    assert three.top_ids.shape == (4, 4, 3) and three.base_top_ids.shape == (3,)
    assert set(np.unique(three.top_ids)) <= {0, 1, 2}
    # Not computed: -1 / NaN.
    region = np.zeros((4, 4), bool)
    region[1, 2] = True
    part = occlusion_sensitivity(model, x, 0, mask_size=4, stride=4, positions=region)
    assert (part.top_ids[~region] == -1).all() and np.isnan(part.top_scores[~region]).all()
    assert (part.top_ids[region] >= 0).all() and np.isfinite(part.top_scores[region]).all()
    # A 1-D signal: (gx, k).
    w = torch.randn(2, 30)
    signal = occlusion_sensitivity(LinearScore(w), torch.rand(2, 30), 0, mask_size=5, stride=5, output="logit")
    assert signal.top_ids.shape == (6, 2) and signal.top_scores.shape == (6, 2)
    # LinearScore's two outputs are s and -s: the best one is whichever is positive.
    expected_first = np.where(signal.base_scores[0] - signal.grid[0] >= 0, 0, 1)
    np.testing.assert_array_equal(signal.top_ids[:, 0], expected_first)

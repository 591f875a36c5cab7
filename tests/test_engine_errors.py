"""Inputs the engine must refuse loudly (never NaN maps or a raw error from deep in the network),
and inputs it must accept (numpy integers)."""

import numpy as np
import pytest
import torch
from helpers import small_cnn
from torch import nn

from occlusion_widget import occlusion_sensitivity


class DictOutput(nn.Module):
    """A segmentation-style model: {"out": (N, K, H, W), "aux": ...} like torchvision's fcn."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return {"out": y, "aux": y * 2}


class DetectionOutput(nn.Module):
    """A detection-style model: one dict of boxes/labels/scores per image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        s = self.conv(x).mean(dim=(1, 2, 3))
        return [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1), "scores": si[None]} for si in s]


class TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = small_cnn()

    def forward(self, x):
        y = self.net(x)
        return y, y


@pytest.mark.parametrize("model,words", [
    (DictOutput(), ["a dict with keys ['out', 'aux']", "output=", "out['out'].mean(dim=(2, 3))",
                    "SegmentationTarget", "DetectionTarget"]),
    (DetectionOutput(), ["a list of 2 dicts with keys ['boxes', 'labels', 'scores']", "output="]),
    (TupleOutput(), ["a tuple of 2 tensors", "output="]),
])
def test_non_tensor_model_output_says_what_it_was_and_how_to_reduce_it(model, words):
    image = torch.rand(3, 8, 8)
    if isinstance(model, DetectionOutput):
        batch = torch.stack([image, image])
        with pytest.raises(TypeError) as info:
            # The batch of two goes through score_function directly: the message counts the dicts.
            from occlusion_widget.engine.inputs import score_function
            score_function(model, "probability", None, False)[0](batch)
    else:
        with pytest.raises(TypeError) as info:  # int targets: a class index means a classifier
            occlusion_sensitivity(model, image, 0, mask_size=4, stride=4, output="probability")
    for word in words:
        assert word in str(info.value)


def test_the_suggested_callable_explains_a_dict_model():
    model, image = DictOutput(), torch.rand(3, 8, 8)
    result = occlusion_sensitivity(model, image, 1, mask_size=4, stride=4, output=lambda out: out["out"].mean(dim=(2, 3)))
    assert result.grid.shape == (1, 2, 2) and np.isfinite(result.grid).all()


class NonFinite(nn.Module):
    """small_cnn, with score 3 set to ``value`` for the inputs whose pixel (0, 0, 0) equals ``marker``."""

    def __init__(self, value: float, marker: float | None):
        super().__init__()
        self.net, self.value, self.marker = small_cnn(), value, marker

    def forward(self, x):
        out = self.net(x).clone()
        hit = torch.ones(x.shape[0], dtype=torch.bool) if self.marker is None else x[:, 0, 0, 0] == self.marker
        out[hit, 3] = self.value
        return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_scores_on_the_base_image_are_refused(value):
    with pytest.raises(ValueError) as info:
        occlusion_sensitivity(NonFinite(value, None), torch.rand(3, 12, 12), 0, mask_size=4, stride=4, output="logit")
    message = str(info.value)
    assert "NaN/inf" in message and "unoccluded input" in message and "[3]" in message


def test_non_finite_scores_at_a_mask_position_name_the_position():
    image = torch.rand(3, 12, 12) * 0.5 + 0.25
    # mask_value=0.0 only at the positions whose mask covers pixel (0, 0): the top-left one, (0, 0).
    with pytest.raises(ValueError) as info:
        occlusion_sensitivity(NonFinite(float("nan"), 0.0), image, 0, mask_size=4, stride=4, mask_value=0.0,
                              output="logit", strategy="full")
    message = str(info.value)
    assert "NaN/inf" in message and "[(0, 0)]" in message and "score indices [3]" in message


def test_non_finite_scores_from_an_output_callable_are_refused():
    with pytest.raises(ValueError, match=r"output=.*NaN/inf"):
        occlusion_sensitivity(small_cnn(), torch.rand(3, 12, 12), 0, mask_size=4, stride=4,
                              output=lambda out: out.log())  # log of negative logits -> NaN


@pytest.mark.parametrize("callable_,words", [
    (lambda out: out[:, :0], ["no scores", "K >= 1"]),
    (lambda out: out[:1], ["one row per input"]),
    (lambda out: out.tolist(), ["(N, K) tensor", "a list"]),
])
def test_bad_output_callable_results(callable_, words):
    with pytest.raises(ValueError) as info:
        occlusion_sensitivity(small_cnn(), torch.rand(3, 12, 12), 0, mask_size=4, stride=4, output=callable_)
    for word in words:
        assert word in str(info.value)


def test_positions_with_nothing_selected():
    with pytest.raises(ValueError, match="positions: no mask position is selected"):
        occlusion_sensitivity(small_cnn(), torch.rand(3, 12, 12), 0, mask_size=4, stride=4,
                              positions=np.zeros((3, 3), bool))


def test_meta_device_model_is_refused_before_any_forward_pass():
    with pytest.raises(ValueError, match="meta device: the weights are not materialised"):
        occlusion_sensitivity(small_cnn().to("meta"), torch.rand(3, 12, 12))


def test_progress_that_is_not_callable_is_refused_before_any_forward_pass():
    calls = []

    class Recording(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_cnn()

        def forward(self, x):
            calls.append(x.shape[0])
            return self.net(x)

    with pytest.raises(TypeError, match="progress"):
        occlusion_sensitivity(Recording(), torch.rand(3, 12, 12), 0, progress="yes")
    assert calls == []


def test_numpy_integers_are_accepted_wherever_an_int_is():
    model, image = small_cnn(), torch.rand(3, 16, 16)
    plain = occlusion_sensitivity(model, image, top_k=2, mask_size=8, stride=4, batch_size=4)
    numpy = occlusion_sensitivity(model, image, top_k=np.int64(2), mask_size=np.int32(8), stride=np.int64(4),
                                  batch_size=np.int64(4))
    assert numpy.params.batch_size == 4 and type(numpy.params.batch_size) is int
    np.testing.assert_array_equal(numpy.targets, plain.targets)
    np.testing.assert_allclose(numpy.grid, plain.grid, rtol=1e-5, atol=1e-6 * np.abs(plain.grid).max())
    pairs = occlusion_sensitivity(model, image, np.int64(3), mask_size=(np.int64(8), np.int64(6)),
                                  stride=np.array([4, 3]))
    assert pairs.targets.tolist() == [3] and pairs.params.mask_size == (8, 6)
    listed = occlusion_sensitivity(model, image, [np.int64(1), np.int32(2)], mask_size=8, stride=4)
    assert listed.targets.tolist() == [1, 2]
    for name in ("batch_size", "top_k"):
        with pytest.raises(ValueError, match=name):  # bools are still not ints
            occlusion_sensitivity(model, image, **{name: np.bool_(True)})


def test_drilldown_accepts_numpy_numbers():
    from occlusion_widget import drilldown_sensitivity

    result = drilldown_sensitivity(small_cnn(), torch.rand(3, 16, 16), 0, fraction=np.float32(0.5),
                                   coarse_factor=np.int64(2), mask_size=4, stride=2)
    assert result.extra["drilldown"]["coarse_factor"] == 2


@pytest.mark.parametrize("image,words", [
    (torch.rand(1, 16, 16), ["(1, 16, 16)", "1 channel", "(3, H, W)", "image.expand(3, -1, -1)"]),
    (torch.rand(16, 16), ["2-D tensor of shape (16, 16)", "1-D signal", "(3, H, W)", "must be (3, L)"]),
    (torch.rand(4, 16, 16), ["4 channels", "(3, H, W)", "takes 3 input channels"]),
])
def test_input_shapes_the_model_cannot_take(image, words):
    calls = []
    model = small_cnn()
    model.register_forward_pre_hook(lambda m, inp: calls.append(1))
    with pytest.raises(ValueError) as info:
        occlusion_sensitivity(model, image, mask_size=4, stride=4)
    for word in words:
        assert word in str(info.value)
    assert calls == [], "the check runs before any forward pass"


def test_a_signal_with_the_models_channels_stays_a_signal():
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    result = occlusion_sensitivity(model, torch.rand(2, 30), 0, mask_size=5, stride=5)
    assert result.is_signal and result.grid.shape == (1, 6)
    with pytest.raises(ValueError, match=r"\(2, L\) 1-D signals"):
        occlusion_sensitivity(model, torch.rand(3, 30), 0, mask_size=5, stride=5)
    with pytest.raises(ValueError, match=r"\(2, L\) 1-D signals"):
        occlusion_sensitivity(model, torch.rand(2, 30, 30), 0, mask_size=5, stride=5)


def test_out_of_memory_halves_the_batch():
    sizes = []

    class Fragile(nn.Module):
        """Raises OutOfMemoryError for batches over 5; records every batch size it is given."""

        def __init__(self):
            super().__init__()
            self.inner = small_cnn()

        def forward(self, x):
            sizes.append(x.shape[0])
            if x.shape[0] > 5:
                raise torch.OutOfMemoryError("simulated")
            return self.inner(x)

    result = occlusion_sensitivity(Fragile().eval(), torch.rand(3, 20, 20), 0, mask_size=4, stride=2,
                                   batch_size=32, strategy="full")
    # The unoccluded pass (1), then 32 -> 16 -> 8 -> 4, and 4 from then on (100 positions).
    assert sizes[:5] == [1, 32, 16, 8, 4], sizes
    assert sizes[5:] == [4] * 24, sizes
    assert result.complete and result.params.batch_size == 4


def test_dollar_labels_render_as_plain_text(tmp_path):
    from occlusion_widget.models import ImageClassifier
    from occlusion_widget.render import figure, save_figure

    # Two "$" make mathtext parse what lies between them: "\\y" is an unknown command (ValueError).
    labels = ["$100 bill", "a $5\\y and $6 note"] + [f"c{i}" for i in range(8)]
    classifier = ImageClassifier(small_cnn(), (16, 16), labels)
    result = occlusion_sensitivity(classifier, torch.rand(3, 16, 16), [0, 1], mask_size=4, stride=4)
    save_figure(result, tmp_path / "maps.png")  # raised ValueError from mathtext before
    assert (tmp_path / "maps.png").stat().st_size > 0
    axes = figure(result).axes
    titles = [ax.get_title() for ax in axes if ax.get_title()]
    assert [t.rsplit(" (", 1)[0] for t in titles] == labels[:2]
    # Shown as typed: "a $5\\y and $6 note" as mathtext would lose its "$" and italicise the rest.
    assert all(not ax.title.get_parse_math() for ax in axes if ax.get_title())

"""The gradient methods and the faithfulness curves refuse what they cannot explain, with errors
that say what was wrong and what to do: models returning dicts or lists, NaN scores, no gradient
path, models on the meta device, bad ``progress`` / ints; and they never flip the user's model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from occlusion_widget.methods import (
    compare_methods,
    deletion_insertion,
    faithfulness_table,
    grad_cam,
    layer_activations,
    saliency,
    smoothgrad,
)


def tiny_cnn(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, classes),
    ).eval()


class Segmenter(nn.Module):
    """Returns ``{"out": (N, K, H, W), "aux": (N, K, H, W)}`` as torchvision's FCN / DeepLab do."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Conv2d(6, classes, 1)
        self.aux_head = nn.Conv2d(6, classes, 1)

    def forward(self, x):
        f = torch.relu(self.body(x))
        return {"out": self.head(f), "aux": self.aux_head(f)}


class Detector(nn.Module):
    """Returns one dict per image, as torchvision's detection models do in eval mode."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        f = self.conv(x)
        return [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1, dtype=torch.long), "scores": f[i].amax()[None]}
                for i in range(x.shape[0])]


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))


def mean_out(out):
    return out["out"].mean(dim=(2, 3))


def first_conv(model: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


# 1. Models that do not return (N, classes) --------------------------------------------------------

CALLS = {
    "saliency": lambda m, x, **kw: saliency(m, x, device="cpu", **kw),
    "smoothgrad": lambda m, x, **kw: smoothgrad(m, x, n_samples=2, device="cpu", **kw),
    "grad_cam": lambda m, x, **kw: grad_cam(m, x, layer=first_conv(m), device="cpu", **kw),
    "deletion_insertion": lambda m, x, **kw: deletion_insertion(m, x, np.ones((8, 8)), 0, steps=2, device="cpu", **kw),
    "faithfulness_table": lambda m, x, **kw: faithfulness_table(m, x, {"ones": np.ones((8, 8))}, 0, steps=2,
                                                                device="cpu", **kw),
}


GRADIENT_METHODS = ("saliency", "smoothgrad", "grad_cam")
TARGET_HINT = r"SegmentationTarget\(label\)\] or targets=\[DetectionTarget\(box, label\)\]"


@pytest.mark.parametrize("method", list(CALLS))
def test_dict_output_with_class_indices_says_what_it_was_and_how_to_explain_it(image, method):
    """Class indices cannot score a segmenter's dict: the error names what it returned and the way out
    (SegmentationTarget for the gradient methods, output= for the curves); output= reducing it works."""
    hint = TARGET_HINT if method in GRADIENT_METHODS else "output="
    with pytest.raises(TypeError, match=r"^" + method + r": the model returned a dict with keys \['out', 'aux'\].*" + hint):
        CALLS[method](Segmenter(), image, **({"targets": [0]} if method in GRADIENT_METHODS else {}))
    CALLS[method](Segmenter(), image, output=mean_out)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_a_segmenter_without_targets_explains_its_predicted_classes(image, method):
    result = CALLS[method](Segmenter(), image)
    predicted = Segmenter()(image[None])["out"].argmax(dim=1)[0]
    assert len(result.labels) == len(predicted.unique()) and "% of pixels" in result.labels[0]
    assert result.maps.shape == (len(result.labels), 8, 8) and np.isfinite(result.maps).all()


@pytest.mark.parametrize("method", list(CALLS))
def test_list_of_dicts_output(image, method):
    hint = TARGET_HINT if method in GRADIENT_METHODS else "output="
    match = r"a list of \d+ dicts with keys \['boxes', 'labels', 'scores'\].*" + hint
    with pytest.raises(TypeError, match=match):
        CALLS[method](Detector(), image, **({"targets": [0]} if method in GRADIENT_METHODS else {}))


def test_compare_methods_has_no_output_parameter_and_says_so(image):
    with pytest.raises(TypeError, match=r"compare_methods: the model returned a dict with keys \['out', 'aux'\].*"
                                        r"must return \(N, classes\)"):
        compare_methods(Segmenter(), image, steps=2, n_samples=2, device="cpu")


def test_layer_activations_of_a_segmentation_model_work(image):
    acts = layer_activations(Segmenter(), image, "body", device="cpu")
    assert acts.activations.shape == (6, 8, 8)


def test_grad_cam_of_the_reduced_segmentation_output_equals_the_hand_computation(image):
    model = Segmenter()
    res = grad_cam(model, image, targets=1, layer="body", output=mean_out, device="cpu")
    pre = model.body(image[None])  # "body" is the conv itself: the CAM is taken before the ReLU
    score = model.head(torch.relu(pre)).mean(dim=(2, 3))[0, 1]
    (g,) = torch.autograd.grad(score, pre)
    expected = torch.relu((g[0].mean(dim=(1, 2))[:, None, None] * pre[0]).sum(0)).detach().numpy()
    assert expected.max() > 0
    np.testing.assert_allclose(res.grid[0], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


# 2. Non-finite scores, empty or mis-shaped callables ----------------------------------------------

class NaNModel(nn.Module):
    def __init__(self, value: float = float("nan")):
        super().__init__()
        self.conv, self.lin = nn.Conv2d(3, 3, 1), nn.Linear(3, 2)
        self.value = value

    def forward(self, x):
        out = self.lin(self.conv(x).mean(dim=(2, 3)))
        return torch.cat([out[:, :1], out[:, 1:] * self.value], dim=1)


@pytest.mark.parametrize("method", list(CALLS))
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_scores_raise(image, method, value):
    with pytest.raises(ValueError, match=r"^" + method + r": .*NaN or infinite"):
        CALLS[method](NaNModel(value), image)


@pytest.mark.parametrize("method", list(CALLS))
def test_output_callable_returning_nan_raises(image, method):
    with pytest.raises(ValueError, match=r"NaN or infinite.*output="):
        CALLS[method](tiny_cnn(), image, output=lambda out: out.log())  # logits < 0 -> NaN


@pytest.mark.parametrize("method", list(CALLS))
def test_output_callable_returning_no_columns_raises(image, method):
    with pytest.raises(ValueError, match=r"output.*\(\d+, 0\).*at least one"):
        CALLS[method](tiny_cnn(), image, output=lambda out: out[:, :0])


@pytest.mark.parametrize("method", list(CALLS))
def test_output_callable_returning_the_wrong_number_of_rows_raises(image, method):
    with pytest.raises(ValueError, match=r"output"):
        CALLS[method](tiny_cnn(), image, output=lambda out: out[:1].repeat(out.shape[0] + 1, 1))


def test_nan_gradient_with_finite_scores_raises(image):
    class SqrtAtZero(nn.Module):
        def forward(self, x):  # d sqrt(u) / du at u = 0 is inf; times 0 gives NaN
            return torch.stack([torch.sqrt((x * 0).sum(dim=(1, 2, 3))), x.sum(dim=(1, 2, 3))], dim=1)

    with pytest.raises(ValueError, match=r"saliency: the gradient .* NaN or infinite"):
        saliency(SqrtAtZero(), image, targets=0, device="cpu")
    with pytest.raises(ValueError, match=r"smoothgrad: the gradient .* NaN or infinite"):
        smoothgrad(SqrtAtZero(), image, targets=0, noise_level=0.0, n_samples=2, device="cpu")


# 3. Meta device, no gradient path, progress, numpy ints ----------------------------------------------

ALL = dict(CALLS, compare_methods=lambda m, x, **kw: compare_methods(m, x, steps=2, n_samples=2, device="cpu", **kw),
           layer_activations=lambda m, x, **kw: layer_activations(m, x, "0", device="cpu", **kw))


@pytest.mark.parametrize("method", list(ALL))
def test_meta_device_model_raises(image, method):
    with torch.device("meta"):
        model = tiny_cnn()
    call = ALL[method] if method != "grad_cam" else (lambda m, x: grad_cam(m, x, layer="0", device="cpu"))
    with pytest.raises(ValueError, match=r"meta device.*to_empty"):
        call(model, image)


class Detaching(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.net = tiny_cnn()
        self.mode = mode

    def forward(self, x):
        if self.mode == "no_grad":
            with torch.no_grad():
                return self.net(x)
        return self.net(x).detach()


@pytest.mark.parametrize("mode", ["no_grad", "detach"])
@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "grad_cam"])
def test_no_gradient_path_names_the_method_and_what_to_check(image, method, mode):
    call = {"saliency": lambda m: saliency(m, image, device="cpu"),
            "smoothgrad": lambda m: smoothgrad(m, image, n_samples=2, device="cpu"),
            "grad_cam": lambda m: grad_cam(m, image, layer="net.3", device="cpu")}[method]
    with pytest.raises(ValueError, match=rf"^{method}: .*does not require grad.*torch.no_grad"):
        call(Detaching(mode))


def test_frozen_parameters_are_fine(image):
    model = tiny_cnn()
    for prm in model.parameters():
        prm.requires_grad_(False)
    assert saliency(model, image, device="cpu").maps.max() > 0
    assert grad_cam(model, image, layer="3", device="cpu").maps.max() >= 0


def test_grad_cam_layer_off_the_score_path_raises(image):
    with pytest.raises(ValueError, match=r"grad_cam: the score .* does not depend on layer='aux_head'"):
        grad_cam(Segmenter(), image, layer="aux_head", output=mean_out, device="cpu")


def test_grad_cam_layer_without_grad_raises(image):
    class FrozenStem(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.net = nn.Conv2d(3, 3, 1), tiny_cnn()

        def forward(self, x):
            with torch.no_grad():
                y = self.stem(x)
            return self.net(y + 0 * x)  # the score still depends on x, but not through "stem"

    with pytest.raises(ValueError, match=r"grad_cam: layer='stem''s output does not require grad"):
        grad_cam(FrozenStem(), image, layer="stem", device="cpu")


@pytest.mark.parametrize("method", [m for m in ALL if m != "layer_activations"])
def test_progress_must_be_callable(image, method):
    model = tiny_cnn() if method != "grad_cam" else Segmenter()
    kw = dict(output=mean_out) if method == "grad_cam" else {}
    with pytest.raises(TypeError, match=r"progress=.*callable"):
        ALL[method](model, image, progress=5, **kw)


def test_numpy_integers_are_accepted(image):
    model = tiny_cnn()
    i = np.int64
    ref = smoothgrad(model, image, targets=[1], n_samples=3, batch_size=2, device="cpu")
    res = smoothgrad(model, image, targets=i(1), n_samples=i(3), batch_size=i(2), seed=i(0), device="cpu")
    np.testing.assert_array_equal(res.maps, ref.maps)
    assert saliency(model, image, top_k=i(2), device="cpu").targets.shape == (2,)
    assert grad_cam(model, image, targets=[i(0), i(2)], layer="3", device="cpu").targets.tolist() == [0, 2]
    curve = deletion_insertion(model, image, np.ones((8, 8)), i(2), steps=i(4), batch_size=i(3), device="cpu")
    assert curve.target == 2 and isinstance(curve.target, int) and len(curve.fractions) == 5
    comp = compare_methods(model, image, target=i(1), methods=["saliency"], steps=i(2), device="cpu")
    assert comp.target == 1 and isinstance(comp.target, int)
    assert layer_activations(model, image, "3", top=i(2), device="cpu").activations.shape[0] == 2


@pytest.mark.parametrize("call", [
    lambda m, x: smoothgrad(m, x, n_samples=True, device="cpu"),
    lambda m, x: smoothgrad(m, x, n_samples=2, batch_size=True, device="cpu"),
    lambda m, x: saliency(m, x, top_k=True, device="cpu"),
    lambda m, x: saliency(m, x, targets=True, device="cpu"),
    lambda m, x: deletion_insertion(m, x, np.ones((8, 8)), True, device="cpu"),
    lambda m, x: deletion_insertion(m, x, np.ones((8, 8)), 1.0, device="cpu"),
    lambda m, x: deletion_insertion(m, x, np.ones((8, 8)), 0, steps=True, device="cpu"),
    lambda m, x: compare_methods(m, x, target=True, methods=["saliency"], device="cpu"),
    lambda m, x: compare_methods(m, x, target=1.0, methods=["saliency"], device="cpu"),
    lambda m, x: layer_activations(m, x, "3", top=True, device="cpu"),
], ids=["n_samples", "batch_size", "top_k", "targets", "target", "float-target", "steps", "compare-target",
        "compare-float-target", "top"])
def test_bools_and_floats_are_not_ints(image, call):
    with pytest.raises((TypeError, ValueError), match=r"True|1\.0"):
        call(tiny_cnn(), image)


# 5. The user's module is never flipped to eval (another thread may be training it) ----------------

class RecordsTrain(nn.Module):
    """Dropout and batch norm, in train mode; records every ``train()`` / ``eval()`` call."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.drop, self.fc = nn.Dropout(0.5), nn.Linear(6, 4)
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.train_calls: list[bool] = []

    def train(self, mode: bool = True):
        self.train_calls.append(mode)
        return super().train(mode)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).mean(dim=(2, 3)))


EXPLAIN = {
    "saliency": lambda m, x, cb: saliency(m, x, targets=[1, 2], device="cpu", progress=cb).maps,
    "smoothgrad": lambda m, x, cb: smoothgrad(m, x, n_samples=4, batch_size=2, device="cpu", progress=cb).maps,
    "grad_cam": lambda m, x, cb: grad_cam(m, x, targets=[0, 3], device="cpu", progress=cb).grid,
    "deletion_insertion": lambda m, x, cb: deletion_insertion(m, x, x[0].numpy(), 1, steps=4, batch_size=3,
                                                              device="cpu", progress=cb).deletion_scores,
    "compare_methods": lambda m, x, cb: compare_methods(m, x, mask_size=4, stride=4, n_samples=2, steps=2,
                                                        device="cpu", progress=cb).table.rows(),
    "layer_activations": lambda m, x, cb: (cb(0, 0, None), layer_activations(m, x, device="cpu").activations)[1],
}


@pytest.mark.parametrize("method", list(EXPLAIN))
def test_a_training_model_is_explained_in_eval_mode_without_being_flipped(image, method):
    model = RecordsTrain().train()
    model.train_calls.clear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def during(*_):  # the user's view of the model while the method runs
        seen.append((model.training, model.drop.training, model.bn.training))

    got = EXPLAIN[method](model, image, during)
    reference = RecordsTrain().eval()
    reference.load_state_dict(before)
    expected = EXPLAIN[method](reference, image, lambda *_: None)
    assert model.train_calls == [] and seen and set(seen) == {(True, True, True)}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats untouched
    if method == "compare_methods":
        np.testing.assert_allclose(np.array([r[1:] for r in got]), np.array([r[1:] for r in expected]), rtol=1e-5)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())

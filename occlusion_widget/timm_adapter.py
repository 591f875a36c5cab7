"""Wrap a timm model with its own preprocessing (input size, resize, crop, mean/std) and class names.

timm is an optional extra: ``pip install 'occlusion-widget[timm]'``. Nothing here is imported by the
package at start-up, so the library works without it.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

from PIL import Image
from torch import nn

from .models import ImageClassifier, Normalize, imagenet_labels

__all__ = ["from_timm", "timm_preprocessing"]

_INSTALL = "pip install 'occlusion-widget[timm]'"

#: timm's interpolation names -> PIL resampling filters (what torchvision's Resize uses on a PIL image).
_PIL_INTERPOLATION = {
    "nearest": int(Image.Resampling.NEAREST),
    "bilinear": int(Image.Resampling.BILINEAR),
    "bicubic": int(Image.Resampling.BICUBIC),
    "lanczos": int(Image.Resampling.LANCZOS),
    "box": int(Image.Resampling.BOX),
    "hamming": int(Image.Resampling.HAMMING),
}


def _import_timm() -> Any:
    try:
        import timm
        import timm.data
    except ImportError as exc:
        raise ImportError(f"from_timm needs the timm package, an optional extra: {_INSTALL}") from exc
    return timm


def timm_preprocessing(net: nn.Module) -> dict[str, Any]:
    """The evaluation preprocessing timm resolves for ``net``, in this package's terms.

    Returns
    -------
    dict
        ``input_size`` (H, W), ``resize_size`` (the shorter side before the centre crop:
        ``floor(input / crop_pct)`` as timm's eval transform computes it), ``interpolation``
        (a PIL filter), ``mean``, ``std`` (per channel), ``crop_mode`` and ``config`` (timm's dict).
    """
    timm = _import_timm()
    resolve = getattr(timm.data, "resolve_model_data_config", None)
    config = resolve(net) if resolve is not None else timm.data.resolve_data_config({}, model=net)
    channels, height, width = config["input_size"]
    if channels != 3:
        raise ValueError(f"from_timm: the model takes {channels}-channel input; the widget explains RGB images (3 channels)")
    crop_pct = float(config.get("crop_pct") or 0.875)  # timm's DEFAULT_CROP_PCT when a model leaves it unset
    interpolation = str(config.get("interpolation", "bicubic"))
    if interpolation not in _PIL_INTERPOLATION:  # "random" etc. are training-time choices
        interpolation = "bicubic"
    # timm: scale_size = floor(img_size / crop_pct); the shorter side is resized to it, then centre crop.
    resize_size = int(max(height, width) / crop_pct)
    return {
        "input_size": (int(height), int(width)),
        "resize_size": resize_size,
        "interpolation": _PIL_INTERPOLATION[interpolation],
        "mean": tuple(float(m) for m in config["mean"]),
        "std": tuple(float(s) for s in config["std"]),
        "crop_mode": config.get("crop_mode", "center"),
        "config": config,
    }


def from_timm(name: str, pretrained: bool = True, **kwargs: Any) -> ImageClassifier:
    """Wrap a timm model with its own data config and, for 1000-class heads, ImageNet class names.

    Parameters
    ----------
    name : str
        A timm model name, e.g. ``"vit_tiny_patch16_224"`` or ``"convnext_atto"``
        (``timm.list_models()`` lists them), optionally with a pretrained tag (``"resnet18.a1_in1k"``).
    pretrained : bool
        Load timm's pretrained weights (downloaded from the Hugging Face Hub on first use and
        cached); False: random weights with the model's preprocessing (what tests use).
    **kwargs
        Passed to ``timm.create_model`` (e.g. ``num_classes=10``).

    Returns
    -------
    ImageClassifier
        ``nn.Sequential(Normalize(mean, std), net)`` in eval mode: it takes [0, 1] RGB pixels (N, 3, H, W).

    Raises
    ------
    ImportError
        timm is not installed (``pip install 'occlusion-widget[timm]'``).
    ValueError
        An unknown model name (close names are suggested), or a model that does not take RGB images.
    OSError
        The pretrained weights are not cached and could not be downloaded.
    """
    timm = _import_timm()
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; use a timm model name such as 'resnet18'")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained={pretrained!r} is not allowed; use True or False")
    arch = name.split(".", 1)[0]  # "resnet18.a1_in1k" -> the architecture, for the name check
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; timm.list_models('*pattern*') lists them"
        raise ValueError(f"name={name!r} is not a timm model{hint}")
    try:
        net = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, ConnectionError) as exc:  # no network and no cache, a timeout, a full disk
        raise OSError(
            f"from_timm: could not load the pretrained weights of {name} ({exc}); connect to the network once "
            "(timm caches them in the Hugging Face cache), or pass pretrained=False for random weights"
        ) from exc
    except RuntimeError as exc:
        if "pretrained" in str(exc).lower() or "checkpoint" in str(exc).lower():
            raise ValueError(f"from_timm: {name} has no pretrained weights timm can load ({exc}); "
                             "use pretrained=False or another tag") from exc
        raise
    prep = timm_preprocessing(net)
    height, width = prep["input_size"]
    if prep["crop_mode"] != "center" or height != width:
        warnings.warn(
            f"from_timm: {name} was evaluated with crop_mode={prep['crop_mode']!r} at {height}x{width}; images "
            "are resized (shorter side) and centre-cropped instead, so the network may see a slightly different crop",
            UserWarning,
            stacklevel=2,
        )
    num_classes = getattr(net, "num_classes", None)
    labels = list(imagenet_labels()) if num_classes == 1000 else None
    module = nn.Sequential(Normalize(prep["mean"], prep["std"]), net).eval()
    return ImageClassifier(module, prep["input_size"], labels, prep["resize_size"], prep["interpolation"], name=name)

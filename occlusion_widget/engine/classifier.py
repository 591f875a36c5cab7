"""The model wrapper the engine works with: a network, its input size, labels and preprocessing.

The engine works on [0, 1] RGB pixels: every wrapped module carries its own
normalisation (:class:`Normalize`), so a mask value of 0.5 is mid-grey whatever
the network. The package's ``models`` module re-exports these names and adds the
embedded default model and the torchvision adapter.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Sequence
from os import PathLike

import numpy as np
import torch
from PIL import Image
from torch import nn

from .images import load_image

__all__ = ["ImageClassifier", "ImageLike", "Normalize", "RawModuleNotice", "as_classifier", "to_unit_tensor"]

ImageLike = Image.Image | np.ndarray | str | PathLike | torch.Tensor


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first layer of a wrapped network."""

    mean: torch.Tensor  # buffers (1, C, 1, 1), registered in __init__
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def to_unit_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


class RawModuleNotice(UserWarning):
    """A plain ``nn.Module`` is given an image: it receives [0, 1] pixels with no normalisation."""


_NOTICED: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_NOTICED_LOCK = threading.Lock()


def _notice_raw_module(module: nn.Module, input_size: tuple[int, int], resize_size: int) -> None:
    """Warn once per module (the same module is wrapped anew by every call)."""
    with _NOTICED_LOCK:
        if module in _NOTICED:
            return
        _NOTICED.add(module)
    h, w = input_size
    warnings.warn(
        f"{type(module).__name__} is a plain torch.nn.Module: an image is resized (shorter side to {resize_size} px), "
        f"centre-cropped to {h}x{w} and passed as [0, 1] RGB pixels with no normalisation. If the network expects "
        f"another size or normalised input, wrap it: ow.from_torchvision(name) for torchvision models, or "
        f"ImageClassifier(module, input_size, labels, ...) with nn.Sequential(Normalize(mean, std), module). "
        f"A tensor input is passed as it is.",
        RawModuleNotice,
        stacklevel=5,  # notice <- preprocess <- prepare_input <- occlusion_sensitivity <- the caller
    )


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

    _raw_module = False  # set by as_classifier: a plain module given an image gets a RawModuleNotice

    def __init__(
        self,
        module: nn.Module,
        input_size: tuple[int, int] = (224, 224),
        labels: Sequence[str] | None = None,
        resize_size: int | None = None,
        interpolation: int = int(Image.Resampling.BICUBIC),
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
        and scale to a float32 tensor (3, H, W) in [0, 1]. A tensor passes through.

        Images are decoded by :func:`load_image` (EXIF orientation, bit depth, alpha over white); JPEG files
        are decoded at a reduced scale that keeps at least twice the resized size.
        """
        if isinstance(image, torch.Tensor):
            return image
        if self._raw_module:
            _notice_raw_module(self.module, self.input_size, self.resize_size)
        side = 2 * max(self.resize_size, *self.input_size)
        img = load_image(image, draft_size=(side, side))
        w, h = img.size
        # The same arithmetic as torchvision's Resize(int) and CenterCrop (the longer side truncated, the crop
        # offset rounded), so a wrapped torchvision/timm model sees exactly what its own transform gives it.
        short, long = min(w, h), max(w, h)
        long_resized = int(self.resize_size * long / short)
        new_w, new_h = (self.resize_size, long_resized) if w <= h else (long_resized, self.resize_size)
        new_w, new_h = max(self.input_size[1], new_w), max(self.input_size[0], new_h)
        img = img.resize((new_w, new_h), self.interpolation)
        left = int(round((new_w - self.input_size[1]) / 2.0))
        top = int(round((new_h - self.input_size[0]) / 2.0))
        img = img.crop((left, top, left + self.input_size[1], top + self.input_size[0]))
        return to_unit_tensor(img)

    def to(self, device: torch.device | str) -> ImageClassifier:
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
        return [(int(i), self.label(int(i)), float(v)) for v, i in zip(values, indices, strict=True)]

    def label(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class {index}"


def as_classifier(model: ImageClassifier | nn.Module) -> ImageClassifier:
    """Accept a wrapper or a plain module.

    A plain module takes tensors as they are; an image is resized and centre-cropped to 224x224 and passed as
    [0, 1] RGB pixels without normalisation, with a :class:`RawModuleNotice` the first time.
    """
    if isinstance(model, ImageClassifier):
        return model
    if isinstance(model, nn.Module):
        wrapped = ImageClassifier(model, labels=None, name=type(model).__name__)
        wrapped._raw_module = True
        return wrapped
    raise TypeError(f"model: expected an ImageClassifier or a torch.nn.Module, got {type(model).__name__}")

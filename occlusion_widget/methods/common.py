"""What the attribution methods share: the result type, cancellation, and the
set-up every method does (input, device, eval mode, autograd on)."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.inputs import prepare_input, resolve_device
from ..engine.result import UPSAMPLING, MapResult, upsample
from ..models import ImageClassifier, as_classifier

#: Upsampling methods for low-resolution maps: the engine's, plus "bilinear"
#: (what Grad-CAM implementations use; cv2 INTER_LINEAR = torch align_corners=False).
MAP_UPSAMPLING = ("bilinear",) + UPSAMPLING

ProgressFn = Callable[[int, int, Optional["AttributionResult"]], None]


class Cancelled(Exception):
    """Raised by the gradient methods and the faithfulness curves when ``cancel`` is set.

    Unlike :func:`occlusion_sensitivity` (whose partial map is meaningful and which
    returns it with ``complete=False``), these functions raise: a half-computed
    curve or target list is not a result. The last ``progress`` call carries the
    latest partial map where there is one (SmoothGrad's running mean).
    """


@dataclass(frozen=True)
class AttributionParams:
    """The resolved parameters of a gradient method (None where not applicable).

    ``output`` is the score differentiated (``"logit"``, ``"probability"`` or a
    callable's name); ``upsampling`` how ``maps`` was made from ``grid``.
    """

    method: str
    output: str
    upsampling: str = "none"
    layer: str | None = None
    reduce: str | None = None
    n_samples: int | None = None
    noise_level: float | None = None
    noise_sigma: float | None = None
    seed: int | None = None
    batch_size: int | None = None
    device: str = "cpu"


@dataclass(frozen=True)
class AttributionResult(MapResult):
    """An attribution map for K targets, with the field names of :class:`OcclusionResult`.

    Attributes
    ----------
    method : str
        ``"saliency"``, ``"smoothgrad"`` or ``"grad_cam"``.
    grid : float32 (K, h, w)
        The raw map at the method's own resolution: (K, H, W) for the gradient
        methods, the layer's (K, h, w) for Grad-CAM (e.g. (K, 7, 7)).
        (K, L) for a 1-D signal.
    maps : float32 (K, H, W)
        ``grid`` at the input size (upsampled for Grad-CAM). Higher = more
        important; all three methods give non-negative maps.
    base_scores : float32 (K,)
        Each target's score (``params.output``) on the input.
    targets : int64 (K,)
    labels : list of str or None
    params : AttributionParams
    image : float32 (C, H, W)
        The input as the network saw it; (C, L) for 1-D.
    complete : bool
        Always True for a returned result (cancellation raises :class:`Cancelled`);
        False only in partial results passed to ``progress``.
    n_forward : int
        Forward passes run (a batch counts once).
    elapsed_s : float
    extra : dict
        Method-specific extras, e.g. Grad-CAM's channel ``weights`` (K, C').
    """

    method: str
    grid: np.ndarray
    maps: np.ndarray
    base_scores: np.ndarray
    targets: np.ndarray
    labels: list[str] | None
    params: AttributionParams
    image: np.ndarray
    complete: bool = True
    n_forward: int = 0
    elapsed_s: float = 0.0
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"AttributionResult(method={self.method!r}, targets={self.targets.tolist()}, labels={self.labels}, "
            f"grid={self.grid.shape}, maps={self.maps.shape})"
        )

    def with_upsampling(self, upsampling: str) -> "AttributionResult":
        """The same result with ``maps`` made from ``grid`` by another method."""
        if self.is_signal:
            maps = upsample_maps(self.grid[:, None], (1, self.image.shape[-1]), upsampling)[:, 0]
        else:
            maps = upsample_maps(self.grid, self.image.shape[-2:], upsampling)
        return replace(self, maps=maps, params=replace(self.params, upsampling=upsampling))


def upsample_maps(grid: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """(K, h, w) -> (K, H, W); ``"bilinear"`` or any of the engine's methods.

    ``"none"`` needs ``(h, w) == size``: every map must have the input's size.
    """
    if method not in MAP_UPSAMPLING:
        raise ValueError(f"upsampling={method!r} is not allowed; use one of {', '.join(map(repr, MAP_UPSAMPLING))}")
    size = (int(size[0]), int(size[1]))
    if grid.shape[-2:] == size:
        return grid.astype(np.float32, copy=True)
    if method == "none":
        raise ValueError(f"upsampling='none': the raw map is {grid.shape[-2:]}, the input {size}; choose 'bilinear'")
    if method == "bilinear":
        t = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None]
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0].numpy()
    return upsample(grid, size, method)


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


@dataclass
class Prepared:
    """A model and input ready for a gradient pass."""

    classifier: ImageClassifier
    module: nn.Module
    x: torch.Tensor
    """float32 (C, H, W) on ``device``; (C, 1, L) for a 1-D signal."""
    is_signal: bool
    device: torch.device


@contextlib.contextmanager
def prepared(model: object, image: object, device: object, cancel: object) -> Iterator[Prepared]:
    """Resolve the input and device, put the module in eval mode on the device, and
    turn autograd on (even inside ``torch.inference_mode()``) for the duration.

    The module's train/eval state is restored afterwards; its parameters'
    ``.grad`` are never touched (gradients are taken with ``torch.autograd.grad``).
    """
    if cancel is not None and not hasattr(cancel, "is_set"):
        raise TypeError("cancel: expected a threading.Event (anything with is_set())")
    classifier = as_classifier(model)  # type: ignore[arg-type]
    x, is_signal = prepare_input(classifier, image)
    dev = resolve_device(device)
    module = classifier.module
    was_training = module.training
    module.to(dev).eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # clone(): an input made under inference mode cannot join a graph.
            yield Prepared(classifier, module, x.to(dev).clone(), is_signal, dev)
    finally:
        module.train(was_training)


def labels_for(classifier: ImageClassifier, targets: np.ndarray) -> list[str] | None:
    if classifier.labels is None:
        return None
    return [classifier.label(int(t)) for t in targets]


def check_positive_int(value: object, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; use a positive int" + (" or None" if allow_none else ""))


def map_for(result: object, target: int) -> np.ndarray:
    """The (H, W) map of ``target`` in an OcclusionResult or AttributionResult."""
    targets = np.asarray(getattr(result, "targets"))
    hits = np.flatnonzero(targets == int(target))
    if hits.size == 0:
        raise ValueError(f"target {target} is not among the result's targets {targets.tolist()}")
    return np.asarray(getattr(result, "maps"))[int(hits[0])]

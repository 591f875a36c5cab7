"""What each filter responds to: images made by gradient ascent on one channel's mean activation.

Each filter gets its own image, optimised to maximise the mean (over space) of that channel of a
layer's output (Erhan et al. 2009; Yosinski et al. 2015's regularisers). Many filters are optimised
in one batch: the batch elements are independent (the model runs in eval mode), so the gradient of
the sum of their objectives holds each image's own gradient.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Optional, cast

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from ..models import ImageClassifier
from .common import check_callbacks, prepared
from .token_layers import find_module, resolve_layout

FilterProgress = Callable[[int, int, Optional["FilterVisualization"]], None]


@dataclass(frozen=True)
class FilterVisualization:
    """Ascent images for F filters of one layer.

    Attributes
    ----------
    layer : str
    filters : int64 (F,)
        Channel indices, in the order of the other arrays.
    images : float32 (F, 3, H, W)
        The images reached, [0, 1] pixels (the model's input space).
    start : float32 (3, H, W)
        The start image, the same for every filter (the given image, or mid-grey plus low noise).
    activation : float32 (F,)
        Each filter's mean activation on its image (no jitter), at the end.
    start_activation : float32 (F,)
        The same on the start image.
    history : float32 (F, T)
        The mean activation at each iteration done (on the jittered image that step used).
    complete : bool
        False when cancelled: the filters not reached keep their start image and NaN activations.
    iterations_done : int
        Iterations run for the last batch reached.
    params : dict
        The resolved parameters.
    """

    layer: str
    filters: np.ndarray
    images: np.ndarray
    start: np.ndarray
    activation: np.ndarray
    start_activation: np.ndarray
    history: np.ndarray
    complete: bool
    iterations_done: int
    params: dict = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def difference(self) -> np.ndarray:
        """float32 (F, 3, H, W): the images minus the start image (what the ascent added)."""
        return (self.images - self.start[None]).astype(np.float32)

    def __repr__(self) -> str:
        return (f"FilterVisualization(layer={self.layer!r}, filters={self.filters.tolist()[:8]}"
                f"{'...' if len(self.filters) > 8 else ''}, images={self.images.shape}, complete={self.complete})")


def _positive_int(value: object, name: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; use a positive int")
    return int(value)


def _number(value: object, name: str, low: float = 0.0, high: float = np.inf, allow_low: bool = True) -> float:
    if (not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(float(value))
            or not (low <= float(value) <= high) or (not allow_low and float(value) == low)):
        rel = ">=" if allow_low else ">"
        bound = f" and <= {high}" if np.isfinite(high) else ""
        raise ValueError(f"{name}={value!r} is not allowed; use a number {rel} {low}{bound}")
    return float(value)


def _resolve_filters(filters: object, n_channels: int, layer: str) -> np.ndarray:
    if filters is None:
        return np.arange(n_channels, dtype=np.int64)
    if isinstance(filters, Integral) and not isinstance(filters, bool):
        if not 1 <= int(filters) <= n_channels:
            raise ValueError(f"filters={filters!r} is not allowed; layer={layer!r} has {n_channels} channels, "
                             f"use 1..{n_channels} (the first N), a list of indices, or None (all)")
        return np.arange(int(filters), dtype=np.int64)
    if isinstance(filters, (list, tuple, np.ndarray, range)):
        idx = list(filters)
        if not idx or any(not isinstance(i, Integral) or isinstance(i, bool) for i in idx):
            raise ValueError(f"filters={filters!r} is not allowed; use a non-empty list of channel indices")
        bad = [int(i) for i in idx if not 0 <= i < n_channels]
        if bad:
            raise ValueError(f"filters: {bad} out of range; layer={layer!r} has channels 0..{n_channels - 1}")
        return np.asarray(idx, dtype=np.int64)
    raise TypeError(f"filters={filters!r} is not allowed; use None (all), an int N (the first N) or a list of ints")


def _size(size: object, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return default
    if isinstance(size, Integral) and not isinstance(size, bool) and int(size) >= 1:
        return int(size), int(size)
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, Integral) and not isinstance(s, bool) and int(s) >= 1 for s in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"size={size!r} is not allowed; use None (the model's input size), N or (H, W) in pixels")


def filter_visualization(
    model: ImageClassifier | torch.nn.Module,
    layer: str,
    filters: None | int | Sequence[int] = None,
    *,
    image: object = None,
    iterations: int = 64,
    step: float = 0.02,
    l2: float = 0.01,
    jitter: int = 4,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    noise: float = 0.02,
    size: None | int | tuple[int, int] = None,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: FilterProgress | None = None,
    cancel: threading.Event | None = None,
) -> FilterVisualization:
    """Gradient ascent, per filter, on the mean activation of one channel of ``layer``.

    Each iteration: roll the image by a random (dy, dx) in [-jitter, jitter] (the same roll for
    the whole batch), take the gradient of each filter's mean activation, normalise it per image to
    unit RMS and step ``x += step * g``; shrink the change from the start, ``x = x0 + (1 - l2)(x - x0)``
    (the proximal step of an L2 penalty on it); every ``blur_every`` iterations blur the change with
    a Gaussian of ``blur_sigma`` pixels; clip to [0, 1].

    Parameters
    ----------
    model : ImageClassifier or nn.Module
        Takes (N, 3, H, W) [0, 1] pixels (a wrapper's normalisation is inside its module).
    layer : str
        A name from ``model.named_modules()``; its output may be (N, C, h, w), tokens or
        channels-last (reshaped as Grad-CAM does, :mod:`.token_layers`). The forward pass stops
        at the layer's first call (what follows does not change the objective).
    filters : None, int or list of int
        None: every channel; N: channels 0..N-1; a list: those channels.
    image : optional
        Start image (through the wrapper's ``preprocess``; a tensor (3, H, W) as it is).
        Default: mid-grey plus uniform noise of amplitude ``noise``.
    iterations : int
        Ascent steps (> 0).
    step : float
        Step size in pixel units (> 0), per iteration, of the unit-RMS gradient.
    l2 : float
        Shrinkage of the change from the start per iteration, in [0, 1).
    jitter : int
        Largest random roll in pixels (0: none).
    blur_every : int
        Blur the change every this many iterations (0: never).
    blur_sigma : float
        The blur's standard deviation in pixels (> 0).
    noise : float
        Amplitude of the start noise when there is no ``image`` (>= 0).
    size : None, N or (H, W)
        The images' size (default: the wrapper's ``input_size``); a start image is resized to it.
    batch_size : int
        Filters optimised together.
    seed : int
        Seeds the start noise and the rolls. Each batch replays the same draws, so the result does
        not depend on ``batch_size``.
    device : "auto", "cpu", "cuda" or torch.device
    progress : callable(done, total, partial), optional
        After every iteration: iterations done over all batches, their total, and (after each
        batch) the result so far.
    cancel : threading.Event, optional
        Checked every iteration; when set, returns what it has (``complete=False``).

    Returns
    -------
    FilterVisualization
        ``images`` (F, 3, H, W), ``activation`` (F,), ``history`` (F, iterations), ``difference``.
    """
    check_callbacks(progress, cancel)
    iterations = _positive_int(iterations, "iterations")
    batch_size = _positive_int(batch_size, "batch_size")
    step = _number(step, "step", allow_low=False)
    l2 = _number(l2, "l2", 0.0, 1.0)
    if l2 >= 1.0:
        raise ValueError(f"l2={l2!r} is not allowed; use a number >= 0 and < 1 (the shrinkage per iteration)")
    noise = _number(noise, "noise", 0.0, 1.0)
    blur_sigma = _number(blur_sigma, "blur_sigma", allow_low=False)
    for value, name in ((jitter, "jitter"), (blur_every, "blur_every")):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}={value!r} is not allowed; use an int >= 0 (0: off)")
    if not isinstance(seed, Integral) or isinstance(seed, bool):
        raise TypeError(f"seed={seed!r} is not allowed; use an int")
    start_time = time.perf_counter()
    with prepared(model, image if image is not None else torch.zeros(3, 8, 8), device, cancel) as p:
        hw = _size(size, p.classifier.input_size if image is None else tuple(p.x.shape[-2:]))
        if p.is_signal or p.x.ndim != 3 or p.x.shape[0] != 3:
            raise ValueError(f"image: filter_visualization needs an RGB image (3, H, W), got {tuple(p.x.shape)}")
        target = find_module(p.module, layer)
        x0 = _start_image(p.x if image is not None else None, hw, noise, seed, p.device)
        captured: list[torch.Tensor] = []
        owner = threading.get_ident()

        def hook(_m, _i, out):
            if threading.get_ident() == owner and isinstance(out, torch.Tensor):
                captured[:] = [out]
                raise _Reached  # the rest of the network does not change the objective: skip it

        handle = target.register_forward_hook(hook)
        try:
            reshape = _channels(p.module, layer, captured, x0)
            n_channels = reshape(captured[0]).shape[1]
            chosen = _resolve_filters(filters, n_channels, layer)
            k = len(chosen)
            images = x0.detach().cpu().numpy()[None].repeat(k, axis=0)
            history = np.full((k, iterations), np.nan, dtype=np.float32)
            final = np.full(k, np.nan, dtype=np.float32)
            first = np.full(k, np.nan, dtype=np.float32)
            params = dict(layer=layer, iterations=iterations, step=step, l2=l2, jitter=int(jitter),
                          blur_every=int(blur_every), blur_sigma=blur_sigma, noise=noise, size=hw,
                          batch_size=batch_size, seed=int(seed), device=str(p.device),
                          start="image" if image is not None else "noise")

            def result(done_batches: int, done_iters: int, complete: bool) -> FilterVisualization:
                return FilterVisualization(
                    layer=layer, filters=chosen.copy(), images=images.copy(), start=x0.cpu().numpy(),
                    activation=final.copy(), start_activation=first.copy(), history=history.copy(),
                    complete=complete, iterations_done=done_iters, params=params,
                    elapsed_s=time.perf_counter() - start_time,
                )

            total = iterations * (-(-k // batch_size))
            done = 0
            for b0 in range(0, k, batch_size):
                sel = slice(b0, min(k, b0 + batch_size))
                channels = torch.as_tensor(chosen[sel], device=p.device)
                objective = _objective(p.module, reshape, captured, channels)
                generator = torch.Generator().manual_seed(int(seed) + 1)  # the same rolls for every batch
                x = x0[None].repeat(len(channels), 1, 1, 1)
                with torch.no_grad():
                    first[sel] = objective(x).cpu().numpy()
                for it in range(iterations):
                    if cancel is not None and cancel.is_set():
                        return result(b0 // batch_size, it, False)
                    shift = torch.randint(-int(jitter), int(jitter) + 1, (2,), generator=generator).tolist()
                    x = x.detach().requires_grad_(True)
                    act = objective(torch.roll(x, shifts=shift, dims=(2, 3)))
                    (grad,) = torch.autograd.grad(act.sum(), x)
                    history[sel, it] = act.detach().cpu().numpy()
                    with torch.no_grad():
                        rms = grad.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                        x = x + step * grad / (rms + 1e-12)
                        change = (1.0 - l2) * (x - x0)
                        if blur_every and (it + 1) % blur_every == 0:
                            radius = max(1, int(np.ceil(3 * blur_sigma)))
                            change = gaussian_blur(change, [2 * radius + 1] * 2, [blur_sigma] * 2)
                        x = (x0 + change).clamp_(0.0, 1.0)
                    done += 1
                    if progress is not None:
                        progress(done, total, None)
                with torch.no_grad():
                    final[sel] = objective(x).cpu().numpy()
                images[sel] = x.detach().cpu().numpy()
                if progress is not None:
                    progress(done, total, result(b0 // batch_size + 1, iterations, sel.stop == k))
        finally:
            handle.remove()
        return result(-(-k // batch_size), iterations, True)


class _Reached(Exception):
    """Raised by the hook once the layer's output is captured, to end the forward pass there."""


def _forward_to_layer(module: torch.nn.Module, x: torch.Tensor) -> None:
    try:
        module(x)
    except _Reached:
        pass


def _start_image(x: torch.Tensor | None, hw: tuple[int, int], noise: float, seed: int,
                 device: torch.device) -> torch.Tensor:
    """The given image resized to ``hw``, or mid-grey plus uniform noise in [-noise, noise]."""
    if x is None:
        generator = torch.Generator().manual_seed(int(seed))
        start = 0.5 + noise * (2 * torch.rand((3, *hw), generator=generator) - 1)
        return start.to(device)
    x = x.detach().float()
    if tuple(x.shape[-2:]) != hw:
        x = F.interpolate(x[None], size=hw, mode="bilinear", align_corners=False, antialias=True)[0]
    return x.clamp(0.0, 1.0).to(device)


def _channels(module: torch.nn.Module, layer: str, captured: list, x0: torch.Tensor):
    """One pass on the start image: the layer's reshape to (N, C, h, w)."""
    with torch.no_grad():
        _forward_to_layer(module, x0[None])
    if not captured:
        raise ValueError(f"layer={layer!r} was not called in the forward pass, or gives no tensor")
    return resolve_layout(module, layer, captured[0].shape, cast("tuple[int, int]", tuple(x0.shape[-2:])))


def _objective(module: torch.nn.Module, reshape, captured: list, channels: torch.Tensor):
    """x (B, 3, H, W) -> (B,): the mean over space of channel ``channels[b]`` for image b."""
    rows = torch.arange(len(channels), device=channels.device)

    def objective(x: torch.Tensor) -> torch.Tensor:
        captured.clear()
        _forward_to_layer(module, x)
        maps = reshape(captured[0])
        return maps[rows, channels].float().mean(dim=(1, 2))

    return objective

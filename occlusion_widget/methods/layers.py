"""The activation maps of one layer's channels, strongest first (the widget's layer view)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch
from torch import nn

from ..models import ImageClassifier
from .common import prepared
from .gradcam import _named_module, default_layer

STRENGTH = ("mean", "max")


@dataclass(frozen=True)
class LayerActivations:
    """A layer's output for one input, channels sorted by strength (descending).

    Attributes
    ----------
    layer : str
    activations : float32 (C', h, w)
        The channels, strongest first (``top`` of them if it was given).
    channels : int64 (C',)
        Each row's channel index in the layer.
    strength : float32 (C',)
        The sort key: each channel's spatial mean (or max).
    strength_by : str
        ``"mean"`` or ``"max"``.
    n_channels : int
        Channels in the layer (before ``top``).
    image : float32 (C, H, W)
        The input as the network saw it.
    """

    layer: str
    activations: np.ndarray
    channels: np.ndarray
    strength: np.ndarray
    strength_by: str
    n_channels: int
    image: np.ndarray

    def mosaic(self, n: int | None = 16, columns: int | None = None, pad: int = 1,
               normalize: str = "channel") -> np.ndarray:
        """The first ``n`` channels tiled into one float32 image (rows*(h+pad)-pad, cols*(w+pad)-pad).

        ``normalize="channel"`` scales each tile to [0, 1] on its own (shows
        patterns), ``"global"`` uses one scale for all (shows strength). The
        padding between tiles is NaN (transparent in ``imshow``).
        """
        if normalize not in ("channel", "global"):
            raise ValueError(f"normalize={normalize!r} is not allowed; use 'channel' or 'global'")
        acts = self.activations[: n if n is not None else None].astype(np.float32)
        count, (h, w) = acts.shape[0], acts.shape[1:]
        columns = columns or max(1, int(np.ceil(np.sqrt(count))))
        rows = max(1, -(-count // columns))
        if normalize == "channel":
            lo = acts.min(axis=(1, 2), keepdims=True)
            span = acts.max(axis=(1, 2), keepdims=True) - lo
        else:
            lo = np.full((1, 1, 1), acts.min() if count else 0.0)
            span = np.full((1, 1, 1), (acts.max() - acts.min()) if count else 1.0)
        acts = (acts - lo) / np.where(span > 0, span, 1.0)
        out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), np.nan, dtype=np.float32)
        for i in range(count):
            r, c = divmod(i, columns)
            out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = acts[i]
        return out


def layer_activations(
    model: ImageClassifier | nn.Module,
    image: object,
    layer: str | None = None,
    *,
    strength: str = "mean",
    top: int | None = None,
    device: str | torch.device = "auto",
) -> LayerActivations:
    """One forward pass; the output of ``layer`` for the input, channels sorted by strength.

    Parameters
    ----------
    model : ImageClassifier or nn.Module
    image : tensor (C, H, W) or anything the wrapper's ``preprocess`` takes
    layer : str, optional
        A name from ``model.named_modules()`` with a 4-D output (N, C', h, w).
        Default: :func:`default_layer` (Grad-CAM's layer). A module called
        several times in one forward is taken at its last call.
    strength : "mean" or "max"
        Sort key: each channel's spatial mean (overall response) or maximum
        (strongest local response). Ties keep channel order.
    top : int, optional
        Keep only the ``top`` strongest channels.
    device : "auto", "cpu", "cuda" or torch.device

    Returns
    -------
    LayerActivations
        ``activations`` (C', h, w), ``channels`` (C',), ``strength`` (C',).
    """
    if strength not in STRENGTH:
        raise ValueError(f"strength={strength!r} is not allowed; use 'mean' or 'max'")
    if top is not None and (not isinstance(top, Integral) or isinstance(top, bool) or top < 1):
        raise ValueError(f"top={top!r} is not allowed; use None or a positive int")
    with prepared(model, image, device, None) as p, torch.no_grad():
        if p.is_signal:
            raise ValueError("layer_activations: needs an image (C, H, W)")
        name = layer if layer is not None else default_layer(p.classifier, p.x)
        captured: list[torch.Tensor] = []
        owner = threading.get_ident()

        def hook(_m, _inp, out):
            if threading.get_ident() != owner:
                return  # another thread's forward pass
            captured[:] = [out.detach().clone()] if isinstance(out, torch.Tensor) else [out]

        handle = _named_module(p.module, name).register_forward_hook(hook)
        try:
            p.module(p.x[None])
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"layer={name!r} was not called in the forward pass")
        out = captured[0]
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"layer={name!r}: needs an output (N, C, h, w), this module gives {shape}")
        act = out[0].float().cpu().numpy()
    key = act.mean(axis=(1, 2)) if strength == "mean" else act.max(axis=(1, 2))
    order = np.argsort(-key, kind="stable")[: top if top is not None else None]
    return LayerActivations(
        layer=name, activations=act[order], channels=order.astype(np.int64), strength=key[order].astype(np.float32),
        strength_by=strength, n_channels=act.shape[0], image=p.x.cpu().numpy(),
    )

"""Grad-CAM on layers whose output is not (N, C, h, w): transformer tokens and channels-last maps.

A ViT block gives tokens (N, prefix + h*w, C) (a class token, perhaps register tokens, then the
patches in row-major order); Swin blocks (timm) and the inside of ConvNeXt blocks give channels-last
(N, h, w, C). :func:`reshape_transform` turns either into (N, C, h, w), dropping the prefix tokens,
so that the Grad-CAM arithmetic (channel weights = spatial mean of the gradient) applies unchanged.
This is pytorch-grad-cam's ``reshape_transform``, resolved from the model instead of hand-written.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from ..engine.inputs import Output, prepare_input, resolve_targets
from ..engine.model_state import prepared_module
from ..models import ImageClassifier, as_classifier
from .common import (
    AttributionParams,
    AttributionResult,
    ProgressFn,
    check_callbacks,
    check_cancel,
    check_finite_gradient,
    labels_for,
    no_grad_message,
    prepared,
    scorer,
    upsample_maps,
)

LAYOUTS = ("nchw", "nhwc", "tokens")
_MAX_INFERRED_PREFIX = 16  # class + distillation + register tokens, when the model does not say


@dataclass(frozen=True)
class TokenReshape:
    """A layer output -> (N, C, h, w). Callable, so it can be passed to pytorch-grad-cam too.

    Attributes
    ----------
    layout : "tokens", "nhwc" or "nchw"
        (N, prefix + h*w, C), (N, h, w, C) or already (N, C, h, w) (then the identity).
    height, width : int
        The token grid (h, w).
    prefix : int
        Leading tokens dropped (class, distillation and register tokens); 0 unless ``layout="tokens"``.
    """

    layout: str
    height: int
    width: int
    prefix: int = 0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.layout == "nchw":
            return t
        if self.layout == "nhwc":
            return t.permute(0, 3, 1, 2)
        if t.ndim != 3 or t.shape[1] != self.prefix + self.height * self.width:
            raise ValueError(f"reshape: expected tokens (N, {self.prefix} + {self.height}*{self.width}, C), got "
                             f"{tuple(t.shape)}; the input size changed since the transform was resolved")
        n, _, c = t.shape
        return t[:, self.prefix:, :].reshape(n, self.height, self.width, c).permute(0, 3, 1, 2)


def find_module(root: nn.Module, name: str) -> nn.Module:
    """``root``'s submodule called ``name``, or a ValueError listing the last names."""
    modules = dict(root.named_modules())
    if not isinstance(name, str) or not name or name not in modules:
        names = [n for n in modules if n][-8:]
        raise ValueError(f"layer={name!r} is not a module of the model; the last names are {names}")
    return modules[name]


def default_layer(model: ImageClassifier | nn.Module, image: object = None) -> str:
    """Grad-CAM's layer, transformers included.

    For a transformer (a module with an attention child and ``norm1``/``ln_1``: timm ViT, DeiT,
    Swin; torchvision ViT and Swin) the *last* block's first norm (``blocks[-1].norm1``, for Swin
    ``layers[-1].blocks[-1].norm1``), as pytorch-grad-cam recommends: the blocks' outputs after the
    last one no longer feed the patch tokens into the score. Otherwise the last spatial (N, C, h, w)
    layer, as :func:`occlusion_widget.methods.grad_cam` picks (``layer4`` for a ResNet).
    """
    module = as_classifier(model).module
    last = None
    for name, m in module.named_modules():
        has_attention = any(hasattr(m, a) for a in ("attn", "self_attention"))
        for norm in ("norm1", "ln_1"):
            if has_attention and isinstance(getattr(m, norm, None), nn.Module):
                last = f"{name}.{norm}" if name else norm
    if last is not None:
        return last
    from .gradcam import default_layer as spatial_default_layer

    return spatial_default_layer(model, image)


def _prefix_tokens(root: nn.Module, layer: str) -> int | None:
    """The prefix tokens the model declares: timm's ``num_prefix_tokens`` (class + registers), or 1 for a
    torchvision ViT (``class_token``), on the closest module above ``layer``; None when none says."""
    parts = layer.split(".")
    modules = dict(root.named_modules())
    for i in range(len(parts) - 1, -1, -1):
        owner = modules.get(".".join(parts[:i]))
        if owner is None:
            continue
        if isinstance(getattr(owner, "num_prefix_tokens", None), int):
            return int(owner.num_prefix_tokens)
        if isinstance(getattr(owner, "class_token", None), torch.Tensor):
            return 1
    return None


def _grid(n: int, size: tuple[int, int], exact: bool) -> tuple[int, int] | None:
    """(h, w) with h*w = n and h/w the input's aspect ratio (``exact``, or within 10%), or None."""
    height, width = size
    h = max(1, round(math.sqrt(n * height / width)))
    for cand in (h, h - 1, h + 1):
        if cand >= 1 and n % cand == 0:
            w = n // cand
            if (cand * width == w * height) if exact else _aspect_ok(cand, w, size):
                return cand, w
    return None


def _aspect_ok(h: int, w: int, size: tuple[int, int]) -> bool:
    """A grid whose cells have the input's aspect ratio within 10% (patch grids round at the edges)."""
    return h >= 1 and w >= 1 and abs((size[0] / h) / (size[1] / w) - 1) <= 0.1


def resolve_layout(root: nn.Module, layer: str, shape: Sequence[int], input_size: tuple[int, int]) -> TokenReshape:
    """How a layer's output of ``shape`` becomes (N, C, h, w), given the input (H, W). Raises if unclear."""
    shape = tuple(int(s) for s in shape)
    where = f"layer={layer!r} gives {shape}"
    if len(shape) == 3:
        tokens = shape[1]
        declared = _prefix_tokens(root, layer)
        # A declared prefix may leave a grid that rounds at the edges; an inferred one must fit exactly
        # (else a few tokens more or less would always fit some grid).
        prefixes = [declared] if declared is not None else range(0, min(_MAX_INFERRED_PREFIX, tokens - 1) + 1)
        for p in prefixes:
            grid = _grid(tokens - p, input_size, exact=declared is None)
            if grid is not None:
                return TokenReshape("tokens", grid[0], grid[1], p)
        said = f"{declared} prefix token(s)" if declared is not None else "0..16 prefix tokens"
        raise ValueError(f"{where}: tokens (N, T, C), but T minus {said} is not a grid of the input's "
                         f"aspect ratio {input_size}; Grad-CAM needs patch tokens")
    if len(shape) == 4:
        nchw, nhwc = _aspect_ok(shape[2], shape[3], input_size), _aspect_ok(shape[1], shape[2], input_size)
        if nchw and nhwc:  # e.g. (N, 7, 7, 7): ask the module what its last axis is
            m = find_module(root, layer)
            last = getattr(m, "normalized_shape", None) or (getattr(m, "out_features", None),)
            channels_last = (isinstance(m, (nn.LayerNorm, nn.Linear)) and not type(m).__name__.endswith("2d")
                             and tuple(last)[-1] == shape[3])
            nchw = not channels_last
        if nchw:
            return TokenReshape("nchw", shape[2], shape[3])
        if nhwc:
            return TokenReshape("nhwc", shape[1], shape[2])
        raise ValueError(f"{where}: neither (N, C, h, w) nor (N, h, w, C) with the input's aspect ratio {input_size}")
    raise ValueError(f"{where}: Grad-CAM needs tokens (N, T, C), (N, C, h, w) or channels-last (N, h, w, C)")


def reshape_transform(model: ImageClassifier | nn.Module, layer: str | None = None,
                      image: object = None) -> TokenReshape:
    """The callable that turns ``layer``'s output into (N, C, h, w), found by one traced forward pass.

    Parameters
    ----------
    model : ImageClassifier or nn.Module
    layer : str, optional
        A name from ``model.named_modules()``; default :func:`default_layer`.
    image : optional
        The input to trace with; default zeros of the wrapper's ``input_size``.

    Returns
    -------
    TokenReshape
        E.g. ``TokenReshape('tokens', 14, 14, prefix=1)`` for ViT-B/16 at 224x224.
    """
    classifier = as_classifier(model)
    x = torch.zeros(3, *classifier.input_size) if image is None else prepare_input(classifier, image)[0]
    name = layer if layer is not None else default_layer(classifier, x)
    find_module(classifier.module, name)
    dev = next(classifier.module.parameters(), torch.empty(0)).device
    # An eval-mode view (the module itself when already in eval mode): the user's module is never flipped.
    view = prepared_module(classifier.module, dev)
    captured: list[object] = []
    owner = threading.get_ident()

    def hook(_m, _i, out):
        if threading.get_ident() == owner:
            captured.append(out)

    handle = find_module(view, name).register_forward_hook(hook)
    try:
        with torch.no_grad():
            view(x[None].to(dev))
    finally:
        handle.remove()
    if not captured or not isinstance(captured[-1], torch.Tensor):
        raise ValueError(f"layer={name!r} was not called in the forward pass, or gives no tensor")
    return resolve_layout(classifier.module, name, captured[-1].shape, cast("tuple[int, int]", tuple(x.shape[-2:])))


def grad_cam_tokens(
    model: ImageClassifier | nn.Module,
    image: object,
    targets: int | Sequence[int] | None = None,
    *,
    top_k: int | None = None,
    layer: str | None = None,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    output: Output = "logit",
    upsampling: str = "bilinear",
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> AttributionResult:
    """Grad-CAM on any layer: tokens, channels-last or channels-first, ``ReLU(sum_c w_c A_c)``.

    ``A`` is the layer's output (and ``G`` its gradient) reshaped to (1, C, h, w) by ``reshape``
    (default :func:`resolve_layout` of the output); ``w_c`` the spatial mean of ``G_c``. Equal to
    pytorch-grad-cam's ``GradCAM`` with the same ``reshape_transform`` (before its min-max scaling).

    Parameters
    ----------
    model, image, targets, top_k, output, upsampling, device, progress, cancel
        As for :func:`occlusion_widget.methods.grad_cam`.
    layer : str, optional
        Default :func:`default_layer` (the last transformer block's ``norm1`` for a ViT or Swin).
    reshape : callable, optional
        Output -> (N, C, h, w); default resolved from the output's shape and the model.

    Returns
    -------
    AttributionResult
        ``method="grad_cam"``, ``grid`` (K, h, w) the raw CAM on the token grid, ``maps`` (K, H, W);
        ``extra["weights"]`` (K, C), ``extra["activation"]`` (C, h, w), ``extra["reshape"]``.
    """
    check_callbacks(progress, cancel)
    start = time.perf_counter()
    with prepared(model, image, device, cancel) as p:
        if p.is_signal:
            raise ValueError("grad_cam: needs an image (C, H, W); use saliency or smoothgrad for a 1-D signal")
        check_cancel(cancel)
        name = layer if layer is not None else default_layer(p.classifier, p.x)
        target_module = find_module(p.module, name)
        score, output_name = scorer(p.module, output, False, "grad_cam")
        captured: list[torch.Tensor] = []
        owner = threading.get_ident()

        def hook(_m, _inp, out):
            if threading.get_ident() != owner or not isinstance(out, torch.Tensor):
                return None  # another thread's pass; a non-tensor output is reported below
            captured[:] = [out]
            return out.clone()  # a later in-place op cannot alter what we read

        handle = target_module.register_forward_hook(hook)
        try:
            x = p.x[None].requires_grad_(True)
            scores = score(x)
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"layer={name!r} was not called in the forward pass, or gives no tensor")
        raw = captured[0]
        fn = reshape or resolve_layout(p.module, name, raw.shape, cast("tuple[int, int]", tuple(p.x.shape[-2:])))
        act = fn(raw.detach()).float()
        if act.ndim != 4:
            raise ValueError(f"reshape: gave {tuple(act.shape)} for layer={name!r}; it must give (N, C, h, w)")
        if not scores.requires_grad:
            raise ValueError(no_grad_message("grad_cam"))
        if not raw.requires_grad:
            raise ValueError(f"grad_cam: layer={name!r}'s output does not require grad; choose a layer on the "
                             "differentiable path from the input to the score")
        target_idx = resolve_targets(targets, top_k, scores[0].detach())
        k_total = len(target_idx)
        cams = np.zeros((k_total, *act.shape[2:]), dtype=np.float32)
        weights = np.zeros((k_total, act.shape[1]), dtype=np.float32)
        params = AttributionParams("grad_cam", output_name, upsampling, layer=name, device=str(p.device))
        size = cast("tuple[int, int]", p.x.shape[1:])  # (H, W) of the (C, H, W) input
        upsample_maps(cams[:1], size, upsampling)  # validate upsampling before the backward passes

        def result(done: int) -> AttributionResult:
            base = scores[0].detach()[torch.as_tensor(target_idx, device=scores.device)].float().cpu().numpy()
            return AttributionResult(
                method="grad_cam", grid=cams.copy(), maps=upsample_maps(cams, size, upsampling),
                base_scores=base, targets=target_idx, labels=labels_for(p.classifier, target_idx), params=params,
                image=p.x.detach().cpu().numpy(), complete=done == k_total, n_forward=1,
                elapsed_s=time.perf_counter() - start,
                extra={"weights": weights.copy(), "activation": act[0].cpu().numpy(), "reshape": fn},
            )

        for k, t in enumerate(target_idx):
            check_cancel(cancel)
            (grad,) = torch.autograd.grad(scores[0, int(t)], raw, retain_graph=k < k_total - 1, allow_unused=True)
            if grad is None:
                raise ValueError(f"grad_cam: the score of class {int(t)} does not depend on layer={name!r}'s "
                                 "output; choose a layer the score is computed from")
            check_finite_gradient(grad, "grad_cam", f"layer={name!r}'s output")
            w = fn(grad).float()[0].mean(dim=(1, 2))
            cam = torch.relu((w[:, None, None] * act[0]).sum(dim=0))
            cams[k], weights[k] = cam.cpu().numpy(), w.cpu().numpy()
            if progress is not None:
                progress(k + 1, k_total, result(k + 1))
        return result(k_total)

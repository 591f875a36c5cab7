"""Grad-CAM (Selvaraju et al. 2017) and the discovery of a network's spatial layers.

Transformer tokens (N, T, C) and channels-last maps (N, h, w, C) are reshaped to (N, C, h, w) by
:mod:`.token_layers` (or a user's ``reshape_transform``) before the usual arithmetic.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from ..engine.inputs import Output, prepare_input, resolve_targets
from ..engine.model_state import check_materialised, prepared_module
from ..models import ImageClassifier, as_classifier
from . import token_layers
from .common import (
    AttributionParams,
    AttributionResult,
    ProgressFn,
    cancelled,
    check_callbacks,
    check_finite_gradient,
    no_grad_message,
    prepared,
    scorer,
    structured_targets,
    upsample_maps,
)

_DEFAULT_LAYER_CACHE: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def spatial_layers(model: ImageClassifier | nn.Module, image: object = None) -> list[tuple[str, tuple[int, ...]]]:
    """The named modules whose output is 4-D (N, C, h, w) with ``h * w > 1``, in the
    order their forward calls finish, with their output shape (C, h, w).

    One forward pass with hooks on every named module (containers included, so
    ResNet's ``layer4`` is listed after ``layer4.1``). A module called several
    times in one forward (a shared activation) is listed at its last call.

    Parameters
    ----------
    model : ImageClassifier or nn.Module
    image : optional
        The input to trace with (any shape the model accepts); default: zeros of
        the wrapper's ``input_size`` (a plain module needs an image).
    """
    classifier = as_classifier(model)
    if image is None:
        if not isinstance(model, ImageClassifier):
            raise ValueError("image: a plain nn.Module has no input size; give an image to trace with")
        x = torch.zeros(3, *classifier.input_size)
    else:
        x, is_signal = prepare_input(classifier, image)
        if is_signal:
            return []
    module = classifier.module
    check_materialised(module)
    dev = next(module.parameters(), torch.empty(0)).device
    seen: dict[str, tuple[int, tuple[int, ...]]] = {}
    counter = [0]
    owner = threading.get_ident()

    def make_hook(name: str):
        def hook(_m, _inp, out):
            if threading.get_ident() != owner:
                return
            counter[0] += 1
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1:
                seen[name] = (counter[0], tuple(out.shape[1:]))
            else:
                seen.pop(name, None)

        return hook

    # An eval-mode view (the module itself when it is already in eval mode): the user's
    # module is never flipped to eval, and the hooks ignore other threads' passes.
    view = prepared_module(module, dev)
    handles = [m.register_forward_hook(make_hook(n)) for n, m in view.named_modules() if n]
    try:
        with torch.no_grad():
            view(x[None].to(dev))
    finally:
        for h in handles:
            h.remove()
    return [(name, shape) for name, (_, shape) in sorted(seen.items(), key=lambda kv: kv[1][0])]


def default_layer(model: ImageClassifier | nn.Module, image: object = None) -> str:
    """The last module (in forward order) whose output has spatial extent: Grad-CAM's usual layer.

    ``"layer4"`` for a torchvision ResNet, ``"1._swish"`` (the head's ReLU6,
    7x7x1280) for the default EfficientNet-Lite0. Cached per module and input shape.
    """
    classifier = as_classifier(model)
    key = tuple(image.shape) if isinstance(image, torch.Tensor) else ("default" if image is None else "preprocessed")
    cache = _DEFAULT_LAYER_CACHE.setdefault(classifier.module, {})
    if key not in cache:
        layers = spatial_layers(model, image)
        if not layers:
            raise ValueError("layer: the model has no module with a 4-D output of spatial extent > 1x1; name one with layer=")
        cache[key] = layers[-1][0]
    return cache[key]


def grad_cam(
    model: ImageClassifier | nn.Module,
    image: object,
    targets: int | Sequence[int] | None = None,
    *,
    top_k: int | None = None,
    min_score: float = 0.5,
    layer: str | None = None,
    output: Output = "logit",
    upsampling: str = "bilinear",
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> AttributionResult:
    """Grad-CAM: ``ReLU(sum_c w_c A_c)`` with ``w_c`` the spatial mean of ``d score / d A_c``.

    ``A`` (C', h, w) is the output of ``layer`` for the input, reshaped to (N, C', h, w) when the
    layer gives transformer tokens (N, T, C') or a channels-last map (N, h, w, C'). One forward pass,
    one backward pass per target. The map is *not* normalised (pytorch-grad-cam
    scales each map to [0, 1]; apply ``(m - m.min()) / m.max()`` to compare).

    Parameters
    ----------
    model, image, targets, top_k, min_score, device
        As for :func:`saliency`. Images only (a 1-D signal raises). With a
        ``SegmentationTarget`` (region, ``output="logit"``) the map equals
        pytorch-grad-cam's ``SemanticSegmentationTarget`` up to scale, with a
        ``DetectionTarget(score="box_score")`` its ``FasterRCNNBoxScoreTarget``.
    layer : str, optional
        A name from ``model.named_modules()`` whose output is (N, C', h, w), tokens
        (N, T, C') or channels-last (N, h, w, C'). Default:
        :func:`.token_layers.default_layer`: a transformer's last block's first norm (ViT,
        DeiT, Swin; ``encoder.layers.encoder_layer_11.ln_1`` for torchvision's ViT-B/16),
        else the last spatial layer (:func:`default_layer`). A module called several times in one
        forward is taken at its last call. The layer's output is cloned in a
        hook, so a later in-place op (``ReLU(inplace=True)``) cannot alter it.
    output : "logit", "probability" or callable
        The score differentiated; the logit (raw output) is what pytorch-grad-cam's
        ``ClassifierOutputTarget`` uses and the paper's choice.
    upsampling : "bilinear", "bicubic", "nearest" or "none"
        How ``maps`` (K, H, W) is made from ``grid`` (K, h, w). "bilinear"
        (half-pixel centres) is what pytorch-grad-cam does with ``cv2.resize``.
        Bicubic can overshoot below 0.
    progress : callable(done, total, partial), optional
        Called after each target.
    cancel : threading.Event, optional
        Checked before each target's backward pass; when set, returns the result so
        far with ``complete=False``: the targets done, NaN maps for the others.
    reshape_transform : callable, optional
        The layer's output -> (N, C', h, w), applied to the activation and to its gradient
        (pytorch-grad-cam's argument of that name). Default:
        :func:`.token_layers.resolve_layout` of the output's shape (class and register
        tokens dropped; a 4-D output it cannot place is read as (N, C', h, w)).

    Returns
    -------
    AttributionResult
        ``grid`` (K, h, w) the raw CAM, ``maps`` (K, H, W), ``params.layer``;
        ``extra["weights"]`` (K, C') the channel weights, ``extra["activation"]``
        (C', h, w), ``extra["reshape"]`` the transform used.
    """
    check_callbacks(progress, cancel)
    start = time.perf_counter()
    with prepared(model, image, device, cancel) as p:
        if p.is_signal:
            raise ValueError("grad_cam: needs an image (C, H, W); use saliency or smoothgrad for a 1-D signal")
        if reshape_transform is not None and not callable(reshape_transform):
            raise TypeError(f"reshape_transform={reshape_transform!r} is not allowed; use None or a callable "
                            "mapping the layer's output to (N, C, h, w)")
        name = layer if layer is not None else token_layers.default_layer(p.classifier, p.x)
        target_module = _named_module(p.module, name)
        output, wanted, top_k = structured_targets(p, targets, top_k, output, min_score, "grad_cam")
        score, output_name = scorer(p.module, output, False, "grad_cam")
        captured: list[torch.Tensor] = []
        owner = threading.get_ident()

        def hook(_m, _inp, out):
            if threading.get_ident() != owner:
                return None  # another thread's forward pass (e.g. a widget preview) is left alone
            if not isinstance(out, torch.Tensor) or out.ndim not in (3, 4):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"layer={name!r}: Grad-CAM needs an output (N, C, h, w), tokens (N, T, C) or "
                                 f"channels-last (N, h, w, C); this module gives {shape}")
            captured[:] = [out]
            return out.clone()

        handle = target_module.register_forward_hook(hook)
        try:
            x = p.x[None].requires_grad_(True)  # so that the layer joins the graph even with frozen weights
            scores = score(x)
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"layer={name!r} was not called in the forward pass")
        raw = captured[0]  # the gradient is taken on the layer's own output, then reshaped like it
        fn = reshape_transform or _layout(p.module, name, raw.shape, cast("tuple[int, int]", tuple(p.x.shape[-2:])))
        act = fn(raw.detach())
        if not isinstance(act, torch.Tensor) or act.ndim != 4 or act.shape[0] != raw.shape[0]:
            got = tuple(act.shape) if isinstance(act, torch.Tensor) else type(act).__name__
            raise ValueError(f"reshape_transform: gave {got} for layer={name!r}'s output {tuple(raw.shape)}; "
                             "it must give (N, C, h, w)")
        if not scores.requires_grad:
            raise ValueError(no_grad_message("grad_cam"))
        if not raw.requires_grad:
            raise ValueError(
                f"grad_cam: layer={name!r}'s output does not require grad (the layer runs under torch.no_grad() "
                "or its input is detached), so the score has no gradient with respect to it; choose a layer on "
                "the differentiable path from the input to the score"
            )
        target_idx = resolve_targets(wanted, top_k, scores[0].detach())
        k_total = len(target_idx)
        cams = np.full((k_total, *act.shape[2:]), np.nan, dtype=np.float32)  # NaN: not computed yet
        weights = np.full((k_total, act.shape[1]), np.nan, dtype=np.float32)
        params = AttributionParams("grad_cam", output_name, upsampling, layer=name, device=str(p.device))
        size = cast("tuple[int, int]", tuple(p.x.shape[1:]))  # (H, W) of the (C, H, W) input
        upsample_maps(np.zeros_like(cams[:1]), size, upsampling)  # validate upsampling before the backward passes

        def result(done: int) -> AttributionResult:
            base = scores[0].detach()[torch.as_tensor(target_idx, device=scores.device)].float().cpu().numpy()
            return AttributionResult(
                method="grad_cam", grid=cams.copy(), maps=upsample_maps(cams, size, upsampling),
                base_scores=base, targets=target_idx, labels=p.labels(target_idx), params=params,
                image=p.x.detach().cpu().numpy(), complete=done == k_total, n_forward=1,
                elapsed_s=time.perf_counter() - start,
                extra={"weights": weights.copy(), "activation": act[0].detach().float().cpu().numpy(), "reshape": fn},
            )

        for k, t in enumerate(target_idx):
            if cancelled(cancel):
                return result(k)  # the targets done; NaN maps for the others
            (grad,) = torch.autograd.grad(scores[0, int(t)], raw, retain_graph=k < k_total - 1, allow_unused=True)
            if grad is None:
                raise ValueError(
                    f"grad_cam: the score of class {int(t)} does not depend on layer={name!r}'s output (an "
                    "auxiliary branch, or a detached path); choose a layer the score is computed from "
                    "(spatial_layers(model, image) lists them in forward order)"
                )
            check_finite_gradient(grad, "grad_cam", f"layer={name!r}'s output")
            w = fn(grad)[0].float().mean(dim=(1, 2))
            cam = torch.relu((w[:, None, None] * act[0].detach().float()).sum(dim=0))
            cams[k], weights[k] = cam.cpu().numpy(), w.cpu().numpy()
            if progress is not None:
                progress(k + 1, k_total, result(k + 1))
        return result(k_total)


def _layout(root: nn.Module, name: str, shape: torch.Size, size: tuple[int, int]) -> token_layers.TokenReshape:
    """How ``name``'s output becomes (N, C, h, w); a 4-D output that fits no grid of the input's aspect
    ratio stays channels-first, as Grad-CAM always read it (a CNN's odd-sized maps)."""
    try:
        return token_layers.resolve_layout(root, name, shape, size)
    except ValueError:
        if len(shape) != 4:
            raise
        return token_layers.TokenReshape("nchw", int(shape[2]), int(shape[3]))


def _named_module(module: nn.Module, name: str) -> nn.Module:
    modules = dict(module.named_modules())
    if not isinstance(name, str) or name not in modules or not name:
        names = [n for n, _ in module.named_modules() if n][-8:]
        raise ValueError(f"layer={name!r} is not a module of the model; the last names are {names}")
    return modules[name]


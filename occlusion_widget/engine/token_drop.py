"""Token-drop occlusion for vision transformers (opt-in): occluded patches are removed, not painted.

A grey patch is out of distribution for a ViT, which then partly reacts to the grey rather than to
the missing content ("missingness bias", Jain et al., ICLR 2022). A ViT can instead be run on a
subset of its patch tokens: embed every patch of the clean image once, add the position embeddings,
keep the class (and distillation / register) tokens, drop the tokens of the patches inside the box,
and run the blocks, the final norm and the head as the model does (class-token pooling, or mean
pooling over the tokens that are left). Fewer tokens also cost less.

Boxes are snapped *outward* to the patch grid (``snap="outward"``, the default): every patch a box
touches is dropped, so everything the box covers is hidden from the model, plus up to
``patch - 1`` pixels on each side. :func:`patch_aligned_boxes` gives the boxes actually hidden
(what a result should report). ``snap="strict"`` refuses boxes that are not on the grid.

Supported: torchvision ``VisionTransformer`` and timm ``VisionTransformer`` (DeiT, distilled DeiT,
register tokens included) with a plain patch embedding, alone or as the last module of an
``nn.Sequential`` whose earlier modules (e.g. ``Normalize``) keep the image's size.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

SNAPS = ("outward", "strict")
SUPPORTED = ("torchvision.models.VisionTransformer", "timm VisionTransformer (ViT, DeiT, distilled DeiT)")


@dataclass
class TokenDropModel:
    """A ViT split where tokens can be dropped.

    Attributes
    ----------
    family : "torchvision" or "timm"
    net : nn.Module
        The ViT.
    before : list of nn.Module
        Modules run on the image first (an ``nn.Sequential``'s modules before the ViT).
    patch : (int, int)
        The patch size (ph, pw) in pixels.
    """

    family: str
    net: nn.Module
    before: list[nn.Module]
    patch: tuple[int, int]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(1, C, H, W) image -> (tokens (1, prefix + gh*gw, D) with position embeddings, prefix)."""
        for m in self.before:
            x = m(x)
        net: Any = self.net  # torchvision's or timm's attributes, checked by token_drop_model
        if self.family == "torchvision":
            t = net.conv_proj(x)  # (1, D, gh, gw)
            t = t.flatten(2).transpose(1, 2)
            t = torch.cat([net.class_token.expand(t.shape[0], -1, -1), t], dim=1)
            return net.encoder.dropout(t + net.encoder.pos_embedding), 1
        t = net._pos_embed(net.patch_embed(x))  # class/register tokens prepended, positions added
        return net.norm_pre(net.patch_drop(t)), int(net.num_prefix_tokens)

    def run(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L, D) -> the model's output (B, classes)."""
        net: Any = self.net  # torchvision's or timm's attributes, checked by token_drop_model
        if self.family == "torchvision":
            t = net.encoder.ln(net.encoder.layers(tokens))
            return net.heads(t[:, 0])
        return net.forward_head(net.norm(net.blocks(tokens)))

    @property
    def pools_patches(self) -> bool:
        """True when the head reads the patch tokens only (mean pooling), so at least one must be kept."""
        return self.family == "timm" and getattr(self.net, "global_pool", "token") != "token" and \
            not getattr(self.net, "pool_include_prefix", False)


def token_drop_model(module: nn.Module) -> TokenDropModel:
    """The :class:`TokenDropModel` of ``module``, or a ValueError naming what is supported."""
    before: list[nn.Module] = []
    net = module
    if isinstance(module, nn.Sequential) and len(module) > 0:
        before, net = list(module)[:-1], module[-1]
    import torchvision.models

    if isinstance(net, torchvision.models.VisionTransformer):
        p = int(net.patch_size)
        return TokenDropModel("torchvision", net, before, (p, p))
    vit_module = sys.modules.get("timm.models.vision_transformer")  # no timm import: unused, it cannot be a timm model
    if vit_module is not None and isinstance(net, vit_module.VisionTransformer):
        pe = net.patch_embed
        proj = getattr(pe, "proj", None)
        size = tuple(int(s) for s in getattr(pe, "patch_size", ()))
        if not (isinstance(proj, nn.Conv2d) and len(size) == 2 and tuple(proj.kernel_size) == size
                and tuple(proj.stride) == size) or getattr(pe, "dynamic_img_pad", False):
            raise ValueError(f"mask_value='drop': {type(net).__name__}'s patch embedding ({type(pe).__name__}) does "
                             "not embed each patch on its own (a hybrid CNN stem or padding); token drop needs "
                             "a plain patch embedding")
        return TokenDropModel("timm", net, before, (size[0], size[1]))
    raise ValueError(f"mask_value='drop' needs a vision transformer whose patch tokens can be dropped: "
                     f"{', '.join(SUPPORTED)}, alone or last in an nn.Sequential; got {type(net).__name__}. "
                     "Use a number, 'auto' or 'blur' to paint the mask instead")


def patch_aligned_boxes(boxes: torch.Tensor | np.ndarray, patch: tuple[int, int], size: tuple[int, int],
                        snap: str = "outward") -> torch.Tensor:
    """Boxes ``[y0, x0, y1, x1)`` (B, 4) in pixels -> the patch-aligned boxes whose tokens are dropped.

    Parameters
    ----------
    boxes : (B, 4) integer tensor or array
        An empty box (``y1 == y0`` or ``x1 == x0``) hides nothing: it becomes (0, 0, 0, 0).
    patch : (ph, pw)
    size : (H, W) of the input, multiples of the patch size.
    snap : "outward" or "strict"
        "outward": every patch the box overlaps (the box grown to the grid); "strict": refuse a box
        that is not on the grid.

    Returns
    -------
    torch.Tensor
        (B, 4) int64, on the grid, inside the image.
    """
    if snap not in SNAPS:
        raise ValueError(f"snap={snap!r} is not allowed; use one of {SNAPS}")
    b = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes).to(torch.int64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes: expected (B, 4) [y0, x0, y1, x1), got shape {tuple(b.shape)}")
    (ph, pw), (h, w) = patch, size
    if len(b) == 0:
        raise ValueError("boxes: none given; expected (B, 4) with B >= 1")
    hi = b.new_tensor([h, w, h, w])
    wrong = ((b < 0) | (b > hi)).any(1) | (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bool(wrong.any()):
        raise ValueError(f"boxes: {b[wrong][0].tolist()} is reversed or outside the {h}x{w} input; boxes are "
                         "[y0, x0, y1, x1) pixels")
    step = b.new_tensor([ph, pw, ph, pw])
    out = torch.cat([b[:, :2] // step[:2] * step[:2], -(-b[:, 2:] // step[2:]) * step[2:]], dim=1)
    empty = (b[:, 2] == b[:, 0]) | (b[:, 3] == b[:, 1])
    out[empty] = 0
    b = torch.where(empty[:, None], out, b)  # an empty box is on the grid whatever its corner
    if snap == "strict" and not torch.equal(out, b):
        bad = b[(out != b).any(1)][0].tolist()
        raise ValueError(f"boxes: {bad} is not on the {ph}x{pw} patch grid (snap='strict'); use mask sizes and "
                         f"strides that are multiples of the patch size, or snap='outward'")
    return out


def token_drop_scores(
    module: nn.Module,
    x: torch.Tensor,
    boxes: torch.Tensor | np.ndarray,
    patch_size: int | tuple[int, int] | None = None,
    *,
    reduce: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    batch_size: int = 64,
    snap: str = "outward",
) -> torch.Tensor:
    """The model's scores with the patches inside each box dropped from its tokens.

    Parameters
    ----------
    module : nn.Module
        A supported ViT (see the module docstring), in eval mode, on ``x``'s device.
    x : torch.Tensor
        The clean image (C, H, W) or (1, C, H, W), H and W multiples of the patch size.
    boxes : (B, 4) tensor or array
        ``[y0, x0, y1, x1)`` in pixels; snapped as ``snap`` says (:func:`patch_aligned_boxes`). An
        empty box drops no token: its scores are the model's own on ``x`` (to float rounding).
    patch_size : int or (int, int), optional
        Checked against the model's when given.
    reduce : callable(output, n) -> (n, K), optional
        Turns a batch's raw output into scores (the sweep's ``score_function(...).from_output``);
        default: the raw output, which must be (n, classes).
    batch_size : int
        Boxes per forward pass. Boxes dropping the same number of tokens go through together.
    snap : "outward" or "strict"

    Returns
    -------
    torch.Tensor
        (B, K) float32 scores in the order of ``boxes``.
    """
    vit = token_drop_model(module)
    if patch_size is not None:
        given = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        if given != vit.patch:
            raise ValueError(f"patch_size={patch_size!r} is not the model's patch size {vit.patch}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; use a positive int")
    if vit.net.training:
        raise ValueError("mask_value='drop': the model is in training mode (dropout would make the scores random); "
                         "call .eval() or pass an eval-mode copy")
    img = x[None] if x.ndim == 3 else x
    if img.ndim != 4 or img.shape[0] != 1:
        raise ValueError(f"x: expected one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    (ph, pw), (h, w) = vit.patch, (int(img.shape[2]), int(img.shape[3]))
    net: Any = vit.net
    if h % ph or w % pw:
        raise ValueError(f"x: the input {h}x{w} is not a whole number of {ph}x{pw} patches; token drop needs "
                         "an input the model tiles exactly")
    if vit.family == "torchvision" and (h, w) != (net.image_size,) * 2:
        raise ValueError(f"x: the model takes {net.image_size}x{net.image_size} images, got {h}x{w}")
    expected = getattr(net.patch_embed, "img_size", None) if vit.family == "timm" else None
    if expected is not None and getattr(net.patch_embed, "strict_img_size", False) and tuple(expected) != (h, w):
        raise ValueError(f"x: the model takes {expected[0]}x{expected[1]} images, got {h}x{w}")
    aligned = patch_aligned_boxes(boxes, vit.patch, (h, w), snap)
    gh, gw = h // ph, w // pw
    rows, cols = torch.arange(gh), torch.arange(gw)
    a = aligned.cpu()
    inside = (((rows * ph >= a[:, 0, None]) & (rows * ph < a[:, 2, None]))[:, :, None]
              & ((cols * pw >= a[:, 1, None]) & (cols * pw < a[:, 3, None]))[:, None, :]).flatten(1)  # (B, gh*gw)
    n_drop = inside.sum(1)
    with torch.no_grad():
        tokens, prefix = vit.embed(img)
    if tokens.shape[1] != prefix + gh * gw:
        raise ValueError(f"mask_value='drop': the model made {tokens.shape[1]} tokens from a {h}x{w} input, "
                         f"expected {prefix} + {gh}x{gw}; token drop cannot place the patches")
    if vit.pools_patches and bool((n_drop == gh * gw).any()):
        raise ValueError("boxes: a box covers every patch, and this model averages the patch tokens: nothing "
                         "would be left to pool; use a smaller mask")
    out: torch.Tensor | None = None
    for count in torch.unique(n_drop).tolist():  # equal lengths batch together
        members = torch.nonzero(n_drop == count).flatten()
        for chunk in members.split(batch_size):
            keep = torch.nonzero(~inside[chunk])[:, 1].view(len(chunk), -1) + prefix  # (b, kept), row-major
            index = torch.cat([torch.arange(prefix).expand(len(chunk), -1), keep], dim=1).to(tokens.device)
            batch = tokens[0][index]  # (b, prefix + kept, D)
            with torch.no_grad():
                raw = vit.run(batch)
            scores = reduce(raw, len(chunk)) if reduce is not None else raw
            if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[0] != len(chunk):
                got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise ValueError(f"token_drop_scores: the scores must be (n, K), one row per box; got {got}")
            if out is None:
                out = scores.new_empty((len(aligned), scores.shape[1]), dtype=torch.float32)
            out[chunk.to(out.device)] = scores.float()
    assert out is not None  # patch_aligned_boxes refuses an empty list of boxes
    return out


def check_token_drop(module: nn.Module, x: torch.Tensor, is_signal: bool, segments: object, mask_shape: str,
                      layer: str | None, strategy: str) -> str:
    """Refuse what ``mask_value="drop"`` cannot do, before any forward pass; the strategy it runs with."""
    if is_signal or x.ndim != 3 or segments is not None or mask_shape != "box" or layer is not None:
        raise ValueError("mask_value='drop' removes a vision transformer's patch tokens: it needs an image (C, H, W), "
                         "box masks (mask_shape='box', no segments=) and class scores (no layer=)")
    if strategy == "incremental":
        raise ValueError("mask_value='drop' runs the transformer on fewer tokens; use strategy='auto' or 'full'")
    token_drop_model(module)  # raises, naming the supported models, for anything else
    return "full"

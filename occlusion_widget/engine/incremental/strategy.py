"""Choosing between the full and the incremental path: what ``occlusion_sweep(strategy=...)`` calls."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from .evaluator import IncrementalEvaluator
from .graph import UnsupportedModel

STRATEGIES = ("auto", "full", "incremental")

#: "auto" goes incremental when the estimated multiply-adds per position are
#: below this fraction of a full forward pass. Measured on this project's
#: 2-core CPU (ResNet-18/50, MobileNetV2, EfficientNet-Lite0, masks 15-90 px on
#: 224 px): wall time ratio ~= 0.75-1.0 x the multiply-add ratio, so 0.8 keeps
#: a >= 1.2x margin where it picks incremental.
AUTO_MAX_COST_RATIO = 0.8

#: ...and only for networks of at least this many multiply-adds per forward
#: pass: below it, Python overhead per layer (~0.1 ms) outweighs the saving.
AUTO_MIN_MACS = 50_000_000

Output = str | Callable[[torch.Tensor], torch.Tensor]
ScoreBoxes = Callable[[torch.Tensor], torch.Tensor]


def make_incremental_score(
    module: nn.Module,
    x: torch.Tensor,
    fill: torch.Tensor,
    output: Output = "probability",
    *,
    strategy: str = "auto",
    mask_size: tuple[int, int] | None = None,
    layer: str | None = None,
    is_signal: bool = False,
    precision: str = "float32",
) -> ScoreBoxes | None:
    """A ``score(boxes) -> (B, K_all)`` for the sweep, or None to use the full path.

    Parameters
    ----------
    module, x, fill
        The (eval-mode) network, the input (C, H, W) and what occluded pixels become (C, H, W).
    output
        As in :func:`occlusion_sensitivity`: the same post-processing is applied
        to the module's output (softmax, raw, or a callable).
    strategy : "auto", "full" or "incremental"
        "full": None. "incremental": the evaluator, or None with a one-line
        warning when the model is not supported. "auto": the evaluator when
        the model is supported, large enough (:data:`AUTO_MIN_MACS`) and the
        estimated cost ratio for ``mask_size`` is below :data:`AUTO_MAX_COST_RATIO`.
        Models with global attention (an ``nn.MultiheadAttention``, as in
        torchvision's ViT) are decided without tracing: every token attends to
        every other, so after the first attention block the whole input is
        dirty and the cost ratio is ~1 (0.99 for ViT-B/16 with any mask), while
        tracing and caching the clean run cost ~2 forward passes (5.6 s on one
        CPU thread). "incremental" still builds the (exact, not faster) evaluator.
    mask_size : (h, w)
        Needed by "auto".
    layer, is_signal
        Layer watching and 1-D signals use the full path.
    precision : "float32" or "bfloat16"
        "bfloat16": the evaluator runs under autocast, like the full path.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not allowed; use one of {', '.join(map(repr, STRATEGIES))}")
    if strategy == "full":
        return None
    explicit = strategy == "incremental"
    if layer is not None or is_signal:
        if explicit:
            why = "layer= watching" if layer is not None else "1-D signals"
            warnings.warn(f"strategy='incremental' does not apply to {why}; using the full path", stacklevel=3)
        return None
    if not explicit and (mask_size is None or _macs_upper_bound(module, x) < AUTO_MIN_MACS):
        return None  # decided without tracing: "auto" never touches small or conv-free models
    if not explicit and any(isinstance(m, nn.MultiheadAttention) for m in module.modules()):
        return None  # global attention: everything is dirty after it (see the docstring)
    try:
        autocast = torch.bfloat16 if precision == "bfloat16" else None
        evaluator = IncrementalEvaluator.build(module, x, fill, autocast_dtype=autocast)
    except UnsupportedModel as exc:
        if explicit:
            warnings.warn(f"strategy='incremental': {exc}; using the full path", stacklevel=3)
        return None
    if not explicit:
        if mask_size is None or evaluator.full_macs < AUTO_MIN_MACS:
            return None
        if evaluator.estimated_cost_ratio(cast("tuple[int, int]", tuple(mask_size))) >= AUTO_MAX_COST_RATIO:
            return None
    return _with_output(evaluator, output)


def _macs_upper_bound(module: nn.Module, x: torch.Tensor) -> int:
    """An upper bound on the conv multiply-adds of one forward pass (each conv's output is at
    most the image's size over its stride); 0 for a network without 2-D convolutions."""
    hw = int(x.shape[-2]) * int(x.shape[-1])
    return sum(int(m.weight.numel()) * hw // (m.stride[0] * m.stride[1])
               for m in module.modules() if isinstance(m, nn.Conv2d))


def _with_output(evaluator: IncrementalEvaluator, output: Output) -> ScoreBoxes:
    # The sweep's own post-processing (and its error messages), applied to the
    # evaluator's output: an Identity module makes score(out) = post(out).
    from ..inputs import score_function

    post, _ = score_function(nn.Identity(), output, None, False)

    def score(boxes: torch.Tensor) -> torch.Tensor:
        return post(evaluator(boxes)).float()

    score.evaluator = evaluator  # type: ignore[attr-defined]
    return score

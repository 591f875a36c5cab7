"""Integrated Gradients (Sundararajan, Taly & Yan 2017).

``IG_i(x) = (x_i - x'_i) * integral_0^1 d score / d x_i (x' + a (x - x')) da``

The integral is a quadrature over ``steps`` points of the straight path from the
baseline ``x'`` to the input ``x``; the points are run in batches of
``batch_size``. The default rule is Gauss-Legendre, Captum's default, so
``integrated_gradients(..., steps=n)`` equals
``captum.attr.IntegratedGradients(f).attribute(x, baselines=x', target=t, n_steps=n)``
(a test checks it to 1e-5).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch

from ..engine.inputs import Output, resolve_targets, score_function
from .common import (
    AttributionParams,
    AttributionResult,
    ProgressFn,
    cancelled,
    check_positive_int,
    prepared,
    structured_targets,
)

#: Quadrature rules for the path integral. "gausslegendre" and the left / right /
#: middle Riemann sums use Captum's nodes and weights. "riemann_trapezoid" is the
#: textbook trapezoid rule on ``steps`` equally spaced points including both ends
#: (weights sum to 1); Captum's rule of that name halves the end weights of ``1/n``,
#: so its weights sum to ``1 - 1/n`` and its attributions are ours times ``(n - 1) / n``.
RULES = ("gausslegendre", "riemann_middle", "riemann_trapezoid", "riemann_left", "riemann_right")

#: Path points per forward/backward pass when ``batch_size=None``.
IG_BATCH = {"cpu": 16, "cuda": 64}


@dataclass(frozen=True)
class IntegratedGradientsParams(AttributionParams):
    """:class:`AttributionParams` plus the path: ``steps``, the quadrature ``rule`` and a
    description of the ``baseline`` (``"0.0"``, ``"per-channel [..]"`` or ``"tensor (C, H, W)"``)."""

    steps: int = 50
    rule: str = "gausslegendre"
    baseline: str = "0.0"


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alphas`` in [0, 1] and weights of ``rule`` with ``steps`` points, float64 (steps,) each.

    ``integral_0^1 f(a) da ~= sum_i weights[i] * f(alphas[i])``.
    """
    n = int(steps)
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * weights  # from [-1, 1] to [0, 1]
    if rule == "riemann_trapezoid":
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n), weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return (np.arange(n) + offset) / n, np.full(n, 1.0 / n)


def integrated_gradients(
    model,
    image: object,
    targets: int | Sequence[int] | None = None,
    *,
    top_k: int | None = None,
    min_score: float = 0.5,
    baseline: float | Sequence[float] | np.ndarray | torch.Tensor = 0.0,
    steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int | None = None,
    output: Output = "logit",
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> AttributionResult:
    """Integrated Gradients: the gradient integrated along the path from ``baseline`` to the input.

    Attributions are signed and complete: per target, their sum equals
    ``score(input) - score(baseline)`` up to the quadrature error
    (``extra["delta"]`` reports that error).

    Parameters
    ----------
    model, image, targets, top_k, min_score, output, device
        As for :func:`saliency`. ``output`` is the score integrated (the logit by default).
    baseline : number, sequence of C numbers, or array / tensor shaped like the input
        The path's start, in the model's input space ([0, 1] pixels for a wrapper,
        so 0.0 is a black image and 0.5 mid-grey): one value everywhere, one per
        channel, or a full (C, H, W) / (1, C, H, W) input ((C, L) for a 1-D signal).
    steps : int
        Points on the path (each one forward and K backward passes' worth of work).
    rule : str
        The quadrature, one of :data:`RULES`; the default "gausslegendre" is
        Captum's. "riemann_trapezoid" needs ``steps >= 2``.
    batch_size : int, optional
        Path points per forward/backward pass (default 16 on CPU, 64 on CUDA).
        The result does not depend on it beyond float rounding.
    progress : callable(done, total, None), optional
        Called after every batch with the path points done and ``steps``. No
        partial map is passed: a partial path integral is not a map to show.
    cancel : threading.Event, optional
        Checked between batches; when set, returns a result with ``complete=False``
        and NaN maps (part of the path integral is no attribution).

    Returns
    -------
    AttributionResult
        ``method="integrated_gradients"``; ``grid`` and ``maps`` (K, H, W) the
        attributions summed over channels (signed; a map sums to the score
        difference); ``params`` an :class:`IntegratedGradientsParams`;
        ``extra["attributions"]`` float32 (K, C, H, W) per channel,
        ``extra["baseline_scores"]`` (K,) and ``extra["delta"]`` (K,) =
        ``sum(attributions) - (score(input) - score(baseline))``, in float64.
        1-D signals drop the height axis throughout.
    """
    check_positive_int(steps, "steps")
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not allowed; use one of {', '.join(map(repr, RULES))}")
    if rule == "riemann_trapezoid" and steps < 2:
        raise ValueError(f"steps={steps!r} is not allowed with rule='riemann_trapezoid'; use steps >= 2")
    check_positive_int(batch_size, "batch_size", allow_none=True)
    _check_baseline_type(baseline)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress={progress!r} is not allowed; use None or a callable progress(done, total, partial)")
    start = time.perf_counter()
    with prepared(model, image, device, cancel) as p:
        base_x, described = _resolve_baseline(baseline, p.x, p.is_signal)
        output, targets, top_k = structured_targets(p, targets, top_k, output, min_score, "integrated_gradients")
        score, output_name = score_function(p.module, output, None, p.is_signal)
        with torch.no_grad():
            ends = score(torch.stack([p.x, base_x]))  # the input's and the baseline's scores
        if not torch.isfinite(ends).all():
            where = "input" if not torch.isfinite(ends[0]).all() else "baseline"
            raise ValueError(f"integrated_gradients: the model gave NaN or infinite scores on the {where}; "
                             "attributions of them would be NaN")
        target_idx = resolve_targets(targets, top_k, ends[0])
        index = torch.as_tensor(target_idx, device=ends.device)
        input_scores, baseline_scores = ends[0, index].double(), ends[1, index].double()
        batch = int(batch_size or IG_BATCH.get(p.device.type, 16))
        n = int(steps)
        alphas, weights = quadrature(rule, n)
        params = IntegratedGradientsParams(
            "integrated_gradients", output_name, "none", batch_size=batch, device=str(p.device),
            steps=n, rule=rule, baseline=described,
        )
        diff = p.x - base_x
        # float64 accumulation: the weighted sum over many points stays exact to float32 rounding.
        total = torch.zeros((len(target_idx), *p.x.shape), dtype=torch.float64, device=p.device)
        done, n_forward = 0, 1
        image_np = p.x.detach().cpu().numpy()
        if p.is_signal:
            image_np = image_np[:, 0]

        def packed(maps: np.ndarray, complete: bool, extra: dict) -> AttributionResult:
            return AttributionResult(
                method="integrated_gradients", grid=maps.copy(), maps=maps, base_scores=input_scores.float().cpu().numpy(),
                targets=target_idx, labels=p.labels(target_idx), params=params, image=image_np,
                complete=complete, n_forward=n_forward, elapsed_s=time.perf_counter() - start,
                extra={"baseline_scores": baseline_scores.cpu().numpy(), **extra},
            )

        while done < n:
            if cancelled(cancel):
                # Part of a path integral is no attribution: NaN maps, complete=False.
                return packed(np.full((len(target_idx), *image_np.shape[1:]), np.nan, dtype=np.float32), False, {})
            b = min(batch, n - done)
            a = torch.as_tensor(alphas[done:done + b], dtype=torch.float32, device=p.device).view(-1, 1, 1, 1)
            w = torch.as_tensor(weights[done:done + b], dtype=torch.float64, device=p.device).view(-1, 1, 1, 1)
            points = (base_x[None] + a * diff[None]).detach().requires_grad_(True)
            scores = score(points)
            n_forward += 1
            if not scores.requires_grad:
                raise ValueError("integrated_gradients: the score does not require grad; the model's forward "
                                 "detaches it or runs under torch.no_grad(); gradient methods need a differentiable forward")
            for k, t in enumerate(target_idx):
                # Eval mode: the points are independent, so the gradient of the batch sum
                # holds each point's own gradient.
                (grad,) = torch.autograd.grad(scores[:, int(t)].sum(), points, retain_graph=k < len(target_idx) - 1)
                if not torch.isfinite(grad).all():
                    raise ValueError(f"integrated_gradients: the gradient of class {int(t)}'s score holds NaN or "
                                     f"infinite values on the path (alphas {alphas[done]:.3g}..{alphas[done + b - 1]:.3g})")
                total[k] += (grad.double() * w).sum(dim=0)
            done += b
            if progress is not None:
                progress(done, n, None)
        attributions = total * diff.double()[None]
        delta = attributions.flatten(1).sum(dim=1) - (input_scores - baseline_scores)
        maps = attributions.sum(dim=1).float().cpu().numpy()
        attr = attributions.float().cpu().numpy()
        if p.is_signal:
            maps, attr = maps[:, 0], attr[:, :, 0]
        return packed(maps, True, {"attributions": attr, "delta": delta.cpu().numpy()})


_BASELINE_HELP = ("use a number, one number per channel, or an array / tensor shaped like the input "
                  "((C, H, W) or (1, C, H, W); (C, L) for a 1-D signal)")


def _check_baseline_type(baseline: object) -> None:
    """Refuse what can never be a baseline before any model work (shapes are checked later)."""
    if isinstance(baseline, (bool, np.bool_)) or isinstance(baseline, (str, bytes)) or baseline is None:
        raise TypeError(f"baseline={baseline!r} is not allowed; {_BASELINE_HELP}")
    if not isinstance(baseline, (Real, np.ndarray, torch.Tensor, Sequence)):
        raise TypeError(f"baseline: a {type(baseline).__name__} is not allowed; {_BASELINE_HELP}")


def _resolve_baseline(baseline: object, x: torch.Tensor, is_signal: bool) -> tuple[torch.Tensor, str]:
    """The baseline as a tensor like ``x`` (C, H, W) ((C, 1, L) for a signal), and its description."""
    if isinstance(baseline, torch.Tensor):
        values = baseline.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            values = np.asarray(baseline, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"baseline={baseline!r} is not allowed; {_BASELINE_HELP}") from None
    if not np.isfinite(values).all():
        raise ValueError("baseline: holds NaN or infinite values; use finite numbers")
    c = x.shape[0]
    shape = tuple(x.shape[::2]) if is_signal else tuple(x.shape)  # (C, L) or (C, H, W) as the user gives it
    if values.ndim == 0:
        full, described = np.full(x.shape, float(values)), repr(float(values))
    elif values.shape == (c,):
        full = np.broadcast_to(values.reshape(c, 1, 1), x.shape)
        described = f"per-channel {[round(float(v), 6) for v in values]}"
    elif values.shape in (shape, (1, *shape)):
        full, described = values.reshape(x.shape), f"tensor {shape}"
    else:
        raise ValueError(f"baseline: shape {values.shape} does not fit the input {shape}; {_BASELINE_HELP}")
    return torch.as_tensor(np.ascontiguousarray(full), dtype=torch.float32, device=x.device), described


__all__ = ["IG_BATCH", "RULES", "IntegratedGradientsParams", "integrated_gradients", "quadrature"]

"""Gradient saliency (Simonyan et al. 2014) and SmoothGrad (Smilkov et al. 2017)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch

from ..engine.inputs import Output, resolve_targets
from .common import (
    AttributionParams,
    AttributionResult,
    Prepared,
    ProgressFn,
    cancelled,
    check_callbacks,
    check_positive_int,
    input_gradient,
    no_grad_message,
    prepared,
    scorer,
    structured_targets,
)

REDUCE = ("max", "sum")

#: Noisy copies per forward/backward pass when ``batch_size=None``.
SMOOTHGRAD_BATCH = {"cpu": 8, "cuda": 64}


def saliency(
    model,
    image: object,
    targets: int | Sequence[int] | None = None,
    *,
    top_k: int | None = None,
    min_score: float = 0.5,
    reduce: str = "max",
    output: Output = "logit",
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> AttributionResult:
    """Gradient saliency: ``|d score / d input|`` reduced over channels.

    Parameters
    ----------
    model : ImageClassifier or nn.Module
        As for :func:`occlusion_sensitivity`.
    image : tensor (C, H, W), (1, C, H, W) or (C, L); or PIL image / path / array
        A tensor is taken as it is (the model's input space, [0, 1] pixels for a
        wrapper); anything else goes through the wrapper's ``preprocess``.
    targets : None, int or sequence of int
        None: the top class. One map per target, in that order.
    top_k : int, optional
        Instead of ``targets``: the ``top_k`` best classes.
    min_score : float
        With ``targets=None`` and a detector: the lowest detection score explained
        (targets may also be ``SegmentationTarget`` / ``DetectionTarget`` objects,
        or None for everything a segmenter or detector finds; see :func:`occlusion_sensitivity`).
    reduce : "max" or "sum"
        Over channels: ``max_c |g_c|`` (Simonyan et al.) or ``sum_c |g_c|``.
    output : "logit", "probability" or callable
        The score differentiated. The logit (raw output) is the customary choice:
        the softmax gradient also carries the other classes' gradients.
    device : "auto", "cpu", "cuda" or torch.device
    progress : callable(done, total, partial), optional
        Called once per target with the targets done so far.
    cancel : threading.Event, optional
        Checked before each target's backward pass; when set, returns the result so
        far with ``complete=False``: the targets done, NaN maps for the others.

    Returns
    -------
    AttributionResult
        ``grid`` and ``maps`` both (K, H, W) (the map is at pixel resolution).
    """
    _check_reduce(reduce)
    check_callbacks(progress, cancel)
    start = time.perf_counter()
    with prepared(model, image, device, cancel) as p:
        output, targets, top_k = structured_targets(p, targets, top_k, output, min_score, "saliency")
        score, output_name = scorer(p.module, output, p.is_signal, "saliency")
        x = p.x[None].requires_grad_(True)
        scores = score(x)
        if not scores.requires_grad:
            raise ValueError(no_grad_message("saliency"))
        target_idx = resolve_targets(targets, top_k, scores[0].detach())
        maps = np.full((len(target_idx), *p.x.shape[1:]), np.nan, dtype=np.float32)  # NaN: not computed yet
        params = AttributionParams("saliency", output_name, "none", reduce=reduce, device=str(p.device))

        def result(done: int) -> AttributionResult:
            return _result(p, "saliency", maps, scores[0].detach(), target_idx, params,
                           complete=done == len(target_idx), n_forward=1, start=start)

        for k, t in enumerate(target_idx):
            if cancelled(cancel):
                return result(k)  # the targets done; NaN maps for the others
            grad = input_gradient(scores[0, int(t)], x, "saliency", int(t), retain=k < len(target_idx) - 1)
            maps[k] = _reduce(grad[0].abs(), reduce).cpu().numpy()
            if progress is not None:
                progress(k + 1, len(target_idx), result(k + 1))
        return result(len(target_idx))


def smoothgrad(
    model,
    image: object,
    targets: int | Sequence[int] | None = None,
    *,
    top_k: int | None = None,
    min_score: float = 0.5,
    n_samples: int = 25,
    noise_level: float = 0.15,
    reduce: str = "max",
    output: Output = "logit",
    seed: int | None = 0,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> AttributionResult:
    """SmoothGrad: the mean gradient over ``n_samples`` noisy copies, then ``|.|`` reduced over channels.

    ``map = reduce_c |mean_i d score / d x (x + e_i)|`` with
    ``e_i ~ N(0, sigma^2)``, ``sigma = noise_level * (x.max() - x.min())``
    (the input's value range; 1 for a constant input). Averaging the signed
    gradient (as the issue and Smilkov et al.'s definition read) rather than
    its magnitude lets gradients that flip sign under noise cancel.

    Parameters
    ----------
    model, image, targets, top_k, min_score, reduce, output, device
        As for :func:`saliency`.
    n_samples : int
        Noisy copies.
    noise_level : float
        Noise standard deviation as a fraction of the input's value range
        (Smilkov et al. recommend 0.1-0.2). 0 gives plain saliency.
    seed : int or None
        Seeds a CPU ``torch.Generator``; the noise of copy i is
        ``randn((C, H, W))`` drawn in order 0..n-1, so the map does not depend
        on ``batch_size`` or the device. None: a fresh random seed.
    batch_size : int, optional
        Noisy copies per forward/backward pass (default 8 on CPU, 64 on CUDA).
    progress : callable(done, total, partial), optional
        Called after every batch with the copies done and the running mean as
        an AttributionResult (``complete=False`` until the last).
    cancel : threading.Event, optional
        Checked between batches; when set, returns the mean over the copies done
        with ``complete=False`` (``params.n_samples`` is the number asked for;
        NaN maps when no batch was done).

    Returns
    -------
    AttributionResult
        ``grid`` and ``maps`` (K, H, W); ``extra["mean_gradient"]`` is the signed
        mean gradient (K, C, H, W).
    """
    _check_reduce(reduce)
    check_callbacks(progress, cancel)
    check_positive_int(n_samples, "n_samples")
    check_positive_int(batch_size, "batch_size", allow_none=True)
    if not isinstance(noise_level, Real) or isinstance(noise_level, bool) or not 0 <= noise_level < np.inf:
        raise ValueError(f"noise_level={noise_level!r} is not allowed; use a number >= 0 (a fraction of the value range)")
    if seed is not None and (not isinstance(seed, Integral) or isinstance(seed, bool)):
        raise TypeError(f"seed={seed!r} is not allowed; use an int or None")
    start = time.perf_counter()
    with prepared(model, image, device, cancel) as p:
        output, targets, top_k = structured_targets(p, targets, top_k, output, min_score, "smoothgrad")
        score, output_name = scorer(p.module, output, p.is_signal, "smoothgrad")
        with torch.no_grad():
            base_all = score(p.x[None])[0]
        target_idx = resolve_targets(targets, top_k, base_all)
        value_range = float(p.x.max() - p.x.min()) or 1.0
        sigma = float(noise_level) * value_range
        batch = batch_size or SMOOTHGRAD_BATCH.get(p.device.type, 8)
        seed_used = int(np.random.SeedSequence().entropy if seed is None else seed) % (2**63)
        generator = torch.Generator().manual_seed(seed_used)
        params = AttributionParams(
            "smoothgrad", output_name, "none", reduce=reduce, n_samples=int(n_samples), noise_level=float(noise_level),
            noise_sigma=sigma, seed=seed_used, batch_size=batch, device=str(p.device),
        )
        total = torch.zeros((len(target_idx), *p.x.shape), dtype=torch.float64, device=p.device)
        done, n_forward = 0, 1

        def result(n: int) -> AttributionResult:
            # No copy done yet (cancelled before the first batch): nothing is known, NaN.
            mean = (total / n).float() if n else torch.full_like(total, float("nan"), dtype=torch.float32)
            maps = _reduce(mean.abs(), reduce, channel_dim=1).cpu().numpy()
            res = _result(p, "smoothgrad", maps, base_all, target_idx, params,
                          complete=n == n_samples, n_forward=n_forward, start=start)
            res.extra["mean_gradient"] = mean.cpu().numpy()
            return res

        while done < n_samples:
            if cancelled(cancel):
                return result(done)  # the mean over the copies done
            b = min(batch, n_samples - done)
            noise = torch.stack([torch.randn(tuple(p.x.shape), generator=generator) for _ in range(b)])
            noisy = (p.x[None] + sigma * noise.to(p.device)).requires_grad_(True)
            scores = score(noisy)
            n_forward += 1
            if not scores.requires_grad:
                raise ValueError(no_grad_message("smoothgrad"))
            for k, t in enumerate(target_idx):
                # The samples are independent (eval mode), so the gradient of the
                # batch sum holds each copy's own gradient.
                grad = input_gradient(scores[:, int(t)].sum(), noisy, "smoothgrad", int(t),
                                      retain=k < len(target_idx) - 1)
                total[k] += grad.sum(dim=0, dtype=torch.float64)
            done += b
            if progress is not None:
                progress(done, n_samples, result(done))
        return result(n_samples)


def _check_reduce(reduce: str) -> None:
    if reduce not in REDUCE:
        raise ValueError(f"reduce={reduce!r} is not allowed; use 'max' or 'sum'")


def _reduce(magnitude: torch.Tensor, reduce: str, channel_dim: int = 0) -> torch.Tensor:
    return magnitude.amax(dim=channel_dim) if reduce == "max" else magnitude.sum(dim=channel_dim)


def _result(p: Prepared, method: str, maps: np.ndarray, base_all: torch.Tensor, target_idx: np.ndarray,
            params: AttributionParams, *, complete: bool, n_forward: int, start: float) -> AttributionResult:
    """Pack (K, H, W) maps (grid = maps: pixel resolution); 1-D signals drop the height axis."""
    maps = np.asarray(maps, dtype=np.float32)
    image = p.x.detach().cpu().numpy()
    if p.is_signal:
        maps, image = maps[:, 0], image[:, 0]
    base = base_all.detach()[torch.as_tensor(target_idx, device=base_all.device)].float().cpu().numpy()
    return AttributionResult(
        method=method, grid=maps.copy(), maps=maps.copy(), base_scores=base, targets=target_idx,
        labels=p.labels(target_idx), params=params, image=image, complete=complete,
        n_forward=n_forward, elapsed_s=time.perf_counter() - start,
    )

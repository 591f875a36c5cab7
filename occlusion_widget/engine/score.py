"""Scores of an input with a few given regions occluded: the sweep's input, fill and score
path for boxes the caller chooses (the widget's mask preview), without a sweep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .classifier import ImageClassifier, as_classifier
from .fills import occlude_boxes
from .grid import resolve_sizes
from .inputs import Output, prepare_input, resolve_device, resolve_fill, score_function
from .model_state import check_materialised, prepared_module
from .sweep import PRECISIONS

__all__ = ["score_occluded"]


def score_occluded(
    model: ImageClassifier | nn.Module,
    image: object,
    boxes: Sequence[Sequence[int]] | np.ndarray,
    *,
    mask_value: float | Sequence[float] | str = "auto",
    mask_size: int | tuple[int, int] | str = "auto",
    output: Output = "probability",
    layer: str | None = None,
    device: str | torch.device = "auto",
    precision: str = "float32",
    with_base: bool = True,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Every output's score on the input, and with each of ``boxes`` occluded.

    The same path as :func:`occlusion_sensitivity`: the input is prepared the
    same way, an occluded pixel gets the same fill, scores are of the same
    kind, and the model runs in eval mode on ``device`` through
    :func:`prepared_module` (the user's module is never changed; safe while
    another thread sweeps or traces the same module). One forward pass.

    Parameters
    ----------
    model, image, mask_value, output, layer, device, precision
        As for :func:`occlusion_sensitivity`.
    boxes : int array (B, 4) or (4,)
        ``[y0, x0, y1, x1)`` pixel boxes, e.g. from :func:`mask_box`; (B, 2)
        ``[x0, x1)`` for a 1-D signal. Each must lie inside the input and be non-empty.
    mask_size : "auto", int or (h, w)
        Only used by ``mask_value="blur"`` (the blur's sigma is half the mask size),
        as in the sweep.
    with_base : bool
        Also score the unoccluded input (in the same batch). False skips it (a
        caller that keeps the base scores) and returns None in its place.

    Returns
    -------
    base_scores : float32 (K_all,) or None
        Every output's score on the input.
    scores : float32 (B, K_all)
        Every output's score with box ``b`` occluded.

    Raises
    ------
    ValueError, TypeError
        As :func:`occlusion_sensitivity` for the shared parameters; a box outside
        the input, empty, or of the wrong shape; NaN or infinite scores.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not allowed; use 'float32' or 'bfloat16'")
    classifier = as_classifier(model)
    check_materialised(classifier.module)
    x, is_signal = prepare_input(classifier, image)
    spatial = (x.shape[1], x.shape[2])  # prepare_input gives (C, H, W); a signal is (C, 1, L)
    box_array = _check_boxes(boxes, spatial, is_signal)
    mask, _ = resolve_sizes(spatial, (1, mask_size) if is_signal and not isinstance(mask_size, str) else mask_size)
    dev = resolve_device(device)
    module = prepared_module(classifier.module, dev)
    x = x.to(dev)
    fill, _ = resolve_fill(mask_value, x, mask)
    score, _ = score_function(module, output, layer, is_signal)
    rows, cols = torch.arange(x.shape[1], device=dev), torch.arange(x.shape[2], device=dev)
    with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        batch = occlude_boxes(x, fill, torch.as_tensor(box_array, device=dev), rows, cols)
        if with_base:
            batch = torch.cat([x[None], batch])
        scores = score(batch).float().cpu().numpy()
    if not np.isfinite(scores).all():
        raise ValueError("score_occluded: the model returned NaN/inf scores; maps or previews of them would be NaN")
    if with_base:
        return scores[0], scores[1:]
    return None, scores


def _check_boxes(boxes: object, spatial: tuple[int, int], is_signal: bool) -> np.ndarray:
    """``boxes`` as int64 (B, 4) ``[y0, x0, y1, x1)`` inside ``spatial``, or a clear error."""
    h, w = spatial
    width = 2 if is_signal else 4
    form = "[x0, x1) pairs (B, 2)" if is_signal else "[y0, x0, y1, x1) boxes (B, 4)"
    array = np.asarray(boxes)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != width or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"boxes: expected integer {form}, got {array.dtype} {array.shape}")
    array = array.astype(np.int64)
    if is_signal:
        array = np.stack([np.zeros(len(array), np.int64), array[:, 0], np.ones(len(array), np.int64), array[:, 1]], 1)
    y0, x0, y1, x1 = array.T
    bad = ~((0 <= y0) & (y0 < y1) & (y1 <= h) & (0 <= x0) & (x0 < x1) & (x1 <= w))
    if bad.any():
        raise ValueError(f"boxes: {array[bad][:3].tolist()} {'is' if bad.sum() == 1 else 'are'} empty or outside "
                         f"the input {spatial}; each must satisfy 0 <= y0 < y1 <= {h} and 0 <= x0 < x1 <= {w}")
    return array

"""Mask preview: the scores with one mask at a given position (about one forward pass).

The widget runs previews on their own thread (a :class:`~occlusion_widget.widget.runner.LatestRunner`)
while a sweep runs on another. Two things are shared between the threads:

* forward hooks belong to a module, not a thread, but the engine's layer hook
  (``layer=``, see ``score_function``) captures only the calling thread's own
  forward pass, so a preview and a ``layer=`` sweep can run the same module at
  the same time;
* torch.fx patches ``nn.Module.__call__`` process-wide while it traces a model
  (the sweep's incremental path does, once per model): a forward pass in
  another thread meanwhile fails or corrupts the trace. The engine traces
  under a lock, and a preview's forward pass takes the same lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch

from ..engine.grid import resolve_pair
from ..engine.incremental import TRACE_LOCK  # see the module docstring
from ..engine.inputs import resolve_device, resolve_fill, score_function
from .runner import PreparedInput, freeze


def mask_box(cy: float, cx: float, mask: tuple[int, int], shape: tuple[int, int], clipping: bool) -> tuple[int, int, int, int]:
    """``[y0, x0, y1, x1)`` of a mask centred at pixel (cy, cx).

    Same rule as the sweep: the mask starts at ``c - m // 2``. With clipping
    it is cut to the image; without, it is moved inside (always full size).
    A centre outside the image is first moved to its nearest pixel, so the box
    is never empty or inverted. Mirrored by ``maskBox`` in ``js/geometry.js``.
    """
    out = []
    for c, m, n in zip((cy, cx), mask, shape):
        if not math.isfinite(c):
            raise ValueError(f"preview: the mask centre (y={cy!r}, x={cx!r}) must be finite pixel coordinates")
        c = min(max(c, 0.0), n - 1.0)
        m = min(int(m), n)
        start = math.floor(c + 0.5) - m // 2  # round half up, like Math.round
        if clipping:
            out.append((max(start, 0), min(start + m, n)))
        else:
            start = min(max(start, 0), n - m)
            out.append((start, start + m))
    (y0, y1), (x0, x1) = out
    return y0, x0, y1, x1


@dataclass(frozen=True)
class Preview:
    """The answer to a preview request."""

    seq: int
    box: tuple[int, int, int, int]
    base: list[tuple[int, float]]  # top-5 (class, score), unoccluded
    occluded: list[tuple[int, float]]  # top-5 (class, score) with the mask
    targets: list[tuple[int, float, float]]  # (class, unoccluded, occluded) for each target
    fill: np.ndarray | None  # the (C, H, W) replacement values when they changed, else None
    elapsed_s: float


class PreviewEngine:
    """Scores the input with one mask at a given position (about one forward pass)."""

    def __init__(self) -> None:
        self._fills: dict[Hashable, torch.Tensor] = {}
        self._base: dict[Hashable, torch.Tensor] = {}
        self._last_fill_key: Hashable = None
        self._lock = threading.Lock()

    @torch.inference_mode()
    def compute(self, source: PreparedInput, seq: int, cy: float, cx: float, params: dict, k: int = 5) -> Preview:
        """Scores with the mask centred at pixel (cy, cx); ``params`` are the
        sweep's engine parameters (``targets`` or ``top_k`` pick the classes
        whose scores come back in ``Preview.targets``)."""
        start = time.perf_counter()
        x = source.x
        shape = tuple(x.shape[1:])
        mask = resolve_pair(params.get("mask_size", "auto"), "mask_size", shape, 0.2)  # type: ignore[arg-type]
        if any(m > n for m, n in zip(mask, shape)):
            raise ValueError(f"mask_size={mask} is larger than the input {shape}")
        box = mask_box(cy, cx, mask, shape, bool(params.get("mask_clipping", True)))
        module = source.classifier.module.eval()
        device = resolve_device(params.get("device", "auto"))
        score, _ = score_function(module, params.get("output", "probability"), params.get("layer"), False)
        with self._lock:
            fill_key = (source.digest, freeze(params.get("mask_value", "auto")), mask)
            fill = self._fills.get(fill_key)
            if fill is None:
                fill, _ = resolve_fill(params.get("mask_value", "auto"), x, mask)
                self._fills = {fill_key: fill}
            fill_changed = fill_key != self._last_fill_key
            self._last_fill_key = fill_key
            base_key = (id(module), source.digest, str(params.get("output")), params.get("layer"), str(device), params.get("precision"))
            base = self._base.get(base_key)
        y0, x0, y1, x1 = box
        occluded = x.clone()
        occluded[:, y0:y1, x0:x1] = fill[:, y0:y1, x0:x1]
        batch = occluded[None] if base is not None else torch.stack([x, occluded])
        module.to(device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=params.get("precision") == "bfloat16")
        with TRACE_LOCK, autocast:
            scores = score(batch.to(device)).float().cpu()
        if base is None:
            base = scores[0]
            with self._lock:
                self._base = {base_key: base}
        after = scores[-1]
        kk = min(k, base.numel())
        targets = params.get("targets")
        if targets is None:
            targets = base.topk(min(int(params.get("top_k") or 1), base.numel())).indices.tolist()
        top = lambda s: [(int(i), float(s[i])) for i in s.topk(kk).indices]
        return Preview(
            seq=seq, box=box, base=top(base), occluded=top(after),
            targets=[(int(t), float(base[t]), float(after[t])) for t in targets if 0 <= t < base.numel()],
            fill=fill.cpu().numpy() if fill_changed else None,
            elapsed_s=time.perf_counter() - start,
        )

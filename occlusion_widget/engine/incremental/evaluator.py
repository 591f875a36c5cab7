"""Cached-activation batched evaluation of occluded inputs (Krypton-style, generic over torch.fx).

Every node's activation on the clean input is computed once. For a batch of
mask boxes, each node then holds, according to its :class:`~.boxes.Plan`:

* nothing ("clean": its cached activation is right for every position);
* a batch of crops (B, C, h, w), one per position, of a common size and at a
  per-position origin, covering the position's dirty box; the crop holds the
  exact occluded values everywhere inside it ("patch");
* whole tensors (B, ...) ("dense"), after the dense switch.

A window op (conv/pool) gathers, for every position, the input region its
output crop needs: the cached (padded) clean activation with the input crop
pasted over it, in one ``index_select`` over a buffer holding both; then it
runs once on the batch of patches with no padding. Crops are channels_last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .boxes import DENSE_FRACTION, FlopCount, Plan, count_flops, fixed_plans, propagate
from .classify import _is_shape_query, is_spatial_const
from .graph import Analysis, UnsupportedModel, analyze, fold_batchnorm

#: Positions probed by :meth:`IncrementalEvaluator.flop_report`: every offset
#: along a stride period of this length (32 = the total stride of most CNNs).
PROBE_PERIOD = 32


@dataclass
class _Source:
    """Rows (pixels x channels) of a node's clean activation (padded), then room for a batch's crops."""

    buffer: torch.Tensor
    n_clean: int
    width: int


class IncrementalEvaluator:
    """Built once per (module, x, fill); evaluates occluded batches exactly, recomputing only dirty regions.

    Use :meth:`build`. Calling the evaluator with mask boxes (B, 4) ``[y0, x0, y1, x1)``
    returns the module's output for the B occluded inputs, as
    ``module(where(box, fill, x))`` would, but computing each convolution only
    on the part of its output that the mask can change.
    """

    def __init__(self, analysis: Analysis, x: torch.Tensor, fill: torch.Tensor,
                 dense_fraction: float, autocast_dtype: torch.dtype | None):
        self.analysis = analysis
        self.infos = analysis.infos
        self.clean = analysis.clean
        self.index = {info.node: info.index for info in self.infos}
        self.device = x.device
        self.dense_fraction = float(dense_fraction)
        self.autocast_dtype = autocast_dtype
        c, h, w = x.shape
        self.image_hw = (h, w)
        # Rows of the image, then rows of the fill: an occluded crop is one gather.
        self._xfill = torch.cat([x.permute(1, 2, 0).reshape(-1, c), fill.to(x).permute(1, 2, 0).reshape(-1, c)])
        self._sources: dict[tuple, _Source] = {}
        self._fixed: dict[int, Plan] | None = None
        self._fixed_batch: int | None = None
        self.flops = FlopCount(0, 0, 0)
        """Multiply-adds accumulated over all calls (full recompute / executed / exact dirty regions)."""
        self.calls = 0
        self.positions = 0
        self.seconds = 0.0

    # ------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, module: nn.Module, x: torch.Tensor, fill: torch.Tensor, *,
              dense_fraction: float = DENSE_FRACTION, autocast_dtype: torch.dtype | None = None,
              check: bool = True, fold_bn: bool = True) -> IncrementalEvaluator:
        """Trace ``module``, cache its activations on ``x`` (C, H, W).

        ``fill`` (C, H, W) holds what an occluded pixel becomes. ``module``
        should be in eval mode and on ``x``'s device. Raises
        :class:`UnsupportedModel` (one-line reason) when fx cannot trace it, or
        an op it does not know sits before the dense switch.
        ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the batches under
        autocast (then the result is only as exact as that dtype).
        ``fold_bn``: fold eval-mode batch norms into the convolutions before
        them (one op less per layer; equal within float rounding).
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise UnsupportedModel("incremental inference needs an image tensor (C, H, W)")
        if tuple(fill.shape) != tuple(x.shape):
            raise ValueError(f"fill: shape {tuple(fill.shape)} differs from the image's {tuple(x.shape)}")
        channels_last = any(isinstance(m, nn.Conv2d) for m in module.modules())
        x = x.float()
        x4 = x[None].contiguous(memory_format=torch.channels_last) if channels_last else x[None].contiguous()
        # Under autocast the clean activations are cached as the full path computes them.
        autocast = torch.autocast(x.device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None)
        with torch.inference_mode(), autocast:
            analysis = analyze(module, x4)
            if check:
                ref = module(x4)
                if not _reproduces(analysis, ref, autocast_dtype):
                    analysis = analyze(module, x4, fresh=True)  # the cached trace may be stale
                    if not _reproduces(analysis, ref, autocast_dtype):
                        raise UnsupportedModel("interpreting the fx graph does not reproduce the module's output")
            if fold_bn:
                fold_batchnorm(analysis)
        return cls(analysis, x, fill.float(), dense_fraction, autocast_dtype)

    # ------------------------------------------------------------------------------------------
    def plan(self, boxes: np.ndarray) -> list[Plan]:
        return propagate(self.infos, np.asarray(boxes, dtype=np.int64), self.dense_fraction, self._fixed)

    def fix_shapes(self, all_boxes: np.ndarray | torch.Tensor, batch_size: int) -> None:
        """Make every later call use the same tensor shapes (for CUDA graphs / torch.compile).

        ``all_boxes`` (N, 4): every position of the sweep. Crops take the
        largest size any batch needs, and short batches are padded to ``batch_size``.
        """
        boxes = all_boxes.cpu().numpy() if isinstance(all_boxes, torch.Tensor) else np.asarray(all_boxes)
        self._fixed = fixed_plans(self.infos, boxes.astype(np.int64), self.dense_fraction)
        self._fixed_batch = int(batch_size)

    def __call__(self, boxes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The module's output (B, ...) for the input occluded by each box (B, 4) ``[y0, x0, y1, x1)``."""
        start = time.perf_counter()
        b = boxes.cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
        b = b.astype(np.int64).reshape(-1, 4).copy()
        n = len(b)
        if n == 0:
            out = self.clean[self.analysis.output]
            return out.new_empty((0, *out.shape[1:]))
        H, W = self.image_hw
        b[:, 0::2] = b[:, 0::2].clip(0, H)
        b[:, 1::2] = b[:, 1::2].clip(0, W)
        if self._fixed_batch is not None and n < self._fixed_batch:
            b = np.concatenate([b, np.repeat(b[-1:], self._fixed_batch - n, axis=0)])
        plans = self.plan(b)
        with torch.inference_mode():
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    out = self._execute(b, plans)
            else:
                out = self._execute(b, plans)
        self.flops = self.flops + count_flops(self.infos, plans, n)
        self.calls += 1
        self.positions += n
        self.seconds += time.perf_counter() - start
        return out[:n]

    # ------------------------------------------------------------------------------------------
    def flop_report(self, mask_size: tuple[int, int] | int) -> FlopCount:
        """Multiply-adds for one batch of centred masks of ``mask_size`` at every offset
        of a 32-pixel period (so the common crop is as large as in a real sweep)."""
        h, w = (mask_size, mask_size) if isinstance(mask_size, int) else mask_size
        H, W = self.image_hw
        h, w = min(int(h), H), min(int(w), W)
        t = np.arange(PROBE_PERIOD)
        y0 = np.clip((H - h) // 2 - PROBE_PERIOD // 2 + t, 0, H - h)
        x0 = np.clip((W - w) // 2 - PROBE_PERIOD // 2 + t, 0, W - w)
        boxes = np.stack([y0, x0, y0 + h, x0 + w], axis=1)
        plans = propagate(self.infos, boxes, self.dense_fraction)
        return count_flops(self.infos, plans, len(boxes))

    def estimated_cost_ratio(self, mask_size: tuple[int, int] | int) -> float:
        """Multiply-adds of the incremental evaluation over those of a full recompute, per position."""
        report = self.flop_report(mask_size)
        return report.executed / max(report.full, 1)

    @property
    def full_macs(self) -> int:
        """Multiply-adds of one ordinary forward pass (conv and linear layers)."""
        return sum(info.macs * info.pixels for info in self.infos)

    # ------------------------------------------------------------------------------------------
    def _execute(self, boxes: np.ndarray, plans: list[Plan]) -> torch.Tensor:
        n = len(boxes)
        vals: list[Any] = [None] * len(self.infos)
        for info, plan in zip(self.infos, plans, strict=True):
            i, kind, mode = info.index, info.kind, plan.mode
            if kind == "output" or mode in ("const", "clean"):
                continue
            if mode == "value":
                vals[i] = self._run_value(info, plans, vals, n)
            elif kind == "input":
                vals[i] = self._input(boxes, plan, info)
            elif mode == "dense":
                vals[i] = self._run_dense(info, plans, vals, n)
            elif kind == "window":
                vals[i] = self._window(info, plan, plans, vals)
            elif kind == "pad":
                vals[i] = vals[self._src(info)]
            else:  # pointwise, cat on crops
                vals[i] = self._run_patch(info, plan, plans, vals)
        return self._stitch(self.analysis.output, plans, vals, n)

    def _src(self, info) -> int:
        return next(j for j in info.inputs if self.infos[j].dep and self.infos[j].kind != "value")

    def _input(self, boxes: np.ndarray, plan: Plan, info) -> torch.Tensor:
        H, W = self.image_hw
        if plan.mode == "patch":
            assert plan.origin is not None and plan.size is not None  # a "patch" plan has both
            origin, (h, w) = plan.origin, plan.size
        else:
            origin, (h, w) = np.zeros((len(boxes), 2), dtype=np.int64), (H, W)
        py = origin[:, 0, None] + np.arange(h)
        px = origin[:, 1, None] + np.arange(w)
        inside = (((py >= boxes[:, 0, None]) & (py < boxes[:, 2, None]))[:, :, None]
                  & ((px >= boxes[:, 1, None]) & (px < boxes[:, 3, None]))[:, None, :])
        idx = (py * W)[:, :, None] + px[:, None, :] + inside * (H * W)
        return self._select(self._xfill, idx, len(boxes), h, w)

    def _select(self, rows: torch.Tensor, idx: np.ndarray, n: int, h: int, w: int) -> torch.Tensor:
        index = torch.from_numpy(np.ascontiguousarray(idx.reshape(-1))).to(self.device, non_blocking=True)
        out = torch.index_select(rows, 0, index)
        return out.view(n, h, w, rows.shape[1]).permute(0, 3, 1, 2)

    def _source(self, j: int, pads: tuple[int, int, int, int], value: float, crop: torch.Tensor | None) -> _Source:
        key = (j, pads, value)
        src = self._sources.get(key)
        if src is None:
            clean = self.clean[j]
            if any(pads):
                top, bottom, left, right = pads
                clean = F.pad(clean, (left, right, top, bottom), value=value)
            c = clean.shape[1]
            rows = clean[0].permute(1, 2, 0).reshape(-1, c)
            src = _Source(rows.clone(), rows.shape[0], clean.shape[-1])
            self._sources[key] = src
        if crop is not None:
            c = crop.shape[1]
            need = crop.numel() // c
            if src.buffer.shape[0] < src.n_clean + need:
                grown = torch.empty(src.n_clean + need, c, dtype=src.buffer.dtype, device=src.buffer.device)
                grown[: src.n_clean] = src.buffer[: src.n_clean]
                src.buffer = grown
            src.buffer[src.n_clean : src.n_clean + need].view(crop.shape[0], crop.shape[2], crop.shape[3], c).copy_(
                crop.permute(0, 2, 3, 1))
        return src

    def _gather(self, j: int, crop: torch.Tensor | None, crop_origin: np.ndarray | None, origin: np.ndarray,
                size: tuple[int, int], pads: tuple[int, int, int, int] = (0, 0, 0, 0), value: float = 0.0
                ) -> torch.Tensor:
        """(B, C, h, w): node j's occluded values over the regions at ``origin`` (padded coordinates).

        ``crop`` (B, C, ch, cw) at ``crop_origin`` (padded coordinates) overrides the clean values.
        """
        src = self._source(j, pads, value, crop)
        h, w = size
        n = len(origin)
        py = origin[:, 0, None] + np.arange(h)
        px = origin[:, 1, None] + np.arange(w)
        idx = (py * src.width)[:, :, None] + px[:, None, :]
        if crop is not None:
            assert crop_origin is not None  # given with every crop
            ch, cw = crop.shape[-2:]
            cy = py - crop_origin[:, 0, None]
            cx = px - crop_origin[:, 1, None]
            inside = (((cy >= 0) & (cy < ch))[:, :, None] & ((cx >= 0) & (cx < cw))[:, None, :])
            cidx = (src.n_clean + np.arange(n) * (ch * cw))[:, None, None] + (np.clip(cy, 0, ch - 1) * cw)[:, :, None] \
                + np.clip(cx, 0, cw - 1)[:, None, :]
            idx = np.where(inside, cidx, idx)
        return self._select(src.buffer, idx, n, h, w)

    def _stitch(self, j: int, plans: list[Plan], vals: list, n: int, copy: bool = False) -> torch.Tensor:
        """Node j's whole values (B, ...) for the batch."""
        info, plan = self.infos[j], plans[j]
        if plan.mode == "dense":
            return vals[j]
        clean = self.clean[j]
        if plan.mode == "patch":
            h, w = info.hw
            zero = np.zeros((n, 2), dtype=np.int64)
            return self._gather(j, vals[j], plan.origin, zero, (h, w))
        out = clean.expand(n, *clean.shape[1:])
        if copy or info.index == self.analysis.output:
            fmt = torch.channels_last if clean.ndim == 4 and clean.is_contiguous(memory_format=torch.channels_last) \
                else torch.contiguous_format
            out = out.contiguous(memory_format=fmt)
        return out

    def _arg_mapper(self, plans: list[Plan], vals: list, fn):
        index, infos, clean = self.index, self.infos, self.clean

        def value_of(node: fx.Node):
            j = index[node]
            info = infos[j]
            if not info.dep:
                return clean[j]
            if info.kind == "value":
                return vals[j]
            return fn(j, info)

        return value_of

    def _run_dense(self, info, plans: list[Plan], vals: list, n: int) -> Any:
        copy = not info.known
        value_of = self._arg_mapper(plans, vals, lambda j, _i: self._stitch(j, plans, vals, n, copy))
        return info.fn(*fx.node.map_arg(info.args, value_of), **fx.node.map_arg(info.kwargs, value_of))

    def _run_value(self, info, plans: list[Plan], vals: list, n: int) -> Any:
        shape_query = _is_shape_query(info.node)

        def tensor(j, src):
            if shape_query and plans[j].mode != "dense":
                c = self.clean[j]
                return torch.empty((n, *c.shape[1:]), dtype=c.dtype, device="meta")
            return self._stitch(j, plans, vals, n, copy=True)

        value_of = self._arg_mapper(plans, vals, tensor)
        return info.fn(*fx.node.map_arg(info.args, value_of), **fx.node.map_arg(info.kwargs, value_of))

    def _run_patch(self, info, plan: Plan, plans: list[Plan], vals: list) -> torch.Tensor:
        origin, size = plan.origin, plan.size
        assert origin is not None and size is not None  # a "patch" plan has both
        hw = info.hw

        def region(j, _info):
            p = plans[j]
            if p.mode == "patch":
                if p.size == size and np.array_equal(p.origin, origin):
                    return vals[j]
                return self._gather(j, vals[j], p.origin, origin, size)
            return self._gather(j, None, None, origin, size)  # clean

        base = self._arg_mapper(plans, vals, region)

        def value_of(node: fx.Node):
            j = self.index[node]
            if not self.infos[j].dep and is_spatial_const(self.clean[j], hw):
                return self._gather(j, None, None, origin, size)
            return base(node)

        return info.fn(*fx.node.map_arg(info.args, value_of), **fx.node.map_arg(info.kwargs, value_of))

    def _window(self, info, plan: Plan, plans: list[Plan], vals: list) -> torch.Tensor:
        win = info.window
        j = self._src(info)
        p = plans[j]
        origin, span = win.region(plan.origin, plan.size)
        pads = (win.pad_before[0], win.pad_after[0], win.pad_before[1], win.pad_after[1])
        if p.mode == "patch":
            patch = self._gather(j, vals[j], p.origin + np.array(win.pad_before), origin, span, pads, win.pad_value)
        else:
            patch = self._gather(j, None, None, origin, span, pads, win.pad_value)
        return win.run(patch)


def _reproduces(analysis: Analysis, ref: Any, autocast_dtype) -> bool:
    got = analysis.clean[analysis.output]
    if not isinstance(ref, torch.Tensor) or ref.shape != got.shape:
        return False
    # The same ops in the same order: equal to rounding, relative to the output's magnitude
    # (an absolute floor would let a stale trace through on small outputs, e.g. probabilities).
    tol = (1e-5 if autocast_dtype is None else 1e-2) * float(ref.float().abs().max())
    return float((ref.float() - got.float()).abs().max()) <= tol


def supports(module: nn.Module, x: torch.Tensor) -> tuple[bool, str]:
    """Whether ``module`` can be evaluated incrementally on image ``x`` (C, H, W), and why not."""
    try:
        IncrementalEvaluator.build(module, x, x)
    except UnsupportedModel as exc:
        return False, str(exc)
    return True, ""

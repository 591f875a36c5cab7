"""Dirty boxes, crop plans and FLOP counts: pure integer arithmetic on numpy arrays.

For each mask position, a node's dirty box ``[y0, x0, y1, x1)`` holds the
pixels of its output that differ from the clean activation. Boxes propagate
through the graph (:func:`propagate`): pointwise ops keep them, unions for
add/concat, the window formula for conv/pool, a shift for padding. The
:class:`Plan` of a node also fixes the crop it is recomputed in (one common
size for the batch, one origin per position), or the switch to dense compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from .graph import NodeInfo, Window

#: A node switches to dense compute when its crop covers at least this
#: fraction of its spatial extent (gathering a near-full crop costs more than it saves).
DENSE_FRACTION = 0.7

_BIG = 1 << 40
_EMPTY = np.array([_BIG, _BIG, -_BIG, -_BIG], dtype=np.int64)


# ----------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What one node holds for a batch.

    ``mode``: "clean" (the cached activation, for every position), "patch"
    (crops of ``size`` at ``origin`` per position), "dense" (whole tensors),
    "value" / "const" (not spatial tensors). ``box`` (B, 4) is the exact dirty
    box per position (None for dense-kind nodes: everything may change).
    """

    mode: str
    box: np.ndarray | None = None
    origin: np.ndarray | None = None
    size: tuple[int, int] | None = None


def normalize_boxes(box: np.ndarray) -> np.ndarray:
    """Empty boxes become a sentinel that unions and windows keep empty."""
    box = np.asarray(box, dtype=np.int64).copy()
    empty = (box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1])
    box[empty] = _EMPTY
    return box


def box_area(box: np.ndarray) -> np.ndarray:
    return np.clip(box[:, 2] - box[:, 0], 0, None) * np.clip(box[:, 3] - box[:, 1], 0, None)


def window_boxes(box: np.ndarray, win: Window, out_hw: tuple[int, int]) -> np.ndarray:
    """Output pixels whose window touches the input box: [ceil((a+p-(k-1)d)/s), floor((b-1+p)/s)+1)."""
    out = np.empty_like(box)
    for ax in range(2):
        a, b = box[:, ax], box[:, ax + 2]
        k, s, d, p = win.kernel[ax], win.stride[ax], win.dilation[ax], win.pad_before[ax]
        lo = -((-(a + p - (k - 1) * d)) // s)
        hi = (b - 1 + p) // s + 1
        out[:, ax] = np.clip(lo, 0, out_hw[ax])
        out[:, ax + 2] = np.clip(hi, 0, out_hw[ax])
    return normalize_boxes(out)


def union_boxes(boxes: Sequence[np.ndarray]) -> np.ndarray:
    stacked = np.stack(boxes)
    return np.concatenate([stacked[:, :, :2].min(0), stacked[:, :, 2:].max(0)], axis=1)


def crop_geometry(box: np.ndarray, hw: tuple[int, int], min_size: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, tuple[int, int]] | None:
    """One common crop size for the batch (the largest box, per axis) and each position's origin.

    None when every box is empty.
    """
    extent = np.clip(box[:, 2:] - box[:, :2], 0, None)
    if not (extent.prod(axis=1) > 0).any():
        return None
    size = np.minimum(extent.max(axis=0), hw)
    if min_size is not None:
        size = np.maximum(size, min_size)
    origin = np.clip(box[:, :2], 0, np.array(hw) - size)
    return origin, (int(size[0]), int(size[1]))


def propagate(infos: list[NodeInfo], boxes: np.ndarray, dense_fraction: float = DENSE_FRACTION,
              fixed: dict[int, Plan] | None = None) -> list[Plan]:
    """The plan of every node for a batch of mask boxes (B, 4) in input pixels.

    ``fixed``: plans from :func:`fixed_plans`; their modes and crop sizes are
    kept so that every batch has the same tensor shapes.
    """
    boxes = normalize_boxes(boxes)
    n = len(boxes)
    full = lambda hw: np.tile(np.array([0, 0, hw[0], hw[1]], dtype=np.int64), (n, 1))  # noqa: E731
    plans: list[Plan] = []

    def place(i: int, box: np.ndarray, hw: tuple[int, int]) -> Plan:
        f = fixed.get(i) if fixed else None
        if f is not None and f.mode != "patch":
            return Plan(f.mode, box)
        geom = crop_geometry(box, hw, f.size if f is not None else None)
        if geom is None and f is not None:  # nothing dirty in this batch: keep the fixed shape
            assert f.size is not None  # a fixed "patch" plan has its crop size
            geom = (np.tile(np.array(hw) - np.array(f.size), (n, 1)), f.size)
        if geom is None:
            return Plan("clean", box)
        origin, size = geom
        if f is None and size[0] * size[1] >= dense_fraction * hw[0] * hw[1]:
            return Plan("dense", box)
        return Plan("patch", box, origin, size)

    for info in infos:
        kind = info.kind
        if kind in ("const", "value", "output") or not info.dep:
            plans.append(Plan("value" if kind == "value" else "const"))
            continue
        ins = [plans[j] for j in info.inputs if infos[j].dep and infos[j].kind != "value"]
        if kind == "input":
            plans.append(place(info.index, boxes, info.hw))
            continue
        modes = {p.mode for p in ins}
        if kind == "dense":
            plans.append(Plan("clean" if modes <= {"clean"} else "dense"))
            continue
        hw = info.hw
        if kind == "window":
            assert ins[0].box is not None and info.window is not None  # a local input, a conv/pool node
            box = window_boxes(ins[0].box, info.window, hw)
        elif kind == "pad":
            assert ins[0].box is not None  # a local input
            shift = np.array([info.pad[0], info.pad[1]] * 2, dtype=np.int64)
            box = normalize_boxes(ins[0].box + shift)
        else:  # pointwise, cat
            box = union_boxes([p.box if p.box is not None else full(hw) for p in ins])
            box = normalize_boxes(box)
        if modes <= {"clean"}:
            plans.append(Plan("clean", box))
        elif "dense" in modes or not info.local:
            plans.append(Plan("dense", box))
        elif kind == "pad":
            src = ins[0]
            if src.mode == "clean":
                plans.append(Plan("clean", box))
            else:
                plans.append(Plan("patch", box, src.origin + np.array(info.pad), src.size))
        elif kind in ("pointwise", "cat") and _same_region([p for p in ins if p.mode == "patch"]):
            src = next(p for p in ins if p.mode == "patch")
            f = fixed.get(info.index) if fixed else None
            if f is not None and f.mode != "patch":
                plans.append(Plan(f.mode, box))
            else:
                plans.append(Plan("patch", box, src.origin, src.size))
        else:
            plans.append(place(info.index, box, hw))
    return plans


def _same_region(patches: list[Plan]) -> bool:
    first = patches[0]
    # "patch" plans always have an origin
    return all(p.size == first.size and np.array_equal(cast(np.ndarray, p.origin), cast(np.ndarray, first.origin))
               for p in patches[1:])


def fixed_plans(infos: list[NodeInfo], all_boxes: np.ndarray, dense_fraction: float = DENSE_FRACTION) -> dict[int, Plan]:
    """Plans over every position of a sweep at once: crop sizes that fit all batches."""
    return {i: p for i, p in enumerate(propagate(infos, all_boxes, dense_fraction))
            if p.mode in ("patch", "dense", "clean") and infos[i].kind not in ("dense",)}


@dataclass
class FlopCount:
    """Multiply-adds of conv and linear layers, summed over the positions of a batch."""

    full: int
    executed: int
    ideal: int

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.full + other.full, self.executed + other.executed, self.ideal + other.ideal)


def count_flops(infos: list[NodeInfo], plans: list[Plan], n: int) -> FlopCount:
    """Full recompute vs what the plans execute (common crops) vs the exact dirty regions, for n positions."""
    full = executed = ideal = 0
    for info, plan in zip(infos, plans, strict=True):
        if not info.macs:
            continue
        per_pos = info.macs * info.pixels
        full += n * per_pos
        if plan.mode == "clean":
            continue
        if plan.mode == "patch":
            assert plan.size is not None  # a "patch" plan has its crop size
            executed += n * (info.macs * plan.size[0] * plan.size[1])
        else:
            executed += n * per_pos
        if plan.box is not None and info.kind == "window":
            ideal += info.macs * int(box_area(plan.box).sum())
        else:
            ideal += n * per_pos
    return FlopCount(full, executed, ideal)

"""Mask positions: where each occluding mask sits. Pure numpy, no torch.

Everything works on N spatial axes: ``(H, W)`` images, ``(D, H, W)`` volumes,
and 1-D signals of length ``L``, which the sweep passes as ``(1, L)`` with a
mask height of 1. A box is ``[starts..., ends...)`` (end exclusive): ``[y0, x0,
y1, x1)`` in 2-D, ``[z0, y0, x0, z1, y1, x1)`` in 3-D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

#: Lattice steps of the coarse-to-fine order: every 4th position on each axis
#: first, then every 2nd, then the rest. Large grids start coarser still.
COARSE_TO_FINE_STEPS = (4, 2, 1)
EXTRA_COARSE_STEPS = (16, 8)
#: ``mask_size="auto"`` / ``stride="auto"``: these fractions of the input along each
#: axis (MATLAB's ``occlusionSensitivity`` rule). :func:`resolve_sizes` is the one place
#: they are applied.
AUTO_MASK_FRACTION = 0.2
AUTO_STRIDE_FRACTION = 0.1


def lattice_steps(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The coarse-to-fine steps for a grid of ``shape`` ((gy, gx) or (gd, gy, gx)), coarsest first.

    A step of 16 or 8 is added in front when its lattice still has at least
    3 positions along every axis on average (3x3 in 2-D, 3x3x3 in 3-D), so that
    the first map of a fine sweep arrives after a few dozen forward passes rather than hundreds.
    """
    n_axes = len(shape)
    extra = tuple(s for s in EXTRA_COARSE_STEPS if math.prod(-(-g // s) for g in shape) >= 3 ** n_axes)
    return extra + COARSE_TO_FINE_STEPS


_AXIS_FORMS = {1: "(l,)", 2: "(h, w) pair", 3: "(d, h, w) triple"}


def resolve_pair(
    value: object, name: str, spatial_shape: tuple[int, ...], auto_fraction: float
) -> tuple[int, ...]:
    """Turn ``"auto"``, an int or one int per axis into positive ints, one per axis of ``spatial_shape``.

    ``"auto"`` is ``round(auto_fraction * N)`` along each axis (at least 1),
    the same rule as MATLAB's ``occlusionSensitivity``, for any number of axes.
    Axes of length 1 (the height of a 1-D signal) always resolve to 1.
    """
    n_axes = len(spatial_shape)
    form = _AXIS_FORMS.get(n_axes, f"{n_axes}-tuple")
    article = "an" if form.startswith("(h") else "a"
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name}={value!r} is not allowed; use 'auto', a positive int or {article} {form}")
        sizes = tuple(max(1, int(round(auto_fraction * n))) for n in spatial_shape)
    elif isinstance(value, Integral) and not isinstance(value, bool):
        sizes = (int(value),) * n_axes
    elif isinstance(value, (tuple, list, np.ndarray)) and len(value) == n_axes and all(
        isinstance(v, Integral) and not isinstance(v, bool) for v in value
    ):
        sizes = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name}={value!r} is not allowed; use 'auto', a positive int or {article} {form} of ints")
    sizes = tuple(1 if n == 1 else v for v, n in zip(sizes, spatial_shape, strict=True))
    if min(sizes) <= 0:
        raise ValueError(f"{name}={value!r} must be positive (>= 1) along each axis")
    return sizes


def resolve_sizes(
    shape: tuple[int, ...], mask_size: object = "auto", stride: object = "auto"
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The mask size and stride a sweep of an input of ``shape`` uses: THE "auto" rule, for N axes.

    Parameters
    ----------
    shape : (H, W), (D, H, W) or any number of spatial axes
        The input's spatial size; ``(1, L)`` for a 1-D signal.
    mask_size : "auto", int or one int per axis ((h, w) or (d, h, w))
        ``"auto"`` is 20% of the input along each axis (:data:`AUTO_MASK_FRACTION`),
        rounded, at least 1.
    stride : "auto", int or one int per axis
        ``"auto"`` is 10% of the input along each axis (:data:`AUTO_STRIDE_FRACTION`).

    Returns
    -------
    mask : one int per axis
    stride : one int per axis
        Axes of length 1 always resolve to 1.

    Raises
    ------
    TypeError, ValueError
        A value that is not "auto", a positive int or one of them per axis, or a mask
        larger than the input.
    """
    shape = tuple(int(n) for n in shape)
    mask = resolve_pair(mask_size, "mask_size", shape, AUTO_MASK_FRACTION)
    step = resolve_pair(stride, "stride", shape, AUTO_STRIDE_FRACTION)
    _check_fits(mask, shape)
    return mask, step


def _check_fits(mask: tuple[int, ...], shape: tuple[int, ...]) -> None:
    for m, n in zip(mask, shape, strict=True):
        if m > n:
            raise ValueError(
                f"mask_size={tuple(mask)} is larger than the input {tuple(shape)}; allowed: 1..{n} along that axis"
            )


def mask_box(
    center_yx: tuple[float, float], mask_size: tuple[int, int], shape: tuple[int, int], clipping: bool = True
) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)``, end exclusive: the box of a mask centred at pixel ``center_yx``.

    The same rule as the sweep's grid (:func:`axis_spans`): the mask starts at
    ``round(c) - m // 2`` (halves round up, like JavaScript's ``Math.round``). With
    ``clipping`` the box is cut to the image (smaller at the edges); without, it
    is moved inside, always full size. A centre outside the image is first moved
    to the nearest pixel, so the box is never empty or inverted; a mask larger
    than the image is cut to it. Mirrored by ``maskBox`` in ``js/geometry.js``.

    Parameters
    ----------
    center_yx : (y, x) floats
        The centre in input pixels, e.g. from :func:`worst_position`.
    mask_size : (h, w) positive ints
        From :func:`resolve_sizes`.
    shape : (H, W)
        The input's spatial size.
    clipping : bool
        As the sweep's ``mask_clipping``.
    """
    if len(center_yx) != 2 or not all(isinstance(c, Real) and math.isfinite(c) for c in center_yx):
        raise ValueError(f"center_yx={tuple(center_yx)!r} is not allowed; use finite pixel coordinates (y, x)")
    if len(mask_size) != 2 or not all(isinstance(m, Integral) and not isinstance(m, bool) and m >= 1 for m in mask_size):
        raise ValueError(f"mask_size={tuple(mask_size)!r} is not allowed; use positive ints (h, w)")
    out = []
    for c, m, n in zip(center_yx, mask_size, shape, strict=False):
        n = int(n)
        c = min(max(float(c), 0.0), n - 1.0)
        m = min(int(m), n)
        start = math.floor(c + 0.5) - m // 2
        if clipping:
            out.append((max(start, 0), min(start + m, n)))
        else:
            start = min(max(start, 0), n - m)
            out.append((start, start + m))
    (y0, y1), (x0, x1) = out
    return y0, x0, y1, x1


def axis_spans(length: int, mask: int, stride: int, clipping: bool) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every mask along one axis.

    With ``clipping`` the mask centres are ``0, s, 2s, ...`` while the centre is
    ``<= length - 1``; a mask covers ``[c - mask//2, c - mask//2 + mask)`` cut to
    the axis, so masks at the edges are smaller. Without ``clipping`` the
    starts are ``0, s, 2s, ...`` while ``start + mask <= length``: every mask is
    full size and positions that would stick out are left out.
    """
    if clipping:
        centres = np.arange(0, length, stride)
        starts = centres - mask // 2
        ends = starts + mask
        return np.clip(starts, 0, length), np.clip(ends, 0, length)
    starts = np.arange(0, length - mask + 1, stride)
    return starts, starts + mask


@dataclass(frozen=True)
class MaskGrid:
    """The mask positions of one sweep, on any number of spatial axes.

    Attributes
    ----------
    spatial_shape : (H, W) or (D, H, W)
    mask_size, stride : one int per axis, in pixels (voxels)
    clipping : bool
    boxes : int64 array (gy, gx, 4) or (gd, gy, gx, 6)
        ``[starts..., ends...)`` pixel box of every position: ``[y0, x0, y1, x1)`` in 2-D.
    """

    spatial_shape: tuple[int, ...]
    mask_size: tuple[int, ...]
    stride: tuple[int, ...]
    clipping: bool
    boxes: np.ndarray

    @classmethod
    def build(
        cls,
        spatial_shape: tuple[int, ...],
        mask_size: tuple[int, ...],
        stride: tuple[int, ...],
        clipping: bool,
    ) -> MaskGrid:
        if not len(spatial_shape) == len(mask_size) == len(stride):
            raise ValueError(f"MaskGrid: spatial_shape {tuple(spatial_shape)}, mask_size {tuple(mask_size)} and "
                             f"stride {tuple(stride)} must have one value per axis")
        _check_fits(tuple(mask_size), tuple(spatial_shape))
        spans = [axis_spans(n, m, s, clipping) for n, m, s in zip(spatial_shape, mask_size, stride, strict=True)]
        n_axes = len(spans)
        counts = tuple(len(starts) for starts, _ in spans)
        boxes = np.empty((*counts, 2 * n_axes), dtype=np.int64)
        for axis, (starts, ends) in enumerate(spans):
            view = [1] * n_axes
            view[axis] = -1  # broadcast this axis' spans along its own grid axis
            boxes[..., axis] = starts.reshape(view)
            boxes[..., n_axes + axis] = ends.reshape(view)
        return cls(tuple(spatial_shape), tuple(mask_size), tuple(stride), bool(clipping), boxes)

    @property
    def ndim(self) -> int:
        """The number of spatial axes."""
        return len(self.spatial_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        """(gy, gx) or (gd, gy, gx): the number of positions along each axis."""
        return self.boxes.shape[:-1]

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    def window_starts(self) -> np.ndarray:
        """int64 (gy, gx, 2) / (gd, gy, gx, 3): the first pixel of every position's FULL-size mask window.

        The same as the box starts except at clipped edges, where the window starts outside
        the input (a soft mask is centred where the full mask would be).
        """
        n = self.ndim
        starts = self.boxes[..., :n].copy()
        if self.clipping:
            for axis, (g, s, m) in enumerate(zip(self.shape, self.stride, self.mask_size, strict=True)):
                view = [1] * n
                view[axis] = -1
                starts[..., axis] = (np.arange(g) * s - m // 2).reshape(view)
        return starts

    def coarse_to_fine(self) -> np.ndarray:
        """Flat position indices, coarse lattice first.

        The first ``prod(ceil(g/s))`` indices (``s`` the coarsest of
        :func:`lattice_steps`) already span the whole input, so a sweep stopped
        early still has a map of all of it.
        """
        steps = lattice_steps(self.shape)
        index = np.meshgrid(*(np.arange(g) for g in self.shape), indexing="ij")
        level = np.full(self.shape, len(steps) - 1)
        for lvl in reversed(range(len(steps))):
            step = steps[lvl]
            level[np.logical_and.reduce([i % step == 0 for i in index])] = lvl
        return np.argsort(level.ravel(), kind="stable")


def fill_from_coarse(grid: np.ndarray, computed: np.ndarray) -> np.ndarray:
    """Fill positions not yet computed from the nearest point of the finest
    fully computed coarse lattice.

    Parameters
    ----------
    grid : (K, gy, gx) or (K, gd, gy, gx) float array, arbitrary values where not computed
    computed : (gy, gx) or (gd, gy, gx) bool

    Returns
    -------
    float32 array of ``grid``'s shape; NaN where no lattice is complete yet.
    """
    out = np.where(computed, grid, np.nan).astype(np.float32)
    if computed.all():
        return out
    shape = computed.shape
    # The finest step whose whole lattice is done.
    done_step = None
    for step in sorted(lattice_steps(shape)):
        every_step: tuple[slice, ...] = (slice(None, None, step),) * len(shape)
        if computed[every_step].all():
            done_step = step
            break
    if done_step is None:
        return out
    snapped = np.ix_(*(_snap(np.arange(n), done_step, n) for n in shape))
    every_map: tuple[Any, ...] = (slice(None), *snapped)  # numpy's stubs reject slice + index arrays
    coarse = out[every_map]
    return np.where(computed, out, coarse)


def box_mean(values: np.ndarray, boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(K, *shape): at every pixel (voxel), the mean of ``values`` over the boxes that cover it; 0 where none does.

    Parameters
    ----------
    values : (K, B) floats
    boxes : int (B, 2N) ``[starts..., ends...)``
    shape : the N spatial sizes
    """
    n = len(shape)
    total = np.zeros((values.shape[0], *(s + 1 for s in shape)))
    count = np.zeros(tuple(s + 1 for s in shape))
    values = values.astype(np.float64)
    # A box adds +-v at its 2^N corners (sign: -1 per "end" coordinate); an N-D
    # cumulative sum then spreads v over exactly the box.
    for corner in np.ndindex(*(2,) * n):
        sign = (-1) ** sum(corner)
        where: tuple[np.ndarray, ...] = tuple(boxes[:, axis + n * c] for axis, c in enumerate(corner))
        every_map: tuple[Any, ...] = (slice(None), *where)  # numpy's stubs reject slice + index arrays
        np.add.at(total, every_map, sign * values)
        np.add.at(count, where, sign)
    for axis in range(n):
        total, count = total.cumsum(axis + 1), count.cumsum(axis)
    inside = tuple(slice(0, s) for s in shape)
    total, count = total[(slice(None), *inside)], count[inside]
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def _snap(index: np.ndarray, step: int, n: int) -> np.ndarray:
    """Nearest multiple of ``step`` that is a valid index below ``n``."""
    snapped = np.rint(index / step).astype(np.int64) * step
    last = ((n - 1) // step) * step
    return np.minimum(snapped, last)

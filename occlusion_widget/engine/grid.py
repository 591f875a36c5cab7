"""Mask positions: where each occluding mask sits. Pure numpy, no torch.

Everything works on a 2-D spatial shape ``(H, W)``; a 1-D signal of length
``L`` is handled by the caller as ``(1, L)`` with a mask height of 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

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


def lattice_steps(shape: tuple[int, int]) -> tuple[int, ...]:
    """The coarse-to-fine steps for a grid of ``shape`` (gy, gx), coarsest first.

    A step of 16 or 8 is added in front when its lattice still has at least
    3x3 positions, so that the first map of a fine sweep arrives after a few
    dozen forward passes rather than hundreds.
    """
    gy, gx = shape
    extra = tuple(s for s in EXTRA_COARSE_STEPS if -(-gy // s) * -(-gx // s) >= 9)
    return extra + COARSE_TO_FINE_STEPS


def resolve_pair(
    value: object, name: str, spatial_shape: tuple[int, int], auto_fraction: float
) -> tuple[int, int]:
    """Turn ``"auto"``, an int or an ``(h, w)`` pair into a pair of positive ints.

    ``"auto"`` is ``round(auto_fraction * N)`` along each axis (at least 1),
    the same rule as MATLAB's ``occlusionSensitivity``. Axes of length 1 (the
    height of a 1-D signal) always resolve to 1.
    """
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name}={value!r} is not allowed; use 'auto', a positive int or an (h, w) pair")
        pair = tuple(max(1, int(round(auto_fraction * n))) for n in spatial_shape)
    elif isinstance(value, Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2 and all(
        isinstance(v, Integral) and not isinstance(v, bool) for v in value
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name}={value!r} is not allowed; use 'auto', a positive int or an (h, w) pair of ints")
    pair = tuple(1 if n == 1 else v for v, n in zip(pair, spatial_shape))
    if min(pair) <= 0:
        raise ValueError(f"{name}={value!r} must be positive (>= 1) along each axis")
    return pair  # type: ignore[return-value]


def resolve_sizes(
    shape: tuple[int, int], mask_size: object = "auto", stride: object = "auto"
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The mask size and stride a sweep of an input of ``shape`` uses: THE "auto" rule.

    Parameters
    ----------
    shape : (H, W)
        The input's spatial size; ``(1, L)`` for a 1-D signal.
    mask_size : "auto", int or (h, w)
        ``"auto"`` is 20% of the input along each axis (:data:`AUTO_MASK_FRACTION`),
        rounded, at least 1.
    stride : "auto", int or (a, b)
        ``"auto"`` is 10% of the input along each axis (:data:`AUTO_STRIDE_FRACTION`).

    Returns
    -------
    mask : (h, w) ints
    stride : (a, b) ints
        Axes of length 1 always resolve to 1.

    Raises
    ------
    TypeError, ValueError
        A value that is not "auto", a positive int or a pair of them, or a mask
        larger than the input.
    """
    shape = (int(shape[0]), int(shape[1]))
    mask = resolve_pair(mask_size, "mask_size", shape, AUTO_MASK_FRACTION)
    step = resolve_pair(stride, "stride", shape, AUTO_STRIDE_FRACTION)
    _check_fits(mask, shape)
    return mask, step


def _check_fits(mask: tuple[int, int], shape: tuple[int, int]) -> None:
    for m, n in zip(mask, shape):
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
    for c, m, n in zip(center_yx, mask_size, shape):
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
    """The mask positions of one sweep.

    Attributes
    ----------
    spatial_shape : (H, W)
    mask_size, stride : (h, w) and (a, b) in pixels
    clipping : bool
    boxes : int64 array (gy, gx, 4)
        ``[y0, x0, y1, x1)`` pixel box of every position.
    """

    spatial_shape: tuple[int, int]
    mask_size: tuple[int, int]
    stride: tuple[int, int]
    clipping: bool
    boxes: np.ndarray

    @classmethod
    def build(
        cls,
        spatial_shape: tuple[int, int],
        mask_size: tuple[int, int],
        stride: tuple[int, int],
        clipping: bool,
    ) -> "MaskGrid":
        _check_fits(tuple(mask_size), tuple(spatial_shape))  # type: ignore[arg-type]
        (y0, y1), (x0, x1) = (
            axis_spans(n, m, s, clipping) for n, m, s in zip(spatial_shape, mask_size, stride)
        )
        gy, gx = len(y0), len(x0)
        boxes = np.empty((gy, gx, 4), dtype=np.int64)
        boxes[..., 0], boxes[..., 2] = y0[:, None], y1[:, None]
        boxes[..., 1], boxes[..., 3] = x0[None, :], x1[None, :]
        return cls(tuple(spatial_shape), tuple(mask_size), tuple(stride), bool(clipping), boxes)

    @property
    def shape(self) -> tuple[int, int]:
        """(gy, gx): the number of positions along each axis."""
        return self.boxes.shape[:2]  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return int(self.boxes.shape[0] * self.boxes.shape[1])

    def window_starts(self) -> np.ndarray:
        """int64 (gy, gx, 2): ``(y0, x0)`` of every position's FULL-size mask window.

        The same as ``boxes[..., :2]`` except at clipped edges, where the window starts outside
        the input (a soft mask is centred where the full mask would be).
        """
        starts = self.boxes[..., :2].copy()
        if self.clipping:
            gy, gx = self.shape
            starts[..., 0] = (np.arange(gy) * self.stride[0] - self.mask_size[0] // 2)[:, None]
            starts[..., 1] = (np.arange(gx) * self.stride[1] - self.mask_size[1] // 2)[None, :]
        return starts

    def coarse_to_fine(self) -> np.ndarray:
        """Flat position indices, coarse lattice first.

        The first ``ceil(gy/s) * ceil(gx/s)`` indices (``s`` the coarsest of
        :func:`lattice_steps`) already span the whole input, so a sweep stopped
        early still has a map of all of it.
        """
        gy, gx = self.shape
        steps = lattice_steps((gy, gx))
        iy, ix = np.meshgrid(np.arange(gy), np.arange(gx), indexing="ij")
        level = np.full((gy, gx), len(steps) - 1)
        for lvl in reversed(range(len(steps))):
            step = steps[lvl]
            level[(iy % step == 0) & (ix % step == 0)] = lvl
        return np.argsort(level.ravel(), kind="stable")


def fill_from_coarse(grid: np.ndarray, computed: np.ndarray) -> np.ndarray:
    """Fill positions not yet computed from the nearest point of the finest
    fully computed coarse lattice.

    Parameters
    ----------
    grid : (K, gy, gx) float array, arbitrary values where not computed
    computed : (gy, gx) bool

    Returns
    -------
    (K, gy, gx) float array; NaN where no lattice is complete yet.
    """
    out = np.where(computed, grid, np.nan).astype(np.float32)
    if computed.all():
        return out
    gy, gx = computed.shape
    # The finest step whose whole lattice is done.
    done_step = None
    for step in sorted(lattice_steps((gy, gx))):
        if computed[::step, ::step].all():
            done_step = step
            break
    if done_step is None:
        return out
    ys = _snap(np.arange(gy), done_step, gy)
    xs = _snap(np.arange(gx), done_step, gx)
    coarse = out[:, ys][:, :, xs]
    return np.where(computed, out, coarse)


def _snap(index: np.ndarray, step: int, n: int) -> np.ndarray:
    """Nearest multiple of ``step`` that is a valid index below ``n``."""
    snapped = np.rint(index / step).astype(np.int64) * step
    last = ((n - 1) // step) * step
    return np.minimum(snapped, last)

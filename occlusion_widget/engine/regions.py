"""Where the sweep occludes: a grid of boxes (soft or hard) or the segments of a label image.

An *occluder* tells the one sweep loop (:mod:`.sweep`) what a "mask position" is:

- :class:`BoxOccluder`: the rectangles of a :class:`~.grid.MaskGrid` (``mask_shape="box"``), or Gaussian
  windows of the same size (``mask_shape="gaussian"``); positions run coarse to fine.
- :class:`SegmentOccluder`: one position per label of a label image (``segments=``), e.g. superpixels
  from scikit-image's SLIC (``segments="slic"``): each map paints a segment with its value, as Captum's
  ``FeatureAblation`` does with a ``feature_mask``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

from .fills import MASK_SHAPES, gaussian_window
from .grid import MaskGrid, fill_from_coarse
from .result import upsample

__all__ = ["BoxOccluder", "SegmentOccluder", "describe_segments", "resolve_segments", "segment_boxes"]


class BoxOccluder:
    """The rectangles of ``grid`` (hard masks), or Gaussian windows of the mask's size (soft masks).

    ``shape`` is the grid's (gy, gx) (or (gd, gy, gx)); ``weights(idx)`` the (B, H, W) (or (B, D, H, W))
    masks of flat positions ``idx``.
    """

    kind = "box"

    def __init__(self, grid: MaskGrid, mask_shape: str, device: torch.device) -> None:
        if mask_shape not in MASK_SHAPES:
            raise ValueError(f"mask_shape={mask_shape!r} is not allowed; use one of {', '.join(map(repr, MASK_SHAPES))}")
        self.grid, self.mask_shape = grid, mask_shape
        self.shape, self.size = grid.shape, grid.size
        n = grid.ndim
        self._boxes = torch.as_tensor(grid.boxes.reshape(-1, 2 * n), device=device)
        self._starts = torch.as_tensor(grid.window_starts().reshape(-1, n), device=device)
        self._coords = [torch.arange(size, device=device) for size in grid.spatial_shape]

    def order(self) -> np.ndarray:
        """Flat position indices, coarse lattice first."""
        return self.grid.coarse_to_fine()

    def boxes(self, idx: np.ndarray) -> torch.Tensor:
        """(B, 4) ``[y0, x0, y1, x1)`` (``(B, 6)`` in 3-D) of positions ``idx``: what the incremental path takes."""
        return self._boxes[torch.as_tensor(idx, device=self._boxes.device)]

    def weights(self, idx: np.ndarray) -> torch.Tensor:
        """(B, H, W) (or (B, D, H, W)): bool boxes, or float Gaussian windows in [0, 1]."""
        if self.mask_shape == "gaussian":
            starts = self._starts[torch.as_tensor(idx, device=self._starts.device)]
            return gaussian_window(starts, self.grid.mask_size, self.grid.spatial_shape)
        boxes, n = self.boxes(idx), self.grid.ndim
        inside = None
        for axis, coord in enumerate(self._coords):
            along = (coord >= boxes[:, axis, None]) & (coord < boxes[:, n + axis, None])  # (B, size)
            view = [along.shape[0]] + [1] * n
            view[axis + 1] = coord.numel()
            along = along.view(view)
            inside = along if inside is None else inside & along
        assert inside is not None, "a grid has at least one spatial axis"
        return inside

    def partial(self, values: np.ndarray, computed: np.ndarray) -> np.ndarray:
        """An incomplete sweep's grid: positions not computed yet from the finest complete coarse lattice."""
        return fill_from_coarse(values, computed)

    def maps(self, values: np.ndarray, size: tuple[int, int], upsampling: str) -> np.ndarray:
        """(K, gy, gx) -> (K, H, W) (or (K, gd, gy, gx) -> (K, D, H, W)) by ``upsampling``."""
        return upsample(values, size, upsampling)


def resolve_segments(segments: object, x: torch.Tensor, n_segments: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """A label image as positions: (index (H, W) int64 in 0..n-1, ids (n,) the labels in that order).

    Parameters
    ----------
    segments : "slic" or int array (H, W)
        A label per pixel (any ints, e.g. superpixels, a segmentation, a grid of regions); or "slic":
        scikit-image's SLIC superpixels of ``x`` (Lab colour for RGB inputs in [0, 1]).
    x : tensor (C, H, W)
        The input in the model's input space.
    n_segments : int
        The number of superpixels SLIC aims at (it may return somewhat fewer or more).

    Raises
    ------
    ValueError, TypeError
        Anything but "slic" or an integer array of the input's spatial shape.
    """
    h, w = x.shape[-2:]
    if isinstance(segments, str):
        if segments != "slic":
            raise ValueError(f"segments={segments!r} is not allowed; use 'slic' or an int label image (H, W)")
        if isinstance(n_segments, bool) or not isinstance(n_segments, Integral) or n_segments < 1:
            raise ValueError(f"n_segments={n_segments!r} is not allowed; use a positive int")
        try:
            from skimage.segmentation import slic
        except ImportError as exc:
            raise ImportError("segments='slic' needs scikit-image: pip install scikit-image") from exc
        img = np.moveaxis(x.detach().cpu().numpy().astype(np.float64), 0, -1)
        lab = img.shape[-1] == 3 and img.min() >= 0 and img.max() <= 1
        labels = slic(img, n_segments=int(n_segments), start_label=0, channel_axis=-1, convert2lab=lab)
    else:
        labels = segments.detach().cpu().numpy() if isinstance(segments, torch.Tensor) else np.asarray(segments)
        if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"segments: expected 'slic' or an int label image (H, W), got {labels.dtype} values")
        if labels.shape == (w,) and h == 1:  # a 1-D signal's labels (L,)
            labels = labels[None]
        if labels.shape != (h, w):
            raise ValueError(f"segments: the label image is {labels.shape}, the input's spatial size is {(h, w)}; "
                             "give one label per pixel")
    ids, index = np.unique(labels, return_inverse=True)
    return index.reshape(h, w).astype(np.int64), ids


def segment_boxes(index: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) int64 ``[y0, x0, y1, x1)``: the bounding box of each segment of ``index`` (H, W)."""
    h, w = index.shape
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w)).ravel()
    cols = np.broadcast_to(np.arange(w)[None, :], (h, w)).ravel()
    flat = index.ravel()
    boxes = np.empty((n, 4), dtype=np.int64)
    boxes[:, 0] = np.full(n, h)
    boxes[:, 1] = np.full(n, w)
    boxes[:, 2:] = 0
    np.minimum.at(boxes[:, 0], flat, rows)
    np.minimum.at(boxes[:, 1], flat, cols)
    np.maximum.at(boxes[:, 2], flat, rows + 1)
    np.maximum.at(boxes[:, 3], flat, cols + 1)
    return boxes


class SegmentOccluder:
    """One position per segment of a label image: the grid is (1, n), a map paints each segment.

    Parameters
    ----------
    index : int64 (H, W)
        Each pixel's segment, 0..n-1 (:func:`resolve_segments`).
    ids : (n,) array
        The user's label of each segment.
    device : torch.device
    """

    kind = "segments"
    mask_shape = "box"

    def __init__(self, index: np.ndarray, ids: np.ndarray, device: torch.device) -> None:
        self.index, self.ids = index, np.asarray(ids)
        n = int(index.max()) + 1
        self.shape, self.size = (1, n), n
        self._index = torch.as_tensor(index, device=device)
        self._boxes = torch.as_tensor(segment_boxes(index, n), device=device)

    def order(self) -> np.ndarray:
        """Segments in label order."""
        return np.arange(self.size)

    def boxes(self, idx: np.ndarray) -> torch.Tensor:
        """(B, 4) bounding boxes of segments ``idx``."""
        return self._boxes[torch.as_tensor(idx, device=self._boxes.device)]

    def weights(self, idx: np.ndarray) -> torch.Tensor:
        """(B, H, W) bool: the pixels of each segment."""
        return self._index[None] == torch.as_tensor(idx, device=self._index.device)[:, None, None]

    def partial(self, values: np.ndarray, computed: np.ndarray) -> np.ndarray:
        """Segments not computed yet are NaN (no coarse lattice to borrow from)."""
        return np.where(computed, values, np.nan).astype(np.float32)

    def maps(self, values: np.ndarray, size: tuple[int, int], upsampling: str) -> np.ndarray:
        """(K, 1, n) -> (K, H, W): every pixel gets its segment's value (``upsampling`` does not apply)."""
        return values[:, 0][:, self.index].astype(np.float32)


def describe_segments(segments: object, n: int) -> str | None:
    """``params.segments``: None for boxes, else "slic (n)" or "labels (n)"."""
    if segments is None:
        return None
    return f"{'slic' if isinstance(segments, str) else 'labels'} ({n})"

"""The result of a sweep: per-position score changes and what is derived from them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Union

import numpy as np
import torch
import torch.nn.functional as F

UPSAMPLING = ("bicubic", "nearest", "none")


@dataclass(frozen=True)
class OcclusionParams:
    """The resolved parameters of a sweep (what "auto" turned into).

    ``mask_size`` and ``stride`` are ``(h, w)`` pairs, or ``(l,)`` for a 1-D signal.
    ``mask_value`` is the per-channel replacement value (C,), or ``"blur"``.
    """

    mask_size: tuple[int, ...]
    stride: tuple[int, ...]
    mask_value: Union[np.ndarray, str]
    mask_clipping: bool
    upsampling: str
    output: str
    batch_size: int
    device: str
    strategy: str = "full"
    precision: str = "float32"


@dataclass(frozen=True)
class ImportantRegion:
    """The mask position whose occlusion lowers one target's score the most."""

    target: int
    label: str | None
    index: tuple[int, ...]
    """Grid index (iy, ix), or (ix,) for a 1-D signal."""
    box: np.ndarray
    """[y0, x0, y1, x1) in pixels, or [x0, x1) for a 1-D signal."""
    drop: float
    """Base score minus occluded score (the map's value there)."""
    occluded_score: float
    occluded_image: np.ndarray
    """The input (C, H, W) with that region occluded, as the network saw it."""


class MapResult:
    """What every map result (occlusion or gradient) shares, beyond its field names."""

    image: np.ndarray

    @property
    def is_signal(self) -> bool:
        """True for a 1-D input (C, L)."""
        return self.image.ndim == 2

    def _repr_png_(self) -> bytes:
        """In Jupyter a result shows as its figure (:func:`occlusion_widget.render.figure`)."""
        from ..render import figure_png

        return figure_png(self)


@dataclass(frozen=True)
class OcclusionResult(MapResult):
    """Occlusion sensitivity for K targets.

    Attributes
    ----------
    grid : float32 (K, gy, gx)
        Base score minus occluded score at every mask position: positive where
        the region supports the target. (K, gx) for a 1-D signal.
    maps : float32 (K, H, W)
        ``grid`` upsampled to the input size (or ``grid`` itself with
        ``upsampling="none"``). (K, L) for a 1-D signal.
    base_scores : float32 (K,)
        Each target's score on the unoccluded input.
    targets : int64 (K,)
    labels : list of str or None
    boxes : int64 (gy, gx, 4)
        ``[y0, x0, y1, x1)`` pixel box of each position; (gx, 2) ``[x0, x1)`` for 1-D.
    params : OcclusionParams
    image : float32 (C, H, W)
        The input as the network saw it; (C, L) for 1-D.
    fill : float32 (C, H, W)
        What an occluded pixel is replaced with (the mask value, broadcast).
    computed : bool (gy, gx)
        Positions evaluated. Where False (an incomplete sweep) ``grid`` holds
        the value of the nearest coarse position, or NaN.
    complete : bool
        False when the sweep was cancelled.
    n_forward : int
        Forward batches run (the unoccluded pass included).
    elapsed_s : float
    top_ids : int64 (gy, gx, k)
        At every mask position, the indices of the k = min(5, outputs) highest
        scores on the occluded input (scores of the map's kind: probabilities,
        logits, the ``output`` callable's columns or the layer's channels), best
        first; -1 where not computed. (gx, k) for a 1-D signal.
    top_scores : float32 (gy, gx, k)
        Those scores; NaN where not computed. (gx, k) for a 1-D signal.
    base_top_ids : int64 (k,)
        The k best outputs on the unoccluded input, best first.
    base_top_scores : float32 (k,)
        Their scores.
    """

    method: ClassVar[str] = "occlusion"  # AttributionResult names its gradient method here
    grid: np.ndarray
    maps: np.ndarray
    base_scores: np.ndarray
    targets: np.ndarray
    labels: list[str] | None
    boxes: np.ndarray
    params: OcclusionParams
    image: np.ndarray
    fill: np.ndarray
    computed: np.ndarray
    complete: bool = True
    n_forward: int = 0
    elapsed_s: float = 0.0
    # None only in results built by hand; the engine always fills them.
    top_ids: np.ndarray | None = field(default=None, repr=False, compare=False)
    top_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    base_top_ids: np.ndarray | None = field(default=None, repr=False, compare=False)
    base_top_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"incomplete {int(self.computed.sum())}/{self.computed.size}"
        return (
            f"OcclusionResult(targets={self.targets.tolist()}, labels={self.labels}, "
            f"grid={self.grid.shape}, maps={self.maps.shape}, {state})"
        )

    def _grid2d(self) -> np.ndarray:
        return self.grid[:, None, :] if self.is_signal else self.grid

    def _boxes2d(self) -> np.ndarray:
        if not self.is_signal:
            return self.boxes
        b = self.boxes
        zeros, ones = np.zeros_like(b[:, :1]), np.ones_like(b[:, :1])
        return np.concatenate([zeros, b[:, :1], ones, b[:, 1:]], axis=1)[None]

    def pixel_mean(self) -> np.ndarray:
        """(K, H, W): for each pixel, the mean change over the masks that cover it.

        This is Captum's ``Occlusion`` convention. Pixels no mask covers are 0.
        """
        grid = self._grid2d()
        boxes = self._boxes2d().reshape(-1, 4)
        computed = np.broadcast_to(self.computed.reshape(-1), (boxes.shape[0],))
        values = grid.reshape(grid.shape[0], -1)[:, computed].astype(np.float64)
        boxes = boxes[computed]
        h, w = (1, self.image.shape[-1]) if self.is_signal else self.image.shape[-2:]
        total = np.zeros((grid.shape[0], h + 1, w + 1))
        count = np.zeros((h + 1, w + 1))
        # A box adds +v at its two corners and -v at the other two; a 2-D
        # cumulative sum then spreads v over exactly the box.
        y0, x0, y1, x1 = boxes.T
        for sign, ys, xs in ((1, y0, x0), (-1, y0, x1), (-1, y1, x0), (1, y1, x1)):
            np.add.at(total, (slice(None), ys, xs), sign * values)
            np.add.at(count, (ys, xs), sign)
        total = total.cumsum(1).cumsum(2)[:, :h, :w]
        count = count.cumsum(0).cumsum(1)[:h, :w]
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
        return mean[:, 0, :] if self.is_signal else mean

    def most_important(self, k: int = 0) -> ImportantRegion:
        """The position whose occlusion lowers target ``k``'s score the most.

        ``k`` indexes ``targets`` (0 = the first target).
        """
        if not 0 <= k < len(self.targets):
            raise ValueError(f"k={k} is out of range; allowed: 0..{len(self.targets) - 1}")
        grid = np.where(self.computed, self._grid2d()[k], -np.inf)
        flat = int(np.argmax(grid))
        iy, ix = np.unravel_index(flat, grid.shape)
        y0, x0, y1, x1 = (int(v) for v in self._boxes2d()[iy, ix])
        occluded = self.image.copy()
        region = np.s_[..., x0:x1] if self.is_signal else np.s_[:, y0:y1, x0:x1]
        occluded[region] = self.fill[region]
        drop = float(self._grid2d()[k, iy, ix])
        return ImportantRegion(
            target=int(self.targets[k]),
            label=self.labels[k] if self.labels else None,
            index=(int(ix),) if self.is_signal else (int(iy), int(ix)),
            box=np.array([x0, x1] if self.is_signal else [y0, x0, y1, x1]),
            drop=drop,
            occluded_score=float(self.base_scores[k] - drop),
            occluded_image=occluded,
        )

    def with_upsampling(self, upsampling: str) -> "OcclusionResult":
        """The same result with ``maps`` made by another upsampling method."""
        maps = upsample(self._grid2d(), self.image.shape[-2:] if not self.is_signal else (1, self.image.shape[-1]), upsampling)
        maps = maps[:, 0, :] if self.is_signal else maps
        return replace(self, maps=maps, params=replace(self.params, upsampling=upsampling))


def upsample(grid: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """(K, gy, gx) -> (K, H, W) by bicubic or nearest interpolation, like MATLAB's imresize.

    ``"none"`` returns the grid. Positions that are NaN stay NaN (nearest).
    """
    if method not in UPSAMPLING:
        raise ValueError(f"upsampling={method!r} is not allowed; use one of {', '.join(map(repr, UPSAMPLING))}")
    if method == "none":
        return grid.astype(np.float32, copy=True)
    nan = np.isnan(grid)
    t = torch.from_numpy(np.nan_to_num(grid).astype(np.float32))[None]
    if method == "nearest":
        out = F.interpolate(t, size=tuple(size), mode="nearest-exact")[0]
    else:
        out = F.interpolate(t, size=tuple(size), mode="bicubic", align_corners=False)[0]
    out = out.numpy()
    if nan.any():
        holes = F.interpolate(torch.from_numpy(nan.astype(np.float32))[None], size=tuple(size), mode="nearest-exact")
        out[holes[0].numpy() > 0.5] = np.nan
    return out

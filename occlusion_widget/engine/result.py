"""The result of a sweep: per-position score changes and what is derived from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .upsampling import MAP_UPSAMPLING, UPSAMPLING, resolve_upsampling, upsample, upsample_maps  # noqa: F401


@dataclass(frozen=True)
class OcclusionParams:
    """The resolved parameters of a sweep (what "auto" turned into).

    ``mask_size`` and ``stride`` are ``(h, w)`` pairs, or ``(l,)`` for a 1-D signal.
    ``mask_value`` is the per-channel replacement value (C,), ``"blur"`` or ``"inpaint"``.
    ``mask_shape`` is ``"box"`` or ``"gaussian"``; ``segments`` None for a grid of masks, else
    ``"slic (n)"`` or ``"labels (n)"`` (then ``mask_size``/``stride`` only set the blur's scale).
    """

    mask_size: tuple[int, ...]
    stride: tuple[int, ...]
    mask_value: np.ndarray | str
    mask_clipping: bool
    upsampling: str
    output: str
    batch_size: int
    device: str
    strategy: str = "full"
    precision: str = "float32"
    mask_shape: str = "box"
    segments: str | None = None


@dataclass(frozen=True)
class ImportantRegion:
    """The mask position whose occlusion lowers one target's score the most."""

    target: int
    label: str | None
    index: tuple[int, ...]
    """Grid index (iy, ix), (ix,) for a 1-D signal, (iz, iy, ix) for a volume."""
    box: np.ndarray
    """[y0, x0, y1, x1) in pixels, [x0, x1) for a 1-D signal, [z0, y0, x0, z1, y1, x1) for a volume."""
    drop: float
    """Base score minus occluded score (the map's value there)."""
    occluded_score: float
    occluded_image: np.ndarray
    """The input (C, H, W) (or (C, D, H, W)) with that region occluded, as the network saw it."""


# Draws a result as PNG bytes for Jupyter. The engine draws nothing itself (it imports nothing
# above it); occlusion_widget.render registers its figure here when the package is imported.
_png_renderer: Callable[[MapResult], bytes] | None = None


def set_png_renderer(renderer: Callable[[MapResult], bytes] | None) -> None:
    """Make ``renderer(result) -> PNG bytes`` the figure a result shows in Jupyter (``_repr_png_``).

    :mod:`occlusion_widget.render` registers :func:`~occlusion_widget.render.figure_png` on
    import (``import occlusion_widget`` does it); None turns the figure off (the text repr shows).
    """
    global _png_renderer
    if renderer is not None and not callable(renderer):
        raise TypeError(f"renderer={renderer!r} is not allowed; use a callable renderer(result) -> bytes, or None")
    _png_renderer = renderer


@dataclass(frozen=True, kw_only=True)
class MapResult:
    """The result of every attribution method: one map per target, with what it cost.

    Every method (occlusion, Grad-CAM, saliency, SmoothGrad, Integrated Gradients)
    returns this type; :class:`OcclusionResult` adds the mask positions. The
    fields are keyword-only.

    Attributes
    ----------
    method : str
        The method's registry name (``"occlusion"``, ``"grad_cam"``, ``"saliency"``,
        ``"smoothgrad"``, ``"integrated_gradients"``).
    grid : float32 (K, h, w)
        The raw map at the method's own resolution: per mask position for
        occlusion, the layer's (h, w) for Grad-CAM, (K, H, W) for the pixel-level
        gradient methods. (K, l) for a 1-D signal.
    maps : float32 (K, H, W)
        ``grid`` at the input size (``params.upsampling``). (K, L) for a 1-D signal.
    base_scores : float32 (K,)
        Each target's score (``params.output``) on the unchanged input.
    targets : int64 (K,)
        The explained output indices, in map order.
    labels : list of str or None
        Their names (None when the model has no labels).
    params : dataclass
        What the method's parameters resolved to (:class:`OcclusionParams`, or the
        gradient methods' ``AttributionParams``); every one has ``output``,
        ``upsampling`` and ``device``.
    image : float32 (C, H, W)
        The input as the network saw it; (C, L) for a 1-D signal.
    complete : bool
        False for a partial result: one passed to ``progress`` while the method
        runs, or one returned after ``cancel`` was set (see *Cancellation*).
    n_forward : int
        Forward passes run (a batch counts once).
    elapsed_s : float
        Wall time of the call, in seconds.
    extra : dict
        Method-specific arrays, e.g. Grad-CAM's ``weights`` (K, C'), SmoothGrad's
        ``mean_gradient`` (K, C, H, W), Integrated Gradients' ``attributions``.

    Cancellation
    ------------
    Every method takes ``cancel`` (a ``threading.Event``), checks it between
    batches, and when it is set *returns* its result so far with
    ``complete=False`` (it never raises for a cancel). What a partial result
    holds: occlusion, the positions swept (``computed``; ``grid`` filled from
    the finest complete coarse lattice); SmoothGrad, the mean over the noisy
    copies done; saliency and Grad-CAM, the targets done; Integrated Gradients
    (part of a path integral is no attribution), nothing. Whatever is not known is NaN
    in ``grid`` and ``maps``: a partial result never passes NaN, zeros or a
    partial integral off as a finished map, so callers show or keep only
    ``complete`` results (``if not result.complete: ...``).
    """

    method: str
    grid: np.ndarray
    maps: np.ndarray
    base_scores: np.ndarray
    targets: np.ndarray
    labels: list[str] | None
    params: Any
    image: np.ndarray
    complete: bool = True
    n_forward: int = 0
    elapsed_s: float = 0.0
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return (f"{type(self).__name__}(method={self.method!r}, targets={self.targets.tolist()}, "
                f"labels={self.labels}, grid={self.grid.shape}, maps={self.maps.shape}, {state})")

    @property
    def is_signal(self) -> bool:
        """True for a 1-D input (C, L)."""
        return self.image.ndim == 2

    def _repr_png_(self) -> bytes | None:
        """In Jupyter a result shows as its figure (the renderer :func:`set_png_renderer` registered)."""
        return None if _png_renderer is None else _png_renderer(self)

    def map_of(self, target: int) -> np.ndarray:
        """The map (H, W) of output index ``target`` (a value of ``targets``, not a position in it)."""
        hits = np.flatnonzero(np.asarray(self.targets) == int(target))
        if hits.size == 0:
            raise ValueError(f"target {target} is not among the result's targets {np.asarray(self.targets).tolist()}")
        return np.asarray(self.maps)[int(hits[0])]

    def with_upsampling(self, upsampling: str) -> MapResult:
        """The same result with ``maps`` made from ``grid`` by another method (one of :data:`MAP_UPSAMPLING`)."""
        if self.is_signal:
            maps = upsample_maps(self.grid[:, None], (1, self.image.shape[-1]), upsampling)[:, 0]
        else:
            maps = upsample_maps(self.grid, self.image.shape[-2:], upsampling)
        return replace(self, maps=maps, params=replace(self.params, upsampling=upsampling))

    def worst_position(self, k: int = 0) -> tuple[int, int]:
        """Where target ``k``'s map peaks, as a pixel (y, x) of the input ((0, x) for a 1-D signal).

        For a gradient map, its largest value. :class:`OcclusionResult` gives the
        centre of the mask position whose occlusion lowers the score most.

        Raises
        ------
        ValueError
            ``k`` out of range, or no finite value in the map yet.
        """
        _check_k(k, len(self.targets))
        m = np.asarray(self.maps[k])
        if not np.isfinite(m).any():
            raise ValueError(f"worst_position: the map of target {k} has no finite value yet (nothing computed)")
        flat = int(np.nanargmax(m))
        if m.ndim == 1:
            return 0, flat
        return tuple(int(i) for i in np.unravel_index(flat, m.shape))  # type: ignore[return-value]


def _check_k(k: object, n: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 0 <= k < n:
        raise ValueError(f"k={k!r} is out of range; allowed: 0..{n - 1} (an index into targets)")


@dataclass(frozen=True, kw_only=True)
class OcclusionResult(MapResult):
    """Occlusion sensitivity for K targets: a :class:`MapResult` plus the mask positions.

    Attributes
    ----------
    method : str
        Always ``"occlusion"``.
    grid : float32 (K, gy, gx)
        Base score minus occluded score at every mask position: positive where
        the region supports the target. (K, gx) for a 1-D signal.
    maps : float32 (K, H, W)
        ``grid`` upsampled to the input size (or ``grid`` itself with
        ``upsampling="none"``). (K, L) for a 1-D signal.
    base_scores, targets, labels, image, complete, n_forward, elapsed_s, extra
        As in :class:`MapResult`.
    params : OcclusionParams
    boxes : int64 (gy, gx, 4)
        ``[y0, x0, y1, x1)`` pixel box of each position; (gx, 2) ``[x0, x1)`` for 1-D;
        (gd, gy, gx, 6) ``[z0, y0, x0, z1, y1, x1)`` for a volume (grid (K, gd, gy, gx),
        maps (K, D, H, W), image and fill (C, D, H, W)).
    fill : float32 (C, H, W)
        What an occluded pixel is replaced with (the mask value, broadcast).
    computed : bool (gy, gx)
        Positions evaluated. Where False (an incomplete sweep) ``grid`` holds
        the value of the nearest coarse position, or NaN.
    top_ids : int64 (gy, gx, k)
        At every mask position, the indices of the k = min(5, outputs) highest
        scores on the occluded input (scores of the map's kind: probabilities,
        logits, the ``output`` callable's columns or the layer's channels), best
        first; -1 where not computed. (gx, k) for a 1-D signal.
    top_scores : float32 (gy, gx, k)
        Those scores; NaN where not computed. (gx, k) for a 1-D signal.
    segments : int64 (H, W) or None
        With ``segments=``: each pixel's position (0..n-1, the last axis of ``grid``);
        ``grid`` is then (K, n), ``boxes`` (n, 4) the segments' bounding boxes,
        ``computed`` / ``top_ids`` / ``top_scores`` per segment, and
        ``extra["segment_ids"]`` (n,) the labels given. None for a grid of masks.
    base_top_ids : int64 (k,)
        The k best outputs on the unoccluded input, best first.
    base_top_scores : float32 (k,)
        Their scores.
    """

    method: str = "occlusion"
    params: OcclusionParams
    boxes: np.ndarray
    fill: np.ndarray
    computed: np.ndarray
    # None only in results built by hand; the engine always fills them.
    top_ids: np.ndarray | None = field(default=None, repr=False, compare=False)
    top_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    base_top_ids: np.ndarray | None = field(default=None, repr=False, compare=False)
    base_top_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    segments: np.ndarray | None = field(default=None, repr=False, compare=False)

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
        """(K, H, W) (volumes: (K, D, H, W)): for each pixel, the mean change over the masks that cover it.

        This is Captum's ``Occlusion`` convention (and, as ``base_scores - pixel_mean()``, MONAI's
        map: :mod:`.volume`). Pixels no mask covers are 0. With
        ``segments=`` every pixel lies in one segment: its segment's value (Captum's
        ``FeatureAblation`` with that ``feature_mask``); NaN where not computed.
        """
        if self.segments is not None:
            return np.where(self.computed, self.grid, np.nan).astype(np.float32)[:, self.segments]
        from .grid import box_mean

        grid = self._grid2d()
        boxes = self._boxes2d()
        boxes = boxes.reshape(-1, boxes.shape[-1])
        computed = np.broadcast_to(self.computed.reshape(-1), (boxes.shape[0],))
        values = grid.reshape(grid.shape[0], -1)[:, computed]
        shape = (1, self.image.shape[-1]) if self.is_signal else self.image.shape[1:]
        mean = box_mean(values, boxes[computed], shape)
        return mean[:, 0, :] if self.is_signal else mean

    def most_important(self, k: int = 0) -> ImportantRegion:
        """The position whose occlusion lowers target ``k``'s score the most.

        ``k`` indexes ``targets`` (0 = the first target).
        """
        _check_k(k, len(self.targets))
        if not self.computed.any():
            raise ValueError("most_important: no mask position is computed yet")
        if self.segments is not None:
            return self._most_important_segment(k)
        grid = np.where(self.computed, self._grid2d()[k], -np.inf)
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(grid)), grid.shape))
        box = [int(v) for v in self._boxes2d()[where]]
        n = len(where)
        image = self.image[:, None] if self.is_signal else self.image
        weights = np.zeros(image.shape[1:], dtype=np.float32)
        if self.params.mask_shape == "gaussian":
            from .fills import gaussian_window
            from .grid import MaskGrid

            size = (1, self.params.mask_size[0]) if self.is_signal else self.params.mask_size
            stride = (1, self.params.stride[0]) if self.is_signal else self.params.stride
            starts = MaskGrid.build(image.shape[1:], size, stride, self.params.mask_clipping).window_starts()
            weights = gaussian_window(torch.as_tensor(starts[where][None]), size, image.shape[1:])[0].numpy()
        else:
            weights[tuple(slice(box[i], box[n + i]) for i in range(n))] = 1
        occluded = self._occluded(image, weights)
        occluded = occluded[:, 0] if self.is_signal else occluded
        drop = float(self._grid2d()[(k, *where)])
        return ImportantRegion(
            target=int(self.targets[k]),
            label=self.labels[k] if self.labels else None,
            index=where[1:] if self.is_signal else where,
            box=np.array([box[1], box[3]] if self.is_signal else box),
            drop=drop,
            occluded_score=float(self.base_scores[k] - drop),
            occluded_image=occluded,
        )

    def _occluded(self, image: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``image`` (C, H, W) as the sweep occluded it with ``weights`` (H, W) in [0, 1]."""
        if isinstance(self.params.mask_value, str) and self.params.mask_value == "inpaint":
            from .fills import inpaint

            fill = inpaint(image, weights > 0)
        else:
            fill = self.fill[:, None] if self.is_signal else self.fill
        return (image * (1 - weights) + fill * weights).astype(np.float32)

    def _most_important_segment(self, k: int) -> ImportantRegion:
        values = np.where(self.computed, self.grid[k], -np.inf)
        j = int(np.argmax(values))
        image = self.image[:, None] if self.is_signal else self.image
        assert self.segments is not None, "only called for a result computed with segments="
        inside = (self.segments == j).reshape(image.shape[1:]).astype(np.float32)
        occluded = self._occluded(image, inside)
        return ImportantRegion(
            target=int(self.targets[k]), label=self.labels[k] if self.labels else None, index=(j,),
            box=np.asarray(self.boxes[j]), drop=float(self.grid[k, j]),
            occluded_score=float(self.base_scores[k] - self.grid[k, j]),
            occluded_image=occluded[:, 0] if self.is_signal else occluded,
        )

    def worst_position(self, k: int = 0) -> tuple[int, int]:
        """The centre (y, x), in input pixels, of the mask position that lowers target ``k`` most.

        A mask of ``params.mask_size`` centred there (:func:`mask_box`, same
        clipping) covers exactly the box the sweep used: with clipping the
        lattice point ``(iy * stride_y, ix * stride_x)``, without it the box's
        corner plus half the mask. (0, x) for a 1-D signal.

        Raises
        ------
        ValueError
            ``k`` out of range, or no position computed yet.
        """
        region = self.most_important(k)
        p = self.params
        if self.segments is not None:  # the segment's pixel nearest its centre of mass
            ys, xs = np.nonzero(np.atleast_2d(self.segments) == region.index[0])
            i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
            return int(ys[i]), int(xs[i])
        if self.is_signal:
            (ix,) = region.index
            return 0, (ix * p.stride[0] if p.mask_clipping else int(region.box[0]) + p.mask_size[0] // 2)
        if p.mask_clipping:
            return tuple(i * s for i, s in zip(region.index, p.stride, strict=False))  # type: ignore[return-value]
        return tuple(int(b) + m // 2 for b, m in zip(region.box, p.mask_size, strict=False))  # type: ignore[return-value]

    def with_upsampling(self, upsampling: str) -> OcclusionResult:
        """The same result with ``maps`` made by another upsampling method (one of :data:`UPSAMPLING`).

        With ``segments=`` the maps paint the segments whatever the method (only ``params`` changes).
        """
        if self.segments is not None:
            upsample(self.grid[:1, None], (1, 1), upsampling)  # validates the name
            return replace(self, params=replace(self.params, upsampling=upsampling))
        maps = upsample(self._grid2d(), self.image.shape[1:] if not self.is_signal else (1, self.image.shape[-1]), upsampling)
        maps = maps[:, 0, :] if self.is_signal else maps
        used = resolve_upsampling(upsampling, self.image.ndim - 1 + self.is_signal)  # a volume's "bicubic": trilinear
        return replace(self, maps=maps, params=replace(self.params, upsampling=used))


def worst_position(result: MapResult, k: int = 0) -> tuple[int, int]:
    """``result.worst_position(k)``: where target ``k``'s map is worst for the class, in input pixels (y, x).

    For occlusion the centre of the mask position that lowers the score most
    (a mask centred there covers the sweep's box); for the other methods the
    map's peak. See :meth:`MapResult.worst_position`.
    """
    return result.worst_position(k)

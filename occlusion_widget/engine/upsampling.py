"""Maps at the input size from a coarse grid: bicubic / nearest (the sweep's), bilinear (Grad-CAM's)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

UPSAMPLING = ("bicubic", "nearest", "none")
#: The sweep's upsampling of a volume's (K, gd, gy, gx) grid. torch has no tricubic interpolation:
#: "bicubic" (the default) on a volume means "trilinear", and the result's params say so.
VOLUME_UPSAMPLING = ("trilinear", "nearest", "none")
#: Upsampling methods for low-resolution maps of any method: the sweep's, plus "bilinear"
#: (what Grad-CAM implementations use; cv2 INTER_LINEAR = torch align_corners=False).
MAP_UPSAMPLING = ("bilinear",) + UPSAMPLING

__all__ = ["MAP_UPSAMPLING", "UPSAMPLING", "VOLUME_UPSAMPLING", "resolve_upsampling", "upsample", "upsample_maps"]


def resolve_upsampling(method: str, n_axes: int) -> str:
    """The upsampling a sweep of ``n_axes`` spatial axes uses for ``method``, or a clear error.

    Images and signals take :data:`UPSAMPLING`; volumes :data:`VOLUME_UPSAMPLING`, with "bicubic"
    (the default) meaning "trilinear". "trilinear" on an image is refused (use "bicubic").
    """
    if n_axes == 3:
        method = "trilinear" if method == "bicubic" else method
        if method not in VOLUME_UPSAMPLING:
            raise ValueError(f"upsampling={method!r} is not allowed for a volume; use one of "
                             f"{', '.join(map(repr, VOLUME_UPSAMPLING))} ('bicubic' means 'trilinear')")
        return method
    if method not in UPSAMPLING:
        hint = " ('trilinear' is for volumes (C, D, H, W))" if method == "trilinear" else ""
        raise ValueError(f"upsampling={method!r} is not allowed; use one of {', '.join(map(repr, UPSAMPLING))}{hint}")
    return method


def upsample(grid: np.ndarray, size: tuple[int, ...], method: str) -> np.ndarray:
    """(K, gy, gx) -> (K, H, W) by bicubic or nearest interpolation, like MATLAB's imresize.

    A volume's (K, gd, gy, gx) -> (K, D, H, W) by trilinear or nearest interpolation
    (:func:`resolve_upsampling`: "bicubic" means "trilinear" there).
    ``"none"`` returns the grid. Positions that are NaN stay NaN (nearest).
    """
    method = resolve_upsampling(method, len(size))
    if method == "none":
        return grid.astype(np.float32, copy=True)
    nan = np.isnan(grid)
    t = torch.from_numpy(np.nan_to_num(grid).astype(np.float32))[None]
    if method == "nearest":
        out = F.interpolate(t, size=tuple(size), mode="nearest-exact")[0]
    else:
        mode = "trilinear" if method == "trilinear" else "bicubic"
        out = F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)[0]
    maps = out.numpy()
    if nan.any():
        holes = F.interpolate(torch.from_numpy(nan.astype(np.float32))[None], size=tuple(size), mode="nearest-exact")
        maps[holes[0].numpy() > 0.5] = np.nan
    return maps


def upsample_maps(grid: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """(K, h, w) -> (K, H, W) by ``"bilinear"`` or any of :data:`UPSAMPLING`.

    ``"none"`` needs ``(h, w) == size``: every map must have the input's size.
    """
    if method not in MAP_UPSAMPLING:
        raise ValueError(f"upsampling={method!r} is not allowed; use one of {', '.join(map(repr, MAP_UPSAMPLING))}")
    size = (int(size[0]), int(size[1]))
    if grid.shape[-2:] == size:
        return grid.astype(np.float32, copy=True)
    if method == "none":
        raise ValueError(f"upsampling='none': the raw map is {grid.shape[-2:]}, the input {size}; choose 'bilinear'")
    if method == "bilinear":
        t = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None]
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0].numpy()
    return upsample(grid, size, method)

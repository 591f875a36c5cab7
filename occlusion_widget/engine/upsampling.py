"""Maps at the input size from a coarse grid: bicubic / nearest (the sweep's), bilinear (Grad-CAM's)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

UPSAMPLING = ("bicubic", "nearest", "none")
#: Upsampling methods for low-resolution maps of any method: the sweep's, plus "bilinear"
#: (what Grad-CAM implementations use; cv2 INTER_LINEAR = torch align_corners=False).
MAP_UPSAMPLING = ("bilinear",) + UPSAMPLING

__all__ = ["MAP_UPSAMPLING", "UPSAMPLING", "upsample", "upsample_maps"]


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

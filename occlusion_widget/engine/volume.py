"""3-D volumes (C, D, H, W) in the occlusion sweep, and how its maps relate to MONAI's.

A volume runs through the same code as an image: :class:`~.grid.MaskGrid` on three axes, the same
"auto" sizes (:func:`~.grid.resolve_sizes`), clipping, fills, coarse-to-fine order, ``positions=``,
progress and cancellation. ``grid`` is (K, gd, gy, gx), ``maps`` (K, D, H, W), ``boxes``
(gd, gy, gx, 6) ``[z0, y0, x0, z1, y1, x1)``. What volumes do not take (yet): ``strategy="incremental"``
(3-D incremental inference is future work; ``"auto"`` runs the full path), ``segments=``,
``mask_value="blur"`` / ``"inpaint"``, and "bicubic" upsampling, which means "trilinear" there.

MONAI's ``monai.visualize.OcclusionSensitivity(nn_module, mask_size=m, overlap=o, mode=v, activate=a)``
-------------------------------------------------------------------------------------------------
It slides full-size windows of ``m`` voxels (``monai.inferers.sliding_window_inference``) with the step
``s = int(m * (1 - o))`` per axis (at least 1; ``m`` itself where ``m`` equals the axis), starting at
0, s, 2s, ... and adding a last window flush with the far edge when the lattice misses it. With
``mode=v`` a float, each window is filled with ``v``; the network runs, ``activate`` is applied
(``True``: softmax, but *sigmoid when the input has one channel* -- MONAI tests the input's channels,
not the output's; ``False``: logits; a callable: itself), and every voxel receives the mean of the
occluded scores of the windows that cover it. So, where ``(N - m) % s == 0`` along every axis (the
last window is on the lattice), our sweep with ``mask_size=m, stride=s, mask_clipping=False,
mask_value=v`` has exactly MONAI's windows, and for every class

    MONAI's map[0, k] == base_scores[k] - result.pixel_mean()[k]

(:func:`monai_map` computes it; :func:`from_monai` the parameters). MONAI's default ``mode="gaussian"``
multiplies each window by ``1 - gaussian`` and weights the average by the Gaussian: a different
occluder than our ``mask_shape="gaussian"``, so it has no exact counterpart here.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

from .grid import resolve_pair

__all__ = ["check_volume_options", "from_monai", "monai_map"]


def check_volume_options(strategy: str, segments: object, mask_value: object) -> str:
    """The strategy a volume sweep uses ("full"), or a clear error for what volumes do not take."""
    if strategy == "incremental":
        raise ValueError("strategy='incremental' does not take volumes (C, D, H, W) yet (3-D incremental inference "
                         "is future work); use strategy='auto' or 'full'")
    if segments is not None:
        raise ValueError("segments= takes a label image (H, W); volumes (C, D, H, W) are occluded with boxes only")
    if isinstance(mask_value, str) and mask_value in ("blur", "inpaint"):
        raise ValueError(f"mask_value={mask_value!r} is for images and signals; a volume (C, D, H, W) takes "
                         "'auto', a number or one number per channel")
    return "full"


def from_monai(spatial_shape: Sequence[int], mask_size: int | Sequence[int] = 16, overlap: float = 0.6,
               mode: float = 0.0) -> dict:
    """The :func:`occlusion_sensitivity` keywords whose mask positions are MONAI's windows.

    Parameters
    ----------
    spatial_shape : (D, H, W) (or any number of axes)
        The input's spatial size.
    mask_size, overlap, mode
        As given to ``monai.visualize.OcclusionSensitivity`` (``mode`` a float: the fill).

    Returns
    -------
    dict
        ``mask_size``, ``stride`` (one int per axis), ``mask_clipping=False`` and ``mask_value``.

    Raises
    ------
    ValueError
        ``overlap`` outside [0, 1), a string ``mode``, or an axis where MONAI adds a last window
        off the lattice (``(N - m) % s != 0``): the positions would not coincide.
    """
    shape = tuple(int(n) for n in spatial_shape)
    if isinstance(overlap, bool) or not isinstance(overlap, Real) or not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap!r} is not allowed; MONAI takes 0 <= overlap < 1")
    if isinstance(mode, bool) or not isinstance(mode, Real):
        raise ValueError(f"mode={mode!r} has no exact counterpart; only a float fill (MONAI's mode=<float>) does")
    masks = resolve_pair(int(mask_size) if isinstance(mask_size, Integral) else tuple(mask_size), "mask_size",
                         shape, 0.2)
    strides = tuple(m if m == n else max(1, int(m * (1 - overlap))) for m, n in zip(masks, shape, strict=True))
    for axis, (n, m, s) in enumerate(zip(shape, masks, strides, strict=True)):
        if m > n or (n - m) % s:
            raise ValueError(f"axis {axis}: size {n}, mask {m}, step {s}: MONAI's last window starts at {n - m}, "
                             f"which is not a multiple of the step; choose sizes with (N - mask) % step == 0")
    return {"mask_size": masks, "stride": strides, "mask_clipping": False, "mask_value": float(mode)}


def monai_map(result: object) -> np.ndarray:
    """(K, *spatial): what MONAI's map holds for the result's targets: ``base_scores - pixel_mean()``.

    Valid for a complete sweep with :func:`from_monai`'s parameters (every voxel is covered).
    """
    base = np.asarray(result.base_scores, dtype=np.float32)  # type: ignore[attr-defined]
    mean = result.pixel_mean()  # type: ignore[attr-defined]
    return base.reshape(-1, *(1,) * (mean.ndim - 1)) - mean

"""What an occluded region becomes: a constant or blurred fill, a soft (Gaussian) window, or inpainting.

The occluded input is ``x * (1 - w) + fill * w``: ``w`` is the mask's window (1 inside a box or a segment,
0 outside; for ``mask_shape="gaussian"`` a smooth bump that is 1 at the mask's centre and falls to 0 at its
edge, as MONAI's ``OcclusionSensitivity(mode="gaussian")`` softens its masks), and ``fill`` the mask value
(each channel's mean, a number, a blurred copy) or, for ``mask_value="inpaint"``, the region inpainted from
its surroundings (scikit-image's biharmonic inpainting, computed for each mask position).
"""

from __future__ import annotations

import numpy as np
import torch

from .inputs import resolve_fill

__all__ = ["MASK_SHAPES", "Fill", "gaussian_window", "inpaint", "resolve_occlusion_fill"]

MASK_SHAPES = ("box", "gaussian")
#: The Gaussian window's sigma as a fraction of the mask size along each axis.
GAUSSIAN_SIGMA = 0.25
#: Pixels of known surroundings kept around a region when it is inpainted (the biharmonic
#: stencil reaches 2 pixels; more changes nothing).
INPAINT_MARGIN = 3


def gaussian_window(starts: torch.Tensor, sizes: tuple[int, ...], shape: tuple[int, ...]) -> torch.Tensor:
    """Soft mask weights (B, H, W) (or (B, D, H, W)) in [0, 1] for B full-size mask windows.

    Along each axis, ``g(t) = exp(-t^2 / (2 sigma^2))`` with ``t`` the distance of a pixel centre from
    the window's centre and ``sigma = GAUSSIAN_SIGMA * m`` (``m`` the mask size); the weight is
    ``(g - g_edge) / (1 - g_edge)`` clipped at 0, with ``g_edge = g(m / 2)``, so it is 1 at the centre,
    falls smoothly and reaches 0 at the window's edge (nothing outside the window changes). The N-D
    window is the product of the axes'. An axis of size 1 has weight 1.

    Parameters
    ----------
    starts : int tensor (B, N)
        The first pixel of each full-size window, ``(y0, x0)`` in 2-D (it may start outside the
        input: a clipped edge mask).
    sizes : N ints
        The mask size.
    shape : N ints
        The input's spatial size.
    """
    device = starts.device
    n_axes = len(shape)
    window = None
    for axis in range(n_axes):
        m = sizes[axis]
        pos = torch.arange(shape[axis], device=device, dtype=torch.float32)[None]   # (1, N)
        if m == 1:
            weight = (pos == starts[:, axis, None].float()).float()
        else:
            centre = starts[:, axis, None].float() + m / 2 - 0.5                      # (B, 1)
            sigma = GAUSSIAN_SIGMA * m
            g = torch.exp(-0.5 * ((pos - centre) / sigma) ** 2)
            edge = float(np.exp(-0.5 * (m / 2 / sigma) ** 2))
            weight = ((g - edge) / (1 - edge)).clamp(min=0)
        view = [weight.shape[0]] + [1] * n_axes
        view[axis + 1] = shape[axis]
        weight = weight.view(view)
        window = weight if window is None else window * weight
    assert window is not None, "a grid has at least one spatial axis"
    return window


def inpaint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` (C, H, W) with the pixels of ``mask`` (H, W) bool filled in from their surroundings.

    scikit-image's biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``), on a crop of the
    mask's bounding box plus :data:`INPAINT_MARGIN` pixels (the same values as on the whole image, far
    faster). Pixels outside ``mask`` are returned unchanged.
    """
    try:
        from skimage.restoration import inpaint_biharmonic
    except ImportError as exc:  # an optional dependency
        raise ImportError("mask_value='inpaint' needs scikit-image: pip install scikit-image") from exc
    out = np.array(image, dtype=np.float32, copy=True)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return out
    h, w = mask.shape
    y0, y1 = max(rows.min() - INPAINT_MARGIN, 0), min(rows.max() + 1 + INPAINT_MARGIN, h)
    x0, x1 = max(cols.min() - INPAINT_MARGIN, 0), min(cols.max() + 1 + INPAINT_MARGIN, w)
    sub_mask = mask[y0:y1, x0:x1]
    if sub_mask.all():  # nothing known around it (a mask covering the input): the mean of the input
        out[:, y0:y1, x0:x1] = out.reshape(out.shape[0], -1).mean(axis=1)[:, None, None]
        return out
    crop = np.moveaxis(out[:, y0:y1, x0:x1], 0, -1).astype(np.float64)
    filled = inpaint_biharmonic(crop, sub_mask, channel_axis=-1)
    region = np.moveaxis(filled, -1, 0).astype(np.float32)
    out[:, y0:y1, x0:x1] = np.where(sub_mask[None], region, out[:, y0:y1, x0:x1])
    return out


class Fill:
    """Makes occluded inputs: ``x * (1 - w) + fill * w`` for a batch of windows ``w``.

    Attributes
    ----------
    value : tensor (C, H, W) or None
        The fill of every position; None for inpainting (computed per position).
    reported : array (C,) or str
        What ``params.mask_value`` reports: the per-channel value, "blur" or "inpaint".
    """

    def __init__(self, value: torch.Tensor | None, reported: np.ndarray | str) -> None:
        self.value, self.reported = value, reported

    @property
    def per_position(self) -> bool:
        """True when the fill depends on the mask position (inpainting)."""
        return self.value is None

    def image(self, x: torch.Tensor, is_signal: bool) -> np.ndarray:
        """``result.fill`` (C, H, W): the fill at every pixel; for "inpaint" the input itself (the fill
        depends on the position: :meth:`OcclusionResult.most_important` recomputes it for its region)."""
        image = (x if self.value is None else self.value).cpu().numpy()
        return image[:, 0] if is_signal else image

    def occlude(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W): copies of ``x`` (C, H, W) occluded by ``weights`` (B, H, W), bool or float in [0, 1]."""
        if self.value is None:
            x_np = x.detach().cpu().numpy()
            fills = torch.from_numpy(np.stack([inpaint(x_np, w.cpu().numpy() > 0) for w in weights])).to(x)
        else:
            fills = self.value[None]
        if weights.dtype == torch.bool:
            return torch.where(weights[:, None], fills, x[None])
        w = weights[:, None].to(x.dtype)
        return x[None] * (1 - w) + fills * w


def resolve_occlusion_fill(mask_value: object, x: torch.Tensor, mask_size: tuple[int, int]) -> Fill:
    """:func:`resolve_fill` plus ``"inpaint"``: the :class:`Fill` of a sweep.

    Raises
    ------
    ValueError, TypeError
        As :func:`resolve_fill`, naming "inpaint" among the allowed values.
    """
    if isinstance(mask_value, str) and mask_value == "inpaint":
        if x.ndim == 4:
            raise ValueError("mask_value='inpaint' is for images and signals; a volume (C, D, H, W) takes 'auto', "
                             "a number or one number per channel")
        try:
            import skimage.restoration  # noqa: F401  (checked here, before any forward pass)
        except ImportError as exc:
            raise ImportError("mask_value='inpaint' needs scikit-image: pip install scikit-image") from exc
        return Fill(None, "inpaint")
    try:
        value, reported = resolve_fill(mask_value, x, mask_size)
    except (ValueError, TypeError) as exc:
        text = str(exc).replace("'auto', 'blur',", "'auto', 'blur', 'inpaint',")
        raise type(exc)(text) from None
    return Fill(value, reported)


def occlude_boxes(x: torch.Tensor, fill: torch.Tensor, boxes: torch.Tensor, rows: torch.Tensor,
                  cols: torch.Tensor) -> torch.Tensor:
    """A batch (B, C, H, W): copies of ``x`` with each box replaced by ``fill``."""
    y0, x0, y1, x1 = (boxes[:, i, None] for i in range(4))
    inside = ((rows >= y0) & (rows < y1))[:, :, None] & ((cols >= x0) & (cols < x1))[:, None, :]
    return torch.where(inside[:, None], fill, x)

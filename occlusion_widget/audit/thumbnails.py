"""Gallery thumbnails: a map composited over its image with a matplotlib colormap, as a small JPEG.

Each thumbnail's colour scale is its own map's largest |value| (as each class tab in the main widget), so
a weak map still shows its shape; the overlay fades out where the map is 0, so the image shows there.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _fit(size: tuple[int, int], longest: int) -> tuple[int, int]:
    h, w = size
    scale = longest / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _colour(smap: np.ndarray, signed: bool, cmap: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) in [0, 1] and strength (H, W) in [0, 1] of a map, scaled by its own largest |value|."""
    import matplotlib

    m = np.nan_to_num(np.asarray(smap, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    scale = float(np.abs(m).max()) or 1.0
    v = m / scale
    if signed:
        rgb, strength = matplotlib.colormaps[cmap]((v + 1) / 2)[..., :3], np.abs(v)
    else:
        v = np.clip(v, 0, 1)
        rgb, strength = matplotlib.colormaps[cmap](v)[..., :3], v
    return rgb, strength


def composite(image: np.ndarray | None, smap: np.ndarray, *, signed: bool, cmap: str, opacity: float,
              size: int) -> np.ndarray:
    """A thumbnail: the map over the image, longest side ``size``.

    Parameters
    ----------
    image : (H, W, 3) uint8 or None
        None: the coloured map alone (class means).
    smap : (H, W) float map; NaN counts as 0.
    signed : diverging scale around 0 (occlusion) or sequential from 0 (gradient maps).
    opacity : the overlay's opacity where the map is strongest; it fades to 0 where the map is 0.

    Returns
    -------
    (h, w, 3) uint8
    """
    wh = _fit(smap.shape, size)
    small = np.asarray(Image.fromarray(np.asarray(smap, dtype=np.float32)).resize(wh, Image.Resampling.BILINEAR))
    rgb, strength = _colour(small, signed, cmap)
    if image is None:
        out = rgb
    else:
        base = np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)).resize(wh, Image.Resampling.LANCZOS),
                          dtype=np.float64) / 255
        alpha = (opacity * strength)[..., None]
        out = (1 - alpha) * base + alpha * rgb
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)  # 96 px: 3-5 kB, a PNG 5x that
    return buf.getvalue()

"""Per-map numbers of an audit row: peak, concentration, pointing game, evidence inside the object."""

from __future__ import annotations

import numpy as np

#: ``concentration`` is the share of positive evidence in this top fraction of the area.
TOP_AREA = 0.10


def peak(smap: np.ndarray) -> tuple[int, int]:
    """(y, x) of the map's largest value (the first one in raster order on ties).

    Parameters
    ----------
    smap : (H, W) float array
    """
    iy, ix = np.unravel_index(int(np.argmax(smap)), smap.shape)
    return int(iy), int(ix)


def concentration(smap: np.ndarray, top: float = TOP_AREA) -> float:
    """Share of the positive evidence (sum of max(map, 0)) held by the top ``top`` of the pixels.

    1.0: all the support sits in 10% of the image; 0.1: it is spread evenly. NaN when the map
    has no positive value (nothing supports the target, so no share is defined).

    Parameters
    ----------
    smap : (H, W) float array
    top : float in (0, 1]
    """
    pos = np.clip(np.asarray(smap, dtype=np.float64).ravel(), 0, None)
    total = pos.sum()
    if total <= 0:
        return float("nan")
    k = max(1, round(top * pos.size))
    return float(np.partition(pos, pos.size - k)[-k:].sum() / total)


def pointing_hit(smap: np.ndarray, mask: np.ndarray) -> bool:
    """Pointing game (Zhang et al. 2016): is the map's peak inside the object mask (H, W) bool?"""
    y, x = peak(smap)
    return bool(mask[y, x])


def energy_inside(smap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive evidence inside the object mask (H, W); NaN without positive evidence."""
    pos = np.clip(np.asarray(smap, dtype=np.float64), 0, None)
    total = pos.sum()
    if total <= 0:
        return float("nan")
    return float(pos[mask].sum() / total)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps of the same shape; NaN where either is constant."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps: shapes {a.shape} and {b.shape} differ; compare audits made at the same input size")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")

"""Static figures of a result (PNG), for the CLI and for notebooks viewed without a kernel.

Importing this module registers :func:`figure_png` as the figure every result shows in
Jupyter (``_repr_png_``, see :func:`occlusion_widget.engine.result.set_png_renderer`); the
package's ``__init__`` imports it, so the engine never imports this module.
"""

from __future__ import annotations

import io
from numbers import Real
from os import PathLike

import numpy as np

from .engine.result import MapResult, set_png_renderer
from .methods.registry import METHODS

#: Captions of the colour bar by method kind; other kinds read "<title> attribution".
_PERTURBATION_CAPTION = "score drop when occluded"


def check_percentile(percentile: object) -> float | None:
    """``percentile`` as a float in (0, 100], or None; a clear error otherwise."""
    if percentile is None:
        return None
    if not isinstance(percentile, Real) or isinstance(percentile, bool) or not 0 < float(percentile) <= 100:
        raise ValueError(f"percentile={percentile!r} is not allowed; use None (the full range) or a number in "
                         "(0, 100], e.g. 99 to saturate the colours at the 99th percentile")
    return float(percentile)


def colour_limit(values: np.ndarray, signed: bool, percentile: float | None = None) -> float:
    """The colour scale's upper limit for a map (its lower limit is ``-limit`` if signed, else 0).

    Parameters
    ----------
    values : float array, any shape
        The map; NaN (not computed yet) and infinities are ignored.
    signed : bool
        True: a diverging scale centred on 0, the limit taken over ``|values|``;
        False: a sequential scale from 0, the limit taken over ``values``.
    percentile : float in (0, 100], optional
        Saturate at this percentile instead of the maximum (Captum's ``outlier_perc``
        is ``100 - percentile``), so that one extreme value does not wash out the
        rest of the map. None or 100: the maximum.

    Returns
    -------
    float
        A positive limit; 1.0 when the map has no positive value to scale by
        (all zero, all NaN, or non-positive for a sequential scale).
    """
    p = check_percentile(percentile)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if signed:
        v = np.abs(v)
    if v.size == 0:
        return 1.0
    limit = float(np.max(v)) if p is None or p == 100 else float(np.percentile(v, p))
    return limit if limit > 0 else 1.0


def symmetric_limit(maps: np.ndarray) -> float:
    """The half-range of a diverging scale centred on 0: ``colour_limit(maps, signed=True)``."""
    return colour_limit(maps, True)


def is_signed(result: MapResult) -> bool:
    """Whether ``result``'s maps get a diverging scale: the registry's ``signed`` for a known
    method; for an unknown one (a user's own result), whether the maps hold a negative value."""
    spec = METHODS.get(getattr(result, "method", ""))
    if spec is not None:
        return spec.signed
    maps = np.asarray(result.maps, dtype=np.float64)
    return bool(np.isfinite(maps).any() and np.nanmin(maps) < 0)


def caption(result: MapResult) -> str:
    """The colour bar's label: what the map's values mean, from the registry's ``kind`` and ``title``."""
    spec = METHODS.get(getattr(result, "method", ""))
    if spec is None:
        return f"{str(result.method).replace('_', '-')} attribution"
    return _PERTURBATION_CAPTION if spec.kind == "perturbation" else f"{spec.title} attribution"


def _ordinal(p: float) -> str:
    text = f"{p:g}"
    if not text.isdigit():
        return f"{text}th"
    n = int(text)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def figure(result: MapResult, cmap: str = "RdBu_r", alpha: float = 0.6, max_columns: int = 3,
           sequential_cmap: str = "inferno", percentile: float | None = None):
    """A matplotlib Figure: one panel per target, the map over the input.

    Signed maps (the registry's ``signed``: occlusion, Integrated Gradients) use
    ``cmap`` centred on 0: red where the region supports the class, blue where it
    works against it. Non-negative maps (Grad-CAM, saliency, SmoothGrad) use
    ``sequential_cmap`` from 0. Each panel has its own scale, like MATLAB's
    ``imagesc``; titles give class name and base score.

    Parameters
    ----------
    result : MapResult
        Any method's result (K maps (H, W), or (L,) for a 1-D signal).
    percentile : float in (0, 100], optional
        Saturate each panel's colours at this percentile of ``|map|`` (signed) or
        of the map (sequential), see :func:`colour_limit`; the colour bar says so.
        None: the full range.
    """
    from matplotlib.figure import Figure

    percentile = check_percentile(percentile)
    k = len(result.targets)
    columns = min(k, max_columns)
    rows = -(-k // columns)
    fig = Figure(figsize=(4.2 * columns, 4.0 * rows if not result.is_signal else 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    score_name = "p" if result.params.output == "probability" else "score"
    signed = is_signed(result)
    clipped = percentile is not None and percentile < 100
    clip_note = f"\n(clipped at the {_ordinal(percentile)} percentile)" if clipped and percentile is not None else ""
    bar_label = caption(result) + clip_note
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_axis_off()
            continue
        limit = colour_limit(result.maps[i], signed, percentile)
        panel_cmap, vmin = (cmap, -limit) if signed else (sequential_cmap, 0.0)
        label = result.labels[i] if result.labels else f"class {int(result.targets[i])}"
        # Labels are plain text: "$100 bill" must not start matplotlib's mathtext.
        ax.set_title(f"{label} ({score_name}={result.base_scores[i]:.2f})", fontsize=11, parse_math=False)
        if result.is_signal:
            image = ax.imshow(result.maps[i][None], cmap=panel_cmap, vmin=vmin, vmax=limit, aspect="auto",
                              extent=(0, result.maps.shape[-1], -1, 1), alpha=0.8)
            for channel in result.image:
                span = np.ptp(channel) or 1.0
                ax.plot(np.arange(channel.size) + 0.5, (channel - channel.min()) / span * 1.6 - 0.8, color="k", lw=0.8)
            ax.set_yticks([])
        else:
            ax.imshow(_as_rgb(result.image))
            extent = (-0.5, result.image.shape[2] - 0.5, result.image.shape[1] - 0.5, -0.5)
            image = ax.imshow(result.maps[i], cmap=panel_cmap, vmin=vmin, vmax=limit, alpha=alpha,
                              extent=extent, interpolation="nearest" if result.params.upsampling != "bicubic" else "bilinear")
            ax.set_axis_off()
        fig.colorbar(image, ax=ax, shrink=0.8, label=bar_label, extend=("both" if signed else "max") if clipped else "neither")
    if not result.complete:
        computed = getattr(result, "computed", None)
        fig.suptitle(f"incomplete: {int(computed.sum())} of {computed.size} positions" if computed is not None
                     else "incomplete: cancelled before the map was finished")
    return fig


def figure_png(result: MapResult, dpi: int = 80, **kwargs) -> bytes:
    """PNG bytes of :func:`figure` (keyword arguments go to it)."""
    buf = io.BytesIO()
    figure(result, **kwargs).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(result: MapResult, path: str | PathLike, dpi: int = 100, **kwargs) -> None:
    """Write :func:`figure` to ``path`` (the format from its extension)."""
    figure(result, **kwargs).savefig(path, dpi=dpi)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float -> (H, W, 3) for display; 1 channel is shown grey, values clipped to [0, 1]."""
    rgb = np.moveaxis(image, 0, -1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    elif rgb.shape[-1] != 3:
        rgb = np.repeat(rgb.mean(axis=-1, keepdims=True), 3, axis=-1)
    return np.clip(rgb, 0.0, 1.0)


# Results show as this figure in Jupyter once the package is imported.
set_png_renderer(figure_png)

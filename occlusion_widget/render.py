"""Static figures of a result (PNG), for the CLI and for notebooks viewed without a kernel."""

from __future__ import annotations

import io
from os import PathLike

import numpy as np

from .engine.result import OcclusionResult
from .methods import AttributionResult


def symmetric_limit(maps: np.ndarray) -> float:
    """The colour scale's half-range: diverging maps are centred on 0."""
    finite = np.abs(maps[np.isfinite(maps)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def figure(result: OcclusionResult | AttributionResult, cmap: str = "RdBu_r", alpha: float = 0.6, max_columns: int = 3,
           sequential_cmap: str = "inferno"):
    """A matplotlib Figure: one panel per target, the map over the input.

    Red is where the region supports the class (occluding it lowers the score),
    blue where it works against it (``cmap``, centred on 0). Non-negative
    gradient maps use ``sequential_cmap`` from 0. Titles give class name and
    base score.
    """
    from matplotlib.figure import Figure

    k = len(result.targets)
    columns = min(k, max_columns)
    rows = -(-k // columns)
    fig = Figure(figsize=(4.2 * columns, 4.0 * rows if not result.is_signal else 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    score_name = "p" if result.params.output == "probability" else "score"
    method = result.method
    bar_label = "score drop when occluded" if method == "occlusion" else f"{method.replace('_', '-')} attribution"
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_axis_off()
            continue
        limit = symmetric_limit(result.maps[i])  # each panel on its own scale, like MATLAB's imagesc
        # Signed maps get a diverging scale centred on 0; non-negative ones (gradients) a sequential one.
        signed = method == "occlusion" or np.nanmin(result.maps[i]) < 0
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
        fig.colorbar(image, ax=ax, shrink=0.8, label=bar_label)
    if not result.complete:
        fig.suptitle(f"incomplete: {int(result.computed.sum())} of {result.computed.size} positions")
    return fig


def figure_png(result: OcclusionResult, dpi: int = 80, **kwargs) -> bytes:
    """PNG bytes of :func:`figure`."""
    buf = io.BytesIO()
    figure(result, **kwargs).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(result: OcclusionResult, path: str | PathLike, dpi: int = 100, **kwargs) -> None:
    figure(result, **kwargs).savefig(path, dpi=dpi)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float -> (H, W, 3) for display; 1 channel is shown grey, values clipped to [0, 1]."""
    rgb = np.moveaxis(image, 0, -1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    elif rgb.shape[-1] != 3:
        rgb = np.repeat(rgb.mean(axis=-1, keepdims=True), 3, axis=-1)
    return np.clip(rgb, 0.0, 1.0)

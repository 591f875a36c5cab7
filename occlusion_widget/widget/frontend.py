"""What the browser gets: the widget's code and styles, colour tables, and results as synced state.

Code
----
The browser code lives as small ES modules in ``js/`` (tested one by one with ``node --test``) and is
bundled by esbuild (``npm --prefix js run build``; pip runs it through hatch-jupyter-builder) into
``occlusion_widget/static/``: ``widget.js`` (the widget's ``_esm``), ``widget.css`` (its ``_css``),
``standalone.js`` (the standalone report's model shim) and ``audit/``. :func:`bundle_file` finds them.

State
-----
:func:`result_state` is the one place a result (:class:`OcclusionResult` or a
gradient method's :class:`AttributionResult`) becomes synced state (float32
bytes, shapes, ranges, class names); :func:`comparison_state` and
:func:`layer_state` do the same for the compare and layer views;
:func:`to_png` encodes images.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine import MapResult, OcclusionResult
from ..methods.registry import METHODS, get_method

if TYPE_CHECKING:
    from .plan import CompareState, LayerState

#: Where esbuild writes the browser bundle (build output, not in git).
STATIC = Path(__file__).resolve().parents[1] / "static"

#: Diverging colormaps offered in the widget for signed maps (occlusion, Integrated Gradients), matplotlib names.
COLORMAPS = ("RdBu_r", "coolwarm", "bwr", "seismic", "PiYG")
#: Sequential colormaps for non-negative maps (gradient methods) and layer activations.
SEQUENTIAL_COLORMAPS = ("inferno", "magma", "viridis", "cividis", "Greys_r")



def bundle_file(name: str) -> Path:
    """A file of the esbuild bundle in ``occlusion_widget/static/`` (``widget.js``, ``widget.css``, ...).

    Raises FileNotFoundError naming the build command when a source checkout has not been built.
    """
    path = STATIC / name
    if not path.is_file():
        raise FileNotFoundError(
            f"occlusion_widget: the browser bundle {path} is missing; build it with `npm --prefix js ci && "
            "npm --prefix js run build` (Node 20), or reinstall with `pip install -e .`, which runs that build"
        )
    return path


def colormap_tables(names: tuple[str, ...] = COLORMAPS, n: int = 256) -> dict[str, list[int]]:
    """``{name: [r0, g0, b0, r1, ...]}``: ``n`` RGB entries (0-255) sampled from matplotlib.

    The browser colour-maps the float data itself with these lookup tables,
    so opacity or colormap changes never call the kernel.
    """
    import matplotlib

    tables = {}
    for name in names:
        rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, n))
        tables[name] = (rgba[:, :3] * 255).round().astype(np.uint8).ravel().tolist()
    return tables


# --- serialisation: the one place results become synced state ------------------------------


def to_png(image: np.ndarray) -> bytes:
    """(C, H, W) float in [0, 1] -> PNG bytes (1 channel grey, 3 RGB, others their mean)."""
    from PIL import Image

    c = image.shape[0]
    pixels = image if c in (1, 3) else image.mean(axis=0, keepdims=True)
    array = (np.clip(np.moveaxis(pixels, 0, -1), 0.0, 1.0) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _range(m: np.ndarray) -> list[float]:
    finite = m[np.isfinite(m)]
    return [float(finite.min()), float(finite.max())] if finite.size else [0.0, 0.0]


def is_signed(result: MapResult) -> bool:
    """Whether ``result``'s maps get a diverging scale around 0: the method's ``signed`` in the
    registry (occlusion, Integrated Gradients); a result of an unregistered method: any value < 0.
    As in :func:`occlusion_widget.render.figure`."""
    method = getattr(result, "method", None)
    spec = METHODS.get(method) if isinstance(method, str) else None
    if spec is not None:
        return spec.signed
    return bool(np.nanmin(result.maps) < 0) if np.isfinite(result.maps).any() else False


def _jsonable(value: Any) -> Any:
    """A resolved parameter as JSON: tuples and arrays as lists, numpy scalars as numbers, callables by name."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return getattr(value, "__name__", str(value))


def resolved_params(result: MapResult) -> dict[str, Any]:
    """What the method's parameters resolved to ("auto" replaced by numbers), its ``method`` and the
    raw map's ``grid`` shape: every field of ``result.params``, JSON-able (the caption reads them)."""
    params = result.params
    is_instance = dataclasses.is_dataclass(params) and not isinstance(params, type)
    fields = dataclasses.asdict(params) if is_instance else dict(vars(params))
    state = {name: _jsonable(value) for name, value in fields.items()}
    state.update(method=getattr(result, "method", "occlusion"), grid=list(result.grid.shape[1:]))
    return state


def _worst(result: MapResult) -> list[list[int]]:
    """Per target, the engine's :meth:`~occlusion_widget.engine.MapResult.worst_position` (y, x):
    occlusion's mask centre that lowers the class most, another method's map peak; [] while unknown."""
    if isinstance(result, OcclusionResult) and not result.computed.any():
        return []
    try:
        return [list(map(int, result.worst_position(k))) for k in range(len(result.targets))]
    except ValueError:  # a map without a finite value yet
        return []


def result_state(result: MapResult, version: int) -> dict[str, Any]:
    """The synced traits for one (partial or final) result.

    ``map_data`` carries the maps as raw float32 little-endian bytes in C order
    (NaN where nothing is known yet), their shape and per-class value range,
    the method and whether the scale is ``signed``; ``worst`` is, for
    occlusion, the centre (y, x) of the mask position that lowers each class
    most (a mask centred there covers exactly the sweep's box), for the
    other methods the map's peak. ``classes`` holds id, name and the
    unoccluded score (in ``resolved_params.output``) per map.
    """
    maps = np.ascontiguousarray(result.maps, dtype="<f4")
    n = len(result.targets)
    if isinstance(result, OcclusionResult):
        computed = [int(result.computed.sum()), int(result.computed.size)]
    else:
        computed = [n, n] if result.complete else [0, n]
    return {
        "map_data": {
            "data": maps.tobytes(), "shape": list(maps.shape), "range": [_range(m) for m in maps],
            "worst": _worst(result), "complete": bool(result.complete), "method": getattr(result, "method", "occlusion"),
            "signed": is_signed(result), "version": version, "computed": computed,
        },
        "classes": [
            {
                "id": int(c),
                "name": result.labels[i] if result.labels else f"class {int(c)}",
                "score": float(result.base_scores[i]),
            }
            for i, c in enumerate(result.targets)
        ],
        "resolved_params": resolved_params(result),
    }


def _overall(statuses: list[str]) -> str:
    for status in ("running", "pending", "stopped", "error"):
        if status in statuses:
            return "running" if status == "pending" else status
    return "done"


def comparison_state(state: CompareState) -> dict[str, Any]:
    """The compare view: per method, the current class's (H, W) map as float32 bytes, its
    range, whether its scale is signed, and the deletion / insertion AUCs (None while pending)."""
    panels = []
    for p in state.panels:
        spec = get_method(p.method)
        panel: dict[str, Any] = {"method": p.method, "title": spec.title, "status": p.status,
                                 "curve_status": p.curve_status, "error": p.error, "data": b"", "shape": [0, 0],
                                 "range": [0.0, 0.0], "signed": spec.signed, "deletion_auc": None, "insertion_auc": None}
        if p.result is not None and state.target is not None and state.target in p.result.targets:
            m = np.ascontiguousarray(p.result.maps[int(np.flatnonzero(p.result.targets == state.target)[0])], dtype="<f4")
            panel.update(data=m.tobytes(), shape=list(m.shape), range=_range(m), signed=is_signed(p.result),
                         upsampling=p.result.params.upsampling)
        if p.curve is not None:
            panel.update(deletion_auc=float(p.curve.deletion_auc), insertion_auc=float(p.curve.insertion_auc),
                         steps=len(p.curve.fractions) - 1)
        panels.append(panel)
    statuses = [p.status for p in state.panels] + [p.curve_status for p in state.panels]
    return {"status": _overall(statuses), "done": statuses.count("done"), "total": len(statuses),
            "target": state.target, "label": state.label, "panels": panels}


def layer_state(state: LayerState) -> dict[str, Any]:
    """The layer view: the layers offered, and the chosen layer's strongest channels as
    float32 bytes (n, h, w) with their channel indices and strengths."""
    out: dict[str, Any] = {"status": state.status, "error": state.error, "layers": [], "default": None}
    if state.layers is not None:
        out["layers"] = [{"name": n, "shape": list(shape), "type": kind} for n, shape, kind in state.layers.layers]
        out["default"] = state.layers.default
    a = state.activations
    if a is not None:
        acts = np.ascontiguousarray(a.activations, dtype="<f4")
        out.update(layer=a.layer, shape=list(acts.shape), n_channels=int(a.n_channels), channels=a.channels.tolist(),
                   strength=[float(v) for v in a.strength], strength_by=a.strength_by, data=acts.tobytes())
    return out

"""A standalone interactive report: one self-contained HTML file of a widget's maps.

:func:`write_report` inlines the widget's ES module (the esbuild bundle ``static/widget.js``),
its CSS, ``js/standalone.js`` (a small model shim that plays the kernel's part from saved
state) and the data. The page makes no request to any server: it opens from a file, offline.

What works without a kernel: class tabs, the methods that were computed (the shim swaps
``map_data`` when the method changes), the compare panels with their AUCs as saved, hover
readout, opacity, colormaps and colour bar, and the mask preview, snapped to the sweep's
mask positions (the engine's per-position top-5 scores). Parameter controls are disabled.

Encoding
--------
Binary traits travel as base64 of zlib-deflated bytes (``{"$bytes": ...}``); float32 maps
(``map_data``, compare panels, layer channels) are first quantised to uint16 over their
finite range (``{"$f32q": ..., "lo", "hi", "n"}``; 65535 = NaN), i.e. to 1/65534 of the
range, below what the colour table (256 entries) or the readout (3 digits) shows.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import zlib
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.result import OcclusionResult
from .frontend import bundle_file, result_state

#: Synced traits the report leaves out: ipywidgets' layout plumbing.
_SKIP = {"layout", "tabbable", "tooltip"}
#: (trait, path) of the float32 payloads that are quantised.
_FLOAT_FIELDS = ("map_data", "comparison_data", "layer_data")
_NAN_CODE = 65535


def _deflate(raw: bytes | bytearray | memoryview) -> dict:
    return {"$bytes": base64.b64encode(zlib.compress(bytes(raw), 9)).decode("ascii")}


def _quantise(raw: bytes | bytearray | memoryview) -> dict:
    """float32 LE bytes -> uint16 codes over the finite range, deflated (see the module docstring)."""
    values = np.frombuffer(bytes(raw), dtype="<f4")
    finite = np.isfinite(values)
    lo = float(values[finite].min()) if finite.any() else 0.0
    hi = float(values[finite].max()) if finite.any() else 0.0
    scale = (hi - lo) / (_NAN_CODE - 1) if hi > lo else 1.0
    codes = np.full(values.shape, _NAN_CODE, dtype="<u2")
    codes[finite] = np.round((values[finite] - lo) / scale).astype("<u2")
    return {"$f32q": base64.b64encode(zlib.compress(codes.tobytes(), 9)).decode("ascii"), "lo": lo, "hi": hi,
            "n": int(values.size)}


def _encode(value: Any, floats: bool = False) -> Any:
    """JSON-ready state: bytes deflated (or quantised when ``floats``), numpy scalars as numbers."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _quantise(value) if floats and len(value) % 4 == 0 and len(value) else _deflate(value)
    if isinstance(value, dict):
        return {str(k): _encode(v, floats) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, floats) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _synced_state(widget: Any) -> dict:
    names = [n for n in widget.trait_names(sync=True) if not n.startswith("_") and n not in _SKIP]
    return {n: _encode(getattr(widget, n), floats=n in _FLOAT_FIELDS) for n in sorted(names)}


def _method_states(widget: Any) -> dict[str, dict]:
    """Per computed method: the ``map_data``, ``classes`` and ``resolved_params`` the kernel would send."""
    computed = widget.computed_results() if hasattr(widget, "computed_results") else {}
    if not computed and widget.result is not None and widget.result.complete:
        computed = {widget.method: widget.result}
    out = {}
    for i, (method, result) in enumerate(computed.items()):
        state = result_state(result, 1_000_000 + i)  # versions the live widget never used
        out[method] = {"map_data": _encode(state["map_data"], floats=True), "classes": _encode(state["classes"]),
                       "resolved_params": _encode(state["resolved_params"])}
    return out


def preview_table(result: OcclusionResult, label: Any) -> dict | None:
    """What the shim needs to answer preview requests: per mask position (gy, gx) its box
    ``[y0, x0, y1, x1)``, the k best outputs on the occluded input and the targets' occluded
    scores; the unoccluded top-k; names of every class that appears. None without top-k fields.
    """
    if not isinstance(result, OcclusionResult) or result.top_ids is None or result.is_signal:
        return None
    base_top_ids, base_top_scores = result.base_top_ids, result.base_top_scores
    assert base_top_ids is not None and base_top_scores is not None, "the top-k fields come together"
    top_ids = np.asarray(result.top_ids, dtype=np.int64)
    gy, gx, k = top_ids.shape
    base = np.asarray(result.base_scores, dtype=np.float64)
    occluded = base[:, None, None] - np.asarray(result.grid, dtype=np.float64)  # grid = base - occluded
    ids = (
        {int(i) for i in np.unique(top_ids) if i >= 0}
        | {int(i) for i in base_top_ids}
        | {int(t) for t in result.targets}
    )
    return {
        "grid": [gy, gx], "k": k, "output": result.params.output,
        "boxes": np.asarray(result.boxes, dtype=np.int64).reshape(-1).tolist(),
        "top_ids": top_ids.reshape(-1).tolist(),
        "top_scores": [float(f"{v:.7g}") for v in np.asarray(result.top_scores, dtype=np.float64).reshape(-1)],
        "base": [{"id": int(i), "score": float(s)} for i, s in zip(base_top_ids, base_top_scores, strict=True)],
        "targets": [{"id": int(t), "base": float(base[j]),
                     "occluded": [float(f"{v:.7g}") for v in occluded[j].reshape(-1)]} for j, t in enumerate(result.targets)],
        "names": {str(i): label(i) for i in sorted(ids)},
    }


def _json_script(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e")


def report_data(widget: Any) -> dict:
    """Everything the page needs: the synced state, the per-method maps, the preview table."""
    if widget.result is None or not widget.result.complete:
        widget.wait()
    result = widget.result
    if result is None or not result.complete:
        raise RuntimeError(f"no finished maps to write: {widget.error or 'nothing was computed'}")
    methods = _method_states(widget)
    state = _synced_state(widget)
    for name in methods.get(widget.method, {}):  # the shim takes the current method's maps from `methods`
        state.pop(name, None)
    computed = widget.computed_results() if hasattr(widget, "computed_results") else {}
    # The preview snaps to a sweep's mask positions: the first perturbation result computed.
    occlusion = next((r for r in (*computed.values(), result) if isinstance(r, OcclusionResult)), None)
    layer = widget.layer
    label = (lambda i: f"{layer}[{i}]") if layer else widget.model.label
    table = preview_table(occlusion, label) if occlusion is not None else None
    return {"state": state, "methods": methods, "preview": table, "esm": bundle_file("widget.js").read_text("utf-8"),
            "css": bundle_file("widget.css").read_text("utf-8")}


def write_report(widget: Any, path: str | PathLike) -> Path:
    """Write ``widget``'s maps as ONE self-contained interactive HTML file.

    Waits for the background work first. Works offline: code, styles and
    data are inlined (see the module docstring for what stays interactive).

    Parameters
    ----------
    widget : OcclusionWidget
        The widget, with finished maps for its current settings.
    path : str or PathLike
        Where to write, e.g. ``"report.html"``; parent folders must exist.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"path={str(path)!r}: the report is an HTML file; use a name ending in .html")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path={str(path)!r}: the folder {str(path.parent)!r} does not exist")
    data = report_data(widget)
    shim = bundle_file("standalone.js").read_text("utf-8")
    title = f"{widget.model_name or 'model'}: {', '.join(c['name'] for c in widget.classes)}"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = _PAGE.format(
        title=html.escape(title), css=data.pop("css").replace("</", "<\\/"), when=html.escape(when),
        data=_json_script(data), shim=shim.replace("</script", "<\\/script"),
    )
    path.write_text(page, "utf-8")
    return path


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px; color: #222; }}
.ow-report-note {{ color: #666; font-size: 12px; margin: 0 0 8px; }}
</style>
<style>{css}</style>
</head>
<body>
<p class="ow-report-note">occlusion-widget report, saved {when}: {title}. Runs offline, without a kernel.</p>
<div id="ow-report"></div>
<script type="application/json" id="ow-data">{data}</script>
<script type="module">
{shim}
boot(document.getElementById("ow-data"), document.getElementById("ow-report"));
</script>
</body>
</html>
"""

__all__ = ["preview_table", "report_data", "write_report"]

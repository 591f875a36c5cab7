"""What the browser gets: the widget's code and styles, colour tables, and results as synced state.

Code
----
The browser code is assembled from the small ES modules in ``js/``.

anywidget loads ``_esm`` as ONE module from a string (a blob URL), so relative
imports between files cannot be resolved in the browser. The sources stay
separate modules (so ``node --test`` can test the pure helpers one by one) and
:func:`build_esm` joins them into one module:

* the files are concatenated in :data:`MODULES` order (dependencies first,
  ``widget.js`` with its ``export default`` last);
* every local import line, ``import {...} from "./x.js";``, is dropped.

Rules the sources follow for this to work: local imports are single-line and
named (no default or namespace imports of local files), and no two modules
define the same top-level name. :func:`build_esm` checks what it can.

In a wheel the files are installed as ``occlusion_widget/static/`` (see
``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml); in an
editable install that folder does not exist and the repository's ``js/``
folder is used.

State
-----
:func:`result_state` is the one place a result (:class:`OcclusionResult` or a
gradient method's :class:`AttributionResult`) becomes synced state (float32
bytes, shapes, ranges, class names); :func:`comparison_state` and
:func:`layer_state` do the same for the compare and layer views;
:func:`to_png` encodes images.
"""

from __future__ import annotations

import io
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.result import OcclusionResult
from ..methods import AttributionResult
from ..methods.compare import TITLES

if TYPE_CHECKING:
    from .plan import CompareState, LayerState

#: Browser modules, dependencies first; the last one holds ``export default``.
MODULES = ("throttle.js", "decode.js", "colormap.js", "geometry.js", "methods.js", "ui.js", "paint.js", "controls.js",
           "compare.js", "layers.js", "widget.js")
CSS = "widget.css"

#: Diverging colormaps offered in the widget for signed maps (occlusion), matplotlib names.
COLORMAPS = ("RdBu_r", "coolwarm", "bwr", "seismic", "PiYG")
#: Sequential colormaps for non-negative maps (gradient methods) and layer activations.
SEQUENTIAL_COLORMAPS = ("inferno", "magma", "viridis", "cividis", "Greys_r")

_LOCAL_IMPORT = re.compile(r"""^[ \t]*import[ \t]*\{[^}\n]*\}[ \t]*from[ \t]*["']\./[\w.-]+\.js["'][ \t]*;?[ \t]*$""", re.MULTILINE)
_ANY_LOCAL_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*["']\.{1,2}/""")
_TOP_LEVEL_NAME = re.compile(r"^(?:export\s+)?(?:async\s+)?(?:function\*?|class|const|let|var)\s+([A-Za-z_$][\w$]*)", re.MULTILINE)


def static_dir() -> Path:
    """The folder holding the browser files: the package's ``static/`` or the repo's ``js/``."""
    packaged = resources.files("occlusion_widget") / "static"
    if packaged.is_dir() and (packaged / "widget.js").is_file():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parents[2] / "js"
    if (repo / "widget.js").is_file():
        return repo
    raise FileNotFoundError(
        "occlusion_widget: the browser files are missing (neither occlusion_widget/static/ nor js/ "
        "holds widget.js); reinstall the package"
    )


def build_esm(directory: Path | None = None) -> str:
    """One ES module: the files of :data:`MODULES` joined, local imports removed."""
    directory = directory or static_dir()
    parts, seen = [], {}
    for name in MODULES:
        source = (directory / name).read_text("utf-8")
        stripped = _LOCAL_IMPORT.sub("", source)
        leftover = _ANY_LOCAL_IMPORT.search(stripped)
        if leftover:
            line = stripped[: leftover.end()].rsplit("\n", 1)[-1]
            raise ValueError(f"js/{name}: local imports must be single-line named imports, got {line.strip()!r}")
        for top in _TOP_LEVEL_NAME.findall(stripped):
            if top in seen:
                raise ValueError(f"js/{name}: {top!r} is already defined in js/{seen[top]}; top-level names must be unique")
            seen[top] = name
        parts.append(f"// ---- {name} ----\n{stripped.strip()}\n")
    return "\n".join(parts)


def load_css(directory: Path | None = None) -> str:
    return ((directory or static_dir()) / CSS).read_text("utf-8")


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


def is_signed(result: OcclusionResult | AttributionResult) -> bool:
    """Occlusion maps are signed (diverging scale around 0); the gradient methods' are
    non-negative (sequential scale from 0), as in :func:`occlusion_widget.render.figure`."""
    return getattr(result, "method", "occlusion") == "occlusion" or bool(np.nanmin(result.maps) < 0)


def result_state(result: OcclusionResult | AttributionResult, version: int) -> dict[str, Any]:
    """The synced traits for one (partial or final) result.

    ``map_data`` carries the maps as raw float32 little-endian bytes in C order
    (NaN where nothing is known yet), their shape and per-class value range,
    the method and whether the scale is ``signed``; ``worst`` is, for
    occlusion, the centre (y, x) of the mask position that lowers each class
    most (a mask centred there covers exactly the sweep's box), for the
    gradient methods the map's peak. ``classes`` holds id, name and the
    unoccluded score (in ``resolved_params.output``) per map.
    """
    maps = np.ascontiguousarray(result.maps, dtype="<f4")
    method = getattr(result, "method", "occlusion")
    state = {
        "map_data": {
            "data": maps.tobytes(), "shape": list(maps.shape), "range": [_range(m) for m in maps], "worst": [],
            "complete": bool(result.complete), "method": method, "signed": is_signed(result), "version": version,
        },
        "classes": [
            {"id": int(c), "name": result.labels[i] if result.labels else f"class {int(c)}", "score": float(result.base_scores[i])}
            for i, c in enumerate(result.targets)
        ],
    }
    if isinstance(result, AttributionResult):
        p = result.params
        for m in maps:
            y, x = np.unravel_index(int(np.nanargmax(m)), m.shape) if np.isfinite(m).any() else (0, 0)
            state["map_data"]["worst"].append([int(y), int(x)])
        state["map_data"]["computed"] = [len(result.targets), len(result.targets)] if result.complete else [0, len(result.targets)]
        state["resolved_params"] = {
            "method": method, "output": p.output, "upsampling": p.upsampling, "layer": p.layer, "n_samples": p.n_samples,
            "noise_level": p.noise_level, "device": p.device, "grid": list(result.grid.shape[1:]),
        }
        return state
    p = result.params
    worst = state["map_data"]["worst"]
    if result.computed.any():
        for k in range(len(result.targets)):
            region = result.most_important(k)
            if p.mask_clipping:  # the lattice point: the mask box there is the one the sweep used
                worst.append([region.index[0] * p.stride[0], region.index[1] * p.stride[1]])
            else:
                worst.append([int(region.box[0]) + p.mask_size[0] // 2, int(region.box[1]) + p.mask_size[1] // 2])
    state["map_data"]["computed"] = [int(result.computed.sum()), int(result.computed.size)]
    state["resolved_params"] = {
        "method": method, "mask_size": list(p.mask_size), "stride": list(p.stride),
        "mask_value": p.mask_value if isinstance(p.mask_value, str) else [float(v) for v in np.ravel(p.mask_value)],
        "mask_clipping": bool(p.mask_clipping), "upsampling": p.upsampling, "output": p.output,
        "batch_size": int(p.batch_size), "device": p.device, "grid": list(result.grid.shape[1:]),
    }
    return state


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
        panel: dict[str, Any] = {"method": p.method, "title": TITLES.get(p.method, p.method), "status": p.status,
                                 "curve_status": p.curve_status, "error": p.error, "data": b"", "shape": [0, 0],
                                 "range": [0.0, 0.0], "signed": p.method == "occlusion", "deletion_auc": None, "insertion_auc": None}
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

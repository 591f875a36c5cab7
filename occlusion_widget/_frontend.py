"""The widget's browser code, assembled from the small ES modules in ``js/``.

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
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

#: Browser modules, dependencies first; the last one holds ``export default``.
MODULES = ("throttle.js", "decode.js", "colormap.js", "geometry.js", "ui.js", "controls.js", "widget.js")
CSS = "widget.css"

#: Diverging colormaps offered in the widget (matplotlib names).
COLORMAPS = ("RdBu_r", "coolwarm", "bwr", "seismic", "PiYG")

_LOCAL_IMPORT = re.compile(r"""^[ \t]*import[ \t]*\{[^}\n]*\}[ \t]*from[ \t]*["']\./[\w.-]+\.js["'][ \t]*;?[ \t]*$""", re.M)
_ANY_LOCAL_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*["']\.{1,2}/""")
_TOP_LEVEL_NAME = re.compile(r"^(?:export\s+)?(?:async\s+)?(?:function\*?|class|const|let|var)\s+([A-Za-z_$][\w$]*)", re.M)


def static_dir() -> Path:
    """The folder holding the browser files: the package's ``static/`` or the repo's ``js/``."""
    packaged = resources.files("occlusion_widget") / "static"
    if packaged.is_dir() and (packaged / "widget.js").is_file():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parent.parent / "js"
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
    import numpy as np

    tables = {}
    for name in names:
        rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, n))
        tables[name] = (rgba[:, :3] * 255).round().astype(np.uint8).ravel().tolist()
    return tables

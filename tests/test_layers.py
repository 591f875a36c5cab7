"""The package's layers: engine <- methods <- render <- widget / cli, never the other way round."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import occlusion_widget

PACKAGE = Path(occlusion_widget.__file__).resolve().parent
ENGINE = PACKAGE / "engine"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (or in ``source`` read as if it
    were ``path``), function-level ones included; ``from . import x`` gives ``package.x``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    tree = ast.parse(path.read_text("utf-8") if source is None else source, str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            target = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            found += [(node.lineno, target if node.module else f"{target}.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or ""))
    return found


def test_the_checker_resolves_relative_imports():
    """The checker itself: imports out of engine/, however written, are seen as the module they name."""
    probe = ENGINE / "probe.py"  # never written: the text is read as if it lived in engine/
    assert (1, "occlusion_widget.render") in _imports(probe, "from ..render import figure\n")
    assert (1, "occlusion_widget.engine.grid") in _imports(probe, "from .grid import MaskGrid\n")
    assert (2, "occlusion_widget.methods") in _imports(probe, "def f():\n    from .. import methods\n")
    assert (1, "occlusion_widget.models") in _imports(probe, "import occlusion_widget.models\n")


@pytest.mark.parametrize("path", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_imports_nothing_above_it(path):
    """No module under engine/ imports methods, render, widget, cli, models or any other module
    of the package outside engine/ (the engine must work, and be testable, on its own)."""
    outside = [(line, name) for line, name in _imports(path)
               if (name == "occlusion_widget" or name.startswith("occlusion_widget."))
               and not (name == "occlusion_widget.engine" or name.startswith("occlusion_widget.engine."))]
    assert not outside, f"engine/{path.relative_to(ENGINE)} imports {outside}: move what it needs into engine/"


# Each layer is imported with the package's __init__ bypassed (it imports every layer), in a
# fresh interpreter, and must not pull in a layer above it.
_PROBE = r"""
import importlib, sys, types
root = {root!r}
layers = [("occlusion_widget.engine", ("methods", "render", "widget", "cli", "models", "images")),
          ("occlusion_widget.methods", ("render", "widget", "cli")),
          ("occlusion_widget.render", ("widget", "cli"))]
for module, above in layers:
    for name in [m for m in sys.modules if m == "occlusion_widget" or m.startswith("occlusion_widget.")]:
        del sys.modules[name]
    stub = types.ModuleType("occlusion_widget")
    stub.__path__ = [root]
    sys.modules["occlusion_widget"] = stub
    importlib.import_module(module)
    loaded = sorted(m for m in sys.modules if m.startswith("occlusion_widget.") and m.split(".")[1] in above)
    assert not loaded, f"importing {{module}} loaded {{loaded}}"
for name in [m for m in sys.modules if m.startswith("occlusion_widget")]:
    del sys.modules[name]
import occlusion_widget  # the real package: every layer, no import cycle
assert occlusion_widget.OcclusionWidget and occlusion_widget.integrated_gradients
print("layers ok")
"""


def test_layers_import_alone_and_the_package_has_no_cycle():
    out = subprocess.run([sys.executable, "-c", _PROBE.format(root=str(PACKAGE))], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "layers ok" in out.stdout, out.stderr[-3000:]


def test_a_result_draws_itself_once_the_package_is_imported():
    """The engine's results show as a figure in Jupyter without the engine importing render:
    render registers the renderer; with none registered ``_repr_png_`` is None (text repr)."""
    import numpy as np
    import torch
    from conftest import tiny_model

    from occlusion_widget import occlusion_sensitivity
    from occlusion_widget.engine import result as result_module

    res = occlusion_sensitivity(tiny_model(), torch.rand(3, 16, 16), mask_size=8, stride=8)
    png = res._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    saved = result_module._png_renderer
    try:
        result_module.set_png_renderer(None)
        assert res._repr_png_() is None
        with pytest.raises(TypeError, match="renderer"):
            result_module.set_png_renderer("figure")
    finally:
        result_module.set_png_renderer(saved)
    assert np.isfinite(res.maps).all()

"""The browser code: node's built-in test runner on the pure helpers, and the one-module build."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from occlusion_widget import _frontend

JS = Path(__file__).resolve().parent.parent / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the JS unit tests need node >= 20)")
def test_node_unit_tests(tmp_path: Path) -> None:
    tables = tmp_path / "colormaps.json"
    tables.write_text(json.dumps(_frontend.colormap_tables()))
    sequential = tmp_path / "sequential.json"
    sequential.write_text(json.dumps(_frontend.colormap_tables(_frontend.SEQUENTIAL_COLORMAPS)))
    proc = subprocess.run(
        ["node", "--test", "test/"], cwd=JS, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OW_COLORMAPS": str(tables), "OW_SEQUENTIAL": str(sequential)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    counts = {k: int(v) for k, v in re.findall(r"^# (tests|pass|fail|skipped) (\d+)", out, re.M)}
    assert counts.get("tests", 0) >= 20 and counts.get("fail") == 0, out[-2000:]
    assert counts.get("skipped") == 0, "the colormap tests should run on the real tables"
    assert "every sequential table gets lighter" in out


def test_esm_is_one_module_without_local_imports() -> None:
    esm = _frontend.build_esm(JS)
    assert not re.search(r"""^\s*import\b.*["']\./""", esm, re.M)
    assert esm.count("export default") == 1 and esm.rstrip().endswith("export default { render };")
    for name in _frontend.MODULES:
        assert f"// ---- {name} ----" in esm


def test_every_js_module_is_in_the_build() -> None:
    # standalone.js is not part of the widget: occlusion_widget/report.py inlines it into the HTML report.
    on_disk = {p.name for p in JS.glob("*.js")} - {"standalone.js"}
    assert on_disk == set(_frontend.MODULES), "add new js/ modules to _frontend.MODULES (dependencies first)"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_assembled_module_parses(tmp_path: Path) -> None:
    bundle = tmp_path / "widget.mjs"
    bundle.write_text(_frontend.build_esm(JS))
    # Importing evaluates only top-level code (no DOM needed): the module must load and export render().
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", f"const m = await import({json.dumps(bundle.as_uri())}); "
         "if (typeof m.default.render !== 'function') process.exit(3);"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_build_rejects_clashing_names_and_multiline_imports(tmp_path: Path) -> None:
    for name in _frontend.MODULES:
        (tmp_path / name).write_text(f"// {name}\n")
    (tmp_path / "decode.js").write_text("export function clamp() {}\n")
    (tmp_path / "geometry.js").write_text("export function clamp() {}\n")
    with pytest.raises(ValueError, match="clamp"):
        _frontend.build_esm(tmp_path)
    (tmp_path / "geometry.js").write_text('import {\n  a\n} from "./decode.js";\n')
    with pytest.raises(ValueError, match="single-line"):
        _frontend.build_esm(tmp_path)


def test_static_dir_falls_back_to_the_repository() -> None:
    found = _frontend.static_dir()
    assert (found / "widget.js").is_file() and (found / "widget.css").is_file()


def test_every_jupyterlab_variable_in_the_css_has_a_fallback() -> None:
    # marimo renders the widget in a shadow root without JupyterLab's CSS variables: a bare
    # var(--jp-...) there makes borders and colours vanish.
    css = (JS / "widget.css").read_text("utf-8")
    bare = re.findall(r"var\(\s*--jp-[\w-]+\s*\)", css)
    assert not bare, f"give these a fallback, var(--jp-x, #hex): {sorted(set(bare))}"
    # Number inputs and selects get their own border (a CSS reset there removes the browser's).
    rule = re.search(r"\.ow-root input\[type=\"number\"\],\s*\.ow-root select\s*\{([^}]*)\}", css)
    assert rule and re.search(r"border:\s*1px solid var\(--jp-border-color1,\s*#[0-9a-fA-F]{3,6}\)", rule.group(1)), "bordered inputs"

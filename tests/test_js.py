"""The browser code: node's built-in test runner on the pure helpers, the esbuild bundle and the JSDoc type check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from occlusion_widget.methods.registry import browser_table
from occlusion_widget.render import colour_limit
from occlusion_widget.widget import frontend as _frontend

JS = Path(__file__).resolve().parent.parent / "js"


def colour_limit_cases() -> list[dict]:
    """Maps (NaN as None, infinities as "inf"/"-inf"), sign, percentile, and Python's colour limit, for js/colormap.js
    colourLimit to reproduce: random sizes and spreads, heavy tails, ties, all-NaN and all-zero maps."""
    rng = np.random.default_rng(7)
    maps = [rng.standard_normal(n) * scale for n, scale in ((1, 1.0), (2, 3.0), (7, 1e-3), (50, 1.0), (1000, 20.0))]
    maps += [rng.standard_cauchy(500), rng.integers(-3, 4, 200).astype(float), np.zeros(10), np.full(5, np.nan)]
    with_gaps = rng.random(300)
    with_gaps[::7] = np.nan
    with_gaps[5], with_gaps[6] = np.inf, -np.inf
    maps.append(with_gaps)
    encode = lambda v: None if np.isnan(v) else ("inf" if v > 0 else "-inf") if np.isinf(v) else float(v)  # noqa: E731
    return [
        {"values": [encode(v) for v in m], "signed": signed, "percentile": p, "expected": colour_limit(m, signed, p)}
        for m in maps for signed in (True, False) for p in (None, 100, 99.9, 99, 98, 95, 50, 0.5)
    ]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the JS unit tests need node >= 20)")
def test_node_unit_tests(tmp_path: Path) -> None:
    tables = tmp_path / "colormaps.json"
    tables.write_text(json.dumps(_frontend.colormap_tables()))
    sequential = tmp_path / "sequential.json"
    sequential.write_text(json.dumps(_frontend.colormap_tables(_frontend.SEQUENTIAL_COLORMAPS)))
    methods = tmp_path / "methods.json"
    methods.write_text(json.dumps(browser_table()))
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps(colour_limit_cases()))
    proc = subprocess.run(
        ["node", "--test", "test/"], cwd=JS, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OW_COLORMAPS": str(tables), "OW_SEQUENTIAL": str(sequential), "OW_METHODS": str(methods),
             "OW_LIMIT_CASES": str(limits)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    counts = {k: int(v) for k, v in re.findall(r"^# (tests|pass|fail|skipped) (\d+)", out, re.M)}
    assert counts.get("tests", 0) >= 20 and counts.get("fail") == 0, out[-2000:]
    assert counts.get("skipped") == 0, "the colormap tests should run on the real tables"
    assert "every sequential table gets lighter" in out


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """js/node_modules as the lockfile pins it: `npm ci` once when it is missing (a fresh clone)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (the bundle and the type check need Node 20 with npm)")
    if not (JS / "node_modules" / ".package-lock.json").is_file():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return JS / "node_modules"


@pytest.fixture(scope="module")
def bundle(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `npm run build` writes to occlusion_widget/static/, built from the current sources into a temporary folder."""
    out = tmp_path_factory.mktemp("bundle")
    proc = subprocess.run(["node", "build.mjs", "--outdir", str(out)], cwd=JS, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_the_bundle_is_one_self_contained_module(bundle: Path) -> None:
    built = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert built == ["audit/gallery.css", "audit/gallery.js", "standalone.js", "widget.css", "widget.js"]
    esm = (bundle / "widget.js").read_text("utf-8")
    # anywidget loads _esm from a blob URL: an import left in the bundle could not be resolved there.
    assert not re.search(r"""^\s*import\b|\bimport\s*\(|\bfrom\s*["']""", esm, re.M), "the bundle imports something"
    assert re.search(r"^export\s*\{[^}]*\bdefault\b", esm, re.M)
    classes = lambda css: set(re.findall(r"\.ow-[\w-]+", css))  # noqa: E731
    assert classes((bundle / "widget.css").read_text("utf-8")) == classes((JS / "widget.css").read_text("utf-8")) != set()
    # Importing evaluates only top-level code (no DOM needed): the modules must load and export what they promise.
    checks = {"widget.js": "typeof m.default.render === 'function'", "standalone.js": "typeof m.boot === 'function'"}
    for name, check in checks.items():
        script = f"const m = await import({json.dumps((bundle / name).as_uri())}); if (!({check})) process.exit(3);"
        proc = subprocess.run(
            ["node", "--input-type=module", "-e", script],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_jsdoc_types_check(node_modules: Path) -> None:
    # `npm run typecheck`: tsc --checkJs over js/*.js with js/tsconfig.json.
    proc = subprocess.run(["npm", "run", "--silent", "typecheck"], cwd=JS, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


def test_the_lockfile_pins_the_build_tools() -> None:
    package = json.loads((JS / "package.json").read_text("utf-8"))
    lock = json.loads((JS / "package-lock.json").read_text("utf-8"))
    for tool in ("esbuild", "typescript"):
        pinned = package["devDependencies"][tool]
        assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"{tool} is pinned to one version, got {pinned!r}"
        assert lock["packages"][f"node_modules/{tool}"]["version"] == pinned
    assert {"build", "watch", "typecheck", "test"} <= set(package["scripts"])


def test_every_jupyterlab_variable_in_the_css_has_a_fallback() -> None:
    # marimo renders the widget in a shadow root without JupyterLab's CSS variables: a bare
    # var(--jp-...) there makes borders and colours vanish.
    css = (JS / "widget.css").read_text("utf-8")
    bare = re.findall(r"var\(\s*--jp-[\w-]+\s*\)", css)
    assert not bare, f"give these a fallback, var(--jp-x, #hex): {sorted(set(bare))}"
    # Number inputs and selects get their own border (a CSS reset there removes the browser's).
    rule = re.search(r"\.ow-root input\[type=\"number\"\],\s*\.ow-root select\s*\{([^}]*)\}", css)
    border = r"border:\s*1px solid var\(--jp-border-color1,\s*#[0-9a-fA-F]{3,6}\)"
    assert rule and re.search(border, rule.group(1)), "bordered inputs"

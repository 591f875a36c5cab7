"""End to end: JupyterLab on localhost, a notebook running ``OcclusionWidget()``, driven by
Playwright in Debian's Chromium as a person would use it.

Screenshots go to ``artifacts/``; the occlusion view is also copied to ``docs/widget.png``
(the README shows it) and the compare view to ``docs/widget_compare.png``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _import_line() -> str:
    import occlusion_widget

    if hasattr(occlusion_widget, "OcclusionWidget"):
        return "from occlusion_widget import OcclusionWidget"
    return "from occlusion_widget.widget import OcclusionWidget"


def _write_notebook(path: Path) -> None:
    cell = {"cell_type": "code", "execution_count": None, "id": "widget", "metadata": {}, "outputs": [],
            "source": [f"{_import_line()}\n", "w = OcclusionWidget()\n", "w"]}
    notebook = {"cells": [cell], "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook))


def _write_settings(settings: Path) -> None:
    """Quiet JupyterLab (no news or update pop-ups) and save widget state with the notebook."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
    }
    for name, content in files.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(content))


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server on a free localhost port; yields (url, notebook path)."""
    work = tmp_path_factory.mktemp("lab")
    (work / "notebooks").mkdir()
    notebook = work / "notebooks" / "widget.ipynb"
    _write_notebook(notebook)
    _write_settings(work / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = open(work / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", f"--IdentityProvider.token={token}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={work / 'notebooks'}", "--ServerApp.port_retries=0",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {(work / 'jupyter.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer: {(work / 'jupyter.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"{base}/lab/tree/widget.ipynb?token={token}", notebook
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


@pytest.fixture(scope="module")
def page(jupyter_lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 1300}, device_scale_factor=1)
        page = context.new_page()
        page.console_messages = []  # type: ignore[attr-defined]
        page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.console_messages.append(f"pageerror: {e}"))  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            (ARTIFACTS / "browser-console.log").write_text("\n".join(page.console_messages))  # type: ignore[attr-defined]
            context.close()
            browser.close()


# Canvas statistics in the page: how much of the image is tinted red or blue, and a checksum.
CANVAS_STATS = """(sel) => {
  const c = document.querySelector(sel);
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let tinted = 0, sum = 0, n = d.length / 4;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.abs(d[i] - d[i + 2]) > 40) tinted++;
    sum = (sum * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) % 1000000007;
  }
  return {tinted: tinted / n, checksum: sum, version: Number(c.dataset.version || 0)};
}"""


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def _use_the_methods(page, root) -> None:
    """Method selector, compare view and layer view."""
    occlusion = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert page.locator(".ow-colorbar-gradient").get_attribute("data-signed") == "true"

    # Grad-CAM from the selector: another map, on a sequential scale from 0.
    page.locator(".ow-method[data-method='grad_cam']").click()
    page.wait_for_selector(".ow-method[data-method='grad_cam'][aria-checked='true']")
    page.wait_for_selector(".ow-canvas[data-method='grad_cam']", timeout=60_000)
    page.wait_for_selector(".ow-root[data-status='done']", timeout=60_000)
    page.wait_for_timeout(300)
    cam = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert cam["checksum"] != occlusion["checksum"], "the map changed"
    assert page.locator(".ow-colorbar-gradient").get_attribute("data-signed") == "false"
    ticks = page.locator(".ow-colorbar-ticks span").all_inner_texts()
    assert ticks[-1] == "0" and not any(t.startswith(("+", "\u2212")) for t in ticks), ticks
    assert "Grad-CAM" in _text(page, ".ow-colorbar-caption") and page.locator(".ow-actions button").first.inner_text() == "Map peak"
    stage = page.locator(".ow-stage").bounding_box()
    page.mouse.move(stage["x"] + stage["width"] * 0.4, stage["y"] + stage["height"] * 0.6)
    page.wait_for_function("() => document.querySelector('.ow-readout').innerText.includes('Grad-CAM for')", timeout=10_000)

    # The compare view: four panels, each with its deletion and insertion AUC once computed.
    page.locator(".ow-toggle[data-view='compare']").click()
    page.wait_for_function("() => document.querySelectorAll('.ow-compare-card').length === 4", timeout=30_000)
    page.wait_for_selector(".ow-compare[data-status='done']", timeout=90_000)
    cards = page.locator(".ow-compare-card")
    titles = [cards.nth(i).locator(".ow-compare-title").inner_text() for i in range(4)]
    assert titles == ["Occlusion", "Grad-CAM", "Saliency", "SmoothGrad"], titles
    for i in range(4):
        aucs = cards.nth(i).locator(".ow-aucs").inner_text()
        assert re.search(r"deletion\s+0\.\d{3}", aucs) and re.search(r"insertion\s+0\.\d{3}", aucs), aucs
    assert "ow-compare-current" in (cards.nth(1).get_attribute("class") or "")
    panels = [page.evaluate(CANVAS_STATS, f".ow-compare-card[data-method='{m}'] canvas")["checksum"]
              for m in ("occlusion", "grad_cam", "saliency", "smoothgrad")]
    assert len(set(panels)) == 4, "four different maps"
    # The picture for the docs: the widget down to the compare view (the parameter controls left out).
    page.evaluate("() => { document.querySelector('.ow-controls').style.display = 'none';"
                  " document.querySelector('.ow-root').scrollIntoView({block: 'start'}); }")
    page.mouse.move(0, 0)
    page.wait_for_timeout(300)
    root.screenshot(path=str(ARTIFACTS / "widget_compare.png"))
    page.evaluate("() => { document.querySelector('.ow-controls').style.display = ''; }")
    shutil.copyfile(ARTIFACTS / "widget_compare.png", ROOT / "docs" / "widget_compare.png")

    # Clicking a panel shows that method above.
    page.locator(".ow-compare-card[data-method='saliency']").click()
    page.wait_for_selector(".ow-canvas[data-method='saliency']", timeout=30_000)
    page.locator(".ow-toggle[data-view='compare']").click()
    page.wait_for_selector(".ow-compare", state="hidden")

    # The layer view: a grid of the strongest channels, labelled with index and strength.
    page.locator(".ow-toggle[data-view='layers']").click()
    page.wait_for_function("() => document.querySelectorAll('.ow-layer-tile').length === 16", timeout=60_000)
    options = page.locator("select[data-param='activation_layer'] option").all_inner_texts()
    assert options[0].startswith("auto (1._swish)") and any("1._conv_stem" in o for o in options), options[:3]
    assert "1280 channels" in _text(page, ".ow-layer-summary")
    labels = page.locator(".ow-layer-tile figcaption").all_inner_texts()
    assert all(re.match(r"#\d+\s+[+\u2212]?[\d.]+", label) for label in labels), labels[:3]
    page.locator("select[data-param='activation_layer']").select_option("1._conv_stem")
    page.wait_for_function("() => document.querySelector('.ow-layer-summary').innerText.startsWith('1._conv_stem: 32 channels')", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "widget-3-layers.png"), full_page=True)
    page.locator(".ow-toggle[data-view='layers']").click()
    page.locator(".ow-method[data-method='occlusion']").click()
    page.wait_for_selector(".ow-canvas[data-method='occlusion']", timeout=30_000)


def test_widget_in_jupyterlab(page, jupyter_lab) -> None:
    try:
        _use_the_widget(page, *jupyter_lab)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "widget-failure.png"), full_page=True)
        raise


def _use_the_widget(page, url: str, notebook: Path) -> None:
    t0 = time.monotonic()
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    # Run the cell once the kernel is up (a cell run before that is dropped).
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.press("Shift+Enter")

    # The map streams in, then the sweep finishes.
    root = page.wait_for_selector(".ow-root", timeout=90_000)
    page.wait_for_function("() => Number(document.querySelector('.ow-canvas')?.dataset.version || 0) > 0", timeout=120_000)
    page.wait_for_selector(".ow-root[data-status='done']", timeout=180_000)
    root.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    first = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert first["tinted"] > 0.05, f"the canvas shows no heatmap: {first}"
    tabs = page.locator(".ow-tab")
    assert tabs.count() == 3 and "%" in tabs.nth(0).inner_text()
    assert page.locator(".ow-colorbar-ticks span").count() == 5
    page.screenshot(path=str(ARTIFACTS / "widget-1-map.png"), full_page=True)

    # Drag the mask with the mouse: the kernel answers with the scores at the new position.
    page.wait_for_function("() => document.querySelector('.ow-preview-summary')?.dataset.seq", timeout=60_000)
    before = _text(page, ".ow-score-columns")
    seq_before = int(page.locator(".ow-preview-summary").get_attribute("data-seq"))
    stage = page.locator(".ow-stage").bounding_box()
    mask = page.locator(".ow-mask").bounding_box()
    page.mouse.move(mask["x"] + mask["width"] / 2, mask["y"] + mask["height"] / 2)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(mask["x"] + mask["width"] / 2 - i * 12, stage["y"] + stage["height"] * (0.5 - i * 0.03))
        page.wait_for_timeout(40)
    page.mouse.up()
    page.wait_for_function(
        "([seq, before]) => Number(document.querySelector('.ow-preview-summary').dataset.seq) > seq"
        " && document.querySelector('.ow-score-columns').innerText !== before",
        arg=[seq_before, before], timeout=30_000)
    after_drag = page.locator(".ow-mask").bounding_box()
    assert after_drag["y"] < mask["y"] - 20, "the mask moved with the mouse"
    assert _text(page, ".ow-score-columns") != before

    # Hovering reads the value under the cursor.
    page.mouse.move(stage["x"] + stage["width"] * 0.5, stage["y"] + stage["height"] * 0.8)
    page.wait_for_function("() => document.querySelector('.ow-readout').innerText.includes(' at (')", timeout=10_000)

    # Worst spot moves the mask where the class drops most.
    page.locator("button", has_text="Worst spot").click()
    page.wait_for_timeout(500)

    # Another class tab shows that class's map at once.
    page.locator(".ow-tab").nth(1).click()
    page.wait_for_selector(".ow-tab[data-index='1'][aria-selected='true']")
    page.wait_for_timeout(300)
    second = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert second["checksum"] != first["checksum"], "switching tabs changed the map"
    assert second["version"] == first["version"], "no recomputation for a tab switch"

    # Colormap and opacity are drawn in the browser: the picture changes, no recomputation.
    page.locator("select[data-param='colormap']").select_option("PiYG")
    page.wait_for_timeout(300)
    recoloured = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert recoloured["checksum"] != second["checksum"] and recoloured["version"] == second["version"]
    page.locator("select[data-param='colormap']").select_option("RdBu_r")

    # Export: the overlay downloads as a PNG.
    with page.expect_download() as download:
        page.locator("button", has_text="Download PNG").click()
    download.value.save_as(ARTIFACTS / "downloaded-overlay.png")
    assert (ARTIFACTS / "downloaded-overlay.png").read_bytes().startswith(b"\x89PNG")

    # A new stride recomputes; a new map arrives.
    stride = page.locator("input[data-param='stride-number']")
    stride.fill("32")
    stride.press("Enter")
    page.wait_for_function(f"() => Number(document.querySelector('.ow-canvas').dataset.version) > {second['version']}", timeout=60_000)
    page.wait_for_selector(".ow-root[data-status='done']", timeout=120_000)
    page.wait_for_timeout(300)
    third = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert third["checksum"] != second["checksum"] and third["tinted"] > 0.02
    assert stride.input_value() == "32"

    # A bad value shows an inline error; the widget stays usable.
    stride.fill("0")
    stride.press("Enter")
    page.wait_for_selector(".ow-root[data-status='error']", timeout=30_000)
    assert "stride" in _text(page, ".ow-error")
    stride.fill("28")
    stride.press("Enter")
    page.wait_for_selector(".ow-root[data-status='done']", timeout=120_000)
    assert page.locator(".ow-error").is_hidden()
    page.locator(".ow-tab").nth(0).click()
    page.wait_for_timeout(500)
    root.screenshot(path=str(ARTIFACTS / "widget.png"))
    page.screenshot(path=str(ARTIFACTS / "widget-2-final.png"), full_page=True)
    (ROOT / "docs").mkdir(exist_ok=True)
    shutil.copyfile(ARTIFACTS / "widget.png", ROOT / "docs" / "widget.png")

    _use_the_methods(page, root)

    # Saved, the notebook carries the widget state and a static PNG for viewers without widgets.
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        saved = json.loads(notebook.read_text())
        outputs = saved["cells"][0]["outputs"]
        if any("image/png" in o.get("data", {}) for o in outputs):
            break
        page.wait_for_timeout(500)
    assert any("image/png" in o.get("data", {}) for o in outputs), [list(o.get("data", {})) for o in outputs]
    state = saved["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    assert any(m.get("state", {}).get("_anywidget_id", "").endswith("OcclusionWidget") for m in state.values())
    errors = [m for m in page.console_messages if m.startswith("pageerror")]  # type: ignore[attr-defined]
    assert not errors, errors
    assert time.monotonic() - t0 < 240

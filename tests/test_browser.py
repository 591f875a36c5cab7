"""End to end: JupyterLab on localhost, a notebook running ``OcclusionWidget()``, driven by
Playwright in Debian's Chromium as a person would use it; and the widget without a kernel
(a saved page's model shim).

Every wait is for a condition (a selector, a data attribute, a kernel answer), never for a time.
Screenshots and downloads go under pytest's tmp_path; ``python docs/make_screenshots.py``
(which reuses :func:`lab_server` and :func:`open_widget`) regenerates the pictures in ``docs/``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parent.parent / "js"

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
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


def _write_notebook(path: Path) -> None:
    cell = {"cell_type": "code", "execution_count": None, "id": "widget", "metadata": {}, "outputs": [],
            "source": ["from occlusion_widget import OcclusionWidget\n", "w = OcclusionWidget()\n", "w"]}
    kernelspec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook = {"cells": [cell], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
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


@contextlib.contextmanager
def lab_server(work: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on a free localhost port, files in ``work``; yields (notebook URL, notebook path).

    The app is exposed as ``window.jupyterapp`` so the tests can ask the notebook's kernel directly.
    """
    (work / "notebooks").mkdir(parents=True, exist_ok=True)
    notebook = work / "notebooks" / "widget.ipynb"
    _write_notebook(notebook)
    _write_settings(work / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log_path = work / "jupyter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", f"--IdentityProvider.token={token}",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={work / 'notebooks'}", "--ServerApp.port_retries=0",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
             "--LabApp.expose_app_in_browser=True", *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited: {log_path.read_text()[-2000:]}")
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"jupyter lab did not answer: {log_path.read_text()[-2000:]}") from None
                    time.sleep(0.5)  # polling the server's status endpoint, not a fixed pause
            yield f"{base}/lab/tree/widget.ipynb?token={token}", notebook
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright (one per process: the sync API allows one at a time)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def chromium_page(browser: Any, viewport: dict[str, int]) -> Iterator[Any]:
    """A page in its own context that records console messages and page errors."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1, accept_downloads=True)
    page = context.new_page()
    page.console_messages = []
    page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.console_messages.append(f"pageerror: {e}"))
    try:
        yield page
    finally:
        context.close()


def open_widget(page: Any, url: str) -> None:
    """Open the notebook, run its cell once the kernel is idle, and wait for the finished map."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)  # a cell run before the kernel is up is dropped
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector(".ow-root", timeout=90_000)
    page.wait_for_function("() => Number(document.querySelector('.ow-canvas')?.dataset.version || 0) > 0", timeout=120_000)
    page.wait_for_selector(".ow-root[data-status='done']", timeout=180_000)
    page.wait_for_function("() => document.querySelector('.ow-preview-summary')?.dataset.seq", timeout=60_000)


# Ask the notebook's kernel (the one the widget lives in) and return what the code printed.
KERNEL_EXEC = """async (code) => {
  const app = window.jupyterapp;
  const panel = [...app.shell.widgets("main")].find((w) => w.sessionContext?.session?.kernel);
  const future = panel.sessionContext.session.kernel.requestExecute({ code, store_history: false });
  let out = "", err = "";
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === "stream") out += msg.content.text;
    if (msg.header.msg_type === "error") err += `${msg.content.ename}: ${msg.content.evalue}`;
  };
  await future.done;
  return { out, err };
}"""


def kernel(page: Any, code: str) -> Any:
    """Run ``code`` in the widget's kernel; it prints one JSON value, returned decoded."""
    answer = page.evaluate(KERNEL_EXEC, code)
    assert not answer["err"], answer["err"]
    return json.loads(answer["out"])


MAPS = "import json, numpy as np\nm = np.frombuffer(w.map_data['data'], '<f4').reshape(w.map_data['shape'])\n"

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

# The main canvas's RGB at image pixel (x, y).
PIXEL = """([x, y, w, h]) => {
  const c = document.querySelector(".ow-canvas");
  const d = c.getContext("2d").getImageData(Math.floor((x + 0.5) / w * c.width), Math.floor((y + 0.5) / h * c.height), 1, 1).data;
  return [d[0], d[1], d[2]];
}"""

# Controls that stick out of the widget or the window (nothing may: every control stays reachable).
OVERFLOW = """() => {
  const root = document.querySelector(".ow-root").getBoundingClientRect();
  const out = [];
  const nodes = document.querySelectorAll(
    ".ow-root input, .ow-root select, .ow-root button, .ow-root fieldset, .ow-score-columns > div, .ow-stage, .ow-colorbar");
  for (const el of nodes) {
    const b = el.getBoundingClientRect();
    if (b.width === 0 && b.height === 0) continue;  // hidden
    if (b.left < root.left - 0.5 || b.right > root.right + 0.5 || b.left < -0.5 || b.right > innerWidth + 0.5) {
      const name = `${el.tagName.toLowerCase()}.${el.className} ${el.dataset.param || el.dataset.method || ""}`;
      out.push(`${name}: ${Math.round(b.left)}..${Math.round(b.right)}`);
    }
  }
  if (root.right > innerWidth + 0.5) out.push(`the widget: ..${Math.round(root.right)} > ${innerWidth}`);
  return out;
}"""

# A CSS reset like marimo's (Tailwind's preflight): no border on anything unless styled.
RESET_CSS = "*, ::before, ::after { border-width: 0; border-style: solid; border-color: transparent; }"


def _text(page: Any, selector: str) -> str:
    return page.locator(selector).inner_text()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:8]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _assert_figure(path: Path, min_width: int, min_height: int) -> None:
    """A downloaded figure: larger than the picture, with a white title band holding dark text."""
    import numpy as np
    from PIL import Image

    width, height = _png_size(path.read_bytes())
    assert width > min_width and height > min_height, (width, height)
    pixels = np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB")).astype(int)
    band = pixels[:40]
    white = (band.min(axis=-1) > 235).mean()
    dark = (band.max(axis=-1) < 120).mean()
    assert white > 0.8 and dark > 0.003, f"title band: {white:.2f} white, {dark:.4f} dark"
    below = pixels[70:-20, 20:min_width // 2]
    assert (below.min(axis=-1) > 235).mean() < 0.5, "the picture lies below the title band"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    # The kernel serves occlusion_widget/static/ (build output): rebuild it from js/ so that the page runs the
    # sources under test, not the bundle of the last `pip install -e .` (esbuild takes well under a second).
    subprocess.run(["npm", "run", "--silent", "build"], cwd=JS, check=True, capture_output=True, timeout=120)
    with lab_server(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def page(lab, browser, tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("artifacts")
    with chromium_page(browser, {"width": 1280, "height": 1300}) as page:
        page.artifacts = artifacts
        try:
            open_widget(page, lab[0])
            yield page
        finally:
            (artifacts / "browser-console.log").write_text("\n".join(page.console_messages))


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request):
    """A failing test leaves a screenshot of the page in the artifacts folder (under pytest's tmp_path)."""
    failures = request.session.testsfailed
    yield
    page = request.node.funcargs.get("page")
    if page is not None and request.session.testsfailed > failures:
        page.screenshot(path=str(page.artifacts / f"{request.node.name}-failure.png"), full_page=True)


def test_the_map_is_red_where_it_supports_and_the_readout_is_the_synced_value(page) -> None:
    page.locator(".ow-root").scroll_into_view_if_needed()
    first = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert first["tinted"] > 0.05, f"the canvas shows no heatmap: {first}"
    tabs = page.locator(".ow-tab")
    assert tabs.count() == 3 and "%" in tabs.nth(0).inner_text()
    assert page.locator(".ow-colorbar-ticks span").count() == 5
    assert page.locator(".ow-root[data-kernel='yes']").count() == 1 and page.locator(".ow-banner").is_hidden(), \
        "the kernel answered the ping"

    # Where each class's map is largest and most negative, straight from the kernel.
    ext = kernel(page, MAPS + "print(json.dumps([[int(v) for v in np.unravel_index(np.nanargmax(c), c.shape)]"
                        " + [int(v) for v in np.unravel_index(np.nanargmin(c), c.shape)]"
                        " + [float(np.nanmin(c) / np.nanmax(np.abs(c)))] for c in m]))")
    h, w = kernel(page, "print(list(w.map_data['shape'][1:]))")
    # Opacity 1: the overlay pixel is the colour table's entry (and the opacity control changes the pixels).
    opacity = page.locator("input[data-param='opacity']")
    opacity.fill("1")
    page.wait_for_selector(".ow-canvas[data-opacity='1']")
    y, x = ext[0][:2]
    red = page.evaluate(PIXEL, [x, y, w, h])
    assert red[0] > red[2] + 40, f"the map's largest value (supports) is red: {red} at {(x, y)}"
    k_blue = max(range(len(ext)), key=lambda k: -ext[k][4])
    assert ext[k_blue][4] < -0.5, f"a class with a clearly negative region: {ext}"
    page.locator(".ow-tab").nth(k_blue).click()
    page.wait_for_selector(f".ow-canvas[data-selected='{k_blue}']")
    y, x = ext[k_blue][2:4]
    blue = page.evaluate(PIXEL, [x, y, w, h])
    assert blue[2] > blue[0] + 40, f"the map's most negative value (opposes) is blue: {blue} at {(x, y)}"
    seen = {"1": page.evaluate(CANVAS_STATS, ".ow-canvas")["checksum"]}
    for value in ("0", "0.6"):
        opacity.fill(value)
        page.wait_for_selector(f".ow-canvas[data-opacity='{value}']")
        seen[value] = page.evaluate(CANVAS_STATS, ".ow-canvas")["checksum"]
    assert len(set(seen.values())) == 3, f"the opacity control changes the overlay's pixels: {seen}"

    # Hovering reads the synced map value at that pixel (decoded from the bytes, offset and all).
    stage = page.locator(".ow-stage").bounding_box()
    for fx, fy in ((0.37, 0.61), (0.8, 0.15)):
        page.mouse.move(stage["x"] + stage["width"] * fx, stage["y"] + stage["height"] * fy)
        page.wait_for_function("([k]) => document.querySelector('.ow-readout').dataset.selected === String(k)", arg=[k_blue])
        data = page.locator(".ow-readout").evaluate("(e) => ({...e.dataset})")
        truth = kernel(page, MAPS + f"print(json.dumps(float(m[{k_blue}, {data['y']}, {data['x']}])))")
        assert abs(float(data["value"]) - truth) <= 1e-6 * max(1e-3, abs(truth)), (data, truth)
        assert "occluding here changes" in _text(page, ".ow-readout") and " pp" in _text(page, ".ow-readout")
    page.locator(".ow-tab").nth(0).click()
    page.wait_for_selector(".ow-canvas[data-selected='0']")


def test_worst_spot_moves_the_mask_to_the_largest_drop(page) -> None:
    for k in (0, 1):
        page.locator(".ow-tab").nth(k).click()
        page.wait_for_selector(f".ow-canvas[data-selected='{k}']")
        y0, x0, y1, x1 = kernel(page, f"import json\nprint(json.dumps([int(v) for v in w.result.most_important({k}).box]))")
        h, w = kernel(page, "print(list(w.map_data['shape'][1:]))")
        page.locator("button", has_text="Worst spot").click()
        stage = page.locator(".ow-stage").bounding_box()
        sx, sy = stage["width"] / w, stage["height"] / h
        expected = [stage["x"] + x0 * sx, stage["y"] + y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy]
        page.wait_for_function(
            "(e) => { const b = document.querySelector('.ow-mask').getBoundingClientRect();"
            " return Math.abs(b.left - e[0]) < 2 && Math.abs(b.top - e[1]) < 2"
            " && Math.abs(b.width - e[2]) < 2 && Math.abs(b.height - e[3]) < 2; }",
            arg=expected, timeout=10_000)
        # The kernel previews that very box (polled in the kernel until it has answered).
        box = kernel(page, "import json, time\nt = time.monotonic()\nwhile w.preview.get('box') != "
                           f"{[y0, x0, y1, x1]} and time.monotonic() - t < 30: time.sleep(0.05)\n"
                           "print(json.dumps(w.preview.get('box')))")
        assert box == [y0, x0, y1, x1]
    page.locator(".ow-tab").nth(0).click()
    page.wait_for_selector(".ow-canvas[data-selected='0']")


def test_drag_tabs_and_colormap(page) -> None:
    before = _text(page, ".ow-score-columns")
    seq_before = int(page.locator(".ow-preview-summary").get_attribute("data-seq"))
    stage = page.locator(".ow-stage").bounding_box()
    mask = page.locator(".ow-mask").bounding_box()
    page.mouse.move(mask["x"] + mask["width"] / 2, mask["y"] + mask["height"] / 2)
    page.mouse.down()
    target_y = stage["y"] + stage["height"] * 0.85
    for i in range(1, 11):
        page.mouse.move(mask["x"] + mask["width"] / 2 - i * 8,
                        mask["y"] + mask["height"] / 2 + (target_y - mask["y"] - mask["height"] / 2) * i / 10)
    page.mouse.up()
    page.wait_for_function(
        "([seq, before]) => Number(document.querySelector('.ow-preview-summary').dataset.seq) > seq"
        " && document.querySelector('.ow-score-columns').innerText !== before",
        arg=[seq_before, before], timeout=30_000)
    assert page.locator(".ow-mask").bounding_box()["y"] > mask["y"] + 20, "the mask moved with the mouse"
    summary = _text(page, ".ow-preview-summary")
    assert "%" in summary and " pp)" in summary and "drop +0." not in summary, summary

    first = page.evaluate(CANVAS_STATS, ".ow-canvas")
    page.locator(".ow-tab").nth(1).click()
    page.wait_for_selector(".ow-canvas[data-selected='1']")
    second = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert second["checksum"] != first["checksum"], "switching tabs changed the map"
    assert second["version"] == first["version"], "no recomputation for a tab switch"
    page.locator("select[data-param='colormap']").select_option("PiYG")
    page.wait_for_selector(".ow-canvas[data-colormap='PiYG']")
    recoloured = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert recoloured["checksum"] != second["checksum"] and recoloured["version"] == second["version"]
    page.locator("select[data-param='colormap']").select_option("RdBu_r")
    page.wait_for_selector(".ow-canvas[data-colormap='RdBu_r']")
    page.locator(".ow-tab").nth(0).click()
    page.wait_for_selector(".ow-canvas[data-selected='0']")


def test_download_is_the_full_figure(page) -> None:
    canvas = page.locator(".ow-canvas").evaluate("(c) => [c.width, c.height]")
    with page.expect_download() as download:
        page.locator("button", has_text="Download PNG").click()
    path = page.artifacts / "downloaded.png"
    download.value.save_as(path)
    assert download.value.suggested_filename == "occlusion_military_uniform.png"
    _assert_figure(path, *canvas)


def test_recompute_error_and_stop(page) -> None:
    version = int(page.locator(".ow-canvas").get_attribute("data-version"))
    stride = page.locator("input[data-param='stride-number']")
    stride.fill("32")
    stride.press("Enter")
    page.wait_for_function(f"() => Number(document.querySelector('.ow-canvas').dataset.version) > {version}", timeout=60_000)
    page.wait_for_selector(".ow-root[data-status='done']", timeout=120_000)
    assert stride.input_value() == "32"

    # A bad value shows an inline error; the widget stays usable.
    stride.fill("0")
    stride.press("Enter")
    page.wait_for_selector(".ow-root[data-status='error']", timeout=30_000)
    assert "stride" in _text(page, ".ow-error")

    # A mask larger than the image: no mask box is drawn until the size is valid again.
    size = page.locator("input[data-param='mask_size-number']")
    size.fill("1000")
    size.press("Enter")
    page.wait_for_selector(".ow-mask", state="hidden")
    size.fill("40")
    size.press("Enter")
    page.wait_for_selector(".ow-mask", state="visible")

    # A slow sweep (stride 2: thousands of positions) and Stop: the status says it was cancelled.
    stride.fill("2")
    stride.press("Enter")
    page.wait_for_selector(".ow-root[data-status='running']", timeout=60_000)
    page.locator(".ow-stop").click()
    page.wait_for_selector(".ow-root[data-status='cancelled']", timeout=60_000)
    assert _text(page, ".ow-status") == "stopped"
    assert kernel(page, "import json\nprint(json.dumps(w.status))") == "cancelled"

    stride.fill("28")
    stride.press("Enter")
    page.wait_for_selector(".ow-root[data-status='done']", timeout=120_000)
    assert page.locator(".ow-error").is_hidden()


def test_methods_compare_and_layers(page) -> None:
    occlusion = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert page.locator(".ow-colorbar-gradient").get_attribute("data-signed") == "true"

    # Grad-CAM from the selector: another map, on a sequential scale from 0.
    page.locator(".ow-method[data-method='grad_cam']").click()
    page.wait_for_selector(".ow-canvas[data-method='grad_cam']", timeout=60_000)
    page.wait_for_selector(".ow-root[data-status='done']", timeout=60_000)
    page.wait_for_function(f"() => document.querySelector('.ow-canvas').dataset.version !== '{occlusion['version']}'")
    cam = page.evaluate(CANVAS_STATS, ".ow-canvas")
    assert cam["checksum"] != occlusion["checksum"], "the map changed"
    assert page.locator(".ow-colorbar-gradient").get_attribute("data-signed") == "false"
    ticks = page.locator(".ow-colorbar-ticks span").all_inner_texts()
    assert ticks[-1] == "0" and not any(t.startswith(("+", "\u2212")) or "e" in t for t in ticks), ticks
    assert "Grad-CAM" in _text(page, ".ow-colorbar-caption")
    assert page.locator(".ow-actions button").first.inner_text() == "Map peak"
    stage = page.locator(".ow-stage").bounding_box()
    page.mouse.move(stage["x"] + stage["width"] * 0.4, stage["y"] + stage["height"] * 0.6)
    page.wait_for_function("() => document.querySelector('.ow-readout').innerText.includes('Grad-CAM')", timeout=10_000)
    # Tabs and preview speak one unit: the tabs' percentages are the preview's unoccluded scores.
    assert "%" in page.locator(".ow-tab").nth(0).inner_text() and "%" in _text(page, ".ow-preview-summary")

    # The compare view: one panel per method of the kernel's table, each with its deletion and insertion AUC.
    from occlusion_widget.methods.registry import browser_table

    table = browser_table()
    n = len(table)
    page.locator(".ow-toggle[data-view='compare']").click()
    page.wait_for_function(f"() => document.querySelectorAll('.ow-compare-card').length === {n}", timeout=30_000)
    page.wait_for_selector(".ow-compare[data-status='done']", timeout=180_000)
    assert _text(page, ".ow-compare .ow-section-title").startswith(f"All {n} methods for ")
    cards = page.locator(".ow-compare-card")
    titles = [cards.nth(i).locator(".ow-compare-title").inner_text() for i in range(n)]
    assert titles == [m["title"] for m in table], titles
    for i in range(n):
        aucs = cards.nth(i).locator(".ow-aucs").inner_text()
        assert "deletion 0." in aucs.replace("\n", " ") and "insertion 0." in aucs.replace("\n", " "), aucs
    panels = [page.evaluate(CANVAS_STATS, f".ow-compare-card[data-method='{m['name']}'] canvas")["checksum"] for m in table]
    assert len(set(panels)) == n, "different maps"
    # Its download: all panels with their AUCs.
    with page.expect_download() as download:
        page.locator("button", has_text="Download PNG").click()
    path = page.artifacts / "compare.png"
    download.value.save_as(path)
    assert download.value.suggested_filename.startswith("compare_")
    _assert_figure(path, 4 * 188, 188)

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
    page.locator("select[data-param='activation_layer']").select_option("1._conv_stem")
    page.wait_for_function("() => document.querySelector('.ow-layer-summary').innerText.startsWith('1._conv_stem: 32 channels')",
                           timeout=60_000)
    page.locator(".ow-toggle[data-view='layers']").click()
    page.locator(".ow-method[data-method='occlusion']").click()
    page.wait_for_selector(".ow-canvas[data-method='occlusion']", timeout=30_000)
    page.wait_for_selector(".ow-root[data-status='done']", timeout=120_000)


def test_layout_fits_every_width_and_stays_still_on_hover(page) -> None:
    root = page.locator(".ow-root")
    # Hovering replaces the hint by a longer read-out: nothing beside the image may move.
    page.set_viewport_size({"width": 1280, "height": 1300})
    page.mouse.move(0, 0)
    page.wait_for_function("() => !document.querySelector('.ow-readout').dataset.value")
    root.scroll_into_view_if_needed()
    boxes = lambda: [page.locator(s).bounding_box() for s in (".ow-colorbar", ".ow-preview", ".ow-actions")]  # noqa: E731
    still = boxes()
    stage = page.locator(".ow-stage").bounding_box()
    for fx, fy in ((0.1, 0.1), (0.5, 0.5), (0.95, 0.9)):
        page.mouse.move(stage["x"] + stage["width"] * fx, stage["y"] + stage["height"] * fy)
        page.wait_for_function("(fx) => document.querySelector('.ow-readout').dataset.value !== undefined", arg=fx)
        assert boxes() == still, "hovering moved the colour bar, preview or buttons"

    # Number inputs and selects keep a visible border under a CSS reset with no JupyterLab variables (marimo).
    page.add_style_tag(content=RESET_CSS)
    borders = page.evaluate("""() => [...document.querySelectorAll('.ow-root input[type=number], .ow-root select')].map((e) => {
      const s = getComputedStyle(e); return [e.dataset.param, parseFloat(s.borderTopWidth), s.borderTopColor]; })""")
    assert borders and all(w >= 1 and c not in ("transparent", "rgba(0, 0, 0, 0)") for _, w, c in borders), borders
    page.evaluate("() => document.head.lastElementChild.remove()")

    # Narrow windows: at 800 px with JupyterLab's side panel open, and at 400 px (the panel closed:
    # open, it leaves the notebook no room at all), everything wraps inside the widget.
    for width, panel in ((800, "() => window.jupyterapp.commands.execute('filebrowser:activate')"),
                         (400, "() => window.jupyterapp.shell.collapseLeft()")):
        page.evaluate(panel)
        page.set_viewport_size({"width": width, "height": 1300})
        page.wait_for_function(f"() => innerWidth === {width}")
        with contextlib.suppress(Exception):  # JupyterLab lays out after the resize; the assert says what sticks out
            page.wait_for_function(f"() => ({OVERFLOW})().length === 0", timeout=10_000)
        assert page.evaluate(OVERFLOW) == [], f"at {width} px"
        root.scroll_into_view_if_needed()
        root.screenshot(path=str(page.artifacts / f"widget-{width}.png"))
    page.set_viewport_size({"width": 1280, "height": 1300})
    page.wait_for_function("() => innerWidth === 1280")


def test_saved_notebook_carries_state_and_a_picture(page, lab) -> None:
    notebook = lab[1]
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.press("Control+s")

    def saved() -> dict | None:
        """The notebook once JupyterLab has written it completely, with the widget's picture."""
        try:
            data = json.loads(notebook.read_text())
        except (json.JSONDecodeError, OSError):
            return None  # being written
        outputs = data["cells"][0]["outputs"]
        return data if any("image/png" in o.get("data", {}) for o in outputs) else None

    deadline = time.monotonic() + 60
    while (data := saved()) is None:
        assert time.monotonic() < deadline, f"no saved notebook with the picture: {notebook.read_text()[:500]}"
        time.sleep(0.2)  # polling the file for the condition above
    state = data["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    assert any(m.get("state", {}).get("_anywidget_id", "").endswith("OcclusionWidget") for m in state.values())
    errors = [m for m in page.console_messages if m.startswith("pageerror")]
    assert not errors, errors


# --- without a kernel: the widget as a saved page shows it (a model shim, no JupyterLab) -------------------

SHIM = """
function decode(o) {
  if (o && typeof o === "object" && !Array.isArray(o)) {
    if ("__bytes__" in o) { const s = atob(o.__bytes__); const b = new Uint8Array(s.length + 3);
      for (let i = 0; i < s.length; i++) b[i + 3] = s.charCodeAt(i);
      return new DataView(b.buffer, 3, s.length); }  // at an odd offset, as a view into a larger buffer can be
    const r = {}; for (const k in o) r[k] = decode(o[k]); return r; }
  return Array.isArray(o) ? o.map(decode) : o;
}
const state = decode(window.STATE);
const handlers = {};
window.sent = [];
window.model = { get: (k) => state[k], set: (k, v) => { state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); },
  on: (e, f) => (handlers[e] = handlers[e] || []).push(f),
  off: (e, f) => { handlers[e] = (handlers[e] || []).filter((g) => g !== f); },
  save_changes: () => {}, send: (m) => window.sent.push(m), ...window.EXTRA };
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`npm run build`'s output, built from the current js/ sources into a temporary folder (`npm ci` first on a fresh clone)."""
    if not (JS / "node_modules" / ".package-lock.json").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, capture_output=True, timeout=600)
    out = tmp_path_factory.mktemp("bundle")
    subprocess.run(["node", "build.mjs", "--outdir", str(out)], cwd=JS, check=True, capture_output=True, timeout=120)
    return out


def _static_page(bundle: Path, state: dict, extra: str) -> str:
    css, esm = (bundle / "widget.css").read_text("utf-8"), (bundle / "widget.js").read_text("utf-8")
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head><body><div id="host"></div>
<script>window.STATE = {json.dumps(state)}; window.EXTRA = {extra};</script>
<script type="module">
{SHIM}
const url = URL.createObjectURL(new Blob([{json.dumps(esm)}], {{ type: "text/javascript" }}));
const widget = await import(url);
widget.default.render({{ model: window.model, el: document.getElementById("host") }});
window.rendered = true;
</script></body></html>"""


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


@pytest.fixture(scope="module")
def saved_state() -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_model

    from occlusion_widget.widget import OcclusionWidget

    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    w = OcclusionWidget(tiny_model(), image, top_k=2)
    w.wait(60)
    assert w.status == "done", w.error
    state = {k: v for k, v in w.get_state().items() if not k.startswith("_")}
    w.close()
    return _encode(state)


@pytest.mark.parametrize("how", ["shim", "no pong"])
def test_without_a_kernel_the_saved_maps_stay_usable(browser, bundle, saved_state, tmp_path, how) -> None:
    extra = '{kernelless: true, availableMethods: ["occlusion", "saliency"]}' if how == "shim" else "{}"
    html = tmp_path / "page.html"
    html.write_text(_static_page(bundle, {**saved_state, "notice": "a note from the kernel"}, extra))
    with chromium_page(browser, {"width": 1000, "height": 1200}) as page:
        page.goto(html.as_uri())
        page.wait_for_function("() => window.rendered === true")
        # "no pong": the ping goes out and nobody answers; after 3 s the banner says so.
        page.wait_for_selector(".ow-banner", state="visible", timeout=10_000)
        assert "No kernel is running" in _text(page, ".ow-banner")
        assert page.evaluate("() => window.sent") == ([] if how == "shim" else [{"type": "ping"}])
        assert _text(page, ".ow-notice") == "a note from the kernel"
        for selector in ("input[data-param='stride-number']", "select[data-param='mask_value']", "input[data-param='top_k']",
                         ".ow-stop"):
            assert page.locator(selector).is_disabled(), selector
        methods = {b.get_attribute("data-method"): b.is_enabled() for b in page.locator(".ow-method").all()}
        if how == "shim":
            assert methods == {"occlusion": True, "saliency": True}, methods
        else:
            # Every method of the kernel's table (saved with the state), only the current one usable.
            assert methods == {m["name"]: m["name"] == "occlusion" for m in saved_state["methods_table"]}, methods
        # What needs no kernel still works: tabs, opacity, colormap, hover.
        first = page.evaluate(CANVAS_STATS, ".ow-canvas")
        page.locator(".ow-tab").nth(1).click()
        page.wait_for_selector(".ow-canvas[data-selected='1']")
        assert page.evaluate(CANVAS_STATS, ".ow-canvas")["checksum"] != first["checksum"]
        assert page.locator("input[data-param='opacity']").is_enabled()
        assert page.locator("select[data-param='colormap']").is_enabled()
        page.locator("select[data-param='colormap']").select_option("PiYG")
        page.wait_for_selector(".ow-canvas[data-colormap='PiYG']")
        stage = page.locator(".ow-stage").bounding_box()
        page.mouse.move(stage["x"] + stage["width"] * 0.3, stage["y"] + stage["height"] * 0.7)
        page.wait_for_function("() => document.querySelector('.ow-readout').dataset.value !== undefined")
        # The read-out is the synced value, decoded from bytes that start at an odd offset of their buffer.
        data = page.locator(".ow-readout").evaluate("(e) => ({...e.dataset})")
        import numpy as np

        maps = np.frombuffer(base64.b64decode(saved_state["map_data"]["data"]["__bytes__"]), "<f4")
        maps = maps.reshape(saved_state["map_data"]["shape"])
        truth = float(maps[1, int(data["y"]), int(data["x"])])
        assert abs(float(data["value"]) - truth) <= 1e-6 * max(1e-3, abs(truth)), (data, truth)
        errors = [m for m in page.console_messages if m.startswith("pageerror")]
        assert not errors, errors


def test_the_method_table_and_the_percentile_clip_in_the_page(browser, bundle, saved_state, tmp_path) -> None:
    """The buttons come from the saved `methods_table` (a made-up sixth method shows with its title and hint), and
    "clip at percentile" rescales the map and colour bar in the browser to Python's colour_limit, as view state."""
    import numpy as np

    from occlusion_widget.render import colour_limit

    sixth = {**saved_state["methods_table"][-1], "name": "deconvnet", "title": "Deconvnet", "hint": "Deconvnet: made up here"}
    state = {**saved_state, "methods_table": [*saved_state["methods_table"], sixth]}
    html = tmp_path / "page.html"
    html.write_text(_static_page(bundle, state, "{kernelless: true}"))
    with chromium_page(browser, {"width": 1000, "height": 1200}) as page:
        page.goto(html.as_uri())
        page.wait_for_function("() => window.rendered === true")
        buttons = page.locator(".ow-method")
        assert buttons.all_text_contents() == [m["title"] for m in state["methods_table"]]
        assert page.locator(".ow-method[data-method='deconvnet']").get_attribute("title").startswith("Deconvnet: made up here")
        assert _text(page, ".ow-title") == state["methods_table"][0]["heading"]
        maps = np.frombuffer(base64.b64decode(saved_state["map_data"]["data"]["__bytes__"]), "<f4")
        maps = maps.reshape(saved_state["map_data"]["shape"])
        signed = saved_state["map_data"]["signed"]
        page.wait_for_selector(".ow-colorbar-gradient[data-limit]")
        full = float(page.locator(".ow-colorbar-gradient").get_attribute("data-limit"))
        assert abs(full - colour_limit(maps[0], signed)) <= 1e-6 * abs(full)
        assert "clipped" not in _text(page, ".ow-colorbar-caption")
        before = page.evaluate(CANVAS_STATS, ".ow-canvas")
        page.locator("select[data-param='percentile']").select_option("95")
        page.wait_for_function("() => document.querySelector('.ow-colorbar-caption').textContent.includes('clipped')")
        assert _text(page, ".ow-colorbar-caption").endswith("(clipped at the 95th percentile)")
        clipped = float(page.locator(".ow-colorbar-gradient").get_attribute("data-limit"))
        expected = colour_limit(maps[0], signed, 95)
        assert abs(clipped - expected) <= 1e-6 * abs(expected) and clipped < full
        assert page.evaluate(CANVAS_STATS, ".ow-canvas")["checksum"] != before["checksum"]
        assert page.evaluate("() => window.model.get('percentile')") == 95, "kept as view state (the synced trait)"
        page.locator("select[data-param='percentile']").select_option("")
        page.wait_for_function("() => !document.querySelector('.ow-colorbar-caption').textContent.includes('clipped')")
        assert page.evaluate("() => window.model.get('percentile')") is None
        errors = [m for m in page.console_messages if m.startswith("pageerror")]
        assert not errors, errors


def test_detection_boxes_are_drawn_and_a_click_selects_or_adds_the_objects_tab(browser, bundle, tmp_path) -> None:
    """A detector's widget saved without a kernel: its boxes over the image; a click on a box with a tab selects
    that tab (the map redraws), a click on one without sets target_objects with it appended (the kernel's trait)."""
    import numpy as np
    import torch

    from occlusion_widget import ImageClassifier
    from occlusion_widget.engine.targets_demo import CATEGORIES, load_demo_models, synthetic_scene
    from occlusion_widget.widget import OcclusionWidget

    torch.set_num_threads(1)
    det = ImageClassifier(load_demo_models()[1], (64, 64), CATEGORIES)
    w = OcclusionWidget(det, synthetic_scene(np.random.default_rng(0))[0], min_score=0.4, mask_size=16, stride=8)
    w.wait(60)
    assert w.status == "done" and len(w.classes) == 2, (w.error, w.classes)
    state = _encode({k: v for k, v in w.get_state().items() if not k.startswith("_")})
    drawn = [i for i, d in enumerate(w.detections) if d["score"] >= 0.3]
    w.close()
    html = tmp_path / "page.html"
    html.write_text(_static_page(bundle, state, "{kernelless: true}"))
    with chromium_page(browser, {"width": 1000, "height": 1200}) as page:
        page.goto(html.as_uri())
        page.wait_for_function("() => window.rendered === true")
        boxes = page.locator(".ow-box")
        assert sorted(int(i) for i in boxes.evaluate_all("(bs) => bs.map((b) => b.dataset.index)")) == drawn
        assert page.locator(".ow-box[data-tab='0']").get_attribute("class").count("ow-box-selected") == 1
        assert page.locator(".ow-box[data-tab='1'] .ow-box-label").text_content() == state["classes"][1]["name"]
        page.locator(".ow-box[data-tab='1']").click()
        page.wait_for_selector(".ow-canvas[data-selected='1']")
        assert page.evaluate("() => window.model.get('selected')") == 1
        assert "ow-box-selected" in page.locator(".ow-box[data-tab='1']").get_attribute("class")
        page.locator(".ow-box[data-tab='-1']").first.click()
        added = page.evaluate("() => window.model.get('target_objects')")
        assert len(added) == 3 and added[:2] == [c["target"] for c in state["classes"]] and added[2]["kind"] == "detection"
        errors = [m for m in page.console_messages if m.startswith("pageerror")]
        assert not errors, errors

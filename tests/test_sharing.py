"""Sharing notebooks: a headless run (nbclient, as nbconvert --execute and papermill do) saves the
finished figure, and nbconvert's HTML shows it with the network off."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# The kernel imports the tiny model of conftest.py; each forward sleeps so that every sweep outlasts its cell.
SETUP = f"""import sys, torch
sys.path.insert(0, {str(TESTS)!r})
torch.set_num_threads(1)
from conftest import tiny_model
from occlusion_widget.widget import OcclusionWidget
image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
w = OcclusionWidget(tiny_model(delay=0.3), image, stride=4, top_k=2)
w"""


def _notebook(*sources: str) -> dict:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
             for i, s in enumerate(sources)]
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def _execute(path: Path, *sources: str, env: dict | None = None) -> dict:
    """Run the cells as ``jupyter nbconvert --execute`` would, save, and read the file back."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.reads(json.dumps(_notebook(*sources)), as_version=4)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    nbformat.write(nb, path)
    return json.loads(path.read_text())


def _png(output: dict) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(output["data"]["image/png"]))).convert("RGB")).astype(float)


def _expected_png(stride: int) -> np.ndarray:
    """The figure of the same maps computed here (same model, image and parameters)."""
    import torch

    sys.path.insert(0, str(TESTS))
    from conftest import tiny_model
    from PIL import Image

    from occlusion_widget import occlusion_sensitivity
    from occlusion_widget.render import figure_png

    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    result = occlusion_sensitivity(tiny_model(), image, top_k=2, stride=stride)
    return np.asarray(Image.open(io.BytesIO(figure_png(result))).convert("RGB")).astype(float)


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict:
    """A two-cell notebook run headless; the second cell changes the stride (its sweep ends after the last cell)."""
    path = tmp_path_factory.mktemp("headless") / "shared.ipynb"
    return _execute(path, SETUP, "w.stride = 8")


def test_headless_run_saves_the_finished_figure(executed):
    outputs = executed["cells"][0]["outputs"]
    static = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(static) == 1, [sorted(o.get("data", {})) for o in outputs]
    assert WIDGET_VIEW not in static[0]["data"], "the static output must not be a widget view (nbconvert ranks it first)"
    caption = "".join(static[0]["data"]["text/plain"])
    assert caption.startswith("occlusion maps: thing"), caption
    png = _png(static[0])
    assert png.shape[0] > 100 and png.shape[1] > 200
    assert png.std() > 10, "the figure is not blank"
    # The figure shows the last cell's settings (stride 8), whose sweep finished after the cell's code.
    expected = _expected_png(8)
    assert png.shape == expected.shape
    assert np.abs(png - expected).mean() < 0.01 * 255, "the saved figure is not the stride-8 result"
    assert np.abs(png - _expected_png(4)).mean() > 0.1, \
        "the stride-4 and stride-8 figures must differ for this test to mean anything"


def test_interactive_runs_do_not_wait(tmp_path):
    """With the wait switched off (as in an interactive front end) the cell ends before the sweep: no figure."""
    nb = _execute(tmp_path / "quick.ipynb", SETUP, env={"OCCLUSION_WIDGET_WAIT": "never"})
    assert not [o for o in nb["cells"][0]["outputs"] if "image/png" in o.get("data", {})]


def test_headless_detection(monkeypatch):
    import IPython

    from occlusion_widget.widget import snapshot

    class Kernel:
        def __init__(self, allow_stdin):
            self.parent = {"header": {"msg_type": "execute_request"}, "content": {"allow_stdin": allow_stdin}}

        def get_parent(self, channel="shell"):
            return self.parent

    class Shell:
        kernel = Kernel(False)

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell)
    monkeypatch.delenv(snapshot.WAIT_ENV, raising=False)
    assert snapshot.is_headless()
    Shell.kernel = Kernel(True)
    assert not snapshot.is_headless()
    monkeypatch.setenv(snapshot.WAIT_ENV, "always")
    assert snapshot.is_headless()
    monkeypatch.setenv(snapshot.WAIT_ENV, "sometimes")
    with pytest.raises(ValueError, match="OCCLUSION_WIDGET_WAIT='sometimes' is not allowed"):
        snapshot.is_headless()


def _browser():
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    return manager, browser


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
@pytest.mark.parametrize("widget_state", [True, False], ids=["with-widget-state", "without-widget-state"])
def test_nbconvert_html_shows_the_figure_offline(executed, tmp_path, widget_state):
    """nbconvert's HTML of the executed notebook, opened with the network off: the figure is drawn."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.reads(json.dumps(executed), as_version=4)
    if not widget_state:  # as JupyterLab saves by default
        nb.metadata.pop("widgets", None)
    else:
        assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    page_path = tmp_path / "shared.html"
    page_path.write_text(html, "utf-8")
    manager, browser = _browser()
    try:
        context = browser.new_context(viewport={"width": 1100, "height": 1400})
        context.set_offline(True)
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        page = context.new_page()
        page.goto(page_path.as_uri())
        page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 200)")
        shown = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-child')].map(c => ({
            visible: c.getBoundingClientRect().height > 0, img: !!c.querySelector('img'), text: c.innerText.slice(0, 80)}))""")
        assert [s["img"] for s in shown if s["visible"]] == [True], shown  # only the figure: no repr text, no blank widget
        box = page.locator(".jp-OutputArea-child img").bounding_box()
        pixels = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(io.BytesIO(page.screenshot(clip=box)))).astype(float)
        assert pixels[..., :3].std() > 10, "the figure is blank"
        red = (pixels[..., 0] - pixels[..., 2]) > 60
        blue = (pixels[..., 2] - pixels[..., 0]) > 60
        assert red.mean() > 0.005 and blue.mean() > 0.005, "the diverging map colours are drawn"
    finally:
        browser.close()
        manager.stop()


# --- reopening in JupyterLab: the saved notebook, a fresh kernel that does not hold the widget --------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free localhost port with widget state saving OFF (its default).

    Yields (base url, token, root, data dir).
    """
    import secrets
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    work = tmp_path_factory.mktemp("lab")
    (work / "notebooks").mkdir()
    settings = work / "settings" / "@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "ws"),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "JUPYTER_DATA_DIR": str(work / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
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
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (work / "jupyter.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, (work / "jupyter.log").read_text()[-2000:]
                time.sleep(0.5)  # polling the server's start, not waiting for a result
        yield base, token, work / "notebooks", work / "data"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _save_as_lab_would(executed: dict, path: Path, data_dir: Path, widget_state: bool) -> None:
    """The executed notebook, signed (as JupyterLab signs what it saves, so it is trusted when reopened)."""
    import nbformat
    from nbformat.sign import NotebookNotary

    nb = nbformat.reads(json.dumps(executed), as_version=4)
    if not widget_state:
        nb.metadata.pop("widgets", None)
    NotebookNotary(data_dir=str(data_dir)).sign(nb)
    nbformat.write(nb, path)


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
@pytest.mark.parametrize("widget_state", [False, True], ids=["default-no-widget-state", "widget-state-saved"])
def test_reopened_in_jupyterlab_shows_the_maps(executed, lab, widget_state):
    base, token, root, data_dir = lab
    name = f"reopen_{widget_state}.ipynb"
    _save_as_lab_would(executed, root / name, data_dir, widget_state)
    manager, browser = _browser()
    try:
        page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
        page.goto(f"{base}/lab/workspaces/{name[:-6]}/tree/{name}?reset&token={token}")  # only this notebook open
        page.wait_for_selector(".jp-OutputArea-child", state="attached", timeout=90_000)
        outputs = ("[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[0]"
                   ".querySelectorAll('.jp-OutputArea-child')]")
        if widget_state:  # the widget comes back from the saved state, knows it has no kernel, and the static copy hides
            page.wait_for_selector(".ow-root", timeout=60_000)
            page.wait_for_selector(".ow-banner:visible", timeout=30_000)
            assert page.locator(".ow-root").get_attribute("data-kernel") == "no"
        else:
            page.wait_for_function(
                f"() => {outputs}.some(c => c.querySelector('img') && c.querySelector('img').naturalWidth > 200)",
                timeout=60_000)
        shown = page.evaluate(f"""() => {outputs}.filter(c => c.getBoundingClientRect().height > 0)
                                   .map(c => ({{img: !!c.querySelector('img'), live: !!c.querySelector('.ow-root'),
                                                text: c.innerText.slice(0, 80)}}))""")
        assert not any("Error displaying widget" in s["text"] for s in shown), shown
        page.screenshot(path=str(root / f"{name}.png"))
        assert len(shown) == 1 and shown[0]["live" if widget_state else "img"], shown  # one picture, nothing broken
        target = page.locator(".ow-canvas" if widget_state else ".jp-OutputArea-child img").first
        target.scroll_into_view_if_needed()
        pixels = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(io.BytesIO(target.screenshot()))).astype(float)
        assert pixels[..., :3].std() > 10, "blank"
    finally:
        browser.close()
        manager.stop()

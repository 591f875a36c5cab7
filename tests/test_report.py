"""The standalone report: one self-contained HTML file that works offline, without a kernel."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import occlusion_widget.widget.frontend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import tiny_model  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def widget():
    from occlusion_widget.widget import OcclusionWidget

    torch.set_num_threads(1)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    w = OcclusionWidget(tiny_model(), image, stride=4, mask_size=8, top_k=2)
    w.wait(120)
    w.method = "grad_cam"
    w.wait(120)
    w.method = "occlusion"
    w.wait(120)
    assert w.status == "done", w.error
    yield w
    w.close()


@pytest.fixture(scope="module")
def report(widget, tmp_path_factory) -> Path:
    from occlusion_widget.widget.report import write_report

    return write_report(widget, tmp_path_factory.mktemp("report") / "report.html")


def test_report_is_self_contained(report, widget):
    text = report.read_text("utf-8")
    assert not re.search(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=", text), "nothing is loaded from elsewhere"
    assert not re.search(r"https?://(?!www\.w3\.org)", text.split('id="ow-data"')[0]), "no URL in the page around the data"
    bundle = occlusion_widget.widget.frontend.bundle_file("widget.js").read_text("utf-8")
    last_line = bundle.strip().splitlines()[-2].strip()  # esbuild's export of the module's default
    assert last_line.startswith("widget_default as default") and last_line in text  # the bundle is inlined
    assert text.count("<script") == 2  # the data and the module


def test_report_refuses_bad_paths(widget, tmp_path):
    from occlusion_widget.widget.report import write_report

    with pytest.raises(ValueError, match=r"path='.*report.txt'.*\.html"):
        write_report(widget, tmp_path / "report.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(widget, tmp_path / "missing" / "report.html")


def test_quantised_maps_round_trip():
    from occlusion_widget.widget.report import _quantise

    values = np.random.default_rng(0).normal(0, 0.2, 1000).astype("<f4")
    values[7] = np.nan
    q = _quantise(values.tobytes())
    import base64
    import zlib

    codes = np.frombuffer(zlib.decompress(base64.b64decode(q["$f32q"])), dtype="<u2")
    back = np.where(codes == 65535, np.nan, q["lo"] + codes * (q["hi"] - q["lo"]) / 65534)
    span = np.nanmax(values) - np.nanmin(values)
    np.testing.assert_allclose(back, values, rtol=0, atol=span / 65534)
    assert np.isnan(back[7])


def _nearest(boxes: np.ndarray, x: float, y: float) -> tuple[int, int]:
    cy = (boxes[..., 0] + boxes[..., 2] - 1) / 2
    cx = (boxes[..., 1] + boxes[..., 3] - 1) / 2
    d = (cy - y) ** 2 + (cx - x) ** 2
    return np.unravel_index(int(np.argmin(d)), d.shape)  # type: ignore[return-value]


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_report_works_offline_in_chromium(report, widget):
    from playwright.sync_api import sync_playwright

    result = widget.computed_results()["occlusion"]
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 1300})
            context.set_offline(True)
            context.on("request", lambda r: requests.append(r.url))
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "blob:", "data:"))
                          else route.abort())
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri())
            page.wait_for_function("() => document.getElementById('ow-report').dataset.ready", timeout=30_000)
            assert page.evaluate("() => document.getElementById('ow-report').dataset.ready") == "true", errors
            model = "document.getElementById('ow-report').owModel"
            assert page.evaluate(f"() => {model}.kernelless") is True
            assert sorted(page.evaluate(f"() => {model}.availableMethods")) == ["grad_cam", "occlusion"]

            # Hover: the readout gives the map's value under the pointer.
            stage = page.locator(".ow-stage").bounding_box()
            page.mouse.move(stage["x"] + stage["width"] * 0.3, stage["y"] + stage["height"] * 0.6)
            page.wait_for_function("() => document.querySelector('.ow-readout').dataset.value !== undefined")
            r = page.evaluate("() => ({...document.querySelector('.ow-readout').dataset})")
            expected = result.maps[int(r["selected"]), int(r["y"]), int(r["x"])]
            scale = np.abs(result.maps).max()
            assert abs(float(r["value"]) - expected) <= 1e-4 * scale, (r, expected)

            # Class tabs: the second class's map.
            page.locator(".ow-tab").nth(1).click()
            page.wait_for_function("() => document.querySelector('.ow-tab-active') === document.querySelectorAll('.ow-tab')[1]")
            page.mouse.move(stage["x"] + stage["width"] * 0.3, stage["y"] + stage["height"] * 0.6 + 1)
            page.wait_for_function("() => document.querySelector('.ow-readout').dataset.selected === '1'")
            r = page.evaluate("() => ({...document.querySelector('.ow-readout').dataset})")
            assert abs(float(r["value"]) - result.maps[1, int(r["y"]), int(r["x"])]) <= 1e-4 * scale, r

            # Drag the mask: the preview answers from the nearest mask position of the sweep.
            mask = page.locator(".ow-mask").bounding_box()
            page.mouse.move(mask["x"] + mask["width"] / 2, mask["y"] + mask["height"] / 2)
            page.mouse.down()
            page.mouse.move(stage["x"] + stage["width"] * 0.8, stage["y"] + stage["height"] * 0.2, steps=5)
            page.mouse.up()
            page.wait_for_function(f"() => {model}.get('preview').seq === {model}.get('preview_request').seq")
            request = page.evaluate(f"() => {model}.get('preview_request')")
            preview = page.evaluate(f"() => {model}.get('preview')")
            assert preview.get("snapped") is True, preview  # answered by the page, not a saved kernel preview
            gy, gx = _nearest(result.boxes, request["x"], request["y"])
            assert preview["box"] == [int(v) for v in result.boxes[gy, gx]], (preview, request)
            assert [o["id"] for o in preview["occluded"]] == [int(i) for i in result.top_ids[gy, gx]]
            np.testing.assert_allclose([o["score"] for o in preview["occluded"]], result.top_scores[gy, gx], rtol=1e-5)
            occluded = result.base_scores - result.grid[:, gy, gx]
            np.testing.assert_allclose([t["occluded"] for t in preview["targets"]], occluded, rtol=1e-5, atol=1e-7)
            summary = page.locator(".ow-preview-summary").inner_text()
            assert f"{100 * occluded[1]:.1f}%" in summary, (summary, occluded)  # the second tab is selected

            # Another computed method.
            page.locator(".ow-method[data-method='grad_cam']").click()
            page.wait_for_selector(".ow-canvas[data-method='grad_cam']", timeout=10_000)
            assert page.evaluate(f"() => {model}.get('map_data').method") == "grad_cam"
        finally:
            browser.close()
    assert errors == [], errors
    assert requests and all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests

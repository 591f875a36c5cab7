"""AuditWidget: the gallery's synced state, its sort/filter rules, opening a row in an OcclusionWidget,
and the gallery's ES module in Chromium (a plain page with a small fake widget model, no JupyterLab)."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import traitlets
from conftest import assert_close, tiny_model
from PIL import Image

from occlusion_widget.audit import Audit, audit
from occlusion_widget.audit.gallery import (
    AuditGallery,
    AuditWidget,
    asset_path,
    composite,
)

SWEEP = {"mask_size": 8, "stride": 8}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def tiny_audit(tmp_path_factory, one_thread) -> Audit:
    """8 images with true labels: rows 0, 2, 4, 6 are labelled as the model predicts (correct), the others not."""
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 32, 32, generator=g) for _ in range(8)]
    data = []
    for i, x in enumerate(images):
        pred = model.predict(x, k=1)[0][0]
        data.append((x, pred if i % 2 == 0 else (pred + 1 + i % 3) % 10))
    return audit(model, data, out=tmp_path_factory.mktemp("audit"), progress=False, **SWEEP)


@pytest.fixture
def widget(tiny_audit):
    w = AuditWidget(tiny_audit)
    yield w
    w.close()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- synced state --------------------------------------------------------------------------------------------------

def test_rows_thumbnails_and_summary_follow_the_table(widget, tiny_audit) -> None:
    t, g = tiny_audit.table, widget.gallery
    assert [r["row"] for r in g.rows] == list(range(len(t))) and len(g.thumbs) == len(t)
    json.dumps(g.rows, allow_nan=False)  # the browser parses JSON: no NaN may reach it
    for r, (_, rec) in zip(g.rows, t.iterrows(), strict=True):
        assert r["image_id"] == rec["image_id"] and r["confidence"] == rec["confidence"]
        assert r["correct"] == bool(rec["correct"]) and r["true_name"] == rec["true_name"]
        assert r["pointing_hit"] is None  # no annotations: NaN/None became null
    assert {_decode(b).shape for b in g.thumbs} == {(96, 96, 3)}
    assert g.numeric_columns[0] == "confidence"
    assert "deletion_auc" not in g.numeric_columns and "pointing_hit" not in g.numeric_columns  # no values
    assert not any(c.startswith("time_") or c in ("target", "peak_y") for c in g.numeric_columns)
    assert g.has_labels and g.class_field == "true_name" and g.classes == sorted(t["true_name"].unique())

    summary = g.summary
    assert summary["columns"][:3] == ["class", "rows", "accuracy"]
    by_class = {r[0]: r for r in summary["rows"]}
    assert set(by_class) == set(g.classes) | {"all"}
    for name, part in list(t.groupby("true_name")) + [("all", t)]:
        assert by_class[name][1] == len(part)
        assert by_class[name][2] == pytest.approx(part["correct"].astype(float).mean())
        k = summary["columns"].index("mean concentration")
        assert by_class[name][k] == pytest.approx(part["concentration"].mean())
    means = tiny_audit.class_means()
    assert [m["name"] for m in g.class_means] == list(means)
    assert [m["count"] for m in g.class_means] == [int((t["target_name"] == n).sum()) for n in means]


def test_composite_colours_support_red_and_opposition_blue() -> None:
    image = np.full((32, 32, 3), 128, np.uint8)
    smap = np.zeros((32, 32), np.float32)
    smap[:, :8], smap[:, -8:] = 0.5, -0.5
    out = composite(image, smap, signed=True, cmap="RdBu_r", opacity=1.0, size=32).astype(int)
    left, middle, right = out[:, :4].mean((0, 1)), out[:, 14:18].mean((0, 1)), out[:, -4:].mean((0, 1))
    assert left[0] > left[2] + 50 and right[2] > right[0] + 50  # RdBu_r: dark red, dark blue
    np.testing.assert_array_equal(middle, [128, 128, 128])  # no evidence: the image itself
    faded = composite(image, smap, signed=True, cmap="RdBu_r", opacity=0.0, size=32)
    np.testing.assert_array_equal(faded, image)
    nan_map = np.full((32, 32), np.nan, np.float32)
    np.testing.assert_array_equal(composite(image, nan_map, signed=True, cmap="RdBu_r", opacity=1.0, size=16),
                                  np.full((16, 16, 3), 128, np.uint8))


def test_sort_and_filter_rules(widget, tiny_audit) -> None:
    t = tiny_audit.table
    assert list(widget.visible_rows().index) == list(range(len(t)))
    widget.sort_by, widget.descending = "confidence", True
    conf = widget.visible_rows()["confidence"].to_numpy()
    assert len(conf) == len(t) and np.all(np.diff(conf) <= 0)
    widget.filter_correct = "incorrect"
    shown = widget.visible_rows()
    assert len(shown) == int((~t["correct"].astype(bool)).sum()) and not shown["correct"].any()
    widget.filter_correct, widget.filter_class = "all", widget.gallery.classes[0]
    assert set(widget.visible_rows()["true_name"]) == {widget.gallery.classes[0]}
    widget.filter_class = ""
    lo = float(t["concentration"].median())
    widget.filter_metric, widget.filter_min = "concentration", lo
    assert list(widget.visible_rows().index) == sorted(
        np.flatnonzero(t["concentration"] >= lo), key=lambda i: (-t["confidence"][i], i))


def test_missing_values_sort_last_and_fail_ranges() -> None:
    table = pd.DataFrame({"score": [0.5, np.nan, 0.1, 0.9, np.nan], "true_name": ["a"] * 5,
                          "correct": [True, False, None, True, False]})
    g = AuditGallery(rows=[{"row": i} for i in range(5)], numeric_columns=["score"], classes=["a"])
    g.sort_by = "score"
    assert g.visible_rows(table) == [2, 0, 3, 1, 4]
    g.descending = True
    assert g.visible_rows(table) == [3, 0, 2, 1, 4]
    g.filter_metric, g.filter_max = "score", 0.6
    assert g.visible_rows(table) == [0, 2]
    g.filter_metric, g.filter_correct = "", "incorrect"
    assert g.visible_rows(table) == [1, 4]  # unknown correctness (None) is neither correct nor incorrect
    g.close()


def test_bad_values_are_refused_with_their_name(widget, tiny_audit) -> None:
    for name, value, allowed in [("sort_by", "nope", "confidence"), ("filter_metric", "image_id", "confidence"),
                                 ("filter_class", "dog", "thing"), ("filter_correct", "maybe", "incorrect"),
                                 ("opened", len(tiny_audit.table), "None or a row index"), ("filter_min", math.inf, "finite")]:
        with pytest.raises(traitlets.TraitError, match=name if name != "filter_correct" else "maybe") as err:
            setattr(widget, name, value)
        assert allowed in str(err.value)
    assert widget.sort_by == "" and widget.opened is None
    with pytest.raises(ValueError, match="thumb_size=0"):
        AuditWidget(tiny_audit, thumb_size=0)
    with pytest.raises(ValueError, match="opacity=2"):
        AuditWidget(tiny_audit, opacity=2)
    with pytest.raises(ValueError, match="colormap='nope'"):
        AuditWidget(tiny_audit, colormap="nope")
    with pytest.raises(TypeError, match="audit must be an Audit"):
        AuditWidget(tiny_audit.table)
    with pytest.raises(IndexError, match="open_image"):
        widget.open_image(-1)
    with pytest.raises(FileNotFoundError, match="nope.js"):
        asset_path("nope.js")


# --- opening a row ---------------------------------------------------------------------------------------------------

def test_a_click_opens_the_row_in_an_occlusion_widget(widget, tiny_audit) -> None:
    from occlusion_widget import OcclusionWidget

    t = tiny_audit.table
    widget.gallery.opened = 3  # what a click in the browser does
    first = widget.opened_widget
    assert isinstance(first, OcclusionWidget) and widget.detail.children == (first,)
    assert list(first.targets) == [int(t["target"][3])]
    assert (first.method, first.mask_size, first.stride) == ("occlusion", SWEEP["mask_size"], SWEEP["stride"])
    second = widget.open_image(5)
    assert widget.opened == 5 and widget.detail.children == (second,) and second is not first
    assert first.comm is None  # the previous widget was closed (its thread stopped)
    second.wait(60)
    assert second.status == "done", second.error
    # The same method and parameters; a dataset image comes back as its stored uint8 input, whose 1/255
    # rounding moves this map by 0.2-0.4% of its largest value here.
    assert_close(second.result.maps[0], tiny_audit.map(5), rtol=0.02)
    widget.gallery.opened = None
    assert widget.detail.children == () and widget.opened_widget is None


def test_an_image_file_opens_with_exactly_the_audits_input(tmp_path, one_thread) -> None:
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    a = audit(tiny_model(), [str(tmp_path / f"im{i}.png") for i in range(2)], out=tmp_path / "out", progress=False,
              **SWEEP)
    w = AuditWidget(a)
    try:
        opened = w.open_image(1)
        opened.wait(60)
        assert opened.status == "done", opened.error
        assert_close(opened.result.maps[0], a.map(1), rtol=1e-5)  # read from its path, preprocessed the same way
        assert not w.gallery.has_labels and w.gallery.class_field == "pred_name"
        assert w.gallery.classes == sorted(a.table["pred_name"].unique())
        assert "accuracy" not in w.gallery.summary["columns"]
    finally:
        w.close()


def test_a_gradient_audit_opens_with_its_method_and_parameters(tmp_path, one_thread) -> None:
    grey = np.random.default_rng(4).integers(96, 160, (32, 32, 1), dtype=np.uint8).repeat(3, axis=2)  # no colour of its own
    Image.fromarray(grey).save(tmp_path / "a.png")
    a = audit(tiny_model(), [str(tmp_path / "a.png")], out=tmp_path / "out", method="smoothgrad", progress=False,
              n_samples=4, noise_level=0.05)
    w = AuditWidget(a)
    try:
        opened = w.open_image(0)
        assert (opened.method, opened.n_samples, opened.noise_level) == ("smoothgrad", 4, 0.05)
        result = opened.wait(60)
        assert opened.status == "done", opened.error
        assert_close(result.maps[0], a.map(0), rtol=1e-5)  # same method, parameters and seed
        # A sequential colormap (inferno): the map's peak is light yellow (RdBu_r would make it dark red).
        thumb = _decode(w.gallery.thumbs[0]).astype(int)
        y, x = np.unravel_index(int(np.argmax(a.map(0))), (32, 32))
        r, g, b = thumb[3 * y:3 * y + 3, 3 * x:3 * x + 3].reshape(-1, 3).mean(0)
        assert r > 170 and g > 150 and b < g, (r, g, b)
    finally:
        w.close()


def test_without_a_model_the_gallery_says_how_to_open(tiny_audit) -> None:
    w = AuditWidget(Audit.open(tiny_audit.path))
    try:
        w.gallery.opened = 0
        assert "needs the model" in w.gallery.error and w.detail.children == ()
        with pytest.raises(RuntimeError, match="needs the model"):
            w.open_image(1)
    finally:
        w.close()


# --- the browser -----------------------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head>
<body><div id="host"></div>
<script>
const decode = (v) => Array.isArray(v) ? v.map(decode) : v && typeof v === "object" ? (v.__bytes__ !== undefined
  ? (() => {{ const b = Uint8Array.from(atob(v.__bytes__), (c) => c.charCodeAt(0)); return new DataView(b.buffer); }})()
  : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]))) : v;
const state = decode({state}); const handlers = {{}};
window.sets = []; window.saves = 0;
window.model = {{ get: (k) => state[k],
  set: (k, v) => {{ window.sets.push([k, v]); state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); }},
  on: (e, f) => (handlers[e] = handlers[e] || []).push(f),
  off: (e, f) => {{ handlers[e] = (handlers[e] || []).filter((g) => g !== f); }},
  save_changes: () => {{ window.saves += 1; }}, send: () => {{}} }};
</script>
<script type="module">
const url = URL.createObjectURL(new Blob([{esm}], {{ type: "text/javascript" }}));
const widget = await import(url);
window.visibleRows = widget.visibleRows;
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
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _open_page(browser: Any, gallery: AuditGallery, folder: Path, where: Path | None = None) -> tuple[Any, list[str]]:
    """A page rendering the gallery module (from ``where``, default the one the widget serves) over
    ``gallery``'s state; (page, page errors so far)."""
    state = {k: v for k, v in gallery.get_state().items() if not k.startswith("_")}
    js, css = (where / "gallery.js", where / "gallery.css") if where else (asset_path("gallery.js"), asset_path("gallery.css"))
    html = folder / "gallery.html"
    html.write_text(PAGE.format(css=css.read_text("utf-8"), state=json.dumps(_encode(state)),
                                esm=json.dumps(js.read_text("utf-8"))))
    page = browser.new_context(viewport={"width": 900, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(html.as_uri())
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => window.rendered === true", timeout=15_000)
    except PlaywrightTimeout:
        page.context.close()
        raise AssertionError(f"the gallery did not render: {errors}") from None
    return page, errors


@pytest.mark.browser
def test_the_browser_applies_the_python_rules(browser, tmp_path) -> None:
    """gallery.js's visibleRows and AuditGallery.visible_rows agree, missing values and booleans included."""
    table = pd.DataFrame({"score": [0.5, np.nan, 0.1, 0.9, np.nan, 0.5, -2.0],
                          "hit": [True, None, False, True, False, None, True],
                          "true_name": ["a", "b", "a", None, "b", "a", "b"],
                          "correct": [True, False, None, True, False, True, False]})
    rows = [{"row": i, **{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}}
            for i, rec in enumerate(table.astype(object).where(table.notna(), None).to_dict("records"))]
    g = AuditGallery(rows=rows, numeric_columns=["score", "hit"], classes=["a", "b"])
    page, errors = _open_page(browser, g, tmp_path)
    try:
        states = [{}, {"sort_by": "score"}, {"sort_by": "score", "descending": True}, {"sort_by": "hit", "descending": True},
                  {"filter_class": "a"}, {"filter_correct": "correct"}, {"filter_correct": "incorrect", "sort_by": "score"},
                  {"filter_metric": "score", "filter_min": 0.1, "filter_max": 0.5},
                  {"filter_metric": "hit", "filter_min": 0.5}, {"filter_metric": "score"}]
        for state in states:
            g.set_trait("sort_by", ""), g.set_trait("descending", False), g.set_trait("filter_class", "")
            g.set_trait("filter_correct", "all"), g.set_trait("filter_metric", "")
            g.set_trait("filter_min", None), g.set_trait("filter_max", None)
            for k, v in state.items():
                setattr(g, k, v)
            js = page.evaluate("([rows, s]) => window.visibleRows(rows, s)", [rows, {"class_field": "true_name", **state}])
            assert js == g.visible_rows(table), state
        assert not errors, errors
    finally:
        page.context.close()
        g.close()


@pytest.mark.browser
def test_the_gallery_in_chromium(browser, tiny_audit, tmp_path) -> None:
    w = AuditWidget(tiny_audit)
    t, n = tiny_audit.table, len(tiny_audit.table)
    page, errors = _open_page(browser, w.gallery, tmp_path)
    try:

        def order() -> list[int]:
            return [int(r) for r in page.eval_on_selector_all(
                ".owa-thumb:not([hidden])", "(cards) => cards.map((c) => c.dataset.row)")]

        # Every row has its thumbnail, decoded.
        page.wait_for_function("(n) => [...document.querySelectorAll('.owa-thumb img')]"
                               ".filter((i) => i.complete && i.naturalWidth === 96).length === n", arg=n)
        assert order() == list(range(n))
        assert page.locator(".owa-count").text_content() == f"{n} of {n}"

        # Sorting by confidence reorders the cards (the browser's rule is the Python one).
        page.select_option("select[data-control='sort_by']", "confidence")
        page.click("button[data-control='descending']")
        w.gallery.sort_by, w.gallery.descending = "confidence", True
        expected = w.gallery.visible_rows(t)
        assert order() == expected != list(range(n))
        assert list(np.diff(t["confidence"].to_numpy()[expected]) <= 0) == [True] * (n - 1)
        assert ["sort_by", "confidence"] in page.evaluate("() => window.sets")
        page.select_option("select[data-control='sort_by']", "concentration")  # its value joins the caption
        w.gallery.sort_by = "concentration"
        assert order() == w.gallery.visible_rows(t)
        first = page.locator(".owa-thumb:not([hidden]) .owa-metric").first.text_content()
        assert first == f"concentration {t['concentration'][w.gallery.visible_rows(t)[0]]:.3f}"
        page.select_option("select[data-control='sort_by']", "confidence")

        # "incorrect" hides the correct ones.
        page.select_option("select[data-control='filter_correct']", "incorrect")
        shown = order()
        assert shown == [i for i in expected if not t["correct"][i]] and shown
        hidden = page.eval_on_selector_all(".owa-thumb[hidden]", "(cards) => cards.map((c) => +c.dataset.row)")
        assert sorted(hidden) == sorted(np.flatnonzero(t["correct"].to_numpy(bool)).tolist())
        assert page.locator(".owa-count").text_content() == f"{len(shown)} of {n}"

        # A click sets `opened` to that row and marks the card.
        row = shown[-1]
        saves = page.evaluate("() => window.saves")
        page.click(f".owa-thumb[data-row='{row}']")
        assert page.evaluate("() => window.sets.at(-1)") == ["opened", row]
        assert page.evaluate("() => window.saves") == saves + 1
        assert page.locator(".owa-opened").get_attribute("data-row") == str(row)

        # The summary tab: a mean map per class and a table line per class plus "all".
        page.click(".owa-tab[data-tab='summary']")
        assert page.locator(".owa-gallery").is_hidden() and page.locator(".owa-summary").is_visible()
        page.wait_for_function("(k) => [...document.querySelectorAll('.owa-mean img')]"
                               ".filter((i) => i.complete && i.naturalWidth > 0).length === k", arg=len(w.gallery.class_means))
        assert page.locator(".owa-summary tbody tr").count() == len(w.gallery.classes) + 1
        assert not errors, errors
    finally:
        page.context.close()
        w.close()


@pytest.mark.browser
def test_the_built_bundle_renders_too(browser, tiny_audit, tmp_path) -> None:
    """What a wheel serves: esbuild's copy in occlusion_widget/static/audit/ (when this checkout was built)."""
    import occlusion_widget

    built = Path(occlusion_widget.__file__).parent / "static" / "audit"
    if not (built / "gallery.js").is_file():
        pytest.skip("no built bundle (npm --prefix js run build)")
    w = AuditWidget(tiny_audit)
    page, errors = _open_page(browser, w.gallery, tmp_path, where=built)
    try:
        n = len(tiny_audit.table)
        page.wait_for_function("(n) => [...document.querySelectorAll('.owa-thumb img')]"
                               ".filter((i) => i.complete && i.naturalWidth === 96).length === n", arg=n)
        page.click(".owa-thumb[data-row='1']")
        assert page.evaluate("() => window.sets.at(-1)") == ["opened", 1]
        assert not errors, errors
    finally:
        page.context.close()
        w.close()

"""OcclusionWidget driven from Python, without a browser: traits in, synced state out."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pytest
import torch
from conftest import (
    assert_close,
    near,
    patch_method,
    synced_maps,
    tiny_model,
    wait_done,
)
from helpers import LinearScore

from occlusion_widget import ImageClassifier, occlusion_sensitivity
from occlusion_widget.engine import mask_box
from occlusion_widget.methods.registry import METHODS
from occlusion_widget.widget import OcclusionWidget
from occlusion_widget.widget.frontend import to_png
from occlusion_widget.widget.plan import responsive_batch
from occlusion_widget.widget.runner import LatestRunner, Throttle


def test_default_widget_explains_the_sample_image_with_the_embedded_model(make_widget) -> None:
    from occlusion_widget.models import load_default_model, sample_image

    w = make_widget()
    assert w.model_name == "efficientnet_lite0"
    assert w.image_png.startswith(b"\x89PNG") and len(w.colormaps) >= 4
    wait_done(w, 300)
    expected = [i for i, _, _ in load_default_model().predict(sample_image(), k=3)]
    assert [c["id"] for c in w.classes] == expected
    assert w.map_data["shape"] == [3, 224, 224] and w.map_data["complete"]
    maps = synced_maps(w)
    assert np.isfinite(maps).all() and np.abs(maps).max() > 1e-3
    assert w.result.labels == [c["name"] for c in w.classes]
    assert w.progress == 1.0 and w.error == ""


def test_maps_equal_the_engine_for_the_same_parameters(make_widget, image) -> None:
    model = tiny_model()
    w = make_widget(model, image, top_k=3, mask_size=8, stride=4, mask_value=0.5, upsampling="nearest")
    wait_done(w)
    ref = occlusion_sensitivity(model, image, top_k=3, mask_size=8, stride=4, mask_value=0.5, upsampling="nearest")
    assert_close(synced_maps(w), ref.maps)
    assert_close(w.result.grid, ref.grid)
    assert [c["id"] for c in w.classes] == ref.targets.tolist()
    np.testing.assert_allclose([c["score"] for c in w.classes], ref.base_scores, rtol=1e-6)
    assert w.resolved_params["mask_size"] == [8, 8] and w.resolved_params["grid"] == [8, 8]
    lo, hi = w.map_data["range"][0]
    assert lo == pytest.approx(float(ref.maps[0].min())) and hi == pytest.approx(float(ref.maps[0].max()))

    w.targets = [4, 7]
    w.output = "logit"
    wait_done(w)
    ref = occlusion_sensitivity(model, image, targets=[4, 7], mask_size=8, stride=4, mask_value=0.5,
                                upsampling="nearest", output="logit")
    assert_close(synced_maps(w), ref.maps)
    assert [c["name"] for c in w.classes] == ["thing 4", "thing 7"]


def test_synced_maps_equal_the_hand_computed_drops_of_a_linear_model(make_widget) -> None:
    """score = sum(weight * x): occluding a box with the value v lowers it by sum over the box of
    weight * (x - v), computed here by hand, independently of the engine and its grid."""
    rng = np.random.default_rng(3)
    weight, x = rng.normal(size=(3, 20, 24)), rng.uniform(size=(3, 20, 24))
    model = ImageClassifier(LinearScore(torch.tensor(weight, dtype=torch.float32)), (20, 24), ["up", "down"], name="linear")
    mask, stride, value = (6, 5), (4, 3), 0.25
    w = make_widget(model, torch.tensor(x, dtype=torch.float32), targets=[0, 1], output="logit", mask_size=list(mask),
                    stride=list(stride), mask_value=value, upsampling="none")
    wait_done(w)
    ys, xs = range(0, 20, stride[0]), range(0, 24, stride[1])  # mask centres (clipping: from 0 to the edge)
    expected = np.zeros((len(ys), len(xs)))
    for iy, cy in enumerate(ys):
        for ix, cx in enumerate(xs):
            y0, x0 = max(cy - mask[0] // 2, 0), max(cx - mask[1] // 2, 0)
            y1, x1 = min(cy - mask[0] // 2 + mask[0], 20), min(cx - mask[1] // 2 + mask[1], 24)
            expected[iy, ix] = (weight * (x - value))[:, y0:y1, x0:x1].sum()
    maps = synced_maps(w)
    assert maps.shape == (2, len(ys), len(xs))
    scale = np.abs(weight * x).sum()  # float32 sums of terms of this size
    assert_close(maps[0], expected, scale=scale)
    assert_close(maps[1], -expected, scale=scale)
    assert [c["score"] for c in w.classes] == [near((weight * x).sum(), scale=scale), near(-(weight * x).sum(), scale=scale)]


def test_a_parameter_change_mid_sweep_cancels_it_and_only_the_new_result_lands(make_widget, image, monkeypatch) -> None:
    calls = []

    def spy(*args, progress, cancel, **kwargs):
        record = {"stride": kwargs["stride"], "after_cancel": 0}
        calls.append(record)

        def counting(done, total, partial):
            if cancel.is_set():
                record["after_cancel"] += 1
            progress(done, total, partial)

        record["result"] = real(*args, progress=counting, cancel=cancel, **kwargs)
        return record["result"]

    real = patch_method(monkeypatch, "occlusion", spy)
    w = make_widget(tiny_model(delay=0.05), image, mask_size=8, stride=2, batch_size=2)  # 256 positions, ~6 s
    published = []
    w.observe(lambda c: published.append((tuple(w.resolved_params.get("stride", ())), c["new"]["complete"])), "map_data")
    deadline = time.monotonic() + 30
    while not published and time.monotonic() < deadline:
        time.sleep(0.02)
    assert published and w.status == "running", "a partial map streams while the sweep runs"
    w.stride = 8
    changed_at = len(published)
    wait_done(w)

    first, last = calls[0], calls[-1]
    assert first["stride"] == 2 and not first["result"].complete, "the old sweep was cancelled"
    assert first["after_cancel"] <= 1, "it stopped within one batch"
    assert last["stride"] == 8 and last["result"].complete
    assert all(stride == (8, 8) for stride, _ in published[changed_at:]), "nothing from the stale sweep lands"
    assert published[-1] == ((8, 8), True)
    assert w.result.params.stride == (8, 8) and w.map_data["shape"] == [3, 32, 32]


def test_partial_maps_stream_throttled_and_cover_the_image_early(make_widget, image) -> None:
    w = make_widget(tiny_model(delay=0.02), image, mask_size=8, stride=2, batch_size=4)  # 64 batches
    events = []
    w.observe(lambda c: events.append((time.monotonic(), c["new"]["computed"][0], np.isnan(synced_maps(w)).any())), "map_data")
    wait_done(w)
    partial = [e for e in events if e[1] < 256]
    assert partial, "partial maps were published"
    assert partial[0][2], "the first partial (before the coarse lattice is done) has holes, drawn transparent"
    assert any(not nan for _, _, nan in partial), "a partial map covers the whole image before the end"
    assert len(events) < 64 / 2, "publications are throttled, not one per batch"
    gaps = np.diff([t for t, _, _ in partial])
    assert (gaps > 0.15).sum() >= len(gaps) - 1


def test_kernel_thread_is_free_while_a_map_is_computed(make_widget, image) -> None:
    w = make_widget(tiny_model(delay=0.05), image, mask_size=8, stride=2, batch_size=4)  # 64 batches, >= 3.2 s
    assert w.status == "running", "the constructor returns while the sweep runs"
    # The kernel's thread keeps working while the sweep runs: it is never blocked for a batch's worth of
    # time or more, and the sweep advances meanwhile (so the two really overlapped). Bounds are loose
    # (a loaded CI machine stalls threads too) but far below the sweep's own duration.
    progress_before, stamps = w.progress, [time.perf_counter()]
    while w.progress <= progress_before and stamps[-1] - stamps[0] < 20:
        sum(range(1000))
        stamps.append(time.perf_counter())
    assert w.status == "running"
    assert w.progress > progress_before, "the sweep went on while the kernel's thread worked"
    assert np.diff(stamps).max() < 1.0 and len(stamps) > 100, "the kernel's thread was never blocked for long"
    w.cancel()
    w.wait(30)
    assert w.status == "cancelled"
    assert w.result is None or not w.result.complete


def test_finished_sweeps_are_cached(make_widget, image, monkeypatch) -> None:
    sweeps = []
    real = METHODS["occlusion"].function
    patch_method(monkeypatch, "occlusion", lambda *a, **k: sweeps.append(k) or real(*a, **k))
    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    wait_done(w)
    first = synced_maps(w).copy()
    w.stride = 8
    wait_done(w)
    assert len(sweeps) == 2
    w.stride = 4  # back to earlier settings: published at once, before the setter returns
    assert w.status == "done" and not w._controller.busy
    np.testing.assert_array_equal(synced_maps(w), first)
    w.upsampling = "nearest"  # same positions, other upsampling: from the cache too
    assert w.status == "done" and w.result.params.upsampling == "nearest"
    w.wait(10)
    assert len(sweeps) == 2
    w.recompute(force=True)  # e.g. after the weights changed in place
    wait_done(w)
    assert len(sweeps) == 3


def test_bad_parameter_sets_error_and_a_good_one_recovers(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    wait_done(w)
    shown = w.map_data
    w.stride = 0
    w.wait(30)
    assert w.status == "error" and "stride" in w.error
    assert w.map_data is shown, "the previous maps stay displayed"
    with w.hold_trait_notifications():
        w.stride = 4
        w.mask_size = 1000
    w.wait(30)
    assert w.status == "error" and "mask_size" in w.error
    w.set_state({"mask_size": 6, "stride": 3})  # as the browser's controls send it
    wait_done(w)
    assert w.error == "" and w.result.params.mask_size == (6, 6) and w.result.params.stride == (3, 3)
    w.top_k = 0
    w.wait(30)
    assert w.status == "error" and "top_k" in w.error
    w.top_k = 2
    wait_done(w)
    assert len(w.classes) == 2


def test_a_model_that_raises_sets_error_and_the_widget_recovers(make_widget, image) -> None:
    model = tiny_model()

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise ZeroDivisionError("the model broke")

    real_forward = model.module.forward
    model.module.forward = broken
    w = make_widget(model, image, mask_size=8, stride=8)
    w.wait(30)
    assert w.status == "error" and "ZeroDivisionError: the model broke" in w.error
    model.module.forward = real_forward
    w.recompute()
    wait_done(w)
    assert w.error == ""


def test_traits_are_typed() -> None:
    from traitlets import TraitError

    traits = OcclusionWidget.class_traits()
    for name in ("mask_size", "stride", "mask_value", "mask_clipping", "upsampling", "output", "targets", "top_k",
                 "image_png", "map_data", "classes", "progress", "status", "error", "preview", "colormap", "opacity"):
        assert traits[name].metadata.get("sync") is True, name
        assert traits[name].help, f"{name} has no documentation"
    for name in ("layer", "batch_size", "device", "precision", "strategy"):
        assert not traits[name].metadata.get("sync"), name
    with pytest.raises(TraitError):
        OcclusionWidget.class_traits()["upsampling"].validate(None, "cubic")


def test_invalid_types_raise_trait_errors(make_widget, image) -> None:
    from traitlets import TraitError

    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    bad = [("stride", "big"), ("mask_value", "green"), ("upsampling", "cubic"), ("colormap", "jet"), ("opacity", 2.0)]
    for name, value in bad:
        with pytest.raises(TraitError):
            setattr(w, name, value)
    with pytest.raises(TypeError, match="unknown parameter"):
        OcclusionWidget(tiny_model(), image, strides=3)


def test_targets_and_top_k(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, targets=5, mask_size=8, stride=8)
    wait_done(w)
    assert [c["id"] for c in w.classes] == [5]
    w.top_k = 2  # the top-k control replaces explicit targets
    wait_done(w)
    assert w.targets is None and len(w.classes) == 2


def test_preview_matches_the_sweep_at_a_grid_position(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, top_k=2, mask_size=8, stride=4, mask_value=0.25)
    wait_done(w)
    r = w.result
    iy, ix = 3, 5
    answer = w.request_preview(x=ix * 4, y=iy * 4)
    assert answer["seq"] == w.preview_request["seq"]
    assert answer["box"] == r.boxes[iy, ix].tolist()
    for k, target in enumerate(answer["targets"]):
        assert target["id"] == int(r.targets[k])
        assert target["base"] - target["occluded"] == near(r.grid[k, iy, ix], scale=r.base_scores)
    assert len(answer["base"]) == 5 and len(answer["occluded"]) == 5
    assert answer["base"][0]["id"] == int(r.targets[0])
    fill = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(__import__("io").BytesIO(w.fill_png)))
    assert fill.shape == (32, 32, 3) and abs(int(fill[0, 0, 0]) - 64) <= 1


@pytest.mark.parametrize("clipping", [True, False])
def test_worst_spot_preview_gives_the_largest_drop(make_widget, image, clipping) -> None:
    w = make_widget(tiny_model(), image, top_k=2, mask_size=7, stride=3, mask_clipping=clipping)
    wait_done(w)
    for k, (y, x) in enumerate(w.map_data["worst"]):
        answer = w.request_preview(x=x, y=y)
        target = answer["targets"][k]
        assert target["base"] - target["occluded"] == near(w.result.grid[k].max(), scale=w.result.base_scores)
        assert answer["box"] == w.result.most_important(k).box.tolist()


def test_preview_error_is_reported(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    wait_done(w)
    w.mask_size = 100
    answer = w.request_preview(3, 3)
    assert "mask_size" in answer["error"]


@pytest.mark.parametrize(
    "centre, mask, clipping, box",
    [  # the same cases as js/test/geometry.test.js
        ((111.5, 111.5), (45, 45), True, (90, 90, 135, 135)),
        ((0, 0), (45, 45), True, (0, 0, 23, 23)),
        ((223, 223), (45, 45), True, (201, 201, 224, 224)),
        ((0, 0), (45, 45), False, (0, 0, 45, 45)),
        ((223, 10), (45, 20), False, (179, 0, 224, 20)),
        ((50, 60), (300, 10), True, (0, 55, 162, 65)),
    ],
)
def test_mask_box_matches_the_browser(centre, mask, clipping, box) -> None:
    assert mask_box(centre, mask, (224, 224), clipping) == box


def test_mask_box_matches_the_engine_grid() -> None:
    from occlusion_widget.engine.grid import MaskGrid

    for clipping in (True, False):
        grid = MaskGrid.build((50, 40), (9, 6), (7, 5), clipping)
        for iy in range(grid.shape[0]):
            for ix in range(grid.shape[1]):
                y0, x0, y1, x1 = grid.boxes[iy, ix]
                cy, cx = ((iy * 7, ix * 5) if clipping else (y0 + 9 // 2, x0 + 6 // 2))
                assert mask_box((cy, cx), (9, 6), (50, 40), clipping) == (y0, x0, y1, x1)


def test_static_png_in_the_display_bundle(make_widget, image, monkeypatch) -> None:
    import IPython.display

    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    wait_done(w)
    data, _ = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG")

    shown, updates = [], []

    class Handle:
        def update(self, obj, **kwargs):
            updates.append(obj)

    def fake_display(*objs, **kwargs):
        shown.append((objs, kwargs))
        return Handle() if kwargs.get("display_id") else None

    monkeypatch.setattr(IPython.display, "display", fake_display)
    w._ipython_display_()
    (main, _), (static, static_kwargs) = shown[:2]
    assert main[0]["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    assert "image/png" not in main[0], "the PNG lives in its own output, updated without touching the live view"
    assert static_kwargs["display_id"] is True and "image/png" in static[0]
    assert "application/vnd.jupyter.widget-view+json" not in static[0], "viewers without widgets show the PNG"
    w.stride = 8  # a finished sweep refreshes the static output before wait() returns
    wait_done(w)
    assert updates and base64.b64decode(updates[-1]["image/png"]) == w._snapshot.png(w.result)


def test_save_png_and_result_arrays(make_widget, image, tmp_path) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    path = tmp_path / "maps.png"
    w.save_png(path)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert w.result.maps.shape == (3, 32, 32) and w.result.complete


def test_model_and_image_can_be_replaced(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=8)
    wait_done(w)
    before = w.image_png
    w.image = np.full((40, 40, 3), 200, dtype=np.uint8)  # goes through the wrapper's preprocessing
    wait_done(w)
    assert w.image_png != before and tuple(w.image.shape) == (3, 32, 32)
    with pytest.raises(ValueError, match="1-D signal"):
        w.image = torch.rand(3, 50)


def test_helpers() -> None:
    clock = iter([0.0, 0.1, 0.25, 0.3, 0.45])
    throttle = Throttle(0.2, clock=lambda: next(clock))
    got = [throttle.ready(), throttle.ready(), throttle.ready(), throttle.ready(force=True), throttle.ready()]
    assert got == [True, False, True, True, False]
    assert responsive_batch((224, 224), {}) == 9  # the default 11x11 grid: its 3x3 coarse lattice is the first batch
    assert responsive_batch((224, 224), {"stride": 0}) is None
    assert to_png(np.zeros((1, 4, 5), np.float32)).startswith(b"\x89PNG")

    done = []
    gate = threading.Event()
    runner = LatestRunner(lambda job, cancel: (gate.wait(5), done.append(job)), "test")
    for job in range(5):
        runner.submit(job)
    gate.set()
    assert runner.wait_idle(10)
    assert done[-1] == 4 and len(done) <= 2, "waiting jobs are replaced by the latest"
    runner.close()


def test_python_only_engine_parameters_pass_through(make_widget, image) -> None:
    model = tiny_model()
    w = make_widget(model, image, top_k=2, mask_size=8, stride=8, layer="conv", precision="bfloat16")
    wait_done(w)
    ref = occlusion_sensitivity(model, image, top_k=2, mask_size=8, stride=8, layer="conv", precision="bfloat16")
    assert_close(synced_maps(w), ref.maps)
    assert [c["name"] for c in w.classes] == ref.labels and ref.labels[0].startswith("conv[")
    answer = w.request_preview(16, 16)
    assert "error" not in answer and [t["id"] for t in answer["targets"]] == ref.targets.tolist()
    assert answer["base"][0]["name"] == ref.labels[0]


def test_strategy_reaches_the_engine_and_a_bad_one_is_refused(make_widget, image) -> None:
    from traitlets import TraitError

    w = make_widget(tiny_model(), image, top_k=2, mask_size=8, stride=8, strategy="full")
    wait_done(w)
    assert w.result.params.strategy == "full"
    with pytest.raises(TraitError, match="strategy"):
        w.strategy = "fastest"
    assert w.strategy == "full" and w.status == "done"


def test_preview_during_a_layer_sweep_is_correct(make_widget, image) -> None:
    """Forward hooks belong to the module, but the layer hook captures only its own thread's
    pass: previews while a ``layer=`` sweep runs see their own scores, and the sweep its own."""
    model = tiny_model(delay=0.01)
    w = make_widget(model, image, top_k=2, mask_size=8, stride=2, batch_size=4, layer="conv")  # 256 positions
    answers = []
    deadline = time.monotonic() + 30
    while w.status != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    for iy, ix in [(2, 3), (5, 1), (7, 7), (4, 12)]:
        assert w.status == "running", "the previews ran during the sweep"
        answers.append(((iy, ix), w.request_preview(x=ix * 2, y=iy * 2)))
    wait_done(w)
    ref = occlusion_sensitivity(model, image, top_k=2, mask_size=8, stride=2, layer="conv")
    assert_close(w.result.grid, ref.grid, scale=ref.base_scores)
    for (iy, ix), answer in answers:
        assert "error" not in answer, answer
        assert [t["id"] for t in answer["targets"]] == ref.targets.tolist()
        for k, target in enumerate(answer["targets"]):  # layer sums of ~230: float32 resolves ~2e-5 there
            assert target["base"] == near(ref.base_scores[k])
            assert target["base"] - target["occluded"] == near(ref.grid[k, iy, ix], scale=ref.base_scores)


def test_previews_while_the_sweep_traces_the_model_are_correct(make_widget, monkeypatch) -> None:
    """The sweep's incremental path traces the model with torch.fx, which patches
    nn.Module.__call__ process-wide while it runs: a preview's forward pass then must wait."""
    from occlusion_widget.models import load_default_model, sample_image

    real_call_module = torch.fx.Tracer.call_module

    def slow_call_module(self, *args, **kwargs):  # a trace of ~1 s instead of ~0.06 s: previews overlap it
        time.sleep(0.005)
        return real_call_module(self, *args, **kwargs)

    monkeypatch.setattr(torch.fx.Tracer, "call_module", slow_call_module)
    model = load_default_model()  # a fresh module: its first sweep traces it
    w = make_widget(model, sample_image(), top_k=1)
    answers = []
    while w.status == "running" and len(answers) < 30:
        answers.append(w.request_preview(60 + len(answers), 100))
    wait_done(w, 300)
    assert len(answers) > 3 and all("error" not in a for a in answers), [a["error"] for a in answers if "error" in a]
    monkeypatch.undo()
    ref = occlusion_sensitivity(model, sample_image(), top_k=1, strategy="full")
    # incremental vs full: the same maps to ~1e-4 of the scores (summation order differs)
    assert_close(w.result.grid, ref.grid, rtol=1e-4, scale=ref.base_scores, err_msg="the trace was not disturbed")
    again = make_widget(model, sample_image(), top_k=1, stride=56).request_preview(60 + len(answers) - 1, 100)
    assert again["targets"][0]["occluded"] == near(answers[-1]["targets"][0]["occluded"], rtol=1e-4, scale=ref.base_scores)

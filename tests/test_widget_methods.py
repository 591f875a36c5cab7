"""The widget's gradient methods, compare view and layer view, driven from Python without a browser."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import traitlets
from conftest import (
    assert_close,
    near,
    patch_method,
    synced_maps,
    tiny_model,
    wait_done,
)

import occlusion_widget
from occlusion_widget import methods, occlusion_sensitivity
from occlusion_widget.methods import registry
from occlusion_widget.methods.common import map_for
from occlusion_widget.methods.registry import METHODS
from occlusion_widget.widget import OcclusionWidget
from occlusion_widget.widget import plan as plan_module


def spy(monkeypatch, name: str) -> list[dict]:
    """Record every call of the registry method ``name`` (as the widget calls it) or of
    :mod:`occlusion_widget.widget.plan`'s function ``name``: its keyword arguments, and what it
    returned or raised."""
    calls: list[dict] = []
    real = METHODS[name].function if name in METHODS else getattr(plan_module, name)

    def wrapper(*args, **kwargs):
        record = {"kwargs": kwargs, "outcome": None}
        calls.append(record)
        try:
            record["outcome"] = real(*args, **kwargs)
        except BaseException as exc:
            record["outcome"] = exc
            raise
        return record["outcome"]

    if name in METHODS:
        patch_method(monkeypatch, name, wrapper)
    else:
        monkeypatch.setattr(plan_module, name, wrapper)
    return calls


@pytest.mark.parametrize(
    "method, reference",
    [
        ("grad_cam", lambda model, image, targets: methods.grad_cam(model, image, targets)),
        ("saliency", lambda model, image, targets: methods.saliency(model, image, targets)),
        ("smoothgrad", lambda model, image, targets: methods.smoothgrad(model, image, targets, n_samples=25, noise_level=0.15)),
    ],
)
def test_method_set_from_python_equals_the_library(make_widget, image, method, reference) -> None:
    model = tiny_model()
    w = make_widget(model, image, top_k=3, mask_size=8, stride=8)
    wait_done(w)
    tabs = [c["id"] for c in w.classes]
    w.method = method
    wait_done(w)
    ref = reference(model, image, tabs)
    assert w.result.method == method and w.result.targets.tolist() == tabs, "the same classes as the occlusion tabs"
    assert_close(w.result.maps, ref.maps)
    assert_close(synced_maps(w), ref.maps)
    assert [c["id"] for c in w.classes] == tabs
    assert w.map_data["method"] == method and w.map_data["signed"] is False, "non-negative maps get a sequential scale"
    assert w.resolved_params["method"] == method and w.resolved_params["output"] == "logit"
    for k, (y, x) in enumerate(w.map_data["worst"]):  # "Map peak": the map's largest value
        assert ref.maps[k, y, x] == pytest.approx(float(ref.maps[k].max()))
    w.method = "occlusion"  # back: from the cache, at once
    assert w.status == "done" and w.map_data["method"] == "occlusion" and w.map_data["signed"] is True


@pytest.mark.parametrize("baseline", [0.0, [0.2, 0.5, 0.8]])
def test_integrated_gradients_in_the_widget_equals_the_library(make_widget, image, baseline) -> None:
    model = tiny_model()
    w = make_widget(model, image, top_k=2, mask_size=8, stride=8, ig_steps=12, ig_baseline=baseline)
    wait_done(w)
    tabs = [c["id"] for c in w.classes]
    w.method = "integrated_gradients"
    wait_done(w)
    ref = methods.integrated_gradients(model, image, tabs, steps=12, baseline=baseline)
    assert w.result.method == "integrated_gradients" and w.result.targets.tolist() == tabs
    assert_close(w.result.maps, ref.maps)
    assert_close(synced_maps(w), ref.maps)
    assert w.map_data["signed"] is True, "IG maps have both signs: a diverging scale"
    assert w.resolved_params["method"] == "integrated_gradients" and w.resolved_params["steps"] == 12
    w.ig_steps = 6  # a parameter of the shown method recomputes
    wait_done(w)
    assert_close(w.result.maps, methods.integrated_gradients(model, image, tabs, steps=6, baseline=baseline).maps)


def test_every_registry_parameter_trait_exists_with_the_functions_default(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=8)
    traits = OcclusionWidget.class_traits()
    for spec in METHODS.values():
        for param in spec.params:
            if param.trait is not None:
                assert traits[param.trait].default() == param.default, (spec.name, param.name, param.trait)
                assert traits[param.trait].metadata.get("sync", False) is not param.python_only, (spec.name, param.trait)
    assert w.methods_table == registry.browser_table()
    assert set(w.method_params("integrated_gradients")) == {"baseline", "steps", "rule", "output", "device", "top_k"}
    with pytest.raises(traitlets.TraitError, match="ig_steps"):
        w.ig_steps = 0
    with pytest.raises(traitlets.TraitError, match="ig_baseline"):
        w.ig_baseline = float("nan")
    with pytest.raises(traitlets.TraitError, match="method"):
        w.method = "lime"


def test_gradient_parameters_and_explicit_targets_pass_through(make_widget, image) -> None:
    model = tiny_model()
    w = make_widget(model, image, targets=[4, 7], method="smoothgrad", n_samples=6, noise_level=0.3,
                    gradient_output="probability")
    wait_done(w)
    ref = methods.smoothgrad(model, image, [4, 7], n_samples=6, noise_level=0.3, output="probability")
    assert_close(w.result.maps, ref.maps)
    assert w.method_params() == {"output": "probability", "device": "auto", "targets": [4, 7], "n_samples": 6, "noise_level": 0.3}
    w.method = "grad_cam"
    w.gradcam_layer = "conv"
    wait_done(w)
    assert w.result.params.layer == "conv" and w.resolved_params["layer"] == "conv"
    w.gradcam_layer = "head"  # not spatial: an inline error, the widget stays usable
    w.wait(30)
    assert w.status == "error" and "head" in w.error
    w.gradcam_layer = None
    wait_done(w)


def test_switching_method_mid_sweep_cancels_it(make_widget, image, monkeypatch) -> None:
    sweeps = spy(monkeypatch, "occlusion")
    cams = spy(monkeypatch, "grad_cam")
    w = make_widget(tiny_model(delay=0.05), image, mask_size=8, stride=2, batch_size=2)  # 256 positions, ~6 s
    deadline = time.monotonic() + 30
    while w.progress == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert w.status == "running"
    published = []
    w.observe(lambda c: published.append(c["new"]["method"]), "map_data")
    started = time.monotonic()
    w.method = "grad_cam"
    wait_done(w)
    assert time.monotonic() - started < 3, "the sweep stopped within a batch"
    assert len(sweeps) == 1 and not sweeps[0]["outcome"].complete, "the occlusion sweep was cancelled"
    assert len(cams) == 1 and w.result.method == "grad_cam"
    assert published and set(published) == {"grad_cam"}, "nothing from the cancelled sweep lands"


def test_switching_method_mid_smoothgrad_cancels_it(make_widget, image, monkeypatch) -> None:
    smooth = spy(monkeypatch, "smoothgrad")
    w = make_widget(tiny_model(delay=0.05), image, mask_size=8, stride=8)
    wait_done(w)
    w.n_samples = 400  # 50 batches of 8
    w.method = "smoothgrad"
    deadline = time.monotonic() + 30
    while w.progress == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert w.status == "running" and 0 < w.progress < 1
    assert not w.map_data["complete"] and w.map_data["method"] == "smoothgrad", "SmoothGrad's running mean streams"
    w.method = "saliency"
    wait_done(w)
    old = smooth[0]["outcome"]  # the one cancellation contract: a cancelled method returns an incomplete result
    assert isinstance(old, occlusion_widget.MapResult) and not old.complete, "the cancel ends the old one"
    assert w.result.method == "saliency" and w.map_data["complete"]


def test_stop_during_a_gradient_method_is_cancelled(make_widget, image) -> None:
    w = make_widget(tiny_model(delay=0.05), image, method="smoothgrad", n_samples=400, mask_size=8, stride=8)
    deadline = time.monotonic() + 30
    while w.progress == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    w.cancel()
    w.wait(10)
    assert w.status == "cancelled"
    w.n_samples = 8  # a new request starts again
    wait_done(w)
    assert w.result.method == "smoothgrad" and w.result.params.n_samples == 8


def test_gradient_results_are_cached_by_method_and_parameters(make_widget, image, monkeypatch) -> None:
    cams = spy(monkeypatch, "grad_cam")
    smooth = spy(monkeypatch, "smoothgrad")
    w = make_widget(tiny_model(), image, method="grad_cam", mask_size=8, stride=8)
    wait_done(w)
    w.method = "smoothgrad"
    wait_done(w)
    w.method = "grad_cam"
    assert w.status == "done" and not w._controller.busy, "published at once from the cache"
    w.stride = 4  # an occlusion parameter: nothing to recompute for Grad-CAM
    assert not w._controller.busy
    w.method = "smoothgrad"
    w.noise_level = 0.05
    wait_done(w)
    w.noise_level = 0.15
    assert w.status == "done"
    assert len(cams) == 1 and [c["kwargs"]["noise_level"] for c in smooth] == [0.15, 0.05]
    w.recompute(force=True)
    wait_done(w)
    assert len(smooth) == 3


def test_a_layer_sweep_has_no_gradient_counterpart(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=8, layer="conv")
    wait_done(w)
    w.method = "saliency"
    w.wait(30)
    assert w.status == "error" and "layer='conv'" in w.error
    w.method = "occlusion"
    assert w.status == "done"
    w.compare = True  # the curves score classes, not channels: every panel says so
    w.wait(30)
    assert w.status == "done" and w.comparison_data["status"] == "error"
    assert all("layer='conv'" in p["error"] for p in w.comparison_data["panels"])


def test_compare_view_aucs_equal_deletion_insertion(make_widget, image) -> None:
    model = tiny_model()
    w = make_widget(model, image, top_k=2, mask_size=8, stride=4, mask_value=0.5)
    wait_done(w)
    states = []
    w.observe(lambda c: states.append(c["new"]), "comparison_data")
    w.compare = True
    wait_done(w)
    assert states[0]["status"] == "running" and states[0]["panels"][0]["deletion_auc"] is None, "'…' while pending"
    data = w.comparison_data
    assert data["status"] == "done" and [p["method"] for p in data["panels"]] == list(METHODS), "a panel per method"
    assert "integrated_gradients" in METHODS
    target = w.classes[0]["id"]
    assert data["target"] == target and data["label"] == w.classes[0]["name"]
    comparison = w.comparison
    assert isinstance(comparison, methods.Comparison) and comparison.target == target
    for panel in data["panels"]:
        result = comparison.results[panel["method"]]
        smap = map_for(result, target)
        np.testing.assert_array_equal(np.frombuffer(panel["data"], "<f4").reshape(panel["shape"]), smap)
        ref = methods.deletion_insertion(model, image, smap, target, steps=10, mask_value=0.5, mask_size=8)
        assert panel["deletion_auc"] == near(ref.deletion_auc)
        assert panel["insertion_auc"] == near(ref.insertion_auc)
        assert comparison.table.curves[panel["method"]].deletion_auc == near(ref.deletion_auc)
        assert panel["signed"] is METHODS[panel["method"]].signed and panel["title"] == METHODS[panel["method"]].title
    assert_close(comparison.map("grad_cam"), methods.grad_cam(model, image, target).maps[0])
    assert isinstance(w.result, occlusion_widget.OcclusionResult), "the main view keeps its method"


def test_compare_view_follows_the_class_tab_and_keeps_the_sweep_it_waits_for(make_widget, image, monkeypatch) -> None:
    sweeps = spy(monkeypatch, "occlusion")
    curves = spy(monkeypatch, "deletion_insertion")
    w = make_widget(tiny_model(delay=0.01), image, top_k=2, method="grad_cam", compare=True, mask_size=8, stride=2, batch_size=4)
    deadline = time.monotonic() + 30
    while not sweeps and time.monotonic() < deadline:  # the compare view's occlusion sweep (256 positions)
        time.sleep(0.01)
    w.selected = 1  # a tab click while that sweep runs: it goes on
    wait_done(w)
    assert len(sweeps) == 1 and sweeps[0]["outcome"].complete
    assert w.comparison_data["status"] == "done" and w.comparison_data["target"] == w.classes[1]["id"]
    assert {c["kwargs"]["steps"] for c in curves} == {10} and len(curves) == len(METHODS), "a curve per method"
    w.selected = 0  # back: only the curves of that class are computed, no map
    wait_done(w)
    assert len(sweeps) == 1 and len(curves) == 2 * len(METHODS)
    assert w.comparison.target == w.classes[0]["id"]
    w.compare = False
    assert w.comparison_data == {} and w.comparison is None


def test_stop_keeps_what_the_compare_view_has(make_widget, image) -> None:
    w = make_widget(tiny_model(delay=0.03), image, mask_size=8, stride=8, n_samples=400)
    wait_done(w)
    w.compare = True
    deadline = time.monotonic() + 30
    while not any(p["method"] == "smoothgrad" and p["status"] == "running" for p in w.comparison_data.get("panels", [])):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    w.cancel()
    w.wait(10)
    panels = {p["method"]: p for p in w.comparison_data["panels"]}
    assert w.status == "done", "the main map was finished: Stop does not undo it"
    assert w.comparison_data["status"] == "stopped" and panels["smoothgrad"]["status"] == "stopped"
    assert panels["grad_cam"]["status"] == "done" and panels["grad_cam"]["data"]


def test_layer_view_lists_layers_and_shows_the_strongest_channels_first(make_widget, image) -> None:
    model = tiny_model()
    w = make_widget(model, image, mask_size=8, stride=8, show_layers=True, layer_channels=5)
    wait_done(w)
    data = w.layer_data
    assert data["status"] == "done" and data["default"] == methods.default_layer(model, image) == "conv"
    assert data["layers"] == [{"name": "conv", "shape": [8, 32, 32], "type": "Conv2d"}]
    ref = methods.layer_activations(model, image, "conv", top=5)
    assert data["layer"] == "conv" and data["shape"] == [5, 32, 32] and data["n_channels"] == 8
    assert data["channels"] == ref.channels.tolist()
    assert data["strength"] == sorted(data["strength"], reverse=True), "the strongest first"
    np.testing.assert_array_equal(np.frombuffer(data["data"], "<f4").reshape(5, 32, 32), ref.activations)
    assert w.activations.channels.tolist() == ref.channels.tolist()
    w.layer_strength = "max"
    w.layer_channels = 8
    wait_done(w)
    ref = methods.layer_activations(model, image, "conv", strength="max")
    assert w.layer_data["channels"] == ref.channels.tolist() and w.layer_data["strength_by"] == "max"
    w.activation_layer = "head"  # not spatial: the error shows in the layer view
    w.wait(30)
    assert w.layer_data["status"] == "error" and "head" in w.layer_data["error"] and w.status == "done"


def test_default_model_layer_list_holds_its_convolutions(make_widget) -> None:
    w = make_widget(show_layers=True, top_k=1, stride=56)
    wait_done(w, 300)
    layers = w.layer_data["layers"]
    assert layers[0]["name"] == "1._conv_stem" and layers[-1]["name"] == w.layer_data["default"] == "1._swish"
    assert sum(layer["type"] == "Conv2d" for layer in layers) > 40
    assert w.layer_data["shape"] == [16, 7, 7] and w.layer_data["n_channels"] == 1280


def test_save_png_and_the_static_snapshot_follow_the_method(make_widget, image, tmp_path) -> None:
    w = make_widget(tiny_model(), image, method="saliency", mask_size=8, stride=8)
    path = tmp_path / "saliency.png"
    w.save_png(path)
    assert path.read_bytes().startswith(b"\x89PNG") and w.result.method == "saliency"
    assert w._snapshot.png().startswith(b"\x89PNG")
    assert "method='saliency'" in repr(w)


def test_percentile_is_view_state_used_by_save_png_and_the_snapshot(make_widget, image, tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    w = make_widget(tiny_model(), image, top_k=1, mask_size=8, stride=4)
    wait_done(w)
    version, before = w.map_data["version"], w._snapshot.png()
    w.percentile = 90.0
    assert not w._controller.busy and w.map_data["version"] == version, "a view setting: nothing recomputes"
    assert w._snapshot.png() != before, "the static figure follows the colour limit"
    figures = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self) or original(self, *a, **k))
    w.save_png(tmp_path / "p90.png")
    limit = figures[0].axes[0].get_images()[-1].get_clim()[1]
    assert limit == near(np.percentile(np.abs(w.result.maps[0]), 90)) and limit < np.abs(w.result.maps[0]).max()
    for bad in (0.0, 100.5, -3.0, float("nan")):
        match = r"percentile=.* is not allowed; use None or a finite number in \(0, 100\]"
        with pytest.raises(traitlets.TraitError, match=match):
            w.percentile = bad
    assert w.percentile == 90.0, "a refused value leaves the old one"
    w.percentile = None
    assert w.percentile is None


def test_new_traits_are_typed_and_documented() -> None:
    from traitlets import TraitError

    traits = OcclusionWidget.class_traits()
    for name in ("method", "gradient_output", "gradcam_layer", "n_samples", "noise_level", "compare", "show_layers",
                 "activation_layer", "layer_channels", "layer_strength", "comparison_data", "layer_data",
                 "sequential_colormap", "sequential_colormaps"):
        assert traits[name].metadata.get("sync") is True, name
        assert traits[name].help, f"{name} has no documentation"
    assert not traits["compare_steps"].metadata.get("sync")
    with pytest.raises(TraitError):
        traits["method"].validate(None, "lime")
    with pytest.raises(TypeError, match="unknown parameter"):
        OcclusionWidget(tiny_model(), torch.rand(3, 32, 32), methd="grad_cam")


def test_occlusion_in_the_compare_view_uses_the_main_views_upsampling(make_widget, image) -> None:
    model = tiny_model()
    w = make_widget(model, image, top_k=1, mask_size=8, stride=4, upsampling="none", compare=True)
    wait_done(w)
    panel = w.comparison_data["panels"][0]
    assert panel["method"] == "occlusion" and panel["shape"] == [8, 8], "the grid, as shown above"
    ref = occlusion_sensitivity(model, image, top_k=1, mask_size=8, stride=4, upsampling="nearest")
    curve = methods.deletion_insertion(model, image, ref.maps[0], int(ref.targets[0]), steps=10, mask_size=8)
    assert panel["deletion_auc"] == near(curve.deletion_auc), "scored at the input size (nearest)"

"""The method registry: each entry tells the truth about its function, and run() dispatches with clear errors."""

from __future__ import annotations

import inspect
import json
import threading

import numpy as np
import pytest
import torch
from conftest import Tiny, tiny_model
from torch import nn

from occlusion_widget.methods.registry import COMMON, METHODS, MethodSpec, browser_table, get_method, run

KINDS = {"int", "float", "bool", "choice", "size", "fill", "baseline", "layer"}
NAMES = list(METHODS)
#: Cheap settings per method for the tiny model (each a declared parameter).
FAST = {"occlusion": {"stride": 8, "mask_size": 8, "batch_size": 4}, "grad_cam": {}, "saliency": {},
        "smoothgrad": {"n_samples": 3, "batch_size": 2}, "integrated_gradients": {"steps": 6, "batch_size": 4}}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_the_five_methods_in_display_order():
    assert NAMES == ["occlusion", "grad_cam", "saliency", "smoothgrad", "integrated_gradients"]
    assert all(isinstance(s, MethodSpec) and s.name == n for n, s in METHODS.items())
    assert set(FAST) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_declared_params_are_the_functions_keywords_with_its_defaults(name):
    spec = METHODS[name]
    sig = inspect.signature(spec.function)
    assert list(sig.parameters)[:3] == ["model", "image", "targets"]
    keywords = {n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
    for p in spec.params:
        assert p.name in keywords, f"{name}: {p.name} is not a keyword-only argument of {spec.function.__name__}"
        assert sig.parameters[p.name].default == p.default, (name, p.name)
        assert type(sig.parameters[p.name].default) is type(p.default), (name, p.name)
    assert set(COMMON) - {"targets"} <= keywords
    # A keyword added to the function without an entry here fails: every one is declared, common or hidden.
    assert keywords == set(spec.param_names) | (set(COMMON) - {"targets"}) | set(spec.hidden)
    assert len(set(spec.param_names)) == len(spec.params)
    assert set(spec.display_params) <= set(spec.param_names)


@pytest.mark.parametrize("name", NAMES)
def test_param_metadata_is_consistent(name):
    spec = METHODS[name]
    assert spec.kind in ("perturbation", "gradient") and spec.title and spec.heading and spec.hint
    assert spec.default_output == spec.param("output").default
    for p in spec.params:
        assert p.kind in KINDS and p.help.endswith(".")
        if p.kind == "choice":  # a nullable choice may default to None (segments: none unless 'slic')
            assert p.default in p.choices or (p.default is None and p.nullable)
        else:
            assert not p.choices
        if p.default is None:
            assert p.nullable
        if p.kind in ("int", "float") and p.default is not None:
            assert (p.minimum is None or p.default >= p.minimum) and (p.maximum is None or p.default <= p.maximum)


def test_shared_names_and_traits_mean_one_thing():
    """One CLI option per parameter name and one widget trait per trait name: their kinds must agree."""
    by_name, by_trait = {}, {}
    for spec in METHODS.values():
        for p in spec.params:
            assert by_name.setdefault(p.name, p.kind) == p.kind, (spec.name, p.name)
            if p.trait is not None:
                first = by_trait.setdefault(p.trait, p)
                assert (first.kind, first.choices, first.default) == (p.kind, p.choices, p.default), (spec.name, p.trait)


def test_browser_table_is_json_and_lists_the_synced_params():
    table = browser_table()
    assert json.loads(json.dumps(table)) == table
    assert [m["name"] for m in table] == NAMES
    by_name = {m["name"]: m for m in table}
    assert by_name["integrated_gradients"]["title"] == "Integrated Gradients"
    assert [m["signed"] for m in table] == [True, False, False, False, True]
    assert {p["trait"] for p in by_name["smoothgrad"]["params"]} == {"n_samples", "noise_level", "gradient_output"}
    steps = next(p for p in by_name["integrated_gradients"]["params"] if p["name"] == "steps")
    assert steps == {"name": "steps", "default": 50, "kind": "int", "help": "Points on the path.", "minimum": 1,
                     "maximum": None, "choices": [], "nullable": False, "trait": "ig_steps"}
    assert all(p["trait"] not in ("batch_size", "precision", "strategy", "layer") for m in table for p in m["params"])


@pytest.mark.parametrize("name", NAMES)
def test_run_dispatches_and_declared_defaults_are_the_real_ones(name, x):
    model = tiny_model()
    result = run(name, model, x, [1, 4], **FAST[name])
    assert result.method == name and result.complete
    assert result.targets.tolist() == [1, 4] and result.maps.shape == (2, 32, 32)
    assert result.labels == ["thing 1", "thing 4"] and np.isfinite(result.maps).all()
    assert result.params.output == METHODS[name].default_output
    explicit = run(name, model, x, [1, 4], **{**METHODS[name].defaults(), **FAST[name]})
    np.testing.assert_allclose(explicit.maps, result.maps, rtol=1e-6, atol=1e-6 * np.abs(result.maps).max())


@pytest.mark.parametrize("name", NAMES)
def test_the_signed_flag_tells_the_scale(name, x):
    maps = run(name, tiny_model(), x, top_k=3, **FAST[name]).maps
    if METHODS[name].signed:
        assert maps.min() < 0 < maps.max()  # the tiny model's maps have both signs
    else:
        assert maps.min() >= 0


@pytest.mark.parametrize("name", NAMES)
def test_streams_and_cancel_behave_as_declared(name, x):
    spec, model = METHODS[name], tiny_model()
    partials = []
    run(name, model, x, top_k=3, **FAST[name], progress=lambda d, t, partial: partials.append(partial))
    if spec.streams:
        assert partials[0] is not None and not partials[0].complete and partials[0].maps.shape == (3, 32, 32)

    # One cancellation contract for every method: the result so far, complete=False, never Cancelled.
    assert spec.partial_on_cancel
    cancel = threading.Event()
    result = run(name, model, x, top_k=3, **FAST[name], cancel=cancel, progress=lambda *a: cancel.set())
    assert not result.complete and result.method == name
    assert result.maps.shape == (3, 32, 32) and result.targets.shape == (3,)
    cancel.set()
    nothing = run(name, model, x, top_k=3, **FAST[name], cancel=cancel)
    assert not nothing.complete and np.isnan(nothing.maps).all(), "nothing computed: NaN maps, never zeros"


@pytest.mark.parametrize("name", NAMES)
def test_images_only_is_true(name):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 40, 3)).eval()
    signal = torch.randn(2, 40, generator=torch.Generator().manual_seed(2))
    params = {k: v for k, v in FAST[name].items() if k not in ("stride", "mask_size")}
    if METHODS[name].images_only:
        with pytest.raises(ValueError, match="image"):
            run(name, net, signal, 0, **params)
    else:
        assert run(name, net, signal, 0, **params).maps.shape == (1, 40)


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].display_params])
def test_display_params_can_be_applied_to_a_finished_result(name, x):
    model, spec = tiny_model(), METHODS[name]
    assert spec.display_params == ("upsampling",)
    other = next(c for c in spec.param("upsampling").choices if c not in (spec.param("upsampling").default, "none"))
    later = run(name, model, x, 2, **FAST[name]).with_upsampling(other)
    direct = run(name, model, x, 2, **FAST[name], upsampling=other)
    np.testing.assert_allclose(later.maps, direct.maps, rtol=1e-5, atol=1e-6 * np.abs(direct.maps).max())


def test_unknown_method_and_parameter_names_are_refused_clearly(x):
    with pytest.raises(ValueError) as info:
        get_method("gradcam")
    assert str(info.value) == ("method='gradcam' is not allowed; use one of 'occlusion', 'grad_cam', 'saliency', "
                               "'smoothgrad', 'integrated_gradients'")
    with pytest.raises(ValueError, match="method=None is not allowed"):
        run(None, Tiny(), x)
    with pytest.raises(TypeError) as info:
        run("smoothgrad", Tiny(), x, stepz=3)
    assert str(info.value).startswith("smoothgrad got unknown parameter 'stepz'; its parameters are n_samples, "
                                      "noise_level, reduce, output, seed, batch_size, min_score, and targets, top_k")
    with pytest.raises(TypeError, match=r"integrated_gradients got unknown parameter 'step' \(did you mean 'steps'\?\)"):
        run("integrated_gradients", Tiny(), x, step=3)
    with pytest.raises(ValueError, match="saliency has no parameter 'steps'"):
        METHODS["saliency"].param("steps")
    # Values are the function's to check, with its own message.
    with pytest.raises(ValueError, match="steps=0 is not allowed"):
        run("integrated_gradients", Tiny(), x, steps=0)


def test_the_package_exports_the_method_functions():
    import occlusion_widget
    from occlusion_widget import methods

    for name in ("integrated_gradients", "grad_cam", "saliency", "smoothgrad"):
        assert getattr(methods, name) is METHODS[name].function
    assert occlusion_widget.integrated_gradients is METHODS["integrated_gradients"].function
    assert occlusion_widget.occlusion_sensitivity is METHODS["occlusion"].function
    assert methods.get_method is get_method and methods.run is run and methods.browser_table is browser_table
    assert methods.AttributionResult is methods.MapResult is occlusion_widget.MapResult

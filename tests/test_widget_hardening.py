"""The widget under bad input and hostile conditions: non-finite traits, keys that never equal
themselves, models that return NaN or dicts, exiting mid-sweep, memory bounds, far-away previews,
and the hooks the static report and the browser rely on."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import LABELS, Tiny, patch_method, synced_maps, tiny_model, wait_done
from torch import nn
from traitlets import TraitError

from occlusion_widget.engine import mask_box
from occlusion_widget.methods.registry import METHODS
from occlusion_widget.models import ImageClassifier
from occlusion_widget.widget import plan as plan_module
from occlusion_widget.widget.controller import MAX_ATTEMPTS
from occlusion_widget.widget.runner import ResultCache, freeze, nbytes, trim_memory

NAN, INF = float("nan"), float("inf")


# --- 1. non-finite values and unbounded retries ------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("mask_value", NAN), ("mask_value", INF), ("mask_value", [0.5, NAN, 0.5]), ("mask_value", [0.5, 0.5, -INF]),
    ("opacity", NAN), ("noise_level", NAN), ("noise_level", INF),
])
def test_non_finite_floats_are_refused_at_the_trait(make_widget, image, name, value) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=8)
    before = getattr(w, name)
    with pytest.raises(TraitError, match=rf"{name}=.*not allowed; use .*finite"):
        setattr(w, name, value)
    assert getattr(w, name) == before, "the old value stays"
    wait_done(w)


def test_cache_keys_of_nan_equal_themselves() -> None:
    assert freeze({"mask_value": [0.5, NAN]}) == freeze({"mask_value": [0.5, NAN]})
    assert freeze(np.float32("nan")) == freeze(NAN) and freeze(0.1 + 0.2) == freeze(0.3)


def test_a_result_that_cannot_be_cached_is_computed_a_bounded_number_of_times(make_widget, image, monkeypatch) -> None:
    """Whatever the key (here one that never equals itself, as a NaN once made it), the worker
    gives up with an error after MAX_ATTEMPTS computations instead of retrying forever."""
    sweeps = []
    real = METHODS["occlusion"].function
    patch_method(monkeypatch, "occlusion", lambda *a, **k: sweeps.append(1) or real(*a, **k))
    monkeypatch.setattr(plan_module, "freeze", lambda value: float("nan"))  # a new NaN: unequal to every other
    w = make_widget(tiny_model(), image, mask_size=8, stride=8)
    w.wait(20)
    assert w.status == "error" and "could not be kept" in w.error
    assert MAX_ATTEMPTS <= len(sweeps) <= 3 * MAX_ATTEMPTS
    time.sleep(0.3)
    assert not w._controller.busy and len(sweeps) <= 3 * MAX_ATTEMPTS, "nothing retries in the background"
    monkeypatch.undo()
    w.stride = 4  # a later valid change computes again
    wait_done(w)


# --- 6. any error ends as status "error"; the widget stays usable ------------------------------


class Switchable(nn.Module):
    """Tiny's scores, or (while ``bad`` is set) NaN scores or a dict of them."""

    def __init__(self, bad: str = "nan"):
        super().__init__()
        self.inner, self.bad = Tiny(), bad

    def forward(self, x: torch.Tensor):
        out = self.inner(x)
        if self.bad == "nan":
            return out * float("nan")
        if self.bad == "dict":
            return {"logits": out}
        return out


@pytest.mark.parametrize("bad", ["nan", "dict"])
def test_a_model_returning_nan_or_a_dict_sets_error_and_the_widget_recovers(make_widget, image, bad) -> None:
    module = Switchable(bad).eval()
    w = make_widget(ImageClassifier(module, (32, 32), LABELS, name="switchable"), image, mask_size=8, stride=8)
    w.wait(30)
    assert w.status == "error" and w.error, (w.status, w.error)
    assert not np.isnan(synced_maps(w)).all() if w.map_data else True, "no NaN map is shown as a result"
    module.bad = ""
    w.stride = 4  # a later valid parameter change computes again
    wait_done(w)
    assert np.isfinite(synced_maps(w)).all() and w.error == ""


def test_an_error_while_publishing_a_cached_map_sets_error(make_widget, image, monkeypatch) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=8)
    wait_done(w)
    w.stride = 4
    wait_done(w)

    def broken(*_args, **_kwargs):
        raise RuntimeError("cannot serialise")

    monkeypatch.setattr("occlusion_widget.widget.core.result_state", broken)
    w.stride = 8  # from the cache, published on this thread: the setter must not raise
    assert w.status == "error" and "cannot serialise" in w.error and w.stride == 8
    monkeypatch.undo()
    w.stride = 2  # a later valid change computes again
    wait_done(w)
    assert w.result.params.stride == (2, 2)


# --- 2. exiting while the widget computes -------------------------------------------------------

SLOW_SCRIPT = """
import sys, time
import torch
from torch import nn
import occlusion_widget as ow

class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 64, 3, padding=1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        y = torch.relu(self.conv(x.repeat(1, 1, 2, 2)))  # nearly all the time inside torch's C++ code
        return self.head(y.mean((2, 3)))

w = ow.OcclusionWidget(ow.ImageClassifier(Slow().eval(), (64, 64), name="slow"), torch.rand(3, 64, 64),
                       mask_size=8, stride=1, batch_size=4)
deadline = time.monotonic() + 60
while w.progress == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
assert w.status == "running", w.status
sys.exit(3)
"""


def _run_script(source: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)], check=False, capture_output=True, text=True,
                          timeout=timeout)


def test_a_script_exiting_mid_sweep_exits_with_its_own_status() -> None:
    done = _run_script(SLOW_SCRIPT)
    assert "terminate called" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])


def test_the_readme_example_runs_as_a_script() -> None:
    done = _run_script("""
        import occlusion_widget as ow
        model = ow.load_default_model()
        image = ow.sample_image()
        ow.OcclusionWidget(model, image)
    """)
    assert "terminate called" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


# --- 3. memory ------------------------------------------------------------------------------


def test_the_result_cache_is_bounded_in_bytes() -> None:
    cache = ResultCache(maxsize=100, max_bytes=10_000)
    for i in range(10):
        cache.put(i, {"maps": np.zeros(1000, np.float32), "scores": torch.zeros(100)})  # 4,400 bytes each
    assert cache.nbytes <= 10_000 and len(cache) == 2
    assert cache.get(9) is not None and cache.get(8) is not None and cache.get(7) is None, "least recently used go first"
    cache.put("big", np.zeros(5000, np.float32))  # alone over the budget: kept (it is what the widget shows)
    assert len(cache) == 1 and cache.get("big") is not None and cache.nbytes == 20_000
    cache.put("big", np.zeros(10, np.float32))  # replacing an item replaces its size
    assert cache.nbytes == 40
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0
    with pytest.raises(ValueError, match="maxsize"):
        ResultCache(maxsize=0)


def test_result_sizes_count_every_array(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    r = wait_done(w) or w.result
    expected = sum(a.nbytes for a in (r.grid, r.maps, r.base_scores, r.targets, r.boxes, r.image, r.computed)
                   if isinstance(a, np.ndarray))
    assert nbytes(r) >= expected and nbytes(r) < 2 * expected + 10_000
    cache = w._controller.cache
    assert 0 < cache.max_bytes < 2**31 and cache.nbytes >= nbytes(r)
    assert isinstance(trim_memory(), bool)


# --- 4. previews far outside the image -------------------------------------------------------


def test_a_preview_far_outside_the_image_is_clamped_to_it(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=4)
    wait_done(w)
    far = w.request_preview(x=1e9, y=-1e9)
    corner = w.request_preview(x=31, y=0)
    assert "error" not in far, far
    y0, x0, y1, x1 = far["box"]
    assert 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32, far["box"]
    assert far["box"] == corner["box"] == [0, 27, 4, 32]
    assert far["targets"] == corner["targets"]
    assert "finite" in w.request_preview(x=math.nan, y=3)["error"]
    for clipping in (True, False):
        for cy, cx in [(-1e9, 1e9), (1e9, -1e9), (-5, 300)]:
            a, b, c, d = mask_box((cy, cx), (45, 45), (224, 224), clipping)
            assert 0 <= a < c <= 224 and 0 <= b < d <= 224


# --- 5. the raw nn.Module notice -------------------------------------------------------------


def test_a_plain_module_given_an_image_shows_the_notice(make_widget) -> None:
    from occlusion_widget.models import RawModuleNotice

    module = Tiny().eval()
    picture = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = make_widget(module, picture, mask_size=8, stride=8)
    assert any(isinstance(c.message, RawModuleNotice) for c in caught), "the warning is still issued"
    assert "no normalisation" in w.notice and "from_torchvision" in w.notice
    w.image = np.zeros((40, 40, 3), np.uint8)  # the same module, another image: models.py warns once only
    assert "from_torchvision" in w.notice
    w.image = torch.rand(3, 32, 32)  # a tensor goes in as it is: nothing to note
    assert w.notice == ""
    wait_done(w)
    assert make_widget(tiny_model(), picture, mask_size=8, stride=8).notice == "", "a wrapper gets no notice"


# --- 7. strategy is an enum --------------------------------------------------------------------


def test_strategy_is_an_enum(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=8, strategy="full")
    with pytest.raises(TraitError, match="strategy"):
        w.strategy = "fastest"
    assert w.strategy == "full"
    wait_done(w)


# --- task B: hooks for sharing --------------------------------------------------------------------


def test_ping_is_answered_with_pong(make_widget, image, monkeypatch) -> None:
    w = make_widget(tiny_model(), image, mask_size=8, stride=8)
    sent = []
    monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append(content))
    w._on_custom_msg(w, {"type": "ping"}, [])
    assert sent == [{"type": "pong"}]
    w._on_custom_msg(w, {"type": "something else"}, [])
    assert sent == [{"type": "pong"}]


def test_computed_results_lists_the_complete_cached_methods(make_widget, image) -> None:
    w = make_widget(tiny_model(), image, top_k=2, mask_size=8, stride=4, upsampling="nearest")
    wait_done(w)
    assert list(w.computed_results()) == ["occlusion"]
    w.method = "grad_cam"
    wait_done(w)
    results = w.computed_results()
    assert sorted(results) == ["grad_cam", "occlusion"]
    assert results["grad_cam"] is w.result and results["occlusion"].params.upsampling == "nearest"
    assert all(r.complete for r in results.values())
    w.top_k = 1  # other classes: nothing cached for them yet
    wait_done(w)
    assert list(w.computed_results()) == ["grad_cam"]
    w.stride = 8  # an occlusion parameter: Grad-CAM's result is still the current one
    assert list(w.computed_results()) == ["grad_cam"]


def test_repr_of_a_finished_widget_says_what_it_shows(make_widget, image) -> None:
    w = make_widget(tiny_model(delay=0.02), image, top_k=2, mask_size=8, stride=2, batch_size=4)
    assert "status='running'" in repr(w)
    wait_done(w)
    text = repr(w)
    assert "status='done'" in text and "method='occlusion'" in text
    for c in w.classes:
        assert f"{c['name']!r}: {c['score']:.3g}" in text
    w.stride = 0
    w.wait(30)
    assert "status='error'" in repr(w) and "stride" in repr(w)


def test_save_html_writes_one_self_contained_file(make_widget, image, tmp_path) -> None:
    w = make_widget(tiny_model(), image, top_k=2, mask_size=8, stride=4)
    wait_done(w)
    w.method = "saliency"
    wait_done(w)
    path = w.save_html(tmp_path / "report.html")
    assert path == tmp_path / "report.html"
    page = path.read_text("utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and "thing" in page
    assert "saliency" in page and "occlusion" in page, "every computed method goes in"
    assert "src=\"http" not in page and "href=\"http" not in page, "nothing is loaded from the network"

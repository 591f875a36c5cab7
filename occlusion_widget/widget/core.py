"""``OcclusionWidget``: live occlusion sensitivity maps (and gradient maps) in a notebook.

The class adds behaviour to its typed, synced state (:class:`~occlusion_widget.widget.traits.WidgetTraits`):
what to show goes to a
:class:`~occlusion_widget.widget.controller.Controller` as a :class:`~occlusion_widget.widget.plan.ComputePlan`
(one background thread, cancel, cache, throttling), results come back through
the ``on_*`` sink methods and are turned into synced state by
:mod:`occlusion_widget.widget.frontend` (``result_state``, ``comparison_state``,
``layer_state``), the one place that serialises results for the browser.
"""

from __future__ import annotations

import functools
import pathlib
import threading
import time
from collections.abc import Sequence
from os import PathLike
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from ..engine.result import OcclusionResult
from ..methods import AttributionResult, Comparison, LayerActivations
from ..methods.registry import METHODS, browser_table
from ..models import ImageClassifier, load_default_model, sample_image
from . import params as _params
from . import structured
from .controller import Controller
from .frontend import (
    SEQUENTIAL_COLORMAPS,
    bundle_file,
    colormap_tables,
    comparison_state,
    layer_state,
    result_state,
    to_png,
)
from .plan import CompareState, LayerState
from .preview import PreviewEngine, answer_preview
from .runner import LatestRunner, PreparedInput
from .snapshot import Snapshot
from .traits import ENGINE_PARAMS, VIEW_PARAMS, WidgetTraits

_PARAMS = ENGINE_PARAMS + ("targets", "top_k", "min_score", "target_objects")
_DISPLAY = ("opacity", "colormap", "sequential_colormap", "selected", "percentile", "min_score", "show_outputs")


@functools.lru_cache(maxsize=1)
def _default_model() -> ImageClassifier:
    return load_default_model()


class OcclusionWidget(WidgetTraits):
    """Occlusion sensitivity maps of an image classifier, live in a notebook.

    ``OcclusionWidget()`` explains the sample image with the embedded
    EfficientNet-Lite0. Every parameter is a trait: set it from Python
    (``w.stride = 8``) or from the widget's controls, and the maps are
    recomputed in a background thread while the kernel stays free.

    ``method`` switches the map between the registered methods (occlusion and
    ``"grad_cam"``, ``"saliency"``, ``"smoothgrad"``, ``"integrated_gradients"``,
    for the same classes; see ``occlusion_widget.methods.registry.METHODS``);
    ``compare = True`` shows every method for the current class with their
    deletion / insertion AUCs (:attr:`comparison`), and ``show_layers = True``
    the strongest channels of a layer (:attr:`activations`).

    Parameters
    ----------
    model : ImageClassifier or nn.Module, optional
        Default: :func:`~occlusion_widget.load_default_model`.
    image : PIL image, path, HxWx3 array or (C, H, W) tensor, optional
        Default: :func:`~occlusion_widget.sample_image`.
    targets : int or sequence of int, optional
        Classes to explain; when given, ``top_k`` is ignored (until ``top_k``
        is changed, which sets ``targets`` back to None).
    top_k : int
        Explain the ``top_k`` best classes (default 3).
    **params
        Engine parameters (``mask_size``, ``stride``, ``mask_value``,
        ``mask_clipping``, ``upsampling``, ``output``, ``layer``,
        ``batch_size``, ``device``, ``precision``, ``strategy``; see :func:`occlusion_sensitivity`),
        method and view traits (``method``, ``gradient_output``, ``gradcam_layer``,
        ``n_samples``, ``noise_level``, ``ig_steps``, ``ig_baseline``, ``ig_rule``, ``compare``,
        ``show_layers``, ...) and display traits (``opacity``, ``colormap``, ``sequential_colormap``,
        ``percentile``).

    Attributes
    ----------
    result : OcclusionResult, AttributionResult or None
        The current method's latest result shown (partial while ``status == "running"``).
    comparison : Comparison or None
        The compare view's maps (one per method) and faithfulness curves, once all are done.
    activations : LayerActivations or None
        The layer view's channels, strongest first.
    """

    # anywidget reads (and, in development with ANYWIDGET_HMR=1, watches) the esbuild bundle.
    _esm = bundle_file("widget.js")
    _css = bundle_file("widget.css")

    def __init__(
        self,
        model: ImageClassifier | Any | None = None,
        image: Any = None,
        targets: int | Sequence[int] | None = None,
        top_k: int = 3,
        **params: Any,
    ):
        unknown = sorted(set(params) - set(ENGINE_PARAMS) - set(VIEW_PARAMS) - set(_DISPLAY))
        if unknown:
            raise TypeError(f"OcclusionWidget: unknown parameter(s) {', '.join(unknown)}; engine parameters are "
                            f"{', '.join(ENGINE_PARAMS)}; methods and views: {', '.join(VIEW_PARAMS)}")
        if isinstance(targets, (int, np.integer)):
            targets = [int(targets)]
        targets, target_objects = structured.split_targets(targets)
        self._ready = False
        self._shown_source: PreparedInput | None = None
        self._result: OcclusionResult | AttributionResult | None = None
        self._views: tuple[CompareState | None, LayerState | None] = (None, None)
        self._version = 0
        self._controller = Controller(self)
        self._previews = PreviewEngine()
        self._preview_runner = LatestRunner(self._run_preview, "occlusion-preview")
        self._snapshot = Snapshot(self)
        self._source = PreparedInput.prepare(model if model is not None else _default_model(),
                                      image if image is not None else sample_image())
        self._structure = structured.inspect(self._source)  # before the traits: target_objects are checked against it
        super().__init__(targets=targets, target_objects=target_objects, top_k=top_k, colormaps=colormap_tables(),
                         sequential_colormaps=colormap_tables(SEQUENTIAL_COLORMAPS), methods_table=browser_table(),
                         **params)
        self.on_msg(self._on_custom_msg)
        self._ready = True
        self._source_changed()

    def __repr__(self) -> str:
        return structured.widget_repr(self)

    # --- Python API ------------------------------------------------------------------------------

    @property
    def result(self) -> OcclusionResult | AttributionResult | None:
        """The current method's maps as shown (partial while ``status == "running"``)."""
        return self._result

    @property
    def comparison(self) -> Comparison | None:
        """The compare view (``compare=True``) once its maps and curves are done: every
        method's result and a :class:`FaithfulnessTable` for the current class."""
        compare = self._views[0]
        return compare.comparison(self._source.x.cpu().numpy()) if compare is not None else None

    @property
    def activations(self) -> LayerActivations | None:
        """The layer view's channels (``show_layers=True``), strongest first."""
        layers = self._views[1]
        return layers.activations if layers is not None else None

    @property
    def model(self) -> ImageClassifier:
        return self._source.classifier

    @model.setter
    def model(self, value: Any) -> None:
        self._source = PreparedInput.prepare(value if value is not None else _default_model(), self._source.x)
        self._source_changed()

    @property
    def image(self) -> Any:
        """The input as the network sees it, a (C, H, W) tensor; assign any image to change it."""
        return self._source.x

    @image.setter
    def image(self, value: Any) -> None:
        self._source = PreparedInput.prepare(self._source.classifier, value if value is not None else sample_image())
        self._source_changed()

    def engine_params(self) -> dict[str, Any]:
        """The keyword arguments the next sweep passes to :func:`occlusion_sensitivity`."""
        return _params.engine_params(self)

    def method_params(self, method: str | None = None) -> dict[str, Any]:
        """The keyword arguments the widget passes to ``method``'s function (default: the current
        method; see ``occlusion_widget.methods.registry.METHODS``): each parameter fed by a trait,
        the classes (``targets`` or ``top_k``) and ``device``."""
        return _params.method_params(self, method or self.method)

    def wait(self, timeout: float | None = None) -> OcclusionResult | AttributionResult | None:
        """Block until the background work ends (maps, compare and layer views); returns :attr:`result`."""
        start = time.monotonic()
        if not self._controller.wait(timeout):
            raise TimeoutError(f"the computation did not finish within {timeout} s")
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        self._snapshot.flush(left)  # the static output shows what wait() returns
        return self._result

    def cancel(self) -> None:
        """Stop the background work (partial maps stay; status becomes 'cancelled' if the map was unfinished)."""
        if self._controller.busy:
            self._controller.cancel()

    def recompute(self, force: bool = False) -> None:
        """Compute what the widget shows for the current parameters (cached results come back at once).

        ``force=True`` empties the cache first, e.g. after changing the model's weights in place.
        """
        if force:
            self._controller.cache.clear()
        if self._structure.error:  # the model raised on the clean image: look again (it may be fixed)
            structured.refresh(self)
        self._controller.request(_params.compute_plan(self, self._source))

    def computed_results(self) -> dict[str, OcclusionResult | AttributionResult]:
        """Every method whose complete maps are cached for the current model, image, classes and
        parameters, keyed by method name (the current method included once it is done), as shown."""
        out = {}
        for method in METHODS:
            request = _params.map_request(self, method)
            result = None if request.error else self._controller.cache.peek(request.key(self._source))
            if result is not None and result.complete:
                out[method] = request.shown(result)
        return out

    def request_preview(self, x: float, y: float, wait: bool = True) -> dict:
        """Score the image with the mask centred at pixel (x, y), as dragging the mask does."""
        seq = int(self.preview_request.get("seq", 0)) + 1 if self.preview_request else 1
        self.preview_request = {"x": float(x), "y": float(y), "seq": seq}
        if wait:
            self._preview_runner.wait_idle(30)
        return self.preview

    def explain_detection(self, index: int) -> int:
        """Explain detection ``index`` (into :attr:`detections`), as a click on its box does: its tab is
        selected, or added (``target_objects``) and selected. Returns the tab's index."""
        return structured.explain_detection(self, index)

    def explain_region(self, box: Sequence[float], label: int | None = None) -> int:
        """Explain segmentation class ``label`` (default: the current tab's) over ``box`` (x0, y0, x1, y1)
        in input pixels, as dragging a region does: ``SegmentationTarget(label, region=box)`` as a new
        tab, selected. Returns its index."""
        return structured.explain_region(self, box, label)

    def save_png(self, path: str | PathLike, dpi: int = 100) -> None:
        """Save the maps over the image with class titles (current colormap, opacity and percentile)."""
        from ..render import save_figure

        if self._result is None or not self._result.complete:
            self.wait()
        if self._result is None:
            raise RuntimeError(f"no maps to save: {self.error or 'nothing was computed'}")
        save_figure(self._result, path, dpi=dpi, **self.figure_options())

    def figure_options(self) -> dict[str, Any]:
        """The keyword arguments :func:`occlusion_widget.render.figure` gets to draw what the widget shows."""
        return {"cmap": self.colormap, "sequential_cmap": self.sequential_colormap, "alpha": self.opacity,
                "percentile": self.percentile}

    def save_html(self, path: str | PathLike) -> pathlib.Path:
        """Save the widget as one self-contained HTML file: the maps, tabs, computed methods, compare
        panels and a snapped mask preview, no kernel or network needed.

        Parameters
        ----------
        path : str or path-like
            Where to write the file.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from .report import write_report

        return write_report(self, path)

    def close(self) -> None:
        """Stop the background threads and close the widget."""
        for part in ("_controller", "_preview_runner", "_snapshot"):
            if hasattr(self, part):
                getattr(self, part).close(timeout=5.0)  # a batch in flight finishes first
        super().close()

    # --- reacting to changes -----------------------------------------------------------------

    @t.observe(*_PARAMS)
    def _on_param(self, change: dict) -> None:
        if not self._ready:
            return
        if change["name"] == "top_k" and (self.targets is not None or self.target_objects is not None):
            with self.hold_trait_notifications():  # a new top_k replaces explicit targets (this observer runs again)
                self.targets = self.target_objects = None  # type: ignore[assignment]  # traitlets' stubs ignore allow_none
            return
        if change["name"] == "targets" and change["new"] is not None and self.target_objects is not None:
            self.target_objects = None  # type: ignore[assignment]  # allow_none; class indices replace clicked targets
            return
        self.recompute()
        if self.preview_request:
            self._preview_runner.submit(dict(self.preview_request))

    @t.observe(*VIEW_PARAMS)
    def _on_view_param(self, _change: dict) -> None:
        if self._ready:
            self.recompute()

    @t.observe("selected")
    def _on_selected(self, _change: dict) -> None:
        if self._ready and self.compare:  # the compare view explains the current class
            self.recompute()

    @t.observe("preview_request")
    def _on_preview_request(self, change: dict) -> None:
        if self._ready and change["new"]:
            self._controller.yield_to_preview()
            self._preview_runner.submit(dict(change["new"]))

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "cancel":
            self.cancel()
        elif kind == "ping":  # the browser asks whether a kernel is alive
            self.send({"type": "pong"})

    def _source_changed(self) -> None:
        x = self._source.x
        ready, self._ready = self._ready, False  # one recompute below, not one per trait
        if self.target_objects is not None and self._shown_source is not None \
                and self._shown_source is not self._source:
            self.target_objects = None  # type: ignore[assignment]  # allow_none; boxes of another image or model
        structured.refresh(self)
        self._ready, self._shown_source = ready, self._source
        self.image_png = to_png(x.cpu().numpy())
        self.model_name = self._source.classifier.name
        self.notice = self._source.notice
        self.recompute()
        h, w = x.shape[1:]
        self.preview_request = {"x": (w - 1) / 2, "y": (h - 1) / 2, "seq": int(self.preview_request.get("seq", 0)) + 1}

    def _run_preview(self, request: dict, _cancel: threading.Event) -> None:
        seq = int(request.get("seq", 0))
        try:
            state, fill = answer_preview(self._previews, self, request)
        except Exception as exc:  # noqa: BLE001 - shown in the preview panel; the widget stays usable
            message = str(exc) if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: {exc}"
            self.preview = {"seq": seq, "error": message}
            return
        if fill is not None:
            self.fill_png = to_png(fill)
        self.preview = state

    # --- the sink: called by the Controller (under its lock, from any thread) ------------------

    def on_started(self) -> None:
        self.error = ""
        self.progress = 0.0
        self.status = "running"

    def on_partial(self, result: OcclusionResult | AttributionResult | None, done: int, total: int) -> None:
        if result is not None:
            self._show(result)
        self.progress = done / total

    def on_finished(self, result: OcclusionResult | AttributionResult, cached: bool) -> None:
        self._show(result)
        self.error = ""
        self.progress = 1.0
        self.status = "done"
        self._snapshot.refresh(result)

    def on_failed(self, message: str) -> None:
        self.error = message
        self.status = "error"

    def on_cancelled(self) -> None:
        self.status = "cancelled"

    def on_views(self, compare: CompareState | None, layers: LayerState | None) -> None:
        self._views = (compare, layers)
        self.comparison_data = comparison_state(compare) if compare is not None else {}
        self.layer_data = layer_state(layers) if layers is not None else {}

    def _show(self, result: OcclusionResult | AttributionResult) -> None:
        self._result = result
        self._version += 1
        state = result_state(result, self._version)
        state["classes"] = structured.with_targets(state["classes"], structured.current_specs(self))
        if state["classes"] != self.classes:
            self.classes = state["classes"]
            if self.selected >= len(state["classes"]):
                self.selected = 0
        if state["resolved_params"] != self.resolved_params:
            self.resolved_params = state["resolved_params"]
        self.map_data = state["map_data"]

    # --- display -------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        """anywidget's bundle (the widget view), plus the static output of :class:`Snapshot`."""
        return self._snapshot.mimebundle(super()._repr_mimebundle_(**kwargs))

    def _ipython_display_(self, **kwargs: Any) -> None:
        """Show the live widget, and below it the static output that viewers without widgets show
        (kept up to date by :class:`~occlusion_widget.widget.snapshot.Snapshot` as sweeps finish)."""
        self._snapshot.ipython_display(anywidget.AnyWidget._repr_mimebundle_(self, **kwargs))

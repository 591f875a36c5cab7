"""The typed, synced traits of :class:`~occlusion_widget.widget.OcclusionWidget` and their
validation (every bad value is a ``TraitError`` naming the trait and what is allowed; the old value
stays). The widget class adds the behaviour; this base holds the state only.
"""

from __future__ import annotations

import math
from typing import Any

import anywidget
import traitlets as t

from ..engine.incremental import STRATEGIES
from ..engine.result import UPSAMPLING
from ..engine.sweep import PRECISIONS
from ..methods.integrated_gradients import RULES
from ..methods.registry import METHODS
from .frontend import COLORMAPS, SEQUENTIAL_COLORMAPS

STATUSES = ("idle", "running", "done", "cancelled", "error")
OUTPUTS = ("probability", "logit")
#: Engine keyword arguments the widget forwards (everything but model, image, targets/top_k).
ENGINE_PARAMS = ("mask_size", "stride", "mask_value", "mask_clipping", "upsampling", "output", "layer",
                 "batch_size", "device", "precision", "strategy")
#: The compare and layer views' traits (they change what is computed, as method parameters do).
_VIEWS = ("compare", "compare_steps", "show_layers", "activation_layer", "layer_channels", "layer_strength")
#: Traits of the methods (every registry parameter's trait that is not an engine parameter) and of the views.
VIEW_PARAMS = ("method",) + tuple(dict.fromkeys(
    p.trait for spec in METHODS.values() for p in spec.params if p.trait and p.trait not in ENGINE_PARAMS)) + _VIEWS
#: Float traits that must hold finite numbers, and what is allowed (a NaN never equals itself: it defeats caches).
_FINITE = {"mask_value": "'auto', 'blur', a finite number or one finite number per channel",
           "opacity": "a finite number in [0, 1]", "noise_level": "a finite number >= 0",
           "ig_baseline": "a finite number or one finite number per channel",
           "percentile": "None or a finite number in (0, 100]"}


def _finite(name: str, value: Any) -> Any:
    """``value`` if it holds no NaN or infinity, else a TraitError naming ``name`` and what is allowed."""
    numbers = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise t.TraitError(f"{name}={value!r} is not allowed; use {_FINITE[name]}")
    return value


def _pair_trait(help: str) -> t.TraitType:
    return t.Union([t.Unicode(), t.Int(), t.List(t.Int(), minlen=2, maxlen=2)], default_value="auto", help=help).tag(sync=True)


class WidgetTraits(anywidget.AnyWidget):
    """The widget's state: engine parameters, method and view parameters (change what is
    computed), what the kernel shows, and the browser's view state."""

    # --- engine parameters -------------------------------------------------------------------
    mask_size = _pair_trait("Mask size in pixels: 'auto' (20% of the input), an int, or [h, w].")
    stride = _pair_trait("Step between mask positions: 'auto' (10% of the input), an int, or [a, b].")
    mask_value = t.Union(
        [t.Unicode(), t.Float(), t.List(t.Float())], default_value="auto",
        help="Replacement for occluded pixels: 'auto' (channel means), 'blur', a number, or one per channel.",
    ).tag(sync=True)
    mask_clipping = t.Bool(True, help="True: masks centred on the lattice, cut "
                                      "at the edges; False: full-size masks inside.").tag(sync=True)
    upsampling = t.Enum(UPSAMPLING, "bicubic", help="How maps are made from the grid of positions.").tag(sync=True)
    output = t.Enum(OUTPUTS, "probability", help="The score whose drop is mapped: softmax probability or logit.").tag(sync=True)
    targets = t.List(t.Int(), default_value=None, allow_none=True, help="Class indices to explain; "
                                                                        "None: the top_k classes.").tag(sync=True)
    top_k = t.Int(3, help="How many of the best classes to explain when targets is None.").tag(sync=True)
    min_score = t.Float(0.5, help="Detectors: explain the detections with score >= min_score (at most top_k) when "
                        "targets and target_objects are None.").tag(sync=True)
    target_objects = t.List(t.Dict(), default_value=None, allow_none=True, help="Segmenters and detectors: the "
                            "targets explained, as specs ({'kind': 'segmentation', 'label', 'region': 'predicted', "
                            "None or [x0, y0, x1, y1]} or {'kind': 'detection', 'box', 'label', 'score'}); set by "
                            "a click on a box or a dragged region; None: targets / top_k.").tag(sync=True)
    layer = t.Unicode(None, allow_none=True, help="Python only: explain this module's channels instead of the output.")
    batch_size = t.Int(None, allow_none=True, help="Python only: occluded images per forward pass (default on CPU: 8-24, "
                                                   "see plan.responsive_batch).")
    device = t.Unicode("auto", help="Python only: 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    precision = t.Enum(PRECISIONS, "float32", help="Python only: 'float32', or 'bfloat16' (faster on AMX CPUs and GPUs, "
                                                   "~1e-2 accurate).")
    strategy = t.Enum(STRATEGIES, "auto", help="Python only: 'auto', 'full' (the whole network per mask) or 'incremental' "
                                               "(only what the mask changes; same maps within 1e-4); see occlusion_sensitivity.")

    # --- method, gradient parameters, compare and layer views ----------------------------------
    method = t.Enum(tuple(METHODS), "occlusion", help="The map shown (same classes): " + ", ".join(map(repr, METHODS))
                    + ".").tag(sync=True)
    gradient_output = t.Enum(OUTPUTS, "logit", help="The score the gradient methods "
                                                    "differentiate (the logit is customary).").tag(sync=True)
    gradcam_layer = t.Unicode(None, allow_none=True, help="Grad-CAM's layer (a module name); "
                                                          "None: the last spatial layer.").tag(sync=True)
    n_samples = t.Int(25, min=1, help="SmoothGrad: noisy copies averaged.").tag(sync=True)
    noise_level = t.Float(0.15, min=0.0, help="SmoothGrad: noise sd as a fraction of the input's value range.").tag(sync=True)
    ig_baseline = t.Union([t.Float(), t.List(t.Float())], default_value=0.0, help="Integrated Gradients: the path's "
                          "start, a number (0 = black) or one per channel.").tag(sync=True)
    ig_steps = t.Int(50, min=1, help="Integrated Gradients: points on the path.").tag(sync=True)
    ig_rule = t.Enum(RULES, "gausslegendre", help="Python only: Integrated Gradients' quadrature rule.")
    compare = t.Bool(False, help="Show every method for the current class with deletion / insertion AUCs.").tag(sync=True)
    compare_steps = t.Int(10, min=1, help="Python only: steps of the compare view's deletion / insertion curves.")
    show_layers = t.Bool(False, help="Show the layer view: a layer's strongest channels for the image.").tag(sync=True)
    activation_layer = t.Unicode(None, allow_none=True, help="The layer view's layer (a module name); None: Grad-CAM's "
                                                             "default layer.").tag(sync=True)
    layer_channels = t.Int(16, min=1, max=256, help="How many of the strongest channels the layer view shows.").tag(sync=True)
    layer_strength = t.Enum(("mean", "max"), "mean", help="Channel strength in the layer "
                                                          "view: spatial 'mean' or 'max'.").tag(sync=True)

    # --- what the browser shows (set by the kernel) ------------------------------------------
    model_name = t.Unicode("", help="The model's name.").tag(sync=True)
    image_png = t.Bytes(b"", help="The input as the network sees it, PNG; sent when the image changes.").tag(sync=True)
    fill_png = t.Bytes(b"", help="What occluded pixels become (C, H, W) as PNG, for the preview image.").tag(sync=True)
    map_data = t.Dict(help="Maps: {data: float32 LE bytes (K, H, W), shape, range per class, worst (y, x) per class, "
                           "complete, computed, version}.").tag(sync=True)
    classes = t.List(t.Dict(), help="One {id, name, score} per map: class id, name, unoccluded score.").tag(sync=True)
    resolved_params = t.Dict(help="The parameters the engine used ('auto' resolved), and the grid shape.").tag(sync=True)
    progress = t.Float(0.0, min=0.0, max=1.0, help="Fraction of mask positions done in the current sweep.").tag(sync=True)
    status = t.Enum(STATUSES, "idle", help="'idle', 'running', 'done', 'cancelled' or 'error'.").tag(sync=True)
    error = t.Unicode("", help="A readable message when status is 'error'.").tag(sync=True)
    notice = t.Unicode("", help="A note about the model or input shown above the maps, e.g. that a plain nn.Module gets "
                                "[0, 1] RGB pixels without normalisation; '' when there is none.").tag(sync=True)
    comparison_data = t.Dict(help="Compare view: {status, target, label, panels: [{method, title, status, curve_status, "
                                  "error, data: float32 (H, W) of the class, shape, range, signed, deletion_auc, "
                                  "insertion_auc}]}.").tag(sync=True)
    layer_data = t.Dict(help="Layer view: {status, error, layers: [{name, shape, type}], default, layer, shape, "
                             "n_channels, channels, strength, strength_by, data: float32 (n, h, w)}.").tag(sync=True)
    output_kind = t.Unicode("classification", help="What the model outputs: 'classification', 'segmentation' "
                            "or 'detection'.").tag(sync=True)
    detections = t.List(t.Dict(), help="Detector: the detections on the clean image, best first: {box: [x0, y0, x1, "
                        "y1], label, score, name}.").tag(sync=True)
    segmentation = t.Dict(help="Segmenter: {data: uint8 (H, W) bytes, the predicted class per pixel, shape, "
                          "legend: [{id, name, color, fraction}]}.").tag(sync=True)
    preview = t.Dict(help="Answer to preview_request: {seq, x, y, box, "
                          "base, occluded, targets, output} or {seq, error}.").tag(sync=True)

    # --- view state (set by the browser, saved with the notebook) ----------------------------
    methods_table = t.List(t.Dict(), help="The methods (registry.browser_table()): names, titles, kinds, parameters; "
                           "sent once.").tag(sync=True)
    colormaps = t.Dict(help="{name: flat RGB lookup table (256 entries)}, from matplotlib; sent once.").tag(sync=True)
    colormap = t.Unicode("RdBu_r", help="The diverging colormap of occlusion maps (a key of colormaps).").tag(sync=True)
    sequential_colormaps = t.Dict(help="{name: flat RGB lookup table (256 "
                                       "entries)} for non-negative maps; sent once.").tag(sync=True)
    sequential_colormap = t.Unicode("inferno", help="The colormap of non-negative maps (gradients, activations).").tag(sync=True)
    opacity = t.Float(0.6, min=0.0, max=1.0, help="Opacity of the heatmap over the image.").tag(sync=True)
    percentile = t.Float(None, allow_none=True, help="Colour scale limit: this percentile of |map| (None: the "
                         "largest value); in (0, 100].").tag(sync=True)
    selected = t.Int(0, help="The class tab shown (an index into classes).").tag(sync=True)
    show_outputs = t.Bool(True, help="Draw the model's output over the image: a segmenter's mask, a detector's "
                          "boxes.").tag(sync=True)
    preview_request = t.Dict(help="{x, y, seq}: the mask centre in image pixels; the kernel answers in preview.").tag(sync=True)

    @t.validate("mask_size", "stride")
    def _validate_pair(self, proposal: dict) -> Any:
        value = proposal["value"]
        if isinstance(value, str) and value != "auto":
            raise t.TraitError(f"{proposal['trait'].name}={value!r} is not allowed; use 'auto', an int or [h, w]")
        return value

    @t.validate("mask_value")
    def _validate_mask_value(self, proposal: dict) -> Any:
        value = proposal["value"]
        if isinstance(value, str) and value not in ("auto", "blur"):
            raise t.TraitError(f"mask_value={value!r} is not allowed; use 'auto', 'blur', a number or one per channel")
        return _finite("mask_value", value)

    @t.validate("opacity", "noise_level", "ig_baseline")  # (one validator per trait: mask_value's checks this too)
    def _validate_finite(self, proposal: dict) -> Any:
        return _finite(proposal["trait"].name, proposal["value"])

    @t.validate("min_score")
    def _validate_min_score(self, proposal: dict) -> Any:
        if not math.isfinite(proposal["value"]):
            raise t.TraitError(f"min_score={proposal['value']!r} is not allowed; use a finite number")
        return proposal["value"]

    @t.validate("target_objects")
    def _validate_target_objects(self, proposal: dict) -> Any:
        from .targets import check_spec  # (imports the engine's targets; traits stay light to import)

        value = proposal["value"]
        if value is None:
            return None
        kind = getattr(getattr(self, "_structure", None), "kind", "classification")
        if kind == "classification":
            raise t.TraitError("target_objects: this model is a classifier; use targets (class indices) instead")
        if not value:
            raise t.TraitError("target_objects=[] is not allowed; use None (the default targets) or a non-empty list")
        try:
            return [check_spec(spec, kind) for spec in value]
        except (ValueError, TypeError) as exc:
            raise t.TraitError(str(exc)) from None

    @t.validate("percentile")
    def _validate_percentile(self, proposal: dict) -> Any:
        value = proposal["value"]
        if value is not None and not (math.isfinite(value) and 0.0 < value <= 100.0):
            raise t.TraitError(f"percentile={value!r} is not allowed; use {_FINITE['percentile']}")
        return value

    @t.validate("colormap", "sequential_colormap")
    def _validate_colormap(self, proposal: dict) -> str:
        allowed = COLORMAPS if proposal["trait"].name == "colormap" else SEQUENTIAL_COLORMAPS
        if proposal["value"] not in allowed:
            raise t.TraitError(f"{proposal['trait'].name}={proposal['value']!r} is not allowed; use one of {', '.join(allowed)}")
        return proposal["value"]


__all__ = ["ENGINE_PARAMS", "OUTPUTS", "STATUSES", "VIEW_PARAMS", "WidgetTraits"]

"""The attribution methods, declared once: name, words, function, parameters, scale, streaming.

Every consumer reads :data:`METHODS` instead of dispatching on method names:
the widget (which trait feeds which parameter), the compare view, the CLI
(``--method`` and its options), :mod:`occlusion_widget.render` (signed or
sequential colour scale) and the browser (:func:`browser_table`, synced once).
Adding a method is one function plus one :class:`MethodSpec` entry here.

Every method function follows one contract: ``function(model, image, targets=None, *,
top_k, device, progress, cancel, **params)`` returns a :class:`~occlusion_widget.engine.MapResult`
whose ``method`` is its name; ``progress(done, total, partial_or_None)`` after each batch;
when ``cancel`` is set it returns its result so far with ``complete=False`` (NaN where
nothing is known) instead of raising. So a caller runs any method the same way::

    result = get_method(name).function(model, x, progress=progress, cancel=cancel, **params)
    if not result.complete:  # cancelled: keep nothing, or show it as partial
        ...

This is data, not a framework: :func:`run` only checks parameter *names* and
calls the function, which validates values and says what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..engine.fills import MASK_SHAPES
from ..engine.incremental import STRATEGIES
from ..engine.inputs import OUTPUTS
from ..engine.result import UPSAMPLING
from ..engine.sweep import PRECISIONS, occlusion_sensitivity
from .common import MAP_UPSAMPLING
from .gradcam import grad_cam
from .gradients import REDUCE, saliency, smoothgrad
from .integrated_gradients import RULES, integrated_gradients

#: What a parameter's values look like, so that a UI or the CLI can offer and parse them:
#: "int", "float", "bool", "choice" (one of ``choices``), "size" ("auto", N or (h, w) pixels),
#: "fill" ("auto", "blur", a number or one per channel), "baseline" (a number, one per
#: channel or an input-shaped array), "layer" (a module name of the model).
ParamKind = Literal["int", "float", "bool", "choice", "size", "fill", "baseline", "layer"]

#: Keyword arguments every method function takes; not declared per method.
COMMON = ("targets", "top_k", "device", "progress", "cancel")


@dataclass(frozen=True)
class MethodParam:
    """One keyword argument of a method function.

    Attributes
    ----------
    name : str
        The keyword argument, and the CLI option ``--name-with-dashes``.
    default : JSON-able
        The function's default (a test checks they agree).
    kind : ParamKind
    help : str
        One line for tooltips and ``--help``.
    minimum, maximum : float or None
        Inclusive bounds of a number (of each number, for "size"); None: unbounded.
    choices : tuple of str
        The allowed values of a "choice".
    nullable : bool
        None is allowed (it means the function's own automatic choice).
    trait : str or None
        The widget trait that feeds it (None: the widget leaves the default).
        Methods share a trait where the meaning is the same (``gradient_output``).
    python_only : bool
        The trait is set from Python only: the browser shows no control for it.
    """

    name: str
    default: Any
    kind: ParamKind
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    trait: str | None = None
    python_only: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "default": self.default, "kind": self.kind, "help": self.help,
                "minimum": self.minimum, "maximum": self.maximum, "choices": list(self.choices),
                "nullable": self.nullable, "trait": self.trait}


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method.

    Attributes
    ----------
    name : str
        The key: ``result.method``, the widget's ``method`` value, ``--method``.
    title, heading, hint : str
        Button / panel title, the widget's heading, a one-line explanation (tooltip).
    function : callable
        ``function(model, image, targets=None, *, top_k, device, progress, cancel, **params)``
        returning a MapResult whose ``method`` is ``name`` (an OcclusionResult for occlusion).
    kind : "perturbation" or "gradient"
    signed : bool
        True: maps have both signs (diverging colour scale centred on 0); False:
        non-negative by definition (sequential scale from 0).
    streams : bool
        ``progress`` receives partial maps worth showing while it runs.
    partial_on_cancel : bool
        Always True: the one cancellation contract of every method is that on
        ``cancel`` the function *returns* its result so far with ``complete=False``
        (NaN where nothing is known; see :class:`~occlusion_widget.engine.MapResult`),
        never raises :class:`Cancelled`. Kept for callers written against the old flag.
    images_only : bool
        Refuses a 1-D signal (C, L).
    default_output : str
        The score explained by default ("probability" or "logit").
    params : tuple of MethodParam
        Every keyword argument besides :data:`COMMON` and ``hidden``.
    display_params : tuple of str
        Parameters that only change how ``maps`` is made from ``grid``
        (``result.with_upsampling``): a cache can apply them to a finished result.
    hidden : tuple of str
        Keyword arguments deliberately not offered (internal or expert use).
    reference : str
    """

    name: str
    title: str
    heading: str
    hint: str
    function: Callable[..., Any]
    kind: Literal["perturbation", "gradient"]
    signed: bool
    streams: bool
    default_output: str
    params: tuple[MethodParam, ...]
    partial_on_cancel: bool = True
    images_only: bool = False
    display_params: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    reference: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> MethodParam:
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"{self.name} has no parameter {name!r}; its parameters are {', '.join(self.param_names)}")

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise TypeError naming any keyword this method does not take (values are the function's to check)."""
        allowed = set(self.param_names) | set(COMMON) | set(self.hidden)
        for name in params:
            if name not in allowed:
                close = difflib.get_close_matches(name, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"{self.name} got unknown parameter {name!r}{hint}; its parameters are "
                                f"{', '.join(self.param_names)}, and {', '.join(COMMON)}")


_OUTPUT_HELP = "The score explained: 'probability' (softmax) or 'logit' (raw output)."


def _output(default: str, trait: str) -> MethodParam:
    return MethodParam("output", default, "choice", _OUTPUT_HELP, choices=OUTPUTS, trait=trait)


def _batch(help: str, trait: str | None = None) -> MethodParam:
    return MethodParam("batch_size", None, "int", help, minimum=1, nullable=True, trait=trait, python_only=True)


#: With targets=None and a detector: the lowest detection score explained (every method).
_MIN_SCORE = MethodParam("min_score", 0.5, "float", "Detectors, targets=None: explain detections scoring at least "
                         "this.", python_only=True)

_REDUCE = MethodParam("reduce", "max", "choice", "Over channels: max_c |g_c| or sum_c |g_c|.", choices=REDUCE)

_SPECS = (
    MethodSpec(
        "occlusion", "Occlusion", "Occlusion sensitivity",
        "How much the class score drops when a square around each pixel is masked",
        occlusion_sensitivity, "perturbation", signed=True, streams=True, default_output="probability",
        # Python only: positions= (a bool grid) and input_kind= (image / signal / volume: read from the model).
        display_params=("upsampling",), hidden=("positions", "input_kind"),
        reference="Zeiler & Fergus 2014",
        params=(
            MethodParam("mask_size", "auto", "size", "Mask side in pixels: 'auto' (20% of the input), N or (h, w).",
                        minimum=1, trait="mask_size"),
            MethodParam("stride", "auto", "size", "Step between mask positions: 'auto' (10% of the input), N or (a, b).",
                        minimum=1, trait="stride"),
            MethodParam("mask_value", "auto", "fill", "What hides the region: 'auto' (channel means), 'blur', "
                        "'inpaint' (filled in from its surroundings), a number or one per channel.", trait="mask_value"),
            MethodParam("mask_clipping", True, "bool", "Smaller masks at the edges (False: full-size masks only).",
                        trait="mask_clipping"),
            MethodParam("mask_shape", "box", "choice", "'gaussian': a soft mask fading to its edge (x*(1-w) + fill*w).",
                        choices=MASK_SHAPES),
            MethodParam("segments", None, "choice", "Occlude regions instead of boxes: 'slic' superpixels (or, from "
                        "Python, an int label image (H, W)).", choices=("slic",), nullable=True),
            MethodParam("n_segments", 50, "int", "With segments='slic': the number of superpixels aimed at.",
                        minimum=1),
            _MIN_SCORE,
            MethodParam("upsampling", "bicubic", "choice", "How maps are made from the position grid.",
                        choices=UPSAMPLING, trait="upsampling"),
            _output("probability", "output"),
            MethodParam("layer", None, "layer", "Explain this module's channels (summed over space) instead of the "
                        "output.", nullable=True, trait="layer", python_only=True),
            _batch("Occluded inputs per forward pass (default 32 on CPU, 256 on CUDA).", "batch_size"),
            MethodParam("precision", "float32", "choice", "'bfloat16' runs under autocast (faster, ~1e-2).",
                        choices=PRECISIONS, trait="precision", python_only=True),
            MethodParam("strategy", "auto", "choice", "'incremental' recomputes only what each mask changes.",
                        choices=STRATEGIES, trait="strategy", python_only=True),
        ),
    ),
    MethodSpec(
        "grad_cam", "Grad-CAM", "Grad-CAM",
        "Grad-CAM: a conv layer's channels weighted by the class gradient (coarse, class-specific)",
        grad_cam, "gradient", signed=False, streams=False, default_output="logit", images_only=True,
        # Python only: reshape_transform= (a callable for token layers; resolved from the model otherwise).
        display_params=("upsampling",), hidden=("reshape_transform",), reference="Selvaraju et al. 2017",
        params=(
            MethodParam("layer", None, "layer", "The layer (conv or transformer tokens); None: the last spatial "
                        "layer, or a ViT's last block's first norm.", nullable=True, trait="gradcam_layer"),
            _MIN_SCORE,
            _output("logit", "gradient_output"),
            MethodParam("upsampling", "bilinear", "choice", "How maps are made from the layer's grid.",
                        choices=MAP_UPSAMPLING),
        ),
    ),
    MethodSpec(
        "saliency", "Saliency", "Gradient saliency", "Gradient saliency: |d score / d pixel| (fine, noisy)",
        saliency, "gradient", signed=False, streams=False, default_output="logit",
        reference="Simonyan et al. 2014",
        params=(_REDUCE, _output("logit", "gradient_output"), _MIN_SCORE),
    ),
    MethodSpec(
        "smoothgrad", "SmoothGrad", "SmoothGrad", "SmoothGrad: the gradient averaged over noisy copies of the image",
        smoothgrad, "gradient", signed=False, streams=True, default_output="logit",
        reference="Smilkov et al. 2017",
        params=(
            MethodParam("n_samples", 25, "int", "Noisy copies averaged.", minimum=1, trait="n_samples"),
            MethodParam("noise_level", 0.15, "float", "Noise sd as a fraction of the input's value range.",
                        minimum=0.0, trait="noise_level"),
            _REDUCE,
            _output("logit", "gradient_output"),
            MethodParam("seed", 0, "int", "Seeds the noise; None: a fresh seed.", nullable=True),
            _batch("Noisy copies per forward/backward pass (default 8 on CPU, 64 on CUDA)."),
            _MIN_SCORE,
        ),
    ),
    MethodSpec(
        "integrated_gradients", "Integrated Gradients", "Integrated Gradients",
        "Integrated Gradients: the gradient summed along the path from a baseline image (signed; sums to the "
        "score difference)",
        integrated_gradients, "gradient", signed=True, streams=False, default_output="logit",
        reference="Sundararajan, Taly & Yan 2017",
        params=(
            MethodParam("baseline", 0.0, "baseline", "The path's start: a number (0 = black), one per channel, or an "
                        "input-shaped array.", trait="ig_baseline"),
            MethodParam("steps", 50, "int", "Points on the path.", minimum=1, trait="ig_steps"),
            MethodParam("rule", "gausslegendre", "choice", "The quadrature of the path integral (Captum's default).",
                        choices=RULES, trait="ig_rule", python_only=True),
            _batch("Path points per forward/backward pass (default 16 on CPU, 64 on CUDA)."),
            _output("logit", "gradient_output"),
            _MIN_SCORE,
        ),
    ),
)

#: The methods in display order (the widget's buttons, the compare view, ``--method``).
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def get_method(name: str) -> MethodSpec:
    """The spec of ``name``; ValueError listing the allowed names otherwise."""
    spec = METHODS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"method={name!r} is not allowed; use one of {', '.join(map(repr, METHODS))}")
    return spec


def run(name: str, model: Any, image: Any, targets: Any = None, **params: Any) -> Any:
    """``get_method(name).function(model, image, targets, **params)``, refusing unknown parameter names.

    Parameters
    ----------
    name : str
        A key of :data:`METHODS`.
    model, image, targets
        As for the method's function.
    **params
        The method's parameters (see ``METHODS[name].params``) and :data:`COMMON`.

    Returns
    -------
    MapResult
        An :class:`OcclusionResult` for occlusion; ``complete=False`` when ``cancel`` was set.
    """
    spec = get_method(name)
    spec.check_params(params)
    return spec.function(model, image, targets, **params)


def browser_table() -> list[dict[str, Any]]:
    """What the browser needs, JSON-able, in display order: per method its name, title,
    heading, hint, kind, signed, streams, default output, and the parameters with a
    synced widget trait (name, trait, kind, default, bounds, choices, help)."""
    return [
        {"name": s.name, "title": s.title, "heading": s.heading, "hint": s.hint, "kind": s.kind, "signed": s.signed,
         "streams": s.streams, "default_output": s.default_output, "images_only": s.images_only,
         "params": [p.as_json() for p in s.params if p.trait is not None and not p.python_only]}
        for s in METHODS.values()
    ]


__all__ = ["COMMON", "METHODS", "MethodParam", "MethodSpec", "ParamKind", "browser_table", "get_method", "run"]

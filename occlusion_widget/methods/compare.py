"""Every registered method's map of one image and class, with their deletion / insertion AUCs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine.classifier import ImageClassifier, as_classifier
from ..engine.inputs import prepare_input, resolve_device
from ..engine.model_state import check_materialised, prepared_module
from ..engine.result import MapResult
from . import registry
from .common import Cancelled, check_callbacks, check_cancel, check_class_index, map_for, scorer
from .faithfulness import FaithfulnessTable, deletion_insertion

#: Every registered method, in display order (compatibility name; the registry is the source).
METHODS = tuple(registry.METHODS)


@dataclass(frozen=True)
class Comparison:
    """The maps of several methods for one image and target, and their faithfulness.

    Attributes
    ----------
    target : int
    label : str or None
    probability : float
        The target's probability on the input.
    results : dict of method -> MapResult
        Each with the single target; ``results[m].maps[0]`` is the (H, W) map.
    table : FaithfulnessTable
        Deletion / insertion curves and AUCs per method (same keys).
    image : float32 (C, H, W)
    elapsed_s : dict of str -> float
        Seconds per method map and per faithfulness curve (``"<method>/faithfulness"``).
    """

    target: int
    label: str | None
    probability: float
    results: dict[str, MapResult]
    table: FaithfulnessTable
    image: np.ndarray
    elapsed_s: dict[str, float]

    def map(self, method: str) -> np.ndarray:
        """The (H, W) map of ``method``."""
        return map_for(self.results[method], self.target)


def compare_methods(
    model: ImageClassifier | torch.nn.Module,
    image: object,
    target: int | None = None,
    *,
    methods: Sequence[str] = METHODS,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    mask_size: int | tuple[int, int] | str = "auto",
    stride: int | tuple[int, int] | str = "auto",
    mask_value: float | str | object = "auto",
    layer: str | None = None,
    n_samples: int = 25,
    noise_level: float = 0.15,
    reduce: str = "max",
    gradient_output: str = "logit",
    steps: int = 20,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Comparison:
    """Every registered method's map for one target (occlusion, Grad-CAM, saliency,
    SmoothGrad, Integrated Gradients), each scored by deletion and insertion curves.

    Occlusion maps the drop of the class *probability* (the engine's default);
    the gradient methods differentiate ``gradient_output`` (the logit by
    default). All maps are ranked the same way by the curves, which record the
    class probability, with removed pixels set by ``mask_value`` (as occlusion's mask).

    Parameters
    ----------
    model, image
        As for :func:`occlusion_sensitivity`.
    target : int, optional
        The class; default the top class.
    methods : sequence of str
        Names from the registry (:data:`METHODS`), in display order.
    method_params : mapping of method -> keyword arguments, optional
        Each method's own parameters (``registry.METHODS[m].params``), e.g.
        ``{"integrated_gradients": {"steps": 16, "baseline": 0.5}}``. They take
        precedence over the shorthands below.
    mask_size, stride, mask_value
        Occlusion's parameters; ``mask_value`` (and ``mask_size`` for "blur")
        also set the fill of the deletion / insertion curves.
    layer : str, optional
        Shorthand for Grad-CAM's layer (default: the last spatial layer).
    n_samples, noise_level, reduce
        Shorthands for SmoothGrad's (``reduce`` also saliency's).
    gradient_output : "logit" or "probability"
        Shorthand for the ``output`` of every gradient method.
    steps : int
        Points on each faithfulness curve minus one (not Integrated Gradients'
        ``steps``: pass that in ``method_params``).
    batch_size : int, optional
        Occlusion and faithfulness images per forward pass.
    progress : callable(done, total, stage), optional
        Called after each stage with its name: ``"occlusion"``, ...,
        ``"occlusion/faithfulness"``, ... (2 stages per method).
    cancel : threading.Event, optional
        Passed to every stage; when set, raises :class:`Cancelled` (a partial
        map is not scored).

    Returns
    -------
    Comparison
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods={list(methods)!r} is not allowed; use distinct names from {list(METHODS)}")
    per_method = _method_params(methods, method_params, dict(
        mask_size=mask_size, stride=stride, mask_value=mask_value, batch_size=batch_size, layer=layer,
        n_samples=n_samples, noise_level=noise_level, reduce=reduce, output=gradient_output))
    check_callbacks(progress, cancel)
    if target is not None:
        target = check_class_index(target)
    classifier = as_classifier(model)
    check_materialised(classifier.module)
    dev = resolve_device(device)
    x, is_signal = prepare_input(classifier, image)
    if is_signal:
        raise ValueError("compare_methods: needs an image (C, H, W); Grad-CAM has no 1-D form here")
    check_cancel(cancel)
    module = prepared_module(classifier.module, dev)  # eval mode without flipping the user's module
    # No output= here: the curves record class probabilities, so the model must return (N, classes).
    score, _ = scorer(module, "probability", False, "compare_methods", reducible=False)
    with torch.inference_mode():
        probs = score(x[None].to(dev))[0].cpu()
    target = int(probs.argmax()) if target is None else int(target)
    if not 0 <= target < probs.numel():
        raise ValueError(f"target={target} outside [0, {probs.numel()}); the model has {probs.numel()} classes")

    total, done = 2 * len(methods), 0
    elapsed: dict[str, float] = {}

    def step(stage: str, started: float) -> None:
        nonlocal done
        done += 1
        elapsed[stage] = time.perf_counter() - started
        if progress is not None:
            progress(done, total, stage)

    results: dict[str, MapResult] = {}
    for method in methods:
        started = time.perf_counter()
        res = registry.run(method, classifier, x, target, device=dev, cancel=cancel, **per_method[method])
        if not res.complete:
            raise Cancelled(f"cancelled during {method}")
        results[method] = res
        step(method, started)

    curves = {}
    for method in methods:
        started = time.perf_counter()
        curves[method] = deletion_insertion(classifier, x, map_for(results[method], target), target, steps=steps,
                                            mask_value=mask_value, mask_size=mask_size, batch_size=batch_size,
                                            device=dev, cancel=cancel)
        step(f"{method}/faithfulness", started)
    label = classifier.label(target) if classifier.labels else None
    table = FaithfulnessTable(curves, target, label)
    return Comparison(target, label, float(probs[target]), results, table, x.cpu().numpy(), elapsed)


def _method_params(methods: Sequence[str], given: Mapping[str, Mapping[str, Any]] | None,
                   shorthands: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's keyword arguments: the shorthand keywords it takes, then ``method_params[m]``."""
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise TypeError(f"method_params={given!r} is not allowed; use a mapping of method name -> dict of parameters")
    stray = [m for m in given if m not in methods]
    if stray:
        raise ValueError(f"method_params: {stray} {'is' if len(stray) == 1 else 'are'} not among methods={list(methods)}")
    out = {}
    for m in methods:
        spec = registry.get_method(m)
        names = set(spec.param_names)
        params = {k: v for k, v in shorthands.items() if k in names and not (k == "output" and spec.kind != "gradient")}
        if spec.kind == "perturbation":
            params.pop("layer", None)  # the shorthand layer= is Grad-CAM's, not occlusion's layer= channel score
        else:
            params.pop("batch_size", None)  # the shorthand batch_size= is occlusion's (and the curves')
        own = given.get(m, {})
        if not isinstance(own, Mapping):
            raise TypeError(f"method_params[{m!r}]={own!r} is not allowed; use a dict of {m}'s parameters")
        spec.check_params(dict(own))
        out[m] = {**params, **own}
    return out


def comparison_figure(comparison: Comparison, cmap: str = "inferno", alpha: float = 0.55, curves: bool = True,
                      signed_cmap: str = "RdBu_r", percentile: float | None = None):
    """A matplotlib Figure: each method's map over the image, titled with its AUCs,
    and (``curves=True``) a second row with the deletion and insertion curves.

    Non-negative maps use ``cmap`` from 0; signed ones (the registry's ``signed``,
    e.g. Integrated Gradients) use ``signed_cmap`` centred on 0. ``percentile``
    saturates each map's scale there (see :func:`occlusion_widget.render.colour_limit`).
    """
    from matplotlib.figure import Figure

    from ..render import colour_limit, is_signed  # render sits above methods: imported when drawing

    methods = list(comparison.results)
    n = len(methods)
    fig = Figure(figsize=(3.2 * n, 6.4 if curves else 3.4), layout="constrained")
    axes = fig.subplots(2 if curves else 1, n, squeeze=False)
    rgb = np.clip(np.moveaxis(comparison.image, 0, -1), 0, 1)
    for ax, method in zip(axes[0], methods, strict=True):
        m = comparison.map(method)
        signed = is_signed(comparison.results[method])
        limit = colour_limit(m, signed, percentile)
        ax.imshow(rgb)
        ax.imshow(m, cmap=signed_cmap if signed else cmap, alpha=alpha, vmin=-limit if signed else 0.0, vmax=limit)
        c = comparison.table.curves[method]
        spec = registry.METHODS.get(method)
        title = spec.title if spec is not None else method
        ax.set_title(f"{title}\ndel {c.deletion_auc:.3f}  ins {c.insertion_auc:.3f}", fontsize=10)
        ax.set_axis_off()
    if curves:
        for ax, method in zip(axes[1], methods, strict=True):
            c = comparison.table.curves[method]
            ax.plot(c.fractions, c.deletion_scores, label="deletion", color="tab:red")
            ax.plot(c.fractions, c.insertion_scores, label="insertion", color="tab:green")
            ax.set_xlabel("fraction of pixels")
            ax.set_ylim(-0.02, max(1.0, float(np.max(c.insertion_scores)), float(np.max(c.deletion_scores))) + 0.02)
            ax.legend(fontsize=8, loc="best")
        axes[1][0].set_ylabel(f"p({comparison.label or comparison.target})")
    return fig

"""All four maps of one image and class, with their deletion / insertion AUCs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..engine.inputs import prepare_input, resolve_device
from ..engine.model_state import check_materialised, prepared_module
from ..engine.result import OcclusionResult
from ..engine.sweep import occlusion_sensitivity
from ..models import ImageClassifier, as_classifier
from .common import (
    AttributionResult,
    Cancelled,
    check_callbacks,
    check_cancel,
    check_class_index,
    map_for,
    scorer,
)
from .faithfulness import FaithfulnessTable, deletion_insertion
from .gradcam import grad_cam
from .gradients import saliency, smoothgrad

METHODS = ("occlusion", "grad_cam", "saliency", "smoothgrad")
TITLES = {"occlusion": "Occlusion", "grad_cam": "Grad-CAM", "saliency": "Saliency", "smoothgrad": "SmoothGrad"}


@dataclass(frozen=True)
class Comparison:
    """The maps of several methods for one image and target, and their faithfulness.

    Attributes
    ----------
    target : int
    label : str or None
    probability : float
        The target's probability on the input.
    results : dict of method -> OcclusionResult or AttributionResult
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
    results: dict[str, OcclusionResult | AttributionResult]
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
    """Occlusion, Grad-CAM, saliency and SmoothGrad for one target, each scored by
    deletion and insertion curves.

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
        A subset of ``("occlusion", "grad_cam", "saliency", "smoothgrad")``, in display order.
    mask_size, stride, mask_value
        Occlusion's parameters; ``mask_value`` (and ``mask_size`` for "blur")
        also set the fill of the deletion / insertion curves.
    layer : str, optional
        Grad-CAM's layer (default: the last spatial layer).
    n_samples, noise_level, reduce
        SmoothGrad's (``reduce`` also saliency's).
    gradient_output : "logit" or "probability"
        The score the gradient methods differentiate.
    steps : int
        Points on each faithfulness curve minus one.
    batch_size : int, optional
        Occlusion and faithfulness images per forward pass.
    progress : callable(done, total, stage), optional
        Called after each stage with its name: ``"occlusion"``, ...,
        ``"occlusion/faithfulness"``, ... (2 stages per method).
    cancel : threading.Event, optional
        Passed to every stage; when set, raises :class:`Cancelled` (an
        incomplete occlusion sweep is not scored).

    Returns
    -------
    Comparison
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods={list(methods)!r} is not allowed; use distinct names from {list(METHODS)}")
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

    common = dict(device=dev, cancel=cancel)
    results: dict[str, OcclusionResult | AttributionResult] = {}
    for method in methods:
        started = time.perf_counter()
        if method == "occlusion":
            res = occlusion_sensitivity(classifier, x, target, mask_size=mask_size, stride=stride, mask_value=mask_value,
                                        batch_size=batch_size, **common)
            if not res.complete:
                raise Cancelled("cancelled during the occlusion sweep")
        elif method == "grad_cam":
            res = grad_cam(classifier, x, target, layer=layer, output=gradient_output, **common)
        elif method == "saliency":
            res = saliency(classifier, x, target, reduce=reduce, output=gradient_output, **common)
        else:
            res = smoothgrad(classifier, x, target, n_samples=n_samples, noise_level=noise_level, reduce=reduce,
                             output=gradient_output, **common)
        results[method] = res
        step(method, started)

    curves = {}
    for method in methods:
        started = time.perf_counter()
        curves[method] = deletion_insertion(classifier, x, map_for(results[method], target), target, steps=steps,
                                            mask_value=mask_value, mask_size=mask_size, batch_size=batch_size, **common)
        step(f"{method}/faithfulness", started)
    label = classifier.label(target) if classifier.labels else None
    table = FaithfulnessTable(curves, target, label)
    return Comparison(target, label, float(probs[target]), results, table, x.cpu().numpy(), elapsed)


def comparison_figure(comparison: Comparison, cmap: str = "inferno", alpha: float = 0.55, curves: bool = True):
    """A matplotlib Figure: each method's map over the image, titled with its AUCs,
    and (``curves=True``) a second row with the deletion and insertion curves."""
    from matplotlib.figure import Figure

    methods = list(comparison.results)
    n = len(methods)
    fig = Figure(figsize=(3.2 * n, 6.4 if curves else 3.4), layout="constrained")
    axes = fig.subplots(2 if curves else 1, n, squeeze=False)
    rgb = np.clip(np.moveaxis(comparison.image, 0, -1), 0, 1)
    for ax, method in zip(axes[0], methods):
        m = comparison.map(method)
        lo, hi = float(np.min(m)), float(np.max(m))
        ax.imshow(rgb)
        ax.imshow((m - lo) / (hi - lo if hi > lo else 1.0), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        c = comparison.table.curves[method]
        ax.set_title(f"{TITLES.get(method, method)}\ndel {c.deletion_auc:.3f}  ins {c.insertion_auc:.3f}", fontsize=10)
        ax.set_axis_off()
    if curves:
        for ax, method in zip(axes[1], methods):
            c = comparison.table.curves[method]
            ax.plot(c.fractions, c.deletion_scores, label="deletion", color="tab:red")
            ax.plot(c.fractions, c.insertion_scores, label="insertion", color="tab:green")
            ax.set_xlabel("fraction of pixels")
            ax.set_ylim(-0.02, max(1.0, float(np.max(c.insertion_scores)), float(np.max(c.deletion_scores))) + 0.02)
            ax.legend(fontsize=8, loc="best")
        axes[1][0].set_ylabel(f"p({comparison.label or comparison.target})")
    return fig

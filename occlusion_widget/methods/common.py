"""What the attribution methods share: the result type, cancellation, and the
set-up every method does (input, device, eval mode, autograd on)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine.classifier import ImageClassifier, as_classifier
from ..engine.inputs import Output, describe_output, model_view, prepare_input, resolve_device, score_function
from ..engine.model_state import check_materialised, prepared_module
from ..engine.result import MAP_UPSAMPLING, MapResult, upsample_maps  # noqa: F401 (re-exported)
from ..engine.structured_outputs import check_min_score, is_target_objects, resolve_structured

ProgressFn = Callable[[int, int, MapResult | None], None]


class Cancelled(Exception):
    """Raised when ``cancel`` is set by the computations that have no partial result:
    :func:`deletion_insertion`, :func:`faithfulness_table`, :func:`compare_methods`
    and :func:`layer_activations` (half a curve is not a curve).

    The map methods (occlusion, Grad-CAM, saliency, SmoothGrad, Integrated
    Gradients) never raise it: on ``cancel`` they return their result so far with
    ``complete=False`` (see :class:`~occlusion_widget.engine.MapResult`).
    """


@dataclass(frozen=True)
class AttributionParams:
    """The resolved parameters of a gradient method (None where not applicable).

    ``output`` is the score differentiated (``"logit"``, ``"probability"`` or a
    callable's name); ``upsampling`` how ``maps`` was made from ``grid``.
    """

    method: str
    output: str
    upsampling: str = "none"
    layer: str | None = None
    reduce: str | None = None
    n_samples: int | None = None
    noise_level: float | None = None
    noise_sigma: float | None = None
    seed: int | None = None
    batch_size: int | None = None
    device: str = "cpu"


#: The gradient methods return the one result type of every method; the old name stays an alias.
AttributionResult = MapResult


def check_callbacks(progress: object, cancel: object) -> None:
    """``progress`` must be callable and ``cancel`` an Event, checked at the call (not at the first batch)."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress={progress!r} is not allowed; use None or a callable progress(done, total, partial)")
    if cancel is not None and not hasattr(cancel, "is_set"):
        raise TypeError("cancel: expected a threading.Event (anything with is_set())")


def cancelled(cancel: threading.Event | None) -> bool:
    """True when ``cancel`` is set: a map method then returns its partial result (``complete=False``)."""
    return cancel is not None and cancel.is_set()


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set (computations without a partial result)."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


@dataclass
class Prepared:
    """A model and input ready for a gradient pass."""

    classifier: ImageClassifier
    module: nn.Module
    x: torch.Tensor
    """float32 (C, H, W) on ``device``; (C, 1, L) for a 1-D signal."""
    is_signal: bool
    device: torch.device
    target_labels: list[str] | None = None
    """The maps' names when the targets are target objects (set by :func:`structured_targets`)."""

    def labels(self, targets: np.ndarray) -> list[str] | None:
        """The maps' names: the target objects' names, or the wrapper's class names."""
        return self.target_labels if self.target_labels is not None else labels_for(self.classifier, targets)


def structured_targets(p: Prepared, targets: object, top_k: int | None, output: Output, min_score: float,
                       method: str) -> tuple[Output, Any, int | None]:
    """Segmenters and detectors: ``(output, targets, top_k)`` for the method to use.

    Target objects (``SegmentationTarget`` / ``DetectionTarget``), or ``targets=None`` with a model whose
    output is a segmentation or detection output, become one ``output=`` callable scoring every target
    (prepared on the unoccluded input, one forward pass without grad) and the indices 0..K-1; their names
    go to ``p.target_labels``. Anything else comes back unchanged (int targets, callable outputs).
    """
    objects = is_target_objects(targets)
    if objects and callable(output):
        resolve_structured(None, targets, output, top_k, min_score, method=method)  # raises: give one
    check_min_score(min_score)
    if callable(output) or not (objects or targets is None):
        return output, targets, top_k
    with torch.no_grad():
        raw = p.module(model_view(p.x[None], p.is_signal))
    found = resolve_structured(raw, targets, output, top_k, min_score, p.classifier.labels, method=method)
    if found is None:
        return output, targets, top_k
    p.target_labels = found.labels
    return found.output, found.indices, None


@contextlib.contextmanager
def prepared(model: object, image: object, device: object, cancel: object) -> Iterator[Prepared]:
    """Resolve the input and device, get the module in eval mode on the device, and
    turn autograd on (even inside ``torch.inference_mode()``) for the duration.

    The user's module is never changed: ``Prepared.module`` is the module itself
    when it is already in eval mode on the device, otherwise a view of it in eval
    mode (:func:`prepared_module`), so another thread training or sweeping the
    same module never sees its mode or device flip. Parameters' ``.grad`` are
    never touched (gradients are taken with ``torch.autograd.grad``).
    """
    check_callbacks(None, cancel)
    classifier = as_classifier(model)  # type: ignore[arg-type]
    check_materialised(classifier.module)
    x, is_signal = prepare_input(classifier, image)
    dev = resolve_device(device)
    module = prepared_module(classifier.module, dev)
    with torch.inference_mode(False), torch.enable_grad():
        # clone(): an input made under inference mode cannot join a graph.
        yield Prepared(classifier, module, x.to(dev).clone(), is_signal, dev)


def labels_for(classifier: ImageClassifier, targets: np.ndarray) -> list[str] | None:
    if classifier.labels is None:
        return None
    return [classifier.label(int(t)) for t in targets]


def check_positive_int(value: object, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; use a positive int" + (" or None" if allow_none else ""))


def check_class_index(value: object, name: str = "target") -> int:
    """An int (numpy ints too) as a Python int; bools and floats are refused rather than truncated."""
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r} is not allowed; use an int (a class index)")
    return int(value)


class _OutputGuard(nn.Module):
    """Calls the module and refuses an output the score function cannot read, saying what it was.

    With a callable ``output`` the model's output goes to it untouched (the callable
    is how a dict or list is explained); otherwise the model must return (N, classes).
    """

    def __init__(self, module: nn.Module, method: str, reducible: bool, output: object):
        super().__init__()
        self.module, self.method, self.reducible, self.output = module, method, reducible, output

    def forward(self, x: torch.Tensor) -> object:
        out = self.module(x)
        if callable(self.output) or (isinstance(out, torch.Tensor) and (self.reducible or out.ndim == 2)):
            return out
        what = describe_output(out)
        if not self.reducible:
            raise TypeError(
                f"{self.method}: the model returned {what}; {self.method} has no output= parameter, so the "
                "model must return (N, classes) scores. Wrap it in a module whose forward returns them, or use "
                "saliency / smoothgrad / grad_cam / deletion_insertion with output="
            )
        if isinstance(out, Mapping) and out:
            key = next(iter(out.keys()))
            example = f" (e.g. output=lambda out: out[{key!r}].mean(dim=(2, 3)) for per-pixel class scores)"
        else:
            example = ""
        raise TypeError(
            f"{self.method}: the model returned {what}, not a (N, classes) tensor. For a segmenter or a detector "
            "pass targets=[SegmentationTarget(label)] or targets=[DetectionTarget(box, label)] "
            "(occlusion_widget.engine.targets), or targets=None to explain everything it finds; otherwise pass "
            f"output=, a callable that reduces it to an (N, K) tensor of scores{example}"
        )


def scorer(module: nn.Module, output: Output, is_signal: bool, method: str,
           reducible: bool = True) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The engine's score function, with the model's output and the scores checked.

    Returns ``score(batch) -> (N, K)`` float scores, all finite, K >= 1, and the
    output's name. ``reducible=False``: the caller has no ``output=`` to offer.
    """
    score, name = score_function(_OutputGuard(module, method, reducible, output), output, None, is_signal)
    source = "output=" if callable(output) else "the model"

    def checked(batch: torch.Tensor) -> torch.Tensor:
        scores = score(batch)
        if scores.shape[0] != batch.shape[0] or scores.ndim != 2:
            raise ValueError(f"{method}: {source} gave scores of shape {tuple(scores.shape)} for {batch.shape[0]} "
                             "inputs; it must give one row per input, (N, K)")
        if scores.shape[1] == 0:
            raise ValueError(f"{method}: output= returned a tensor of shape {tuple(scores.shape)}: no scores; "
                             "it must return at least one score per input, (N, K) with K >= 1")
        if not scores.is_floating_point():
            raise ValueError(f"{method}: {source} gave {scores.dtype} scores; gradients and curves need float scores")
        if not torch.isfinite(scores.detach()).all():
            check = ("what the output= callable computes (e.g. a log of values <= 0)" if callable(output)
                     else "the model (its weights, an overflow, a division by zero)")
            raise ValueError(f"{method}: {source} gave NaN or infinite scores; check {check}")
        return scores

    return checked, name


def check_finite_gradient(grad: torch.Tensor, method: str, wrt: str = "the input") -> None:
    if not torch.isfinite(grad).all():
        raise ValueError(
            f"{method}: the gradient of the score with respect to {wrt} holds NaN or infinite values "
            "(the scores are finite); the model has a non-differentiable point there (e.g. sqrt or log at 0)"
        )


def input_gradient(score: torch.Tensor, wrt: torch.Tensor, method: str, target: int, retain: bool) -> torch.Tensor:
    """``d score / d wrt``, with errors that name the method when the graph does not reach ``wrt``."""
    if not score.requires_grad:
        raise ValueError(no_grad_message(method))
    (grad,) = torch.autograd.grad(score, wrt, retain_graph=retain, allow_unused=True)
    if grad is None:
        raise ValueError(f"{method}: the score of class {target} does not depend on the input through autograd; "
                         "the model's forward detaches it (.detach(), .numpy(), torch.no_grad()) on the way")
    check_finite_gradient(grad, method)
    return grad


def no_grad_message(method: str) -> str:
    return (f"{method}: the score does not require grad, so it has no gradient to take; the model's forward (or "
            "output=) detaches its result or runs under torch.no_grad() / torch.inference_mode(). Gradient "
            "methods need a differentiable forward (frozen parameters are fine)")


def map_for(result: object, target: int) -> np.ndarray:
    """The (H, W) map of ``target`` in an OcclusionResult or AttributionResult."""
    duck: Any = result  # any result with .targets and .maps (duck-typed, as before)
    targets = np.asarray(duck.targets)
    hits = np.flatnonzero(targets == int(target))
    if hits.size == 0:
        raise ValueError(f"target {target} is not among the result's targets {targets.tolist()}")
    return np.asarray(duck.maps)[int(hits[0])]

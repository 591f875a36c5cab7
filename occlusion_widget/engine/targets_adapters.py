"""Reading segmenters' and detectors' outputs, and running torchvision detectors on occluded batches.

Two forms are understood (everything else goes through a user's adapter function):

- segmentation: class scores (N, C, H, W), or torchvision's dict ``{"out": (N, C, H, W), "aux": ...}``;
- detection: one detection set per input, torchvision's list of N dicts ``{"boxes": (D, 4) x0 y0 x1 y1,
  "labels": (D,), "scores": (D,)}``, or a list of N tuples ``(boxes, labels, scores)``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, overload

import torch
from torch import nn

from .inputs import describe_output
from .model_state import prepared_module

__all__ = ["Detections", "DetectorModule", "adapt_output", "output_kind"]


class Detections(NamedTuple):
    """The detections of one input: ``boxes`` (D, 4) x0 y0 x1 y1 in input pixels, ``labels`` (D,), ``scores`` (D,)."""

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor


def output_kind(out: object) -> str:
    """"segmentation" or "detection" from the form of an output; ``TypeError`` when it is neither."""
    if isinstance(out, Detections) or (isinstance(out, (list, tuple)) and out and all(
            isinstance(o, Detections) or (isinstance(o, dict) and "boxes" in o)
            or (isinstance(o, tuple) and len(o) == 3) for o in out)):
        return "detection"
    if (isinstance(out, torch.Tensor) and out.ndim == 4) or (isinstance(out, dict) and "out" in out):
        return "segmentation"
    raise TypeError(f"model output: {describe_output(out)} is neither a segmentation output ((N, C, H, W) class "
                    "scores or a dict with 'out') nor detections (a list of dicts with 'boxes', 'labels', "
                    "'scores'); pass adapter= a function mapping it to one of these")


def _one_detection_set(o: object, i: int) -> Detections:
    if isinstance(o, Detections):
        boxes, labels, scores = o
    elif isinstance(o, dict):
        missing = [k for k in ("boxes", "labels", "scores") if k not in o]
        if missing:
            raise ValueError(f"detections[{i}]: the dict lacks {missing}; it needs 'boxes' (D, 4), 'labels' (D,) "
                             "and 'scores' (D,)")
        boxes, labels, scores = o["boxes"], o["labels"], o["scores"]
    elif isinstance(o, tuple) and len(o) == 3:
        boxes, labels, scores = o
    else:
        raise TypeError(f"detections[{i}]: {describe_output(o)}; expected a dict with boxes/labels/scores or a "
                        "tuple (boxes, labels, scores)")
    boxes, labels, scores = (torch.as_tensor(v) for v in (boxes, labels, scores))
    d = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (d,) or scores.shape != (d,):
        raise ValueError(f"detections[{i}]: expected boxes (D, 4), labels (D,), scores (D,); got "
                         f"{tuple(boxes.shape)}, {tuple(labels.shape)}, {tuple(scores.shape)}")
    return Detections(boxes, labels, scores)


@overload
def adapt_output(out: object, kind: Literal["segmentation"]) -> torch.Tensor: ...
@overload
def adapt_output(out: object, kind: Literal["detection"]) -> list[Detections]: ...
@overload
def adapt_output(out: object, kind: str) -> torch.Tensor | list[Detections]: ...


def adapt_output(out: object, kind: str) -> torch.Tensor | list[Detections]:
    """The output in the targets' form: (N, C, H, W) scores, or a list of N :class:`Detections`."""
    if kind == "segmentation":
        scores = out["out"] if isinstance(out, dict) and "out" in out else out
        if not isinstance(scores, torch.Tensor) or scores.ndim != 4:
            raise TypeError(f"segmentation target: the model output is {describe_output(out)}; expected class scores "
                            "(N, C, H, W) or a dict with 'out'. Pass adapter= a function returning (N, C, H, W)")
        return scores
    if kind == "detection":
        if isinstance(out, Detections):
            out = [out]
        if not isinstance(out, (list, tuple)) or (out and isinstance(out[0], torch.Tensor) and len(out) == 3
                                                  and out[0].ndim == 2 and out[0].shape[-1] == 4):
            raise TypeError(f"detection target: the model output is {describe_output(out)}; expected one detection "
                            "set per input (a list of dicts with 'boxes', 'labels', 'scores'). Pass adapter= a "
                            "function returning that")
        return [_one_detection_set(o, i) for i, o in enumerate(out)]
    raise ValueError(f"kind={kind!r} is not allowed; use 'segmentation' or 'detection'")


class DetectorModule(nn.Module):
    """A torchvision-style detector as a batch model: (B, C, H, W) in, a list of B detection dicts out.

    torchvision detectors take a list of images; a (B, C, H, W) tensor iterates as B images, which is
    what the sweep passes. This wrapper runs them in chunks of at most ``max_batch`` images, so memory is
    bounded by ``max_batch`` whatever the sweep's ``batch_size`` (detectors resize every image up to
    their ``min_size``, 800 px by default), and always in eval mode through :func:`prepared_module`,
    so the user's module keeps its training flags.

    Parameters
    ----------
    detector : nn.Module
        Any module taking a list of (C, H, W) tensors and returning a list of dicts.
    max_batch : int
        Images per call of ``detector``.
    """

    def __init__(self, detector: nn.Module, max_batch: int = 8) -> None:
        super().__init__()
        if not isinstance(detector, nn.Module):
            raise TypeError(f"detector: expected a torch.nn.Module, got {type(detector).__name__}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch={max_batch!r} is not allowed; use a positive int")
        self.detector, self.max_batch = detector, max_batch

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        if isinstance(images, torch.Tensor) and images.ndim == 3:
            images = images[None]
        device = images[0].device
        run = prepared_module(self.detector, device)  # eval mode, the user's module untouched
        out: list[dict[str, torch.Tensor]] = []
        for i in range(0, len(images), self.max_batch):
            out.extend(run(list(images[i:i + self.max_batch])))
        return out

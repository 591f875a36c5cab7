"""Mask preview: the scores with one mask at a given position (one forward pass).

The widget runs previews on their own thread (a :class:`~occlusion_widget.widget.runner.LatestRunner`)
while a sweep may run the same module on another. The engine makes that safe
(:func:`~occlusion_widget.engine.score_occluded` runs through ``prepared_module``,
its layer hook captures only the calling thread's forward pass, and tracing does
not patch ``nn.Module.__call__`` for other threads; see ``tests/test_tracing_threads.py``).
Everything numeric comes from the engine: the mask size (:func:`resolve_sizes`), the
box (:func:`mask_box`), the scores (:func:`score_occluded`) and the fill shown
(:func:`resolve_fill`). This module only caches and formats.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine import mask_box, resolve_sizes, score_occluded
from ..engine.inputs import resolve_device, resolve_fill
from ..engine.model_state import prepared_module
from ..engine.targets import targets_output
from .runner import PreparedInput, freeze
from .targets import build_all, describe_output


@dataclass(frozen=True)
class Preview:
    """The answer to a preview request."""

    seq: int
    box: tuple[int, int, int, int]
    mask_size: tuple[int, int]  # the resolved mask (h, w) in input pixels: the browser draws the box with it
    base: list[tuple[int, float]]  # top-5 (class, score), unoccluded
    occluded: list[tuple[int, float]]  # top-5 (class, score) with the mask
    targets: list[tuple[int, float, float]]  # (class, unoccluded, occluded) for each target
    fill: np.ndarray | None  # the (C, H, W) replacement values when they changed, else None
    elapsed_s: float

    def state(self, x: float, y: float, label: Callable[[int], str], output: str) -> dict[str, Any]:
        """The synced ``preview`` trait: the box, top-5 lists and the targets' scores, with names."""
        def named(pairs: list[tuple[int, float]]) -> list[dict[str, Any]]:
            return [{"id": i, "name": label(i), "score": s} for i, s in pairs]

        return {
            "seq": self.seq, "x": x, "y": y, "box": list(self.box), "mask_size": list(self.mask_size), "output": output,
            "base": named(self.base), "occluded": named(self.occluded),
            "targets": [{"id": i, "base": b, "occluded": o} for i, b, o in self.targets],
            "elapsed_ms": round(self.elapsed_s * 1000, 1),
        }


def _mask_and_box(source: PreparedInput, params: dict, cy: float, cx: float
                  ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The resolved mask (h, w) and its box centred at (cy, cx), clamped to the image (the engine's rule)."""
    shape = (int(source.x.shape[1]), int(source.x.shape[2]))
    (mask_h, mask_w), _ = resolve_sizes(shape, params.get("mask_size", "auto"))  # (h, w): shape is 2-D
    box = mask_box((cy, cx), (mask_h, mask_w), shape, bool(params.get("mask_clipping", True)))
    return (mask_h, mask_w), (int(box[0]), int(box[1]), int(box[2]), int(box[3]))


class PreviewEngine:
    """Scores the input with one mask at a given position; keeps the unoccluded scores and the
    fill picture of the last parameters, so a drag costs one forward pass per position."""

    def __init__(self) -> None:
        self._fills: dict[Hashable, np.ndarray] = {}
        # compute(): the base scores (K_all,); state(): (scorer, base scores); one entry, replaced on a miss
        self._base: dict[Hashable, Any] = {}
        self._last_fill_key: Hashable = None
        self._lock = threading.Lock()

    def _fill(self, source: PreparedInput, mask_value: Any, mask: tuple[int, int]) -> tuple[np.ndarray, bool]:
        """The fill picture (C, H, W) for these parameters, and whether it changed since the last call."""
        with self._lock:
            fill_key = (source.digest, freeze(mask_value), mask)
            fill = self._fills.get(fill_key)
            fill_changed = fill_key != self._last_fill_key
            self._last_fill_key = fill_key
        if fill is None:
            with torch.inference_mode():
                fill = resolve_fill(mask_value, source.x, mask)[0].cpu().numpy()
            with self._lock:
                self._fills = {fill_key: fill}
        return fill, fill_changed

    def compute_outputs(self, source: PreparedInput, seq: int, cy: float, cx: float, params: dict,
                        specs: list[dict]) -> tuple[dict[str, Any], np.ndarray | None]:
        """A segmenter's or detector's answer with the mask centred at pixel (cy, cx): the occluded
        output (detections, or the predicted class per pixel) and every target's score, unoccluded and
        occluded (the targets' ``output=`` callable, as in the sweep). One forward pass (two the first time).

        Returns
        -------
        state : dict
            The synced ``preview``: ``box``, ``mask_size``, ``targets`` [{id, base, occluded}], ``base`` and
            ``occluded`` [{id, name, score}] per target, and ``detections`` (list of {box, label, score,
            name}) or ``mask`` (uint8 (H, W) bytes) with ``shape``.
        fill : (C, H, W) array or None
            The fill picture when it changed.
        """
        start = time.perf_counter()
        x = source.x
        mask_value = params.get("mask_value", "auto")
        mask, box = _mask_and_box(source, params, cy, cx)
        y0, x0, y1, x1 = box
        fill, fill_changed = self._fill(source, mask_value, mask)
        categories = source.classifier.labels
        device = resolve_device(params.get("device", "auto"))
        occluded = x.clone()
        occluded[:, y0:y1, x0:x1] = torch.from_numpy(fill[:, y0:y1, x0:x1]).to(x)
        with self._lock:
            base_key = ("outputs", id(source.classifier.module), source.digest, freeze(specs), freeze(params.get("output")))
            cached = self._base.get(base_key)
        batch = torch.stack([occluded] if cached is not None else [x, occluded]).to(device)
        with torch.inference_mode():
            raw = prepared_module(source.classifier.module, device)(batch)
            if cached is None:  # targets read the clean output once (a predicted region), as in the sweep
                scorer = targets_output(build_all(specs, str(params.get("output", "probability")), categories))
                scorer.prepare(_row(raw, 0))
                cached = (scorer, scorer(_row(raw, 0)).float().cpu().numpy()[0])
                with self._lock:
                    self._base = {base_key: cached}
            scorer, base = cached
            last = _row(raw, -1)
            after = scorer(last).float().cpu().numpy()[0]
        structure = describe_output(last, categories)
        names = scorer.labels
        state: dict[str, Any] = {
            "seq": seq, "x": float(cx), "y": float(cy), "box": list(box), "mask_size": [int(mask[0]), int(mask[1])],
            "output": "probability", "kind": structure.kind,
            "base": [{"id": i, "name": names[i], "score": float(base[i])} for i in range(len(names))],
            "occluded": [{"id": i, "name": names[i], "score": float(after[i])} for i in range(len(names))],
            "targets": [{"id": i, "base": float(base[i]), "occluded": float(after[i])} for i in range(len(names))],
        }
        if structure.kind == "detection":
            state["detections"] = structure.detections
        elif structure.mask is not None:
            state["mask"] = structure.mask.tobytes()
            state["shape"] = list(structure.mask.shape)
            state["legend"] = structure.legend
        state["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 1)
        return state, fill if fill_changed else None

    def compute(self, source: PreparedInput, seq: int, cy: float, cx: float, params: dict, k: int = 5) -> Preview:
        """Scores with the mask centred at pixel (cy, cx); ``params`` are the
        sweep's engine parameters (``targets`` or ``top_k`` pick the classes
        whose scores come back in ``Preview.targets``)."""
        start = time.perf_counter()
        x = source.x
        mask_value = params.get("mask_value", "auto")
        mask, box = _mask_and_box(source, params, cy, cx)
        scoring = {name: params[name] for name in ("output", "layer", "device", "precision") if name in params}
        with self._lock:
            fill_key = (source.digest, freeze(mask_value), mask)
            fill = self._fills.get(fill_key)
            fill_changed = fill_key != self._last_fill_key
            self._last_fill_key = fill_key
            base_key = (id(source.classifier.module), source.digest, freeze(scoring))
            base = self._base.get(base_key)
        if fill is None:  # the picture of what hides the region, for the browser's preview image
            with torch.inference_mode():
                fill = resolve_fill(mask_value, x, mask)[0].cpu().numpy()
            with self._lock:
                self._fills = {fill_key: fill}
        new_base, scores = score_occluded(source.classifier, x, [box], mask_value=mask_value, mask_size=mask,
                                          with_base=base is None, **scoring)
        if base is None:
            assert new_base is not None, "with_base=True returns the base scores"
            base = new_base
            with self._lock:
                self._base = {base_key: base}
        after = scores[0]
        n = base.shape[0]
        targets = params.get("targets")
        if targets is None:
            targets = _top(base, min(int(params.get("top_k") or 1), n))
        return Preview(
            seq=seq, box=box, mask_size=(int(mask[0]), int(mask[1])), base=[(i, float(base[i])) for i in _top(base, min(k, n))],
            occluded=[(i, float(after[i])) for i in _top(after, min(k, n))],
            targets=[(int(t), float(base[t]), float(after[t])) for t in targets if 0 <= t < n],
            fill=fill if fill_changed else None,
            elapsed_s=time.perf_counter() - start,
        )


def answer_preview(engine: PreviewEngine, widget: Any, request: dict) -> tuple[dict[str, Any], np.ndarray | None]:
    """The synced ``preview`` for ``request`` ({x, y, seq}) and the fill picture when it changed: a
    classifier's top-5 and targets' scores, or a segmenter's / detector's occluded outputs."""
    from .params import target_specs

    seq, x, y = int(request.get("seq", 0)), float(request["x"]), float(request["y"])
    source, params = widget._source, widget.engine_params()
    specs = target_specs(widget)
    if specs is not None:
        return engine.compute_outputs(source, seq, y, x, params, specs)
    answer = engine.compute(source, seq, y, x, params)
    layer = widget.layer
    label = (lambda i: f"{layer}[{i}]") if layer else source.classifier.label  # as the engine names them
    return answer.state(x, y, label, widget.output), answer.fill


def _row(raw: Any, i: int) -> Any:
    """One input's part of a batch's raw output: a detector's [dict], a segmenter's {"out": (1, C, H, W)}."""
    if isinstance(raw, (list, tuple)):
        return [raw[i]]
    scores = raw["out"] if isinstance(raw, dict) else raw
    return {"out": scores[i:i + 1] if i >= 0 else scores[i:][:1]}


def _top(scores: np.ndarray, k: int) -> list[int]:
    """The indices of the ``k`` largest scores, largest first (ties: the lower index first)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]

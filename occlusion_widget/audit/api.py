"""``audit``: explain a whole dataset into a resumable store, on this machine or on a Ray cluster."""

from __future__ import annotations

import hashlib
import json
import os
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from ..methods.registry import get_method
from ..models import ImageClassifier, as_classifier
from .data import Source, load_annotations
from .results import Audit
from .store import Store
from .worker import Config

TARGETS = ("predicted", "label", "both")
BACKENDS = ("local", "ray")


def resolve_model(model: Any) -> tuple[ImageClassifier, Any]:
    """(the classifier, what workers rebuild it from): a classifier, a module, or a zero-argument factory."""
    if isinstance(model, (ImageClassifier, nn.Module)):
        return as_classifier(model), model
    if callable(model):
        built = model()
        if not isinstance(built, (ImageClassifier, nn.Module)):
            raise TypeError(f"model: the factory returned {type(built).__name__}; it must return an ImageClassifier")
        return as_classifier(built), model
    raise TypeError(f"model: expected an ImageClassifier, a torch.nn.Module or a factory returning one, "
                    f"got {type(model).__name__}")


def model_fingerprint(classifier: ImageClassifier) -> dict[str, Any]:
    """Name, geometry, classes and a hash of the weights: another model cannot resume this audit."""
    h = hashlib.sha1()
    for t in list(classifier.module.state_dict().values()):
        if isinstance(t, torch.Tensor):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"name": classifier.name, "input_size": list(classifier.input_size), "resize_size": classifier.resize_size,
            "classes": len(classifier.labels) if classifier.labels else None, "weights_sha1": h.hexdigest()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic, torch.Tensor)):
        return np.asarray(value).tolist()
    if callable(value):
        return f"<callable {getattr(value, '__qualname__', type(value).__name__)}>"
    return repr(value)


def _annotations_sha1(table: dict[str, list]) -> str | None:
    if not table:
        return None
    h = hashlib.sha1()
    for key in sorted(table):
        h.update(key.encode())
        for s in table[key]:
            h.update(np.packbits(s).tobytes() if isinstance(s, np.ndarray) else json.dumps(s).encode())
    return h.hexdigest()


def check_targets(targets: Any, n_classes: int | None) -> str | int:
    if isinstance(targets, Integral) and not isinstance(targets, bool):
        if int(targets) < 1 or (n_classes is not None and int(targets) > n_classes):
            raise ValueError(f"targets={targets} is not allowed; use 1..{n_classes or 'classes'} for the top-k classes")
        return int(targets)
    if targets not in TARGETS:
        raise ValueError(f"targets={targets!r} is not allowed; use 'predicted', 'label', 'both' or an int k (top-k)")
    return targets


def audit(model: Any, data: Any, *, out: str | os.PathLike = "audit/", method: str = "occlusion",
          targets: str | int = "predicted", annotations: Any = None, backend: str = "local",
          address: str | None = None, num_workers: int | None = None, batch_size: int | None = None,
          progress: bool = True, deletion_insertion: bool = False, **method_params: Any) -> Audit:
    """Explain every image of ``data`` with ``method`` and store rows, maps and images in ``out``.

    Parameters
    ----------
    model : ImageClassifier, nn.Module, or a zero-argument factory returning one (Ray workers call it)
    data : folder (ImageFolder: class subfolders give true labels), list of paths, or map-style dataset
        yielding images or (image, label)
    out : folder of the store; rerunning with the same ``out`` skips finished images
    method : a method of ``occlusion_widget.methods.registry`` ("occlusion", "grad_cam", ...)
    targets : "predicted", "label" (true class), "both", or an int k (the top-k classes)
    annotations : COCO JSON path or {image_id: [[x0, y0, x1, y1], ...] or bool mask (H0, W0)} in original
        pixels; adds the pointing game (``pointing_hit``) and the evidence share inside (``energy_inside``)
    backend : "local" or "ray"
    address : Ray cluster address (None: a local Ray instance, or the one already initialised)
    num_workers : local: images explained at once (threads, default 1); Ray: actors (default: GPUs, else CPUs)
    batch_size : inputs per forward pass of the method (None: the method's default)
    progress : a tqdm bar with images/s and ETA
    deletion_insertion : also score each map's deletion/insertion AUCs (about 2 x 20 more forward passes)
    **method_params : the method's parameters (``mask_size``, ``stride``, ...)

    Returns
    -------
    Audit
        ``table`` (one row per image and target), ``map(i)`` (H, W), ``image(i)`` (H, W, 3) uint8, aggregates.

    Raises
    ------
    AuditLocked : another run writes to ``out``.
    ParameterMismatch : ``out`` holds an audit made with other parameters (they are named).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed; use 'local' or 'ray'")
    if num_workers is not None and (not isinstance(num_workers, Integral) or isinstance(num_workers, bool)
                                    or num_workers < 1):
        raise ValueError(f"num_workers={num_workers!r} is not allowed; use None or a positive int")
    if address is not None and backend != "ray":
        raise ValueError("address: only used with backend='ray'")
    if not isinstance(deletion_insertion, bool):
        raise TypeError(f"deletion_insertion={deletion_insertion!r} is not allowed; use True or False")
    spec = get_method(method)
    for reserved in ("targets", "top_k", "progress", "cancel"):
        if reserved in method_params:
            raise TypeError(f"audit: {reserved!r} is set by the audit; use audit(targets=...) for the classes")
    if batch_size is not None:
        if "batch_size" not in spec.param_names:
            raise ValueError(f"batch_size: {method} takes no batch size; leave it None")
        method_params["batch_size"] = batch_size
    spec.check_params(method_params)
    classifier, factory = resolve_model(model)
    targets = check_targets(targets, len(classifier.labels) if classifier.labels else None)
    source = Source(data, classifier.labels)
    if targets in ("label", "both"):
        if not source.has_labels:
            raise ValueError(f"targets={targets!r} needs true labels: use an ImageFolder (class subfolders) or a "
                             "dataset yielding (image, label)")
        unknown = sorted({n for _, _, n in source.files if n is not None and
                          source.labels and n not in set(source.labels) and _lookup(n, source) is None})
        if unknown:
            raise ValueError(f"targets={targets!r}: the model has no class named {', '.join(map(repr, unknown[:5]))}; "
                             "name the subfolders after the model's labels, or use targets='predicted'")
    table = load_annotations(annotations)
    slots = targets if isinstance(targets, int) else (2 if targets == "both" else 1)
    params = {"method": method, "method_params": _jsonable({k: v for k, v in method_params.items()
                                                             if k not in ("batch_size", "device")}),
              "targets": targets, "deletion_insertion": deletion_insertion, "model": model_fingerprint(classifier),
              "annotations_sha1": _annotations_sha1(table)}
    meta = {"version": 1, "params": params, "slots": slots, "input_size": list(classifier.input_size)}
    store = Store(out)
    store.acquire()
    try:
        store.init_meta(meta)
        index = store.register_ids([source.item_id(i) for i in range(len(source))], classifier.input_size, slots)
        done = store.finished_ids()
        todo = [i for i in range(len(source)) if source.item_id(i) not in done]
        cfg = Config(method, dict(method_params), targets, slots, deletion_insertion, table, index)
        if todo:
            if backend == "local":
                _run_local(classifier, source, todo, cfg, store, num_workers or 1, progress)
            else:
                from .ray_backend import run_ray

                run_ray(factory, source, todo, cfg, store, address=address, num_workers=num_workers,
                        progress=progress)
        store.merge()
    finally:
        store.release()
    return Audit(store.root, classifier)


def _lookup(name: str, source: Source) -> int | None:
    from .data import label_index

    return label_index(name, source.labels)


def _run_local(classifier, source, todo, cfg, store, num_workers, progress) -> None:
    from .local import run_local

    bar = _bar(len(todo), progress)
    try:
        run_local(classifier, source, todo, cfg, store, num_workers=num_workers,
                  on_image=(lambda rows: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="audit", smoothing=0.1)

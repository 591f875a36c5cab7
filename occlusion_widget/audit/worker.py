"""Explain one image into rows, maps and a thumbnail: the code every backend runs, in any process."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..methods.faithfulness import deletion_insertion
from ..methods.registry import run as run_method
from .data import Item, Source, find_annotation, object_mask, original_size
from .metrics import concentration, energy_inside, peak, pointing_hit
from .store import Store, to_uint8


@dataclass
class Config:
    """What a worker needs besides the model and the data (picklable; sent to Ray workers)."""

    method: str
    method_params: dict[str, Any]
    targets: str | int
    slots: int
    deletion_insertion: bool
    annotations: dict[str, list] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)  # image id -> image index in the store


@dataclass
class Loaded:
    """An image decoded to the model's input, ready to explain."""

    item: Item
    x: torch.Tensor
    mask: np.ndarray | None
    time_load_s: float


def load(source: Source, i: int, model: Any, cfg: Config) -> Loaded:
    """Decode image ``i`` (runs in a loader thread while another image is explained)."""
    start = time.perf_counter()
    item, image = source.load(i)
    try:
        x = model.preprocess(image)
    except Exception as exc:
        raise type(exc)(f"audit: image {item.image_id!r}: {exc}") from exc
    mask = None
    shapes = find_annotation(cfg.annotations, item) if cfg.annotations else None
    if shapes is not None:
        mask = object_mask(shapes, original_size(image), model)
    return Loaded(item, x, mask, time.perf_counter() - start)


def _targets(cfg: Config, item: Item, top: list[tuple[int, str, float]]) -> list[tuple[int, str]]:
    """[(class index, kind)] to explain for this image."""
    pred = top[0][0]
    if isinstance(cfg.targets, int):
        return [(idx, f"top{r + 1}") for r, (idx, _, _) in enumerate(top[:cfg.targets])]
    if cfg.targets in ("label", "both") and item.label is None:
        raise ValueError(f"audit: image {item.image_id!r} has no true label the model knows "
                         f"(label {item.label_name!r}); targets={cfg.targets!r} needs one for every image")
    if cfg.targets == "predicted":
        return [(pred, "predicted")]
    label = item.label
    assert label is not None, "checked above: 'label' and 'both' need one"
    if cfg.targets == "label":
        return [(label, "label")]
    if label == pred:
        return [(pred, "predicted,label")]
    return [(pred, "predicted"), (label, "label")]


def explain(model: Any, loaded: Loaded, cfg: Config, worker: str) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Rows (one per target), maps (K, H, W) and the uint8 input (H, W, 3) of one image."""
    item, x = loaded.item, loaded.x
    start = time.perf_counter()
    k = cfg.targets if isinstance(cfg.targets, int) else 1
    top = model.predict(x, k=max(k, 1))
    targets = _targets(cfg, item, top)
    try:
        res = run_method(cfg.method, model, x, [t for t, _ in targets], **cfg.method_params)
    except Exception as exc:
        raise type(exc)(f"audit: image {item.image_id!r}: {exc}") from exc
    maps = np.asarray(res.maps, dtype=np.float32)
    t_explain = time.perf_counter() - start
    start = time.perf_counter()
    image_index = cfg.index[item.image_id]
    rows = []
    for slot, ((target, kind), smap) in enumerate(zip(targets, maps, strict=True)):
        y, xx = peak(smap)
        row = {
            "image_id": item.image_id, "path": item.path, "image_index": image_index,
            "map_index": image_index * cfg.slots + slot,
            "true_label": item.label, "true_name": item.label_name,
            "pred_label": top[0][0], "pred_name": top[0][1], "confidence": top[0][2],
            "correct": None if item.label is None else bool(item.label == top[0][0]),
            "target": int(target), "target_name": model.label(int(target)), "target_kind": kind,
            "base_score": float(res.base_scores[slot]), "peak_y": y, "peak_x": xx,
            "concentration": concentration(smap), "worker": worker,
        }
        if cfg.deletion_insertion:
            curve = deletion_insertion(model, x, smap, int(target), device=cfg.method_params.get("device", "auto"))
            row["deletion_auc"], row["insertion_auc"] = curve.deletion_auc, curve.insertion_auc
        if loaded.mask is not None:
            row["pointing_hit"] = pointing_hit(smap, loaded.mask)
            row["energy_inside"] = energy_inside(smap, loaded.mask)
        rows.append(row)
    t_metrics = time.perf_counter() - start
    for row in rows:
        row.update(time_load_s=loaded.time_load_s, time_explain_s=t_explain, time_metrics_s=t_metrics)
    return rows, maps, to_uint8(x.cpu().numpy())


def write_arrays(store_arrays: tuple[Any, Any], rows: list[dict], maps: np.ndarray, thumb: np.ndarray) -> None:
    """Zarr chunks of one image (before its rows are committed in a shard)."""
    zmaps, zimages = store_arrays
    for row, smap in zip(rows, maps, strict=True):
        zmaps[row["map_index"]] = smap
    zimages[rows[0]["image_index"]] = thumb


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ShardWriter:
    """Buffers finished images' rows; commits them as one shard every ``every`` images or ``seconds``."""

    def __init__(self, store: Store, worker: str, every: int = 8, seconds: float = 10.0):
        self.store, self.worker, self.every, self.seconds = store, worker, every, seconds
        self.rows: list[dict] = []
        self.images = 0
        self.last = time.monotonic()
        self.shards = 0

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        self.images += 1
        if self.images >= self.every or time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.store.write_shard(self.rows, self.worker.replace("/", "_"))
            self.shards += 1
        self.rows, self.images, self.last = [], 0, time.monotonic()

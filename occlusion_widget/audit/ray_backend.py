"""The Ray backend: Ray Data ``map_batches`` with one actor per worker, each loading the model once.

Every actor explains its images and commits them into the same store as the local backend: Zarr
chunks, then one Parquet shard per Ray batch (its own files: no two processes write one file). The
driver only counts finished images for the progress bar and merges the table at the end. An actor
that dies loses only its batch in flight; Ray Data restarts it and retries that batch, and a rerun
skips every committed image either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import Source
from .store import Store
from .worker import Config, explain, load, worker_name, write_arrays

#: Images per Ray batch = per committed shard (what a killed worker can lose).
IMAGES_PER_TASK = 2


class AuditActor:
    """A Ray Data worker: builds the model once, explains batches of image indices into the store."""

    def __init__(self, model: Any, source: Source, cfg: Config, out: str, use_gpu: bool):
        import torch

        from .api import resolve_model

        self.model, _ = resolve_model(model)
        if use_gpu:
            self.model.to("cuda")
        torch.set_num_threads(1 if not use_gpu else torch.get_num_threads())
        self.source, self.cfg = source, cfg
        self.store = Store(out)
        self.arrays = self.store.arrays()
        self.worker = worker_name()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: list[dict] = []
        ids = []
        for i in batch["index"]:
            loaded = load(self.source, int(i), self.model, self.cfg)
            image_rows, maps, thumb = explain(self.model, loaded, self.cfg, self.worker)
            write_arrays(self.arrays, image_rows, maps, thumb)
            rows.extend(image_rows)
            ids.append(loaded.item.image_id)
        self.store.write_shard(rows, self.worker)
        return {"image_id": np.array(ids, dtype=object)}


def run_ray(model: Any, source: Source, todo: list[int], cfg: Config, store: Store, *, address: str | None,
            num_workers: int | None, progress: bool) -> None:
    """Explain ``todo`` on Ray (a local instance on loopback unless ``address`` or an initialised one)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError("backend='ray' needs Ray Data: pip install 'ray[data]>=2.9'") from exc
    started = False
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        started = True
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = False  # ours counts images; Ray Data's would count blocks per operator
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0
        n = num_workers or (gpus if use_gpu else max(1, int(resources.get("CPU", 1))))
        per_actor: dict[str, Any] = {"num_gpus": 1} if use_gpu else {"num_cpus": 1}
        ds = ray.data.from_items([{"index": i} for i in todo], override_num_blocks=min(len(todo), 4 * n))
        out = ds.map_batches(
            AuditActor, batch_size=IMAGES_PER_TASK, compute=ray.data.ActorPoolStrategy(size=n),
            fn_constructor_kwargs={"model": model, "source": source, "cfg": cfg, "out": str(store.root),
                                   "use_gpu": use_gpu},
            **per_actor,
        )
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), unit="img", desc=f"audit (ray, {n} workers)", smoothing=0.1)
        try:
            for batch in out.iter_batches(batch_size=None):
                if bar is not None:
                    bar.update(len(batch["image_id"]))
        finally:
            if bar is not None:
                bar.close()
    finally:
        context.enable_progress_bars = bars
        if started:
            ray.shutdown()

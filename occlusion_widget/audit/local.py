"""The local backend: decode ahead in a thread, explain in ``num_workers`` threads, commit small shards."""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import torch

from .data import Source
from .store import Store
from .worker import Config, ShardWriter, explain, load, worker_name, write_arrays


def run_local(model: Any, source: Source, todo: list[int], cfg: Config, store: Store, *,
              num_workers: int = 1, on_image: Callable[[list[dict]], None] | None = None) -> None:
    """Explain images ``todo`` of ``source`` into ``store``.

    Memory is bounded by the images in flight: ``num_workers`` being explained plus as many decoded
    ahead. Several workers share the model (the engine never changes the user's module) and split the
    CPU threads between them. On any error or Ctrl-C, finished images are committed before it propagates.
    """
    writer = ShardWriter(store, worker_name())
    arrays = store.arrays()
    threads = torch.get_num_threads()
    if num_workers > 1:
        torch.set_num_threads(max(1, threads // num_workers))

    def job(fut: Future) -> tuple[list[dict], Any, Any]:
        rows, maps, thumb = explain(model, fut.result(), cfg, writer.worker)
        write_arrays(arrays, rows, maps, thumb)  # the arrays first: a shard commits only finished images
        return rows, maps, thumb

    window = 2 * num_workers  # images decoded or being explained at once
    pending: set[Future] = set()
    queue = collections.deque(todo)
    try:
        if num_workers == 1:
            # One worker explains in this thread (the next image decodes meanwhile): the sweep's large
            # buffers stay in this thread's malloc arena instead of a new thread's (lower peak RSS).
            with ThreadPoolExecutor(1, thread_name_prefix="audit-load") as loader:
                ahead: collections.deque[Future] = collections.deque()
                try:
                    while queue or ahead:
                        while queue and len(ahead) < window:
                            ahead.append(loader.submit(load, source, queue.popleft(), model, cfg))
                        rows = job(ahead.popleft())[0]
                        writer.add(rows)
                        if on_image is not None:
                            on_image(rows)
                except BaseException:
                    for fut in ahead:
                        fut.cancel()
                    raise
            return
        with ThreadPoolExecutor(1, thread_name_prefix="audit-load") as loader, \
                ThreadPoolExecutor(num_workers, thread_name_prefix="audit-explain") as pool:
            try:
                while queue or pending:
                    while queue and len(pending) < window:
                        i = queue.popleft()
                        pending.add(pool.submit(job, loader.submit(load, source, i, model, cfg)))
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    error = None
                    for fut in done:  # commit every finished image before an error propagates
                        if fut.exception() is not None:
                            error = error or fut.exception()
                            continue
                        rows = fut.result()[0]
                        writer.add(rows)
                        if on_image is not None:
                            on_image(rows)
                    if error is not None:
                        raise error
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    finally:
        writer.flush()
        torch.set_num_threads(threads)

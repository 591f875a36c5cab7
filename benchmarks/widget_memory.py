"""How much memory the widget's process keeps while a user drags sliders, with the default model.

The widget is created on the sample image (first sweep), then three bursts of
parameter changes are set from Python as a user dragging the stride and mask
size sliders would (one change every ``--interval`` seconds, values cycling
through a range, each change cancelling the sweep before it), each burst
ending with the last sweep finished. The resident set size (RSS) is measured
after the first sweep and after each burst; the ratio last / first is the
figure to watch (goal: <= 1.5).

RSS comes from psutil when it is installed, else from ``/proc/self/status``
(``VmRSS``, Linux).

    python benchmarks/widget_memory.py [--changes 100] [--bursts 3] [--interval 0.02]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
import warnings

import torch

from occlusion_widget.widget import OcclusionWidget


def rss_bytes() -> int:
    """The process's resident set size in bytes."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("cannot measure RSS: install psutil (no /proc/self/status here)") from None
    return int(psutil.Process().memory_info().rss)


def live_tensor_bytes() -> int:
    """Bytes held by the torch tensors that the garbage collector can see (an estimate of live data)."""
    seen, total = set(), 0
    with warnings.catch_warnings():  # isinstance() on some torch module objects warns
        warnings.simplefilter("ignore")
        objects = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
    for obj in objects:
        try:
            if obj.device.type == "cpu":
                storage = obj.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
        except Exception:  # noqa: BLE001, S112 - some objects refuse introspection
            continue
    return total


def burst(w: OcclusionWidget, changes: int, interval: float, offset: int) -> float:
    """``changes`` slider moves (stride and mask size cycling); seconds until the last sweep ends."""
    strides = itertools.cycle(range(8, 31, 2))
    masks = itertools.cycle(range(24, 61, 6))
    for _ in range(offset):
        next(strides), next(masks)
    start = time.perf_counter()
    for i in range(changes):
        if i % 2:
            w.mask_size = next(masks)
        else:
            w.stride = next(strides)
        time.sleep(interval)
    w.wait(600)
    if w.status != "done":
        raise RuntimeError(f"burst ended with status {w.status!r}: {w.error}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100, help="parameter changes per burst")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between two changes")
    args = parser.parse_args()

    start = time.perf_counter()
    w = OcclusionWidget()
    w.wait(600)
    if w.status != "done":
        raise RuntimeError(f"first sweep: {w.status} {w.error}")
    gc.collect()
    first = rss_bytes()
    mb = 1024 ** 2
    print(f"first sweep: {time.perf_counter() - start:.1f} s, RSS {first / mb:.0f} MB, "
          f"live tensors {live_tensor_bytes() / mb:.0f} MB")
    rss = first
    for b in range(args.bursts):
        seconds = burst(w, args.changes, args.interval, offset=b * 5)
        gc.collect()
        rss = rss_bytes()
        cache = w._controller.cache
        print(f"burst {b + 1}: {seconds:.1f} s, RSS {rss / mb:.0f} MB, live tensors {live_tensor_bytes() / mb:.0f} MB, "
              f"cache {len(cache)} items / {getattr(cache, 'nbytes', 0) / mb:.0f} MB")
    print(f"ratio last burst / first sweep: {rss / first:.2f} (goal <= 1.5)")
    w.close()


if __name__ == "__main__":
    main()

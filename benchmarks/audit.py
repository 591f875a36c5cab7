"""ow.audit vs a Python loop calling occlusion_sensitivity per image, in one process (the audit issue).

    python benchmarks/audit.py [--images 64] [--rounds 4] [--threads N] [--ray]

64 JPEGs made from the bundled photographs (matplotlib's grace_hopper.jpg; scikit-image's chelsea,
coffee, astronaut, rocket), with crops and flips; the default EfficientNet-Lite0 at auto parameters
(mask 45, stride 22 on 224x224: 121 positions), the predicted class. The loop and the audits take turns
on slices of the images (``--rounds``), so a change in the machine's load hits all of them alike.
Memory: the process's RSS sampled every 20 ms (peak above the level before each phase; torch's
allocations included) and tracemalloc's peak (Python and numpy allocations only).
``--ray``: images per minute with 1 and 2 Ray workers on a local Ray instance (start-up excluded).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

import occlusion_widget as ow
from occlusion_widget.audit import audit


def make_images(folder: Path, n: int) -> list[str]:
    from matplotlib import cbook
    from skimage import data

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        photos = [Image.open(fh).convert("RGB")]
    photos += [Image.fromarray(getattr(data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    variants = []
    for img in photos:
        w, h = img.size
        crops = [(0, 0, 0.7, 0.7), (0.3, 0, 1, 0.7), (0, 0.3, 0.7, 1), (0.3, 0.3, 1, 1), (0.1, 0.1, 0.9, 0.9),
                 (0.2, 0.2, 0.8, 0.8)]
        cropped = [img.crop((int(a * w), int(b * h), int(c * w), int(d * h))) for a, b, c, d in crops]
        variants += [img, ImageOps.mirror(img), *cropped, *(ImageOps.mirror(c) for c in cropped[:5])]
    paths = []
    for i, img in enumerate(variants[:n]):
        paths.append(str(folder / f"{i:03d}.jpg"))
        img.save(paths[-1], quality=90)
    if len(paths) < n:
        raise SystemExit(f"only {len(paths)} variants; use --images {len(paths)} or fewer")
    return paths


class Memory:
    """Peak RSS above the starting level (sampled) and tracemalloc's peak, over a block."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        tracemalloc.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self.traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self._rss())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--ray", action="store_true")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 on a loaded machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ow.load_default_model()
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    paths = make_images(tmp, args.images)
    ow.occlusion_sensitivity(model, paths[0])  # warm-up: the incremental trace is cached per module
    kinds = {"loop": [], "audit (1 worker)": [], "audit (2 workers)": []}
    secs = dict.fromkeys(kinds, 0.0)
    mem = dict.fromkeys(kinds, (0, 0))
    results = {}
    for r, part in enumerate(np.array_split(np.arange(len(paths)), args.rounds)):
        chunk = [paths[i] for i in part]
        for kind in kinds:
            t = time.perf_counter()
            with Memory() as m:
                if kind == "loop":
                    for p in chunk:
                        results[p] = ow.occlusion_sensitivity(model, p).maps[0]
                else:
                    workers = 1 if "1" in kind else 2
                    audit(model, chunk, out=tmp / f"out-{workers}-{r}", num_workers=workers, progress=False)
            secs[kind] += time.perf_counter() - t
            mem[kind] = (max(mem[kind][0], m.peak - m.base), max(mem[kind][1], m.traced))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()), flush=True)
    # The audit's maps are the loop's maps.
    a = audit(model, paths[: len(np.array_split(np.arange(len(paths)), args.rounds)[0])],
              out=tmp / "out-1-0", progress=False)
    worst = max(float(np.abs(a.map(i) - results[a.table['path'][i]]).max()) for i in range(len(a)))
    print(f"\n{len(paths)} images, EfficientNet-Lite0, auto parameters, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for kind in kinds:
        ipm = 60 * len(paths) / secs[kind]
        print(f"  {kind:18s} {ipm:6.1f} images/min  ({ipm / (60 * len(paths) / secs['loop']):.2f}x the loop)"
              f"  peak RSS +{mem[kind][0] / 2**20:.0f} MiB, tracemalloc peak {mem[kind][1] / 2**20:.1f} MiB")
    print(f"  largest |audit map - loop map|: {worst:.2e}")
    if args.ray:
        import ray

        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        n = min(16, len(paths))
        for workers in (1, 2):
            audit(model, paths[:2], out=tmp / f"ray-warm-{workers}", backend="ray", num_workers=workers,
                  progress=False)  # actors start, the model is shipped
            t = time.perf_counter()
            audit(model, paths[:n], out=tmp / f"ray-{workers}", backend="ray", num_workers=workers, progress=False)
            dt = time.perf_counter() - t
            print(f"  ray, {workers} worker(s): {60 * n / dt:.1f} images/min ({n} images, {dt:.1f} s, "
                  "actor start-up included)")
        ray.shutdown()


if __name__ == "__main__":
    main()

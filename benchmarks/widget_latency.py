"""How fast the widget answers, with the default model, in one process, without a browser.

* parameter change -> the first partial map covering the whole image (no NaN) set on
  the synced ``map_data`` trait, and -> status "done";
* mask preview round trip: ``preview_request`` set -> ``preview`` answer set;
* method switch (Grad-CAM, saliency, SmoothGrad, uncached) -> status "done", and
  opening the compare view -> its four maps and AUCs done.

Targets (issue 3, 2-core CPU): first full map < 2 s, preview < 200 ms.

    python benchmarks/widget_latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import numpy as np
import torch

from occlusion_widget.widget import OcclusionWidget


def _first_full_map(w: OcclusionWidget, change: dict, timeout: float = 120.0) -> tuple[float, float]:
    """Apply ``change``; seconds until a NaN-free map is published, and until status 'done'.

    Publications are ordered by the controller's lock, and once the change has
    been applied no older sweep can publish, so only maps published after that
    point count (a stale one may land while the change is being applied).
    """
    events: list[tuple[float, bool]] = []
    done = threading.Event()

    def on_map(c: dict) -> None:
        events.append((time.perf_counter(), not np.isnan(np.frombuffer(c["new"]["data"], "<f4")).any()))

    def on_status(c: dict) -> None:
        if c["new"] in ("done", "error"):
            done.set()

    w.observe(on_map, "map_data")
    w.observe(on_status, "status")
    start = time.perf_counter()
    try:
        with w.hold_trait_notifications():
            for name, value in change.items():
                setattr(w, name, value)
        first_new = len(events)
        if w.status not in ("done", "error"):
            done.clear()  # a "done" from the sweep the change replaced does not count
        if not done.wait(timeout):
            raise TimeoutError(change)
        ended = time.perf_counter()
        if w.status == "error":
            raise RuntimeError(w.error)
    finally:
        w.unobserve(on_map, "map_data")
        w.unobserve(on_status, "status")
    full = next((t for t, no_nan in events[first_new:] if no_nan), float("nan"))
    return full - start, ended - start


def _preview_round_trip(w: OcclusionWidget, x: float, y: float) -> float:
    answered = threading.Event()
    seq = int(w.preview_request.get("seq", 0)) + 1

    def on_preview(c: dict) -> None:
        if c["new"].get("seq") == seq:
            answered.set()

    w.observe(on_preview, "preview")
    start = time.perf_counter()
    try:
        w.preview_request = {"x": x, "y": y, "seq": seq}  # what the browser sends while dragging
        if not answered.wait(30):
            raise TimeoutError("no preview answer")
    finally:
        w.unobserve(on_preview, "preview")
    if "error" in w.preview:
        raise RuntimeError(w.preview["error"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the whole sequence")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")

    start = time.perf_counter()
    w = OcclusionWidget()
    print(f"OcclusionWidget() returned in {time.perf_counter() - start:.2f} s (the sweep runs in the background)")
    w.wait(300)
    print(f"first sweep (default parameters) done {time.perf_counter() - start:.1f} s after construction\n")

    # Each change misses the cache (new parameters each round, so nothing is reused).
    changes = [
        ("stride 22 -> 16", lambda r: {"stride": 16 + r}),
        ("mask size -> 30", lambda r: {"mask_size": 30 + r}),
        ("mask value -> blur", lambda r: {"mask_value": "blur", "mask_size": 40 + r}),
        ("top-k -> 5", lambda r: {"top_k": 5, "stride": 20 + r}),
        ("stride -> 8 (784 positions)", lambda r: {"stride": 8 + r, "mask_size": 24, "mask_value": "auto", "top_k": 3}),
    ]
    firsts, dones = [], []
    print(f"{'parameter change (idle widget)':34s} {'first full map':>15s} {'done':>8s}")
    for r in range(args.repeat):
        for name, make in changes:
            first, done = _first_full_map(w, make(r))
            firsts.append(first)
            dones.append(done)
            print(f"{name:34s} {first:13.2f} s {done:6.2f} s")

    # Worst case: the change arrives while a sweep is running (its batch in flight must end first).
    busy = []
    print(f"\n{'change while a sweep runs':34s} {'first full map':>15s}")
    for r in range(args.repeat):
        w.stride = 5
        w.recompute(force=True)  # a long sweep (2025 positions), never from the cache
        time.sleep(0.6 + 0.25 * r)  # catch it at different points of a batch
        first, _ = _first_full_map(w, {"stride": 18 + r})
        busy.append(first)
        print(f"{f'stride 5 (running) -> {18 + r}':34s} {first:13.2f} s")

    # Cached: back to earlier settings.
    w.stride = 17  # anything else
    w.wait(300)
    t0 = time.perf_counter()
    w.stride = 18 + args.repeat - 1  # finished above
    cached = time.perf_counter() - t0
    print(f"\nback to cached settings: status {w.status!r} after {cached * 1000:.1f} ms")

    # Drag preview round trips: a drag sends one request per 100 ms (the browser's throttle).
    def drag(n: int) -> list[float]:
        out = []
        for x, y in rng.uniform(0, 223, (n, 2)):
            t = _preview_round_trip(w, x, y)
            out.append(t)
            time.sleep(max(0.0, 0.1 - t))
        return out

    rng = np.random.default_rng(0)
    w.wait(300)
    idle = drag(30)
    w.stride = 4  # a long sweep (3136 positions) running in the background
    time.sleep(1.5)
    assert w.status == "running"
    during = drag(30)
    w.cancel()
    w.wait(30)

    # Gradient methods: classes not explained before, so nothing comes from the cache.
    switches: dict[str, list[float]] = {"grad_cam": [], "saliency": [], "smoothgrad": []}
    compares = []
    w.stride = "auto"
    print(f"\n{'method switch (new classes)':34s} {'done':>8s}")
    for r in range(args.repeat):
        for method in switches:
            _, done = _first_full_map(w, {"method": method, "targets": [400 + r, 500 + r]})
            switches[method].append(done)
            print(f"{method:34s} {done:6.2f} s")
        start = time.perf_counter()
        with w.hold_trait_notifications():
            w.method, w.targets, w.compare = "grad_cam", [700 + r], True
        w.wait(600)
        compares.append(time.perf_counter() - start)
        assert w.comparison is not None, w.comparison_data.get("status")
        print(f"{'compare view (4 maps + AUCs)':34s} {compares[-1]:6.2f} s")
        w.compare = False
    w.close()

    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"  # noqa: E731
    s = lambda xs: f"median {statistics.median(xs):.2f} s, max {max(xs):.2f} s"  # noqa: E731
    print("\nSummary")
    print(f"  first full map after a change (idle):        {s(firsts)}   (target < 2 s)")
    print(f"  first full map after a change (mid-sweep):   {s(busy)}")
    print(f"  sweep done after a change:                   {s(dones)}")
    print(f"  preview round trip (idle):                   {ms(idle)}   (target < 200 ms)")
    print(f"  preview round trip (drag during a sweep):    {ms(during)}; first move {during[0] * 1000:.0f} ms")
    print(f"  cached settings:                             {cached * 1000:.1f} ms")
    for method, times in switches.items():
        print(f"  {'switch to ' + method + ':':45s}{s(times)}")
    print(f"  {'compare view (4 maps + AUCs, steps=10):':45s}{s(compares)}")


if __name__ == "__main__":
    main()

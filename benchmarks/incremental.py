"""Exact incremental inference vs our full path vs Captum, in one process (issue 6).

    python benchmarks/incremental.py [--quick] [--batch-size 32] [--models resnet18,resnet50,efficientnet_lite0]

Models: ResNet-18 and ResNet-50 (torchvision, random weights: no download) and
the default EfficientNet-Lite0 (ImageNet weights), on the sample photograph at 224x224.

(a) one target (top-1), mask 15, stride 8;
(b) the auto parameters (mask 45, stride 22), the top-5 classes (Captum: one run per class);
(c) a dense map at stride 2 (mask 15): 105x105 = 11025 positions. Too long on a
    2-core CPU, so a central block of positions is timed and the time for the
    whole map extrapolated from it (printed as such). Captum is left out of (c).

Masks are full size (``mask_clipping=False``) so that Captum's windows are the
same; our maps are compared to Captum's as ``pixel_mean()`` (its per-pixel
convention), and incremental to full on the raw grids (probabilities).
Captum runs batched like ours (``perturbations_per_eval`` = our batch size)
and, for ResNet-18 (a), with its default ``perturbations_per_eval=1``.
FLOPs are the multiply-adds of conv and linear layers: "executed" is what the
incremental path ran (crops of one common size per batch), "ideal" the exact
dirty regions (the theoretical bound of exact incremental inference).
A drill-down (approximate) line compares adaptive refinement with the exact map.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from captum.attr import Occlusion

from occlusion_widget.engine.drilldown import drilldown_sensitivity, map_agreement
from occlusion_widget.engine.grid import MaskGrid
from occlusion_widget.engine.incremental import make_incremental_score
from occlusion_widget.engine.incremental.strategy import AUTO_MAX_COST_RATIO
from occlusion_widget.engine.sweep import _occlude, occlusion_sensitivity
from occlusion_widget.models import from_torchvision, load_default_model, sample_image


def load(name: str):
    if name == "efficientnet_lite0":
        clf = load_default_model()
    else:
        torch.manual_seed(0)
        clf = from_torchvision(name, weights=None)
    clf.module.eval().to(memory_format=torch.channels_last)
    return clf


REPEATS = 1


def timed(fn, repeats=None):
    """Best wall time of ``repeats`` runs (other processes share the cores: the minimum is the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(repeats or REPEATS):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def full_sweep(clf, x, targets, mask, stride, batch):
    return occlusion_sensitivity(clf, x, targets, mask_size=mask, stride=stride, mask_clipping=False,
                                 batch_size=batch, device="cpu", strategy="full")


@torch.inference_mode()
def incremental_grid(clf, x, target_idx, mask, stride, batch, boxes=None):
    """The sweep's loop on the incremental path: (K, N) drops at ``boxes`` (default: the whole grid,
    in the sweep's coarse-to-fine order). Returns (drops, grid_shape, evaluator)."""
    module = clf.module
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x).contiguous()
    score = make_incremental_score(module, x, fill, "probability", strategy="incremental", mask_size=(mask, mask))
    ev = score.evaluator
    base = module(x[None].contiguous(memory_format=torch.channels_last)).softmax(1)[0, target_idx]
    shape = None
    if boxes is None:
        grid = MaskGrid.build(tuple(x.shape[1:]), (mask, mask), (stride, stride), False)
        order = grid.coarse_to_fine()
        boxes, shape = grid.boxes.reshape(-1, 4)[order], grid.shape
    else:
        order = np.arange(len(boxes))
    drops = np.zeros((len(target_idx), len(boxes)), dtype=np.float32)
    for s in range(0, len(boxes), batch):
        scores = score(torch.as_tensor(boxes[s : s + batch]))
        drops[:, order[s : s + batch]] = (base[:, None] - scores[:, target_idx].T).numpy()
    return drops, shape, ev


@torch.inference_mode()
def full_drops(clf, x, target_idx, boxes, batch):
    module = clf.module
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x).contiguous()
    rows, cols = torch.arange(x.shape[1]), torch.arange(x.shape[2])
    base = module(x[None].contiguous(memory_format=torch.channels_last)).softmax(1)[0, target_idx]
    out = []
    for s in range(0, len(boxes), batch):
        occ = _occlude(x, fill, torch.as_tensor(boxes[s : s + batch]), rows, cols).contiguous(memory_format=torch.channels_last)
        out.append((base[:, None] - module(occ).softmax(1)[:, target_idx].T).numpy())
    return np.concatenate(out, axis=1)


def captum_maps(clf, x, targets, mask, stride, per_eval):
    module = clf.module
    baseline = x.mean(dim=(1, 2)).view(1, -1, 1, 1).expand(1, *x.shape).contiguous()
    occ = Occlusion(lambda b: module(b).softmax(dim=1))
    with torch.no_grad():
        return np.stack([
            occ.attribute(x[None], sliding_window_shapes=(3, mask, mask), strides=(3, stride, stride),
                          baselines=baseline, target=int(t), perturbations_per_eval=per_eval)[0, 0].numpy()
            for t in targets
        ])


def flop_line(ev):
    f = ev.flops
    return (f"  FLOPs (conv+linear MACs) per position: executed/full {f.executed / f.full:.3f}, "
            f"ideal/full {f.ideal / f.full:.3f} (bound: {f.full / f.ideal:.2f}x), executed/ideal {f.executed / f.ideal:.2f}")


def case_ab(label, clf, x, top, mask, stride, batch, captum_single, record):
    targets = top
    t_full, res_full = timed(lambda: full_sweep(clf, x, targets, mask, stride, batch))
    t_inc, (drops, shape, ev) = timed(lambda: incremental_grid(clf, x, np.asarray(targets), mask, stride, batch))
    inc_grid = drops.reshape(len(targets), *shape)
    d_inc = float(np.abs(inc_grid - res_full.grid).max())
    t_cap, cap = timed(lambda: captum_maps(clf, x, targets, mask, stride, batch))
    d_cap = float(np.abs(res_full.pixel_mean() - cap).max())
    est = ev.estimated_cost_ratio(mask)
    print(f"\n({label}) {clf.name}: targets={len(targets)} mask={mask} stride={stride} "
          f"positions={res_full.grid[0].size} batch={batch}")
    print(f"  ours, full path             {t_full:8.2f} s")
    print(f"  ours, incremental           {t_inc:8.2f} s   {t_full / t_inc:5.2f}x vs full   max|inc - full| {d_inc:.1e}")
    print(f"  Captum, perturbations={batch:<4d}  {t_cap:8.2f} s   incremental is {t_cap / t_inc:5.2f}x faster   "
          f"max|full - Captum| {d_cap:.1e}")
    row = dict(case=label, model=clf.name, targets=len(targets), mask=mask, stride=stride, full_s=t_full, inc_s=t_inc,
               captum_batched_s=t_cap, max_diff_inc_full=d_inc, max_diff_full_captum=d_cap,
               flops_executed=ev.flops.executed / ev.flops.full, flops_ideal=ev.flops.ideal / ev.flops.full,
               estimated_cost_ratio=est, auto_picks="incremental" if est < AUTO_MAX_COST_RATIO else "full")
    if captum_single:
        t_cap1, _ = timed(lambda: captum_maps(clf, x, targets, mask, stride, 1), repeats=1)
        print(f"  Captum, perturbations=1     {t_cap1:8.2f} s   incremental is {t_cap1 / t_inc:5.2f}x faster")
        row["captum_single_s"] = t_cap1
    print(flop_line(ev))
    print(f"  auto: estimated cost ratio {est:.3f} -> {row['auto_picks']}")
    record.append(row)
    return inc_grid, res_full


def case_c(clf, x, top1, batch, block, record):
    mask, stride = 15, 2
    grid = MaskGrid.build(tuple(x.shape[1:]), (mask, mask), (stride, stride), False)
    gy, gx = grid.shape
    cy, cx = (gy - block) // 2, (gx - block) // 2
    boxes = grid.boxes[cy : cy + block, cx : cx + block].reshape(-1, 4)
    # The sweep's coarse-to-fine order spreads each batch over the image; mimic it in the block.
    iy, ix = np.meshgrid(np.arange(block), np.arange(block), indexing="ij")
    order = np.argsort(((iy % 4 != 0) | (ix % 4 != 0)).astype(int) + ((iy % 2 != 0) | (ix % 2 != 0)), kind="stable").ravel()
    boxes = boxes[order]
    target_idx = np.asarray(top1)
    t_full, ref = timed(lambda: full_drops(clf, x, target_idx, boxes, batch))
    t_inc, (drops, _, ev) = timed(lambda: incremental_grid(clf, x, target_idx, mask, stride, batch, boxes=boxes))
    n, total = len(boxes), gy * gx
    d = float(np.abs(drops - ref).max())
    print(f"\n(c) {clf.name}: dense map, mask {mask}, stride {stride}: {gy}x{gx} = {total} positions; "
          f"timed on a central {block}x{block} block ({n} positions), whole map extrapolated")
    print(f"  ours, full path             {t_full:8.2f} s  ({t_full / n * 1e3:6.1f} ms/position, "
          f"whole map ~{t_full / n * total / 60:6.1f} min)")
    print(f"  ours, incremental           {t_inc:8.2f} s  ({t_inc / n * 1e3:6.1f} ms/position, "
          f"whole map ~{t_inc / n * total / 60:6.1f} min)"
          f"   {t_full / t_inc:5.2f}x   max|inc - full| {d:.1e}")
    print(flop_line(ev))
    record.append(dict(case="c", model=clf.name, positions_timed=n, positions_total=total, full_s=t_full, inc_s=t_inc,
                       max_diff_inc_full=d, flops_executed=ev.flops.executed / ev.flops.full,
                       flops_ideal=ev.flops.ideal / ev.flops.full))


def drilldown_line(clf, x, top1, mask, stride, batch, exact_time, exact_full_time, exact, record):
    t_dd, approx = timed(lambda: drilldown_sensitivity(clf, x, top1, fraction=0.25, coarse_factor=2, mask_size=mask,
                                                       stride=stride, mask_clipping=False, batch_size=batch,
                                                       device="cpu"))
    agreement = map_agreement(approx, exact)
    info = approx.extra["drilldown"]
    print(f"  drill-down (approximate, fraction 0.25, coarse x2): {t_dd:6.2f} s, {exact_time / t_dd:4.2f}x vs the exact "
          f"incremental map ({exact_full_time / t_dd:4.2f}x vs full); "
          f"{info['coarse_positions'] + info['refined_positions']}/{info['fine_positions']} positions run; "
          f"Pearson {agreement['pearson']:.3f}, top-10% overlap {agreement['top_overlap']:.3f} (IoU {agreement['top_iou']:.3f})")
    record.append(dict(case="drilldown", model=clf.name, seconds=t_dd, speedup_vs_incremental=exact_time / t_dd,
                       speedup_vs_full=exact_full_time / t_dd,
                       pearson=agreement["pearson"], top10_overlap=agreement["top_overlap"], top10_iou=agreement["top_iou"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ResNet-18 only, (a) and (b), a small (c) block")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="resnet18,resnet50,efficientnet_lite0")
    parser.add_argument("--block", type=int, default=16, help="(c): side of the central block of positions timed")
    parser.add_argument("--no-captum-single", action="store_true", help="skip Captum with perturbations_per_eval=1")
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs for our two paths and batched Captum")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, = the cores)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global REPEATS
    REPEATS = max(1, args.repeats)
    names = ["resnet18"] if args.quick else args.models.split(",")
    block = 6 if args.quick else args.block
    import os

    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {loadavg:.2f} on {os.cpu_count()} cores, "
          f"CPU, float32, channels_last; "
          f"no GPU on this machine (the CUDA path is covered by the CPU tests)")
    record: list[dict] = []
    image = sample_image()
    for name in names:
        clf = load(name)
        x = clf.preprocess(image)
        with torch.inference_mode():
            top5 = clf.module(x[None]).softmax(1)[0].topk(5).indices.tolist()
        inc_a, full_a = case_ab("a", clf, x, top5[:1], 15, 8, args.batch_size,
                                name == "resnet18" and not args.no_captum_single, record)
        if name in ("resnet18", "efficientnet_lite0"):
            row = next(r for r in record if r["model"] == clf.name and r["case"] == "a")
            drilldown_line(clf, x, top5[:1], 15, 8, args.batch_size, row["inc_s"], row["full_s"], full_a, record)
        case_ab("b", clf, x, top5, 45, 22, args.batch_size, False, record)
        case_c(clf, x, top5[:1], args.batch_size, block, record)
    print("\nsummary (speed-up of incremental over our full path; FLOPs executed/ideal per full)")
    for r in record:
        if r["case"] in ("a", "b", "c"):
            cap = f"  vs Captum(batched) {r['captum_batched_s'] / r['inc_s']:.2f}x" if "captum_batched_s" in r else ""
            cap1 = f"  vs Captum(1) {r['captum_single_s'] / r['inc_s']:.2f}x" if "captum_single_s" in r else ""
            print(f"  ({r['case']}) {r['model']:<20s} {r['full_s'] / r['inc_s']:5.2f}x{cap}{cap1}   "
                  f"FLOPs {r['flops_executed']:.3f} / {r['flops_ideal']:.3f}   max diff {r['max_diff_inc_full']:.1e}")
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes share these cores; timings move with it)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)


if __name__ == "__main__":
    main()

"""Train the small offline demo segmenter and detector on synthetic scenes (a few minutes on a CPU).

    python scripts/train_segdet.py [--steps 700] [--out occlusion_widget/data]

Writes segdet_segmenter.pt and segdet_detector.pt (state dicts, ~120 kB each) and prints held-out
quality: the segmenter's per-class IoU, the detector's recall at IoU 0.5 and its false positives.
The scenes and models are in occlusion_widget/engine/targets_demo.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from occlusion_widget.engine.targets_demo import DATA, SIZE, STRIDE, TinyDetector, TinySegmenter, synthetic_scene


def batch(rng: np.random.Generator, n: int):
    scenes = [synthetic_scene(rng) for _ in range(n)]
    return (torch.stack([s[0] for s in scenes]), torch.stack([s[1] for s in scenes]),
            [s[2] for s in scenes], [s[3] for s in scenes])


def centernet_targets(boxes, labels, n: int):
    """Gaussian class heatmaps (N, 2, h, w), geometry targets (N, 4, h, w) and their mask (N, h, w)."""
    h = w = SIZE // STRIDE
    heat = np.zeros((n, 2, h, w), np.float32)
    geo = np.zeros((n, 4, h, w), np.float32)
    mask = np.zeros((n, h, w), bool)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for i, (bs, ls) in enumerate(zip(boxes, labels, strict=True)):
        for (x0, y0, x1, y1), lab in zip(bs.tolist(), ls.tolist(), strict=True):
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            sigma = max(0.5, (x1 - x0) / STRIDE / 6)
            g = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2))
            heat[i, lab - 1] = np.maximum(heat[i, lab - 1], g)
            geo[i, :, iy, ix] = [np.log((x1 - x0) / STRIDE), np.log((y1 - y0) / STRIDE), cx - ix - 0.5, cy - iy - 0.5]
            mask[i, iy, ix] = True
    heat, geo, mask = torch.from_numpy(heat), torch.from_numpy(geo), torch.from_numpy(mask)
    return heat, geo, mask


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (Zhou et al. 2019)."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    loss = -(pos * (1 - p) ** 2 * p.log() + (1 - pos) * (1 - target) ** 4 * p ** 2 * (1 - p).log())
    return loss.sum() / pos.sum().clamp(min=1)


def train(steps: int, seed: int) -> tuple[TinySegmenter, TinyDetector]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    seg, det = TinySegmenter(), TinyDetector()
    opt = torch.optim.AdamW(list(seg.parameters()) + list(det.parameters()), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    seg.train(), det.train()
    start = time.perf_counter()
    for step in range(steps):
        x, mask, boxes, labels = batch(rng, 16)
        seg_loss = F.cross_entropy(seg(x)["out"], mask, weight=torch.tensor([0.5, 1.0, 1.0]))
        heat_t, geo_t, where = centernet_targets(boxes, labels, len(x))
        heat, geo = det(x)
        geo_loss = F.l1_loss(geo.permute(0, 2, 3, 1)[where], geo_t.permute(0, 2, 3, 1)[where])
        loss = seg_loss + focal_loss(heat, heat_t) + geo_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}  seg {seg_loss.item():.3f}  det {loss.item() - seg_loss.item():.3f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return seg.eval(), det.eval()


@torch.inference_mode()
def evaluate(seg: TinySegmenter, det: TinyDetector, n: int = 200, seed: int = 12345) -> None:
    x, mask, boxes, labels = batch(np.random.default_rng(seed), n)
    pred = seg(x)["out"].argmax(1)
    ious = [((pred == c) & (mask == c)).sum().item() / max(1, ((pred == c) | (mask == c)).sum().item())
            for c in range(3)]
    print("segmenter IoU per class (background, square, disk):", [round(v, 3) for v in ious])
    found = total = false = 0
    for d, bs, ls in zip(det(x), boxes, labels, strict=True):
        keep = d["scores"] >= 0.5
        db, dl = d["boxes"][keep], d["labels"][keep]
        total += len(bs)
        if len(db) == 0:
            continue
        iou = box_iou(bs, db)
        ok = (iou >= 0.5) & (ls[:, None] == dl[None, :])
        found += int(ok.any(dim=1).sum())
        false += int((~ok.any(dim=0)).sum())
    print(f"detector at score >= 0.5: recall {found / total:.3f} ({found}/{total}), "
          f"{false} false positives on {n} images")


def main() -> None:
    torch.set_num_threads(1)  # small convolutions: one thread is as fast, and the CPU is shared
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args()
    seg, det = train(args.steps, args.seed)
    evaluate(seg, det)
    for model, name in ((seg, "segdet_segmenter.pt"), (det, "segdet_detector.pt")):
        path = args.out / name
        torch.save(model.state_dict(), path)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()

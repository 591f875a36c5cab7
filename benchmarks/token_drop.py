"""Token-drop vs grey-patch occlusion on a ViT: time per map and deletion/insertion AUCs.

    python benchmarks/token_drop.py [--model vit_tiny_patch16_224] [--mask 32] [--stride 16] [--images 3]

timm's ``vit_tiny_patch16_224`` with random weights (``pretrained=False``: no download) at 224x224,
full-size masks of ``--mask`` px every ``--stride`` px (multiples of the 16-px patch, so both
variants hide exactly the same pixels). Grey: the engine's sweep painting 0.5 (``strategy="full"``);
drop: :func:`occlusion_widget.engine.token_drop.token_drop_scores` on the same boxes. Each map is
then scored with :func:`occlusion_widget.methods.faithfulness.deletion_insertion` (grey fill, top-1
class). With random weights the AUCs say little about missingness bias: rerun with
``--pretrained`` (downloads timm's weights once) for figures that mean something.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import occlusion_widget as ow
from occlusion_widget.engine.token_drop import token_drop_scores
from occlusion_widget.methods.faithfulness import deletion_insertion


def images(n: int) -> list[tuple[str, object]]:
    """The sample photograph, then scikit-image's bundled photographs (offline)."""
    found: list[tuple[str, object]] = [("grace_hopper", ow.sample_image())]
    try:
        from skimage import data

        for name in ("astronaut", "coffee", "chelsea"):
            found.append((name, getattr(data, name)()))
    except Exception as exc:  # noqa: BLE001 - scikit-image missing or its data not bundled: fewer images
        print(f"(scikit-image images unavailable: {exc})")
    return found[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_tiny_patch16_224")
    ap.add_argument("--pretrained", action="store_true")
    ap.add_argument("--mask", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ow.from_timm(args.model, pretrained=args.pretrained)
    print(f"{args.model} ({'pretrained' if args.pretrained else 'random weights'}), mask {args.mask}, "
          f"stride {args.stride}, full-size masks, batch {args.batch_size}, {torch.get_num_threads()} threads")
    rows = []
    for name, img in images(args.images):
        x = model.preprocess(img)  # resized and centre-cropped once: both variants see the same pixels
        t0 = time.perf_counter()
        grey = ow.occlusion_sensitivity(model, x, top_k=1, mask_size=args.mask, stride=args.stride, mask_value=0.5,
                                        mask_clipping=False, strategy="full", upsampling="nearest",
                                        batch_size=args.batch_size, device="cpu")
        t_grey = time.perf_counter() - t0
        target = int(grey.targets[0])
        boxes = torch.as_tensor(grey.boxes.reshape(-1, 4))
        t0 = time.perf_counter()
        scores = token_drop_scores(model.module, torch.as_tensor(grey.image), boxes,
                                   reduce=lambda raw, n: raw.float().softmax(dim=1), batch_size=args.batch_size)
        drop_grid = (float(grey.base_scores[0]) - scores[:, target].numpy()).reshape(1, *grey.grid.shape[1:])
        t_drop = time.perf_counter() - t0
        drop_map = _paint(drop_grid[0], grey.boxes, grey.image.shape[1:])
        grey_map = _paint(grey.grid[0], grey.boxes, grey.image.shape[1:])
        aucs = {}
        for label, m in (("grey", grey_map), ("drop", drop_map)):
            c = deletion_insertion(model, x, m, target, mask_value=0.5, device="cpu")
            aucs[label] = (c.deletion_auc, c.insertion_auc)
        corr = float(np.corrcoef(grey.grid[0].ravel(), drop_grid[0].ravel())[0, 1])
        rows.append((name, boxes.shape[0], t_grey, t_drop, aucs, corr))
        print(f"{name:13s} {boxes.shape[0]} masks  grey {t_grey:6.2f} s  drop {t_drop:6.2f} s  "
              f"({t_grey / t_drop:4.2f}x)  deletion AUC grey {aucs['grey'][0]:.4f} drop {aucs['drop'][0]:.4f}  "
              f"insertion AUC grey {aucs['grey'][1]:.4f} drop {aucs['drop'][1]:.4f}  grid correlation {corr:+.2f}",
              flush=True)
    tg, td = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(f"total: grey {tg:.2f} s, drop {td:.2f} s per {len(rows)} maps: drop {tg / td:.2f}x faster "
          "(lower deletion AUC and higher insertion AUC = a more faithful map)")


def _paint(grid: np.ndarray, boxes: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """(gy, gx) per-mask values -> (H, W): each pixel the mean over the masks covering it."""
    total, count = np.zeros(size[-2:]), np.zeros(size[-2:])
    for v, (y0, x0, y1, x1) in zip(grid.ravel(), boxes.reshape(-1, 4), strict=True):
        total[y0:y1, x0:x1] += v
        count[y0:y1, x0:x1] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


if __name__ == "__main__":
    main()

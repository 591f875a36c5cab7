"""``occlusion-widget audit DIR -o audit/``: explain a folder of images, print a summary, save a figure.

The main command line adds it with ``add_parser(subparsers)`` and calls ``run(args)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

HELP = """Explain every image of a folder (class subfolders give true labels) with one method, into a
resumable store: rows in Parquet, maps and inputs in Zarr, parameters in JSON. Rerunning with the same
-o skips finished images. Ends with a summary and a figure (per-class mean maps, top misclassified).

examples:
  occlusion-widget audit photos/ -o audit/
  occlusion-widget audit val/ -o audit/ --targets both --stride 16 --deletion-insertion
  occlusion-widget audit val/ -o audit/ --backend ray --address ray://head:10001
"""


def _size(text: str) -> Any:
    if text == "auto":
        return "auto"
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use 'auto', N or H,W (pixels of the model's input)") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: use 'auto', N or H,W with positive pixels")
    return parts[0] if len(parts) == 1 else tuple(parts)


def _targets(text: str) -> Any:
    if text.isdigit():
        return int(text)
    if text not in ("predicted", "label", "both"):
        raise argparse.ArgumentTypeError(f"{text!r}: use predicted, label, both or an int k (top-k)")
    return text


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``audit`` command to an argparse subparsers object; returns its parser."""
    from ..methods.registry import METHODS

    p = subparsers.add_parser("audit", help="explain a whole folder of images into a resumable audit",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="folder of images (class subfolders: true labels)")
    p.add_argument("-o", "--out", default="audit", help="the audit folder (default: audit)")
    p.add_argument("--model", default="default", help="'default' (EfficientNet-Lite0) or torchvision:NAME[:WEIGHTS]")
    p.add_argument("--method", default="occlusion", choices=list(METHODS), help="attribution method")
    p.add_argument("--targets", default="predicted", type=_targets, help="predicted, label, both, or k (top-k)")
    p.add_argument("--mask-size", type=_size, help="occlusion mask: auto, N or H,W")
    p.add_argument("--stride", type=_size, help="occlusion stride: auto, N or H,W")
    p.add_argument("--annotations", help="COCO JSON with boxes (pointing game, evidence on the object)")
    p.add_argument("--deletion-insertion", action="store_true", help="also score deletion/insertion AUCs")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--num-workers", type=int, help="local: images at once; ray: workers")
    p.add_argument("--batch-size", type=int, help="inputs per forward pass")
    p.add_argument("--figure", help="summary figure (default: OUT/summary.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _load_model(spec: str) -> Any:
    from ..models import from_torchvision, load_default_model

    if spec == "default":
        return load_default_model()
    if spec.startswith("torchvision:"):
        parts = spec.split(":")
        weights = parts[2] if len(parts) > 2 else "DEFAULT"
        return from_torchvision(parts[1], weights=None if weights.lower() == "none" else weights)
    raise ValueError(f"--model {spec}: use 'default' or torchvision:NAME[:WEIGHTS]")


def _fail(message: str) -> None:
    print(f"occlusion-widget: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(args: argparse.Namespace) -> None:
    """Run the audit of ``args`` (from :func:`add_parser`), print the summary and write the figure.

    ``args.model_object`` (not a command-line option) may hold a model instead of ``--model``.
    """
    from . import audit
    from .store import AuditLocked

    if not Path(args.data).is_dir():
        _fail(f"{args.data}: not a folder of images")
    params = {k: v for k, v in (("mask_size", args.mask_size), ("stride", args.stride)) if v is not None}
    if params and args.method != "occlusion":
        _fail(f"--mask-size/--stride: only for --method occlusion, not {args.method}")
    try:
        model = getattr(args, "model_object", None) or _load_model(args.model)
        result = audit(model, args.data, out=args.out, method=args.method, targets=args.targets,
                       annotations=args.annotations, backend=args.backend, address=args.address,
                       num_workers=args.num_workers, batch_size=args.batch_size, progress=not args.no_progress,
                       deletion_insertion=args.deletion_insertion, **params)
    except (ValueError, TypeError, AuditLocked, OSError, ImportError) as exc:
        _fail(str(exc))
    figure = Path(args.figure) if args.figure else result.path / "summary.png"
    print(summary(result))
    save_figure(result, figure)
    print(f"figure: {figure}")


def summary(result: Any) -> str:
    """Counts, time per step and the slowest images, and where the results are."""
    t = result.table
    images = t.drop_duplicates("image_id")
    head = (f"audit: {len(images)} images, {len(t)} rows ({result.params['method']}, targets="
            f"{result.params['targets']}, model {result.params['model']['name']})")
    lines = [head]
    if images["correct"].notna().any():
        known = images["correct"].dropna()
        lines.append(f"  accuracy: {int(known.sum())}/{len(known)} correct, {int((~known.astype(bool)).sum())} "
                     "misclassified (Audit.misclassified())")
    steps = {s: images[f"time_{s}_s"].sum() for s in ("load", "explain", "metrics")}
    lines.append("  time per step: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
    slow = images.assign(total=images[[f"time_{s}_s" for s in steps]].sum(axis=1)).nlargest(3, "total")
    lines.append("  slowest images: " + ", ".join(f"{r.image_id} ({r.total:.2f} s)" for r in slow.itertuples()))
    if t["pointing_hit"].notna().any():
        lines.append(f"  pointing game: {t['pointing_hit'].mean():.1%} hits")
    lines.append(f"  results: {result.path} (table.parquet, arrays.zarr, audit.json); ow.Audit.open(path)")
    return "\n".join(lines)


def save_figure(result: Any, path: Path, classes: int = 6, wrong: int = 4) -> None:
    """Per-class mean maps (most frequent classes) and the most confident misclassified images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    means = list(result.class_means().items())[:classes]
    t = result.table
    worst = result.misclassified().head(wrong) if t["correct"].notna().any() else t.iloc[:0]
    cols = max(len(means), len(worst), 1)
    rows = 1 + (len(worst) > 0)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, m) in zip(axes[0], means, strict=False):  # more columns than means when worst is wider
        v = float(np.abs(m).max()) or 1.0
        ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v)
        ax.set_title(f"{name[:18]} (mean)", fontsize=8)
    if len(worst):
        for ax, (i, row) in zip(axes[1], worst.iterrows(), strict=False):
            pos = t.index.get_loc(i)
            m = result.map(pos)
            v = float(np.abs(m).max()) or 1.0
            ax.imshow(result.image(pos))
            ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, alpha=0.5)
            ax.set_title(f"{str(row['true_name'])[:12]} -> {str(row['pred_name'])[:12]}\n{row['confidence']:.0%}",
                         fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

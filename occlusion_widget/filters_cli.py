"""``occlusion-widget filters``: what each filter of a layer responds to, as a grid figure.

Wired into :mod:`occlusion_widget.cli` by ``add_parser(sub)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

FILTERS_HELP = """\
Make one image per filter (channel) of a layer by gradient ascent on the filter's mean
activation, and write them as a grid figure with the activation each image reached in its title.
With IMAGE, the ascent starts from that photograph (through the model's preprocessing);
otherwise from mid-grey with low noise. Images are shown contrast-stretched per panel.

examples:
  occlusion-widget filters --layer 1._conv_stem --num-filters 16
  occlusion-widget filters photo.jpg --layer 1._blocks.3._project_conv --filters 0,5,9 -o f.png
  occlusion-widget filters --layer 1._blocks.5 --iterations 128 --step 0.01

Output paths are checked before computing; user errors print one line and exit with status 2.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``filters`` sub-command to ``subparsers`` (from ``parser.add_subparsers``)."""
    f = subparsers.add_parser("filters", help="show what each filter of a layer responds to (gradient ascent)",
                              description=FILTERS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("image", nargs="?", help="start image (default: mid-grey with low noise)")
    f.add_argument("--layer", required=True, help="a module name, e.g. 1._conv_stem for the default model")
    f.add_argument("--model", default="default", help="'default' (EfficientNet-Lite0) or torchvision:NAME[:WEIGHTS]")
    group = f.add_mutually_exclusive_group()
    group.add_argument("--num-filters", type=int, default=16, help="the first N filters (default 16)")
    group.add_argument("--filters", help="these filter indices, comma-separated")
    f.add_argument("--iterations", type=int, default=64, help="gradient ascent steps (default 64)")
    f.add_argument("--step", type=float, default=0.02, help="step size in pixel units (default 0.02)")
    f.add_argument("--seed", type=int, default=0, help="seed of the start noise and the jitter")
    f.add_argument("--batch-size", type=int, default=16, help="filters optimised together")
    f.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    f.add_argument("-o", "--out", default="filters.png", help="figure to write: .png (default: filters.png), .pdf, ...")
    f.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    return f


def _filter_list(args: argparse.Namespace) -> int | list[int]:
    from .cli import CliError

    if getattr(args, "filters", None) is None:
        return args.num_filters
    try:
        return [int(p) for p in args.filters.split(",")]
    except ValueError:
        raise CliError(f"--filters: expected indices like 0,5,9, got {args.filters!r}") from None


def run(args: argparse.Namespace) -> Path:
    """Run ``occlusion-widget filters``; raises ``cli.CliError`` (one line, exit 2) on user errors."""
    from matplotlib.backend_bases import FigureCanvasBase

    from .cli import CliError, check_output, load_model
    from .methods.filters import filter_visualization

    out = check_output(args.out, "-o", FigureCanvasBase.get_supported_filetypes())
    if args.image is not None and not Path(args.image).expanduser().is_file():
        raise CliError(f"IMAGE {args.image}: no such file")
    filters = _filter_list(args)
    for value, option in ((args.num_filters, "--num-filters"), (args.iterations, "--iterations"),
                          (args.batch_size, "--batch-size")):
        if value is not None and value < 1:
            raise CliError(f"{option} {value}: use a positive integer")
    if not args.step > 0 or not math.isfinite(args.step):
        raise CliError(f"--step {args.step}: use a number > 0")
    model = load_model(args.model)
    try:
        vis = filter_visualization(model, args.layer, filters, image=args.image, iterations=args.iterations,
                                   step=args.step, batch_size=args.batch_size, seed=args.seed, device=args.device)
    except (ValueError, TypeError, OSError) as exc:  # unknown layer, filters out of range, unreadable image
        raise CliError(f"{exc}".replace("layer=", "--layer ").splitlines()[0]) from None
    save_figure(vis, out)
    if not args.quiet:
        print(f"wrote {out}: {len(vis.filters)} filters of {args.layer}, {args.iterations} iterations")
    return out


def _stretch(image: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (H, W, 3) scaled from its 1st to 99th percentile to [0, 1] (a flat image: grey)."""
    lo, hi = np.percentile(image, [1, 99])
    scaled = (image - lo) / (hi - lo) if hi > lo else np.full_like(image, 0.5)
    return np.clip(scaled, 0, 1).transpose(1, 2, 0)


def save_figure(vis, path: Path, columns: int | None = None) -> None:
    """A grid of the ascent images, each titled with its filter and the mean activation reached."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    count = len(vis.filters)
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (channel, image, act) in enumerate(zip(vis.filters, vis.images, vis.activation, strict=True)):
        ax = axes.flat[i]
        ax.imshow(_stretch(image), interpolation="nearest")
        ax.set_title(f"#{int(channel)}  act {act:.3g}", fontsize=8)
    fig.suptitle(f"{vis.layer}: images that maximise each filter", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""The ``occlusion-widget`` command: headless maps and a notebook demo."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MAP_HELP = """\
Compute occlusion sensitivity maps of an image and write them as a PNG figure
(one panel per class, the map over the image, red = the region supports the
class, blue = it works against it). With no IMAGE, the bundled sample
photograph is used; with no --model, the embedded EfficientNet-Lite0.

examples:
  occlusion-widget map
      top-3 classes of the sample image -> occlusion.png
  occlusion-widget map cat.jpg --top-k 5 -o cat_maps.png
  occlusion-widget map cat.jpg --targets 281,282 --mask-size 30 --stride 10
  occlusion-widget map cat.jpg --stride 1 --npz dense.npz      (every pixel; slow on CPU)
  occlusion-widget map cat.jpg --model torchvision:resnet50    (weights download once)
  occlusion-widget map cat.jpg --model torchvision:resnet18:none --mask-value blur
  occlusion-widget map cat.jpg --html report.html              (interactive, standalone)

--npz writes the arrays: grid (K, gy, gx), maps (K, H, W), pixel_mean (K, H, W),
targets, labels, base_scores, boxes (gy, gx, 4) as [y0, x0, y1, x1), to exactly the name given.
Output paths are checked before computing; user errors print one line and exit with status 2.
"""

DEMO_HELP = """\
Copy the quickstart notebook into a folder (a new temporary one by default)
and open it in JupyterLab, where OcclusionWidget() explores the sample image live.

examples:
  occlusion-widget demo
  occlusion-widget demo --dir ~/occlusion-demo --no-browser
"""


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _pair(text: str, name: str) -> int | tuple[int, int] | str:
    if text == "auto":
        return text
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise CliError(f"--{name}: expected 'auto', N or H,W with integers, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise CliError(f"--{name}: expected 'auto', N or H,W, got {text!r}")


def _mask_value(text: str) -> float | list[float] | str:
    if text in ("auto", "blur"):
        return text
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        raise CliError(f"--mask-value: expected 'auto', 'blur', a number or R,G,B, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _targets(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise CliError(f"--targets: expected class indices like 281,282, got {text!r}") from None


def load_model(spec: str):
    """``default`` or ``torchvision:NAME[:WEIGHTS]`` (WEIGHTS ``none`` = random weights)."""
    from . import from_torchvision, load_default_model

    if spec == "default":
        return load_default_model()
    kind, _, rest = spec.partition(":")
    if kind != "torchvision" or not rest:
        raise CliError(f"--model: unknown model {spec!r}; use 'default' or 'torchvision:NAME[:WEIGHTS]'")
    name, _, weights = rest.partition(":")
    try:
        return from_torchvision(name, weights=None if weights.lower() == "none" else (weights or "DEFAULT"))
    except (ValueError, OSError) as exc:  # unknown name or weights; offline and not cached
        raise CliError(f"--model {spec}: {exc}") from None


def _figure_formats() -> dict[str, str]:
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def check_output(path: str, option: str, formats: dict[str, str] | None = None) -> Path:
    """Refuse an output path before any computing: its folder must exist and be writable, it must not be
    a folder, and with ``formats`` its extension must be one of them."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise CliError(f"{option} {path}: is a folder; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise CliError(f"{option} {path}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise CliError(f"{option} {path}: not writable (permission denied)")
    if formats is not None:
        ext = target.suffix.lower().lstrip(".")
        if ext not in formats:
            problem = "has no file extension" if not ext else f"{ext!r} is not a figure format"
            raise CliError(f"{option} {path}: {problem}; use one of .{', .'.join(sorted(formats))}")
    return target


def _html_available() -> bool:
    from .widget import OcclusionWidget

    return hasattr(OcclusionWidget, "save_html") and importlib.util.find_spec("occlusion_widget.widget.report") is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="occlusion-widget",
        description="Occlusion sensitivity maps for PyTorch image classifiers.",
        epilog="Run 'occlusion-widget map --help' or 'occlusion-widget demo --help' for details.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{map,demo}")
    fmt = argparse.RawDescriptionHelpFormatter
    m = sub.add_parser("map", help="write occlusion maps of an image to a PNG", description=MAP_HELP, formatter_class=fmt)
    m.add_argument("image", nargs="?", help="image file (default: the bundled sample photograph)")
    m.add_argument("--model", default="default", help="'default' (EfficientNet-Lite0) or torchvision:NAME[:WEIGHTS]")
    m.add_argument("--mask-size", default="auto", help="'auto' (20%% of the size), N, or H,W in pixels")
    m.add_argument("--stride", default="auto", help="'auto' (10%% of the size), N, or H,W in pixels")
    m.add_argument("--mask-value", default="auto", help="'auto' (channel means), 'blur', a number, or R,G,B in [0, 1]")
    m.add_argument("--no-clipping", action="store_true", help="keep every mask full size (no smaller masks at the edges)")
    m.add_argument("--upsampling", default="bicubic", choices=("bicubic", "nearest", "none"))
    m.add_argument("--output", default="probability", choices=("probability", "logit"), help="score to explain")
    group = m.add_mutually_exclusive_group()
    group.add_argument("--top-k", type=int, default=None, help="explain the K best classes (default 3)")
    group.add_argument("--targets", help="explain these class indices, comma-separated")
    m.add_argument("--batch-size", type=int, default=None, help="occluded images per forward pass")
    m.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    m.add_argument("-o", "--out", default="occlusion.png",
                   help="figure to write: .png (default: occlusion.png), .pdf, .svg, .jpg, ...")
    m.add_argument("--npz", help="also save the arrays to this file (exactly this name)")
    m.add_argument("--html", help="also write a standalone interactive HTML report (no kernel needed to view it)")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    d = sub.add_parser("demo", help="open the quickstart notebook in JupyterLab", description=DEMO_HELP, formatter_class=fmt)
    d.add_argument("--dir", help="folder to copy the notebook into (default: a new temporary folder)")
    d.add_argument("--no-browser", action="store_true", help="start the server without opening a browser")
    return parser


def check_map_args(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be checked before loading a model: output paths, the image file, numbers."""
    outputs = {"-o": check_output(args.out, "-o", _figure_formats())}
    if args.npz:
        outputs["--npz"] = check_output(args.npz, "--npz")
    if args.html:
        outputs["--html"] = check_output(args.html, "--html")
        if not _html_available():
            raise CliError("--html: the HTML report is not available in this version of occlusion-widget yet")
    resolved = {option: path.resolve() for option, path in outputs.items()}
    for i, (a, pa) in enumerate(resolved.items()):
        for b, pb in list(resolved.items())[i + 1:]:
            if pa == pb:
                raise CliError(f"{a} and {b} name the same file {str(pa)!r}; give each its own")
    if args.image and not Path(args.image).expanduser().is_file():
        raise CliError(f"image: no file at {args.image!r}")
    if args.top_k is not None and args.top_k < 1:
        raise CliError(f"--top-k {args.top_k}: use an integer from 1 to the number of classes")
    if args.batch_size is not None and args.batch_size < 1:
        raise CliError(f"--batch-size {args.batch_size}: use a positive integer")
    targets = _targets(args.targets)
    return {
        "targets": targets, "top_k": None if targets is not None else (3 if args.top_k is None else args.top_k),
        "mask_size": _pair(args.mask_size, "mask-size"), "stride": _pair(args.stride, "stride"),
        "mask_value": _mask_value(args.mask_value), "mask_clipping": not args.no_clipping,
        "upsampling": args.upsampling, "output": args.output, "batch_size": args.batch_size, "device": args.device,
    }


def _sweep(model, image, params: dict[str, Any], quiet: bool):
    from tqdm import tqdm

    from . import occlusion_sensitivity

    bar = tqdm(total=0, unit="pos", desc="occlusion", disable=quiet or None, leave=False)

    def progress(done: int, total: int, _partial) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        return occlusion_sensitivity(model, image, params.pop("targets"), progress=progress, **params)
    finally:
        bar.close()


def _sweep_in_widget(model, image, params: dict[str, Any], html: Path):
    """Compute through the widget, which then writes the interactive report of the same result."""
    from .widget import OcclusionWidget

    # Traits take lists for pairs, and leave out what is unset (the widget's own defaults are the engine's).
    params = {key: list(value) if isinstance(value, tuple) else value for key, value in params.items()
              if value is not None or key == "targets"}
    widget = OcclusionWidget(model, image, **params)
    try:
        widget.wait()
        if widget.status != "done" or widget.result is None:
            raise ValueError(widget.error or f"the computation ended with status {widget.status!r}")
        widget.save_html(html)
        return widget.result
    finally:
        widget.close()


def run_map(args: argparse.Namespace) -> None:
    import numpy as np

    from . import sample_image
    from .render import save_figure

    params = check_map_args(args)
    model = load_model(args.model)
    n_classes = len(model.labels) if model.labels else None
    if params["top_k"] is not None and n_classes is not None and params["top_k"] > n_classes:
        raise CliError(f"--top-k {params['top_k']}: the model has {n_classes} classes; use 1..{n_classes}")
    # A path is decoded by the model's preprocessing (large JPEGs at a reduced scale).
    image = str(Path(args.image).expanduser()) if args.image else sample_image()
    try:
        if args.html:
            result = _sweep_in_widget(model, image, params, Path(args.html).expanduser())
        else:
            result = _sweep(model, image, params, args.quiet)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    written = [args.out]
    try:
        save_figure(result, Path(args.out).expanduser())
        if args.npz:
            # A file object: np.savez would append ".npz" to a name without it.
            with open(Path(args.npz).expanduser(), "wb") as fh:
                np.savez_compressed(
                    fh, grid=result.grid, maps=result.maps, pixel_mean=result.pixel_mean(), targets=result.targets,
                    labels=np.array(result.labels or []), base_scores=result.base_scores, boxes=result.boxes,
                )
            written.append(args.npz)
    except OSError as exc:  # a full disk, or the folder removed while computing
        raise CliError(f"could not write the output: {exc}") from None
    if args.html:
        written.append(args.html)
    if not args.quiet:
        names = ", ".join(f"{lab} ({p:.2f})" for lab, p in zip(result.labels or result.targets, result.base_scores))
        positions = result.computed.size
        print(f"{names}\n{positions} mask positions, {result.n_forward} forward batches, "
              f"{result.elapsed_s:.1f} s on {result.params.device} -> {', '.join(written)}")


def quickstart_notebook() -> Path:
    """The quickstart notebook: inside the installed package, or in the source tree (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "notebooks" / "01_quickstart.ipynb", here.parent / "notebooks" / "01_quickstart.ipynb"):
        if candidate.is_file():
            return candidate
    raise CliError("the quickstart notebook is not installed with this copy of occlusion-widget")


def run_demo(args: argparse.Namespace) -> None:
    # JupyterLab of this Python: the one where occlusion-widget is installed (whatever `jupyter` is on PATH).
    if importlib.util.find_spec("jupyterlab") is None:
        raise CliError(f"JupyterLab is not installed in this Python ({sys.executable}); pip install jupyterlab")
    try:
        folder = Path(args.dir).expanduser() if args.dir else Path(tempfile.mkdtemp(prefix="occlusion-demo-"))
        folder.mkdir(parents=True, exist_ok=True)
        notebook = folder / "quickstart.ipynb"
        shutil.copyfile(quickstart_notebook(), notebook)
    except OSError as exc:
        raise CliError(f"--dir: could not copy the notebook: {exc}") from None
    command = [sys.executable, "-m", "jupyter", "lab", str(notebook), f"--ServerApp.root_dir={folder}"]
    if args.no_browser:
        command.append("--no-browser")
    print(f"Opening {notebook} in JupyterLab (Ctrl+C to stop)", flush=True)
    raise SystemExit(subprocess.call(command))


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run_map(args) if args.command == "map" else run_demo(args)
    except CliError as exc:
        print(f"occlusion-widget: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("occlusion-widget: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

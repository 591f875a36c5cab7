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

from .audit.cli import add_parser as add_audit_parser
from .cli_methods import (
    CliError,
    add_method_options,
    method_params,
    methods_help,
    option,
    parse_method,
)
from .filters_cli import add_parser as add_filters_parser

MAP_HELP = """\
Compute attribution maps of an image (occlusion sensitivity by default, or
--method grad-cam, saliency, smoothgrad, integrated-gradients) and write them
as a PNG figure (one panel per class, the map over the image; for occlusion
red = the region supports the class, blue = it works against it). With no
IMAGE, the bundled sample photograph is used; with no --model, the embedded
EfficientNet-Lite0.

examples:
  occlusion-widget map
      top-3 classes of the sample image -> occlusion.png
  occlusion-widget map cat.jpg --top-k 5 -o cat_maps.png
  occlusion-widget map cat.jpg --targets 281,282 --mask-size 30 --stride 10
  occlusion-widget map cat.jpg --stride 1 --npz dense.npz      (every pixel; slow on CPU)
  occlusion-widget map cat.jpg --model torchvision:resnet50    (weights download once)
  occlusion-widget map cat.jpg --model torchvision:resnet18:none --mask-value blur
  occlusion-widget map cat.jpg --html report.html              (interactive, standalone)
  occlusion-widget map --method integrated-gradients --steps 32 --percentile 99
  occlusion-widget map --method smoothgrad --n-samples 50 --noise-level 0.1

{methods}
--npz writes the arrays: grid (K, gy, gx) (occlusion: per mask position), maps (K, H, W),
targets, labels, base_scores; occlusion adds pixel_mean (K, H, W) and boxes (gy, gx, 4) as
[y0, x0, y1, x1), Integrated Gradients attributions (K, C, H, W); to exactly the name given.
Output paths are checked before computing; user errors print one line and exit with status 2.
"""

DEMO_HELP = """\
Copy the quickstart notebook into a folder (a new temporary one by default)
and open it in JupyterLab, where OcclusionWidget() explores the sample image live.

examples:
  occlusion-widget demo
  occlusion-widget demo --dir ~/occlusion-demo --no-browser
"""


def _targets(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise CliError(f"--targets: expected class indices like 281,282, got {text!r}") from None


def load_model(spec: str):
    """``default``, ``torchvision:NAME[:WEIGHTS]`` (WEIGHTS ``none`` = random weights) or
    ``timm:NAME[:pretrained|none]``."""
    from . import from_torchvision, load_default_model

    if spec == "default":
        return load_default_model()
    kind, _, rest = spec.partition(":")
    if kind not in ("torchvision", "timm") or not rest:
        raise CliError(f"--model: unknown model {spec!r}; use 'default', 'torchvision:NAME[:WEIGHTS]' "
                       "or 'timm:NAME[:pretrained|none]'")
    name, _, weights = rest.partition(":")
    if kind == "timm":
        from .timm_adapter import from_timm

        if weights.lower() not in ("", "pretrained", "none"):
            raise CliError(f"--model {spec}: timm models take ':pretrained' (default) or ':none' (random weights)")
        try:
            return from_timm(name, pretrained=weights.lower() != "none")
        except (ValueError, ImportError, OSError, RuntimeError) as exc:
            raise CliError(f"--model {spec}: {exc}") from None
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
        description="Occlusion sensitivity (and gradient) maps for PyTorch image classifiers.",
        epilog="Run 'occlusion-widget map --help' or 'occlusion-widget demo --help' for details.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{map,demo,filters,audit}")
    fmt = argparse.RawDescriptionHelpFormatter
    m = sub.add_parser("map", help="write attribution maps of an image to a PNG", formatter_class=fmt,
                       description=MAP_HELP.format(methods=methods_help()))
    m.add_argument("image", nargs="?", help="image file (default: the bundled sample photograph)")
    m.add_argument("--model", default="default", help="'default' (EfficientNet-Lite0) or torchvision:NAME[:WEIGHTS]")
    m.add_argument("--method", type=parse_method, default="occlusion",
                   help="occlusion (default), grad-cam, saliency, smoothgrad or integrated-gradients (- or _)")
    group = m.add_mutually_exclusive_group()
    group.add_argument("--top-k", type=int, default=None, help="explain the K best classes (default 3)")
    group.add_argument("--targets", help="explain these class indices, comma-separated")
    m.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    m.add_argument("--percentile", type=float, default=None,
                   help="colour scale limit: this percentile of |map| (e.g. 99) instead of the largest value")
    m.add_argument("-o", "--out", default="occlusion.png",
                   help="figure to write: .png (default: occlusion.png), .pdf, .svg, .jpg, ...")
    m.add_argument("--npz", help="also save the arrays to this file (exactly this name)")
    m.add_argument("--html", help="also write a standalone interactive HTML report (no kernel needed to view it)")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    add_method_options(m)
    d = sub.add_parser("demo", help="open the quickstart notebook in JupyterLab", description=DEMO_HELP, formatter_class=fmt)
    d.add_argument("--dir", help="folder to copy the notebook into (default: a new temporary folder)")
    d.add_argument("--no-browser", action="store_true", help="start the server without opening a browser")
    add_filters_parser(sub)
    add_audit_parser(sub)
    return parser


def check_map_args(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be checked before loading a model: output paths, the image file, numbers,
    the options of the chosen method. Returns the method's keyword arguments (targets/top_k, device included)."""
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
    if args.percentile is not None and not 0 < args.percentile <= 100:
        raise CliError(f"--percentile {args.percentile:g}: use a number in (0, 100], e.g. 99")
    targets = _targets(args.targets)
    return {"targets": targets, "top_k": None if targets is not None else (3 if args.top_k is None else args.top_k),
            "device": args.device, **method_params(args)}


def _compute(model, image, method: str, params: dict[str, Any], quiet: bool):
    """``registry.run(method, ...)`` with a progress bar."""
    from tqdm import tqdm

    from .methods.registry import get_method, run

    spec = get_method(method)
    unit = "pos" if spec.kind == "perturbation" else "step"
    bar = tqdm(total=0, unit=unit, desc=spec.title, disable=quiet or None, leave=False)

    def progress(done: int, total: int, _partial) -> None:
        bar.total = total
        bar.update(done - bar.n)

    params = dict(params)
    try:
        return run(method, model, image, params.pop("targets"), progress=progress, **params)
    finally:
        bar.close()


def _compute_in_widget(model, image, method: str, params: dict[str, Any], percentile: float | None, html: Path):
    """Compute through the widget, which then writes the interactive report of the same result."""
    from .methods.registry import get_method
    from .widget import OcclusionWidget

    spec = get_method(method)
    traits: dict[str, Any] = {"method": method, "percentile": percentile, "device": params["device"],
                              "targets": params["targets"]}
    if params["top_k"] is not None:
        traits["top_k"] = params["top_k"]
    for name, value in params.items():
        if name in ("targets", "top_k", "device"):
            continue
        trait = spec.param(name).trait
        if trait is None:
            raise CliError(f"{option(name)} cannot be used with --html: the widget has no control for it")
        traits[trait] = list(value) if isinstance(value, tuple) else value  # traits take lists for pairs
    widget = OcclusionWidget(model, image, **traits)
    try:
        widget.wait()
        if widget.status != "done" or widget.result is None:
            raise ValueError(widget.error or f"the computation ended with status {widget.status!r}")
        widget.save_html(html)
        return widget.result
    finally:
        widget.close()


def _save_arrays(path: Path, result, perturbation: bool) -> None:
    import numpy as np

    arrays = {"grid": result.grid, "maps": result.maps, "targets": result.targets,
              "labels": np.array(result.labels or []), "base_scores": result.base_scores}
    if perturbation:
        arrays.update(pixel_mean=result.pixel_mean(), boxes=result.boxes)
    if "attributions" in result.extra:  # Integrated Gradients: per channel, before the map's reduction
        arrays["attributions"] = np.asarray(result.extra["attributions"])
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a name without it
        np.savez_compressed(fh, **arrays)


def run_map(args: argparse.Namespace) -> None:
    from . import sample_image
    from .methods.registry import get_method
    from .render import save_figure

    params = check_map_args(args)
    spec = get_method(args.method)
    model = load_model(args.model)
    n_classes = len(model.labels) if model.labels else None
    if params["top_k"] is not None and n_classes is not None and params["top_k"] > n_classes:
        raise CliError(f"--top-k {params['top_k']}: the model has {n_classes} classes; use 1..{n_classes}")
    # A path is decoded by the model's preprocessing (large JPEGs at a reduced scale).
    image = str(Path(args.image).expanduser()) if args.image else sample_image()
    try:
        if args.html:
            result = _compute_in_widget(model, image, args.method, params, args.percentile, Path(args.html).expanduser())
        else:
            result = _compute(model, image, args.method, params, args.quiet)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    written = [args.out]
    try:
        save_figure(result, Path(args.out).expanduser(), percentile=args.percentile)
        if args.npz:
            _save_arrays(Path(args.npz).expanduser(), result, spec.kind == "perturbation")
            written.append(args.npz)
    except OSError as exc:  # a full disk, or the folder removed while computing
        raise CliError(f"could not write the output: {exc}") from None
    if args.html:
        written.append(args.html)
    if not args.quiet:
        names = ", ".join(f"{lab} ({p:.2f})" for lab, p in zip(result.labels or result.targets, result.base_scores, strict=True))
        work = f"{result.computed.size} mask positions, " if spec.kind == "perturbation" else f"{spec.title}: "
        print(f"{names}\n{work}{result.n_forward} forward batches, "
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


def _run_filters(args: argparse.Namespace) -> None:
    from .filters_cli import run

    run(args)


def _run_audit(args: argparse.Namespace) -> None:
    from .audit.cli import run

    run(args)


COMMANDS = {"map": run_map, "demo": run_demo, "filters": _run_filters, "audit": _run_audit}


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except CliError as exc:
        print(f"occlusion-widget: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("occlusion-widget: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

"""The occlusion-widget command line."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from occlusion_widget import cli
from occlusion_widget.cli import main


def test_map_writes_png_and_npz(tmp_path, capsys):
    out, npz = tmp_path / "maps.png", tmp_path / "maps.npz"
    main(["map", "--top-k", "2", "--mask-size", "56", "--stride", "56", "-o", str(out), "--npz", str(npz)])
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 400
    arrays = np.load(npz)
    assert arrays["grid"].shape == (2, 4, 4) and arrays["maps"].shape == (2, 224, 224)
    assert arrays["labels"][0] == "military uniform"
    assert arrays["boxes"].shape == (4, 4, 4)
    summary = capsys.readouterr().out
    assert "military uniform" in summary and "16 mask positions" in summary


def test_map_with_a_user_image_and_torchvision_model(tmp_path):
    src = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)).save(src)
    npz = tmp_path / "out.npz"
    main(["map", str(src), "--model", "torchvision:resnet18:none", "--targets", "3,7", "--mask-size", "112,56",
          "--stride", "112", "--mask-value", "blur", "--no-clipping", "-o", str(tmp_path / "o.png"), "--npz", str(npz), "-q"])
    arrays = np.load(npz)
    assert arrays["targets"].tolist() == [3, 7]
    assert arrays["grid"].shape == (2, 2, 2)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["map", "/no/such/image.jpg"], "no file"),
        (["map", "--model", "keras:vgg"], "unknown model"),
        (["map", "--model", "torchvision:notanet"], "unknown torchvision model"),
        (["map", "--stride", "0"], "stride"),
        (["map", "--mask-size", "big"], "--mask-size"),
        (["map", "--targets", "1000"], "targets"),
    ],
)
def test_map_errors_are_one_clear_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(argv + ["-o", str(tmp_path / "x.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("occlusion-widget: error:") and message in err
    assert not (tmp_path / "x.png").exists()


def test_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(SystemExit):
        main(["map", str(bad)])
    assert "not a readable image" in capsys.readouterr().err


@pytest.mark.parametrize("module,sub", [("occlusion_widget.cli", "map"), ("occlusion_widget", "demo")])
def test_entry_point_help_has_examples(module, sub):
    # This Python, not a console script looked up on PATH (the venv's bin may not be on it).
    text = subprocess.run([sys.executable, "-m", module, sub, "--help"], capture_output=True, text=True,
                          check=True).stdout
    assert "examples:" in text and f"occlusion-widget {sub}" in text


def test_demo_copies_the_quickstart_and_starts_jupyterlab_of_this_python(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls.append(command) or 0)
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: object() if name == "jupyterlab" else None)
    with pytest.raises(SystemExit) as info:
        main(["demo", "--dir", str(tmp_path / "demo"), "--no-browser"])
    assert info.value.code == 0
    notebook = tmp_path / "demo" / "quickstart.ipynb"
    assert notebook.is_file() and "OcclusionWidget()" in notebook.read_text()
    (command,) = calls
    assert command[:5] == [sys.executable, "-m", "jupyter", "lab", str(notebook)] and "--no-browser" in command


def test_demo_without_jupyterlab_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(cli.subprocess, "call", lambda command: pytest.fail("must not start anything"))
    with pytest.raises(SystemExit) as info:
        main(["demo", "--dir", str(tmp_path / "demo")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "JupyterLab is not installed" in err and "pip install jupyterlab" in err


# --- checks before computing ----------------------------------------------------------------------------


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if the command gets as far as loading a model."""
    monkeypatch.setattr(cli, "load_model", lambda spec: pytest.fail("checks must come before loading the model"))


def run_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("occlusion-widget: error:") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "out,message",
    [
        ("missing/dir/x.png", "does not exist"),
        ("x.xyz", "'xyz' is not a figure format; use one of"),
        ("maps", "has no file extension"),
        (".", "is a folder"),
    ],
)
def test_figure_path_is_checked_before_computing(out, message, tmp_path, monkeypatch, capsys, no_compute):
    monkeypatch.chdir(tmp_path)
    err = run_error(["map", "-o", out], capsys)
    assert message in err and f"-o {out}:" in err
    if "format" in message:
        assert ".png" in err and ".pdf" in err and ".svg" in err


@pytest.mark.parametrize("option", ["--npz", "--html"])
def test_npz_and_html_folders_are_checked_before_computing(option, tmp_path, capsys, no_compute):
    err = run_error(["map", "-o", str(tmp_path / "x.png"), option, str(tmp_path / "nope" / "maps")], capsys)
    assert f"{option} " in err and "does not exist" in err


def test_two_outputs_on_one_file_are_refused(tmp_path, capsys, no_compute):
    err = run_error(["map", "-o", str(tmp_path / "x.png"), "--npz", str(tmp_path / "x.png")], capsys)
    assert "-o and --npz name the same file" in err


def test_unwritable_folder_is_refused(tmp_path, capsys, monkeypatch, no_compute):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # chmod does not stop root, so the permission check is what is simulated for this one folder.
    monkeypatch.setattr(cli.os, "access", lambda path, mode: real_access(path, mode) and os.fspath(path) != str(locked))
    err = run_error(["map", "-o", str(locked / "x.png")], capsys)
    assert "-o " in err and "not writable" in err


@pytest.mark.parametrize("argv,message", [(["--top-k", "0"], "--top-k 0: use an integer from 1"),
                                          (["--top-k", "-2"], "--top-k -2"),
                                          (["--batch-size", "0"], "--batch-size 0: use a positive integer")])
def test_counts_below_one_are_refused(argv, message, tmp_path, capsys, no_compute):
    assert message in run_error(["map", "-o", str(tmp_path / "x.png"), *argv], capsys)


def test_top_k_above_the_number_of_classes_is_refused(tmp_path, capsys, monkeypatch):
    from conftest import tiny_model

    monkeypatch.setattr(cli, "load_model", lambda spec: tiny_model())
    assert "--top-k 11: the model has 10 classes; use 1..10" in run_error(
        ["map", "--top-k", "11", "-o", str(tmp_path / "x.png")], capsys)


def test_npz_is_written_to_exactly_the_given_name(tmp_path, monkeypatch):
    from conftest import tiny_model

    monkeypatch.setattr(cli, "load_model", lambda spec: tiny_model())
    monkeypatch.chdir(tmp_path)
    main(["map", "--top-k", "2", "-o", "fig.pdf", "--npz", "maps", "-q"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "maps"]
    assert np.load("maps")["grid"].shape[0] == 2
    assert (tmp_path / "fig.pdf").read_bytes().startswith(b"%PDF")


def test_unknown_weights_name_is_one_line(tmp_path, capsys):
    err = run_error(["map", "--model", "torchvision:resnet18:NOPE", "-o", str(tmp_path / "x.png")], capsys)
    assert "no weights named 'NOPE'" in err and "IMAGENET1K_V1" in err


def test_offline_weights_download_is_one_line(tmp_path, capsys, monkeypatch):
    from urllib.error import URLError

    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))  # nothing cached

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    err = run_error(["map", "--model", "torchvision:resnet18", "-o", str(tmp_path / "x.png")], capsys)
    assert "could not download the resnet18 weights" in err and "name resolution" in err
    assert not (tmp_path / "x.png").exists()


def test_a_decompression_bomb_is_one_line(tmp_path, capsys, monkeypatch):
    from conftest import tiny_model
    from test_images import png_header

    monkeypatch.setattr(cli, "load_model", lambda spec: tiny_model())
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(30000, 30000))
    err = run_error(["map", str(bomb), "-o", str(tmp_path / "x.png")], capsys)
    assert "PIL.Image.MAX_IMAGE_PIXELS" in err


# --- what the README promises ---------------------------------------------------------------------------


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures the command saves."""
    from matplotlib.figure import Figure

    figures, original = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self) or original(self, *a, **k))
    return figures


def panel_titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_images()]


def test_map_writes_occlusion_png_with_the_top_3_classes(tmp_path, monkeypatch, capsys, saved_figures):
    monkeypatch.chdir(tmp_path)
    main(["map", "--stride", "56"])  # the README's command, at a coarse stride to stay fast
    with Image.open(tmp_path / "occlusion.png") as img:
        assert img.format == "PNG"
        assert 2.5 < img.width / img.height < 3.7  # three panels side by side
    (fig,) = saved_figures
    titles = panel_titles(fig)
    assert len(titles) == 3
    parsed = [re.fullmatch(r"(.+) \(p=(0\.\d\d|1\.00)\)", t) for t in titles]
    assert all(parsed), titles
    assert parsed[0].group(1) == "military uniform"
    probabilities = [float(m.group(2)) for m in parsed]
    assert probabilities == sorted(probabilities, reverse=True)
    summary = capsys.readouterr().out
    for m in parsed:  # the same names and probabilities on stdout
        assert f"{m.group(1)} ({m.group(2)})" in summary
    assert summary.rstrip().endswith("-> occlusion.png")


def test_labels_with_dollar_signs_are_plain_text(tmp_path, monkeypatch, capsys, saved_figures):
    from conftest import tiny_model

    model = tiny_model()
    model.labels = [f"${i}^_ bill $" for i in range(10)]  # would be broken mathtext
    monkeypatch.setattr(cli, "load_model", lambda spec: model)
    main(["map", "--targets", "3,7", "-o", str(tmp_path / "x.png")])
    assert (tmp_path / "x.png").is_file()
    assert [t.split(" (p=")[0] for t in panel_titles(saved_figures[0])] == ["$3^_ bill $", "$7^_ bill $"]
    assert "$3^_ bill $ (" in capsys.readouterr().out


@pytest.mark.skipif(not cli._html_available(), reason="the widget's HTML report (occlusion_widget/report.py) is not there yet")
def test_html_report(tmp_path, monkeypatch, capsys):
    from conftest import tiny_model

    monkeypatch.setattr(cli, "load_model", lambda spec: tiny_model())
    html, png = tmp_path / "report.html", tmp_path / "x.png"
    main(["map", "--top-k", "2", "--stride", "8", "-o", str(png), "--html", str(html)])
    text = html.read_text("utf-8")
    assert text.lstrip().lower().startswith("<!doctype html") and "thing" in text
    assert png.is_file() and str(html) in capsys.readouterr().out


def test_html_unavailable_is_one_line(tmp_path, monkeypatch, capsys, no_compute):
    monkeypatch.setattr(cli, "_html_available", lambda: False)
    err = run_error(["map", "-o", str(tmp_path / "x.png"), "--html", str(tmp_path / "r.html")], capsys)
    assert "--html: the HTML report is not available" in err


# --- every method from the registry -----------------------------------------------------------------------


def test_integrated_gradients_from_the_command_line(tmp_path, monkeypatch, capsys, saved_figures):
    from conftest import assert_close, tiny_model

    from occlusion_widget import sample_image
    from occlusion_widget.methods import integrated_gradients

    model = tiny_model()
    monkeypatch.setattr(cli, "load_model", lambda spec: model)
    out, npz = tmp_path / "ig.png", tmp_path / "ig.npz"
    main(["map", "--method", "integrated-gradients", "--steps", "8", "--baseline", "0.5", "--targets", "3,7",
          "-o", str(out), "--npz", str(npz)])
    with Image.open(out) as img:
        assert img.format == "PNG"
    assert len(panel_titles(saved_figures[0])) == 2
    arrays = np.load(npz)
    ref = integrated_gradients(model, sample_image(), [3, 7], steps=8, baseline=0.5)
    assert_close(arrays["maps"], ref.maps)
    assert_close(arrays["attributions"], ref.extra["attributions"])
    assert "boxes" not in arrays and "pixel_mean" not in arrays, "mask positions belong to occlusion only"
    assert "Integrated Gradients" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["grad_cam", "grad-cam", "Saliency", "smoothgrad"])
def test_method_names_take_dashes_or_underscores(method, tmp_path, monkeypatch, saved_figures):
    from conftest import tiny_model

    monkeypatch.setattr(cli, "load_model", lambda spec: tiny_model())
    extra = ["--n-samples", "2"] if method == "smoothgrad" else []
    main(["map", "--method", method, "--top-k", "1", "-q", "-o", str(tmp_path / "m.png"), *extra])
    assert (tmp_path / "m.png").is_file() and len(saved_figures) == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--n-samples", "4"], "--n-samples is not a parameter of occlusion; it belongs to smoothgrad"),
        (["--method", "saliency", "--mask-size", "9"], "--mask-size is not a parameter of saliency; it belongs to occlusion"),
        (["--method", "integrated-gradients", "--steps", "0"], "--steps 0: use a positive integer"),
        (["--method", "grad-cam", "--upsampling", "bicubic", "--layer", "x", "--reduce", "sum"],
         "belongs to saliency, smoothgrad"),
        (["--method", "integrated-gradients", "--baseline", "black"], "--baseline: expected a number or R,G,B"),
        (["--percentile", "0"], "--percentile 0: use a number in (0, 100]"),
    ],
)
def test_an_option_the_method_lacks_is_refused_before_computing(argv, message, capsys, no_compute, tmp_path):
    assert message in run_error(["map", *argv, "-o", str(tmp_path / "x.png")], capsys)
    assert not (tmp_path / "x.png").exists()


def test_an_unknown_method_is_refused_with_the_names(capsys):
    with pytest.raises(SystemExit) as info:
        main(["map", "--method", "lime"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown method 'lime'" in err and "integrated-gradients" in err


def test_percentile_saturates_the_colour_scale(tmp_path, monkeypatch, saved_figures):
    from conftest import tiny_model

    monkeypatch.setattr(cli, "load_model", lambda spec: tiny_model())
    common = ["map", "--targets", "3", "--mask-size", "8", "--stride", "4", "-q"]
    main([*common, "-o", str(tmp_path / "full.png"), "--npz", str(tmp_path / "m.npz")])
    main([*common, "--percentile", "99", "-o", str(tmp_path / "p99.png")])
    maps = np.load(tmp_path / "m.npz")["maps"]
    limits = [fig.axes[0].get_images()[-1].get_clim()[1] for fig in saved_figures]
    assert limits[0] == pytest.approx(float(np.abs(maps).max()), rel=1e-5)
    assert limits[1] == pytest.approx(float(np.percentile(np.abs(maps), 99)), rel=1e-5) and limits[1] < limits[0]


def test_help_lists_every_method_and_its_options(capsys):
    from occlusion_widget.methods.registry import METHODS

    with pytest.raises(SystemExit):
        main(["map", "--help"])
    out = capsys.readouterr().out
    for spec in METHODS.values():
        assert spec.name.replace("_", "-") in out
        for p in spec.params:
            assert "--" + p.name.replace("_", "-") in out


def test_every_command_is_listed_and_dispatched(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listing = capsys.readouterr().out
    for command in ("map", "demo", "filters", "audit"):
        assert command in listing
    assert set(cli.COMMANDS) == {"map", "demo", "filters", "audit"}


def test_map_with_a_timm_model_at_random_weights(tmp_path):
    pytest.importorskip("timm")
    out = tmp_path / "timm.png"
    main(["map", "--model", "timm:resnet18:none", "--stride", "112", "--top-k", "1", "-q", "-o", str(out)])
    with Image.open(out) as img:
        assert img.size[0] > 100 and img.size[1] > 100


@pytest.mark.parametrize("spec, message", [
    ("timm:no_such_net_xyz:none", "no_such_net_xyz"),
    ("timm:resnet18:imagenet", "':pretrained' (default) or ':none'"),
    ("keras:resnet", "unknown model"),
])
def test_bad_timm_and_model_specs_are_one_line(spec, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["map", "--model", spec, "-q", "-o", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err

"""The occlusion-widget command line."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

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


def test_entry_point_help_has_examples():
    exe = shutil.which("occlusion-widget")
    assert exe, "the console script is installed with the package"
    for sub in ("map", "demo"):
        text = subprocess.run([exe, sub, "--help"], capture_output=True, text=True, check=True).stdout
        assert "examples:" in text and f"occlusion-widget {sub}" in text


def test_demo_copies_the_quickstart_and_starts_jupyterlab(tmp_path, monkeypatch):
    import occlusion_widget.cli as cli

    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls.append(command) or 0)
    with pytest.raises(SystemExit) as info:
        main(["demo", "--dir", str(tmp_path / "demo"), "--no-browser"])
    assert info.value.code == 0
    notebook = tmp_path / "demo" / "quickstart.ipynb"
    assert notebook.is_file() and "OcclusionWidget()" in notebook.read_text()
    (command,) = calls
    assert command[:3] == ["jupyter", "lab", str(notebook)] and "--no-browser" in command

"""filter_visualization: gradient ascent per filter, batched, regularised, cancellable."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from occlusion_widget.methods.filters import FilterVisualization, filter_visualization
from occlusion_widget.models import ImageClassifier

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])  # responds to vertical edges


def edge_model() -> ImageClassifier:
    """conv (channel 0: vertical Sobel, channel 1: horizontal Sobel, channel 2: a random kernel) + ReLU."""
    conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[0] = SOBEL_X.expand(3, 3, 3)
        conv.weight[1] = SOBEL_X.T.expand(3, 3, 3)
        conv.weight[2] = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(0))
    return ImageClassifier(nn.Sequential(conv, nn.ReLU()).eval(), (32, 32), name="edges")


def gradient_energy(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: energy of the horizontal derivative d/dx and of the vertical one d/dy."""
    gray = images.mean(axis=1)
    dx, dy = np.diff(gray, axis=2), np.diff(gray, axis=1)
    return (dx**2).sum(axis=(1, 2)), (dy**2).sum(axis=(1, 2))


def test_ascent_image_has_the_kernels_orientation():
    vis = filter_visualization(edge_model(), "1", [0, 1], iterations=40, step=0.05, device="cpu")
    assert isinstance(vis, FilterVisualization) and vis.images.shape == (2, 3, 32, 32) and vis.complete
    ex, ey = gradient_energy(vis.images)
    assert ex[0] > 4 * ey[0]  # the vertical-edge filter grew vertical stripes: horizontal gradient energy
    assert ey[1] > 4 * ex[1]
    # and the start noise had no orientation
    sx, sy = gradient_energy(vis.start[None])
    assert 0.5 < sx[0] / sy[0] < 2
    assert vis.images.min() >= 0 and vis.images.max() <= 1


def test_activation_rises_over_iterations():
    vis = filter_visualization(edge_model(), "1", 2, iterations=30, device="cpu")
    assert vis.history.shape == (2, 30) and np.isfinite(vis.history).all()
    assert (vis.activation > 3 * vis.start_activation).all()
    assert (vis.history[:, -1] > vis.history[:, 0]).all()
    rises = (np.diff(vis.history, axis=1) > 0).mean(axis=1)  # steps up (a roll or a blur can cost a little)
    assert (rises > 0.6).all(), rises
    thirds = vis.history.reshape(2, 3, 10).mean(axis=2)
    assert (np.diff(thirds, axis=1) > 0).all(), thirds
    np.testing.assert_allclose(vis.difference, vis.images - vis.start[None], rtol=1e-6)


def test_batched_equals_one_by_one():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2), nn.ReLU()).eval()
    with torch.no_grad():  # every unit alive on a grey start, so that every filter moves
        net[0].bias.fill_(0.2)
        net[2].bias.fill_(0.2)
    model = ImageClassifier(net, (24, 24))
    kwargs = dict(iterations=12, jitter=2, blur_every=3, device="cpu", seed=3)
    together = filter_visualization(model, "3", [5, 0, 2, 3], batch_size=4, **kwargs)
    apart = filter_visualization(model, "3", [5, 0, 2, 3], batch_size=1, **kwargs)
    np.testing.assert_allclose(together.images, apart.images, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(together.activation, apart.activation, rtol=1e-5,
                               atol=1e-5 * np.abs(apart.activation).max())
    np.testing.assert_allclose(together.history, apart.history, rtol=1e-5, atol=1e-5 * np.abs(apart.history).max())
    assert together.filters.tolist() == [5, 0, 2, 3]
    assert (together.activation > together.start_activation).all()
    assert np.abs(together.images[0] - together.images[1]).max() > 0.05  # each element follows its own filter


def test_start_image_progress_and_cancel():
    model = edge_model()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    calls = []
    vis = filter_visualization(model, "1", [0], image=image, iterations=5, device="cpu",
                               progress=lambda d, t, r: calls.append((d, t, r is not None)))
    np.testing.assert_array_equal(vis.start, image.numpy())
    assert calls[-1] == (5, 5, True) and [c[0] for c in calls[:5]] == [1, 2, 3, 4, 5]

    cancel = threading.Event()

    def stop_after_two(done, total, partial):
        if done == 2:
            cancel.set()

    part = filter_visualization(model, "1", 3, iterations=5, batch_size=1, device="cpu", progress=stop_after_two,
                                cancel=cancel)
    assert not part.complete and part.iterations_done == 2
    assert np.isnan(part.activation).all() and np.isfinite(part.history[0, :2]).all()
    np.testing.assert_array_equal(part.images[1], part.start)  # not reached: the start image


def test_errors():
    model = edge_model()
    with pytest.raises(ValueError, match=r"layer='nope' is not a module.*'0', '1'"):
        filter_visualization(model, "nope", device="cpu")
    with pytest.raises(ValueError, match=r"filters=4 is not allowed; layer='1' has 3 channels"):
        filter_visualization(model, "1", 4, device="cpu")
    with pytest.raises(ValueError, match=r"filters: \[7\] out of range"):
        filter_visualization(model, "1", [0, 7], device="cpu")
    with pytest.raises(ValueError, match="iterations=0"):
        filter_visualization(model, "1", iterations=0, device="cpu")
    with pytest.raises(ValueError, match="step=-1"):
        filter_visualization(model, "1", step=-1, device="cpu")
    with pytest.raises(ValueError, match="l2=1"):
        filter_visualization(model, "1", l2=1, device="cpu")
    with pytest.raises(ValueError, match="jitter=-2"):
        filter_visualization(model, "1", jitter=-2, device="cpu")
    with pytest.raises(ValueError, match="size=0"):
        filter_visualization(model, "1", size=0, device="cpu")
    with pytest.raises(TypeError, match="filters='a'"):
        filter_visualization(model, "1", "a", device="cpu")


# --- the `occlusion-widget filters` sub-command (occlusion_widget/filters_cli.py) ---

def _args(tmp_path, *argv):
    import argparse

    from occlusion_widget.filters_cli import add_parser

    parser = argparse.ArgumentParser(prog="occlusion-widget")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["filters", *argv])


def test_cli_writes_the_figure_on_the_default_model(tmp_path, capsys):
    from PIL import Image

    from occlusion_widget.filters_cli import run

    out = tmp_path / "filters.png"
    args = _args(tmp_path, "--layer", "1._conv_stem", "--num-filters", "4", "--iterations", "3", "-o", str(out))
    assert run(args) == out
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 100
    assert "4 filters of 1._conv_stem" in capsys.readouterr().out


def test_cli_errors_are_one_line_and_come_before_computing(tmp_path, monkeypatch):
    import occlusion_widget.cli as cli
    from occlusion_widget.filters_cli import run

    def no_model(_spec):
        raise AssertionError("the model must not be loaded before the outputs are checked")

    with monkeypatch.context() as m:
        m.setattr(cli, "load_model", no_model)
        for argv, message in [
            (["-o", str(tmp_path / "f.xyz")], "'xyz' is not a figure format"),
            (["-o", str(tmp_path / "missing" / "f.png")], "does not exist"),
            ([str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "f.png")], "no such file"),
            (["--filters", "1,x", "-o", str(tmp_path / "f.png")], "--filters: expected indices"),
            (["--iterations", "0", "-o", str(tmp_path / "f.png")], "--iterations 0"),
        ]:
            with pytest.raises(cli.CliError, match=message):
                run(_args(tmp_path, "--layer", "1._conv_stem", *argv))
    for argv, message in [
        (["--layer", "1.nope"], r"--layer '1.nope' is not a module"),
        (["--layer", "1._conv_stem", "--num-filters", "33"], "has 32 channels"),
    ]:
        with pytest.raises(cli.CliError, match=message) as info:
            run(_args(tmp_path, *argv, "--iterations", "1", "-o", str(tmp_path / "f.png")))
        assert "\n" not in str(info.value)
    assert not (tmp_path / "f.png").exists()

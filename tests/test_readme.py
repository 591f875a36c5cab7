"""The README's examples are tests: every ```python block and every ``occlusion-widget`` command runs as written.

Each example runs in a fresh subprocess (``sys.executable``), in an empty temporary working directory, as a user
would run it from a script or a shell: it must exit with status 0, print no traceback, write only the files it
names, and leave no new file in the repository. The only substitution is ``photo.jpg``: the commands that
read "your image" find the bundled sample photograph under that name in their working directory.

Blocks are run unchanged. ``CHECKS`` appends assertions to a block that turn its comments into checks (e.g.
``result.maps.shape  # (3, 224, 224)``); each check is keyed by a line of the block and a test fails if that
line disappears, so a check cannot silently stop running.

Run time on two idle cores: about 40 s for the python blocks and 40 s for the commands.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
TIMEOUT_S = 600

PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
# Commands: lines of ```bash blocks, and `inline code`, that start with the command's name.
_BASH = "\n".join(re.findall(r"^```bash\n(.*?)^```", README, flags=re.S | re.M))
COMMANDS = list(dict.fromkeys(
    [line.strip() for line in _BASH.splitlines() if line.strip().startswith("occlusion-widget ")]
    + re.findall(r"`(occlusion-widget [^`]+)`", README)
))
#: Commands not run here, with the reason and the test that covers them instead.
NOT_RUN = {
    "occlusion-widget demo": "starts a JupyterLab server and a browser; tests/test_cli.py::"
                             "test_demo_copies_the_quickstart_and_starts_jupyterlab_of_this_python covers it",
    "occlusion-widget audit photos/ -o audit/": "needs a folder of photographs; tests/test_audit.py::test_cli_run runs "
                                                "the same command on a generated folder",
}

#: Assertions appended to a block (keyed by one of its lines): what its comments promise.
CHECKS = {
    "result = ow.occlusion_sensitivity(model, image, top_k=3, mask_size=30, stride=10)": """
        assert result.labels[0] == "military uniform", result.labels
        assert len(result.labels) == 3 and all(0 < p <= 1 for p in result.base_scores)
        assert list(result.base_scores) == sorted(result.base_scores, reverse=True)
        assert result.maps.shape == (3, 224, 224), result.maps.shape
        y0, x0, y1, x1 = (int(v) for v in best.box)
        assert 0 <= y0 < y1 <= 224 and 0 <= x0 < x1 <= 224 and y1 - y0 <= 30 and x1 - x0 <= 30, best.box
        top = float(result.grid[0].max())                # the largest score drop of the top class
        assert top > 0 and abs(best.drop - top) <= 1e-6 * top, (best.drop, top)
        assert best.occluded_image.shape == (3, 224, 224)  # the input (C, H, W) as the network saw it
    """,
}


def _untracked() -> set[str]:
    """Untracked, not ignored files of the repository (empty outside a git checkout)."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line[3:] for line in done.stdout.splitlines() if line.startswith("?? ")}


def _run(argv: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``argv`` in ``cwd``; assert status 0, no traceback and no new untracked file in the repository."""
    env = dict(os.environ, MPLBACKEND="Agg", TORCH_HOME=str(tmp_path / "torch-cache"))  # empty: downloads show
    before, start = _untracked(), time.time()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    # Only files created while it ran count: other work in the checkout is not this example's.
    stray = sorted(f for f in _untracked() - before
                   if (ROOT / f).exists() and (ROOT / f).stat().st_mtime >= start - 1)
    assert not stray, f"the example left files in the repository: {stray}"
    assert not list((tmp_path / "torch-cache").rglob("*.pth")), "the example downloaded weights"
    return done


def test_the_readme_has_examples() -> None:
    assert PYTHON_BLOCKS, "no ```python block found"
    assert "occlusion-widget map" in COMMANDS


@pytest.mark.parametrize("key", list(CHECKS))
def test_every_check_finds_its_block(key: str) -> None:
    assert any(key in block for block in PYTHON_BLOCKS), f"no README python block has the line {key!r} any more"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"python-{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_block_runs_as_a_script(block: str, tmp_path: Path) -> None:
    script = block + "".join(textwrap.dedent(check) for key, check in CHECKS.items() if key in block)
    (tmp_path / "example.py").write_text(script, encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _run([sys.executable, str(tmp_path / "example.py")], cwd, tmp_path)
    # It writes exactly the files whose names it quotes (e.g. w.save_png("maps.png")), nothing else.
    named = set(re.findall(r"""["']([\w.-]+\.(?:png|html|npz|jpg|pdf|svg))["']""", block))
    written = {p.name for p in cwd.iterdir()}
    assert written == named, f"written {sorted(written)}, named in the block {sorted(named)}"


def _arg(argv: list[str], *names: str) -> str | None:
    for name in names:
        if name in argv:
            return argv[argv.index(name) + 1]
    return None


@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs_as_written(command: str, tmp_path: Path) -> None:
    if command in NOT_RUN:
        pytest.skip(NOT_RUN[command])
    argv = shlex.split(command)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    from occlusion_widget import sample_image

    sample_image().save(cwd / "photo.jpg")  # "your image"
    # python -m occlusion_widget is the entry point without a PATH lookup (the installed script calls the same main).
    done = _run([sys.executable, "-m", "occlusion_widget", *argv[1:]], cwd, tmp_path)
    if "--help" in argv:
        assert "examples:" in done.stdout and "usage:" in done.stdout
        assert {p.name for p in cwd.iterdir()} == {"photo.jpg"}
        return

    figure = cwd / (_arg(argv, "-o", "--out") or "occlusion.png")
    with Image.open(figure) as img:  # a real PNG figure
        assert img.format == "PNG" and min(img.size) > 200
    expected = {"photo.jpg", figure.name}
    top_k = int(_arg(argv, "--top-k") or 3)
    if npz := _arg(argv, "--npz"):
        expected.add(npz)
        with np.load(cwd / npz) as arrays:
            assert arrays["maps"].shape == (top_k, 224, 224)
            assert len(arrays["labels"]) == top_k and np.isfinite(arrays["grid"]).all()
            if stride := _arg(argv, "--stride"):
                # Centres at 0, s, 2s, ... < 224 (mask_clipping=True): ceil(224 / s) positions per axis.
                n = -(-224 // int(stride))
                assert arrays["grid"].shape == (top_k, n, n)
    if html := _arg(argv, "--html"):
        expected.add(html)
        text = (cwd / html).read_text(encoding="utf-8")
        # One self-contained file: no script or style fetched from elsewhere (tests/test_report.py opens it offline).
        assert "<html" in text.lower() and not re.search(r"""<(script|link)[^>]+(src|href)=["']?https?:""", text)
    assert {p.name for p in cwd.iterdir()} == expected

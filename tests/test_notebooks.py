"""The tutorial notebooks run top to bottom, offline, leave no files behind, and are committed without outputs.

``pytest -m notebooks`` runs only the executions (about two minutes for 01-05 on two idle CPU cores);
``pytest -m "not notebooks"`` skips them.
"""

import importlib.util
import subprocess
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def _widget_importable() -> bool:
    try:
        from occlusion_widget import OcclusionWidget  # noqa: F401
    except ImportError:
        return False
    return True


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"cells {dirty} have outputs: jupyter nbconvert --clear-output --inplace {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_reads_as_a_tutorial(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "start with a markdown title"
    prose = sum(c.cell_type == "markdown" for c in nb.cells)
    assert prose >= 3, "explain between the code cells"


def _folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (hidden ones too) with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _git_status(folder: Path) -> str | None:
    """``git status --porcelain`` of ``folder`` (untracked files included), None outside a git checkout."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "."],
                              cwd=folder, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    """Execute the notebook in place, as a user does: its folder is the kernel's working directory.

    A tutorial writes its files to a temporary folder: afterwards no file in notebooks/ is new, gone or
    changed (the notebook itself is executed in memory and never saved), and ``git status`` of the folder
    reads as before.
    """
    from nbclient import NotebookClient

    source = path.read_text(encoding="utf-8")
    if "OcclusionWidget" in source and not _widget_importable():
        pytest.skip("occlusion_widget.OcclusionWidget is not importable yet")
    if "skimage" in source and importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image is not installed (pip install -e '.[notebooks]')")

    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Weights must come with the packages: an empty torch cache makes a download attempt visible.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-cache"))
    folder = path.parent
    files_before, git_before = _folder_state(folder), _git_status(folder)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert not list((tmp_path / "torch-cache").rglob("*.pth")), "the notebook downloaded weights"

    files_after = _folder_state(folder)
    new = sorted(set(files_after) - set(files_before))
    assert not new, f"running {path.name} in place left files in {folder.name}/: {new}; write to a tempfile folder"
    changed = sorted(f for f in files_before if files_after.get(f) != files_before[f])
    assert not changed, f"running {path.name} in place changed or removed {changed}"
    assert _git_status(folder) == git_before, f"git status of {folder.name}/ changed while {path.name} ran"

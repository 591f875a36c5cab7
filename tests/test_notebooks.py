"""The tutorial notebooks run top to bottom, offline, and are committed without outputs.

``pytest -m notebooks`` runs only the executions (about two minutes for 01-05 on two idle CPU cores);
``pytest -m "not notebooks"`` skips them.
"""

import importlib.util
import shutil
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


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    source = path.read_text(encoding="utf-8")
    if "OcclusionWidget" in source and not _widget_importable():
        pytest.skip("occlusion_widget.OcclusionWidget is not importable yet")
    if "skimage" in source and importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image is not installed (pip install -e '.[notebooks]')")

    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Weights must come with the packages: an empty torch cache makes a download attempt visible.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-cache"))
    copy = tmp_path / path.name  # run a copy: outputs and files the notebook writes stay out of the repository
    shutil.copyfile(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert not list((tmp_path / "torch-cache").rglob("*.pth")), "the notebook downloaded weights"

"""backend='ray': the same table and maps as the local backend; a killed worker loses no finished image.

One local Ray instance (2 CPUs, no dashboard) for the module. Workers import this folder's modules
(the tiny models live here), so the instance gets it on its PYTHONPATH.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS, Tiny, assert_close, tiny_model
from PIL import Image

from occlusion_widget.audit import Audit, audit
from occlusion_widget.models import ImageClassifier

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

SWEEP = {"mask_size": 8, "stride": 4}
COMPARED = ["image_id", "image_index", "map_index", "true_label", "true_name", "pred_label", "pred_name", "target",
            "target_name", "target_kind", "peak_y", "peak_x"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)}})
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(3)
    for c in ("thing 1", "thing 4"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for j in range(4):
            Image.fromarray((rng.random((36, 44, 3)) * 255).astype(np.uint8)).save(tmp_path / "data" / c / f"{j}.png")
    return tmp_path / "data"


def test_ray_matches_local(cluster, folder, tmp_path):
    local = audit(tiny_model(), folder, out=tmp_path / "local", progress=False, **SWEEP)
    distributed = audit(tiny_model, folder, out=tmp_path / "ray", backend="ray", num_workers=2, progress=False,
                        **SWEEP)  # a factory: each worker builds its own model
    a, b = local.table, distributed.table
    assert len(b) == 8 and b["worker"].nunique() >= 1
    assert a[COMPARED].equals(b[COMPARED])
    for col in ("confidence", "base_score", "concentration"):
        assert_close(b[col].to_numpy(), a[col].to_numpy())
    assert_close(distributed.maps(), local.maps())
    np.testing.assert_array_equal(np.stack([distributed.image(i) for i in range(8)]),
                                  np.stack([local.image(i) for i in range(8)]))


class DiesOnce(Tiny):
    """Kills its worker process at its ``after``-th forward pass, once per run (a marker file is claimed)."""

    def __init__(self, marker: str, after: int):
        super().__init__()
        self.marker, self.after, self.n = marker, after, [0]

    def forward(self, x):
        self.n[0] += 1
        if self.n[0] == self.after:
            try:
                os.rename(self.marker, self.marker + f".{os.getpid()}")  # only one worker may claim it
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        return super().forward(x)


def _dies_once_model(marker: str) -> ImageClassifier:
    # 4 forward calls per image (predict, the sweep's clean pass and 2 batches of 32 positions): the 10th
    # is in the worker's 3rd image, after its first batch of IMAGES_PER_TASK = 2 images was committed.
    return ImageClassifier(DiesOnce(marker, after=2 * 4 + 2).eval(), (32, 32), LABELS, name="tiny")


def test_killed_worker_loses_no_finished_image(cluster, folder, tmp_path):
    marker = tmp_path / "kill-me"
    marker.write_text("")
    out = tmp_path / "out"
    factory = _Factory(str(marker))
    try:
        audit(factory, folder, out=out, backend="ray", num_workers=2, progress=False, **SWEEP)
    except Exception as exc:  # noqa: BLE001 - Ray may give up on the batch instead of retrying it
        print(f"first run stopped: {type(exc).__name__}; the rerun finishes it")
    killed = [p for p in tmp_path.iterdir() if p.name.startswith("kill-me.")]
    assert len(killed) == 1, "the worker was not killed: the test did not test anything"
    pid = killed[0].name.split(".")[-1]
    kept = Audit.open(out).table
    assert (kept["worker"].str.endswith(f"-{pid}")).sum() >= 2  # the dead worker's committed images are there
    again = audit(factory, folder, out=out, backend="ray", num_workers=2, progress=False, **SWEEP)
    t = again.table
    assert len(t) == 8 and t["image_id"].is_unique
    local = audit(tiny_model(), folder, out=tmp_path / "local", progress=False, **SWEEP)
    assert_close(again.maps(), local.maps())


class _Factory:
    """A picklable zero-argument model factory."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self) -> ImageClassifier:
        return _dies_once_model(self.marker)

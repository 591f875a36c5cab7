"""ow.audit: rows checked against direct calls, labels, resume, safety (lock, parameters), metrics, aggregates."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import LABELS, Tiny, assert_close, tiny_model
from PIL import Image
from torch import nn

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.audit import (
    Audit,
    AuditLocked,
    ParameterMismatch,
    audit,
    compare_audits,
)
from occlusion_widget.audit.data import object_mask
from occlusion_widget.audit.metrics import concentration, peak
from occlusion_widget.methods.faithfulness import deletion_insertion
from occlusion_widget.models import ImageClassifier

SWEEP = {"mask_size": 8, "stride": 4}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one torch thread (see conftest)."""


def _save(path, seed: int, size=(40, 50)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    """An ImageFolder: two classes the model knows ('thing 1', 'thing_2') and one it does not ('cats')."""
    root = tmp_path / "data"
    for c, name in enumerate(["thing 1", "thing_2", "cats"]):
        for j in range(2):
            _save(root / name / f"{j}.png", 10 * c + j)
    return root


class Counting(Tiny):
    """Tiny with a call counter shared by the engine's copies of the module (a list survives copy.copy)."""

    def __init__(self, counter: list[int]):
        super().__init__()
        self.counter = counter

    def forward(self, x):
        self.counter[0] += 1
        return super().forward(x)


def counting_model() -> tuple[ImageClassifier, list[int]]:
    counter = [0]
    return ImageClassifier(Counting(counter).eval(), (32, 32), LABELS, name="tiny"), counter


def test_rows_match_direct_calls(folder, tmp_path):
    model = tiny_model()
    a = audit(model, folder, out=tmp_path / "out", progress=False, **SWEEP)
    t = a.table
    assert len(a) == 6 and t["image_id"].tolist()[:2] == ["cats/0.png", "cats/1.png"]
    for i in (0, 3, 5):
        row = t.iloc[i]
        direct = occlusion_sensitivity(model, row["path"], **SWEEP)
        top = model.predict(row["path"], k=1)[0]
        assert row["pred_label"] == top[0] == direct.targets[0] and row["target"] == direct.targets[0]
        assert row["pred_name"] == top[1] == row["target_name"]
        assert row["confidence"] == pytest.approx(top[2], rel=1e-6)
        assert row["base_score"] == pytest.approx(float(direct.base_scores[0]), rel=1e-6)
        assert_close(a.map(i), direct.maps[0])
        assert (row["peak_y"], row["peak_x"]) == peak(direct.maps[0])
        assert row["concentration"] == pytest.approx(concentration(direct.maps[0]), rel=1e-6)
        expected = np.clip(direct.image.transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(a.image(i), expected)
        assert_close(a.result(i).maps[0], direct.maps[0])
    # Other tools read the merged table as Parquet; parameters are stored as JSON.
    merged = pd.read_parquet(tmp_path / "out" / "table.parquet")
    assert merged["image_id"].tolist() == t["image_id"].tolist()
    params = json.loads((tmp_path / "out" / "audit.json").read_text())["params"]
    assert params["method"] == "occlusion" and params["method_params"] == SWEEP


def test_concentration_by_hand():
    smap = np.zeros((10, 10))
    smap[0, :10] = 1.0  # all the positive evidence in 10% of the pixels
    smap[5, 5] = -3.0  # negative evidence does not count
    assert concentration(smap) == pytest.approx(1.0)
    assert concentration(np.ones((10, 10))) == pytest.approx(0.1)
    assert np.isnan(concentration(-np.ones((4, 4))))


def test_imagefolder_labels(folder, tmp_path):
    t = audit(tiny_model(), folder, out=tmp_path / "out", progress=False, **SWEEP).table
    by_name = t.groupby("true_name")["true_label"].first()
    assert by_name["thing 1"] == 1 and by_name["thing_2"] == 2  # names matched to the model's labels
    assert pd.isna(by_name["cats"])  # unknown to the model: the name is kept, no index
    assert t.loc[t["true_name"] == "cats", "correct"].isna().all()
    expected = t["pred_label"] == t["true_label"]
    known = t["true_name"] != "cats"
    assert (t.loc[known, "correct"] == expected[known]).all()
    with pytest.raises(ValueError, match="no class named 'cats'"):
        audit(tiny_model(), folder, out=tmp_path / "o2", targets="label", progress=False, **SWEEP)


def test_targets_both_and_top_k(folder, tmp_path):
    model = tiny_model()
    paths = [str(folder / "thing 1" / "0.png"), str(folder / "thing_2" / "1.png")]
    top = audit(model, paths, out=tmp_path / "top", targets=3, progress=False, **SWEEP)
    assert len(top) == 6 and top.table["target_kind"].tolist()[:3] == ["top1", "top2", "top3"]
    direct = occlusion_sensitivity(model, paths[1], top_k=3, **SWEEP)
    assert top.table["target"].tolist()[3:] == direct.targets.tolist()
    for k in range(3):
        assert_close(top.map(3 + k), direct.maps[k])

    class Labelled(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return paths[i], 7  # an int label: the model's class index

    both = audit(model, Labelled(), out=tmp_path / "both", targets="both", progress=False, **SWEEP)
    t = both.table
    assert set(t["target_kind"]) <= {"predicted", "label", "predicted,label"}
    assert (t.loc[t["target_kind"] == "label", "target"] == 7).all()
    assert t["true_name"].tolist()[0] == "thing 7"


def test_resume_skips_finished_images(folder, tmp_path):
    model, calls = counting_model()
    out = tmp_path / "out"
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    first = audit(model, paths[:4], out=out, progress=False, **SWEEP)
    assert len(first) == 4 and calls[0] > 0
    per_image = calls[0] / 4
    calls[0] = 0
    again = audit(model, paths[:4], out=out, progress=False, **SWEEP)
    assert calls[0] == 0 and len(again) == 4  # nothing recomputed
    more = audit(model, paths, out=out, progress=False, **SWEEP)
    assert calls[0] == pytest.approx(2 * per_image) and len(more) == 6
    assert more.table["image_id"].is_unique


def test_crash_keeps_finished_images(folder, tmp_path):
    model, calls = counting_model()
    paths = sorted(str(p) for p in folder.rglob("*.png"))

    class Breaks(torch.utils.data.Dataset):
        broken = True

        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            if i == 4 and self.broken:
                raise OSError("disk gone")
            return paths[i]

    data = Breaks()
    with pytest.raises(OSError, match="disk gone"):
        audit(model, data, out=tmp_path / "out", progress=False, **SWEEP)
    kept = set(Audit.open(tmp_path / "out").table["image_id"])
    # Every image finished before the error is kept (image 5 was in flight: kept or not).
    assert {"0", "1", "2", "3"} <= kept and "4" not in kept
    assert not (tmp_path / "out" / "lock").exists()
    one, one_calls = counting_model()
    audit(one, paths[:1], out=tmp_path / "one", progress=False, **SWEEP)
    data.broken, calls[0] = False, 0
    full = audit(model, data, out=tmp_path / "out", progress=False, **SWEEP)
    assert len(full) == 6 and calls[0] == (6 - len(kept)) * one_calls[0]  # only the missing images ran
    direct = occlusion_sensitivity(model, paths[4], **SWEEP)
    assert_close(full.map(4), direct.maps[0])


def test_other_parameters_are_refused(folder, tmp_path):
    model = tiny_model()
    audit(model, folder, out=tmp_path / "out", progress=False, **SWEEP)
    with pytest.raises(ParameterMismatch, match=r"method_params: .*'stride': 4.*stored.*'stride': 8.* now"):
        audit(model, folder, out=tmp_path / "out", progress=False, mask_size=8, stride=8)
    with pytest.raises(ParameterMismatch, match="targets"):
        audit(model, folder, out=tmp_path / "out", progress=False, targets=2, **SWEEP)
    other = tiny_model()  # the same name and size, other weights
    with torch.no_grad():
        other.module.head.bias += 1
    with pytest.raises(ParameterMismatch, match="model"):
        audit(other, folder, out=tmp_path / "out", progress=False, **SWEEP)
    assert len(Audit.open(tmp_path / "out")) == 6  # nothing was lost


def test_lock(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    import socket

    (out / "lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    with pytest.raises(AuditLocked, match=rf"'out' is in use by pid {os.getpid()} .*remove the lock if that process"):
        audit(tiny_model(), folder, out=out, progress=False, **SWEEP)
    # A lock whose process is gone on this host is taken over.
    (out / "lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "started": "then"}))
    assert len(audit(tiny_model(), folder, out=out, progress=False, **SWEEP)) == 6
    assert not (out / "lock").exists()


class Bright(nn.Module):
    """Class 0's logit is the image's brightness: the evidence for it is where the bright square is."""

    def forward(self, x):
        s = x.mean(1).sum((1, 2)) / 50
        return torch.stack([s, -s], 1)


def test_annotation_maps_through_the_preprocess():
    model = ImageClassifier(Bright(), (32, 32), ["bright", "dark"], resize_size=40)
    img = np.zeros((48, 64, 3), np.uint8)
    img[18:30, 30:42] = 255
    seen = model.preprocess(Image.fromarray(img))[0].numpy() > 0.5
    mask = object_mask([[30, 18, 42, 30]], (64, 48), model)
    assert (mask & seen).sum() == seen.sum()  # the box covers every pixel of the square
    assert mask.sum() <= seen.sum() + 2 * (mask.any(0).sum() + mask.any(1).sum())  # up to a border pixel
    bool_mask = np.zeros((48, 64), bool)
    bool_mask[18:30, 30:42] = True
    assert (object_mask([bool_mask], (64, 48), model) == seen).mean() > 0.97


def test_pointing_game(tmp_path):
    model = ImageClassifier(Bright(), (32, 32), ["bright", "dark"])
    img = np.zeros((48, 64, 3), np.uint8)
    img[18:30, 30:42] = 255
    (tmp_path / "data" / "bright").mkdir(parents=True)
    Image.fromarray(img).save(tmp_path / "data" / "bright" / "square.png")
    moved = np.zeros_like(img)
    moved[18:30, 6:18] = 255
    Image.fromarray(moved).save(tmp_path / "data" / "bright" / "moved.png")
    # Keyed by image id (folder-relative path); the box misses the moved square.
    boxes = {"bright/square.png": [[30, 18, 42, 30]], "bright/moved.png": [[30, 18, 42, 30]]}
    a = audit(model, tmp_path / "data", out=tmp_path / "out", annotations=boxes, progress=False, mask_size=6, stride=2,
              mask_value=0.0)
    t = a.table
    assert t["image_id"].tolist() == ["bright/moved.png", "bright/square.png"]
    assert t["pointing_hit"].tolist() == [False, True] and t["correct"].all()
    assert t["energy_inside"].iloc[1] > 0.6 and t["energy_inside"].iloc[0] < 0.2
    assert a.right_for_wrong_reasons(1)["image_id"].tolist() == ["bright/moved.png"]
    # COCO: [x, y, w, h] keyed by file name.
    coco = {"images": [{"id": 1, "file_name": "square.png"}], "annotations": [{"image_id": 1, "bbox": [30, 18, 12, 12]}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    b = audit(model, [str(tmp_path / "data" / "bright" / "square.png")], out=tmp_path / "coco",
              annotations=tmp_path / "coco.json", progress=False,
              mask_size=6, stride=2, mask_value=0.0)
    assert b.table["energy_inside"].iloc[0] == pytest.approx(t["energy_inside"].iloc[1], rel=1e-9)
    with pytest.raises(ValueError, match="needs true labels"):
        b.right_for_wrong_reasons()


def test_aggregates_and_faithfulness(folder, tmp_path):
    model = tiny_model()
    a = audit(model, folder, out=tmp_path / "out", progress=False, deletion_insertion=True, **SWEEP)
    t = a.table
    means = a.class_means()
    for name, mean in means.items():
        rows = [occlusion_sensitivity(model, p, **SWEEP).maps[0] for p in t.loc[t["target_name"] == name, "path"]]
        assert_close(mean, np.mean(rows, axis=0), rtol=1e-5)
    wrong = a.misclassified()
    assert wrong["correct"].eq(False).all() and wrong["confidence"].is_monotonic_decreasing
    curve = deletion_insertion(model, t["path"].iloc[2], a.map(2), int(t["target"].iloc[2]))
    assert t["deletion_auc"].iloc[2] == pytest.approx(curve.deletion_auc, rel=1e-5)
    f = a.faithfulness()
    assert f["rows"].iloc[0] == 6
    assert f["insertion_auc_mean"].iloc[0] == pytest.approx(t["insertion_auc"].mean(), rel=1e-9)


def test_compare_audits(folder, tmp_path):
    model = tiny_model()
    a = audit(model, folder, out=tmp_path / "a", progress=False, **SWEEP)
    b = audit(model, folder, out=tmp_path / "b", progress=False, mask_size=12, stride=6)
    c = compare_audits(a, b)
    assert len(c) == 6 and {"concentration_a", "concentration_b", "map_agreement"} <= set(c.columns)
    for _, row in c.iterrows():
        expected = np.corrcoef(a.map(int(row["row_a"])).ravel(), b.map(int(row["row_b"])).ravel())[0, 1]
        assert row["map_agreement"] == pytest.approx(expected, rel=1e-6)
    assert compare_audits(a, a)["map_agreement"].to_numpy() == pytest.approx(np.ones(6))


def test_bad_arguments(folder, tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match="targets='top' is not allowed"):
        audit(model, folder, out=tmp_path / "o", targets="top")
    with pytest.raises(ValueError, match="backend='spark' is not allowed"):
        audit(model, folder, out=tmp_path / "o", backend="spark")
    with pytest.raises(TypeError, match="unknown parameter 'strid'"):
        audit(model, folder, out=tmp_path / "o", strid=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        audit(model, tmp_path / "empty", out=tmp_path / "o2")
    with pytest.raises(ValueError, match="needs true labels"):
        audit(model, [str(folder / "cats" / "0.png")], out=tmp_path / "o3", targets="label")


def test_cli_run(folder, tmp_path, capsys):
    from occlusion_widget.audit import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audit", str(folder), "-o", str(tmp_path / "out"), "--mask-size", "8", "--stride", "4",
                              "--no-progress"])
    args.model_object = tiny_model()  # tests: a model object instead of --model's name
    cli.run(args)
    text = capsys.readouterr().out
    assert "6 images" in text and str(tmp_path / "out") in text
    with Image.open(tmp_path / "out" / "summary.png") as img:
        assert img.width > 300
    assert len(Audit.open(tmp_path / "out")) == 6


def test_ctrl_c_keeps_finished_images_and_the_lock_goes(folder, tmp_path):
    paths = sorted(str(p) for p in folder.rglob("*.png"))

    class Interrupted(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            if i == 3:
                raise KeyboardInterrupt  # what Ctrl-C raises, here at a known image
            return paths[i]

    with pytest.raises(KeyboardInterrupt):
        audit(tiny_model(), Interrupted(), out=tmp_path / "out", progress=False, **SWEEP)
    assert {"0", "1", "2"} <= set(Audit.open(tmp_path / "out").table["image_id"])
    assert not (tmp_path / "out" / "lock").exists()

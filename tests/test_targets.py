"""Segmentation and detection targets: scores on hand-made outputs, one sweep for all targets, pointing game."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torch import nn

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.engine.targets import (
    DetectionTarget,
    SegmentationTarget,
    default_targets,
    explain_targets,
    targets_output,
)
from occlusion_widget.engine.targets_adapters import DetectorModule
from occlusion_widget.engine.targets_demo import load_demo_models, pointing_game, synthetic_scene


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture
def logits() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 4, 5, generator=g) * 2


# --- SegmentationTarget on a hand-made output ---------------------------------------------------------------

def test_segmentation_regions_probability_and_logit(logits):
    raw = logits.numpy().astype(np.float64)
    prob = _softmax(raw, axis=1)
    predicted = raw[0].argmax(axis=0) == 1
    assert predicted.any() and not predicted.all()
    mask = np.zeros((4, 5), bool)
    mask[1:3, 0:2] = True
    box_rows, box_cols = slice(1, 4), slice(2, 5)  # box (x0, y0, x1, y1) = (2, 1, 5, 4)
    cases = [
        (SegmentationTarget(1, "predicted").prepare({"out": logits[:1]}), prob[:, 1][:, predicted]),
        (SegmentationTarget(1, mask), prob[:, 1][:, mask]),
        (SegmentationTarget(1, (2, 1, 5, 4)), prob[:, 1, box_rows, box_cols].reshape(2, -1)),
        (SegmentationTarget(1, None), prob[:, 1].reshape(2, -1)),
        (SegmentationTarget(2, mask, output="logit"), raw[:, 2][:, mask]),
        (SegmentationTarget(0, None, output="logit"), raw[:, 0].reshape(2, -1)),
    ]
    for target, values in cases:
        want = values.mean(axis=1)
        got = target({"out": logits}).numpy()  # torchvision's dict form
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max(), err_msg=repr(target))
        np.testing.assert_allclose(target(logits).numpy(), got, rtol=1e-6)  # a bare (N, C, H, W) tensor too


def test_segmentation_mask_at_input_size_on_a_smaller_output(logits):
    # An (8, 10) mask on a (4, 5) output: each output pixel weighted by its share of the mask.
    mask = np.zeros((8, 10), bool)
    mask[0:2, 0:4] = True  # covers output pixels (0, 0) and (0, 1) entirely
    mask[2, 4] = True  # a quarter of output pixel (1, 2)
    prob = _softmax(logits.numpy().astype(np.float64), axis=1)[:, 2]
    want = (prob[:, 0, 0] + prob[:, 0, 1] + 0.25 * prob[:, 1, 2]) / 2.25
    np.testing.assert_allclose(SegmentationTarget(2, mask)(logits).numpy(), want, rtol=1e-5)


def test_segmentation_refuses_what_it_cannot_score(logits):
    empty_class = SegmentationTarget(1, "predicted")
    with pytest.raises(ValueError, match="assigns no pixel to class 1"):
        empty_class.prepare(torch.zeros(1, 3, 4, 5).index_fill_(1, torch.tensor([0]), 5.0))
    with pytest.raises(RuntimeError, match="not prepared"):
        SegmentationTarget(1)(logits)
    with pytest.raises(ValueError, match="all False"):
        SegmentationTarget(1, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="x0 < x1"):
        SegmentationTarget(1, (3, 1, 2, 4))
    with pytest.raises(ValueError, match="outside"):
        SegmentationTarget(7, None)(logits)
    with pytest.raises(ValueError, match="no pixel of the"):
        SegmentationTarget(1, (50, 50, 60, 60))(logits)
    with pytest.raises(ValueError, match="output='softmax' is not allowed"):
        SegmentationTarget(1, None, output="softmax")
    with pytest.raises(ValueError, match="batch of 2"):
        SegmentationTarget(1, "predicted").prepare(logits)


# --- DetectionTarget on hand-made detections ------------------------------------------------------------------

def _dets(rows):
    """Detections from rows (x0, y0, x1, y1, label, score)."""
    a = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"boxes": a[:, :4], "labels": a[:, 4].long(), "scores": a[:, 5]}


def test_detection_drise_iou_matching():
    target = DetectionTarget((10, 10, 30, 30), label=1, iou_threshold=0.5)
    same = (10, 10, 30, 30)
    taller = (10, 10, 30, 40)  # IoU 400 / 600 = 2/3
    shifted = (20, 10, 40, 30)  # IoU 200 / 600 = 1/3: below the threshold
    cases = [
        ([[*same, 1, 0.9]], 0.9),
        ([[*taller, 1, 0.6]], 0.6 * 2 / 3),
        ([[*same, 2, 0.9]], 0.0),  # label mismatch
        ([[*shifted, 1, 0.9]], 0.0),  # IoU below the threshold
        ([[*taller, 1, 0.9], [*same, 1, 0.5], [*same, 2, 0.99]], max(0.9 * 2 / 3, 0.5)),  # max over matches
        ([], 0.0),  # no detection at all
    ]
    got = target([_dets(rows) for rows, _ in cases]).numpy()
    want = np.array([w for _, w in cases])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # The threshold is inclusive for D-RISE: IoU exactly 2/3 matches at threshold 2/3 - 1e-6.
    loose = DetectionTarget((10, 10, 30, 30), 1, iou_threshold=0.3)
    np.testing.assert_allclose(loose([_dets([[*shifted, 1, 0.9]])]).numpy(), [0.9 / 3], rtol=1e-6)


def test_box_score_equals_pytorch_grad_cam():
    rng = np.random.default_rng(3)
    for trial in range(40):
        d = int(rng.integers(0, 6))
        xy = rng.uniform(0, 40, (d, 2))
        wh = rng.uniform(5, 30, (d, 2))
        rows = np.c_[xy, xy + wh, rng.integers(1, 3, d), rng.uniform(0.05, 1, d)]
        dets = _dets(rows.tolist())
        box = np.r_[rng.uniform(0, 40, 2), 0, 0]
        box[2:] = box[:2] + rng.uniform(5, 30, 2)
        if d and trial % 2:
            box = rows[0, :4] + rng.normal(0, 2, 4)  # near a detection, so that both branches are exercised
            box[2:] = np.maximum(box[2:], box[:2] + 1)
        label, thr = int(rng.integers(1, 3)), float(rng.choice([0.3, 0.5]))
        ours = DetectionTarget(box, label, iou_threshold=thr, score="box_score")([dets])
        theirs = FasterRCNNBoxScoreTarget([label], [torch.tensor(box, dtype=torch.float32)], iou_threshold=thr)(dets)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy().reshape(1), rtol=1e-6, atol=1e-7)


def test_detection_refuses_bad_parameters():
    with pytest.raises(ValueError, match="box="):
        DetectionTarget((1, 2, 3), 1)
    with pytest.raises(ValueError, match="iou_threshold=1.5"):
        DetectionTarget((0, 0, 5, 5), 1, iou_threshold=1.5)
    with pytest.raises(ValueError, match="score='rise'"):
        DetectionTarget((0, 0, 5, 5), 1, score="rise")
    with pytest.raises(ValueError, match="lacks \\['scores'\\]"):
        DetectionTarget((0, 0, 5, 5), 1)([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])


def test_default_targets_order_threshold_and_names():
    dets = [_dets([[0, 0, 10, 10, 1, 0.6], [5, 5, 20, 20, 2, 0.95], [1, 1, 4, 4, 1, 0.3]])]
    ts = default_targets(dets, min_score=0.5, categories=["bg", "cat", "dog"])
    assert [(t.label, t.name.split()[0]) for t in ts] == [(2, "dog"), (1, "cat")]
    assert len(default_targets(dets, min_score=0.0, top_k=2)) == 2
    seg = torch.zeros(1, 3, 4, 5)
    seg[0, 2, :, :3] = 1  # class 2 on 12 pixels, class 0 on 8, class 1 nowhere
    assert [t.label for t in default_targets({"out": seg})] == [2, 0]


# --- one sweep for all targets --------------------------------------------------------------------------------

class Counting(nn.Module):
    """Counts forward passes (a list, so a view of the module made by the sweep shares it)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append(len(x))
        return self.inner(x)


def _same_maps(one, per_target):
    for k, single in enumerate(per_target):
        m = one.maps[k]
        np.testing.assert_allclose(m, single.maps[0], rtol=1e-4, atol=1e-5 * max(np.abs(m).max(), 1e-6))


def test_all_detections_of_a_torchvision_detector_in_one_sweep():
    torch.manual_seed(0)
    det = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, min_size=160, max_size=160, box_score_thresh=0.0, num_classes=5,
        rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50, box_detections_per_img=20)  # small heads: fast
    det.train()
    model = Counting(DetectorModule(det, max_batch=4))
    image = torch.rand(3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        base = DetectorModule(det)(image[None])
    targets = default_targets(base, min_score=0.0, top_k=3)
    assert len(targets) == 3 and det.training  # the wrapper ran it in eval mode, the module untouched
    out = targets_output(targets)
    kw = dict(mask_size=64, stride=64, batch_size=9, strategy="full")  # "auto" would try to trace it
    result = occlusion_sensitivity(model, image, list(range(3)), output=out, **kw)
    assert result.maps.shape == (3, 160, 160)
    assert model.calls == [1, 9]  # the unoccluded input, then all 9 positions in one batch: one sweep
    np.testing.assert_allclose(result.base_scores, [float(t([base[0]])[0]) for t in targets], rtol=1e-5)
    per_target = [occlusion_sensitivity(model, image, 0, output=targets_output([t]), **kw) for t in targets]
    _same_maps(result, per_target)


def test_detector_module_batches_like_single_images():
    torch.manual_seed(0)
    det = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, min_size=128, max_size=128, box_score_thresh=0.0, num_classes=5,
        rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50, box_detections_per_img=20).eval()
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        batched = DetectorModule(det, max_batch=2)(images)
        single = [det([im])[0] for im in images]
    assert len(batched) == 3
    for b, s in zip(batched, single, strict=True):
        np.testing.assert_allclose(b["scores"].numpy(), s["scores"].numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b["boxes"].numpy(), s["boxes"].numpy(), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="max_batch=0"):
        DetectorModule(det, max_batch=0)


def test_all_classes_of_a_torchvision_segmenter_in_one_sweep():
    torch.manual_seed(0)
    seg = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                    num_classes=4)
    model = Counting(seg)
    image = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(3))
    targets = [SegmentationTarget(0, None), SegmentationTarget(1, (10, 20, 60, 70)),
               SegmentationTarget(2, None, output="logit")]
    kw = dict(mask_size=32, stride=32, batch_size=16, strategy="full")
    result = occlusion_sensitivity(model, image, [0, 1, 2], output=targets_output(targets), **kw)
    assert result.maps.shape == (3, 96, 96) and len(model.calls) == 2  # one batch for all 3 targets
    per_target = [occlusion_sensitivity(seg, image, 0, output=targets_output([t]), **kw) for t in targets]
    _same_maps(result, per_target)


def test_predicted_region_is_fixed_on_the_unoccluded_input():
    out = targets_output([SegmentationTarget(1, "predicted")])
    with pytest.raises(ValueError, match="batch of 2"):
        out(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="mix of segmentation and detection"):
        targets_output([SegmentationTarget(1), DetectionTarget((0, 0, 4, 4), 1)])
    with pytest.raises(TypeError, match="not a target"):
        targets_output([1, 2])


# --- maps of trained models point at their objects ------------------------------------------------------------

def test_pointing_game_on_the_demo_models():
    """Maps peak on the known evidence: a square itself; a disk's dark shadow bar just below its box.

    The scenes give every disk a shadow 2-5 px below it (context, not in its box or mask), and both
    trained models learnt to use it: a disk's map peaks on the shadow, outside the box. The evidence
    box of a disk therefore runs 10 px below its box (the shadow, plus half the 10 px mask).
    """
    seg, det = load_demo_models()
    rng = np.random.default_rng(2024)
    kw = dict(mask_size=10, stride=4, batch_size=64)
    hits: dict[str, list[bool]] = {"det": [], "seg": [], "disk below its box": []}
    for _ in range(6):
        image, mask, boxes, labels = synthetic_scene(rng)
        evidence = boxes.numpy().copy()
        evidence[labels.numpy() == 2, 3] += 10
        with torch.inference_mode():
            dets = det(image[None])[0]
        targets = default_targets([dets], min_score=0.5)
        found = explain_targets(det, image, targets, **kw)
        for t, m in zip(targets, found.maps, strict=True):  # each detection against the true object it found
            iou = torchvision.ops.box_iou(t.box[None], boxes)[0]
            assert float(iou.max()) >= 0.5 and int(labels[iou.argmax()]) == t.label
            hits["det"].extend(pointing_game(m[None], evidence[int(iou.argmax())][None]))
        res = explain_targets(seg, image, [SegmentationTarget(int(lab), box.tolist())
                                           for box, lab in zip(boxes, labels, strict=True)], **kw)
        hits["seg"].extend(pointing_game(res.maps, evidence))
        disks = labels.numpy() == 2
        below = boxes.numpy().copy()
        below[:, 1] = below[:, 3]  # the band under the box: the shadow
        below[:, 3] += 10
        hits["disk below its box"].extend(pointing_game(res.maps[disks], below[disks]))
    assert len(hits["det"]) >= 8 and len(hits["disk below its box"]) >= 4, hits
    for key, values in hits.items():
        assert np.mean(values) >= 0.8, (key, values)

"""Segmenters and detectors through the public methods: targets=None / target objects, one sweep for all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from torch import nn

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.engine.targets import DetectionTarget, SegmentationTarget
from occlusion_widget.methods import deletion_insertion, grad_cam, saliency

BOXES = torch.tensor([[0.0, 0.0, 16.0, 16.0], [16.0, 16.0, 32.0, 32.0], [0.0, 16.0, 16.0, 32.0]])


class FakeDetector(nn.Module):
    """Three fixed boxes whose scores are a sigmoid of a conv's mean inside each box (differentiable).

    ``calls`` counts forward passes (a list, so that the sweep's eval-mode view shares it).
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        self.calls.append(len(x))
        f = self.conv(x)[:, 0]
        out = []
        for fi in f:
            means = torch.stack([fi[int(b[1]):int(b[3]), int(b[0]):int(b[2])].mean() for b in BOXES])
            scores = torch.sigmoid(4 * means + torch.tensor([1.0, 0.2, -3.0]))
            out.append({"boxes": BOXES.clone(), "labels": torch.tensor([1, 2, 1]), "scores": scores})
        return out


class CountingSeg(nn.Module):
    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.seg = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes)
        self.calls: list[int] = []
        self.eval()

    def forward(self, x):
        self.calls.append(len(x))
        return self.seg(x)


def _close(a, b, rtol=1e-4):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-5 * max(float(np.abs(b).max()), 1e-6))


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_detector_default_targets_come_from_one_sweep_and_equal_single_target_sweeps(image):
    model = FakeDetector()
    kw = dict(mask_size=8, stride=8, batch_size=32)
    result = occlusion_sensitivity(model, image, **kw)  # targets=None: detections with score >= 0.5
    assert model.calls == [1, 16]  # the base pass + one batch for ALL targets
    with torch.no_grad():
        scores = model(image[None])[0]["scores"]
    keep = torch.nonzero(scores >= 0.5).flatten()
    assert len(result.targets) == len(keep) >= 1 and len(keep) < 3  # min_score filtered
    order = keep[scores[keep].argsort(descending=True)]
    _close(result.base_scores, scores[order].numpy())  # D-RISE score on the unoccluded input = its score
    assert result.labels[0].startswith("class ")
    for k, i in enumerate(order.tolist()):
        model.calls.clear()
        single = occlusion_sensitivity(model, image, [DetectionTarget(BOXES[i], [1, 2, 1][i])], **kw)
        assert model.calls == [1, 16]
        _close(result.maps[k], single.maps[0])
    everything = occlusion_sensitivity(model, image, min_score=0.0, top_k=2, **kw)
    assert len(everything.targets) == 2


def test_segmenter_targets_one_sweep_equals_single_sweeps_and_named_by_category():
    model = CountingSeg()
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))
    targets = [SegmentationTarget(1, None), SegmentationTarget(2, (10, 20, 50, 60)),
               SegmentationTarget(3, None, output="logit")]
    kw = dict(mask_size=32, stride=32, batch_size=16)
    from occlusion_widget import ImageClassifier

    wrapped = ImageClassifier(model, (64, 64), labels=["bg", "cat", "dog", "cow"])
    result = occlusion_sensitivity(wrapped, x, targets, **kw)
    assert model.calls == [1, 4] and result.labels[0] == "cat" and result.labels[2] == "cow"
    for k, t in enumerate(targets):
        single = occlusion_sensitivity(model, x, [t], **kw)
        _close(result.maps[k], single.maps[0])
    default = occlusion_sensitivity(model, x, **kw)  # every predicted class, largest first
    with torch.no_grad():
        pred = model(x[None])["out"][0].argmax(0)
    counts = torch.bincount(pred.flatten(), minlength=4)
    assert default.labels[0].startswith(f"class {int(counts.argmax())}")


def test_int_targets_on_a_segmenter_are_refused_naming_the_target_objects():
    with pytest.raises(TypeError, match="SegmentationTarget"):
        occlusion_sensitivity(CountingSeg(), torch.rand(3, 32, 32), [1], output="probability", mask_size=16)
    with pytest.raises(TypeError, match="is a detection target"):
        occlusion_sensitivity(CountingSeg(), torch.rand(3, 32, 32), [DetectionTarget((0, 0, 4, 4), 1)])
    with pytest.raises(ValueError, match="targets and top_k"):
        occlusion_sensitivity(FakeDetector(), torch.rand(3, 32, 32), [DetectionTarget((0, 0, 4, 4), 1)], top_k=1)
    with pytest.raises(ValueError, match="min_score"):
        occlusion_sensitivity(FakeDetector(), torch.rand(3, 32, 32), min_score="high")
    with pytest.raises(ValueError, match="finds nothing"):
        occlusion_sensitivity(FakeDetector(), torch.rand(3, 32, 32), min_score=1.5)


def test_gradient_methods_take_detection_targets(image):
    model = FakeDetector()
    t = DetectionTarget(BOXES[1], 2)
    res = saliency(model, image, [t, DetectionTarget(BOXES[0], 1)])
    assert res.maps.shape == (2, 32, 32) and np.isfinite(res.maps).all()
    # The score of box 1 depends on its own pixels only (its conv reaches 1 px further).
    outside = res.maps[0].copy()
    outside[15:32, 15:32] = 0
    assert outside.max() == 0 and res.maps[0].max() > 0
    cam = grad_cam(model, image, [t], layer="conv")
    assert cam.maps.shape == (1, 32, 32)


def test_deletion_insertion_scores_a_detection_target(image):
    model = FakeDetector()
    t = DetectionTarget(BOXES[0], 1)
    smap = np.random.default_rng(0).random((32, 32))
    curve = deletion_insertion(model, image, smap, t, steps=4, mask_value=0.5)
    with torch.no_grad():
        on_image = float(t(model(image[None]))[0])
        on_fill = float(t(model(torch.full((1, 3, 32, 32), 0.5)))[0])
    _close(curve.deletion_scores[[0, -1]], np.array([on_image, on_fill]))
    _close(curve.insertion_scores[[0, -1]], np.array([on_fill, on_image]))


def _minmax(a: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's scale_cam_image without its 1e-7 (our score is a mean, theirs a sum: ours is tiny)."""
    a = a - a.min()
    return a / a.max()


def test_grad_cam_with_a_segmentation_target_equals_pytorch_grad_cam():
    torch.manual_seed(0)
    seg = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                    num_classes=3).eval()
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(5))
    mask = np.zeros((64, 64), bool)
    mask[8:40, 16:56] = True
    layer = "backbone.12"
    ours = grad_cam(seg, x, [SegmentationTarget(1, mask, output="logit")], layer=layer)

    class Out(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, t):
            return self.m(t)["out"]

    wrapped = Out(seg)
    with GradCAM(model=wrapped, target_layers=[dict(wrapped.m.named_modules())[layer]]) as cam:
        theirs = cam(input_tensor=x[None], targets=[SemanticSegmentationTarget(1, mask.astype(np.float32))])[0]
    from occlusion_widget.engine.result import upsample_maps

    # pytorch-grad-cam: scale the layer's CAM to [0, 1], resize (bilinear), scale again after aggregating.
    ours_norm = _minmax(upsample_maps(_minmax(ours.grid[0])[None], (64, 64), "bilinear")[0])
    assert np.ptp(theirs) > 0.5
    np.testing.assert_allclose(ours_norm, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,kind", [("lraspp_mobilenet_v3_large", "segmentation"),
                                       ("fasterrcnn_mobilenet_v3_large_fpn", "detection")])
def test_from_torchvision_wraps_segmenters_and_detectors_offline(name, kind):
    from occlusion_widget import DetectorModule, from_torchvision

    model = from_torchvision(name, weights=None, weights_backbone=None)
    assert model.labels[0] == "__background__" and len(model.labels) == (21 if kind == "segmentation" else 91)
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.module(x[None])
    if kind == "segmentation":
        assert model.input_size == (520, 520) and out["out"].shape == (1, 21, 64, 64)
    else:
        assert isinstance(model.module, DetectorModule) and set(out[0]) >= {"boxes", "labels", "scores"}

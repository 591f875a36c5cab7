"""The widget with a segmenter and a detector (the demo models of ``engine.targets_demo``): default targets
as the engine picks them, the synced boxes / mask / legend, clicks and dragged regions (the trait changes the
browser makes), the mask preview of the occluded outputs, and the methods and compare view for these targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets
from conftest import synced_maps, wait_done

from occlusion_widget import ImageClassifier, occlusion_sensitivity
from occlusion_widget.engine import mask_box, score_occluded
from occlusion_widget.engine.targets import DetectionTarget, SegmentationTarget, targets_output
from occlusion_widget.engine.targets_demo import CATEGORIES, load_demo_models, synthetic_scene
from occlusion_widget.methods import grad_cam
from occlusion_widget.widget import OcclusionWidget

SWEEP = {"mask_size": 16, "stride": 8}  # 64x64 scenes: 8x8 positions, well under a second per map


@pytest.fixture(scope="module")
def demo():
    torch.set_num_threads(1)
    seg, det = load_demo_models()
    image = synthetic_scene(np.random.default_rng(0))[0]
    return ImageClassifier(seg, (64, 64), CATEGORIES, name="seg"), ImageClassifier(det, (64, 64), CATEGORIES, name="det"), image


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(b)))


def test_a_segmenter_shows_its_mask_legend_and_one_tab_per_predicted_class(make_widget, demo) -> None:
    seg, _, image = demo
    w = make_widget(seg, image, **SWEEP)
    wait_done(w)
    with torch.no_grad():
        pred = seg.module(image[None])["out"][0].argmax(0).numpy()
    assert w.output_kind == "segmentation"
    mask = np.frombuffer(w.segmentation["data"], np.uint8).reshape(w.segmentation["shape"])
    np.testing.assert_array_equal(mask, pred)
    counts = np.bincount(pred.ravel(), minlength=3)
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c]]
    assert [e["id"] for e in w.segmentation["legend"]] == order
    assert [c["name"] for c in w.classes] == [CATEGORIES[c] for c in order], "tabs: class names, largest area first"
    assert len({tuple(e["color"]) for e in w.segmentation["legend"]}) == len(order)
    engine = occlusion_sensitivity(seg, image, top_k=3, **SWEEP)  # the engine's defaults for a segmenter
    _close(synced_maps(w), engine.maps)


def test_a_dragged_region_adds_a_tab_whose_map_is_the_engines_for_that_target(make_widget, demo) -> None:
    seg, _, image = demo
    w = make_widget(seg, image, **SWEEP)
    wait_done(w)
    label = w.classes[1]["target"]["label"]
    box = [8.0, 4.0, 40.0, 30.0]
    # What the browser sets after a drag in region mode: every tab's target plus the region, the new tab selected.
    w.set_state({"target_objects": [c["target"] for c in w.classes] + [{"kind": "segmentation", "label": label, "region": box}],
                 "selected": len(w.classes)})
    wait_done(w)
    assert w.selected == 2 and w.classes[2]["name"] == f"{CATEGORIES[label]} in (8, 4, 40, 30)"
    engine = occlusion_sensitivity(seg, image, targets=[SegmentationTarget(label, region=tuple(box))], **SWEEP)
    _close(synced_maps(w)[2], engine.maps[0])
    assert w.explain_region((0, 0, 20, 20), label=0) == 3 and w.target_objects[3]["region"] == [0, 0, 20, 20]


def test_a_detector_shows_its_boxes_and_a_click_selects_or_adds_the_objects_tab(make_widget, demo) -> None:
    _, det, image = demo
    w = make_widget(det, image, **SWEEP)
    wait_done(w)
    with torch.no_grad():
        out = det.module(image[None])[0]
    assert w.output_kind == "detection"
    scores = [d["score"] for d in w.detections]
    assert scores == sorted(scores, reverse=True) and len(scores) == len(out["scores"])
    np.testing.assert_allclose(scores, np.sort(out["scores"].numpy())[::-1], rtol=1e-6)
    best = [d for d in w.detections if d["score"] >= 0.5]
    assert [c["name"] for c in w.classes] == [f"{CATEGORIES[d['label']]} {d['score']:.2f}" for d in best]
    # A click on a box without a tab: the browser appends its target and selects it.
    other = w.detections[len(best)]
    w.set_state({"target_objects": [c["target"] for c in w.classes] + [{"kind": "detection", "box": other["box"],
                 "label": other["label"], "score": other["score"]}], "selected": len(best)})
    wait_done(w)
    assert w.selected == len(best) and w.classes[-1]["name"] == other["name"]
    engine = occlusion_sensitivity(det, image, targets=[DetectionTarget(other["box"], other["label"])], **SWEEP)
    _close(synced_maps(w)[-1], engine.maps[0])
    assert w.explain_detection(0) == 0 and w.selected == 0, "a box with a tab: its tab is selected, nothing added"
    assert len(w.target_objects) == len(best) + 1


def test_the_preview_shows_the_occluded_outputs_and_the_engines_target_scores(make_widget, demo) -> None:
    seg, det, image = demo
    for model in (det, seg):
        w = make_widget(model, image, **SWEEP)
        wait_done(w)
        p = w.request_preview(34, 40)
        assert "error" not in p, p
        box = mask_box((40, 34), (16, 16), (64, 64), True)
        assert p["box"] == list(box)
        targets = [DetectionTarget(c["target"]["box"], c["target"]["label"]) if model is det
                   else SegmentationTarget(c["target"]["label"]) for c in w.classes]
        with torch.no_grad():  # (score_occluded scores clean and occluded in one batch: prepare the regions first)
            scorer = targets_output(targets).prepare(model.module(image[None]))
        base, occluded = score_occluded(model, image, [box], output=scorer, mask_size=16)
        np.testing.assert_allclose([t["base"] for t in p["targets"]], base, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([t["occluded"] for t in p["targets"]], occluded[0], rtol=1e-5, atol=1e-6)
        y0, x0, y1, x1 = box
        hidden = image.clone()
        hidden[:, y0:y1, x0:x1] = image.mean(dim=(1, 2))[:, None, None]
        with torch.no_grad():
            out = model.module(hidden[None])
        if model is det:
            np.testing.assert_allclose(sorted(d["score"] for d in p["detections"]), sorted(out[0]["scores"].tolist()), rtol=1e-5)
        else:
            mask = np.frombuffer(p["mask"], np.uint8).reshape(p["shape"])
            np.testing.assert_array_equal(mask, out["out"][0].argmax(0).numpy())


def test_methods_and_compare_view_work_for_detections(make_widget, demo) -> None:
    _, det, image = demo
    w = make_widget(det, image, method="grad_cam", **SWEEP)
    wait_done(w)
    target = w.classes[0]["target"]
    ref = grad_cam(det, image, targets=[DetectionTarget(target["box"], target["label"])])
    _close(synced_maps(w), ref.maps)
    w.compare = True
    w.wait(120)
    assert w.comparison_data["status"] == "done", w.comparison_data
    assert all(p["deletion_auc"] is not None for p in w.comparison_data["panels"])


def test_bad_targets_are_refused_with_the_allowed_values(make_widget, demo) -> None:
    seg, det, image = demo
    w = make_widget(det, image, **SWEEP)
    with pytest.raises(traitlets.TraitError, match="segmentation target, but the model is a detection"):
        w.target_objects = [{"kind": "segmentation", "label": 1, "region": None}]
    with pytest.raises(traitlets.TraitError, match="box"):
        w.target_objects = [{"kind": "detection", "box": [5, 5, 1, 1], "label": 1}]
    w.targets = [99]
    w.wait(30)
    assert w.status == "error" and "indices into the widget's detections" in w.error
    w.min_score = 2.0
    w.targets = None
    w.wait(30)
    assert w.status == "error" and "min_score=2.0" in w.error
    with pytest.raises(ValueError, match="bool mask region"):
        OcclusionWidget(seg, image, targets=[SegmentationTarget(1, region=np.ones((64, 64), bool))])
    u = make_widget(seg, image, targets=[SegmentationTarget(2, region=(0, 0, 32, 32))], **SWEEP)
    wait_done(u)
    assert u.target_objects == [{"kind": "segmentation", "label": 2, "region": [0.0, 0.0, 32.0, 32.0]}]

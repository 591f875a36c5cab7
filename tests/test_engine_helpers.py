"""The engine functions the widget uses instead of redoing engine arithmetic:
resolve_sizes, mask_box, worst_position and score_occluded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_close, tiny_model
from helpers import small_cnn

from occlusion_widget import methods, occlusion_sensitivity
from occlusion_widget.engine import MaskGrid, mask_box, resolve_sizes, score_occluded, worst_position
from occlusion_widget.engine.classifier import ImageClassifier


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(3, 32, 40)


def test_resolve_sizes_is_the_sweeps_auto_rule(x):
    assert resolve_sizes((224, 300)) == ((45, 60), (22, 30)), "20% / 10% of each axis, rounded"
    assert resolve_sizes((1, 100)) == ((1, 20), (1, 10)), "a 1-D signal's height stays 1"
    assert resolve_sizes((4, 4)) == ((1, 1), (1, 1)), "at least 1"
    assert resolve_sizes((50, 50), 7, (3, 5)) == ((7, 7), (3, 5))
    res = occlusion_sensitivity(tiny_model(), x)
    assert (res.params.mask_size, res.params.stride) == resolve_sizes(tuple(x.shape[1:]))


@pytest.mark.parametrize("mask, stride, words", [
    ("big", "auto", "mask_size='big'"), (0, "auto", "mask_size=0"), ((41, 3), "auto", "larger than the input"),
    ("auto", 2.5, "stride=2.5"), ("auto", True, "stride=True"),
])
def test_resolve_sizes_refuses_bad_values(mask, stride, words):
    with pytest.raises((TypeError, ValueError), match=words.replace("(", r"\(").replace(")", r"\)")):
        resolve_sizes((32, 40), mask, stride)


@pytest.mark.parametrize("clipping", [True, False])
def test_mask_box_at_each_positions_centre_is_the_sweeps_box(clipping):
    shape, (mask, stride) = (32, 40), ((9, 6), (4, 5))
    grid = MaskGrid.build(shape, mask, stride, clipping)
    for iy in range(grid.shape[0]):
        for ix in range(grid.shape[1]):
            box = grid.boxes[iy, ix]
            centre = (iy * stride[0], ix * stride[1]) if clipping else (box[0] + mask[0] // 2, box[1] + mask[1] // 2)
            assert mask_box(centre, mask, shape, clipping) == tuple(int(v) for v in box)


@pytest.mark.parametrize("clipping", [True, False])
@pytest.mark.parametrize("centre", [(-1e9, 5.0), (1e9, 1e9), (-3.0, -7.5), (16.5, 1e12)])
def test_mask_box_clamps_far_centres_and_never_inverts(centre, clipping):
    y0, x0, y1, x1 = mask_box(centre, (9, 6), (32, 40), clipping)
    assert 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 40
    if not clipping:
        assert (y1 - y0, x1 - x0) == (9, 6), "without clipping the mask stays full size"


@pytest.mark.parametrize("centre, mask, words", [
    ((float("nan"), 3.0), (4, 4), "center_yx"), ((1.0,), (4, 4), "center_yx"), ((1.0, 2.0), (0, 4), "mask_size"),
])
def test_mask_box_refuses_bad_input(centre, mask, words):
    with pytest.raises(ValueError, match=words):
        mask_box(centre, mask, (32, 40), True)


@pytest.mark.parametrize("clipping", [True, False])
def test_worst_position_centres_the_most_important_box(x, clipping):
    res = occlusion_sensitivity(tiny_model(), x, top_k=3, mask_size=(9, 6), stride=(4, 5), mask_clipping=clipping)
    for k in range(3):
        y, xx = worst_position(res, k)
        box = mask_box((y, xx), res.params.mask_size, tuple(x.shape[1:]), clipping)
        assert box == tuple(int(v) for v in res.most_important(k).box)
    with pytest.raises(ValueError, match="k=3"):
        worst_position(res, 3)


def test_worst_position_of_a_gradient_map_is_its_peak(x):
    res = methods.saliency(tiny_model(), x, top_k=2)
    for k in range(2):
        y, xx = worst_position(res, k)
        assert res.maps[k, y, xx] == res.maps[k].max()


def test_worst_position_refuses_a_map_with_nothing_computed(x):
    res = methods.saliency(tiny_model(), x)
    empty = type(res)(**{**{f: getattr(res, f) for f in res.__dataclass_fields__}, "maps": np.full_like(res.maps, np.nan)})
    with pytest.raises(ValueError, match="no finite value"):
        worst_position(empty, 0)


@pytest.mark.parametrize("mask_value", ["auto", 0.25, "blur"])
def test_score_occluded_gives_the_sweeps_scores(x, mask_value):
    model = tiny_model()
    res = occlusion_sensitivity(model, x, top_k=3, mask_size=(9, 6), stride=(8, 10), mask_value=mask_value)
    boxes = res.boxes.reshape(-1, 4)
    base, scores = score_occluded(model, x, boxes, mask_value=mask_value, mask_size=(9, 6))
    assert base.shape == (10,) and scores.shape == (len(boxes), 10)
    assert_close(base[res.targets], res.base_scores)
    drops = base[res.targets][:, None] - scores[:, res.targets].T
    assert_close(drops, res.grid.reshape(3, -1), scale=res.base_scores)
    none, again = score_occluded(model, x, boxes[:2], mask_value=mask_value, mask_size=(9, 6), with_base=False)
    assert none is None
    assert_close(again, scores[:2])


def test_score_occluded_leaves_the_users_module_as_it_was(x):
    module = small_cnn().train()
    base, scores = score_occluded(ImageClassifier(module, (32, 40)), x, [0, 0, 8, 8], output="logit")
    assert module.training, "the user's module stays in training mode"
    with torch.inference_mode():
        expected = module.eval()(x[None])[0].numpy()
    assert_close(base, expected)


def test_score_occluded_of_a_signal_takes_spans():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3, padding=1), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3)).eval()
    signal = torch.rand(2, 50)
    res = occlusion_sensitivity(net, signal, targets=[0, 1, 2], mask_size=10, stride=10, output="logit")
    base, scores = score_occluded(net, signal, res.boxes, output="logit")
    assert_close(base[:, None] - scores.T, res.grid, scale=base)


@pytest.mark.parametrize("boxes, words", [
    ([[0, 0, 0, 5]], "empty or outside"), ([[0, 0, 5, 41]], "empty or outside"), ([[-1, 0, 5, 5]], "empty or outside"),
    ([[0.0, 0, 5, 5]], "integer"), ([[0, 0, 5]], "integer"), (np.zeros((0, 4), int), "integer"),
])
def test_score_occluded_refuses_bad_boxes(x, boxes, words):
    with pytest.raises(ValueError, match=f"boxes: .*{words}|boxes: expected {words}"):
        score_occluded(tiny_model(), x, boxes)

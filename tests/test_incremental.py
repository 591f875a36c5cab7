"""Exact incremental inference: equal to the full recompute on every supported architecture."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from occlusion_widget.efficientnet_lite import EfficientNetLite0
from occlusion_widget.engine.fills import occlude_boxes
from occlusion_widget.engine.grid import MaskGrid
from occlusion_widget.engine.incremental import (
    IncrementalEvaluator,
)
from occlusion_widget.engine.incremental.boxes import normalize_boxes, window_boxes
from occlusion_widget.engine.incremental.graph import Window
from occlusion_widget.models import Normalize

# Both paths compute the same sums in a different order: they agree to float32
# rounding, relative to the magnitude of what is compared. Measured (2-core CPU,
# torch 2.14): network outputs <= 3.4e-5 of their largest value over the
# architectures below; maps <= 1.3e-5 of the map's largest value in the sweep
# test, 3e-6 for the default EfficientNet-Lite0 on the sample image (auto
# parameters), 2.8e-5 for an untrained ResNet-18 on 224 px.
TOL = 1e-4
TOL_MAP = 5e-5


pytestmark = pytest.mark.usefixtures("one_thread")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _wrap(net: nn.Module, size: int, seed: int = 0) -> nn.Module:
    """Normalize + net in eval mode, channels_last, with batch-norm statistics taken from
    random images (as after training, every batch norm then normalises its input: a
    random network keeps its activations alive and its output depends on the input)."""
    g = torch.Generator().manual_seed(seed)
    module = nn.Sequential(Normalize(*IMAGENET), net)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # cumulative average over the calibration batch
        m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.data.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.4)
    if bns:
        with torch.no_grad():
            module.train()(torch.rand(6, 3, size, size, generator=g))
    return module.eval().to(memory_format=torch.channels_last)


def _vgg16(classes: int = 10) -> nn.Module:
    # torchvision's VGG-16 (config "D") with a small head: the 25088x4096
    # classifier only slows the test down and sits after the dense switch anyway.
    from torchvision.models.vgg import cfgs, make_layers

    net = nn.Sequential(make_layers(cfgs["D"]), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))
    for m in net.modules():  # torchvision's VGG initialisation keeps activations alive through 13 convs
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 64, 9, 5),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=10), 48, 9, 6),
    "vgg16": (_vgg16, 32, 7, 4),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), 48, 9, 5),
    "efficientnet_lite0": (lambda: EfficientNetLite0(num_classes=10, image_size=57), 57, 9, 5),
}


def _calibrate(module: nn.Module, x: torch.Tensor) -> None:
    """Scale the last linear layer so that the clean logits have unit spread (random
    networks often shrink their activations, and a tiny output proves nothing)."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return
    with torch.inference_mode():
        out = module(x[None].contiguous(memory_format=torch.channels_last))
        spread = float(out.std()) if out.numel() > 1 else float(out.abs().max())
        if spread > 0:
            linears[-1].weight.mul_(1 / spread)
            if linears[-1].bias is not None:
                linears[-1].bias.mul_(1 / spread)


def _positions(grid: MaskGrid, n_random: int, rng: np.random.Generator) -> np.ndarray:
    """All edge positions (first/last row and column) and some random inner ones."""
    gy, gx = grid.shape
    iy, ix = np.meshgrid(np.arange(gy), np.arange(gx), indexing="ij")
    edge = ((iy == 0) | (iy == gy - 1) | (ix == 0) | (ix == gx - 1)).ravel()
    flat = grid.boxes.reshape(-1, 4)
    inner = np.flatnonzero(~edge)
    pick = rng.choice(inner, size=min(n_random, inner.size), replace=False)
    return np.concatenate([flat[edge], flat[pick]])


def _reference(module, x, fill, boxes):
    rows, cols = torch.arange(x.shape[1]), torch.arange(x.shape[2])
    occluded = occlude_boxes(x, fill, torch.as_tensor(boxes), rows, cols).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return module(occluded)


def _assert_exact(module, size, mask, stride, seed=0, batch=24, n_random=12, fill_kind="mean"):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    x = torch.rand(3, size, size)
    fill = x.mean((1, 2), keepdim=True).expand_as(x).contiguous() if fill_kind == "mean" else torch.rand_like(x)
    _calibrate(module, x)
    ev = IncrementalEvaluator.build(module, x, fill)
    with torch.inference_mode():
        clean = module(x[None].contiguous(memory_format=torch.channels_last))
    change = 0.0
    for clipping in (True, False):
        grid = MaskGrid.build((size, size), (mask, mask), (stride, stride), clipping)
        boxes = _positions(grid, n_random, rng)
        for start in range(0, len(boxes), batch):
            b = boxes[start : start + batch]
            ref = _reference(module, x, fill, b)
            got = ev(torch.as_tensor(b))
            assert got.shape == ref.shape
            scale = float(ref.abs().max())  # relative to the output's magnitude
            diff = float((got - ref).abs().max())
            assert diff <= TOL * scale, f"clipping={clipping}: max abs diff {diff:.3g} (scale {scale:.3g})"
            change = max(change, float((ref - clean).abs().max()) / scale)
    # The test means something only if occluding changes the output.
    assert change > 100 * TOL
    flops = ev.flops
    assert 0 < flops.ideal <= flops.executed < flops.full  # some layers really ran on crops
    return ev


@pytest.mark.parametrize("name", list(MODELS))
def test_exact_on_supported_architectures(name):
    make, size, mask, stride = MODELS[name]
    torch.manual_seed(0)
    _assert_exact(_wrap(make(), size), size, mask, stride)


class Zoo(nn.Module):
    """Less common ops: stride/dilation/groups, padding='same' (even kernel), ceil-mode max pool,
    avg pool with padding, explicit and functional padding, concat, pointwise products."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.c3 = nn.Conv2d(8, 8, 4, padding="same", bias=False)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, 1, 1)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.c4 = nn.Conv2d(16, 8, 2, stride=2)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.c1(x), inplace=True)
        a = self.c2(x)
        b = torch.sigmoid(self.c3(x))
        y = torch.cat([a * b, x - 0.5], dim=1)
        y = self.pool(F.hardtanh(y))
        y = self.avg(y) * 2.0 + y
        y = self.bn(self.c4(self.pad(y)))
        y = F.max_pool2d(F.pad(y, (1, 1, 1, 1)), 2)
        y = y.relu_()
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class SqueezeExcite(nn.Module):
    """A global gate multiplies a local tensor: the dense switch happens at the product."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.fc1 = nn.Conv2d(16, 4, 1)
        self.fc2 = nn.Conv2d(4, 16, 1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = F.silu(self.c1(x))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        x = self.c2(x * gate)
        return self.head(x.amax((2, 3)))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("size", [37, 40])
def test_exact_on_uncommon_ops(size):
    torch.manual_seed(1)
    _assert_exact(Zoo().eval(), size, 7, 3, fill_kind="random")


def test_exact_with_dense_switch_at_a_global_gate():
    torch.manual_seed(2)
    ev = _assert_exact(SqueezeExcite().eval(), 24, 5, 3)
    plans = ev.plan(np.array([[0, 0, 5, 5]]))
    modes = {info.node.name: p.mode for info, p in zip(ev.infos, plans, strict=True)}
    assert modes["c1"] == "patch" and modes["c2"] == "dense"


def test_mask_covering_everything_and_single_positions():
    torch.manual_seed(3)
    module = _wrap(torchvision.models.resnet18(num_classes=10), 32)
    x = torch.rand(3, 32, 32)
    fill = torch.full_like(x, 0.5)
    ev = IncrementalEvaluator.build(module, x, fill)
    boxes = np.array([[0, 0, 32, 32], [31, 31, 32, 32], [0, 0, 1, 1], [5, 9, 6, 30], [0, 0, 1, 1], [3, 3, 3, 9]])
    for b in (boxes, boxes[:1], boxes[1:2], boxes[-1:]):  # the last box is empty: nothing changes
        ref = _reference(module, x, fill, b)
        assert float((ev(b) - ref).abs().max()) <= TOL * float(ref.abs().max())
    assert ev(np.zeros((0, 4), dtype=np.int64)).shape == (0, 10)
    # Boxes sticking out of the image are cut to it.
    assert float((ev(np.array([[-5, 28, 4, 40]])) - ev(np.array([[0, 28, 4, 32]]))).abs().max()) == 0


def test_fixed_shapes_keep_every_batch_the_same_shape():
    torch.manual_seed(4)
    module = _wrap(torchvision.models.resnet18(num_classes=10), 40)
    x = torch.rand(3, 40, 40)
    fill = torch.zeros_like(x)
    grid = MaskGrid.build((40, 40), (9, 9), (4, 4), True)
    boxes = grid.boxes.reshape(-1, 4)
    ev = IncrementalEvaluator.build(module, x, fill)
    ev.fix_shapes(boxes, batch_size=16)
    shapes = set()
    for start in (0, 40, 90, len(boxes) - 5):  # corner, middle, last (short) batch
        b = boxes[start : start + 16]
        plans = ev.plan(np.concatenate([b, np.repeat(b[-1:], 16 - len(b), axis=0)]))
        shapes.add(tuple((p.mode, p.size) for p in plans))
        ref = _reference(module, x, fill, b)
        got = ev(b)
        assert got.shape[0] == len(b)
        assert float((got - ref).abs().max()) <= TOL * float(ref.abs().max())
    assert len(shapes) == 1


def test_cost_estimate_and_flop_counts():
    torch.manual_seed(5)
    module = _wrap(torchvision.models.resnet18(num_classes=10), 96)
    x = torch.rand(3, 96, 96)
    ev = IncrementalEvaluator.build(module, x, x.clone())
    small, large = ev.estimated_cost_ratio(5), ev.estimated_cost_ratio((48, 48))
    assert 0 < small < large <= 1.0
    assert ev.estimated_cost_ratio(96) == pytest.approx(1.0)
    report = ev.flop_report(9)
    assert report.ideal <= report.executed <= report.full
    assert ev.full_macs == report.full // 32


def test_window_box_formula():
    # 3x3 conv, stride 2, padding 1 on a 10-px axis (5 outputs): input [4, 5) reaches outputs 2
    # (window 3..5) only... and output 1 covers 1..3: not touched.
    win = Window((3, 3), (2, 2), (1, 1), (1, 1), (0, 0), 0.0, lambda p: p)
    box = window_boxes(normalize_boxes(np.array([[4, 4, 5, 5], [0, 0, 10, 10], [3, 3, 3, 9]])), win, (5, 5))
    assert box[0].tolist() == [2, 2, 3, 3]
    assert box[1].tolist() == [0, 0, 5, 5]
    assert box[2, 2] <= box[2, 0]  # an empty box stays empty
    # 1x1 stride-2 conv skips odd pixels: a dirty pixel at 3 changes nothing.
    win1 = Window((1, 1), (2, 2), (1, 1), (0, 0), (0, 0), 0.0, lambda p: p)
    assert window_boxes(normalize_boxes(np.array([[3, 3, 4, 4]])), win1, (5, 5))[0, 2] <= 0

"""Exact incremental inference, continued: models it refuses, strategy choice, bfloat16, trace
caching, and the sweep's incremental path against the full one (helpers in test_incremental.py)."""

import warnings

import numpy as np
import pytest
import torch
import torchvision
from test_incremental import TOL, TOL_MAP, Zoo, _assert_exact, _calibrate, _reference, _wrap
from torch import nn

from occlusion_widget.engine.fills import occlude_boxes
from occlusion_widget.engine.incremental import (
    AUTO_MAX_COST_RATIO,
    AUTO_MIN_MACS,
    IncrementalEvaluator,
    UnsupportedModel,
    graph,
    make_incremental_score,
    supports,
)
from occlusion_widget.engine.sweep import occlusion_sensitivity

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# Unsupported models fall back


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # fx cannot trace a branch on tensor values
            y = -y
        return self.fc(y.mean((2, 3)))


class Upsampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.up(self.conv(x)).mean((2, 3)))


class SharedInplace(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        z = y + 1
        y.relu_()  # the relu'd y is what the sum reads: aliasing matters
        return (z + y).mean((2, 3))


class ReflectPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return self.conv(x).mean((2, 3))


@pytest.mark.parametrize("model, reason", [
    (DataDependent(), "cannot trace"),
    (Upsampling(), "not supported before the dense switch"),
    (SharedInplace(), "in-place"),
    (ReflectPad(), "padding_mode"),
])
def test_unsupported_models_are_refused_with_a_reason(model, reason):
    x = torch.rand(3, 16, 16)
    with pytest.raises(UnsupportedModel, match=reason):
        IncrementalEvaluator.build(model.eval(), x, x)
    ok, why = supports(model.eval(), x)
    assert not ok and reason in why and "\n" not in why


def test_ops_after_the_dense_switch_are_free():
    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            return torch.special.expit(y).cumsum(1) * y.shape[0]  # unknown ops, batch size from a shape

    torch.manual_seed(6)
    _assert_exact(Tail().eval(), 16, 5, 3)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_make_incremental_score_strategies():
    torch.manual_seed(7)
    x = torch.rand(3, 16, 16)
    fill = torch.zeros_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_incremental_score(DataDependent().eval(), x, fill, strategy="auto", mask_size=(4, 4)) is None
        assert make_incremental_score(DataDependent().eval(), x, fill, strategy="full") is None
    with pytest.warns(UserWarning, match="cannot trace") as record:
        assert make_incremental_score(DataDependent().eval(), x, fill, strategy="incremental") is None
    assert len(record) == 1 and "\n" not in str(record[0].message)
    with pytest.warns(UserWarning, match="layer"):
        assert make_incremental_score(Zoo().eval(), x, fill, strategy="incremental", layer="c1") is None
    with pytest.raises(ValueError, match="strategy"):
        make_incremental_score(Zoo().eval(), x, fill, strategy="fast")
    # A tiny network: "auto" keeps the full path, "incremental" still obliges.
    assert make_incremental_score(Zoo().eval(), x, fill, strategy="auto", mask_size=(3, 3)) is None
    zoo = Zoo().eval()
    score = make_incremental_score(zoo, x, fill, "logit", strategy="incremental")
    boxes = torch.tensor([[0, 0, 3, 3], [5, 6, 9, 12]])
    ref = _reference(zoo, x, fill, boxes.numpy())
    torch.testing.assert_close(score(boxes), ref, rtol=TOL, atol=TOL * float(ref.abs().max()))


def test_auto_picks_incremental_only_when_cheaper():
    torch.manual_seed(8)
    module = _wrap(torchvision.models.resnet18(num_classes=10), 96)
    x = torch.rand(3, 96, 96)
    fill = x.mean((1, 2), keepdim=True).expand_as(x).contiguous()
    score = make_incremental_score(module, x, fill, "probability", strategy="auto", mask_size=(7, 7))
    assert score is not None
    boxes = torch.tensor([[0, 0, 4, 4], [40, 50, 47, 57], [89, 89, 96, 96]])
    ref = _reference(module, x, fill, boxes.numpy()).float().softmax(1)
    torch.testing.assert_close(score(boxes), ref, rtol=TOL, atol=TOL * float(ref.abs().max()))
    assert make_incremental_score(module, x, fill, strategy="auto", mask_size=(60, 60)) is None


def test_auto_refuses_global_attention_without_tracing(monkeypatch):
    # A ViT-like patch embedding (above AUTO_MIN_MACS) and global self-attention:
    # every token sees every other, so nothing stays clean; "auto" must decide
    # without paying for a trace and a clean run.
    class PatchAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 384, 16, stride=16)
            self.attn = nn.MultiheadAttention(384, 6, batch_first=True)
            self.head = nn.Linear(384, 10)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            return self.head(self.attn(t, t, t, need_weights=False)[0].mean(1))


    calls = []
    real = graph._ThreadAwareTracer.trace
    monkeypatch.setattr(graph._ThreadAwareTracer, "trace", lambda self, m: calls.append(1) or real(self, m))
    x = torch.rand(3, 224, 224)
    assert make_incremental_score(PatchAttention().eval(), x, x * 0, strategy="auto", mask_size=(16, 16)) is None
    assert calls == []


def test_bfloat16_autocast_matches_the_bfloat16_full_path():
    # The same code serves precision="bfloat16" (and CUDA autocast): the clean activations are
    # cached under autocast, so the result is what the full path computes in bfloat16.
    torch.manual_seed(9)
    module = _wrap(torchvision.models.resnet18(num_classes=10), 48)
    x = torch.rand(3, 48, 48)
    fill = x.mean((1, 2), keepdim=True).expand_as(x).contiguous()
    _calibrate(module, x)
    ev = IncrementalEvaluator.build(module, x, fill, autocast_dtype=torch.bfloat16)
    boxes = np.array([[0, 0, 5, 9], [20, 20, 29, 29], [40, 3, 48, 12]])
    rows, cols = torch.arange(48), torch.arange(48)
    occluded = occlude_boxes(x, fill, torch.as_tensor(boxes), rows, cols).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = module(occluded).float()
    got = ev(boxes).float()
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) <= 0.05 * scale
    assert float((got - _reference(module, x, fill, boxes)).abs().max()) <= 0.05 * scale  # and near float32


@pytest.mark.parametrize("gain", [1.0, 1e-5])  # a small output must not hide a stale trace
def test_trace_is_cached_and_refreshed_when_stale(monkeypatch, gain):
    class Switch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.flip = False

        def forward(self, x):
            y = self.conv(x)
            if self.flip:  # a Python attribute: fx bakes it into the graph
                y = -y
            return y.mean((2, 3)) * gain


    calls = []
    real = graph._ThreadAwareTracer.trace
    monkeypatch.setattr(graph._ThreadAwareTracer, "trace", lambda self, m: calls.append(1) or real(self, m))
    model = Switch().eval()
    x = torch.rand(3, 12, 12)
    IncrementalEvaluator.build(model, x, x * 0)
    IncrementalEvaluator.build(model, x, x * 0)
    assert len(calls) == 1
    model.flip = True
    _assert_exact(model, 12, 3, 2)
    assert len(calls) == 2


# ---------------------------------------------------------------------------------------------
# Through the public sweep

@pytest.mark.parametrize("clipping", [True, False])
def test_sweep_incremental_equals_full(clipping):
    torch.manual_seed(10)
    module = _wrap(torchvision.models.resnet18(num_classes=10), 64)
    x = torch.rand(3, 64, 64)
    _calibrate(module, x)
    kw = dict(mask_size=9, stride=8, mask_clipping=clipping, top_k=3, batch_size=32, device="cpu")
    full = occlusion_sensitivity(module, x, strategy="full", **kw)
    inc = occlusion_sensitivity(module, x, strategy="incremental", **kw)
    assert full.params.strategy == "full" and inc.params.strategy == "incremental"
    np.testing.assert_array_equal(inc.targets, full.targets)
    scale = float(np.abs(full.grid).max())
    assert scale > 1e-3  # occluding really changes the scores
    np.testing.assert_allclose(inc.grid, full.grid, rtol=TOL_MAP, atol=TOL_MAP * scale)
    np.testing.assert_allclose(inc.maps, full.maps, rtol=TOL_MAP, atol=TOL_MAP * float(np.abs(full.maps).max()))
    # "auto": ResNet-18 on 64 px is above AUTO_MIN_MACS and a 9 px mask changes a
    # small part of every layer (cost ratio well below AUTO_MAX_COST_RATIO), so it
    # must go incremental; a mask the size of the image must not.
    ev = IncrementalEvaluator.build(module, x, x.clone())
    assert ev.full_macs >= AUTO_MIN_MACS and ev.estimated_cost_ratio(9) < AUTO_MAX_COST_RATIO
    assert ev.estimated_cost_ratio(64) >= AUTO_MAX_COST_RATIO
    auto = occlusion_sensitivity(module, x, strategy="auto", **kw)
    assert auto.params.strategy == "incremental"
    np.testing.assert_allclose(auto.grid, full.grid, rtol=TOL_MAP, atol=TOL_MAP * scale)
    whole = occlusion_sensitivity(module, x, strategy="auto", **{**kw, "mask_size": 64})
    assert whole.params.strategy == "full"


def test_sweep_falls_back_with_one_warning():
    x = torch.rand(3, 16, 16)
    with pytest.warns(UserWarning, match="cannot trace") as record:
        result = occlusion_sensitivity(DataDependent().eval(), x, 0, mask_size=4, stride=4, output="logit",
                                       strategy="incremental")
    assert len([w for w in record if "strategy" in str(w.message)]) == 1
    assert result.params.strategy == "full"
    with pytest.raises(ValueError, match="strategy"):
        occlusion_sensitivity(DataDependent().eval(), x, 0, strategy="fast")

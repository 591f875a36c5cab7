"""Token-drop occlusion for ViTs: exact on the unoccluded input, equal to masking attention, boxes snapped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from occlusion_widget.engine.classifier import Normalize
from occlusion_widget.engine.token_drop import patch_aligned_boxes, token_drop_model, token_drop_scores

timm = pytest.importorskip("timm")
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

SMALL = dict(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=7)


def seeded(cls=VisionTransformer, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return cls(**{**SMALL, **kwargs}).eval()


def torchvision_vit() -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=7).eval()
    nn.init.normal_(net.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
    return net


def image() -> torch.Tensor:
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rel, atol=rel * float(b.abs().max()))


MODELS = {
    "torchvision": torchvision_vit,
    "timm class token": lambda: seeded(),
    "timm mean pooling": lambda: seeded(global_pool="avg", class_token=False),
    "timm registers": lambda: seeded(reg_tokens=2, no_embed_class=True),
    "deit distilled": lambda: seeded(VisionTransformerDistilled),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_no_token_dropped_is_the_models_own_output(name):
    net, x = MODELS[name](), image()
    with torch.no_grad():
        expected = net(x[None])
    empty = torch.tensor([[0, 0, 0, 0], [10, 20, 10, 30]])  # empty boxes: nothing hidden
    got = token_drop_scores(net, x, empty)
    assert got.shape == (2, 7)
    close(got, expected.expand(2, -1))
    # In a Sequential after pixel preprocessing, as from_torchvision / from_timm wrap it.
    norm = Normalize((0.5, 0.4, 0.3), (0.2, 0.3, 0.25))
    wrapped = nn.Sequential(norm, net).eval()
    with torch.no_grad():
        close(token_drop_scores(wrapped, x, empty[:1]), wrapped(x[None]))


def attention_masked(net: nn.Module, x: torch.Tensor, dropped: list[int]) -> torch.Tensor:
    """timm with an attention mask that no token may attend to the dropped patches: for class-token
    pooling the same output as removing them (norms and MLPs act on each token alone)."""
    with torch.no_grad():
        n = net.num_prefix_tokens + 16
        allowed = torch.ones(1, 1, n, n, dtype=torch.bool)
        allowed[..., [net.num_prefix_tokens + d for d in dropped]] = False
        return net.forward_head(net.forward_features(x[None], attn_mask=allowed))


@pytest.mark.parametrize("kind", ["timm class token", "timm registers"])
def test_dropping_equals_masking_the_dropped_tokens_out_of_attention(kind):
    net, x = MODELS[kind](), image()
    # Box rows 8..20, cols 40..64 -> patch rows 0..1, cols 2..3 (snapped outward); and one exact patch.
    boxes = torch.tensor([[8, 40, 20, 64], [16, 16, 32, 32]])
    got = token_drop_scores(net, x, boxes, batch_size=1)
    close(got[0:1], attention_masked(net, x, [2, 3, 6, 7]), 1e-4)
    close(got[1:2], attention_masked(net, x, [5]), 1e-4)
    assert (got[0] - got[1]).abs().max() > 1e-4  # different boxes, different scores


def test_mean_pooling_averages_the_kept_tokens_only():
    net, x = MODELS["timm mean pooling"](), image()
    got = token_drop_scores(net, x, torch.tensor([[0, 0, 16, 64]]))  # the top row of patches
    with torch.no_grad():
        t = net.norm_pre(net._pos_embed(net.patch_embed(x[None])))[:, 4:]  # the 12 other patches
        expected = net.head(net.fc_norm(net.norm(net.blocks(t)).mean(dim=1)))
    close(got, expected)
    with pytest.raises(ValueError, match="covers every patch"):
        token_drop_scores(net, x, torch.tensor([[0, 0, 64, 64]]))
    # A class-token model may drop every patch: the class token is left.
    assert torch.isfinite(token_drop_scores(MODELS["timm class token"](), x, torch.tensor([[0, 0, 64, 64]]))).all()


def test_batching_by_token_count_keeps_the_order_and_the_values():
    net, x = torchvision_vit(), image()
    boxes = torch.tensor([[0, 0, 16, 16], [0, 0, 32, 32], [16, 16, 32, 32], [0, 0, 0, 0], [40, 40, 64, 64]])
    together = token_drop_scores(net, x, boxes, batch_size=64)
    alone = torch.cat([token_drop_scores(net, x, b[None]) for b in boxes])
    close(together, alone)
    reduce_calls: list[int] = []

    def reduce(raw: torch.Tensor, n: int) -> torch.Tensor:
        reduce_calls.append(n)
        return raw.softmax(dim=1)

    probs = token_drop_scores(net, x, boxes, reduce=reduce, batch_size=2)
    close(probs, together.softmax(dim=1))
    # The boxes drop 1, 4, 1, 0 and 4 tokens: one pass per count, (0) (1, 1) (4, 4).
    assert sorted(reduce_calls) == [1, 2, 2]


def test_boxes_snap_outward_or_are_refused():
    boxes = torch.tensor([[8, 40, 20, 64], [16, 16, 32, 32], [5, 5, 5, 9]])
    np.testing.assert_array_equal(patch_aligned_boxes(boxes, (16, 16), (64, 64)).numpy(),
                                  [[0, 32, 32, 64], [16, 16, 32, 32], [0, 0, 0, 0]])
    assert patch_aligned_boxes(boxes[1:], (16, 16), (64, 64), "strict").tolist() == [[16, 16, 32, 32], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"\[8, 40, 20, 64\] is not on the 16x16 patch grid"):
        patch_aligned_boxes(boxes, (16, 16), (64, 64), "strict")
    with pytest.raises(ValueError, match="snap='inward' is not allowed"):
        patch_aligned_boxes(boxes, (16, 16), (64, 64), "inward")
    with pytest.raises(ValueError, match=r"\[0, 0, 70, 10\] is reversed or outside the 64x64"):
        patch_aligned_boxes(torch.tensor([[0, 0, 70, 10]]), (16, 16), (64, 64))
    with pytest.raises(ValueError, match="none given"):
        patch_aligned_boxes(torch.zeros(0, 4), (16, 16), (64, 64))


def test_unsupported_models_and_inputs_are_refused():
    x = image()
    with pytest.raises(ValueError, match=r"needs a vision transformer.*torchvision.models.VisionTransformer.*got Conv2d"):
        token_drop_model(nn.Sequential(nn.Conv2d(3, 4, 3)))
    net = torchvision_vit()
    with pytest.raises(ValueError, match=r"patch_size=8 is not the model's patch size \(16, 16\)"):
        token_drop_scores(net, x, torch.tensor([[0, 0, 16, 16]]), patch_size=8)
    with pytest.raises(ValueError, match="takes 64x64 images, got 48x48"):
        token_drop_scores(net, x[:, :48, :48], torch.tensor([[0, 0, 16, 16]]))
    with pytest.raises(ValueError, match="batch_size=0"):
        token_drop_scores(net, x, torch.tensor([[0, 0, 16, 16]]), batch_size=0)
    with pytest.raises(ValueError, match="training mode"):
        token_drop_scores(net.train(), x, torch.tensor([[0, 0, 16, 16]]))


def test_the_sweep_drops_tokens_with_mask_value_drop():
    """``occlusion_sensitivity(..., mask_value="drop")``: every position's drop equals the model's score with
    that box's patches removed from its tokens (token_drop_scores on the same snapped boxes)."""
    from occlusion_widget import occlusion_sensitivity

    net, x = seeded().eval(), image()
    result = occlusion_sensitivity(net, x, top_k=2, mask_size=16, stride=16, mask_value="drop",
                                   output="logit", batch_size=4)
    assert result.params.mask_value == "drop" and result.params.strategy == "full"
    boxes = torch.as_tensor(result.boxes.reshape(-1, 4))
    with torch.no_grad():
        base = net(x[None])[0]
        scores = token_drop_scores(net, x, boxes)
    expected = (base[torch.as_tensor(result.targets)][:, None] - scores[:, result.targets].T).reshape(result.grid.shape)
    close(torch.as_tensor(result.grid), expected, rel=1e-4)
    # Dropping is not painting: the grey-mask map of the same positions differs.
    grey = occlusion_sensitivity(net, x, targets=list(result.targets), mask_size=16, stride=16, output="logit")
    assert not np.allclose(grey.grid, result.grid, atol=1e-3 * np.abs(grey.grid).max())


@pytest.mark.parametrize("kwargs, message", [
    ({"segments": "slic"}, "box masks"),
    ({"mask_shape": "gaussian"}, "box masks"),
    ({"strategy": "incremental"}, "strategy='auto' or 'full'"),
])
def test_drop_refuses_what_it_cannot_do(kwargs, message):
    from occlusion_widget import occlusion_sensitivity

    with pytest.raises(ValueError, match=message):
        occlusion_sensitivity(seeded().eval(), image(), mask_value="drop", mask_size=16, stride=16, **kwargs)


def test_drop_refuses_a_cnn():
    from occlusion_widget import occlusion_sensitivity

    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with pytest.raises((ValueError, TypeError), match="VisionTransformer|vision transformer|ViT"):
        occlusion_sensitivity(cnn, torch.rand(3, 32, 32), mask_value="drop", mask_size=16, stride=16)

"""Grad-CAM on token and channels-last layers: reshape, default layer, parity with pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from occlusion_widget.methods import grad_cam
from occlusion_widget.methods.gradcam import default_layer as spatial_default_layer
from occlusion_widget.methods.token_layers import (
    TokenReshape,
    default_layer,
    grad_cam_tokens,
    reshape_transform,
    resolve_layout,
)

timm = pytest.importorskip("timm")


def seeded(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def the_input(size: int = 224) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def vit_tokens_to_maps(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ViT recipe: drop the class token, 14x14 patches, channels first."""
    return t[:, 1:, :].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)


def channels_last_to_maps(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's Swin recipe for timm >= 0.9 (blocks already give (N, h, w, C))."""
    return t.permute(0, 3, 1, 2)


def pytorch_grad_cam(net: nn.Module, layer: nn.Module, x: torch.Tensor, target: int, reshape) -> tuple:
    """(raw CAM after ReLU, the package's normalised upsampled map), as the package computes them."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=net, target_layers=[layer], reshape_transform=reshape) as cam:
        scaled = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = np.maximum(cam.get_cam_image(x, layer, None, acts, grads), 0)[0]
    return raw, scaled[0]


def assert_parity(ours, raw: np.ndarray, scaled: np.ndarray, k: int = 0) -> None:
    assert raw.max() > 0 and ours.grid.shape[1:] == raw.shape
    np.testing.assert_allclose(ours.grid[k], raw, rtol=1e-4, atol=1e-4 * raw.max())
    m = ours.maps[k] - ours.maps[k].min()
    m = m / m.max()  # the package's min-max scaling (its 1e-7 guard would be 2e-4 of these small random-weight CAMs)
    assert np.abs(m - scaled).max() < 1e-4


def top5(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> tuple:
    """Our top-5 CAMs and the index of the first that is not all zero (random weights: ReLU often zeroes one)."""
    res = grad_cam_tokens(model, x[0], top_k=5, layer=layer, device="cpu")
    hits = [k for k, g in enumerate(res.grid) if g.max() > 0]
    assert hits, "every top-5 CAM is zero"
    return res, hits[0]


def test_vit_matches_pytorch_grad_cam():
    net, x = seeded("vit_tiny_patch16_224"), the_input()
    assert default_layer(net) == "blocks.11.norm1"
    assert reshape_transform(net, image=x[0]) == TokenReshape("tokens", 14, 14, prefix=1)
    ours, k = top5(net, x)
    assert ours.params.layer == "blocks.11.norm1" and ours.grid.shape == (5, 14, 14)
    raw, scaled = pytorch_grad_cam(net, net.blocks[-1].norm1, x, int(ours.targets[k]), vit_tokens_to_maps)
    assert_parity(ours, raw, scaled, k)


def test_swin_matches_pytorch_grad_cam():
    net, x = seeded("swin_tiny_patch4_window7_224"), the_input()
    assert default_layer(net) == "layers.3.blocks.1.norm1"
    assert reshape_transform(net, image=x[0]) == TokenReshape("nhwc", 7, 7)
    ours, k = top5(net, x)
    assert ours.grid.shape == (5, 7, 7)
    raw, scaled = pytorch_grad_cam(net, net.layers[-1].blocks[-1].norm1, x, int(ours.targets[k]),
                                   channels_last_to_maps)
    assert_parity(ours, raw, scaled, k)


def test_convnext_channels_last_and_channels_first_layers():
    net, x = seeded("convnext_atto", conv_mlp=False), the_input()  # atto's default MLP is channels-first
    inside = "stages.3.blocks.1.norm"  # LayerNorm on (N, h, w, C) inside a ConvNeXt block
    assert reshape_transform(net, inside, x[0]) == TokenReshape("nhwc", 7, 7)
    ours, k = top5(net, x, inside)
    raw, scaled = pytorch_grad_cam(net, net.stages[3].blocks[1].norm, x, int(ours.targets[k]), channels_last_to_maps)
    assert_parity(ours, raw, scaled, k)
    # A channels-first layer is passed through: the same CAM as grad_cam's.
    assert reshape_transform(net, "stages.3", x[0]) == TokenReshape("nchw", 7, 7)
    a, b = grad_cam_tokens(net, x[0], layer="stages.3", device="cpu"), grad_cam(net, x[0], layer="stages.3", device="cpu")
    np.testing.assert_allclose(a.grid, b.grid, rtol=1e-5, atol=1e-5 * np.abs(b.grid).max())
    assert default_layer(net, x[0]) == spatial_default_layer(net, x[0]) == "norm_pre"  # no attention: grad_cam's choice


def test_torchvision_vit_default_layer_is_the_last_block_norm_not_the_patch_embedding():
    x = the_input()
    big = torchvision.models.vit_b_16(weights=None).eval()
    # What grad_cam picks today ("the last spatial layer"): the patch-embedding convolution.
    assert spatial_default_layer(big, x[0]) == "conv_proj"
    assert default_layer(big) == "encoder.layers.encoder_layer_11.ln_1"
    # The same on a small model of the same class, where running Grad-CAM is cheap.
    torch.manual_seed(0)
    small = torchvision.models.VisionTransformer(224, 16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64).eval()
    nn.init.normal_(small.heads.head.weight, std=0.5)  # torchvision zero-initialises the head: no gradient at all
    assert default_layer(small) == "encoder.layers.encoder_layer_1.ln_1"
    assert reshape_transform(small, image=x[0]) == TokenReshape("tokens", 14, 14, prefix=1)
    ours, k = top5(small, x)
    layer = small.encoder.layers[-1].ln_1
    raw, scaled = pytorch_grad_cam(small, layer, x, int(ours.targets[k]), vit_tokens_to_maps)
    assert_parity(ours, raw, scaled, k)


def test_register_tokens_are_dropped():
    net = seeded("vit_tiny_patch16_224", reg_tokens=4, no_embed_class=True)
    assert net.num_prefix_tokens == 5
    shape = reshape_transform(net, image=the_input()[0])
    assert shape == TokenReshape("tokens", 14, 14, prefix=5)
    t = torch.arange(2 * 201 * 3, dtype=torch.float32).reshape(2, 201, 3)
    out = shape(t)
    assert out.shape == (2, 3, 14, 14)
    # patch (row 1, col 2) is token 5 + 1*14 + 2
    np.testing.assert_array_equal(out[:, :, 1, 2].numpy(), t[:, 5 + 16, :].numpy())


def test_resolve_layout_infers_prefix_and_grid_when_the_model_does_not_say():
    root = nn.Sequential(nn.Identity())
    assert resolve_layout(root, "0", (2, 197, 8), (224, 224)) == TokenReshape("tokens", 14, 14, 1)
    assert resolve_layout(root, "0", (2, 1 + 14 * 7, 8), (224, 112)) == TokenReshape("tokens", 14, 7, 1)
    assert resolve_layout(root, "0", (2, 7, 7, 96), (224, 224)) == TokenReshape("nhwc", 7, 7)
    assert resolve_layout(root, "0", (2, 96, 7, 7), (224, 224)) == TokenReshape("nchw", 7, 7)
    with pytest.raises(ValueError, match=r"gives \(2, 10\)"):
        resolve_layout(root, "0", (2, 10), (224, 224))
    with pytest.raises(ValueError, match="not a grid"):
        resolve_layout(root, "0", (2, 1000, 8), (224, 224))  # 984..1000 tokens: no square
    with pytest.raises(ValueError, match="tokens"):
        TokenReshape("tokens", 14, 14, 1)(torch.zeros(1, 50, 8))


def test_errors_name_the_layer():
    torch.manual_seed(0)
    small = torchvision.models.VisionTransformer(32, 16, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8).eval()
    x = torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match=r"layer='nope' is not a module.*encoder"):
        grad_cam_tokens(small, x, layer="nope", device="cpu")
    with pytest.raises(ValueError, match=r"layer='heads' gives \(1, 1000\)"):
        grad_cam_tokens(small, x, layer="heads", device="cpu")

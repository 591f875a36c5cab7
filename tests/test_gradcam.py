"""Grad-CAM against a hand computation and against pytorch-grad-cam; layer discovery
and layer activations."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from occlusion_widget.methods import default_layer, grad_cam, layer_activations, spatial_layers
from occlusion_widget.models import from_torchvision


def tiny_cnn(inplace: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=inplace), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 5),
    ).eval()


@pytest.fixture
def image():
    return torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(3))


def hand_grad_cam(model, layer_module, x, target, output="logit"):
    """Hooks: a forward hook keeps the activation, a tensor hook its gradient."""
    store = {}

    def forward_hook(_m, _inp, out):
        store["act"] = out.detach().clone()
        out.register_hook(lambda g: store.__setitem__("grad", g.detach()))

    handle = layer_module.register_forward_hook(forward_hook)
    try:
        out = model(x[None].clone().requires_grad_(True))
    finally:
        handle.remove()
    if output == "probability":
        out = out.softmax(1)
    out[0, target].backward()
    weights = store["grad"][0].mean(dim=(1, 2))  # (C,)
    return torch.relu((weights[:, None, None] * store["act"][0]).sum(0)).numpy(), weights.numpy()


@pytest.mark.parametrize("output", ["logit", "probability"])
def test_grad_cam_equals_hand_computation(image, output):
    model = tiny_cnn()
    res = grad_cam(model, image, targets=[2, 0], layer="4", output=output, device="cpu")
    assert res.method == "grad_cam" and res.params.layer == "4"
    assert res.grid.shape == (2, 6, 5) and res.maps.shape == (2, 12, 10)
    for k, t in enumerate([2, 0]):
        cam, weights = hand_grad_cam(model, model[4], image, t, output)
        np.testing.assert_allclose(res.grid[k], cam, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(res.extra["weights"][k], weights, rtol=1e-5, atol=1e-8)
    # maps: the grid upsampled bilinearly with half-pixel centres.
    up = F.interpolate(torch.from_numpy(res.grid)[None], size=(12, 10), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(res.maps, up.numpy(), rtol=1e-6)
    assert (res.grid >= 0).all() and res.grid.max() > 0


def test_layer_modified_in_place_later_is_seen_as_it_left_the_layer(image):
    """conv -> ReLU(inplace=True): the CAM of the conv is that of its own output, not the ReLU's."""
    plain, inplace = tiny_cnn(inplace=False), tiny_cnn(inplace=True)
    inplace.load_state_dict(plain.state_dict())
    expected, _ = hand_grad_cam(plain, plain[3], image, 1)
    res = grad_cam(inplace, image, targets=1, layer="3", device="cpu")
    np.testing.assert_allclose(res.grid[0], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.extra["activation"], plain[:4](image[None])[0].detach().numpy(), rtol=1e-6)


def test_default_layer_is_the_last_spatial_module(image):
    model = tiny_cnn()
    names = [name for name, _ in spatial_layers(model, image)]
    assert names == ["0", "1", "2", "3", "4"]  # the 1x1 pool and what follows are left out
    assert dict(spatial_layers(model, image))["4"] == (8, 6, 5)
    assert default_layer(model, image) == "4"
    assert grad_cam(model, image, device="cpu").params.layer == "4"
    wrapped = from_torchvision("resnet18", weights=None)
    assert default_layer(wrapped) == "1.layer4"


def test_grad_cam_equals_pytorch_grad_cam_on_resnet18_layer4():
    """pytorch-grad-cam (the ``grad-cam`` package) on torchvision ResNet-18, ``layer4``, target logit.

    Two comparisons, both to 1e-5:
    1. the raw 7x7 CAM: the package's own ``get_cam_image`` on the activations and
       gradients its hooks recorded, then ReLU (as ``compute_cam_per_layer`` does)
       vs our ``grid`` -- no normalisation on either side;
    2. the package's output (min-max scaled to [0, 1] per image, resized with
       ``cv2.resize`` bilinear, scaled again) vs our ``maps`` (bilinear) with the
       same min-max scaling ``(m - min) / (1e-7 + max)`` applied.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ours = grad_cam(net, x[0], layer="layer4", output="logit", device="cpu")
    target = int(ours.targets[0])
    with GradCAM(model=net, target_layers=[net.layer4]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = np.maximum(cam.get_cam_image(x, net.layer4, None, acts, grads), 0)[0]

    assert ours.grid.shape == (1, 7, 7) and raw.shape == (7, 7) and raw.max() > 0
    np.testing.assert_allclose(ours.grid[0], raw, rtol=1e-5, atol=1e-5 * raw.max())

    m = ours.maps[0] - ours.maps[0].min()
    m = m / (1e-7 + m.max())
    assert theirs.shape == (1, 224, 224)
    assert np.abs(m - theirs[0]).max() < 1e-5


def test_cancel_and_errors(image):
    model = tiny_cnn()
    cancel = threading.Event()
    cancel.set()
    partial = grad_cam(model, image, top_k=2, device="cpu", cancel=cancel)
    assert not partial.complete and np.isnan(partial.maps).all() and np.isnan(partial.extra["weights"]).all()
    cancel.clear()
    one = grad_cam(model, image, top_k=2, device="cpu", cancel=cancel, progress=lambda *a: cancel.set())
    full = grad_cam(model, image, top_k=2, device="cpu")
    assert not one.complete and np.isnan(one.maps[1]).all()
    np.testing.assert_allclose(one.maps[0], full.maps[0], rtol=1e-6, atol=1e-7 * np.abs(full.maps).max())
    with pytest.raises(ValueError, match="not a module"):
        grad_cam(model, image, layer="nope", device="cpu")
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        grad_cam(model, image, layer="7", device="cpu")  # the Linear layer
    with pytest.raises(ValueError, match="upsampling"):
        grad_cam(model, image, upsampling="lanczos", device="cpu")
    res = grad_cam(model, image, layer="4", device="cpu", upsampling="nearest")
    np.testing.assert_array_equal(res.maps[0], np.repeat(np.repeat(res.grid[0], 2, axis=0), 2, axis=1))  # 6x5 -> 12x10
    bilinear = res.with_upsampling("bilinear")
    up = F.interpolate(torch.from_numpy(res.grid)[None], size=(12, 10), mode="bilinear", align_corners=False)[0]
    assert bilinear.params.upsampling == "bilinear"
    np.testing.assert_allclose(bilinear.maps, up.numpy(), rtol=1e-6, atol=1e-7 * float(up.abs().max()))


def test_layer_activations_sorted_by_strength(image):
    model = tiny_cnn()
    out = model[:5](image[None])[0].detach().numpy()  # the output of module "4"
    acts = layer_activations(model, image, "4", device="cpu")
    order = np.argsort(-out.mean(axis=(1, 2)), kind="stable")
    assert acts.layer == "4" and acts.n_channels == 8
    np.testing.assert_array_equal(acts.channels, order)
    np.testing.assert_allclose(acts.activations, out[order], rtol=1e-6)
    assert np.all(np.diff(acts.strength) <= 0)

    top = layer_activations(model, image, "4", strength="max", top=3, device="cpu")
    np.testing.assert_array_equal(top.channels, np.argsort(-out.max(axis=(1, 2)), kind="stable")[:3])
    assert top.activations.shape == (3, 6, 5)
    tiles = top.mosaic(columns=2)
    assert tiles.shape == (2 * 7 - 1, 2 * 6 - 1) and np.isnan(tiles[6]).all()
    first = out[top.channels[0]]
    np.testing.assert_allclose(tiles[:6, :5], (first - first.min()) / (first.max() - first.min()), rtol=1e-6,
                               atol=1e-7)  # each tile scaled to [0, 1] on its own
    assert layer_activations(model, image, device="cpu").layer == "4"  # Grad-CAM's default layer


def test_shared_module_is_taken_at_its_last_call(image):
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, stride=2, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            x = self.act(self.b(self.act(self.a(x))))
            return self.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = Shared().eval()
    assert default_layer(model, image) == "act"
    acts = layer_activations(model, image, "act", device="cpu")
    assert acts.activations.shape == (2, 6, 5)
    assert grad_cam(model, image, device="cpu").grid.shape == (1, 6, 5)


def test_forward_passes_of_other_threads_are_ignored(image):
    """A widget may run a preview forward pass while Grad-CAM's hook is in place."""
    import threading as th

    class Interfere(nn.Module):
        """Identity; meanwhile another thread runs the hooked layer on another input."""

        def __init__(self, layer):
            super().__init__()
            self.layer = [layer]  # not a submodule

        def forward(self, x):
            other = th.Thread(target=lambda: self.layer[0](torch.rand_like(x)))
            other.start()
            other.join()
            return x

    base = tiny_cnn()
    model = nn.Sequential(*base[:5], Interfere(base[4]), *base[5:]).eval()
    expected, _ = hand_grad_cam(base, base[4], image, 2)
    np.testing.assert_allclose(grad_cam(model, image, targets=2, layer="4", device="cpu").grid[0], expected,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer_activations(model, image, "4", device="cpu").strength,
                               layer_activations(base, image, "4", device="cpu").strength, rtol=1e-6)


# --- token and channels-last layers (transformers) -------------------------------------------------------------


def small_vit(image_size: int = 64) -> nn.Module:
    """torchvision's VisionTransformer class, small: 4x4 patches of 16 px, 2 blocks."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=image_size, patch_size=16, num_layers=2, num_heads=2,
                                               hidden_dim=32, mlp_dim=64).eval()
    nn.init.normal_(net.heads.head.weight, std=0.5)  # torchvision zero-initialises the head: no gradient at all
    return net


def vit_input(size: int = 64) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(1))


def test_grad_cam_on_a_vit_picks_the_last_block_norm_and_equals_grad_cam_tokens():
    from occlusion_widget.methods.token_layers import TokenReshape, grad_cam_tokens

    net, x = small_vit(), vit_input()
    res = grad_cam(net, x, top_k=3, device="cpu")
    assert res.params.layer == "encoder.layers.encoder_layer_1.ln_1"  # not the patch embedding conv_proj
    assert res.extra["reshape"] == TokenReshape("tokens", 4, 4, prefix=1)
    assert res.grid.shape == (3, 4, 4) and res.maps.shape == (3, 64, 64)
    assert res.extra["weights"].shape == (3, 32) and res.extra["activation"].shape == (32, 4, 4)
    assert res.grid.max() > 0
    for reshape in (None, res.extra["reshape"]):
        ref = grad_cam_tokens(net, x, top_k=3, reshape=reshape, device="cpu")
        np.testing.assert_array_equal(ref.targets, res.targets)
        np.testing.assert_allclose(res.grid, ref.grid, rtol=1e-5, atol=1e-6 * np.abs(ref.grid).max())
        np.testing.assert_allclose(res.extra["weights"], ref.extra["weights"], rtol=1e-5,
                                   atol=1e-6 * np.abs(ref.extra["weights"]).max())


def test_grad_cam_default_layer_of_torchvision_vit_b_16():
    """vit_b_16 itself (12 blocks, 768 channels), at 64 px so that the pass is cheap."""
    torch.manual_seed(0)
    net = torchvision.models.vit_b_16(weights=None, image_size=64).eval()
    res = grad_cam(net, vit_input(), device="cpu")
    assert res.params.layer == "encoder.layers.encoder_layer_11.ln_1"
    assert res.grid.shape == (1, 4, 4)


def test_grad_cam_on_a_vit_equals_pytorch_grad_cam():
    """The same comparison as the ResNet one (raw CAM and the package's scaled map), with its ViT recipe."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net, x = small_vit(), vit_input()
    ours = grad_cam(net, x, top_k=5, device="cpu")
    k = next(i for i, g in enumerate(ours.grid) if g.max() > 0)  # random weights: ReLU may zero a CAM

    def recipe(t: torch.Tensor) -> torch.Tensor:  # drop the class token, 4x4 patches, channels first
        return t[:, 1:, :].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    layer = net.encoder.layers[-1].ln_1
    with GradCAM(model=net, target_layers=[layer], reshape_transform=recipe) as cam:
        theirs = cam(input_tensor=x[None], targets=[ClassifierOutputTarget(int(ours.targets[k]))])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = np.maximum(cam.get_cam_image(x[None], layer, None, acts, grads), 0)[0]
    assert raw.shape == (4, 4) and raw.max() > 0
    np.testing.assert_allclose(ours.grid[k], raw, rtol=1e-4, atol=1e-4 * raw.max())
    m = ours.maps[k] - ours.maps[k].min()
    m = m / m.max()  # the package's min-max scaling (its 1e-7 guard is not negligible on these small CAMs)
    assert np.abs(m - theirs[0]).max() < 1e-4
    # Its recipe passed as our reshape_transform: the same CAM.
    same = grad_cam(net, x, targets=int(ours.targets[k]), reshape_transform=recipe, device="cpu")
    np.testing.assert_allclose(same.grid[0], ours.grid[k], rtol=1e-5, atol=1e-6 * raw.max())


class ChannelsLast(nn.Module):
    """conv -> (N, h, w, C) -> LayerNorm -> back: a ConvNeXt block's inside, small."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x).permute(0, 2, 3, 1))  # (N, h, w, C)
        return self.fc(y.mean(dim=(1, 2)))


def test_grad_cam_on_a_channels_last_layer_equals_the_hand_computation():
    torch.manual_seed(0)
    model, x = ChannelsLast().eval(), torch.rand(3, 24, 16, generator=torch.Generator().manual_seed(2))
    res = grad_cam(model, x, targets=[1, 3], layer="norm", device="cpu")
    assert res.grid.shape == (2, 6, 4)
    y = model.norm(model.conv(x[None]).permute(0, 2, 3, 1))
    y.retain_grad()
    out = model.fc(y.mean(dim=(1, 2)))
    for k, t in enumerate([1, 3]):
        y.grad = None
        out[0, t].backward(retain_graph=True)
        w = y.grad[0].mean(dim=(0, 1))  # (C,): the spatial mean over (h, w), channels last
        cam = torch.relu((w * y[0].detach()).sum(dim=-1)).numpy()
        np.testing.assert_allclose(res.grid[k], cam, rtol=1e-5, atol=1e-6 * max(cam.max(), 1e-12))
        np.testing.assert_allclose(res.extra["weights"][k], w.numpy(), rtol=1e-5, atol=1e-7)


def test_reshape_transform_errors_name_it():
    net, x = small_vit(), vit_input()
    with pytest.raises(TypeError, match="reshape_transform=3"):
        grad_cam(net, x, reshape_transform=3, device="cpu")
    with pytest.raises(ValueError, match=r"reshape_transform: gave \(1, 17, 32\)"):
        grad_cam(net, x, reshape_transform=lambda t: t, device="cpu")
    with pytest.raises(ValueError, match=r"tokens \(N, T, C\).*gives \(1, 1000\)"):
        grad_cam(net, x, layer="heads", device="cpu")

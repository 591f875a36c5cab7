"""Parity with Captum's Occlusion: its per-pixel mean equals our pixel_mean()."""

import numpy as np
import pytest
import torch
from helpers import small_cnn

from occlusion_widget import occlusion_sensitivity

captum_attr = pytest.importorskip("captum.attr")


@pytest.mark.parametrize("output", ["logit", "probability"])
@pytest.mark.parametrize("shape,window,stride", [((3, 32, 32), 8, 4), ((3, 28, 36), 4, 4), ((3, 30, 30), 6, 3)])
def test_pixel_mean_equals_captum_occlusion(shape, window, stride, output):
    model = small_cnn()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(4))
    assert all((n - window) % stride == 0 for n in shape[1:])  # windows tile exactly
    target = 3
    ours = occlusion_sensitivity(
        model, x, target, mask_size=window, stride=stride, mask_value=0.5,
        mask_clipping=False, output=output, device="cpu",
    )

    def forward(batch):
        logits = model(batch)
        return logits.softmax(dim=1) if output == "probability" else logits

    theirs = captum_attr.Occlusion(forward).attribute(
        x[None], sliding_window_shapes=(shape[0], window, window), strides=(shape[0], stride, stride),
        baselines=0.5, target=target, perturbations_per_eval=16,
    )
    expected = theirs[0, 0].detach().numpy()  # Captum repeats the value over channels
    np.testing.assert_array_equal(theirs[0, 1].detach().numpy(), expected)
    assert np.abs(expected).max() > 0  # a map of zeros would match anything
    # The map holds differences of two scores: float32 rounding is relative to the scores, not their difference.
    np.testing.assert_allclose(ours.pixel_mean()[0], expected, rtol=1e-4, atol=1e-6 * abs(float(ours.base_scores[0])))

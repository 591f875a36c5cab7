"""The embedded EfficientNet-Lite0 and the sample image, offline."""

import numpy as np
import pytest
import torch

import occlusion_widget as ow


@pytest.fixture(scope="module")
def model():
    return ow.load_default_model()


def test_default_model_ranks_military_uniform_first(model):
    image = ow.sample_image()
    assert image.size == (512, 600) and image.mode == "RGB"
    top = model.predict(image, k=3)
    assert top[0][1] == "military uniform"
    assert top[0][2] > 0.3 and top[0][2] > top[1][2]
    assert len(model.labels) == 1000 and model.labels[652] == "military uniform"


def test_default_model_preprocessing_scales_to_minus_one_one(model):
    x = model.preprocess(ow.sample_image())
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    normalised = model.module[0](x[None])
    assert -1.0 <= float(normalised.min()) < -0.9 and 0.9 < float(normalised.max()) <= 1.0


def test_occlusion_on_default_model_top3(model):
    result = ow.occlusion_sensitivity(model, ow.sample_image(), top_k=3)
    assert result.labels[0] == "military uniform"
    assert result.grid.shape == (3, 11, 11) and result.maps.shape == (3, 224, 224)
    assert result.params.mask_size == (45, 45) and result.params.stride == (22, 22)
    # Occluding the uniform (lower half) hurts "military uniform" more than occluding the flag at the top left.
    uniform = result.grid[0, 6:, 3:8].mean()
    corner = result.grid[0, :3, :3].mean()
    assert uniform > corner
    best = result.most_important(0)
    assert best.drop > 0.1 and best.occluded_score < result.base_scores[0]
    assert best.occluded_image.shape == (3, 224, 224)
    assert not np.array_equal(best.occluded_image, result.image)


def test_default_model_gets_no_raw_module_notice(model):
    import warnings

    from occlusion_widget.models import RawModuleNotice

    with warnings.catch_warnings():
        warnings.simplefilter("error", RawModuleNotice)
        model.preprocess(ow.sample_image())


def test_unknown_torchvision_weights_name_the_choices():
    with pytest.raises(ValueError, match=r"resnet18 has no weights named 'NOPE'; use one of DEFAULT, IMAGENET1K_V1"):
        ow.from_torchvision("resnet18", weights="NOPE")


def test_offline_weights_download_is_one_clear_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: the weights must be downloaded

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(OSError, match=r"could not download the resnet18 weights IMAGENET1K_V1.*weights=None") as info:
        ow.from_torchvision("resnet18")
    assert str(tmp_path) in str(info.value)

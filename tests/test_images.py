"""Image decoding: EXIF orientation, every PIL mode, array dtypes, decompression bombs, JPEG drafts,
and the notice for plain modules (occlusion_widget.models.load_image and ImageClassifier.preprocess)."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from occlusion_widget.models import (
    ImageClassifier,
    RawModuleNotice,
    as_classifier,
    load_image,
)


def rgb(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img, dtype=np.int16)


def close(actual: Image.Image, expected, atol: int = 1) -> None:
    """Equal to one uint8 level (rounding) everywhere."""
    np.testing.assert_allclose(rgb(actual), np.broadcast_to(np.asarray(expected, np.int16), rgb(actual).shape), atol=atol)


# --- EXIF orientation -------------------------------------------------------------------------------


def asymmetric(w: int = 64, h: int = 32) -> Image.Image:
    """Left half red, right half blue: any rotation or flip is visible."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("source", ["path", "pil"])
def test_exif_orientation_is_applied(tmp_path, source):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer rotates it 90 degrees clockwise
    asymmetric().save(path, exif=exif, quality=95)
    if source == "path":
        img = load_image(path)
    else:
        with Image.open(path) as opened:
            img = load_image(opened)
    # 64x32 stored -> 32x64 shown; rotating clockwise puts the left (red) half at the top.
    assert img.size == (32, 64)
    arr = rgb(img)
    assert arr[8, 16, 0] > 200 and arr[8, 16, 2] < 60  # top: red
    assert arr[56, 16, 2] > 200 and arr[56, 16, 0] < 60  # bottom: blue


# --- PIL modes --------------------------------------------------------------------------------------


def test_16_bit_png_is_scaled_by_its_range(tmp_path):
    path = tmp_path / "deep.png"
    values = np.array([[0, 16384, 32768, 65535]], np.uint16).repeat(2, axis=0)
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I")  # what PIL decodes a 16-bit PNG to
    close(load_image(path), (values / 65535 * 255).round()[..., None])


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_modes(mode):
    values = np.array([[0, 1000, 40000, 65535]], np.int64)
    img = Image.fromarray(values.astype(np.uint16)).convert("I") if mode == "I" else Image.new(mode, (4, 1))
    if mode != "I":
        img.putdata(values.ravel().tolist())
    close(load_image(img), (values / 65535 * 255).round()[..., None])


def test_mode_i_outside_16_bits_is_refused():
    img = Image.fromarray(np.array([[0, 70000]], np.int32))
    with pytest.raises(ValueError, match="0..65535"):
        load_image(img)


def test_float_tiff_follows_the_float_rule(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.25, 1.0]], np.float32)).save(path)
    close(load_image(path), np.array([0, 64, 255])[None, :, None])
    Image.fromarray(np.array([[0.0, 200.0]], np.float32)).save(path)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(path)


def test_bilevel_grey_and_palette():
    bits = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    close(load_image(bits), [[[0], [255]]])
    close(load_image(Image.new("L", (2, 2), 77)), 77)
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([1, 0])
    close(load_image(pal), [[[200, 100, 50], [10, 20, 30]]])


def test_alpha_is_composited_over_white():
    rgba = Image.fromarray(np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], np.uint8), "RGBA")
    # opaque red stays red; fully transparent is white whatever its colour; half-transparent black is grey.
    close(load_image(rgba), [[[255, 0, 0], [255, 255, 255], [127, 127, 127]]])
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA")
    close(load_image(la), [[[255] * 3, [0] * 3]])


def test_palette_with_alpha_and_transparency_are_composited_over_white():
    pa = Image.new("PA", (2, 1))
    pa.putpalette([10, 20, 30] + [0] * 765)
    pa.putdata([(0, 255), (0, 0)])
    close(load_image(pa), [[[10, 20, 30], [255, 255, 255]]])
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p.putdata([0, 1])
    p.info["transparency"] = 0  # index 0 (black) is transparent
    close(load_image(p), [[[255, 255, 255], [0, 255, 0]]])


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("CMYK", (255, 0, 0, 0), (0, 255, 255)),  # full cyan
        ("YCbCr", (255, 128, 128), (255, 255, 255)),
        ("HSV", (0, 255, 255), (255, 0, 0)),  # hue 0: red
        ("HSV", (85, 255, 255), (0, 255, 0)),  # hue 120 degrees: green
        ("LAB", (0, 128, 128), (0, 0, 0)),  # L* = 0: black
    ],
)
def test_colour_spaces(mode, value, expected):
    close(load_image(Image.new(mode, (1, 1), value)), expected, atol=2)


def test_unsupported_mode_is_named():
    with pytest.raises(ValueError, match="mode 'La' is not supported"):
        load_image(Image.new("La", (1, 1)))


# --- arrays -----------------------------------------------------------------------------------------


def test_uint16_array_is_scaled_by_its_range():
    arr = np.array([[0, 32768, 65535]], np.uint16)
    close(load_image(arr), (arr / 65535 * 255).round()[..., None])
    close(load_image(np.stack([arr] * 3, axis=-1)), (arr / 65535 * 255).round()[..., None])


def test_bool_array_is_black_and_white():
    close(load_image(np.array([[False, True]])), [[[0], [255]]])


def test_float_array_in_unit_range():
    arr = np.array([[0.0, 0.5, 1.0]], np.float64)
    close(load_image(arr), [[[0], [128], [255]]])
    # rounding noise just outside [0, 1] is clipped, not refused
    close(load_image(np.array([[-1e-7, 1 + 1e-7]], np.float32)), [[[0], [255]]])


def test_float_array_with_0_255_values_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        load_image(np.full((4, 4, 3), 200.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(np.full((4, 4), -0.5, np.float32))


def test_signed_integer_arrays_are_refused():
    # np.array of Python ints is int64: by its dtype range a 0..255 photo would be black, so it is refused.
    with pytest.raises(ValueError, match="uint8"):
        load_image(np.full((4, 4, 3), 200))
    with pytest.raises(ValueError, match="uint8"):
        load_image(np.array([[-1, 3]], np.int16))


@pytest.mark.parametrize("shape", [(8, 8, 2), (8, 8, 5), (3, 8, 8), (8,), (1, 8, 8, 3)])
def test_array_shapes_outside_hw_hw1_hw3_hw4_are_refused(shape):
    with pytest.raises(ValueError, match=r"\(H, W\), \(H, W, 1\), \(H, W, 3\) or \(H, W, 4\)"):
        load_image(np.zeros(shape, np.uint8))


def test_rgba_array_is_composited_over_white():
    arr = np.array([[[0, 0, 0, 0], [0, 0, 255, 255]]], np.uint8)
    close(load_image(arr), [[[255, 255, 255], [0, 0, 255]]])


# --- decompression bombs and JPEG drafts --------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_gets_a_clear_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(30000, 30000))  # 57 bytes declaring 900 megapixels
    with pytest.raises(ValueError, match=r"900000000 pixels.*PIL\.Image\.MAX_IMAGE_PIXELS"):
        load_image(path)


def test_images_between_pils_warning_and_error_limits_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)  # 1600 pixels: PIL only warns (its error is at 2x the limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw PIL DecompressionBombWarning either
        with pytest.raises(ValueError, match=r"40x40 = 1,600 pixels.*1,000.*MAX_IMAGE_PIXELS"):
            load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the documented way to allow it
    assert load_image(path).size == (40, 40)


def test_large_jpeg_is_decoded_at_a_reduced_size(tmp_path):
    path = tmp_path / "large.jpg"
    asymmetric(2000, 1600).save(path, quality=80)
    assert load_image(path).size == (2000, 1600)
    drafted = load_image(path, draft_size=(64, 64))
    assert drafted.size == (250, 200)  # 1/8 scale: the smallest JPEG scale still >= 64 px on each side
    assert load_image(path, draft_size=(300, 300)).size == (500, 400)  # 1/4: 1/8 would be under 300 px


def test_preprocess_drafts_to_twice_the_input_size(tmp_path, monkeypatch):
    path = tmp_path / "large.jpg"
    asymmetric(2000, 1600).save(path, quality=80)
    sizes = []
    original = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: sizes.append(self.size) or original(self, *a, **k))
    clf = ImageClassifier(nn.Identity(), (32, 32))
    x = clf.preprocess(path)
    assert sizes == [(250, 200)]  # 1/8 scale: >= 2 * 32 px on the shorter side
    full = clf.preprocess(load_image(path))
    assert x.shape == full.shape == (3, 32, 32)
    np.testing.assert_allclose(x.numpy(), full.numpy(), atol=0.05)


# --- plain modules ---------------------------------------------------------------------------------------


def test_plain_module_gets_one_notice_per_module():
    module, other = nn.Identity(), nn.Identity()
    image = np.zeros((40, 40, 3), np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        as_classifier(module).preprocess(image)
        as_classifier(module).preprocess(image)
        as_classifier(other).preprocess(image)
        as_classifier(other).preprocess(torch.zeros(3, 8, 8))  # a tensor is the module's own input: no notice
        ImageClassifier(nn.Identity(), (32, 32)).preprocess(image)  # the user chose the preprocessing
    notices = [w for w in caught if issubclass(w.category, RawModuleNotice)]
    assert len(notices) == 2
    text = str(notices[0].message)
    assert "[0, 1]" in text and "224x224" in text and "no normalisation" in text
    assert "from_torchvision(" in text and "ImageClassifier(module, input_size, labels" in text and "Normalize" in text

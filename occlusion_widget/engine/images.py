"""Decoding images to RGB, in one place: files, PIL images and arrays.

Rules (also in :func:`load_image`'s docstring):

- EXIF orientation is applied, so a phone photo is explained the way a viewer shows it.
- Transparency is composited over white (as a transparent PNG looks on a white page); the colour stored
  under fully transparent pixels is never shown to the network.
- Integers are scaled by their type's range: uint8 / 255, uint16 (and PIL's 16-bit modes) / 65535, bool and
  bilevel as 0 / 1. PIL's 32-bit mode ``I`` is what 16-bit PNG, TIFF and PGM files decode to: its values must
  lie in 0..65535. Signed integer arrays are refused (``np.array`` of Python ints is int64 and would otherwise
  come out black); convert them with ``astype(np.uint8)`` or ``astype(np.uint16)``.
- Floats (arrays and PIL mode ``F``) must hold values in [0, 1]; 0..255 data is refused rather than guessed.
- Files declaring more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels are refused before decoding (PIL itself
  only warns between 1x and 2x that limit); set it higher, or to None, to accept bigger files you trust.
- 16-bit data keeps 8 bits per channel: the network input is quantised to uint8 steps like any photograph.
"""

from __future__ import annotations

import warnings
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ImageSource = Image.Image | np.ndarray | str | PathLike

# Values this far outside [0, 1] are float rounding, not another range: half a uint8 step.
_FLOAT_TOLERANCE = 0.5 / 255
_DIRECT = {"RGB", "1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"}  # PIL converts these to RGB exactly
_ALPHA = {"RGBA", "LA", "PA", "RGBa"}
_SIXTEEN = {"I;16", "I;16L", "I;16B", "I;16N"}
SUPPORTED_MODES = sorted(_DIRECT | _ALPHA | _SIXTEEN | {"P", "I", "F"})
_SHAPES = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"


def load_image(source: ImageSource, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode a path, a PIL image or an array to an RGB PIL image (H, W), exactly as a viewer shows it.

    Parameters
    ----------
    source : path, PIL image or array
        An array is (H, W), (H, W, 1) grey, (H, W, 3) RGB or (H, W, 4) RGBA. Its dtype decides the range:
        uint8 0..255, uint16 0..65535 (any unsigned type: its full range), bool 0/1, float [0, 1]
        (values outside by more than half a uint8 step are refused, e.g. 0..255 floats: divide by 255).
        Signed integer arrays are refused. A PIL image is read per mode: 16-bit modes over 0..65535, ``F``
        as float [0, 1], palettes through their palette, CMYK/YCbCr/LAB/HSV converted to RGB.
    draft_size : (width, height), optional
        Only for JPEG files: decode at the smallest of JPEG's 1/2, 1/4, 1/8 scales that keeps at least this
        size (fast, and a 50-megapixel photo needs no 150 MB buffer when the network sees 224 px).

    Alpha is composited over white; the EXIF orientation is applied. Files over
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels are refused (set it to None to lift the limit).

    Returns
    -------
    PIL.Image.Image
        A new RGB image; the source is left as it was.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source), "image")
    if isinstance(source, (str, PathLike)):
        return _open(Path(source), draft_size)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    raise TypeError(f"image: expected a PIL image, a path or an {_SHAPES} array, got {type(source).__name__}")


def _open(path: Path, draft_size: tuple[int, int] | None) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"image: no file at {str(path)!r}")
    what = f"image {str(path)!r}"
    try:
        # PIL warns between 1x and 2x its limit and raises above; both become the error below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        limit = Image.MAX_IMAGE_PIXELS
        raise ValueError(f"{what} is over the limit of {int(limit or 0):,} pixels (PIL: {exc}); {_limit_hint()}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} is not a readable image ({exc})") from exc
    with img:
        w, h = img.size
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and w * h > limit:
            raise ValueError(
                f"{what} declares {w}x{h} = {w * h:,} pixels, over the limit of {int(limit):,}; {_limit_hint()}"
            )
        if draft_size is not None and img.format == "JPEG":
            img.draft(img.mode, (int(draft_size[0]), int(draft_size[1])))
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise ValueError(f"{what} is not a readable image ({exc})") from exc
        return _to_rgb(ImageOps.exif_transpose(img), what)


def _limit_hint() -> str:
    return ("if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS "
            "(e.g. PIL.Image.MAX_IMAGE_PIXELS = 300_000_000, or None for no limit)")


def _to_rgb(img: Image.Image, what: str) -> Image.Image:
    """Any supported PIL mode -> a new RGB image."""
    mode = img.mode
    if mode in _DIRECT:
        return img.convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")
        return _over_white(img.convert("RGBA")) if has_alpha else img.convert("RGB")
    if mode in _ALPHA:
        return _over_white(img.convert("RGBA"))
    if mode in _SIXTEEN:
        return _array_to_rgb(np.asarray(img).astype(np.uint16), what)
    if mode == "I":
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(
                f"{what}: a 32-bit integer (mode 'I') image is read as 16-bit data and must hold values in "
                f"0..65535, got {arr.min()}..{arr.max()}; convert it to 'L' or pass a float array in [0, 1]"
            )
        return _array_to_rgb(arr.astype(np.uint16), what)
    if mode == "F":
        return _array_to_rgb(np.asarray(img), what)
    raise ValueError(f"{what}: PIL mode {mode!r} is not supported; use one of {', '.join(SUPPORTED_MODES)}")


def _over_white(rgba: Image.Image) -> Image.Image:
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def _array_to_rgb(arr: np.ndarray, what: str = "image") -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        hint = "; channels first? use array.transpose(1, 2, 0)" if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) else ""
        raise ValueError(f"{what}: an array must have shape {_SHAPES}, got {arr.shape}{hint}")
    if arr.size == 0:
        raise ValueError(f"{what}: the array is empty (shape {arr.shape})")
    u8 = _to_uint8(arr, what)
    if u8.ndim == 2:
        return Image.fromarray(u8, "L").convert("RGB")
    if u8.shape[2] == 4:
        return _over_white(Image.fromarray(np.ascontiguousarray(u8), "RGBA"))
    return Image.fromarray(np.ascontiguousarray(u8), "RGB")


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """Scale by the dtype's range to uint8 (see the module docstring for the rules)."""
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint8:
        return arr
    if kind == "u":
        top = float(np.iinfo(arr.dtype).max)
        return np.round(arr.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    if kind == "i":
        raise ValueError(
            f"{what}: a signed integer array ({arr.dtype}) has no agreed range; convert it: "
            f"array.astype(np.uint8) for 0..255 data, astype(np.uint16) for 0..65535, or floats in [0, 1]"
        )
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: the array holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
            raise ValueError(
                f"{what}: a float array must hold values in [0, 1], got {lo:g}..{hi:g}; "
                f"for 0..255 data divide by 255 or pass array.astype(np.uint8)"
            )
        return np.round(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise TypeError(f"{what}: arrays of dtype {arr.dtype} are not images; use uint8, uint16, bool or float in [0, 1]")

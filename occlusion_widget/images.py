"""Image decoding moved to :mod:`occlusion_widget.engine.images`; re-exported here for old imports."""

from .engine.images import SUPPORTED_MODES, ImageSource, load_image

__all__ = ["SUPPORTED_MODES", "ImageSource", "load_image"]

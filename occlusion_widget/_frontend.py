"""Moved to :mod:`occlusion_widget.widget.frontend`; this alias stays while tests/test_js.py and
tests/test_browser.py import it from here (remove once they import the new name)."""

from .widget.frontend import *
from .widget.frontend import (  # noqa: F401
    MODULES,
    SEQUENTIAL_COLORMAPS,
    build_esm,
    colormap_tables,
    load_css,
    static_dir,
)

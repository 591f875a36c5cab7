"""The occlusion engine: mask grid -> batched sweep -> result. Knows nothing of widgets.

Layering: modules here import only each other and third-party libraries, never
``occlusion_widget.methods``, ``render``, ``widget`` or any other module of the
package (``tests/test_layers.py`` checks it). The model wrapper
(:mod:`.classifier`) and image decoding (:mod:`.images`) live here for that
reason; ``occlusion_widget.models`` / ``occlusion_widget.images`` re-export them.
"""

from .classifier import ImageClassifier, Normalize, RawModuleNotice, as_classifier
from .drilldown import drilldown_sensitivity, map_agreement
from .grid import MaskGrid, mask_box, resolve_sizes
from .images import load_image
from .incremental import IncrementalEvaluator, UnsupportedModel
from .model_state import prepared_module
from .result import (
    ImportantRegion,
    MapResult,
    OcclusionParams,
    OcclusionResult,
    set_png_renderer,
    worst_position,
)
from .score import score_occluded
from .sweep import occlusion_sensitivity
from .targets import DetectionTarget, SegmentationTarget, default_targets, targets_output
from .targets_adapters import DetectorModule

__all__ = [
    "DetectionTarget",
    "DetectorModule",
    "SegmentationTarget",
    "default_targets",
    "targets_output",
    "ImageClassifier",
    "ImportantRegion",
    "IncrementalEvaluator",
    "MapResult",
    "MaskGrid",
    "Normalize",
    "OcclusionParams",
    "OcclusionResult",
    "RawModuleNotice",
    "UnsupportedModel",
    "as_classifier",
    "drilldown_sensitivity",
    "load_image",
    "map_agreement",
    "mask_box",
    "occlusion_sensitivity",
    "prepared_module",
    "resolve_sizes",
    "score_occluded",
    "set_png_renderer",
    "worst_position",
]

"""The occlusion engine: mask grid -> batched sweep -> result. Knows nothing of widgets."""

from .drilldown import drilldown_sensitivity, map_agreement
from .grid import MaskGrid
from .incremental import IncrementalEvaluator, UnsupportedModel
from .model_state import prepared_module
from .result import ImportantRegion, OcclusionParams, OcclusionResult
from .sweep import occlusion_sensitivity

__all__ = [
    "ImportantRegion",
    "IncrementalEvaluator",
    "MaskGrid",
    "OcclusionParams",
    "OcclusionResult",
    "UnsupportedModel",
    "drilldown_sensitivity",
    "map_agreement",
    "occlusion_sensitivity",
    "prepared_module",
]

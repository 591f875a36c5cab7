"""The occlusion engine: mask grid -> batched sweep -> result. Knows nothing of widgets."""

from .grid import MaskGrid
from .result import ImportantRegion, OcclusionParams, OcclusionResult
from .sweep import occlusion_sensitivity

__all__ = ["MaskGrid", "ImportantRegion", "OcclusionParams", "OcclusionResult", "occlusion_sensitivity"]

"""occlusion-widget: occlusion sensitivity maps for PyTorch image classifiers, live in Jupyter."""

from . import render  # noqa: E402,F401  registers a result's Jupyter figure (the engine imports no render)
from .engine import (
    DetectionTarget,
    DetectorModule,
    ImportantRegion,
    MapResult,
    OcclusionParams,
    OcclusionResult,
    SegmentationTarget,
    drilldown_sensitivity,
    map_agreement,
    occlusion_sensitivity,
)
from .methods import (
    AttributionResult,
    FilterVisualization,
    compare_methods,
    deletion_insertion,
    faithfulness_table,
    filter_visualization,
    grad_cam,
    grad_cam_tokens,
    integrated_gradients,
    layer_activations,
    saliency,
    smoothgrad,
)
from .models import ImageClassifier, from_timm, from_torchvision, imagenet_labels, load_default_model, sample_image
from .widget import OcclusionWidget

__version__ = "0.1.0"

__all__ = [
    "AttributionResult",
    "FilterVisualization",
    "DetectionTarget",
    "DetectorModule",
    "SegmentationTarget",
    "ImageClassifier",
    "ImportantRegion",
    "MapResult",
    "OcclusionParams",
    "OcclusionWidget",
    "OcclusionResult",
    "compare_methods",
    "drilldown_sensitivity",
    "map_agreement",
    "deletion_insertion",
    "faithfulness_table",
    "filter_visualization",
    "grad_cam",
    "grad_cam_tokens",
    "integrated_gradients",
    "layer_activations",
    "saliency",
    "smoothgrad",
    "from_timm",
    "from_torchvision",
    "imagenet_labels",
    "load_default_model",
    "occlusion_sensitivity",
    "sample_image",
]

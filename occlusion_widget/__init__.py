"""occlusion-widget: occlusion sensitivity maps for PyTorch image classifiers, live in Jupyter."""

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
    compare_methods,
    deletion_insertion,
    faithfulness_table,
    grad_cam,
    integrated_gradients,
    layer_activations,
    saliency,
    smoothgrad,
)
from . import render  # noqa: E402,F401  registers a result's Jupyter figure (the engine imports no render)
from .models import ImageClassifier, from_torchvision, imagenet_labels, load_default_model, sample_image
from .widget import OcclusionWidget

__version__ = "0.1.0"

__all__ = [
    "AttributionResult",
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
    "grad_cam",
    "integrated_gradients",
    "layer_activations",
    "saliency",
    "smoothgrad",
    "from_torchvision",
    "imagenet_labels",
    "load_default_model",
    "occlusion_sensitivity",
    "sample_image",
]

"""occlusion-widget: occlusion sensitivity maps for PyTorch image classifiers, live in Jupyter."""

from .engine import ImportantRegion, OcclusionParams, OcclusionResult, occlusion_sensitivity
from .models import ImageClassifier, from_torchvision, imagenet_labels, load_default_model, sample_image

__version__ = "0.1.0"

__all__ = [
    "ImageClassifier",
    "ImportantRegion",
    "OcclusionParams",
    "OcclusionResult",
    "from_torchvision",
    "imagenet_labels",
    "load_default_model",
    "occlusion_sensitivity",
    "sample_image",
]

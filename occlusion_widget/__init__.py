"""occlusion-widget: occlusion sensitivity maps for PyTorch vision models, live in Jupyter."""

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
    "Audit",
    "AuditWidget",
    "audit",
    "compare_audits",
]

# The dataset audit needs pandas, pyarrow and zarr (the [audit] extra): imported on first use only.
_LAZY = {"audit": "occlusion_widget.audit", "Audit": "occlusion_widget.audit", "compare_audits": "occlusion_widget.audit",
         "AuditWidget": "occlusion_widget.audit.gallery"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ImportError as exc:
            raise ImportError(f"occlusion_widget.{name} needs the audit extra: pip install 'occlusion-widget[audit]' "
                              f"({exc})") from exc
        return getattr(module, name)
    raise AttributeError(f"module 'occlusion_widget' has no attribute {name!r}")

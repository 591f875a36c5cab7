"""Gradient attribution methods next to occlusion, and faithfulness metrics to compare them.

- :func:`saliency`, :func:`smoothgrad`, :func:`grad_cam`: maps (K, H, W) as an
  :class:`AttributionResult` (the field names of :class:`OcclusionResult`).
- :func:`deletion_insertion`, :func:`faithfulness_table`: how well a map ranks
  the pixels the network uses (AUC of deletion / insertion curves).
- :func:`layer_activations`: a layer's channels for one input, strongest first.
- :func:`compare_methods`: all four maps of one image and class with their AUCs.

Cancellation: these functions raise :class:`Cancelled` when ``cancel`` is set.
"""

from .common import AttributionParams, AttributionResult, Cancelled, upsample_maps
from .compare import METHODS, Comparison, compare_methods, comparison_figure
from .faithfulness import FaithfulnessCurve, FaithfulnessTable, auc, deletion_insertion, faithfulness_table
from .gradcam import default_layer, grad_cam, spatial_layers
from .gradients import saliency, smoothgrad
from .layers import LayerActivations, layer_activations

__all__ = [
    "METHODS",
    "AttributionParams",
    "AttributionResult",
    "Cancelled",
    "Comparison",
    "FaithfulnessCurve",
    "FaithfulnessTable",
    "LayerActivations",
    "auc",
    "compare_methods",
    "comparison_figure",
    "default_layer",
    "deletion_insertion",
    "faithfulness_table",
    "grad_cam",
    "layer_activations",
    "saliency",
    "smoothgrad",
    "spatial_layers",
    "upsample_maps",
]

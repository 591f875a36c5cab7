"""Gradient attribution methods next to occlusion, the method registry, and faithfulness metrics.

- :func:`saliency`, :func:`smoothgrad`, :func:`grad_cam`, :func:`integrated_gradients`:
  maps (K, H, W) as a :class:`MapResult` (``AttributionResult`` is the same class).
- :mod:`.registry`: every method declared once (:data:`registry.METHODS`,
  :func:`get_method`, :func:`run`, :func:`browser_table`).
- :func:`deletion_insertion`, :func:`faithfulness_table`: how well a map ranks
  the pixels the network uses (AUC of deletion / insertion curves).
- :func:`layer_activations`: a layer's channels for one input, strongest first.
- :func:`compare_methods`: every registered method's map of one image and class with their AUCs.
- :func:`grad_cam_tokens`: Grad-CAM on transformer tokens / channels-last layers (:mod:`.token_layers`;
  :func:`grad_cam` handles them too).
- :func:`filter_visualization`: what input each of a layer's channels responds to most (:mod:`.filters`).

Cancellation (the contract of every map method, see :class:`MapResult`): when
``cancel`` is set the method returns its result so far with ``complete=False``.
The derived computations (faithfulness curves, :func:`compare_methods`,
:func:`layer_activations`) have no partial result and raise :class:`Cancelled`.
"""

from . import registry
from .common import AttributionParams, AttributionResult, Cancelled, MapResult, upsample_maps
from .compare import METHODS, Comparison, compare_methods, comparison_figure
from .faithfulness import FaithfulnessCurve, FaithfulnessTable, auc, deletion_insertion, faithfulness_table
from .filters import FilterVisualization, filter_visualization
from .gradcam import default_layer, grad_cam, spatial_layers
from .gradients import saliency, smoothgrad
from .integrated_gradients import IntegratedGradientsParams, integrated_gradients
from .layers import LayerActivations, layer_activations
from .registry import MethodParam, MethodSpec, browser_table, get_method, run
from .token_layers import grad_cam_tokens

__all__ = [
    "METHODS",
    "AttributionParams",
    "AttributionResult",
    "Cancelled",
    "Comparison",
    "FaithfulnessCurve",
    "FaithfulnessTable",
    "FilterVisualization",
    "IntegratedGradientsParams",
    "LayerActivations",
    "MapResult",
    "MethodParam",
    "MethodSpec",
    "auc",
    "browser_table",
    "compare_methods",
    "comparison_figure",
    "default_layer",
    "deletion_insertion",
    "faithfulness_table",
    "filter_visualization",
    "get_method",
    "grad_cam",
    "grad_cam_tokens",
    "integrated_gradients",
    "layer_activations",
    "registry",
    "run",
    "saliency",
    "smoothgrad",
    "spatial_layers",
    "upsample_maps",
]

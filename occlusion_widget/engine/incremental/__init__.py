"""Exact incremental inference for occlusion sweeps (issue 6).

An occluded input differs from the clean one only inside the mask, so each
layer only needs recomputing over the mask's projective field (Krypton,
Nakandala et al., SIGMOD 2019). :class:`IncrementalEvaluator` does it for any
network torch.fx can trace; :func:`make_incremental_score` is what the sweep calls.

``graph``      tracing, the node-by-node clean run, batch-norm folding;
``classify``   node classes (pointwise / window / pad / cat / dense), window extraction;
``nodes``      the data types (NodeInfo, Window, Analysis, UnsupportedModel);
``boxes``      dirty-box propagation, crop plans, FLOP counts (pure integer arithmetic);
``evaluator``  cached activations + batched crop evaluation;
``strategy``   "auto" / "full" / "incremental".
"""

from .boxes import DENSE_FRACTION, FlopCount
from .evaluator import IncrementalEvaluator, supports
from .graph import TRACE_LOCK, UnsupportedModel
from .strategy import AUTO_MAX_COST_RATIO, AUTO_MIN_MACS, STRATEGIES, make_incremental_score

__all__ = [
    "AUTO_MAX_COST_RATIO", "AUTO_MIN_MACS", "DENSE_FRACTION", "STRATEGIES", "TRACE_LOCK", "FlopCount",
    "IncrementalEvaluator", "UnsupportedModel", "make_incremental_score", "supports",
]

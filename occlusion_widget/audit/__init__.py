"""Explain a whole dataset: a resumable audit on one machine that scales out on Ray.

``audit(model, data, out=...)`` writes a store (Parquet rows, Zarr maps and images, JSON parameters);
``Audit`` reads it back; ``compare_audits`` puts two audits of the same images side by side.
"""

from .api import audit
from .results import Audit, compare_audits
from .store import AuditLocked, ParameterMismatch

__all__ = ["Audit", "AuditLocked", "ParameterMismatch", "audit", "compare_audits"]

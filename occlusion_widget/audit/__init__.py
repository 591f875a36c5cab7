"""Explain a whole dataset: a resumable audit on one machine that scales out on Ray.

``audit(model, data, out=...)`` writes a store (Parquet rows, Zarr maps and images, JSON parameters);
``Audit`` reads it back; ``compare_audits`` puts two audits of the same images side by side.
"""

import sys
import types
from typing import Any

from .api import audit
from .results import Audit, compare_audits
from .store import AuditLocked, ParameterMismatch

__all__ = ["Audit", "AuditLocked", "ParameterMismatch", "audit", "compare_audits"]


class _CallableAuditModule(types.ModuleType):
    """``ow.audit`` is both this subpackage and the function (the package exports the function lazily, but
    importing any ``occlusion_widget.audit.*`` module binds the subpackage to that name): calling the
    subpackage calls :func:`audit`, so ``ow.audit(model, data)`` works whichever the name holds."""

    def __call__(self, *args: Any, **kwargs: Any) -> Audit:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableAuditModule

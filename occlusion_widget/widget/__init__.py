"""The Jupyter widget: :class:`OcclusionWidget` and the machinery behind it.

core (the widget class), traits (its synced state and validation), params (traits -> what to
compute), plan (the pieces to compute, as data), controller (runs them on one background thread),
runner (thread, throttle, cache, prepared input), preview (one-mask scores), frontend (results as
synced state, the browser code), snapshot (the static PNG output), report (standalone HTML).
"""

from .core import OcclusionWidget

__all__ = ["OcclusionWidget"]

"""The static PNG fallback of the widget: a figure of the finished maps, shown in an
output of its own for viewers without widgets and refreshed after every sweep.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, Protocol

import ipywidgets

from .engine.result import OcclusionResult
from .methods import AttributionResult
from .runner import LatestRunner


class Owner(Protocol):
    """What a :class:`Snapshot` reads from its widget."""

    @property
    def result(self) -> OcclusionResult | AttributionResult | None: ...
    @property
    def colormap(self) -> str: ...
    @property
    def opacity(self) -> float: ...
    @property
    def classes(self) -> list[dict]: ...


class Snapshot:
    """The static PNG fallback of a widget (see ``OcclusionWidget._ipython_display_``)."""

    def __init__(self, owner: Owner):
        self._owner = owner
        self._handles: list[Any] = []
        self._placeholder: ipywidgets.Widget | None = None
        self._cache: tuple[int, bytes] | None = None
        self._lock = threading.Lock()
        self._runner = LatestRunner(self._update, "occlusion-snapshot")

    def png(self, result: OcclusionResult | None = None) -> bytes | None:
        """PNG of the finished maps (None while nothing is finished)."""
        from .render import figure_png

        result = result or self._owner.result
        if result is None or not result.complete:
            return None
        key = id(result)
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        png = figure_png(result, cmap=self._owner.colormap, alpha=self._owner.opacity)
        with self._lock:
            self._cache = (key, png)
        return png

    def bundle(self, result: OcclusionResult | None = None) -> dict:
        if self._placeholder is None:
            self._placeholder = ipywidgets.HTML("", layout=ipywidgets.Layout(display="none"))
        data: dict[str, Any] = {
            "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0, "model_id": self._placeholder.model_id},
            "text/plain": "(static maps appear here once they are computed)",
        }
        png = self.png(result)
        if png is not None:
            data["image/png"] = base64.b64encode(png).decode("ascii")
            method = getattr(result or self._owner.result, "method", "occlusion")
            data["text/plain"] = f"{method} maps: " + ", ".join(c["name"] for c in self._owner.classes)
        return data

    def display(self) -> None:
        from IPython.display import display

        self._handles.append(display(self.bundle(), raw=True, display_id=True))

    def ipython_display(self, bundle: tuple[dict, dict] | None) -> None:
        """Display the live widget's ``(data, metadata)`` bundle, then the static output below it.

        The PNG lives in its own output, kept up to date (``update_display``)
        whenever a sweep finishes, so the saved notebook carries the latest maps.
        """
        from IPython.display import display

        if bundle is None:
            return
        display(bundle[0], metadata=bundle[1], raw=True)
        self.display()

    def mimebundle(self, bundle: tuple[dict, dict] | None) -> tuple[dict, dict] | None:
        """The live widget's ``(data, metadata)`` plus ``image/png`` of the finished maps, if any."""
        if bundle is None:
            return None
        data, metadata = bundle
        png = self.png()
        if png is not None:
            data = {**data, "image/png": base64.b64encode(png).decode("ascii")}
        return data, metadata

    def flush(self, timeout: float | None = None) -> bool:
        """Block until the static outputs show the latest finished result; False on timeout."""
        return self._runner.wait_idle(timeout)

    def refresh(self, result: OcclusionResult) -> None:
        if self._handles:
            self._runner.submit(result)

    def _update(self, result: OcclusionResult, _cancel: threading.Event) -> None:
        data = self.bundle(result)
        for handle in self._handles:
            handle.update(data, raw=True)

    def close(self, timeout: float = 0.0) -> None:
        self._runner.close(timeout)
        if self._placeholder is not None:
            self._placeholder.close()


__all__ = ["Owner", "Snapshot"]

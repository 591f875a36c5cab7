"""The static PNG fallback of the widget: a figure of the finished maps, shown in an
output of its own for viewers without widgets and refreshed after every sweep.

What a displayed widget leaves in the notebook (see ``docs/sharing.md``)
------------------------------------------------------------------------
1. the live view: anywidget's ``application/vnd.jupyter.widget-view+json``;
2. the static figure: ``image/png`` (and ``text/plain``), no widget view, so every
   renderer that cannot draw the live view (GitHub, nbviewer, nbconvert HTML,
   JupyterLab without saved widget state) falls back to the picture;
3. a style: ``text/html`` holding only a ``<style>`` (its own output is hidden). In
   JupyterLab / Notebook 7 and in nbconvert's lab template it hides the PNG while the
   output above holds a live view (``.ow-root``), and hides the output above when it
   holds none (the "Error displaying widget: model not found" of a notebook saved
   without widget state, or the repr text in exported HTML).

Headless runs (nbclient, ``nbconvert --execute``, papermill) send ``allow_stdin=False``
with every execute request, interactive front ends (JupyterLab, Notebook, VS Code)
``True``. An IPython ``post_run_cell`` hook, registered on the first display, waits
in headless runs for every displayed widget's background work and for its static
output to be updated, before the cell's reply: the saved file then carries the
finished figure. Interactive kernels are never blocked. ``OCCLUSION_WIDGET_WAIT``
(``auto``, ``always``, ``never``) overrides the detection.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import weakref
from collections.abc import Hashable
from typing import Any, Protocol

from ..engine.result import OcclusionResult
from ..methods import AttributionResult
from .runner import LatestRunner

log = logging.getLogger(__name__)

#: Environment variable: ``auto`` (detect headless runs), ``always`` or ``never`` wait at the end of a cell.
WAIT_ENV = "OCCLUSION_WIDGET_WAIT"
WAIT_MODES = ("auto", "always", "never")

#: Hides the static copy next to a live view and the broken widget output above a static copy.
#: The selectors follow JupyterLab 4 / Notebook 7 and nbconvert's lab template (``jp-OutputArea-child``).
STYLE = (
    "<style>"
    ".jp-OutputArea-child:has(.ow-root) + .jp-OutputArea-child:has(img) { display: none; }"
    ".jp-OutputArea-child:not(:has(.ow-root)):has(+ .jp-OutputArea-child + .jp-OutputArea-child .ow-static-style)"
    " { display: none; }"
    ".jp-OutputArea-child:has(.ow-static-style) { display: none; }"
    "</style><span class=\"ow-static-style\"></span>"
)
PENDING_TEXT = "(static maps appear here once they are computed)"


class Owner(Protocol):
    """What a :class:`Snapshot` reads from its widget."""

    @property
    def result(self) -> OcclusionResult | AttributionResult | None: ...
    def figure_options(self) -> dict[str, Any]: ...
    @property
    def classes(self) -> list[dict]: ...
    def wait(self, timeout: float | None = None) -> Any: ...


class Snapshot:
    """The static PNG fallback of a widget (see the module docstring)."""

    def __init__(self, owner: Owner):
        self._owner = owner
        self._handles: list[Any] = []
        self._cache: tuple[Hashable, bytes] | None = None
        self._shown: int | None = None  # id() of the result the static outputs show
        self._lock = threading.Lock()
        self._runner = LatestRunner(self._update, "occlusion-snapshot")

    def png(self, result: OcclusionResult | AttributionResult | None = None) -> bytes | None:
        """PNG of the finished maps (None while nothing is finished)."""
        from ..render import figure_png

        result = result or self._owner.result
        if result is None or not result.complete:
            return None
        options = self._owner.figure_options()  # colormap, opacity, percentile: as the widget shows it
        key = (id(result), tuple(sorted(options.items())))
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        png = figure_png(result, **options)
        with self._lock:
            self._cache = (key, png)
        return png

    def bundle(self, result: OcclusionResult | AttributionResult | None = None) -> dict:
        """The static output: ``image/png`` of the finished maps and a ``text/plain`` caption."""
        data: dict[str, Any] = {"text/plain": PENDING_TEXT}
        png = self.png(result)
        if png is not None:
            data["image/png"] = base64.b64encode(png).decode("ascii")
            method = getattr(result or self._owner.result, "method", "occlusion")
            data["text/plain"] = f"{method} maps: " + ", ".join(c["name"] for c in self._owner.classes)
        return data

    def ipython_display(self, bundle: tuple[dict, dict] | None) -> None:
        """Display the live widget's ``(data, metadata)`` bundle, then the static output and the style."""
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

    def display(self) -> None:
        """Display the static output (updated after every finished sweep) and the style output."""
        from IPython.display import display

        result = self._owner.result
        self._handles.append(display(self.bundle(), raw=True, display_id=True))
        self._shown = id(result) if result is not None and result.complete else None
        display({"text/html": STYLE, "text/plain": ""}, raw=True)
        _watch(self)

    def refresh(self, result: OcclusionResult | AttributionResult) -> None:
        """Show ``result`` (finished) in the static outputs, from the background thread."""
        if self._handles:
            self._runner.submit(result)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until the static outputs show the latest finished result; False on timeout."""
        result = self._owner.result
        if self._handles and result is not None and result.complete and id(result) != self._shown:
            self._runner.submit(result, cancel_running=False)
        return self._runner.wait_idle(timeout)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait for the widget's background work, then for the static outputs (headless cell ends)."""
        try:
            self._owner.wait(timeout)
        except TimeoutError:
            return False
        return self.flush(timeout)

    def _update(self, result: OcclusionResult | AttributionResult, _cancel: threading.Event) -> None:
        data = self.bundle(result)
        for handle in self._handles:
            handle.update(data, raw=True)
        self._shown = id(result)

    def close(self, timeout: float = 0.0) -> None:
        _DISPLAYED.discard(self)
        self._runner.close(timeout)


# --- headless runs: wait at the end of each cell ---------------------------------------------

_DISPLAYED: weakref.WeakSet[Snapshot] = weakref.WeakSet()
_HOOKED: list[Any] = []  # the shells whose post_run_cell we listen to


def wait_mode() -> str:
    """``OCCLUSION_WIDGET_WAIT``: ``auto`` (default), ``always`` or ``never``."""
    mode = os.environ.get(WAIT_ENV, "auto").strip().lower() or "auto"
    if mode not in WAIT_MODES:
        raise ValueError(f"{WAIT_ENV}={mode!r} is not allowed; use one of {', '.join(WAIT_MODES)}")
    return mode


def is_headless() -> bool:
    """True when the current cell runs without a person at a front end.

    nbclient (and so ``nbconvert --execute`` and papermill) sends every
    execute request with ``allow_stdin=False``; JupyterLab, Notebook 7 and
    VS Code send ``True`` since they can answer ``input()``.
    """
    mode = wait_mode()
    if mode != "auto":
        return mode == "always"
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None or not hasattr(kernel, "get_parent"):
        return False
    parent = kernel.get_parent("shell") or {}
    if parent.get("header", {}).get("msg_type") != "execute_request":
        return False
    return not parent.get("content", {}).get("allow_stdin", True)


def _watch(snapshot: Snapshot) -> None:
    _DISPLAYED.add(snapshot)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or any(s is shell for s in _HOOKED):
        return
    shell.events.register("post_run_cell", _post_run_cell)
    _HOOKED.append(shell)


def _post_run_cell(_result: Any = None) -> None:
    """IPython's ``post_run_cell``: in a headless run, finish every displayed widget first."""
    try:
        if not _DISPLAYED or not is_headless():
            return
    except ValueError as exc:
        log.warning("%s", exc)
        return
    for snapshot in list(_DISPLAYED):
        snapshot.settle()


__all__ = ["STYLE", "WAIT_ENV", "Owner", "Snapshot", "is_headless", "wait_mode"]

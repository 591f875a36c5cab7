"""``AuditWidget``: an audit's maps as a gallery of thumbnails, sorted and filtered in the browser;
a click opens that image in an :class:`~occlusion_widget.OcclusionWidget` right below the gallery.

Layout: :class:`AuditWidget` is an ``ipywidgets.VBox`` of two children, the gallery
(:class:`AuditGallery`, an AnyWidget with typed, synced traits, code in ``js/audit/gallery.js``)
and ``detail``, a VBox that holds the opened ``OcclusionWidget``. A child widget in a VBox is
shown by every Jupyter front end with no custom code (an ``Output`` area would need the kernel to
capture display calls from widget callbacks, which front ends handle inconsistently).

What goes to the browser: per row a small JPEG thumbnail (longest side ``thumb_size``, 96 px by
default) with the map composited over the image here with a matplotlib colormap, and the row's
numbers as JSON; the browser sorts and filters those itself. Each thumbnail's colour scale is its
own map's largest |value| (as each class tab in the main widget), so a weak map still shows its shape.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import numpy as np
import pandas as pd
import traitlets as t

from .thumbnails import composite, jpeg

#: Columns never offered for sorting (indices, positions, timings, ids).
_NOT_METRICS = ("image_index", "map_index", "true_label", "pred_label", "target", "peak_y", "peak_x")
CORRECT = ("all", "correct", "incorrect")


def asset_path(name: str) -> Path:
    """The gallery's browser file ``name``: ``js/audit/<name>`` in a source checkout, else the copy a build put in
    ``occlusion_widget/static/audit/`` (a wheel). The source comes first: the module is self-contained, so a
    checkout never needs a rebuild to see an edit (and a stale bundle cannot shadow it)."""
    repo = Path(__file__).resolve().parents[2] / "js" / "audit" / name
    if repo.is_file():
        return repo
    packaged = resources.files("occlusion_widget") / "static" / "audit" / name
    if packaged.is_file():
        return Path(str(packaged))
    raise FileNotFoundError(f"occlusion_widget.audit: the gallery's browser file {name!r} is missing (looked in "
                            f"{repo.parent} and occlusion_widget/static/audit/); reinstall the package")


def _json_value(v: Any) -> Any:
    """A cell as JSON: NaN / None / NA -> None, numpy scalars -> Python."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return str(v)


# --- the table as the gallery sees it ---------------------------------------------------------------------------

def numeric_columns(table: pd.DataFrame) -> list[str]:
    """Columns to sort and filter by: confidence first, then every metric with a value (booleans as 0/1)."""
    out = []
    for c in table.columns:
        if c in _NOT_METRICS or c.startswith("time_"):
            continue
        col = table[c]
        if c == "correct":
            continue  # has its own filter
        if not col.notna().any():
            continue  # e.g. deletion_auc when not computed, pointing_hit without annotations
        values = col.dropna()
        if pd.api.types.is_numeric_dtype(col) or values.map(lambda v: isinstance(v, (bool, np.bool_))).all():
            out.append(c)
    return sorted(out, key=lambda c: (c != "confidence", list(table.columns).index(c)))


def _as_float(col: pd.Series) -> pd.Series:
    return pd.to_numeric(col.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")


class AuditGallery(anywidget.AnyWidget):
    """The gallery's synced state (the browser part of :class:`AuditWidget`).

    ``rows`` holds one dict per table row (``row`` = the table's position, the audit's columns, NaN
    as null), ``thumbs`` the JPEG thumbnails in the same order. The view traits (``sort_by``,
    ``descending``, ``filter_*``) are set by the browser's controls or from Python; the browser and
    :meth:`visible_rows` apply the same rules. A click sets ``opened`` to the row.
    """

    _esm = asset_path("gallery.js").read_text("utf-8")
    _css = asset_path("gallery.css").read_text("utf-8")

    rows = t.List(t.Dict()).tag(sync=True)
    thumbs = t.List(t.Bytes()).tag(sync=True)
    thumb_mime = t.Unicode("image/jpeg").tag(sync=True)
    numeric_columns = t.List(t.Unicode()).tag(sync=True)
    classes = t.List(t.Unicode()).tag(sync=True)
    class_field = t.Enum(("true_name", "pred_name"), "true_name").tag(sync=True)
    has_labels = t.Bool(False).tag(sync=True)
    title = t.Unicode("").tag(sync=True)

    sort_by = t.Unicode("").tag(sync=True)
    descending = t.Bool(False).tag(sync=True)
    filter_class = t.Unicode("").tag(sync=True)
    filter_correct = t.Enum(CORRECT, "all").tag(sync=True)
    filter_metric = t.Unicode("").tag(sync=True)
    filter_min = t.Float(None, allow_none=True).tag(sync=True)
    filter_max = t.Float(None, allow_none=True).tag(sync=True)
    opened = t.Int(None, allow_none=True).tag(sync=True)
    tab = t.Enum(("gallery", "summary"), "gallery").tag(sync=True)

    class_means = t.List(t.Dict()).tag(sync=True)
    summary = t.Dict().tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)

    @t.validate("sort_by", "filter_metric")
    def _check_column(self, proposal: dict) -> str:
        value = proposal["value"]
        if value and value not in self.numeric_columns:
            name = proposal["trait"].name
            raise t.TraitError(f"{name}={value!r} is not a numeric column of this audit; use '' or one of "
                               f"{', '.join(map(repr, self.numeric_columns))}")
        return value

    @t.validate("filter_class")
    def _check_class(self, proposal: dict) -> str:
        value = proposal["value"]
        if value and value not in self.classes:
            raise t.TraitError(f"filter_class={value!r} is not a class of this audit; use '' (all) or one of "
                               f"{', '.join(map(repr, self.classes[:20]))}{' ...' if len(self.classes) > 20 else ''}")
        return value

    @t.validate("filter_min", "filter_max")
    def _check_bound(self, proposal: dict) -> float | None:
        value = proposal["value"]
        if value is not None and not math.isfinite(value):
            raise t.TraitError(f"{proposal['trait'].name}={value!r}: use a finite number or None")
        return value

    @t.validate("opened")
    def _check_opened(self, proposal: dict) -> int | None:
        value = proposal["value"]
        if value is not None and not 0 <= value < len(self.rows):
            raise t.TraitError(f"opened={value}: use None or a row index 0..{len(self.rows) - 1}")
        return value

    def visible_rows(self, table: pd.DataFrame) -> list[int]:
        """The rows the browser shows, in its order (the rules of ``visibleRows`` in gallery.js).

        Missing values never pass a range filter and sort last in either direction; ties keep the
        table's order.
        """
        keep = pd.Series(True, index=range(len(table)))
        tab = table.reset_index(drop=True)
        if self.filter_class:
            keep &= tab[self.class_field].eq(self.filter_class).fillna(False).astype(bool)
        if self.filter_correct != "all" and "correct" in tab:
            want = self.filter_correct == "correct"
            keep &= tab["correct"].map(lambda v: v is not None and v is not pd.NA and bool(v) == want
                                       if not (isinstance(v, float) and math.isnan(v)) else False)
        if self.filter_metric and (self.filter_min is not None or self.filter_max is not None):
            v = _as_float(tab[self.filter_metric])
            keep &= v.notna()
            if self.filter_min is not None:
                keep &= v >= self.filter_min
            if self.filter_max is not None:
                keep &= v <= self.filter_max
        rows = [int(i) for i in np.flatnonzero(keep.to_numpy(bool))]
        if self.sort_by:
            v = _as_float(tab[self.sort_by])
            known = [i for i in rows if not pd.isna(v[i])]
            missing = [i for i in rows if pd.isna(v[i])]
            known.sort(key=lambda i: (-v[i] if self.descending else v[i], i))
            rows = known + missing
        return rows


# --- the widget ---------------------------------------------------------------------------------------------------

def _summary(table: pd.DataFrame, field: str, metrics: list[str], has_labels: bool) -> dict[str, Any]:
    """Per class (``field``) and for all rows: rows, accuracy (with true labels) and the mean of each metric."""
    columns = ["class", "rows"] + (["accuracy"] if has_labels else []) + [f"mean {m}" for m in metrics]

    def line(name: str, part: pd.DataFrame) -> list[Any]:
        out: list[Any] = [name, len(part)]
        if has_labels:
            known = part["correct"].dropna()
            out.append(_json_value(known.astype(float).mean()) if len(known) else None)
        out += [_json_value(_as_float(part[m]).mean()) for m in metrics]
        return out

    rows = [line(str(name), part) for name, part in table.groupby(field, sort=True, dropna=True)]
    rows.append(line("all", table))
    return {"columns": columns, "rows": rows}


class AuditWidget(ipywidgets.VBox):
    """An audit as a gallery of thumbnails; click one to explore it in an ``OcclusionWidget``.

    ``w.gallery`` is the browser part (sort, filter, tabs; its traits are mirrored here: ``w.sort_by =
    "confidence"`` works), ``w.detail`` holds the opened widget, ``w.open_image(i)`` opens row ``i`` from
    Python and returns its ``OcclusionWidget`` (``w.opened_widget``). The gallery shows the table as it
    was when the widget was made: after ``audit.refresh()`` (a run still writing), make a new one.

    Parameters
    ----------
    audit : Audit
        From :func:`occlusion_widget.audit.audit` or ``Audit.open(path)``.
    model : ImageClassifier, optional
        Needed to open an image (default: ``audit.model``, set when the audit was just run).
    thumb_size : int
        Longest side of a thumbnail in pixels (default 96).
    opacity : float in [0, 1]
        The overlay's opacity where the map is strongest.
    colormap : str, optional
        A matplotlib colormap; default ``RdBu_r`` for signed maps, ``inferno`` for gradient maps.
    means_by : "target", "true" or "predicted"
        What the per-class mean maps group by (see ``Audit.class_means``).
    **widget_params
        Passed to the ``OcclusionWidget`` an opened image gets, over the audit's own parameters.
    """

    #: The gallery's view traits, readable and settable here too (validated by the gallery).
    _MIRRORED = ("sort_by", "descending", "filter_class", "filter_correct", "filter_metric", "filter_min",
                 "filter_max", "opened", "tab")

    def __init__(self, audit: Any, model: Any = None, *, thumb_size: int = 96, opacity: float = 0.6,
                 colormap: str | None = None, means_by: str = "target", **widget_params: Any):
        import matplotlib

        from ..methods.registry import get_method

        for name in ("table", "map", "image", "class_means", "params"):
            if not hasattr(audit, name):
                raise TypeError(f"AuditWidget: audit must be an Audit (ow.audit(...) or Audit.open(path)); "
                                f"{type(audit).__name__} has no {name!r}")
        if isinstance(thumb_size, bool) or not isinstance(thumb_size, (int, np.integer)) or not 16 <= thumb_size <= 512:
            raise ValueError(f"thumb_size={thumb_size!r} is not allowed; use an int in 16..512 (pixels)")
        if isinstance(opacity, bool) or not isinstance(opacity, (int, float)) or not 0 <= opacity <= 1:
            raise ValueError(f"opacity={opacity!r} is not allowed; use a number in [0, 1]")
        method = audit.params.get("method", "occlusion")
        signed = get_method(method).signed
        cmap = colormap or ("RdBu_r" if signed else "inferno")
        if cmap not in matplotlib.colormaps:
            raise ValueError(f"colormap={cmap!r} is not a matplotlib colormap (e.g. 'RdBu_r', 'coolwarm', 'inferno')")
        table = audit.table
        if len(table) == 0:
            raise ValueError("AuditWidget: the audit has no rows yet (audit.refresh() once a run has committed some)")
        self.audit, self.model = audit, model if model is not None else getattr(audit, "model", None)
        self.widget_params = widget_params
        self.opened_widget: Any = None

        has_labels = bool(table["true_name"].notna().any()) if "true_name" in table else False
        field = "true_name" if has_labels else "pred_name"
        metrics = numeric_columns(table)
        rows = []
        for i, rec in enumerate(table.to_dict("records")):
            row = {k: _json_value(v) for k, v in rec.items() if not k.startswith("time_")}
            row["row"] = i
            rows.append(row)
        thumbs = [jpeg(composite(audit.image(i), audit.map(i), signed=signed, cmap=cmap, opacity=float(opacity),
                                  size=int(thumb_size))) for i in range(len(table))]
        counts = table[{"target": "target_name", "true": "true_name", "predicted": "pred_name"}.get(means_by, "target_name")]\
            .value_counts()
        means = [{"name": name, "count": int(counts.get(name, 0)),
                  "thumb": jpeg(composite(None, m, signed=signed, cmap=cmap, opacity=1.0, size=int(thumb_size)))}
                 for name, m in audit.class_means(by=means_by).items()]
        n_images = table["image_id"].nunique() if "image_id" in table else len(table)
        self.gallery = AuditGallery(
            rows=rows, thumbs=thumbs, numeric_columns=metrics,
            classes=sorted(str(c) for c in table[field].dropna().unique()), class_field=field, has_labels=has_labels,
            title=f"{method}, {n_images} images, {len(table)} maps", class_means=means,
            summary=_summary(table, field, metrics, has_labels),
        )
        self.detail = ipywidgets.VBox()
        super().__init__(children=(self.gallery, self.detail))
        self.gallery.observe(self._on_opened, names="opened")

    # --- opening an image ---------------------------------------------------------------------------------------
    def _widget_kwargs(self, i: int) -> tuple[Any, dict[str, Any]]:
        """(the image, keyword arguments) for row ``i``'s OcclusionWidget: the audit's method and parameters."""
        import torch

        from ..methods.registry import get_method
        from ..widget import OcclusionWidget

        row = self.audit.table.iloc[i]
        path = row.get("path")
        if isinstance(path, str) and path and Path(path).is_file():
            image: Any = path  # decoded by the model's own preprocessing: the audit's exact input
        else:  # a dataset's image: the stored input (rounded to 1/255), passed through as a tensor
            image = torch.from_numpy(self.audit.image(i).transpose(2, 0, 1).astype(np.float32) / 255.0)
        method = self.audit.params.get("method", "occlusion")
        stored = self.audit.params.get("method_params", {})
        allowed = set(OcclusionWidget.class_trait_names())
        kwargs: dict[str, Any] = {"method": method}
        for p in get_method(method).params:
            if p.trait is not None and p.trait in allowed and stored.get(p.name) is not None:
                v = stored[p.name]
                kwargs[p.trait] = tuple(v) if isinstance(v, list) else v
        kwargs.update(self.widget_params)
        return image, kwargs

    def open_image(self, i: int) -> Any:
        """Open row ``i`` in an ``OcclusionWidget`` (shown below the gallery) and return it.

        The widget explains the row's target with the audit's method and parameters, so its map is the
        audit's (for an image with a path; a dataset's image is the stored input rounded to 1/255).
        """
        n = len(self.audit.table)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
            raise IndexError(f"open_image({i!r}): use a row index 0..{n - 1}")
        if self.gallery.opened == i:  # opened again: a fresh widget
            self.gallery.opened = None
        self.gallery.opened = int(i)  # -> _on_opened
        if self.gallery.error:
            raise RuntimeError(self.gallery.error)
        return self.opened_widget

    def _on_opened(self, change: dict) -> None:
        i = change["new"]
        if self.opened_widget is not None:
            self.opened_widget.close()  # stops its background thread
            self.opened_widget = None
        self.detail.children = ()
        self.gallery.error = ""
        if i is None:
            self.gallery.message = ""
            return
        if self.model is None:
            self.gallery.error = ("Opening an image needs the model: AuditWidget(audit, model=...) "
                                  "(an audit read with Audit.open has none)")
            return
        from ..widget import OcclusionWidget

        try:
            image, kwargs = self._widget_kwargs(int(i))
            row = self.audit.table.iloc[int(i)]
            self.opened_widget = OcclusionWidget(self.model, image, targets=[int(row["target"])], **kwargs)
        except Exception as exc:  # noqa: BLE001 - shown in the gallery: a callback's exception only reaches the log
            self.gallery.error = f"row {i} ({self.audit.table.iloc[int(i)]['image_id']}): {type(exc).__name__}: {exc}"
            return
        self.detail.children = (self.opened_widget,)
        self.gallery.message = f"opened row {i}: {row['image_id']} ({row['target_name']}) below"

    def visible_rows(self) -> pd.DataFrame:
        """The audit's rows the gallery shows, in its order (same filters and sort as the browser)."""
        return self.audit.table.iloc[self.gallery.visible_rows(self.audit.table)]

    def close(self) -> None:
        """Close the gallery and the opened widget (stops its background thread)."""
        opened = getattr(self, "opened_widget", None)  # also called by __del__ of a half-built widget
        if opened is not None:
            opened.close()
            self.opened_widget = None
        for child in (getattr(self, "gallery", None), getattr(self, "detail", None)):
            if child is not None:
                child.close()
        super().close()


def _mirror(name: str) -> property:
    def get(self: AuditWidget) -> Any:
        return getattr(self.gallery, name)

    def set_(self: AuditWidget, value: Any) -> None:
        setattr(self.gallery, name, value)

    return property(get, set_, doc=f"The gallery's ``{name}`` (see :class:`AuditGallery`).")


for _name in AuditWidget._MIRRORED:
    setattr(AuditWidget, _name, _mirror(_name))

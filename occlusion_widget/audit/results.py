"""``Audit``: an audit folder read back (table, maps, images, aggregates) and ``compare_audits``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .metrics import pearson
from .store import Store


class Audit:
    """The results of :func:`audit`, read from its folder (nothing is held in memory but the table).

    Attributes
    ----------
    path : Path
        The audit folder.
    params : dict
        The parameters it was made with (``audit.json``).
    table : pandas.DataFrame
        One row per image and target (columns: see ``store.SCHEMA``); row ``i`` is ``table.iloc[i]``.
    model : ImageClassifier or None
        The model, when the audit was just run (``result(i)`` needs one).
    """

    def __init__(self, path: str | os.PathLike, model: Any = None):
        self.store = Store(path)
        meta = self.store.read_meta()
        if meta is None:
            raise FileNotFoundError(f"Audit.open: {str(path)!r} holds no audit (no audit.json); run ow.audit first")
        self.path = self.store.root
        self.meta = meta
        self.params: dict[str, Any] = meta["params"]
        self.model = model
        self._table: pd.DataFrame | None = None
        self._arrays = None

    @classmethod
    def open(cls, path: str | os.PathLike, model: Any = None) -> Audit:
        """Read an audit folder (while or after a run writes it: only committed rows are seen)."""
        return cls(path, model)

    def refresh(self) -> Audit:
        """Re-read rows committed since the table was loaded."""
        self._table, self._arrays = None, None
        return self

    @property
    def table(self) -> pd.DataFrame:
        if self._table is None:
            # Nullable integer/boolean columns: a missing true label stays <NA>, not a float NaN.
            mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
            self._table = self.store.read_rows().to_pandas(types_mapper=mapping.get)
        return self._table

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        t = self.table
        return (f"Audit({str(self.path)!r}: {t['image_id'].nunique()} images, {len(t)} rows, "
                f"method={self.params['method']!r}, model={self.params['model']['name']!r})")

    def _row(self, i: int) -> pd.Series:
        n = len(self.table)
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"row {i!r} is out of range; the audit has {n} rows (0..{n - 1})")
        return self.table.iloc[int(i)]

    def _zarr(self):
        if self._arrays is None:
            self._arrays = self.store.arrays(mode="r")
        return self._arrays

    def map(self, i: int) -> np.ndarray:
        """The map (H, W) float32 of row ``i``, in the model's input pixels."""
        return np.asarray(self._zarr()[0][int(self._row(i)["map_index"])])

    def maps(self, rows: Any = None) -> np.ndarray:
        """Maps (n, H, W) of rows ``rows`` (default: all), in table order."""
        idx = self.table["map_index"].to_numpy() if rows is None else self.table["map_index"].to_numpy()[rows]
        z = self._zarr()[0]
        h, w = z.shape[1:]
        return np.stack([np.asarray(z[int(j)]) for j in np.atleast_1d(idx)]) if len(np.atleast_1d(idx)) else \
            np.zeros((0, h, w), np.float32)

    def image(self, i: int) -> np.ndarray:
        """The input of row ``i`` as the network saw it: uint8 (H, W, 3), model resolution."""
        return np.asarray(self._zarr()[1][int(self._row(i)["image_index"])])

    def result(self, i: int, model: Any = None) -> Any:
        """The full result object of row ``i``, **recomputed** with the stored method and parameters.

        The image is read from its path when it has one (so the result equals the audit's row); an image
        from a dataset is taken from the stored uint8 input (values rounded to 1/255). ``model``: the
        audit's model (default: the one it ran with, when this object came from :func:`audit`).
        """
        from ..methods.registry import run as run_method

        model = model if model is not None else self.model
        if model is None:
            raise ValueError("result(i) recomputes the map and needs the model: pass result(i, model=...)")
        row = self._row(i)
        if row["path"] and Path(row["path"]).exists():
            image: Any = row["path"]
        else:
            import torch

            image = torch.from_numpy(self.image(i).transpose(2, 0, 1).astype(np.float32) / 255.0)
        return run_method(self.params["method"], model, image, [int(row["target"])],
                          **self.params["method_params"])

    # --- aggregates -------------------------------------------------------------------------------------------------
    def class_means(self, by: str = "target") -> dict[str, np.ndarray]:
        """Mean map (H, W) per class, most frequent class first.

        Parameters
        ----------
        by : "target" (the class explained), "true" (true class) or "predicted"
        """
        column = {"target": "target_name", "true": "true_name", "predicted": "pred_name"}.get(by)
        if column is None:
            raise ValueError(f"by={by!r} is not allowed; use 'target', 'true' or 'predicted'")
        t = self.table
        out: dict[str, np.ndarray] = {}
        for name in t[column].dropna().value_counts().index:
            rows = np.flatnonzero((t[column] == name).to_numpy())
            out[str(name)] = self.maps(rows).mean(axis=0)
        return out

    def misclassified(self) -> pd.DataFrame:
        """Rows of wrongly predicted images (needs true labels), most confident first."""
        t = self.table
        if t["correct"].isna().all():
            raise ValueError("misclassified() needs true labels: audit an ImageFolder or a dataset of (image, label)")
        return t[t["correct"].eq(False)].sort_values("confidence", ascending=False, kind="stable")

    def right_for_wrong_reasons(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` correct predictions with the least positive evidence on the object (needs annotations)."""
        t = self.table
        if t["energy_inside"].isna().all():
            raise ValueError("right_for_wrong_reasons() needs annotations: pass audit(..., annotations=...)")
        if t["correct"].isna().all():
            raise ValueError("right_for_wrong_reasons() needs true labels: audit an ImageFolder or a dataset of "
                             "(image, label)")
        ok = t[t["correct"].eq(True) & t["energy_inside"].notna()]
        return ok.sort_values("energy_inside", kind="stable").head(int(n))

    def faithfulness(self) -> pd.DataFrame:
        """Per method: rows, mean/median deletion and insertion AUCs, and their difference (insertion - deletion)."""
        t = self.table
        if t["deletion_auc"].isna().all():
            raise ValueError("faithfulness() needs deletion/insertion: run audit(..., deletion_insertion=True)")
        d = t.dropna(subset=["deletion_auc", "insertion_auc"])
        return pd.DataFrame([{
            "method": self.params["method"], "rows": len(d),
            "deletion_auc_mean": d["deletion_auc"].mean(), "deletion_auc_median": d["deletion_auc"].median(),
            "insertion_auc_mean": d["insertion_auc"].mean(), "insertion_auc_median": d["insertion_auc"].median(),
            "difference_mean": (d["insertion_auc"] - d["deletion_auc"]).mean(),
        }])


def compare_audits(a: Audit, b: Audit, names: tuple[str, str] = ("a", "b")) -> pd.DataFrame:
    """Two audits of the same images side by side, joined on (image_id, target).

    Returns a DataFrame with both audits' metrics (suffixes ``_a`` / ``_b`` by default) and
    ``map_agreement``: the Pearson correlation of the two maps (NaN where one is constant).
    """
    if not (isinstance(a, Audit) and isinstance(b, Audit)):
        raise TypeError("compare_audits: expected two Audit objects (ow.audit(...) or Audit.open(path))")
    keys = ["image_id", "target"]
    left = a.table.reset_index(names="row")
    right = b.table.reset_index(names="row")
    joined = left.merge(right, on=keys, suffixes=tuple(f"_{n}" for n in names))
    if joined.empty:
        raise ValueError("compare_audits: the audits share no (image_id, target); audit the same images with the "
                         "same targets (e.g. targets='label')")
    ra, rb = f"row_{names[0]}", f"row_{names[1]}"
    joined["map_agreement"] = [pearson(a.map(int(i)), b.map(int(j))) for i, j in zip(joined[ra], joined[rb], strict=True)]
    return joined

"""The on-disk audit: parameters (JSON), rows in committed Parquet shards, maps and images in Zarr, a lock.

Layout of ``out/``::

    audit.json        parameters, input size, slots per image (what a rerun must match)
    images.json       image ids in index order (index i -> images[i], maps[i * slots + k])
    arrays.zarr/      maps float32 (n * slots, H, W) and images uint8 (n, H, W, 3), one chunk per row
    rows/part-*.parquet  rows, one file per flushed chunk, written after the chunk's arrays
    table.parquet     all rows, merged by the driver at the end of a run (for other tools)
    lock              {"pid", "host", "started"} while a run writes

A shard appears atomically (written to a temporary name, then renamed), after the arrays of its rows:
an image is finished exactly when a shard holds its rows, so a crash loses only unflushed images.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    ("image_id", pa.string()), ("path", pa.string()), ("image_index", pa.int64()), ("map_index", pa.int64()),
    ("true_label", pa.int64()), ("true_name", pa.string()), ("pred_label", pa.int64()), ("pred_name", pa.string()),
    ("confidence", pa.float64()), ("correct", pa.bool_()), ("target", pa.int64()), ("target_name", pa.string()),
    ("target_kind", pa.string()), ("base_score", pa.float64()), ("peak_y", pa.int64()), ("peak_x", pa.int64()),
    ("concentration", pa.float64()), ("deletion_auc", pa.float64()), ("insertion_auc", pa.float64()),
    ("pointing_hit", pa.bool_()), ("energy_inside", pa.float64()), ("time_load_s", pa.float64()),
    ("time_explain_s", pa.float64()), ("time_metrics_s", pa.float64()), ("worker", pa.string()),
])
COLUMNS = SCHEMA.names


class AuditLocked(RuntimeError):
    """Another run holds the store's lock."""


class ParameterMismatch(ValueError):
    """The store holds an audit made with other parameters."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """An audit folder. Workers open it with ``Store(out)`` and only write arrays and shards."""

    def __init__(self, out: str | os.PathLike):
        self.root = Path(out).expanduser()
        self.rows_dir = self.root / "rows"
        self.lock_path = self.root / "lock"
        self._lock_token: str | None = None

    # --- lock ---------------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the exclusive lock, or raise :class:`AuditLocked` naming the holder.

        A lock left by a dead process on this host is taken over (its pid no longer exists).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "token": token}
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    held = json.loads(self.lock_path.read_text("utf-8"))
                except (OSError, ValueError):
                    held = {}
                pid, host = held.get("pid"), held.get("host")
                if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
                    self.lock_path.unlink(missing_ok=True)  # its process is gone on this very host
                    continue
                raise AuditLocked(
                    f"audit: 'out' is in use by pid {pid} on host {host} since {held.get('started')} "
                    f"(lock file {self.lock_path}); wait for that run to finish, or remove the lock if that process "
                    f"is gone") from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(info, fh)
            self._lock_token = token
            return
        raise AuditLocked(f"audit: could not take the lock {self.lock_path}")

    def release(self) -> None:
        if self._lock_token is None:
            return
        try:
            if json.loads(self.lock_path.read_text("utf-8")).get("token") == self._lock_token:
                self.lock_path.unlink()
        except (OSError, ValueError):
            pass
        self._lock_token = None

    # --- parameters and ids ---------------------------------------------------------------------------------------
    def read_meta(self) -> dict[str, Any] | None:
        path = self.root / "audit.json"
        return json.loads(path.read_text("utf-8")) if path.exists() else None

    def init_meta(self, meta: dict[str, Any]) -> None:
        """Write ``meta`` for a new store, or check it against the stored one (ParameterMismatch)."""
        old = self.read_meta()
        if old is None:
            _atomic_write(self.root / "audit.json", json.dumps(meta, indent=2, sort_keys=True))
            return
        diff = [k for k in sorted(set(old["params"]) | set(meta["params"]))
                if old["params"].get(k) != meta["params"].get(k)]
        if diff:
            what = "; ".join(f"{k}: {old['params'].get(k)!r} stored, {meta['params'].get(k)!r} now" for k in diff)
            raise ParameterMismatch(f"audit: out={str(self.root)!r} holds an audit made with other parameters ({what}); "
                                    f"use another 'out', or the stored parameters to resume it")

    def image_ids(self) -> list[str]:
        path = self.root / "images.json"
        return json.loads(path.read_text("utf-8")) if path.exists() else []

    def register_ids(self, ids: list[str], input_size: tuple[int, int], slots: int) -> dict[str, int]:
        """Index of every id (known ids keep theirs, new ones are appended); grows the arrays to fit."""
        known = self.image_ids()
        index = {k: i for i, k in enumerate(known)}
        for k in ids:
            if k not in index:
                index[k] = len(known)
                known.append(k)
        _atomic_write(self.root / "images.json", json.dumps(known))
        import zarr

        h, w = input_size
        group = zarr.open_group(str(self.root / "arrays.zarr"), mode="a")
        n = len(known)
        if "maps" not in group:
            create = getattr(group, "create_array", None) or group.create_dataset  # zarr 3, else zarr 2
            create("maps", shape=(n * slots, h, w), chunks=(1, h, w), dtype="float32", fill_value=float("nan"))
            create("images", shape=(n, h, w, 3), chunks=(1, h, w, 3), dtype="uint8", fill_value=0)
        elif cast("zarr.Array", group["images"]).shape[0] < n:
            cast("zarr.Array", group["maps"]).resize((n * slots, h, w))
            cast("zarr.Array", group["images"]).resize((n, h, w, 3))
        return index

    # --- arrays -------------------------------------------------------------------------------------------------
    def arrays(self, mode: Literal["r", "r+", "a", "w", "w-"] = "r+"):
        import zarr

        group = zarr.open_group(str(self.root / "arrays.zarr"), mode=mode)
        return group["maps"], group["images"]

    # --- rows -----------------------------------------------------------------------------------------------------
    def write_shard(self, rows: list[dict[str, Any]], worker: str) -> Path:
        """Commit ``rows`` as one Parquet file (atomic rename: it exists complete or not at all)."""
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)
        name = f"part-{time.strftime('%Y%m%d%H%M%S')}-{worker}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.rows_dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.rows_dir / name)
        return self.rows_dir / name

    def read_rows(self) -> pa.Table:
        """Every committed row, in image then map order (duplicates of an (image, target) dropped)."""
        files = sorted(self.rows_dir.glob("part-*.parquet")) if self.rows_dir.exists() else []
        if not files:
            return SCHEMA.empty_table()
        table = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files])
        df = table.to_pandas()
        df = df.drop_duplicates(["image_id", "target"]).sort_values(["image_index", "map_index"], kind="stable")
        return pa.Table.from_pandas(df.reset_index(drop=True), schema=SCHEMA, preserve_index=False)

    def finished_ids(self) -> set[str]:
        files = sorted(self.rows_dir.glob("part-*.parquet")) if self.rows_dir.exists() else []
        done: set[str] = set()
        for f in files:
            done.update(pq.read_table(f, columns=["image_id"]).column(0).to_pylist())
        return done

    def merge(self) -> Path:
        """Write ``table.parquet``: all committed rows in one file for other tools."""
        path = self.root / "table.parquet"
        tmp = self.root / ".table.parquet.tmp"
        pq.write_table(self.read_rows(), tmp)
        os.replace(tmp, path)
        return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(3, H, W) floats in [0, 1] -> (H, W, 3) uint8 for thumbnails."""
    return (np.clip(np.asarray(x, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)

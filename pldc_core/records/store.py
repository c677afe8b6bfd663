"""Per-checkpoint pseudo-label records on disk: write them atomically, read them back (no torch).

The layout and the columns are ``schema``'s. Writing goes through ``atomic.atomic_dir``:
the tables and, last, ``manifest.json`` are written into a hidden temporary folder that is then
renamed to ``RUN/records/iter_XXXXXXX``, so a reader (which only trusts folders holding a
manifest) sees a checkpoint's records whole or not at all, while training writes the next ones.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from pldc_core.atomic import atomic_dir, remove_abandoned_temporaries
from pldc_core.records.schema import (GT_SCHEMA, IMAGE_SCHEMA, MANIFEST_FILE, MANIFEST_KEYS, QUERY_SCHEMA,
                                      TABLE_FILES, Manifest)
from pldc_core.rle import decode_rle
from pldc_core.run_dir import RECORDS_DIR, RunDir

SCHEMAS = {"queries": QUERY_SCHEMA, "gt": GT_SCHEMA, "images": IMAGE_SCHEMA}
# Filled in by the writer from the tables when the caller leaves them out.
DERIVED_MANIFEST_KEYS = ("num_images", "num_queries", "has_gt", "created")
# Every query column except the two per-pixel ones; pass as ``columns`` for a light load.
SUMMARY_QUERY_COLUMNS = tuple(n for n in QUERY_SCHEMA.names if n not in ("mask_rle", "unc_png"))

_ITER_DIR = re.compile(r"^iter_(\d{7,})$")
_READ_ATTEMPTS = 6


class RecordError(ValueError):
    """Records that cannot be written or read as asked; the message names the file or key."""


def records_dir(run_dir: str | os.PathLike, iteration: int) -> Path:
    """``RUN/records/iter_XXXXXXX`` of one checkpoint."""
    return RunDir(run_dir).records(iteration)


def check_table(table: pa.Table, name: str) -> pa.Table:
    """``table`` with its columns in schema order; RecordError if it does not match ``SCHEMAS[name]``."""
    schema = SCHEMAS[name]
    if isinstance(table, pa.Table) and table.schema.equals(schema):
        return table
    if not isinstance(table, pa.Table):
        raise RecordError(f"{TABLE_FILES[name]}: expected a pyarrow.Table, got {type(table).__name__}")
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    wrong = [f"{f.name}: {table.schema.field(f.name).type} (expected {f.type})"
             for f in schema if f.name in table.column_names and table.schema.field(f.name).type != f.type]
    if missing or extra or wrong:
        parts = ([f"missing columns {missing}"] if missing else []) + ([f"unknown columns {extra}"] if extra else []) \
            + ([f"wrong types {wrong}"] if wrong else [])
        raise RecordError(f"{TABLE_FILES[name]}: table does not match the records schema: " + "; ".join(parts))
    table = table.select(schema.names)
    return table if table.schema.equals(schema) else table.cast(schema)


def check_manifest(manifest: Mapping, iteration: int, *, complete: bool) -> dict:
    """A copy of ``manifest`` after checking its keys; ``complete`` also requires the derived ones."""
    required = [k for k in MANIFEST_KEYS if complete or k not in DERIVED_MANIFEST_KEYS]
    missing = [k for k in required if k not in manifest]
    if missing:
        raise RecordError(f"{MANIFEST_FILE}: missing keys {missing} (records.schema.MANIFEST_KEYS)")
    if int(manifest["iteration"]) != int(iteration):
        raise RecordError(f"{MANIFEST_FILE}: iteration {manifest['iteration']} != records iteration {iteration}")
    thresholds = manifest["thresholds"]
    if not isinstance(thresholds, Mapping) or any(k not in thresholds for k in ("filter", "c_t", "m_t", "s_t")):
        raise RecordError(f"{MANIFEST_FILE}: thresholds must be a dict with filter, c_t, m_t, s_t; got {thresholds!r}")
    if not isinstance(manifest["dicc"], Mapping) or any(k not in manifest["dicc"] for k in ("enabled", "w")):
        raise RecordError(f"{MANIFEST_FILE}: dicc must be a dict with enabled, w; got {manifest['dicc']!r}")
    for i, cat in enumerate(manifest["categories"]):
        if not isinstance(cat, Mapping) or any(k not in cat for k in ("id", "name", "supercategory")):
            raise RecordError(f"{MANIFEST_FILE}: categories[{i}] must have id, name, supercategory; got {cat!r}")
    out = dict(manifest)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{MANIFEST_FILE}: not JSON-serialisable: {exc}") from None
    return out


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class RecordWriter:
    """Stream one checkpoint's records to disk, committed atomically on ``close()``.

    ``add(queries, gt, images)`` buffers tables and writes a parquet row group whenever
    ``row_group_rows`` query rows (or ``row_group_bytes``) are buffered, so the whole table is
    never held in memory. ``close()`` writes ``manifest.json`` last and renames the temporary
    folder to ``RUN/records/iter_XXXXXXX`` (replacing an existing one whole); ``abort()``
    removes it. As a context manager it closes on success and aborts on an exception.
    ``num_images``, ``num_queries``, ``has_gt`` and ``created`` are filled in from the tables
    when the manifest leaves them out; given ones must agree.
    """

    def __init__(self, run_dir: str | os.PathLike, iteration: int, manifest: Mapping, *,
                 row_group_rows: int = 65536, row_group_bytes: int = 64 << 20):
        self.path = records_dir(run_dir, iteration)
        self.iteration = int(iteration)
        self._manifest = check_manifest(manifest, iteration, complete=False)
        self._row_group_rows, self._row_group_bytes = row_group_rows, row_group_bytes
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in SCHEMAS}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._rows = {name: 0 for name in SCHEMAS}
        self._buffered_rows = self._buffered_bytes = 0
        self._any_gt = False
        remove_abandoned_temporaries(self.path.parent)  # what a killed writer left behind
        self._commit = atomic_dir(self.path)
        self._tmp: Path | None = self._commit.__enter__()

    def add(self, queries: pa.Table | None = None, gt: pa.Table | None = None,
            images: pa.Table | None = None) -> None:
        """Append rows (any of the three tables may be None)."""
        if self._tmp is None:
            raise RecordError(f"{self.path}: writer is already closed")
        for name, table in (("queries", queries), ("gt", gt), ("images", images)):
            if table is None:
                continue
            table = check_table(table, name)
            self._buffers[name].append(table)
            self._rows[name] += table.num_rows
            if name == "queries":
                self._buffered_rows += table.num_rows
                self._buffered_bytes += table.get_total_buffer_size()
            if name == "images" and table.num_rows:
                self._any_gt |= bool(pc.any(table["has_gt"]).as_py())
        if self._buffered_rows >= self._row_group_rows or self._buffered_bytes >= self._row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        for name, tables in self._buffers.items():
            if not tables:
                continue
            table = pa.concat_tables(tables)
            if name not in self._writers:
                self._writers[name] = pq.ParquetWriter(self._tmp / TABLE_FILES[name], SCHEMAS[name])
            self._writers[name].write_table(table, row_group_size=max(table.num_rows, 1))
            tables.clear()
        self._buffered_rows = self._buffered_bytes = 0

    def _final_manifest(self) -> dict:
        manifest = dict(self._manifest)
        derived = {"num_images": self._rows["images"], "num_queries": self._rows["queries"],
                   "has_gt": self._any_gt}
        for key, value in derived.items():
            if key in manifest and manifest[key] != value and key != "has_gt":
                raise RecordError(f"{MANIFEST_FILE}: {key} is {manifest[key]!r} but the tables hold {value} rows "
                                  f"({key} counts rows; leave it out to have it filled in)")
            manifest.setdefault(key, value)
        manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return check_manifest(manifest, self.iteration, complete=True)

    def close(self) -> Path:
        """Finish the tables, write the manifest, commit; returns the records folder."""
        if self._tmp is None:
            raise RecordError(f"{self.path}: writer is already closed")
        try:
            manifest = self._final_manifest()
            self._flush()
            for name in SCHEMAS:
                writer = self._writers.pop(name, None)
                if writer is None:
                    pq.write_table(SCHEMAS[name].empty_table(), self._tmp / TABLE_FILES[name])
                else:
                    writer.close()
                _fsync(self._tmp / TABLE_FILES[name])
            with open(self._tmp / MANIFEST_FILE, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            self.abort()
            raise
        self._tmp = None
        self._commit.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the records folder is left as it was."""
        if self._tmp is None:
            return
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        self._writers.clear()
        self._tmp = None
        with contextlib.suppress(_Aborted):
            self._commit.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Aborted(Exception):
    """Thrown into ``atomic_dir`` to make it discard the temporary folder."""


def write_records(run_dir: str | os.PathLike, iteration: int, queries: pa.Table, gt: pa.Table,
                  images: pa.Table, manifest: Mapping) -> Path:
    """Write one checkpoint's records in one go (see ``RecordWriter``); returns the folder."""
    with RecordWriter(run_dir, iteration, manifest) as writer:
        writer.add(queries, gt, images)
    return writer.path


# --------------------------------------------------------------------------- reading


@dataclass
class RecordSet:
    """One checkpoint's records as DataFrames (see ``to_frame`` for the column types)."""

    queries: pd.DataFrame
    gt: pd.DataFrame
    images: pd.DataFrame
    manifest: dict          # manifest.json as written
    path: Path

    @cached_property
    def info(self) -> Manifest:
        """The manifest with types."""
        return Manifest.of(self.manifest)


def list_record_iterations(run_dir: str | os.PathLike) -> list[int]:
    """Iterations with complete records (a manifest), ascending; temporary folders are ignored."""
    root = Path(run_dir) / RECORDS_DIR
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        match = _ITER_DIR.match(entry.name)
        if match and os.path.isfile(os.path.join(entry.path, MANIFEST_FILE)):
            found.append(int(match.group(1)))
    return sorted(found)


def _list_to_arrow_dtype(dtype: pa.DataType):
    if pa.types.is_list(dtype) or pa.types.is_binary(dtype):
        return pd.ArrowDtype(dtype)
    return None


def to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame ``load_records`` gives for a table.

    Numbers and bools are numpy columns; strings use pandas' string dtype (None stays missing);
    list and binary columns are ``pd.ArrowDtype`` (fast to load; ``s.list[0]`` takes a
    vectorised element, ``s.iloc[i]`` a Python list / bytes).
    """
    return table.to_pandas(types_mapper=_list_to_arrow_dtype, split_blocks=True, self_destruct=False)


def _read_folder(folder: Path, columns: Sequence[str] | None) -> tuple[dict, dict[str, pa.Table]]:
    """Read a records folder as one consistent version, even if it is replaced meanwhile.

    Every file is opened relative to one open handle of the folder, so all of them come from the
    same folder even if a writer renames a newer version into place between two opens; a file
    that vanished (the old version was deleted) raises FileNotFoundError and the caller retries.
    """
    use_dir_fd = os.open in os.supports_dir_fd
    dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if use_dir_fd else None

    def opener(name: str):
        if dir_fd is None:
            return open(folder / name, "rb")
        return os.fdopen(os.open(name, os.O_RDONLY, dir_fd=dir_fd), "rb")

    try:
        with opener(MANIFEST_FILE) as f:
            manifest = json.load(f)
        tables = {}
        for name, file_name in TABLE_FILES.items():
            cols = list(columns) if (name == "queries" and columns is not None) else None
            with opener(file_name) as f:
                tables[name] = pq.read_table(f, columns=cols)
        return manifest, tables
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def load_records(run_dir: str | os.PathLike, iteration: int | None = None,
                 columns: Sequence[str] | None = None) -> RecordSet:
    """Load one checkpoint's records (``iteration=None``: the latest complete one).

    ``columns`` selects query columns (e.g. ``SUMMARY_QUERY_COLUMNS`` skips the masks and the
    uncertainty PNGs); the gt and images tables are always whole.
    """
    if columns is not None:
        unknown = [c for c in columns if c not in QUERY_SCHEMA.names]
        if unknown:
            raise RecordError(f"{TABLE_FILES['queries']}: unknown columns {unknown}")
    for attempt in range(_READ_ATTEMPTS):
        available = list_record_iterations(run_dir)
        it = iteration if iteration is not None else (available[-1] if available else None)
        if it is None:
            raise RecordError(f"{Path(run_dir) / RECORDS_DIR}: no complete records")
        folder = records_dir(run_dir, it)
        if int(it) in available:
            try:
                manifest, tables = _read_folder(folder, columns)
            except FileNotFoundError as exc:  # replaced while being read: read the new version
                problem = f"changed while being read ({exc})"
            except (pa.ArrowInvalid, json.JSONDecodeError) as exc:
                raise RecordError(f"{folder}: unreadable records: {exc}") from exc
            else:
                return RecordSet(to_frame(tables["queries"]), to_frame(tables["gt"]), to_frame(tables["images"]),
                                 manifest, folder)
        else:
            problem = f"no complete records for iteration {it} (available: {available})"
            if not _being_replaced(folder):
                break
        time.sleep(0.01 * (attempt + 1))
    raise RecordError(f"{folder}: {problem}")


def _being_replaced(folder: Path) -> bool:
    """Whether a writer's temporary or old copy of ``folder`` exists (``atomic_dir`` names them
    ``.NAME.*``): while it swaps versions, the folder is missing for an instant."""
    try:
        return any(e.name.startswith(f".{folder.name}.") for e in os.scandir(folder.parent))
    except FileNotFoundError:
        return False


def _field(row, name: str):
    try:
        return row[name]
    except (KeyError, IndexError, TypeError):
        return getattr(row, name)


def decode_mask(row) -> np.ndarray:
    """The bool ``[H, W]`` mask of a query or GT row (a Series, dict or itertuples row)."""
    counts = _field(row, "mask_rle")
    if not isinstance(counts, (str, bytes)):
        raise RecordError(f"image {_field(row, 'image_id')}: row has no mask_rle")
    return decode_rle(counts, _field(row, "height"), _field(row, "width"))


def decode_uncertainty(row) -> np.ndarray:
    """The float32 ``[h, w]`` uncertainty map ``u`` in ``[0, 1]`` of a query row (from its PNG)."""
    data = _field(row, "unc_png")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RecordError(f"image {_field(row, 'image_id')}: row has no unc_png")
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img, dtype=np.float32) / 255.0

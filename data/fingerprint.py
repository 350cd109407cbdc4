"""Digests that say whether two runs saw the same data, stable across library versions.

``raw_fingerprint`` identifies the raw data a gate kept without reading its rows: each file the
gate read (path, size and Parquet footer, which holds every row group's row count and column
statistics) and the gate's report (rows read, kept and set aside, by reason). ``frame_digest``
identifies a table by its content: column names, types and values, in a canonical row order.
Neither depends on how Polars or MLflow hash frames, which changes between versions.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import date
from pathlib import Path

import polars as pl

from data.asof import TableCount
from data.contract import TABLES
from data.readers import list_table_files, partition_date

FOOTER_TAIL = 8  # the footer's length (4 bytes, little-endian) and the magic "PAR1"
DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset digest


def parquet_footer(path: Path) -> bytes:
    """The file's Parquet footer (its metadata), read from the end of the file."""
    with path.open("rb") as handle:
        handle.seek(-FOOTER_TAIL, 2)
        tail = handle.read(FOOTER_TAIL)
        length = struct.unpack("<I", tail[:4])[0]
        handle.seek(-(FOOTER_TAIL + length), 2)
        return handle.read(length)


def _files_digest(raw: Path, as_of: date) -> hashlib._Hash:
    digest = hashlib.sha256()
    for name, table in sorted(TABLES.items()):
        found = list_table_files(raw, table)
        for path in found.files:
            day = partition_date(path, table)
            if day is not None and day >= as_of:
                continue
            relative = path.relative_to(found.folder).as_posix()
            digest.update(f"{name}/{relative}\0{path.stat().st_size}\0".encode())
            digest.update(hashlib.sha256(parquet_footer(path)).digest())
    return digest


def raw_files_fingerprint(raw: Path, as_of: date) -> str:
    """A digest of the files a gate at `as_of` would read (those filed under a day before
    `as_of`, or under no day): what identifies its input before it has run."""
    return _files_digest(raw, as_of).hexdigest()[:DIGEST_CHARS]


def raw_fingerprint(raw: Path, as_of: date, tables: dict[str, TableCount]) -> str:
    """A digest of the raw data a gate kept at `as_of`: the files of each contract table it
    read (those filed under a day before `as_of`, or under no day), and its per-table counts
    (`tables`: rows read, kept and set aside by reason)."""
    digest = _files_digest(raw, as_of)
    counts = {name: count.as_dict() for name, count in sorted(tables.items())}
    digest.update(json.dumps({"as_of": str(as_of), "tables": counts}, sort_keys=True).encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def frame_digest(frame: pl.DataFrame, order_by: str | None = None) -> str:
    """A digest of a table's content: its row count, each column's name, type family and
    values (numbers as 64-bit values, times as integers, anything else as text; nulls marked
    apart), with rows in `order_by` order when given."""
    if order_by is not None:
        frame = frame.sort(order_by)
    digest = hashlib.sha256(f"{frame.height}".encode())
    for name in sorted(frame.columns):
        column = frame[name]
        kind = _type_name(column.dtype)
        digest.update(f"\0{name}\0{kind}\0".encode())
        digest.update(column.is_null().to_numpy().tobytes())
        digest.update(_value_bytes(column, kind))
    return digest.hexdigest()[:DIGEST_CHARS]


def _value_bytes(column: pl.Series, kind: str) -> bytes:
    if kind == "float":
        return column.cast(pl.Float64).fill_null(0.0).to_numpy().astype("<f8").tobytes()
    if kind in ("integer", "boolean"):
        return column.cast(pl.Int64).fill_null(0).to_numpy().astype("<i8").tobytes()
    if kind == "temporal":
        if column.dtype == pl.Date:
            return column.cast(pl.Int64).fill_null(0).to_numpy().astype("<i8").tobytes()
        instants = column.cast(pl.Datetime("us", column.dtype.time_zone))  # type: ignore[union-attr]
        return instants.dt.epoch("us").fill_null(0).to_numpy().astype("<i8").tobytes()
    text = column.cast(pl.String).fill_null("")
    return "\0".join(text.to_list()).encode()


def _type_name(dtype: pl.DataType) -> str:
    """A type's family (float, integer, string, ...), not Polars' own spelling of it."""
    if dtype.is_float():
        return "float"
    if dtype.is_integer():
        return "integer"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_temporal():
        return "temporal"
    return "text"

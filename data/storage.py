"""Writes: atomic (a run killed half-way never leaves a half-written file behind), and sinks of
a few rows picked from many that hold only what they keep."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import polars as pl


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet_atomic(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> Path:
    """Write a frame (collecting a lazy one with the streaming engine) to Parquet atomically."""
    if isinstance(frame, pl.LazyFrame):
        return write_atomic(path, lambda tmp: frame.sink_parquet(tmp))
    return write_atomic(path, lambda tmp: frame.write_parquet(tmp))


def compacted(frame: pl.LazyFrame) -> pl.LazyFrame:
    """`frame` with every batch copied into buffers of its own.

    A filter that keeps a few rows of each batch of a scan hands on slices of the scan's
    decoded buffers, and a sink (or collect) holds its batches until a row group is full, so
    a few rows picked from a large table keep whole decoded batches alive until then. Put it
    between such a filter and its sink.
    """
    return frame.map_batches(copied, schema=frame.collect_schema(), streamable=True)


def copied(batch: pl.DataFrame) -> pl.DataFrame:
    """`batch` in buffers of its own (see :func:`compacted`)."""
    # A gather builds new buffers: new arrays of the values, and strings re-packed.
    return batch.select(pl.all().gather(pl.int_range(pl.len())))


def write_text_atomic(text: str, path: Path) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def swap_into_place(staged: Path, out: Path) -> None:
    """Move a completed folder `staged` to `out`, replacing what was there.

    Readers of `out` see the old folder, then (for an instant) none, then the new one: never a
    mix of the two.
    """
    if not out.exists():
        os.rename(staged, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    os.rename(staged, out)
    shutil.rmtree(old, ignore_errors=True)

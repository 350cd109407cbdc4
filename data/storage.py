"""Atomic writes: a run killed half-way never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
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


def write_text_atomic(text: str, path: Path) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))

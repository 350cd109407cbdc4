"""Parquet output: hive partitions by local date for partitioned tables, flat parts otherwise.

Layout (``<block>`` = 5-digit block number)::

    <root>/<table>/dt=YYYY-MM-DD/part-<block>.parquet   # partitioned contract tables
    <root>/<table>/part-<block>.parquet   # users, bureau_snapshots, repayments, _truth

The ``dt`` column only exists as the folder name. Files are written by a small thread pool
(Polars releases the GIL while encoding).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from data.contract import PARTITION_COLUMN, TABLES

from .tables import Chunk
from .timeline import Timeline

COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1


def _write(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(
        path, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL, statistics=True
    )


class PartWriter:
    """Writes the chunks of every block under ``root``; counts files and rows."""

    def __init__(self, root: Path, tl: Timeline, threads: int = 2) -> None:
        self.root = root
        self.tl = tl
        self.labels = tl.day_labels()
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.pending: list[Future] = []
        self.files = 0
        self.rows: dict[str, int] = dict.fromkeys(TABLES, 0)

    def _submit(self, df: pl.DataFrame, path: Path) -> None:
        self.pending.append(self.pool.submit(_write, df, path))
        self.files += 1

    def write(self, chunk: Chunk, block: int) -> None:
        table = TABLES[chunk.name]
        df = chunk.frame
        assert df.schema == table.schema, chunk.name
        self.rows[chunk.name] += df.height
        name = f"part-{block:05d}.parquet"
        if not table.partitioned:
            self._submit(df, self.root / chunk.name / name)
            return
        day = chunk.day
        assert day is not None and day.size == df.height
        bounds = np.searchsorted(day, np.arange(self.tl.n_days + 1), side="left")
        for d in np.flatnonzero(np.diff(bounds)):
            lo, hi = int(bounds[d]), int(bounds[d + 1])
            folder = f"{PARTITION_COLUMN}={self.labels[d]}"
            self._submit(df.slice(lo, hi - lo), self.root / chunk.name / folder / name)

    def flush(self) -> None:
        """Wait for queued files (bounds memory: call after each block)."""
        pending, self.pending = self.pending, []
        for f in pending:
            f.result()

    def close(self) -> None:
        self.flush()
        self.pool.shutdown()


def write_empty_tables(root: Path, tl: Timeline) -> int:
    """Make sure every contract table has a folder; a table without rows gets one empty,
    typed file (in the first day's partition when partitioned). Returns files written."""
    files = 0
    for name, table in TABLES.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if not any(os.scandir(folder)):
            sub = (
                folder / f"{PARTITION_COLUMN}={tl.start.isoformat()}"
                if table.partitioned
                else folder
            )
            _write(pl.DataFrame(schema=table.schema), sub / "part-00000.parquet")
            files += 1
    return files

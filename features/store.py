"""The feature table on disk: Parquet, partitioned by the local month of application.

``<out>/applied_month=YYYY-MM/part-0.parquet`` holds the applications of one local month,
sorted by ``application_id``; ``pl.scan_parquet(out)`` reads the whole table back (with the
month as a column). The folder is replaced as a whole: the new table is written beside it and
swapped in, so a run killed half-way leaves the previous table (or none), never a mix.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import polars as pl

from data.asof import local_date
from data.storage import swap_into_place, write_parquet_atomic

MONTH = "applied_month"
PART = "part-0.parquet"


def is_feature_store(path: Path) -> bool:
    """Whether `path` is absent, empty, or holds only ``applied_month=`` partitions."""
    if not path.exists():
        return True
    return path.is_dir() and all(p.name.startswith(f"{MONTH}=") for p in path.iterdir())


def check_replaceable(out: Path) -> None:
    """Raise :class:`FileExistsError` unless `out` may be replaced by a feature table."""
    if not is_feature_store(Path(out)):
        raise FileExistsError(f"{out} is not a feature table written by pdflow; not replacing it")


def write_feature_store(features: pl.DataFrame, out: Path, timezone: str) -> list[Path]:
    """Write the feature table partitioned by local application month, replacing `out`."""
    out = Path(out)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        month = local_date("applied_at", timezone).dt.strftime("%Y-%m").alias(MONTH)
        parts = features.with_columns(month).partition_by(MONTH, as_dict=True, include_key=False)
        for (name,), part in sorted(parts.items()):
            write_parquet_atomic(part.sort("application_id"), staging / f"{MONTH}={name}" / PART)
        swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out.glob(f"{MONTH}=*/{PART}"))


def scan_feature_store(out: Path) -> pl.LazyFrame:
    """The whole feature table, with its ``applied_month`` partition column."""
    return pl.scan_parquet(Path(out) / f"{MONTH}=*" / PART, hive_partitioning=True)

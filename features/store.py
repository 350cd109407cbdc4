"""The feature store on disk: Parquet, partitioned by the local month of application.

``<out>/applied_month=YYYY-MM/<part>.parquet`` hold the applications of one local month;
``scan_feature_store(out)`` reads the whole table back (with the month as a column),
``<out>/_features.json`` names the feature columns and settings the rows were built with, and
``<out>/_checked.json`` names the files a check of the rows (the feature suite) has passed, so
a night checks only the rows stored since (:func:`unchecked_files`, :func:`mark_checked`).

Two ways to write it:

- :func:`write_feature_store` replaces the folder as a whole: the new table is written beside
  it and swapped in, so a run killed half-way leaves the previous table (or none), never a mix.
- :func:`append_feature_store` adds the rows of applications the store does not hold yet, one
  new file per month, each written atomically. A feature row, once stored, never changes. A run
  killed between two files has stored some months' rows: the next run skips those ids and adds
  the rest, so the store ends with the same rows as an uninterrupted run (or a full rebuild).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import polars as pl

from data.asof import local_date
from data.storage import swap_into_place, write_parquet_atomic, write_text_atomic

MONTH = "applied_month"
MANIFEST = "_features.json"
CHECKED = "_checked.json"
FULL_PART = "part-full.parquet"


class StoreMismatch(ValueError):
    """The store was built with other feature definitions: append would mix two tables."""


def is_feature_store(path: Path) -> bool:
    """Whether `path` is absent, empty, or holds only month partitions and the manifest."""
    if not path.exists():
        return True
    return path.is_dir() and all(
        p.name.startswith(f"{MONTH}=") or p.name in (MANIFEST, CHECKED) for p in path.iterdir()
    )


def check_replaceable(out: Path) -> None:
    """Raise :class:`FileExistsError` unless `out` may be replaced by a feature table."""
    if not is_feature_store(Path(out)):
        raise FileExistsError(f"{out} is not a feature table written by pdflow; not replacing it")


def manifest(columns: list[str], settings: dict[str, object]) -> dict[str, object]:
    """What makes two stores' rows comparable: their columns and the settings that built them."""
    return {"columns": columns, "settings": settings}


def read_manifest(out: Path) -> dict[str, object] | None:
    path = Path(out) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def _month_parts(
    features: pl.DataFrame, timezone: str, month_of: str = "applied_at"
) -> dict[str, pl.DataFrame]:
    month = local_date(month_of, timezone).dt.strftime("%Y-%m").alias(MONTH)
    parts = features.with_columns(month).partition_by(MONTH, as_dict=True, include_key=False)
    key = features.columns[0]  # application_id, or user_id for users scored on a day
    return {name: part.sort(key) for (name,), part in sorted(parts.items())}


def write_feature_store(
    features: pl.DataFrame,
    out: Path,
    timezone: str,
    meta: dict[str, object],
    month_of: str = "applied_at",
) -> list[Path]:
    """Write the feature table partitioned by the local month of `month_of` (the application
    time; the cut-off for loans or users scored on a day), replacing `out`."""
    out = Path(out)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name, part in _month_parts(features, timezone, month_of).items():
            write_parquet_atomic(part, staging / f"{MONTH}={name}" / FULL_PART)
        write_text_atomic(json.dumps(meta, indent=2, sort_keys=True), staging / MANIFEST)
        swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return part_files(out)


def stored_ids(out: Path, meta: dict[str, object]) -> pl.DataFrame:
    """The application ids the store holds; raise :class:`StoreMismatch` if it was built with
    other feature definitions or settings (empty for a store that does not exist yet)."""
    out = Path(out)
    check_replaceable(out)
    if not part_files(out):
        return pl.DataFrame(schema={"application_id": pl.String()})
    found = read_manifest(out)
    if found != meta:
        raise StoreMismatch(
            f"the feature store {out} was built with other feature definitions or settings; "
            "rebuild it (pdflow features without --incremental) before appending"
        )
    return scan_feature_store(out).select("application_id").collect()


def append_feature_store(
    new: pl.DataFrame, out: Path, timezone: str, meta: dict[str, object], tag: str
) -> list[Path]:
    """Add rows of applications the store does not hold: one file per month, named by `tag`."""
    out = Path(out)
    known = stored_ids(out, meta)
    fresh = new.join(known, on="application_id", how="anti")
    if fresh.is_empty():
        return []
    write_text_atomic(json.dumps(meta, indent=2, sort_keys=True), out / MANIFEST)
    written = []
    for name, part in _month_parts(fresh, timezone).items():
        path = out / f"{MONTH}={name}" / f"part-{tag}.parquet"
        if path.exists():  # the same tag twice would overwrite earlier rows
            path = path.with_name(f"part-{tag}-{part['application_id'][0]}.parquet")
        written.append(write_parquet_atomic(part, path))
    return written


def part_files(out: Path) -> list[Path]:
    return sorted(Path(out).glob(f"{MONTH}=*/*.parquet"))


def _checked(out: Path, check: str) -> set[str]:
    path = Path(out) / CHECKED
    ledger = json.loads(path.read_text()) if path.exists() else {}
    return set(ledger.get("files", [])) if ledger.get("check") == check else set()


def unchecked_files(out: Path, check: str) -> list[Path]:
    """The store's files the check named `check` (a digest of it) has not passed: every file
    when the store was rebuilt or the check changed since."""
    done = _checked(out, check)
    return [p for p in part_files(out) if p.relative_to(out).as_posix() not in done]


def mark_checked(out: Path, check: str, files: list[Path]) -> None:
    """Record that `files` passed the check named `check`."""
    names = _checked(out, check) | {p.relative_to(out).as_posix() for p in files}
    ledger = {"check": check, "files": sorted(names)}
    write_text_atomic(json.dumps(ledger, indent=2), Path(out) / CHECKED)


def scan_feature_store(out: Path) -> pl.LazyFrame:
    """The whole feature table, with its ``applied_month`` partition column."""
    return pl.scan_parquet(Path(out) / f"{MONTH}=*" / "*.parquet", hive_partitioning=True)

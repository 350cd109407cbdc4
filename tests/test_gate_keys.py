"""The gate's bounded-memory parts: row sets as bits, and repeated keys judged in buckets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data.readers import SOURCE_FILE
from data.repeats import (
    KEY,
    ROW,
    bucket_files,
    bucket_sink,
    judge,
    key_hash,
    repeated_keys,
    rows_in,
)
from data.rowset import RowSet


def test_row_set_holds_positions_as_bits() -> None:
    rows = RowSet(1_000)
    rows.add(np.array([0, 7, 8, 999, 7]))
    rows.add(pl.Series([500], dtype=pl.UInt32))
    assert len(rows) == 5 and rows
    assert rows.contains(np.array([0, 1, 7, 8, 9, 500, 999])).tolist() == [
        True,
        False,
        True,
        True,
        False,
        True,
        True,
    ]
    assert not RowSet(10)
    with pytest.raises(IndexError):
        rows.add(np.array([1_000]))


def test_row_set_filters_a_streaming_scan(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame({"x": np.arange(100_000)}).write_parquet(path, row_group_size=7_000)
    aside = RowSet(100_000)
    aside.add(np.arange(0, 100_000, 3))
    kept = (
        pl.scan_parquet(path)
        .with_row_index(ROW)
        .filter(~aside.expr(ROW))
        .select("x")
        .collect(engine="streaming")
    )
    assert kept["x"].to_list() == [x for x in range(100_000) if x % 3]


@pytest.mark.parametrize("step", [3, 1_001])  # a bitmap look-up; a list (fewer than 1 in 64)
def test_row_set_filters_alike_whether_its_positions_are_many_or_few(
    tmp_path: Path, step: int
) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame({"x": np.arange(100_000)}).write_parquet(path, row_group_size=7_000)
    aside = RowSet(100_000)
    aside.add(np.arange(5, 100_000, step))
    assert aside.positions().tolist() == list(range(5, 100_000, step))
    scan = pl.scan_parquet(path, row_index_name=ROW)
    kept = scan.filter(~aside.expr(ROW)).select("x").collect(engine="streaming")
    assert kept["x"].to_list() == [x for x in range(100_000) if (x - 5) % step or x < 5]


def _numbered(frame: pl.DataFrame, files: list[str]) -> pl.LazyFrame:
    return frame.lazy().with_row_index(ROW).with_columns(pl.Series(SOURCE_FILE, files))


def _verdict(
    frame: pl.DataFrame,
    key: list[str],
    tmp_path: Path,
    bucket_rows: int = 1_000,
    files: list[str] | None = None,
):
    numbered = _numbered(frame, files or ["part-0.parquet"] * frame.height)
    folder = tmp_path / "keys"
    buckets = max(1, -(-frame.height // bucket_rows))
    rows = numbered.select(ROW, key_hash(key, seed=0).alias(KEY), pl.lit(True).alias("_ok"))
    bucket_sink(rows, folder, buckets).collect(engine="streaming")
    files = bucket_files(folder)
    assert len(files) <= buckets and rows_in(files) == frame.height
    watched = frame.select(key_hash(key, seed=0)).to_series()
    suspects, repeated = repeated_keys(files, frame.height, pl.col("_ok"), watched, bucket_rows)
    assert set(repeated) == set(watched.filter(watched.is_duplicated()))
    return suspects, judge(numbered, suspects, key, frame.columns, tmp_path / "judge", bucket_rows)


@pytest.mark.parametrize("bucket_rows", [1_000, 1])  # buckets sorted, or grouped
def test_keys_repeat_only_among_the_rows_that_count(tmp_path: Path, bucket_rows: int) -> None:
    frame = pl.DataFrame({"id": ["a", "a", "b", "b", "c"], "ok": [True, False, True, True, True]})
    rows = frame.lazy().with_row_index(ROW).select(ROW, key_hash(["id"], 0).alias(KEY), "ok")
    bucket_sink(rows, tmp_path / "keys", 2).collect(engine="streaming")
    watched = frame.select(key_hash(["id"], 0)).to_series()
    files = bucket_files(tmp_path / "keys")
    suspects, repeated = repeated_keys(files, 5, pl.col("ok"), watched, bucket_rows)
    assert rows_of(suspects) == [2, 3]  # "a" repeats only with a row that does not count
    assert repeated.to_list() == [watched[2], watched[3]]


def rows_of(rows: RowSet) -> list[int]:
    return np.flatnonzero(rows.contains(np.arange(rows.size))).tolist()


def test_exact_copies_keep_the_first_and_conflicts_lose_all(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "id": ["a", "b", "c", "a", "d", "c", "a", "e"],
            "amount": [1.0, 2.0, 3.0, 1.0, 4.0, 3.5, 1.0, 5.0],
        }
    )
    suspects, verdict = _verdict(frame, ["id"], tmp_path)
    assert verdict.exact_across_files == 0
    assert rows_of(suspects) == [0, 2, 3, 5, 6]
    # "a" is three exact copies: the first is kept; "c" has two versions: both go.
    assert rows_of(verdict.aside) == [2, 3, 5, 6]
    assert rows_of(verdict.first_copies) == [0]
    assert (verdict.exact, verdict.conflicting) == (2, 2)


def test_a_clean_key_has_no_suspects(tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": [f"o{i}" for i in range(5_000)], "v": range(5_000)})
    suspects, verdict = _verdict(frame, ["id"], tmp_path)
    assert not suspects and not verdict.aside and verdict.exact == verdict.conflicting == 0


def test_every_row_sharing_one_key_is_one_group_in_one_bucket(tmp_path: Path) -> None:
    n = 20_000
    frame = pl.DataFrame({"id": ["same"] * n, "v": range(n)})
    suspects, verdict = _verdict(frame, ["id"], tmp_path, bucket_rows=1_000)
    assert len(suspects) == n
    assert len(verdict.aside) == n and verdict.conflicting == n and not verdict.first_copies


def test_a_table_loaded_twice_keeps_one_copy_of_each_row(tmp_path: Path) -> None:
    once = pl.DataFrame({"user": [f"u{i % 300}" for i in range(3_000)], "v": range(3_000)})
    frame = pl.concat([once, once])
    files = ["day.parquet"] * 3_000 + ["day-again.parquet"] * 3_000
    _, verdict = _verdict(frame, ["user", "v"], tmp_path, bucket_rows=1_000, files=files)
    assert verdict.exact_across_files == 3_000
    assert rows_of(verdict.first_copies) == list(range(3_000))
    assert rows_of(verdict.aside) == list(range(3_000, 6_000))
    assert verdict.exact == 3_000 and verdict.conflicting == 0

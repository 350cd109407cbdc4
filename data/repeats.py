"""Rows whose key repeats, found in hash buckets on disk so that memory stays bounded.

Uniqueness spans a table's whole history, so the gate cannot hold it per partition. It
holds it per hash bucket instead: each row's 64-bit key hash and position are written to
``buckets`` files by the hash, and each file is searched on its own: sorted in memory when it
holds about the rows expected, grouped by the streaming engine (one entry per distinct key)
when one key swelled it. A file loaded twice doubles the rows of every bucket, and a table
whose rows all share one key puts them all in one bucket as a single group.

Two passes:

1. :func:`repeated_keys`: the rows whose 64-bit key hash occurs more than once (usually none).
2. :func:`judge`: only those rows, hashed again with two more seeds (a 128-bit key, and a
   hash of the whole row), grouped per key: an exact copy of a row keeps its first copy (in
   scan order) and sets the others aside; rows that share a key but differ are all set aside,
   since nothing says which one is true. Two different keys with the same 128-bit hash would
   be judged as one key: at 10^9 rows the odds are about one in 10^20.

Every step is a scan, a hash, a sort of one bucket, a streaming group-by or a hash join:
n log n in the rows at most.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data.readers import SOURCE_FILE
from data.readers import SOURCE_ROW as ROW
from data.rowset import RowSet
from data.storage import compacted

KEY = "_key"
KEY_HIGH = "_key_high"
CONTENT = "_content"
FIRST = "_first"
EXACT = "_exact"
FILE = "_file_hash"
ACROSS = "_across_files"


def key_hash(columns: list[str], seed: int) -> pl.Expr:
    """A 64-bit hash of the key `columns` (one column, or the struct of several)."""
    key = pl.struct(columns) if len(columns) > 1 else pl.col(columns[0])
    return key.hash(seed=seed)


def buckets_for(rows: int, bucket_rows: int) -> int:
    """How many buckets keep each at about `bucket_rows` rows when keys are spread evenly."""
    return max(1, -(-rows // bucket_rows))


def bucket_sink(rows: pl.LazyFrame, folder: Path, buckets: int) -> pl.LazyFrame:
    """A lazy sink of `rows` (``_row``, ``_key`` and any other hashes) into `buckets` files
    under `folder`, by ``_key``. Hashes do not compress: the files are written uncompressed."""
    return rows.sink_parquet(
        pl.PartitionBy(folder, key=(pl.col(KEY) % buckets).alias("_bucket"), include_key=False),
        compression="uncompressed",
        mkdir=True,
        lazy=True,
    )


def bucket_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet")) if folder.exists() else []


def rows_in(files: list[Path]) -> int:
    """Rows held by the files, read from their footers."""
    if not files:
        return 0
    return pl.scan_parquet(files).select(pl.len()).collect().item()


def repeated_keys(
    files: list[Path], size: int, among: pl.Expr, watched: pl.Series, bucket_rows: int
) -> tuple[RowSet, pl.Series]:
    """From the bucket files of :func:`bucket_sink`: the positions (of a table of `size`
    rows) of the rows `among` which their ``_key`` occurs more than once, and which of the
    `watched` keys do."""
    suspects = RowSet(size)
    repeated = [watched.clear()]
    for path in files:
        rows = pl.scan_parquet(path).filter(among).select(ROW, KEY)
        keys = _repeated_in(rows, rows_in([path]) <= 2 * bucket_rows)
        if keys.is_empty():
            continue
        suspect = rows.join(keys.to_frame().lazy(), on=KEY, how="semi").select(ROW)
        suspects.add_batches(suspect.collect_batches(engine="streaming"), ROW)
        repeated.append(watched.filter(watched.is_in(keys.implode())))
    return suspects, pl.concat(repeated)


def _repeated_in(rows: pl.LazyFrame, small: bool) -> pl.Series:
    """The keys that occur more than once among `rows`. A bucket of about the expected size
    is sorted in memory (twice as fast as a group-by); a bucket that one heavily repeated key
    swelled is grouped by the streaming engine, whose state is one entry per distinct key."""
    if small:
        keys = rows.select(KEY).collect().get_column(KEY).sort()
        return keys.filter(keys == keys.shift(1)).unique()
    counts = rows.group_by(KEY).len().collect(engine="streaming")
    return counts.filter(pl.col("len") > 1).get_column(KEY)


@dataclass
class Repeats:
    """The verdict on rows that share a key."""

    aside: RowSet  # later exact copies, and every row of a key whose rows differ
    first_copies: RowSet  # the kept first copy of each exactly repeated row
    exact: int  # rows set aside as exact copies of a kept row
    conflicting: int  # rows set aside because their key's rows differ
    exact_across_files: int = 0  # of the exact copies, those of a row in another file

    @property
    def involved(self) -> RowSet:
        """Every row that repeats another: set aside, or kept as the first copy."""
        return self.aside.union(self.first_copies)


def no_repeats(size: int) -> Repeats:
    return Repeats(RowSet(size), RowSet(size), 0, 0)


def judge(
    table: pl.LazyFrame,
    suspects: RowSet,
    key: list[str],
    content: list[str],
    folder: Path,
    bucket_rows: int,
) -> Repeats:
    """Judge the `suspects` of a `table` scanned with its row numbers and files (``_row``,
    ``_file``): which rows share their `key` with another, whether they are exact copies
    (equal `content`), and whether the copies are in other files."""
    verdict = no_repeats(suspects.size)
    if not suspects:
        return verdict
    hashed = table.filter(suspects.expr(ROW)).select(
        ROW,
        key_hash(key, seed=11).alias(KEY),
        key_hash(key, seed=12).alias(KEY_HIGH),
        pl.struct(content).hash(seed=13).alias(CONTENT),
        pl.col(SOURCE_FILE).hash(seed=14).alias(FILE),
    )
    shutil.rmtree(folder, ignore_errors=True)
    buckets = buckets_for(len(suspects), bucket_rows)
    bucket_sink(compacted(hashed), folder, buckets).collect(engine="streaming")
    for path in bucket_files(folder):
        _judge_bucket(pl.scan_parquet(path), verdict)
    shutil.rmtree(folder, ignore_errors=True)
    return verdict


def _judge_bucket(rows: pl.LazyFrame, verdict: Repeats) -> None:
    keys = [KEY, KEY_HIGH]
    groups = (
        rows.group_by(keys)
        .agg(
            pl.len().alias("n"),
            (pl.col(CONTENT).min() == pl.col(CONTENT).max()).alias(EXACT),
            (pl.col(FILE).min() != pl.col(FILE).max()).alias(ACROSS),
            pl.col(ROW).min().alias(FIRST),
        )
        .filter(pl.col("n") > 1)
        .drop("n")
    )
    judged = rows.join(groups, on=keys, how="inner").select(
        ROW, EXACT, ACROSS, (pl.col(ROW) == pl.col(FIRST)).alias(FIRST)
    )
    for batch in judged.collect_batches(engine="streaming"):
        kept = batch.filter(pl.col(EXACT) & pl.col(FIRST))
        aside = batch.filter(~(pl.col(EXACT) & pl.col(FIRST)))
        verdict.first_copies.add(kept.get_column(ROW))
        verdict.aside.add(aside.get_column(ROW))
        verdict.exact += aside.filter(pl.col(EXACT)).height
        verdict.exact_across_files += aside.filter(pl.col(EXACT) & pl.col(ACROSS)).height
        verdict.conflicting += aside.filter(~pl.col(EXACT)).height

"""Faults for the data gate's fuzz suite, and the contract's verdict on a root they broke.

A :class:`Root` holds every contract table in memory as one Polars frame per table, with
hidden columns that never reach the files:

- ``_rid``: the row's id, unique within its table (a copy gets a new one);
- ``_file``: the file the row is written to, relative to the table's folder
  (``dt=2025-01-03/part-00000.parquet`` or ``part-0.parquet``);
- ``_broken``: the book of value rules a fault broke on the row (``amount_positive``,
  ``user_id_not_null``, ...). A fault that writes a column first strikes out the rules of
  that column, then writes the rules its value breaks;
- ``_copy_of``: for a row a copy fault made, the ``_rid`` of the row it copies.

Each fault is a small frozen dataclass whose ``apply(root)`` changes rows, files and book.
File-level changes (a wrong type, a missing or extra column, the Parquet null type) are
recorded as :class:`Edit` s applied when :func:`write_root` writes the files.

:func:`expected` then says what the contract (``shared/DATA_CONTRACT.md`` 1.1 and README's
"The data gate") makes of the root: whether a table cannot be used (exit code 2), and
otherwise every table's rows read and set aside by reason. The value rules come from the
book; what follows from the data by the contract's own definitions is derived here, in
plain Polars over the in-memory rows, not by the gate's code: the as-of date, rows on or
after it, timestamps filed under another ``dt=`` day, a peer who is the user themself, a
loan id on a rejected application, duplicates (an exact copy keeps one row, rows sharing a
unique id but differing are all set aside) and references to kept parent rows, with their
cascades (a user set aside makes every row naming them dangling; an application set aside
makes its loan's repayments and its ``_truth`` row dangling; the repayments of a loan applied
on or after the as-of day are set aside with the as-of reason).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from data.contract import (
    EARLIEST_RECORD,
    LATEST_RECORD,
    TABLES,
    Column,
    Table,
    within_record_range,
)
from data.rules import RULES, VALUE_KINDS

TZ = "Asia/Shanghai"
HIDDEN = ("_rid", "_file", "_broken", "_copy_of")
REQUIRED = ("users", "applications", "repayments")
# Parents before children: references resolve against the kept rows of the tables before.
ORDER = (
    "users",
    "applications",
    "repayments",
    "transactions",
    "consumption",
    "social",
    "app_events",
    "bureau_inquiries",
    "bureau_snapshots",
    "_truth",
)
PARTITIONED = tuple(name for name, t in TABLES.items() if t.partitioned)
UNIQUE_TABLES = tuple(name for name, t in TABLES.items() if t.unique)
USER_TABLES = tuple(name for name, t in TABLES.items() if "user_id" in t.references)
# The endings of the value rules' names (a time range is named <column>_in_range too).
VALUE_SUFFIXES = ("not_null", "in_set", "positive", "non_negative", "in_range")
DT_FOLDER = re.compile(r"^dt=(\d{4})-(\d{2})-(\d{2})$")
Amount = int | float  # an int is a number of rows, a float a share of the table's rows


# --- the root ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """A change to one file (or every file of a table) made as it is written.

    ``unusable`` says the change makes the table unusable (exit code 2): ``column`` is then
    the column the stop must name (None when there is none).
    """

    table: str
    file: str | None  # None: every file of the table
    change: Callable[[pa.Table], pa.Table]
    what: str
    unusable: bool = False
    column: str | None = None


@dataclass(repr=False)
class Root:
    """Every contract table in memory, the extra files and file edits, and the book."""

    tables: dict[str, pl.DataFrame]
    extra_files: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)
    deleted_folders: set[str] = field(default_factory=set)
    next_rid: int = 0

    def __repr__(self) -> str:
        rows = ", ".join(f"{name} {frame.height}" for name, frame in self.tables.items())
        return f"Root({rows}; {len(self.edits)} file edits)"

    def copy(self) -> Root:
        return Root(
            tables=dict(self.tables),
            extra_files={k: list(v) for k, v in self.extra_files.items()},
            edits=list(self.edits),
            deleted_folders=set(self.deleted_folders),
            next_rid=self.next_rid,
        )

    def files(self, table: str) -> list[str]:
        """The data files of a table (relative paths), sorted."""
        return sorted(self.tables[table]["_file"].unique().to_list())

    def new_rids(self, n: int) -> pl.Series:
        first = self.next_rid
        self.next_rid += n
        return pl.Series("_rid", range(first, first + n), dtype=pl.Int64)

    def pick(self, table: str, amount: Amount, seed: int) -> list[int]:
        """`amount` rows of a table (a count, or a share of its rows), chosen by `seed`."""
        frame = self.tables[table]
        n = amount if isinstance(amount, int) else math.ceil(amount * frame.height)
        n = min(n, frame.height)
        chosen = sorted(random.Random(seed).sample(range(frame.height), n))
        return frame["_rid"].gather(chosen).to_list()

    def assign(
        self, table: str, rids: list[int], column: str, value: Any, broken: list[str]
    ) -> None:
        """Write `value` (a literal or an expression) into `column` of the rows `rids`, and
        book the value rules it breaks there (striking out the column's earlier entries)."""
        frame = self.tables[table]
        dtype = frame.schema[column]
        new = value if isinstance(value, pl.Expr) else pl.lit(value, dtype=dtype)
        hit = pl.col("_rid").is_in(pl.Series(rids, dtype=pl.Int64).implode())
        struck = [f"{column}_{suffix}" for suffix in VALUE_SUFFIXES]
        book = pl.col("_broken").list.set_difference(pl.lit(struck, dtype=pl.List(pl.String)))
        book = book.list.concat(pl.lit(broken, dtype=pl.List(pl.String))).list.unique()
        self.tables[table] = frame.with_columns(
            pl.when(hit).then(new.cast(dtype)).otherwise(pl.col(column)).alias(column),
            pl.when(hit).then(book).otherwise(pl.col("_broken")).alias("_broken"),
        )


def load_root(raw: Path) -> Root:
    """A root on disk (as the generator writes it) read into memory, with an empty book."""
    tables = {}
    rid = 0
    for name, table in TABLES.items():
        folder = raw / name
        parts = [
            pl.read_parquet(path).with_columns(_file=pl.lit(str(path.relative_to(folder))))
            for path in sorted(folder.rglob("*.parquet"))
        ]
        frame = pl.concat(parts) if parts else pl.DataFrame(schema=table.schema)
        if not parts:
            frame = frame.with_columns(_file=pl.lit(None, pl.String))
        frame = frame.select(*table.column_names, "_file")
        frame = frame.with_columns(
            _rid=pl.int_range(rid, rid + frame.height, dtype=pl.Int64),
            _broken=pl.lit([], dtype=pl.List(pl.String)),
            _copy_of=pl.lit(None, dtype=pl.Int64),
        )
        rid += frame.height
        tables[name] = frame
    return Root(tables=tables, next_rid=rid)


def flatten(root: Root, files_per_table: int = 4, tables: tuple[str, ...] = PARTITIONED) -> Root:
    """The same rows with partitioned tables as flat files (no ``dt=`` folders): each table
    as `files_per_table` files ``part-<k>.parquet`` of consecutive rows."""
    flat = root.copy()
    for name in tables:
        frame = flat.tables[name]
        size = max(1, math.ceil(frame.height / files_per_table))
        flat.tables[name] = frame.with_columns(
            _file=pl.format("part-{}.parquet", (pl.int_range(pl.len()) // size).cast(pl.String))
        )
    return flat


def _changes(root: Root, table: str, file: str) -> list[Edit]:
    return [e for e in root.edits if e.table == table and e.file in (None, file)]


def write_root(root: Root, out: Path) -> dict[str, int]:
    """Write every table's rows to its files (hidden columns dropped, edits applied) and the
    extra files. Returns the rows written per table."""
    written = {}
    for name, table in TABLES.items():
        if name in root.deleted_folders:
            continue
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        frame = root.tables[name]
        for (file,), rows in frame.partition_by("_file", as_dict=True, maintain_order=True).items():
            path = folder / file
            path.parent.mkdir(parents=True, exist_ok=True)
            data = rows.select(*table.column_names)
            changes = _changes(root, name, file)
            if not changes:
                data.write_parquet(path)
                continue
            arrow = data.to_arrow()
            for edit in changes:
                arrow = edit.change(arrow)
            pq.write_table(arrow, path)
        written[name] = frame.height
        for file, kind in root.extra_files.get(name, []):
            path = folder / file
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_empty(path, table, kind)
    return written


def _write_empty(path: Path, table: Table, kind: str) -> None:
    if kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "zero_rows":
        pl.DataFrame(schema=table.schema).write_parquet(path)
    elif kind == "zero_row_groups":
        schema = pl.DataFrame(schema=table.schema).to_arrow().schema
        pq.ParquetWriter(path, schema).close()  # a footer and no row group at all
    else:
        raise ValueError(kind)


def rows_on_disk(raw: Path, table: str) -> int:
    """Rows in a table's files, from their footers (hidden files left out, as the contract)."""
    folder = raw / table
    total = 0
    for path in folder.rglob("*.parquet"):
        rel = path.relative_to(folder).parts
        if any(part.startswith(("_", ".")) for part in rel) or path.stat().st_size == 0:
            continue
        total += pq.ParquetFile(path).metadata.num_rows
    return total


# --- value rules: what a value breaks, from the contract's column definitions ---------------


def value_rules(column: Column, value: Any) -> list[str]:
    """The value rules `value` breaks in `column` (a null breaks only not-null)."""
    name = column.name
    if value is None:
        return [] if column.nullable else [f"{name}_not_null"]
    broken = []
    finite = not isinstance(value, float) or math.isfinite(value)
    if column.values is not None and value not in column.values:
        broken.append(f"{name}_in_set")
    if column.positive and not (finite and value > 0):
        broken.append(f"{name}_positive")
    if column.non_negative and not (finite and value >= 0):
        broken.append(f"{name}_non_negative")
    if isinstance(value, datetime | date) and not _within_record_range(value):
        broken.append(f"{name}_in_range")
    if column.min_value is not None or column.max_value is not None:
        low = -math.inf if column.min_value is None else column.min_value
        high = math.inf if column.max_value is None else column.max_value
        if not (finite and low <= value <= high):
            broken.append(f"{name}_in_range")
    return broken


def _within_record_range(value: date | datetime) -> bool:
    """Whether a timestamp or date lies in pdflow's bound (data.contract.EARLIEST_RECORD,
    LATEST_RECORD); a timestamp is compared at UTC, as the gate does."""
    day = value.astimezone(UTC).date() if isinstance(value, datetime) else value
    return EARLIEST_RECORD <= day < LATEST_RECORD


def _columns(kind: Callable[[Table, Column], bool]) -> list[tuple[str, str]]:
    return [(t.name, c.name) for t in TABLES.values() for c in t.readable if kind(t, c)]


NUMERIC = _columns(lambda t, c: c.dtype.is_numeric())
TIMES = _columns(lambda t, c: c.dtype in (pl.Datetime("us", "UTC"), pl.Date()))
ENUMS = _columns(lambda t, c: c.values is not None)
ANY_COLUMN = _columns(lambda t, c: True)
ALL_COLUMNS = [(t.name, c.name) for t in TABLES.values() for c in t.columns]
STRING_COLUMNS = _columns(lambda t, c: c.dtype == pl.String)
SMALL_INTS = _columns(lambda t, c: c.dtype in (pl.Int8(), pl.Int16()))


def _extremes(dtype: pl.DataType) -> list[Any]:
    if dtype.is_float():
        return [math.inf, -math.inf, math.nan, 0.0, -5.0, 1e300, 1e12, 5e-324]
    if dtype == pl.Int8:
        return [-128, -1, 0, 127]
    if dtype == pl.Int16:
        return [-32768, -1, 0, 32767]
    raise ValueError(dtype)


FAR_INSTANTS = (
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2100, 1, 1, tzinfo=UTC),
    datetime(9000, 6, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),  # local day 10000-01-01
)
FAR_DAYS = (date(1, 1, 1), date(1970, 1, 1), date(2100, 1, 1), date(9999, 12, 31))


# --- faults -----------------------------------------------------------------------------------


class Fault(Protocol):
    def apply(self, root: Root) -> None: ...


def _copy_rows(root: Root, table: str, rids: list[int], file: Callable[[pl.Expr], pl.Expr]):
    """Append copies of rows (book included), each with a new id and ``_copy_of`` its origin."""
    frame = root.tables[table]
    rows = frame.filter(pl.col("_rid").is_in(pl.Series(rids, dtype=pl.Int64).implode()))
    copies = rows.with_columns(
        _copy_of=pl.col("_rid"), _file=file(pl.col("_file")), _rid=root.new_rids(rows.height)
    )
    root.tables[table] = pl.concat([frame, copies])
    return copies


@dataclass(frozen=True)
class CopyFiles:
    """A re-run export job: one file, or every file of one day, written again 1-3 times under
    another name: in its own folder (exact duplicates), at the table's root (duplicates read
    as flat files), or in the table's first day folder (filed under another day)."""

    table: str
    pick: int
    times: int = 1
    whole_day: bool = False
    into: int = 0  # 0: its own folder, 1: the table's root, 2: the first dt= folder

    def apply(self, root: Root) -> None:
        files = root.files(self.table)
        if not files:
            return
        source = files[self.pick % len(files)]
        folder = Path(source).parent
        day = self.whole_day and folder.name.startswith("dt=")
        chosen = [f for f in files if Path(f).parent == folder] if day else [source]
        first_day = next((Path(f).parent for f in files if f.startswith("dt=")), Path())
        into = self.into % 3
        for k in range(1, self.times + 1):
            for file in chosen:
                where = (Path(file).parent, Path(), first_day)[into]
                target = str(where / f"{Path(file).stem}-rerun{k}.parquet")
                frame = root.tables[self.table]
                rids = frame.filter(pl.col("_file") == file)["_rid"].to_list()
                _copy_rows(root, self.table, rids, lambda _f, t=target: pl.lit(t))
                root.edits += [
                    replace(e, file=target)
                    for e in root.edits
                    if e.table == self.table and e.file == file
                ]


def _local_midnight(day: pl.Expr) -> pl.Expr:
    """The UTC instant a local calendar day (a Date expression) begins."""
    naive = day.cast(pl.Datetime("us"))
    local = naive.dt.replace_time_zone(TZ, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


@dataclass(frozen=True)
class DayEdge:
    """Timestamps moved to the edges of their local day (the day of their dt= folder, or
    their own for flat files): its first instant, its last microsecond (both still that
    day), or the first instant of the next day (another day)."""

    table: str
    amount: Amount
    edge: int = 0
    seed: int = 0

    def apply(self, root: Root) -> None:
        column = TABLES[self.table].time_column
        assert column is not None
        folder = pl.col("_file").str.extract(r"^dt=(\d{4}-\d{2}-\d{2})/[^/]+$", 1)
        own = pl.col(column).dt.convert_time_zone(TZ).dt.date()
        day = pl.coalesce(folder.str.to_date("%Y-%m-%d", strict=False), own)
        edge = self.edge % 3
        start = _local_midnight(day.dt.offset_by("1d") if edge else day)
        value = start - pl.duration(microseconds=1) if edge == 1 else start
        frame = root.tables[self.table].with_columns(_edge=value)
        movable = set(frame.filter(pl.col("_edge").is_not_null())["_rid"].to_list())
        rids = [r for r in root.pick(self.table, self.amount, self.seed) if r in movable]
        root.assign(self.table, rids, column, value, [])


# A column of each table whose value a conflicting copy changes, to another valid value.
CONFLICT_COLUMN = {
    "users": "occupation",
    "transactions": "channel",
    "consumption": "city",
    "applications": "channel",
    "repayments": "amount_due",
    "bureau_snapshots": "total_limit",
    "_truth": "true_pd",
}


def _other_valid(table: str, column: str) -> pl.Expr:
    col = TABLES[table].column(column)
    c = pl.col(column)
    if col.values is not None:
        first, second = col.values[0], col.values[1]
        return pl.when(c == first).then(pl.lit(second)).otherwise(pl.lit(first))
    if column == "true_pd":
        return pl.when(c < 0.5).then(pl.lit(0.75)).otherwise(pl.lit(0.25))
    if col.dtype.is_float():
        ok = c.is_finite() & (c > 0) & (c < 1e11)
        return pl.when(ok).then(c + 1.0).otherwise(pl.lit(1.0))
    return pl.coalesce(c, pl.lit("x")) + pl.lit("-b")


@dataclass(frozen=True)
class ConflictingDuplicates:
    """Rows written twice, the second copy with one column changed: same unique id, other
    content."""

    table: str
    amount: Amount
    seed: int = 0

    def apply(self, root: Root) -> None:
        rids = root.pick(self.table, self.amount, self.seed)
        copies = _copy_rows(root, self.table, rids, _same)
        column = CONFLICT_COLUMN[self.table]
        changed = _other_valid(self.table, column)
        root.assign(self.table, copies["_rid"].to_list(), column, changed, [])
        frame = root.tables[self.table]
        root.tables[self.table] = frame.with_columns(
            _copy_of=pl.when(pl.col("_rid").is_in(copies["_rid"].implode()))
            .then(None)
            .otherwise(pl.col("_copy_of"))
        )


def _same(file: pl.Expr) -> pl.Expr:
    return file


def _copy_book_value(root: Root, table: str, rids: list[int], column: str, source: int) -> None:
    """Give rows the value (and the booked rules) that row `source` has in `column`."""
    frame = root.tables[table]
    row = frame.filter(pl.col("_rid") == source)
    value = row[column][0]
    broken = [r for r in row["_broken"][0] if r.startswith(f"{column}_")]
    root.assign(table, rids, column, value, broken)


@dataclass(frozen=True)
class SharedKey:
    """Rows given the unique key of one row of the table (every row, with amount 1.0)."""

    table: str
    amount: Amount
    seed: int = 0

    def apply(self, root: Root) -> None:
        frame = root.tables[self.table]
        if frame.is_empty():
            return
        source = frame["_rid"][0]
        rids = root.pick(self.table, self.amount, self.seed)
        for column in TABLES[self.table].unique:
            _copy_book_value(root, self.table, rids, column, source)


@dataclass(frozen=True)
class SharedTimestamp:
    """Rows given the timestamp of one row of the table."""

    table: str
    amount: Amount
    seed: int = 0

    def apply(self, root: Root) -> None:
        frame = root.tables[self.table]
        if frame.is_empty():
            return
        column = _time_column(self.table)
        assert column is not None
        rids = root.pick(self.table, self.amount, self.seed)
        _copy_book_value(root, self.table, rids, column, frame["_rid"][0])


def _null_type(column: str) -> Callable[[pa.Table], pa.Table]:
    def change(data: pa.Table) -> pa.Table:
        index = data.schema.get_field_index(column)
        return data.set_column(index, pa.field(column, pa.null()), pa.nulls(data.num_rows))

    return change


@dataclass(frozen=True)
class Nulls:
    """Nulls in a column: some rows, or all of them (1.0). With ``null_type``, every file
    writes the column as Parquet's null type, all null."""

    table: str
    column: str
    amount: Amount
    seed: int = 0
    null_type: bool = False

    def apply(self, root: Root) -> None:
        col = TABLES[self.table].column(self.column)
        if self.null_type:
            what = f"{self.column} written as Parquet's null type"
            root.assign(
                self.table,
                root.tables[self.table]["_rid"].to_list(),
                self.column,
                None,
                value_rules(col, None),
            )
            root.edits.append(
                Edit(self.table, None, _null_type(self.column), what, True, self.column)
            )
            return
        rids = root.pick(self.table, self.amount, self.seed)
        root.assign(self.table, rids, self.column, None, value_rules(col, None))


@dataclass(frozen=True)
class Extreme:
    """An extreme or non-finite value (inf, -inf, nan, 0, negative, 1e300, the type's limits)
    in a numeric column."""

    table: str
    column: str
    value: int
    amount: Amount
    seed: int = 0

    def apply(self, root: Root) -> None:
        col = TABLES[self.table].column(self.column)
        choices = _extremes(col.dtype)
        value = choices[self.value % len(choices)]
        rids = root.pick(self.table, self.amount, self.seed)
        root.assign(self.table, rids, self.column, value, value_rules(col, value))


@dataclass(frozen=True)
class FarTime:
    """A timestamp or date far from the data: year 1, 1970, 2100, 9000, the last instant of
    9999; or `days_after` days after the data's last day."""

    table: str
    column: str
    value: int
    amount: Amount
    seed: int = 0

    def apply(self, root: Root) -> None:
        col = TABLES[self.table].column(self.column)
        far = FAR_DAYS if col.dtype == pl.Date else FAR_INSTANTS
        value = far[self.value % len(far)]
        rids = root.pick(self.table, self.amount, self.seed)
        root.assign(self.table, rids, self.column, value, value_rules(col, value))


UNKNOWN_STRINGS = ("unknown", "", "APPROVED", "in ", "红包")


@dataclass(frozen=True)
class UnknownEnum:
    """A value outside the column's enumeration."""

    table: str
    column: str
    amount: Amount
    value: int = 0
    seed: int = 0

    def apply(self, root: Root) -> None:
        col = TABLES[self.table].column(self.column)
        unknown = (7, 0, -1) if col.dtype.is_integer() else UNKNOWN_STRINGS
        value = unknown[self.value % len(unknown)]
        rids = root.pick(self.table, self.amount, self.seed)
        root.assign(self.table, rids, self.column, value, value_rules(col, value))


DANGLING = {
    "repayments": ("loan_id", "L-ghost"),
    "_truth": ("application_id", "A-ghost"),
    **{name: ("user_id", "U-ghost") for name in USER_TABLES},
}


@dataclass(frozen=True)
class Dangling:
    """References to nothing: an unknown user_id, a repayment of no approved loan, a _truth
    row of no application."""

    table: str
    amount: Amount
    seed: int = 0

    def apply(self, root: Root) -> None:
        column, ghost = DANGLING[self.table]
        rids = root.pick(self.table, self.amount, self.seed)
        value = pl.format(ghost + "-{}", pl.col("_rid"))
        root.assign(self.table, rids, column, value, [])


PEERS = {"social": "peer_id", "transactions": "counterparty_id"}


@dataclass(frozen=True)
class Peers:
    """A peer or counterparty who is the user themself (invalid), or who is no customer
    (valid since contract 1.1: kept)."""

    table: str
    amount: Amount
    self_loop: bool
    seed: int = 0

    def apply(self, root: Root) -> None:
        column = PEERS[self.table]
        rids = root.pick(self.table, self.amount, self.seed)
        value = pl.col("user_id") if self.self_loop else pl.format("U-outsider-{}", pl.col("_rid"))
        root.assign(self.table, rids, column, value, [])


@dataclass(frozen=True)
class RejectedWithLoan:
    """Approved applications turned rejected, their loan id left: the loan id breaks
    loan_id_iff_approved, and the loan's repayments then name no approved loan."""

    amount: Amount
    seed: int = 0

    def apply(self, root: Root) -> None:
        frame = root.tables["applications"]
        approved = frame.filter(pl.col("decision") == "approved")["_rid"].to_list()
        rids = [r for r in root.pick("applications", self.amount, self.seed) if r in approved]
        root.assign("applications", rids, "decision", "rejected", [])


@dataclass(frozen=True)
class ManyTinyFiles:
    """A table rewritten as `files` files of a few rows (each day's rows kept in its day)."""

    table: str
    files: int

    def apply(self, root: Root) -> None:
        frame = root.tables[self.table]
        if frame.is_empty():
            return
        size = max(1, math.ceil(frame.height / self.files))
        folder = pl.col("_file").str.extract(r"^(dt=[^/]*)/", 1)
        shard = (pl.int_range(pl.len()) // size).cast(pl.String).str.zfill(5)
        name = pl.format("tiny-{}.parquet", shard)
        root.tables[self.table] = frame.with_columns(
            _file=pl.when(folder.is_not_null())
            .then(pl.format("{}/{}", folder, name))
            .otherwise(name)
        )


EMPTY_KINDS = ("zero_rows", "zero_row_groups", "zero_bytes")


@dataclass(frozen=True)
class EmptyFile:
    """A 0-byte file named *.parquet (unusable), a Parquet file of zero rows, or one with no
    row group at all, beside the table's files (in a day folder or at its root)."""

    table: str
    kind: int
    in_day: bool = True

    def apply(self, root: Root) -> None:
        kind = EMPTY_KINDS[self.kind % len(EMPTY_KINDS)]
        files = root.files(self.table)
        day = next((Path(f).parent for f in files if f.startswith("dt=")), None)
        where = day if (self.in_day and day is not None) else Path()
        extras = root.extra_files.setdefault(self.table, [])
        extras.append((str(where / f"empty-{len(extras)}.parquet"), kind))


@dataclass(frozen=True)
class EmptyTable:
    """Every row of a table gone: one file of zero rows or zero row groups, or no file."""

    table: str
    kind: int = 0

    def apply(self, root: Root) -> None:
        root.tables[self.table] = root.tables[self.table].head(0)
        root.edits = [e for e in root.edits if e.table != self.table]
        kinds = ("zero_rows", "zero_row_groups", None)
        kind = kinds[self.kind % len(kinds)]
        root.extra_files[self.table] = [("part-empty.parquet", kind)] if kind else []


@dataclass(frozen=True)
class MissingTable:
    """A table folder that is not there (only _truth may be missing)."""

    table: str

    def apply(self, root: Root) -> None:
        root.deleted_folders.add(self.table)


EXTRA_NAMES = ("vendor_note", "dt", "_file", "_row", "_reason", "ts_local")


def _extra_columns(names: tuple[str, ...], reorder: bool) -> Callable[[pa.Table], pa.Table]:
    def change(data: pa.Table) -> pa.Table:
        for name in names:
            if name not in data.column_names:
                data = data.append_column(name, pa.array(["x"] * data.num_rows, pa.string()))
        if reorder:
            data = data.select(list(reversed(data.column_names)))
        return data

    return change


@dataclass(frozen=True)
class ExtraColumns:
    """Columns the contract does not have, and/or the columns in another order, in one file
    or every file of the table."""

    table: str
    names: tuple[str, ...]
    reorder: bool = False
    pick: int | None = None  # None: every file

    def apply(self, root: Root) -> None:
        file = _file_or_all(root, self.table, self.pick)
        what = f"extra columns {self.names}" + (", reordered" if self.reorder else "")
        root.edits.append(Edit(self.table, file, _extra_columns(self.names, self.reorder), what))


def _file_or_all(root: Root, table: str, pick: int | None) -> str | None:
    files = root.files(table)
    if pick is None or not files:
        return None
    return files[pick % len(files)]


def _cast(column: str, to: Callable[[pa.Array], pa.Array]) -> Callable[[pa.Table], pa.Table]:
    def change(data: pa.Table) -> pa.Table:
        index = data.schema.get_field_index(column)
        array = to(data.column(column).combine_chunks())
        return data.set_column(index, pa.field(column, array.type), array)

    return change


def _overflow(dtype: pl.DataType) -> Callable[[pa.Array], pa.Array]:
    """A small integer column widened to int32, its first value out of the contract's type."""
    big = 40_000 if dtype == pl.Int16 else 300

    def change(a: pa.Array) -> pa.Array:
        values = a.cast(pa.int32()).to_pylist()
        return pa.array([big, *values[1:]] if values else [], pa.int32())

    return change


def _decimal(a: pa.Array) -> pa.Array:
    """Money as decimal(38, 2), as many exports write it (non-finite and huge values null)."""
    cents = [
        v if v is not None and math.isfinite(v) and abs(v) < 1e30 else None for v in a.to_pylist()
    ]
    values = [None if v is None else Decimal(f"{v:.2f}") for v in cents]
    return pa.array(values, pa.decimal128(38, 2))


def _wrong_types(dtype: pl.DataType) -> dict[str, Callable[[pa.Array], pa.Array]]:
    """The wrong types a column of `dtype` can be written in, by name."""
    kinds: dict[str, Callable[[pa.Array], pa.Array]] = {}
    if dtype != pl.String:
        kinds["string"] = lambda a: a.cast(pa.string())
    if isinstance(dtype, pl.Datetime):
        kinds["naive"] = lambda a: a.cast(pa.timestamp("us"))
        kinds["local"] = lambda a: a.cast(pa.timestamp("us", tz=TZ))
    if dtype in (pl.Int8(), pl.Int16()):
        kinds["overflow"] = _overflow(dtype)
    if dtype.is_integer():
        kinds["float"] = lambda a: a.cast(pa.float64())
    if dtype.is_float():
        kinds["decimal"] = _decimal
    if dtype == pl.String:
        kinds["number"] = lambda a: pa.array(range(len(a)), pa.int64())
        kinds["binary"] = lambda a: a.cast(pa.binary())
    return kinds


@dataclass(frozen=True)
class WrongType:
    """One file with a column of a type the contract does not allow: numbers or times as
    strings, a timestamp without time zone or in local time, a small integer widened and
    holding a value the contract's type cannot, an integer as float, money as decimal, an id
    as a number or as binary."""

    table: str
    column: str
    kind: int | str  # an index into the column's wrong types, sorted by name, or the name
    pick: int = 0

    def apply(self, root: Root) -> None:
        kinds = _wrong_types(TABLES[self.table].column(self.column).dtype)
        name = self.kind if isinstance(self.kind, str) else sorted(kinds)[self.kind % len(kinds)]
        file = _file_or_all(root, self.table, self.pick)
        if file is None:
            return
        change = _cast(self.column, kinds[name])
        what = f"{self.column} as {name}"
        root.edits.append(Edit(self.table, file, change, what, True, self.column))


def _compatible_type(table: str, column: str, variant: int) -> Callable[[pa.Array], pa.Array]:
    dtype = TABLES[table].column(column).dtype
    if dtype.is_integer():
        wider = (pa.int64(), pa.int32())[variant % 2]
        return lambda a: a.cast(wider)
    if dtype == pl.String:
        if variant % 2:
            return lambda a: a.cast(pa.large_string())
        return lambda a: a.cast(pa.large_string()).dictionary_encode()
    if isinstance(dtype, pl.Datetime):
        zone = ("Etc/UTC", "+00:00")[variant % 2]
        return lambda a: a.cast(pa.timestamp("us", tz=zone))
    return lambda a: a


@dataclass(frozen=True)
class CompatibleType:
    """A column in a type the reader accepts as the contract's: a wider integer, a (dictionary
    of) large string(s), a timestamp in Etc/UTC or +00:00. Nothing changes."""

    table: str
    column: str
    pick: int | None = None
    variant: int = 0

    def apply(self, root: Root) -> None:
        file = _file_or_all(root, self.table, self.pick)
        change = _cast(self.column, _compatible_type(self.table, self.column, self.variant))
        root.edits.append(Edit(self.table, file, change, f"{self.column} in a compatible type"))


def _drop(column: str, rename: bool) -> Callable[[pa.Table], pa.Table]:
    def change(data: pa.Table) -> pa.Table:
        if rename:
            names = [f"{n}_v2" if n == column else n for n in data.column_names]
            return data.rename_columns(names)
        return data.drop_columns([column])

    return change


@dataclass(frozen=True)
class MissingColumn:
    """One file without a contract column (dropped, or renamed)."""

    table: str
    column: str
    rename: bool = False
    pick: int = 0

    def apply(self, root: Root) -> None:
        file = _file_or_all(root, self.table, self.pick)
        if file is None:
            return
        what = f"{self.column} " + ("renamed" if self.rename else "missing")
        root.edits.append(
            Edit(self.table, file, _drop(self.column, self.rename), what, True, self.column)
        )


# Not dt=YYYY-MM-DD, though Python 3.11's date.fromisoformat reads the basic and week forms.
BAD_FOLDERS = (
    "dt=2025-13-45",
    "dt=2025-1-5",
    "dt=20250105",
    "dt=",
    "dt=yesterday",
    "dt=2025-W02-3",
)


@dataclass(frozen=True)
class MalformedDay:
    """A ``dt=`` folder whose name is not dt=YYYY-MM-DD."""

    table: str
    name: int
    pick: int = 0

    def apply(self, root: Root) -> None:
        days = sorted({f.split("/")[0] for f in root.files(self.table) if f.startswith("dt=")})
        if not days:
            return
        day = days[self.pick % len(days)]
        bad = BAD_FOLDERS[self.name % len(BAD_FOLDERS)]
        frame = root.tables[self.table]
        root.tables[self.table] = frame.with_columns(
            _file=pl.when(pl.col("_file").str.starts_with(day + "/"))
            .then(pl.col("_file").str.replace(r"^dt=[^/]*", bad, literal=False))
            .otherwise(pl.col("_file"))
        )


@dataclass(frozen=True)
class JunkFiles:
    """What Spark and atomic writers leave beside the data: ``_SUCCESS``, a hidden ``.crc``
    file and a ``_temporary/`` folder holding garbage named *.parquet. Readers skip them."""

    table: str

    def apply(self, root: Root) -> None:
        root.extra_files.setdefault(self.table, []).extend(
            [
                ("_SUCCESS", "zero_bytes"),
                (".part-0.parquet", "zero_bytes"),
                ("_temporary/part-0.parquet", "zero_bytes"),
            ]
        )


# --- the contract's verdict -----------------------------------------------------------------


@dataclass(frozen=True)
class Unusable:
    """A cause of exit code 2: the table, the column (if any) and the files (any of which the
    message may name; empty: the table's folder)."""

    table: str
    column: str | None
    files: tuple[str, ...]
    what: str


@dataclass
class Verdict:
    """What the gate must report on a root."""

    unusable: list[Unusable]
    as_of: date | None  # None: the default as-of date is past 9999-12-31 (no date to name)
    rows_read: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    kept_applications: set[str] = field(default_factory=set)
    contract_stops: set[str] = field(default_factory=set)
    partition_stops: set[str] = field(default_factory=set)
    empty_stops: set[str] = field(default_factory=set)
    # per table: rows set aside as exact copies a copy fault made, and their files
    repeats: dict[str, int] = field(default_factory=dict)
    repeat_files: dict[str, set[str]] = field(default_factory=dict)

    @property
    def exit_codes(self) -> set[int]:
        if self.unusable:
            return {2}
        if self.as_of is None:
            return {1, 2}
        if self.contract_stops or self.partition_stops or self.empty_stops:
            return {1}
        return {0, 1}  # the statistical expectations may still stop a run

    def set_aside(self, table: str) -> int:
        return sum(self.reasons[table].values())


def _time_column(table: str) -> str | None:
    t = TABLES[table]
    return t.time_column or {"users": "registered_at", "bureau_snapshots": "report_date"}.get(table)


def _day_folder(file: str) -> date | bool | None:
    """The date of a file's dt= folder; None for a flat file; False for a malformed one."""
    parts = file.split("/")
    if len(parts) < 2 or not parts[-2].startswith("dt="):
        return None
    match = DT_FOLDER.match(parts[-2])
    if not match:
        return False
    try:
        return date(*map(int, match.groups()))
    except ValueError:
        return False


def unusable_causes(root: Root) -> list[Unusable]:
    causes = []
    for name in TABLES:
        if name in root.deleted_folders:
            if TABLES[name].required:
                causes.append(Unusable(name, None, (), "table folder is missing"))
            continue
        files = root.files(name)
        extras = root.extra_files.get(name, [])
        for file in files:
            if _day_folder(file) is False:
                causes.append(Unusable(name, None, (file,), "malformed dt= folder"))
        for file, kind in extras:
            hidden = any(p.startswith(("_", ".")) for p in file.split("/"))
            if kind == "zero_bytes" and not hidden:
                causes.append(Unusable(name, None, (file,), "0-byte file"))
        for edit in root.edits:
            if edit.table != name or not edit.unusable:
                continue
            # A table-wide edit touches every file, the empty ones written from the schema too.
            targets = files if edit.file is None else [f for f in files if f == edit.file]
            if targets:
                causes.append(Unusable(name, edit.column, tuple(targets), edit.what))
    for name in REQUIRED:
        if name not in root.deleted_folders and root.tables[name].is_empty():
            causes.append(Unusable(name, None, (), "required table has no rows"))
    return causes


def _local_day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(TZ)).astimezone(UTC)


def _local_date(column: str) -> pl.Expr:
    return pl.col(column).dt.convert_time_zone(TZ).dt.date()


def default_as_of(root: Root) -> date | None:
    """The day after the local day of the latest record (broken rows included, those outside
    pdflow's bound on instants not); None when that day is past 9999-12-31."""
    latest: list[int] = []
    for name in TABLES:
        column = "paid_at" if name == "repayments" else _time_column(name)
        if column is None or name in root.deleted_folders:
            continue
        frame = root.tables[name]
        dtype = frame.schema[column]
        day = pl.col(column) if dtype == pl.Date else _local_date(column)
        in_range = frame.filter(within_record_range(pl.col(column), dtype))
        value = in_range.select(day.max().cast(pl.Int32)).item()
        if value is not None:
            latest.append(value)
    if not latest:
        return None
    days = max(latest) + 1  # days since 1970-01-01
    if days > (date.max - date(1970, 1, 1)).days:
        return None
    return date(1970, 1, 1) + timedelta(days=days)


def _row_stage(frame: pl.DataFrame, table: str, as_of: date, future_loans: pl.Series) -> pl.Expr:
    """The first row-stage rule each row breaks (null when none), in the contract's order."""
    broken: dict[str, pl.Expr] = {
        rule.name: pl.col("_broken").list.contains(rule.name)
        for rule in RULES[table]
        if rule.kind in VALUE_KINDS
    }
    t = TABLES[table]
    for col in t.readable:
        if col.differs_from:
            broken[f"{col.name}_differs_from_{col.differs_from}"] = (
                pl.col(col.name) == pl.col(col.differs_from)
            ).fill_null(False)
    when = _time_column(table)
    if when:
        limit = as_of if frame.schema[when] == pl.Date else _local_day_start(as_of)
        broken[f"{when}_before_as_of"] = (pl.col(when) >= pl.lit(limit)).fill_null(False)
    if t.partitioned and t.time_column:
        ts = t.time_column
        day = pl.col("_file").str.extract(r"^dt=(\d{4}-\d{2}-\d{2})/[^/]+$", 1)
        day = day.str.to_date("%Y-%m-%d", strict=False)
        broken[f"{ts}_matches_partition"] = (_local_date(ts) != day).fill_null(False)
    if table == "applications":
        approved = pl.col("decision") == "approved"
        broken["loan_id_iff_approved"] = (approved != pl.col("loan_id").is_not_null()).fill_null(
            False
        )
    if table == "repayments":
        broken["loan_applied_before_as_of"] = pl.col("loan_id").is_in(future_loans.implode())
    order = [r.name for r in RULES[table] if r.name in broken]
    unknown = set(broken) - set(order)
    assert not unknown, f"rules the gate does not name: {unknown}"
    return pl.coalesce([pl.when(broken[name]).then(pl.lit(name)) for name in order])


def _key_stage(
    frame: pl.DataFrame, table: str, parents: dict[tuple[str, str], pl.Series]
) -> pl.DataFrame:
    """Uniqueness among the rows the row stage kept, then references to kept parent rows."""
    t = TABLES[table]
    key = list(t.unique) or t.column_names
    rule = "_".join(t.unique) + "_unique" if t.unique else "row_unique"
    content = pl.struct(*t.read_names)
    alive = pl.col("_reason").is_null()
    order = pl.int_range(pl.len())
    frame = frame.with_columns(_order=order)
    groups = (
        frame.filter(alive)
        .group_by(*key)
        .agg(
            _n=pl.len(),
            _variants=content.n_unique(),
            _first=pl.col("_order").min(),
            _copied=pl.col("_copy_of").is_not_null().any(),
        )
    )
    frame = frame.join(groups, on=key, how="left", nulls_equal=True)
    exact_extra = (pl.col("_variants") == 1) & (pl.col("_order") != pl.col("_first"))
    duplicate = alive & (pl.col("_n") > 1) & ((pl.col("_variants") > 1) | exact_extra)
    frame = frame.with_columns(
        _reason=pl.when(duplicate).then(pl.lit(rule)).otherwise(pl.col("_reason")),
        _repeat=duplicate & (pl.col("_variants") == 1) & pl.col("_copied"),
        _in_repeat=alive & (pl.col("_n") > 1) & (pl.col("_variants") == 1) & pl.col("_copied"),
    )
    for column, target in t.references.items():
        parent = TABLES[target]
        known = parents[(target, column if column in parent.column_names else parent.unique[0])]
        dangling = pl.col("_reason").is_null() & ~pl.col(column).is_in(known.implode())
        frame = frame.with_columns(
            _reason=pl.when(dangling).then(pl.lit(f"{column}_known")).otherwise(pl.col("_reason"))
        )
    return frame.sort("_order").drop("_order", "_n", "_variants", "_first", "_copied")


def expected(root: Root, as_of: date | None, share: float, mismatch_share: float) -> Verdict:
    """What the contract says the gate must report on `root` as of `as_of` (None: the
    default)."""
    causes = unusable_causes(root)
    if causes:
        return Verdict(unusable=causes, as_of=as_of)
    day = as_of or default_as_of(root)
    verdict = Verdict(unusable=[], as_of=day)
    if day is None:
        return verdict
    parents: dict[tuple[str, str], pl.Series] = {}
    future_loans = pl.Series([], dtype=pl.String)
    for name in ORDER:
        frame = root.tables[name]
        if name in root.deleted_folders:  # an optional table (a required one is unusable)
            frame = frame.head(0)
        frame = frame.with_columns(_reason=_row_stage(frame, name, day, future_loans))
        frame = _key_stage(frame, name, parents)
        kept = frame.filter(pl.col("_reason").is_null())
        if name == "users":
            parents[("users", "user_id")] = kept["user_id"]
        if name == "applications":
            parents[("applications", "application_id")] = kept["application_id"]
            approved = kept.filter(pl.col("decision") == "approved")
            parents[("applications", "loan_id")] = approved["loan_id"].drop_nulls()
            later = root.tables[name].filter(pl.col("applied_at") >= _local_day_start(day))
            future_loans = later["loan_id"].drop_nulls()
            verdict.kept_applications = set(kept["application_id"].to_list())
        reasons = frame["_reason"].drop_nulls().value_counts()
        verdict.reasons[name] = dict(reasons.iter_rows())
        verdict.rows_read[name] = frame.height
        verdict.repeats[name] = int(frame["_repeat"].sum())
        verdict.repeat_files[name] = set(frame.filter(pl.col("_in_repeat"))["_file"].to_list())
        _stops(verdict, name, kept.height, share, mismatch_share)
    return verdict


def _stops(verdict: Verdict, name: str, kept: int, share: float, mismatch_share: float) -> None:
    if not TABLES[name].required:
        return
    reasons = verdict.reasons[name]
    as_of_rules = {f"{_time_column(name)}_before_as_of", "loan_applied_before_as_of"}
    broken = sum(n for r, n in reasons.items() if r not in as_of_rules)
    considered = verdict.rows_read[name] - (verdict.set_aside(name) - broken)
    if name in REQUIRED and kept == 0:
        verdict.empty_stops.add(name)
    if considered and broken / considered > share:
        verdict.contract_stops.add(name)
    shifted = sum(n for r, n in reasons.items() if r.endswith("_matches_partition"))
    if considered and shifted / considered > mismatch_share:
        verdict.partition_stops.add(name)


def over_limit_by_repeats(verdict: Verdict, name: str, share: float) -> bool:
    """Whether a table's exact copies made by copy faults alone are over the stop limit."""
    reasons = verdict.reasons[name]
    as_of_rules = {f"{_time_column(name)}_before_as_of", "loan_applied_before_as_of"}
    broken = sum(n for r, n in reasons.items() if r not in as_of_rules)
    considered = verdict.rows_read[name] - (verdict.set_aside(name) - broken)
    return bool(considered) and verdict.repeats[name] / considered > share


# --- strategies -------------------------------------------------------------------------------

AMOUNTS = st.sampled_from([1, 2, 5, 0.03, 0.06, 0.3, 1.0])
SEEDS = st.integers(0, 2**16)
PICKS = st.integers(0, 10_000)
OPTIONAL = tuple(t for t in TABLES if t not in REQUIRED)  # tables that may have no rows


def _on_column(
    fault: type, pairs: list[tuple[str, str]], **params: st.SearchStrategy[Any]
) -> st.SearchStrategy[Fault]:
    """`fault` on one (table, column) of `pairs`, with its other parameters drawn."""
    return st.sampled_from(pairs).flatmap(
        lambda tc: st.builds(fault, table=st.just(tc[0]), column=st.just(tc[1]), **params)
    )


def usable_faults() -> st.SearchStrategy[Fault]:
    """A fault that leaves every table usable: rows are set aside or kept, never exit 2."""
    tables = st.sampled_from(list(TABLES))
    rows = {"amount": AMOUNTS, "seed": SEEDS}
    return st.one_of(
        st.builds(
            CopyFiles,
            table=tables,
            pick=PICKS,
            times=st.integers(1, 3),
            whole_day=st.booleans(),
            into=st.integers(0, 2),
        ),
        st.builds(ConflictingDuplicates, table=st.sampled_from(sorted(CONFLICT_COLUMN)), **rows),
        st.builds(SharedKey, table=st.sampled_from(UNIQUE_TABLES), **rows),
        st.builds(
            SharedTimestamp, table=st.sampled_from([t for t in TABLES if _time_column(t)]), **rows
        ),
        st.builds(DayEdge, table=st.sampled_from(PARTITIONED), edge=st.integers(0, 2), **rows),
        _on_column(Nulls, ANY_COLUMN, **rows),
        _on_column(Extreme, NUMERIC, value=st.integers(0, 7), **rows),
        _on_column(FarTime, TIMES, value=st.integers(0, 4), **rows),
        _on_column(UnknownEnum, ENUMS, value=st.integers(0, 4), **rows),
        st.builds(Dangling, table=st.sampled_from(sorted(DANGLING)), **rows),
        st.builds(Peers, table=st.sampled_from(sorted(PEERS)), self_loop=st.booleans(), **rows),
        st.builds(RejectedWithLoan, **rows),
        st.builds(ManyTinyFiles, table=tables, files=st.integers(1_000, 3_000)),
        st.builds(EmptyFile, table=tables, kind=st.integers(0, 1), in_day=st.booleans()),
        st.builds(EmptyTable, table=st.sampled_from(OPTIONAL), kind=st.integers(0, 2)),
        st.builds(MissingTable, table=st.just("_truth")),
        st.builds(
            ExtraColumns,
            table=tables,
            names=st.lists(st.sampled_from(EXTRA_NAMES), max_size=3, unique=True).map(tuple),
            reorder=st.booleans(),
            pick=st.none() | PICKS,
        ),
        _on_column(
            CompatibleType,
            SMALL_INTS + STRING_COLUMNS + TIMES,
            pick=st.none() | PICKS,
            variant=st.integers(0, 1),
        ),
        st.builds(JunkFiles, table=tables),
    )


def unusable_faults() -> st.SearchStrategy[Fault]:
    """A fault that makes a table unusable: the run must stop with exit code 2."""
    return st.one_of(
        _on_column(WrongType, ANY_COLUMN, kind=st.integers(0, 3), pick=PICKS),
        _on_column(MissingColumn, ALL_COLUMNS, rename=st.booleans(), pick=PICKS),
        _on_column(Nulls, ANY_COLUMN, amount=st.just(1.0), null_type=st.just(True)),
        st.builds(
            MalformedDay,
            table=st.sampled_from(PARTITIONED),
            name=st.integers(0, len(BAD_FOLDERS) - 1),
            pick=PICKS,
        ),
        st.builds(EmptyFile, table=st.sampled_from(list(TABLES)), kind=st.just(2)),
        st.builds(EmptyTable, table=st.sampled_from(REQUIRED), kind=st.integers(0, 2)),
        st.builds(MissingTable, table=st.sampled_from([t for t in TABLES if t != "_truth"])),
    )


@st.composite
def mixtures(draw: st.DrawFn, max_faults: int = 4) -> tuple[Fault, ...]:
    """1 to `max_faults` faults that leave the tables usable, and, one time in five, one that
    does not, at a drawn place in the order."""
    faults = draw(st.lists(usable_faults(), min_size=1, max_size=max_faults))
    if draw(st.integers(0, 4)) == 4:
        faults.insert(draw(st.integers(0, len(faults))), draw(unusable_faults()))
    return tuple(faults)

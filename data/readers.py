"""Lazy readers of a raw root laid out as the contract says.

Every table folder may hold flat or hive-partitioned Parquet files (``dt=YYYY-MM-DD/``); file
names, partition values and row order are never relied upon. Before anything is scanned, the
footer of every file is checked against the contract schema, so that a missing column or a
wrong type stops with a :class:`ContractError` naming table, column and file, instead of
failing somewhere deep inside a query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from itertools import chain
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from data.contract import TABLES, Column, Table

SOURCE_FILE = "_file"
SOURCE_ROW = "_row"
SOURCE_PARTITION = "_dt"
PARTITION_DIR = re.compile(r"^dt=(.*)$")
ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ContractError(Exception):
    """Raw data that cannot be used: the run must stop, with this message."""

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        column: str | None = None,
        file: Path | str | None = None,
    ) -> None:
        self.table, self.column, self.file = table, column, file
        where = ", ".join(
            f"{label} {value}"
            for label, value in (("table", table), ("column", column), ("file", file))
            if value is not None
        )
        super().__init__(f"{message} ({where})" if where else message)


@dataclass(frozen=True)
class TableFiles:
    """The Parquet files found in one table's folder."""

    table: Table
    folder: Path
    files: tuple[Path, ...]


def table_folder(raw_root: Path, table: Table) -> Path:
    return Path(raw_root) / table.name


def list_table_files(raw_root: Path, table: Table) -> TableFiles:
    """All Parquet files under the table's folder, flat or hive-partitioned, in a fixed order."""
    folder = table_folder(raw_root, table)
    if not folder.is_dir():
        raise ContractError("table folder is missing", table=table.name, file=folder)
    files = tuple(
        sorted(
            path
            for path in folder.rglob("*.parquet")
            if path.is_file() and not _is_hidden(path.relative_to(folder).parts)
        )
    )
    return TableFiles(table=table, folder=folder, files=files)


def partition_date(path: Path, table: Table) -> date | None:
    """The date of the ``dt=YYYY-MM-DD`` folder a file sits in, or None for a flat file."""
    match = PARTITION_DIR.match(path.parent.name)
    if match is None:
        return None
    try:
        # fromisoformat alone also reads 20250105 and 2025-W02-3, which the hive parser does not.
        if not ISO_DAY.match(match.group(1)):
            raise ValueError(match.group(1))
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise ContractError(
            f"partition folder {path.parent.name!r} is not dt=YYYY-MM-DD",
            table=table.name,
            file=path,
        ) from None


def _is_hidden(parts: Iterable[str]) -> bool:
    # Spark, Hive and our own atomic writers park in-progress files under _ or . names.
    return any(part.startswith(("_", ".")) for part in parts)


def _file_schema(path: Path, table: Table) -> pl.Schema:
    try:
        return pl.Schema(pl.read_parquet_schema(path))
    except (pl.exceptions.PolarsError, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ContractError(
            f"file is not readable Parquet: {message}", table=table.name, file=path
        ) from None


def _compatible(actual: pl.DataType, expected: pl.DataType) -> bool:
    """Whether a file's column type can be read as the contract type without loss of meaning."""
    if actual == expected:
        return True
    if expected == pl.String:
        return actual in (pl.String, pl.Categorical) or isinstance(actual, pl.Enum)
    if isinstance(expected, pl.Datetime):
        # Any unit is fine; a naive timestamp is not, because its zone would be a guess.
        return isinstance(actual, pl.Datetime) and actual.time_zone in ("UTC", "Etc/UTC", "+00:00")
    if expected.is_integer():
        return actual.is_integer()
    if expected.is_float():
        return actual.is_float() or actual.is_integer()
    return False


def check_schema(schema: pl.Schema, table: Table, path: Path) -> None:
    """Raise :class:`ContractError` if a file lacks a contract column or has a wrong type."""
    for column in table.columns:
        if column.name not in schema:
            raise ContractError(
                "required column is missing", table=table.name, column=column.name, file=path
            )
        actual = schema[column.name]
        if not _compatible(actual, column.dtype):
            raise ContractError(
                f"column has type {actual}, the contract says {column.dtype}",
                table=table.name,
                column=column.name,
                file=path,
            )


def read_schemas(files: TableFiles, threads: int = 8) -> dict[Path, pl.Schema]:
    """Every file's schema, read from its footer, `threads` files at a time.

    Threads overlap the footers' disk reads on a cold cache. Each thread reads a whole share
    of the files, not one file per task: a footer read from the page cache is so quick that
    handing one task per file between threads costs more than the read itself.
    """
    shares = [files.files[i::threads] for i in range(threads)]

    def read_share(share: tuple[Path, ...]) -> list[pl.Schema]:
        return [_file_schema(path, files.table) for path in share]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        read = dict(zip(chain(*shares), chain(*pool.map(read_share, shares)), strict=True))
    return {path: read[path] for path in files.files}


def _contract_projection(table: Table) -> list[pl.Expr]:
    return [pl.col(c.name).cast(c.dtype, strict=True) for c in table.readable]


def _may_overflow(actual: pl.DataType, expected: pl.DataType) -> bool:
    """Whether a compatible type can hold values the contract type cannot."""
    if expected.is_integer() and actual.is_integer():
        return actual != expected
    if isinstance(expected, pl.Datetime) and isinstance(actual, pl.Datetime):
        return actual.time_unit == "ms"
    return False


def _lost_in_cast(paths: list[Path], columns: list[Column]) -> dict[str, int]:
    """Per column, the values a non-strict cast to the contract type turns into nulls."""
    lost = [
        (pl.col(c.name).cast(c.dtype, strict=False).is_null() & pl.col(c.name).is_not_null())
        .sum()
        .alias(c.name)
        for c in columns
    ]
    return pl.scan_parquet(paths, extra_columns="ignore").select(lost).collect().row(0, named=True)


def check_values_fit(schemas: dict[Path, pl.Schema], table: Table) -> None:
    """Raise :class:`ContractError` naming the file where a column in a wider compatible type
    (an int32 for the contract's int16) holds a value the contract type cannot: the strict
    cast to the contract would otherwise fail in the middle of a query. One scan of the wide
    columns per group of files alike; the files one by one only where a value does not fit."""
    for group in _uniform_groups(schemas, table):
        schema = schemas[group[0]]
        wide = [c for c in table.readable if _may_overflow(schema[c.name], c.dtype)]
        if not wide or not any(_lost_in_cast(group, wide).values()):
            continue
        for path in group:
            for column, count in _lost_in_cast([path], wide).items():
                if count:
                    raise ContractError(
                        f"column has type {schema[column]} and {count} value(s) the "
                        f"contract's {table.column(column).dtype} cannot hold",
                        table=table.name,
                        column=column,
                        file=path,
                    )


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or `name` with more leading underscores, not among a file's own columns."""
    while name in taken:
        name = "_" + name
    return name


def _uniform_groups(schemas: dict[Path, pl.Schema], table: Table) -> list[list[Path]]:
    """Group files that share a layout and contract column types: each group is one scan.

    Most raw roots have one group; an export whose files disagree on, say, integer width still
    reads, each group cast to the contract on its own.
    """
    groups: dict[tuple[object, ...], list[Path]] = {}
    for path, schema in schemas.items():
        hive = partition_date(path, table) is not None
        key = (hive, *(str(schema[c.name]) for c in table.columns))
        groups.setdefault(key, []).append(path)
    return list(groups.values())


def _scan_group(
    group: list[Path],
    table: Table,
    with_source: bool,
    taken: set[str],
    first_row: int = 0,
) -> pl.LazyFrame:
    """Scan files of one layout. `taken` holds the files' own column names: a vendor column
    named like the reader's source columns (``_file``, ``_row``) is an extra column, ignored."""
    hive = partition_date(group[0], table) is not None
    file_name, row_name = _free_name(SOURCE_FILE, taken), _free_name(SOURCE_ROW, taken)
    frame = pl.scan_parquet(
        group,
        hive_partitioning=hive and with_source,
        hive_schema={"dt": pl.Date()} if hive and with_source else None,
        extra_columns="ignore",
        include_file_paths=file_name if with_source else None,
        # Numbered by the reader itself: a row index added after the projection is a plan
        # node of its own, and a selective filter behind it keeps whole decoded files in memory.
        row_index_name=row_name if with_source else None,
        row_index_offset=first_row,
    )
    columns = _contract_projection(table)
    if with_source:
        dt = pl.col("dt") if hive else pl.lit(None, pl.Date())
        columns = [
            pl.col(row_name).alias(SOURCE_ROW),
            *columns,
            pl.col(file_name).alias(SOURCE_FILE),
            dt.alias(SOURCE_PARTITION),
        ]
    return frame.select(columns)


def _scan_groups(
    groups: list[list[Path]], table: Table, with_source: bool, taken: set[str]
) -> pl.LazyFrame:
    """One scan per group, concatenated; with `with_source`, rows are numbered across them."""
    frames, first_row = [], 0
    for group in groups:
        frames.append(_scan_group(group, table, with_source, taken, first_row))
        if with_source and len(groups) > 1:
            first_row += pl.scan_parquet(group).select(pl.len()).collect().item()
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def scan_file(path: Path, table: Table) -> pl.LazyFrame:
    """One file of a table alone, as :func:`scan_table` with `with_source` reads it (its rows
    numbered from 0 within the file). The file's footer must already have been checked."""
    return _scan_group([path], table, True, set(_file_schema(path, table).names()))


def _schema(table: Table, with_source: bool) -> pl.Schema:
    if not with_source:
        return table.read_schema
    return pl.Schema(
        {
            SOURCE_ROW: pl.get_index_type(),
            **table.read_schema,
            SOURCE_FILE: pl.String(),
            SOURCE_PARTITION: pl.Date(),
        }
    )


@dataclass(frozen=True)
class FileRows:
    """Where one file's rows lie in its table's numbered scan (``_row``)."""

    path: Path
    first_row: int
    rows: int
    group: int  # files of one group are read by one scan, numbered one after another
    columns: frozenset[str]  # the file's own columns


def file_rows(files: TableFiles) -> list[FileRows]:
    """Each file's place in the numbering ``scan_table(..., with_source=True)`` gives the rows,
    from the files' footers."""
    schemas = read_schemas(files)
    layout, first = [], 0
    for group_id, group in enumerate(_uniform_groups(schemas, files.table)):
        for path in group:
            rows = pq.read_metadata(path).num_rows
            layout.append(FileRows(path, first, rows, group_id, frozenset(schemas[path].names())))
            first += rows
    return layout


def scan_file_rows(layout: list[FileRows], table: Table) -> pl.LazyFrame:
    """Some files of a table (entries of :func:`file_rows`), their rows numbered as in the
    whole table's scan: one scan per run of files that follow one another in it."""
    runs: list[list[FileRows]] = []
    for part in layout:
        last = runs[-1][-1] if runs else None
        if last and last.group == part.group and last.first_row + last.rows == part.first_row:
            runs[-1].append(part)
        else:
            runs.append([part])
    if not runs:
        return pl.LazyFrame(schema=_schema(table, with_source=True))
    frames = [
        _scan_group(
            [p.path for p in run], table, True, set().union(*(p.columns for p in run)),
            run[0].first_row,
        )
        for run in runs
    ]  # fmt: skip
    return pl.concat(frames, how="vertical")


def scan_table(raw_root: Path | str, name: str, *, with_source: bool = False) -> pl.LazyFrame:
    """Scan one contract table lazily, projected and cast to the contract schema.

    A missing folder raises :class:`ContractError`, except for optional tables (``_truth``),
    which read as empty. A folder without files is an empty table with the right schema.
    Every file must carry every contract column, but only the non-PII ones are read: PII
    (``users.id_number``, ``users.phone``) and vendor extras never leave the reader. With
    `with_source`, ``_row`` numbers the rows from 0 in a fixed order (files sorted by path,
    grouped by layout), ``_file`` names each row's file and ``_dt`` is the date of its
    ``dt=`` partition folder (null for flat files).
    """
    table = TABLES[name]
    try:
        files = list_table_files(Path(raw_root), table)
    except ContractError:
        if table.required:
            raise
        return pl.LazyFrame(schema=_schema(table, with_source))
    empty_schema = _schema(table, with_source)
    if not files.files:
        return pl.LazyFrame(schema=empty_schema)
    schemas = read_schemas(files)
    for path, schema in schemas.items():
        check_schema(schema, table, path)
        partition_date(path, table)
    check_values_fit(schemas, table)
    taken = {name for schema in schemas.values() for name in schema.names()}
    return _scan_groups(_uniform_groups(schemas, table), table, with_source, taken)


def scan_raw(
    raw_root: Path | str, names: Iterable[str] | None = None, *, with_source: bool = False
) -> dict[str, pl.LazyFrame]:
    """Scan several tables (all contract tables by default)."""
    chosen = list(names) if names is not None else list(TABLES)
    root = Path(raw_root)
    if not root.is_dir():
        raise ContractError("raw root folder does not exist", file=root)
    return {name: scan_table(root, name, with_source=with_source) for name in chosen}

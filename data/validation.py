"""The data gate's Polars engine: every raw row is kept or set aside with the rule it broke.

For each contract table, one streaming scan (``pl.collect_all`` of a sink and the count of
application pairs) evaluates every row rule on every row, in file order: nulls, unknown
enumeration values, non-positive or non-finite amounts, ranges, timestamps outside pdflow's
bound, records on or after the as-of day, timestamps filed under another ``dt=`` partition,
loan ids on rejected applications, repayments of loans applied on or after the as-of day;
and, for the rows that pass them, the references to the kept rows of the parent tables
(users, approved loans, applications), looked up in the parents' 64-bit hashes. Every row's
verdict (its position, the 64-bit hash of its unique key, whether it breaks a rule or a
reference) is written to hash-bucket files on disk (``data.repeats``).

Each bucket is then grouped on its own: the keys that occur more than once among the rows
that pass the row rules (usually none). The rows that break a rule and the rows of repeated
keys are fetched in one more scan, of the files that hold them only (usually none), and
judged there: an exact copy of a row (a file or day loaded twice) keeps its first copy and
the others are set aside; rows that share a unique id but differ are all set aside, since
nothing says which one is true. The Great Expectations sample's kept rows are the first rows
of a few files spread over the table.

Each row's ``_reason`` is the first rule it broke: row rules, then uniqueness, then
references. Rows set aside go to ``quarantine/<table>.parquet`` with ``_reason``, ``_file``
and ``_row`` (their position in the table's scan). Kept rows are never copied:
:func:`scan_validated` reads the raw files less those positions, held as one bit per row
(``data.rowset.RowSet``).

Memory: nothing the gate holds grows with the rows of a table beyond that bit per row and
the parents' key hashes (8 bytes per user and per application). The scans stream, and the
state that spans a table's whole history, its keys, is held a bucket at a time
(``validation.key_bucket_rows`` rows per bucket). Every step is linear in the rows read, or
n log n, whatever the input: duplicates, one key or timestamp shared by every row, one file
or many.

Rows read (counted from the files' footers) = rows kept (rows the scan saw, less the
positions set aside) + rows set aside is checked for every table on every run. A table that
cannot be used at all stops the run with a :class:`~data.readers.ContractError` instead.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from data.asof import (
    TableCount,
    day_start,
    day_start_utc,
    default_as_of,
    mask_future_payments,
)
from data.config import ValidationSettings
from data.contract import TABLES, Table, within_record_range
from data.readers import (
    SOURCE_FILE,
    SOURCE_PARTITION,
    SOURCE_ROW,
    ContractError,
    TableFiles,
    file_rows,
    list_table_files,
    scan_file,
    scan_file_rows,
    scan_raw,
)
from data.repeats import (
    KEY,
    Repeats,
    bucket_files,
    bucket_sink,
    buckets_for,
    judge,
    key_hash,
    repeated_keys,
    rows_in,
)
from data.rowset import RowSet
from data.rules import ROW_KINDS, RULES, Kind, Rule
from data.storage import compacted, copied

REASON = "_reason"
REFERENCE = "_reference"  # the first reference a row breaks, decided after uniqueness
BROKEN = "_broken"  # the row breaks a row rule
DANGLING = "_dangling"  # the row breaks a reference
ROW = SOURCE_ROW
# Parents first: references are checked against the rows kept of the tables before them.
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
AS_OF_RULE_KINDS = (Kind.BEFORE_AS_OF, Kind.LOAN_BEFORE_AS_OF)
# The columns through which the feature build pairs a table's rows with applications: each
# row meets every application of the person it names (a loan: of its borrower).
APPLICANT_COLUMNS: dict[str, tuple[str, ...]] = {
    "applications": ("user_id",),
    "repayments": ("loan_id",),
    "transactions": ("user_id",),
    "consumption": ("user_id",),
    "social": ("user_id", "peer_id"),
    "app_events": ("user_id",),
    "bureau_inquiries": ("user_id",),
    "bureau_snapshots": ("user_id",),
}
APPLICATIONS = "_applications"
REPEATED_FILES_SHOWN = 10
SAMPLE_FILES = 64  # files the GX sample's kept rows are read from, spread over the table


def flag(rule: Rule) -> str:
    """Name of the boolean column that says whether a row obeys `rule`."""
    return f"_rule_{rule.name}"


@dataclass
class GateReport:
    """What the gate saw: per-table counts, and the problems that stop or warn."""

    as_of: date
    tables: dict[str, TableCount]
    stops: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quarantine: Path | None = None
    scans: dict[str, pl.LazyFrame] = field(default_factory=dict, repr=False)
    set_aside: dict[str, RowSet] = field(default_factory=dict, repr=False)
    samples: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.stops

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "as_of": self.as_of.isoformat(),
            "tables": {name: count.as_dict() for name, count in self.tables.items()},
            "stops": list(self.stops),
            "warnings": list(self.warnings),
        }


def _finite(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr.is_finite() if dtype.is_float() else pl.lit(True)


def row_rule(rule: Rule, table: Table, as_of: date, timezone: str) -> pl.Expr:
    """True where a row obeys a row-level rule (a null value is only the not-null rule's)."""
    col = pl.col(rule.column)
    dtype = table.column(rule.column).dtype
    match rule.kind:
        case Kind.NOT_NULL:
            return col.is_not_null()
        case Kind.IN_SET:
            ok = col.is_in(pl.Series(rule.values, dtype=dtype).implode())
        case Kind.POSITIVE:
            ok = (col > 0) & _finite(col, dtype)
        case Kind.NON_NEGATIVE:
            ok = (col >= 0) & _finite(col, dtype)
        case Kind.IN_RANGE:
            low = rule.min_value if rule.min_value is not None else -float("inf")
            high = rule.max_value if rule.max_value is not None else float("inf")
            ok = col.is_between(low, high) & _finite(col, dtype)
        case Kind.TIME_RANGE:
            ok = within_record_range(col, dtype)
        case Kind.BEFORE_AS_OF:
            limit = as_of if dtype == pl.Date else day_start_utc(as_of, timezone)
            ok = col < pl.lit(limit, dtype=dtype)
        case Kind.PARTITION_DATE:
            # Bounds of the partition's local day rather than each timestamp's local date:
            # the partition date is one value per file, the timestamps are every row's.
            partition = pl.col(SOURCE_PARTITION)
            start, end = (
                day_start(partition, timezone),
                day_start(partition.dt.offset_by("1d"), timezone),
            )
            ok = partition.is_null() | ((col >= start) & (col < end))
        case Kind.DIFFERS_FROM:
            ok = col != pl.col(rule.columns[1])
        case Kind.LOAN_ID_IFF_APPROVED:
            ok = (pl.col("decision") == "approved") == pl.col("loan_id").is_not_null()
        case _:
            raise ValueError(f"{rule.name} is not a row rule")
    return ok.fill_null(True)


def reason_dtype(table: Table) -> pl.Enum:
    """``_reason`` is an enumeration of the table's rule names: cheap to compute and count."""
    return pl.Enum([r.name for r in RULES[table.name]])


def _first_broken(rules: list[Rule], dtype: pl.Enum) -> pl.Expr:
    candidates = [pl.when(~pl.col(flag(r))).then(pl.lit(r.name, dtype)) for r in rules]
    return pl.coalesce(candidates) if candidates else pl.lit(None, dtype)


def value_hash(column: str) -> pl.Expr:
    """64-bit hash of a key column, null where the value is null."""
    return pl.when(pl.col(column).is_not_null()).then(pl.col(column).hash(seed=0))


@dataclass
class Parents:
    """Hashes of the keys kept so far, that later tables may reference."""

    key_hashes: dict[tuple[str, str], pl.Series] = field(default_factory=dict)
    future_loans: pl.DataFrame | None = None
    # Per person (``user_id``) and per loan (``loan_id``, its borrower's): the hash of the id
    # and the applications kept for that person, ``_applications``.
    applications_of: dict[str, pl.DataFrame] = field(default_factory=dict)

    def weights(self, column: str) -> pl.DataFrame | None:
        return self.applications_of.get("loan_id" if column == "loan_id" else "user_id")


def row_stage(table: Table) -> list[Rule]:
    """Rules decided by a row alone (and the small set of loans applied after the as-of day)."""
    return [r for r in RULES[table.name] if r.kind in ROW_KINDS or r.kind is Kind.LOAN_BEFORE_AS_OF]


def unique_rule(table: Table) -> Rule:
    (rule,) = (r for r in RULES[table.name] if r.kind is Kind.UNIQUE)
    return rule


def reference_rules(table: Table, parents: Parents) -> list[Rule]:
    """The table's references whose parent rows the gate has already kept."""
    return [
        r
        for r in RULES[table.name]
        if r.kind is Kind.REFERENCE and r.references in parents.key_hashes
    ]


def _future_loan_rule(parents: Parents) -> pl.Expr:
    if parents.future_loans is None or parents.future_loans.is_empty():
        return pl.lit(True)
    future = parents.future_loans.get_column("loan_id").implode()
    return (~pl.col("loan_id").is_in(future)).fill_null(True)


def _reference_rule(rule: Rule, parents: Parents) -> pl.Expr:
    assert rule.references is not None
    known = parents.key_hashes[rule.references].implode()
    return value_hash(rule.column).is_in(known).fill_null(True)


def application_pairs(rows: pl.LazyFrame, table: Table, parents: Parents) -> list[pl.LazyFrame]:
    """Queries of one number each: how many (row, application) pairs the feature build's
    joins make of `rows`, through each of the table's :data:`APPLICANT_COLUMNS` whose
    applications are known."""
    queries = []
    for column in APPLICANT_COLUMNS.get(table.name, ()):
        weights = parents.weights(column)
        if weights is None:
            continue
        hashed = rows.select(value_hash(column).alias(KEY)).drop_nulls()
        joined = hashed.join(weights.lazy(), on=KEY, how="inner")
        queries.append(joined.select(pl.col(APPLICATIONS).sum()))
    return queries


def flag_rows(
    frame: pl.LazyFrame, table: Table, as_of: date, timezone: str, parents: Parents
) -> pl.LazyFrame:
    """To a table scanned with its row numbers (``scan_raw(..., with_source=True)``), add one
    ``_rule_*`` column per row-stage rule and per reference, ``_reason`` (the first row-stage
    rule each row breaks) and ``_reference`` (the first reference it breaks). Uniqueness
    comes between the two: :func:`check_table` decides it, and with it the reason of a row
    that breaks a reference."""
    rules = row_stage(table)
    references = reference_rules(table, parents)
    verdicts = [
        _future_loan_rule(parents)
        if r.kind is Kind.LOAN_BEFORE_AS_OF
        else row_rule(r, table, as_of, timezone)
        for r in rules
    ]
    verdicts += [_reference_rule(r, parents) for r in references]
    frame = frame.with_columns(
        verdict.alias(flag(r)) for r, verdict in zip([*rules, *references], verdicts, strict=True)
    )
    dtype = reason_dtype(table)
    return frame.with_columns(
        _first_broken(rules, dtype).alias(REASON), _first_broken(references, dtype).alias(REFERENCE)
    )


def kept_rows(frame: pl.LazyFrame, table: Table, as_of: date, timezone: str) -> pl.LazyFrame:
    """A table's kept rows in the contract schema, as seen at `as_of` (future payments masked)."""
    kept = frame.select(table.read_names)
    if table.name != "repayments":
        return kept
    return mask_future_payments(kept, day_start_utc(as_of, timezone))


def without_rows(frame: pl.LazyFrame, rows: RowSet | None) -> pl.LazyFrame:
    """`frame` (scanned with its row numbers) less the rows at the given positions (the rows
    the gate set aside)."""
    if not rows:
        return frame
    return frame.filter(~rows.expr(ROW))


def set_aside_reasons(report: GateReport, table: str, where: pl.Expr) -> dict[str, int]:
    """The table's set-aside rows that match `where`, counted by reason (from the quarantine)."""
    path = report.quarantine / f"{table}.parquet" if report.quarantine is not None else None
    if path is None or not path.exists():
        return {}
    counts = pl.scan_parquet(path).filter(where).group_by(REASON).len().sort(REASON).collect()
    return {str(reason): n for reason, n in counts.iter_rows()}


def quarantine_columns(table: Table) -> list[str]:
    """A set-aside row: its position in the table's scan, its values, its source and reason."""
    return [ROW, *table.read_names, SOURCE_FILE, SOURCE_PARTITION, REASON]


@dataclass
class TableCheck:
    """One table's verdict: rows scanned, reasons counted, rows set aside, a sample for GX,
    and the files whose rows repeat (rows of each that are copies, or were copied)."""

    rows_scanned: int
    reasons: dict[str, int]
    quarantine: Path | None
    aside_rows: RowSet
    sample: pl.DataFrame
    repeats: Repeats
    repeated_files: dict[str, int] = field(default_factory=dict)
    application_pairs: int = 0  # (row, application) pairs the feature build's joins make


def check_table(
    frame: pl.LazyFrame,
    table: Table,
    as_of: date,
    timezone: str,
    parents: Parents,
    out: Path,
    files: TableFiles,
    rows_read: int,
    settings: ValidationSettings,
) -> TableCheck:
    """Every rule on every row of one table (`frame`, read from `files`) in one streaming
    scan, then the keys a bucket at a time (module docstring). The rows that break a rule and
    the rows of repeated keys take one more scan, of the files that hold them, only when
    there are any."""
    flagged = flag_rows(frame, table, as_of, timezone, parents)
    work = out / ".work" / table.name
    marks = work / "marks"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = list(unique_rule(table).columns)
    # Every row's verdict goes to the bucket files: a sink of every row holds a row group at a
    # time, where a sink of the few rows that break a rule held the scan's batches they came
    # from (data.storage.compacted).
    verdicts = flagged.select(
        ROW,
        key_hash(key, seed=0).alias(KEY),
        pl.col(REASON).is_not_null().alias(BROKEN),
        pl.col(REFERENCE).is_not_null().alias(DANGLING),
    )
    buckets = buckets_for(rows_read, settings.key_bucket_rows)
    _, *pairs = pl.collect_all(
        [bucket_sink(verdicts, marks, buckets), *application_pairs(frame, table, parents)],
        engine="streaming",
    )
    buckets_written = bucket_files(marks)
    candidates = sample_candidates(
        files.files, table, as_of, timezone, parents, settings.gx_sample_rows
    )
    passed = ~pl.col(BROKEN)  # uniqueness is decided among the rows that pass the row rules
    suspects, repeated = repeated_keys(
        buckets_written, rows_read, passed, candidates.get_column(KEY), settings.key_bucket_rows
    )
    broken = RowSet(rows_read)
    if buckets_written:
        rows = pl.scan_parquet(buckets_written).filter(pl.col(BROKEN) | pl.col(DANGLING))
        broken.add_batches(rows.select(ROW).collect_batches(engine="streaming"), ROW)
    # The rows that break a rule and the rows whose key repeats, fetched once.
    fetched = fetch_rows(files, broken.union(suspects), work / "fetched.parquet")
    fetched = flag_rows(fetched, table, as_of, timezone, parents)
    repeats = judge(
        fetched, suspects, key, table.read_names, work / "judge", settings.key_bucket_rows
    )
    aside = broken.union(repeats.aside)
    path = out / "quarantine" / f"{table.name}.parquet"
    reasons, quarantine = _write_quarantine(fetched, aside, repeats, table, path)
    half = max(1, settings.gx_sample_rows // 2)
    kept_sample = candidates.filter(~pl.col(KEY).is_in(repeated.implode())).head(half)
    check = TableCheck(
        rows_scanned=rows_in(buckets_written),
        reasons=reasons,
        quarantine=quarantine,
        aside_rows=aside,
        sample=gx_sample(kept_sample, quarantine, table, half, as_of, timezone),
        repeats=repeats,
        repeated_files=_files_of(fetched, repeats),
        application_pairs=sum(int(p.item() or 0) for p in pairs),
    )
    shutil.rmtree(work)
    return check


def sample_candidates(
    files: tuple[Path, ...],
    table: Table,
    as_of: date,
    timezone: str,
    parents: Parents,
    sample_rows: int,
) -> pl.DataFrame:
    """Up to `sample_rows` rows that pass every row rule and reference, for the GX sample:
    the first rows of files spread over the table (``SAMPLE_FILES`` of them), read on their
    own, so the sample costs the rows it takes, not a scan of the table. With ``_key``, the
    hash of their unique key: a row whose key repeats is left out of the sample later."""
    chosen = files[:: max(1, -(-len(files) // SAMPLE_FILES))]
    per_file = max(1, -(-sample_rows // max(1, len(chosen))))
    # One file at a time, each head copied: a file's decoded rows are then let go. The rules
    # run once on them all (a reference's look-up table is built once, not once a file).
    heads = [copied(scan_file(path, table).head(per_file).collect()) for path in chosen]
    key = list(unique_rule(table).columns)
    passing = pl.col(REASON).is_null() & pl.col(REFERENCE).is_null()
    columns = [*table.read_names, SOURCE_PARTITION, key_hash(key, seed=0).alias(KEY)]
    schema = {**table.read_schema, SOURCE_PARTITION: pl.Date(), KEY: pl.UInt64()}
    if not heads:
        return pl.DataFrame(schema=schema)
    rows = flag_rows(pl.concat(heads).lazy(), table, as_of, timezone, parents)
    return rows.filter(passing).select(columns).collect().head(sample_rows)


def fetch_rows(files: TableFiles, rows: RowSet, path: Path) -> pl.LazyFrame:
    """The rows of a table (read from `files`) at the positions `rows`, written to `path` and
    scanned from there; empty without any. Only the files that hold such rows are read, and
    the batches are copied before the sink (see data.storage.compacted)."""
    if not rows:
        return scan_file_rows([], files.table)
    layout = file_rows(files)
    holding = [f for f in layout if rows.any_between(f.first_row, f.first_row + f.rows)]
    source = scan_file_rows(holding, files.table)
    compacted(source.filter(rows.expr(ROW))).sink_parquet(path, engine="streaming")
    fetched = pl.scan_parquet(path)
    if (found := fetched.select(pl.len()).collect().item()) != len(rows):
        raise RuntimeError(f"{files.table.name}: fetched {found} rows of {len(rows)}")
    return fetched


def _write_quarantine(
    flagged: pl.LazyFrame, aside: RowSet, repeats: Repeats, table: Table, path: Path
) -> tuple[dict[str, int], Path | None]:
    """Write the rows at the `aside` positions of `flagged` (the rows fetched from the table)
    with the first rule each broke: row rules, then uniqueness (`repeats`), then references.
    Return the count of each reason and the file (None: nothing set aside)."""
    if not aside:
        return {}, None
    reason = [pl.col(REASON)]
    if repeats.aside:
        unique = pl.lit(unique_rule(table).name, reason_dtype(table))
        reason.append(pl.when(repeats.aside.expr(ROW)).then(unique))
    rows = flagged.filter(aside.expr(ROW)).with_columns(
        pl.coalesce(*reason, pl.col(REFERENCE)).alias(REASON)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.select(quarantine_columns(table)).sink_parquet(path, engine="streaming")
    reasons = pl.scan_parquet(path).group_by(REASON).len().sort(REASON).collect()
    return {str(r): n for r, n in reasons.iter_rows()}, path


def _files_of(frame: pl.LazyFrame, repeats: Repeats) -> dict[str, int]:
    """How many rows that repeat (set aside, or kept as the first copy) each file holds, most
    first (empty without repeats). `frame` holds those rows (the rows fetched)."""
    if not repeats.aside:
        return {}
    repeated = frame.filter(repeats.involved.expr(ROW)).select(SOURCE_FILE)
    counts = repeated.group_by(SOURCE_FILE).len().collect(engine="streaming")
    return dict(counts.sort(["len", SOURCE_FILE], descending=[True, False]).iter_rows())


def gx_sample(
    kept: pl.DataFrame,
    quarantine: Path | None,
    table: Table,
    half: int,
    as_of: date,
    timezone: str,
) -> pl.DataFrame:
    """A bounded, deterministic sample for Great Expectations, with one `_rule_*` column per rule.

    Set-aside rows come first (from the quarantine), then the sampled kept rows. Row rules are
    evaluated again on the sample (so GX and Polars can be compared rule by rule); rules that
    need the whole table or other tables are read off the recorded reason.
    """
    dtype = reason_dtype(table)
    columns = [*table.read_names, SOURCE_PARTITION, REASON]
    parts = [kept.with_columns(pl.lit(None, dtype).alias(REASON)).select(columns)]
    if quarantine is not None:
        aside = pl.scan_parquet(quarantine).head(half).select(columns).collect()
        parts.insert(0, aside.with_columns(pl.col(REASON).cast(pl.String).cast(dtype)))
    flags = [
        row_rule(r, table, as_of, timezone).alias(flag(r))
        if r.kind in ROW_KINDS
        else (pl.col(REASON) != r.name).fill_null(True).alias(flag(r))
        for r in RULES[table.name]
    ]
    return (
        pl.concat(parts)
        .with_columns(flags)
        .select(*table.read_names, *(flag(r) for r in RULES[table.name]), REASON)
    )


def _count(read: int, check: TableCheck, table: Table) -> TableCount:
    """Rows read (counted on the raw files' footers), kept and set aside; nothing may be lost.

    Kept rows are the rows the rule pass scanned whose position was not set aside.
    """
    kept = check.rows_scanned - len(check.aside_rows)
    count = TableCount(rows_read=read, rows_kept=kept, reasons=check.reasons)
    if count.rows_read != count.rows_kept + count.rows_set_aside:
        raise RuntimeError(
            f"rows lost in {table.name}: read {count.rows_read}, kept {count.rows_kept}, "
            f"set aside {count.rows_set_aside}"
        )
    return count


def _remember(
    parents: Parents,
    name: str,
    kept: pl.LazyFrame,
    aside: pl.LazyFrame | None,
    as_of_start: datetime,
) -> None:
    """What later tables are checked against. Loans applied on or after the as-of day are
    those of every application set aside that was applied then, whatever rule it breaks
    first: their repayments are not yet known, not dangling."""
    if name == "users":
        parents.key_hashes[("users", "user_id")] = _hashes(kept, "user_id")
    if name == "applications":
        parents.key_hashes[("applications", "application_id")] = _hashes(kept, "application_id")
        approved = kept.filter(pl.col("decision") == "approved")
        parents.key_hashes[("applications", "loan_id")] = _hashes(approved, "loan_id")
        parents.applications_of = _applications_of(kept)
        if aside is not None:
            parents.future_loans = (
                aside.filter(pl.col("applied_at") >= as_of_start)
                .select("loan_id")
                .drop_nulls()
                .unique()
                .collect()
            )


def _hashes(frame: pl.LazyFrame, column: str) -> pl.Series:
    return frame.select(value_hash(column)).collect().to_series().drop_nulls().unique()


def _applications_of(applications: pl.LazyFrame) -> dict[str, pl.DataFrame]:
    """Kept applications per person and per loan (its borrower's), by the hash of the id."""
    count = pl.len().cast(pl.UInt64).alias(APPLICATIONS)
    people = applications.group_by(value_hash("user_id").alias(KEY)).agg(count).collect()
    loans = (
        applications.filter(pl.col("decision") == "approved")
        .select(value_hash("loan_id").alias(KEY), value_hash("user_id").alias("_person"))
        .join(people.lazy().rename({KEY: "_person"}), on="_person")
        .drop("_person")
        .collect()
    )
    return {"user_id": people, "loan_id": loans}


def most_paired(frame: pl.LazyFrame, table: Table, parents: Parents) -> tuple[str, str, int, int]:
    """The id whose rows and applications make the most pairs: (column, id, rows, applications)."""
    found = []
    for column in APPLICANT_COLUMNS.get(table.name, ()):
        weights = parents.weights(column)
        if weights is None:
            continue
        top = (
            frame.group_by(column)
            .len()
            .drop_nulls(column)
            .with_columns(value_hash(column).alias(KEY))
            .join(weights.lazy(), on=KEY)
            .sort(pl.col("len") * pl.col(APPLICATIONS), column, descending=[True, False])
            .head(1)
            .collect(engine="streaming")
        )
        if not top.is_empty():
            found.append((column, top[column][0], top["len"][0], top[APPLICATIONS][0]))
    return max(found, key=lambda f: f[2] * f[3])


def _pairs_stop(
    name: str, check: TableCheck, kept: pl.LazyFrame, parents: Parents, limit: float
) -> list[str]:
    people = parents.applications_of.get("user_id")
    applications = 0 if people is None else int(people[APPLICATIONS].sum())
    rows = max(check.rows_scanned, applications, 1)
    if check.application_pairs <= limit * rows:
        return []
    column, value, n, apps = most_paired(kept, TABLES[name], parents)
    return [
        f"table {name}: the feature build would pair its rows with applications "
        f"{check.application_pairs:,} times, {check.application_pairs / rows:,.0f}x its rows "
        f"(limit {limit:g}x): {column} {value} alone holds {n:,} rows, each paired with "
        f"{apps:,} applications. Is a default value written in place of the id?"
    ]


def repeated_rows_note(check: TableCheck) -> str | None:
    """What the rows set aside for a repeated key suggest, and the files they are in."""
    repeats = check.repeats
    if not repeats.aside:
        return None
    files = list(check.repeated_files.items())
    shown = ", ".join(f"{name} ({rows:,} rows)" for name, rows in files[:REPEATED_FILES_SHOWN])
    more = len(files) - REPEATED_FILES_SHOWN
    shown += f" and {more} more" if more > 0 else ""
    exact, conflicting, across = repeats.exact, repeats.conflicting, repeats.exact_across_files
    if exact >= conflicting:
        cause = (
            f"{exact:,} rows are exact copies of rows in other files: a file or day was probably "
            "loaded twice"
            if across * 2 >= exact
            else f"{exact:,} rows are exact copies of other rows, {across:,} of them in other files"
        )
        cause += (
            f" ({conflicting:,} more share an id with different content)" if conflicting else ""
        )
    else:
        cause = f"{conflicting:,} rows share a unique id with rows of different content"
        cause += f" ({exact:,} more are exact copies)" if exact else ""
    return f"{cause}; files whose rows repeat: {shown}"


def _table_stops(
    name: str, count: TableCount, check: TableCheck, settings: ValidationSettings
) -> list[str]:
    if not TABLES[name].required:
        return []  # _truth: synthetic evaluation data, never used for features or training
    stops = []
    if name in settings.required_nonempty and count.rows_kept == 0:
        stops.append(f"table {name}: required table has no usable rows ({count.rows_read} read)")
    as_of_rules = {r.name for r in RULES[name] if r.kind in AS_OF_RULE_KINDS}
    broken = sum(n for reason, n in count.reasons.items() if reason not in as_of_rules)
    considered = count.rows_read - (count.rows_set_aside - broken)
    if considered and broken / considered > settings.max_set_aside_share:
        top = max(
            ((r, n) for r, n in count.reasons.items() if r not in as_of_rules), key=lambda x: x[1]
        )
        stop = (
            f"table {name}: {broken:,} of {considered:,} rows ({broken / considered:.1%}) break "
            f"the contract, above the {settings.max_set_aside_share:.1%} limit; most often "
            f"{top[0]} ({top[1]:,} rows)"
        )
        note = repeated_rows_note(check) if top[0] == unique_rule(TABLES[name]).name else None
        stops.append(f"{stop}. {note}" if note else stop)
    shifted = sum(n for r, n in count.reasons.items() if r.endswith("_matches_partition"))
    if considered and shifted / considered > settings.max_partition_mismatch_share:
        stops.append(
            f"table {name}: {shifted / considered:.1%} of timestamps fall on another local day "
            "than their dt= partition: clocks in the wrong time zone?"
        )
    return stops


def _table_warnings(name: str, check: TableCheck, stops: list[str]) -> list[str]:
    note = repeated_rows_note(check)
    if note is None or any(note in stop for stop in stops):
        return []
    return [f"table {name}: {note}"]


def run_gate(
    raw: Path,
    out: Path,
    settings: ValidationSettings,
    timezone: str,
    as_of: date | None = None,
) -> GateReport:
    """Validate every table of a raw root as of a date; write the quarantined rows.

    Raises :class:`ContractError` for a table that cannot be used at all (missing folder or
    column, wrong type, unreadable file). Problems found in the rows are reported in
    ``GateReport.stops`` (the run must stop) and ``GateReport.warnings``.
    """
    tables = scan_raw(raw, with_source=True)
    day = as_of or default_as_of(tables, timezone)
    rows_read = {name: frame.select(pl.len()).collect().item() for name, frame in tables.items()}
    for name in settings.required_nonempty:
        if rows_read[name] == 0:
            raise ContractError("required table is empty", table=name, file=Path(raw) / name)
    if out.exists():
        shutil.rmtree(out)
    parents = Parents()
    report = GateReport(as_of=day, tables={}, quarantine=out / "quarantine", scans=tables)
    for name in ORDER:
        table = TABLES[name]
        folder = Path(raw) / name
        files = (
            list_table_files(Path(raw), table) if folder.is_dir() else TableFiles(table, folder, ())
        )
        check = check_table(
            tables[name], table, day, timezone, parents, out, files, rows_read[name], settings
        )
        if check.aside_rows:
            report.set_aside[name] = check.aside_rows
        kept = without_rows(tables[name], check.aside_rows)
        report.tables[name] = _count(rows_read[name], check, table)
        report.samples[name] = check.sample
        aside = pl.scan_parquet(check.quarantine) if check.quarantine is not None else None
        _remember(parents, name, kept, aside, day_start_utc(day, timezone))
        if name == "applications":
            people = parents.applications_of["user_id"]
            check.application_pairs = int((people[APPLICATIONS] ** 2).sum())
        stops = _table_stops(name, report.tables[name], check, settings)
        stops += _pairs_stop(name, check, kept, parents, settings.max_application_pairs)
        report.stops += stops
        report.warnings += _table_warnings(name, check, stops)
    shutil.rmtree(out / ".work", ignore_errors=True)
    return report


def scan_validated(
    report: GateReport, timezone: str, since: date | None = None
) -> dict[str, pl.LazyFrame]:
    """The kept rows of every table the gate checked, as lazy frames in the contract schema.

    With `since`, only rows filed under ``dt=`` partitions from the day before `since` on
    (or not partitioned) are read: a query of recent days then skips the older files.
    """
    frames = {}
    for name in report.tables:
        table = TABLES[name]
        frame = without_rows(report.scans[name], report.set_aside.get(name))
        if since is not None:
            recent = pl.col(SOURCE_PARTITION) >= since - timedelta(days=1)
            frame = frame.filter(pl.col(SOURCE_PARTITION).is_null() | recent)
        frames[name] = kept_rows(frame, table, report.as_of, timezone)
    return frames

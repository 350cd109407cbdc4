"""The data gate's Polars engine: every raw row is kept or set aside with the rule it broke.

For each contract table, one streaming scan feeds two outputs (``pl.collect_all``):

1. every row rule on every row, in file order: nulls, unknown enumeration values,
   non-positive amounts, ranges, records on or after the as-of day, timestamps filed under
   another ``dt=`` partition, loan ids on rejected applications, repayments of loans applied
   on or after the as-of day. The rows that break one, and a bounded sample of the others for
   Great Expectations, are written to a staging file;
2. 64-bit hashes of the unique keys and of the references, held in memory (8 bytes a row).

The hashes of the rows that passed the row rules then give, without a second scan, the keys
that repeat and the referenced values that no kept parent row has (users, approved loans);
usually there are none. Only when there are does one more pass fetch those few rows to judge
them exactly: an exact copy of a row (a day loaded twice) is set aside and one copy kept; rows
that share a unique id but differ are all set aside, since nothing says which one is true.

Each row's ``_reason`` is the first rule it broke (null when kept). Rows set aside go to
``quarantine/<table>.parquet`` with ``_reason``, ``_file`` and ``_row`` (their position in
the table's scan). Kept rows are never copied: :func:`scan_validated` reads the raw files
less those positions.

Rows read (counted from the files' footers) = rows kept (rows the scan saw, less the
positions set aside) + rows set aside is checked for every table on every run. A table that
cannot be used at all stops the run with a :class:`~data.readers.ContractError` instead.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
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
from data.contract import TABLES, Table
from data.readers import SOURCE_FILE, SOURCE_PARTITION, ContractError, scan_raw
from data.rules import ROW_KINDS, RULES, Kind, Rule

REASON = "_reason"
ROW = "_row"
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
    set_aside: dict[str, pl.Series] = field(default_factory=dict, repr=False)
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


def _first_broken(rules: list[Rule], dtype: pl.Enum, current: pl.Expr | None = None) -> pl.Expr:
    candidates = [] if current is None else [current]
    candidates += [pl.when(~pl.col(flag(r))).then(pl.lit(r.name, dtype)) for r in rules]
    return pl.coalesce(candidates) if candidates else pl.lit(None, dtype)


def unique_flag(rule: Rule, table: Table, candidate: pl.Expr) -> pl.Expr:
    """Among `candidate` rows: one copy of an exact duplicate is kept; rows that share the key
    but differ are all set aside."""
    key = list(rule.columns)
    content = pl.struct(table.read_names).hash(seed=0)
    variants = content.filter(candidate).n_unique().over(key)
    first_copy = candidate.cum_sum().over(key) == 1
    return (variants == 1) & first_copy


def value_hash(column: str) -> pl.Expr:
    """64-bit hash of a key column, null where the value is null."""
    return pl.when(pl.col(column).is_not_null()).then(pl.col(column).hash(seed=0))


def repeated(hashes: pl.Series) -> pl.Series:
    """The values that occur more than once, found by sorting (8 bytes a row, no hash table)."""
    ordered = hashes.sort()
    return ordered.filter(ordered == ordered.shift(1)).unique()


@dataclass
class Parents:
    """Hashes of the keys kept so far, that later tables may reference."""

    key_hashes: dict[tuple[str, str], pl.Series] = field(default_factory=dict)
    future_loans: pl.DataFrame | None = None


def row_stage(table: Table) -> list[Rule]:
    """Rules decided by a row alone (and the small set of loans applied after the as-of day)."""
    return [r for r in RULES[table.name] if r.kind in ROW_KINDS or r.kind is Kind.LOAN_BEFORE_AS_OF]


def key_stage(table: Table) -> list[Rule]:
    """Rules decided across rows: uniqueness, then references to kept parent rows."""
    return [r for r in RULES[table.name] if r.kind in (Kind.UNIQUE, Kind.REFERENCE)]


def _future_loan_rule(parents: Parents) -> pl.Expr:
    if parents.future_loans is None or parents.future_loans.is_empty():
        return pl.lit(True)
    future = parents.future_loans.get_column("loan_id").implode()
    return (~pl.col("loan_id").is_in(future)).fill_null(True)


def flag_rows(
    frame: pl.LazyFrame, table: Table, as_of: date, timezone: str, parents: Parents
) -> pl.LazyFrame:
    """Add the row number ``_row``, one ``_rule_*`` column per row-stage rule, and ``_reason``,
    the first of them each row breaks (the key-stage rules are decided by :func:`key_problems`)."""
    rules = row_stage(table)
    verdicts = [
        _future_loan_rule(parents)
        if r.kind is Kind.LOAN_BEFORE_AS_OF
        else row_rule(r, table, as_of, timezone)
        for r in rules
    ]
    frame = frame.with_row_index(ROW).with_columns(
        verdict.alias(flag(r)) for r, verdict in zip(rules, verdicts, strict=True)
    )
    return frame.with_columns(_first_broken(rules, reason_dtype(table)).alias(REASON))


def _key_hash(rule: Rule) -> pl.Expr:
    key = list(rule.columns)
    return (pl.struct(key) if len(key) > 1 else pl.col(key[0])).hash(seed=0)


def key_hashes(table: Table, parents: Parents) -> dict[str, pl.Expr]:
    """One 64-bit hash column per key-stage rule, for the rows that passed the row stage."""
    columns = {}
    for rule in key_stage(table):
        if rule.kind is Kind.UNIQUE:
            columns[rule.name] = _key_hash(rule)
        elif rule.references in parents.key_hashes:
            columns[rule.name] = value_hash(rule.column)
    return columns


def key_problems(hashes: pl.DataFrame, table: Table, parents: Parents) -> dict[str, pl.Series]:
    """Per key-stage rule, the row numbers that may break it (usually none).

    ``hashes`` holds ``_row`` and the :func:`key_hashes` of the rows that passed the row stage.
    For uniqueness these are the rows whose key hash repeats (a collision of two keys only
    sends a few more rows to the exact check); for a reference, the rows whose value's hash no
    kept parent row has: those values are certainly unknown. A referenced value whose hash
    collides with a kept parent's would pass unseen, with odds of about one in 10^13 per value
    for a million parents.
    """
    suspects = {}
    for rule in key_stage(table):
        if rule.name not in hashes.columns:
            continue
        column = hashes[rule.name]
        if rule.kind is Kind.UNIQUE:
            bad = column.is_in(repeated(column).implode())
        else:
            assert rule.references is not None
            values = column.drop_nulls().unique()
            known = parents.key_hashes[rule.references]
            bad = column.is_in(values.filter(~values.is_in(known.implode())).implode())
        rows = hashes[ROW].filter(bad)
        if not rows.is_empty():
            suspects[rule.name] = rows
    return suspects


def judge_key_problems(
    suspect_rows: pl.DataFrame, table: Table, suspects: dict[str, pl.Series]
) -> pl.DataFrame:
    """The suspects that break a key-stage rule, with the first such rule as ``_reason``.

    `suspect_rows` are the suspects' full rows, in file order. Exact duplicates keep their first
    copy; rows that share a unique key but differ are all set aside.
    """
    dtype = reason_dtype(table)
    verdicts = []
    for rule in key_stage(table):
        rows = suspects.get(rule.name)
        if rows is None:
            verdicts.append(pl.lit(True).alias(flag(rule)))
        elif rule.kind is Kind.UNIQUE:
            suspect = pl.col(ROW).is_in(rows.implode())
            verdicts.append((~suspect | unique_flag(rule, table, suspect)).alias(flag(rule)))
        else:
            verdicts.append((~pl.col(ROW).is_in(rows.implode())).alias(flag(rule)))
    judged = suspect_rows.with_columns(verdicts).with_columns(
        _first_broken(key_stage(table), dtype).alias(REASON)
    )
    return judged.filter(pl.col(REASON).is_not_null()).select(quarantine_columns(table))


def kept_rows(frame: pl.LazyFrame, table: Table, as_of: date, timezone: str) -> pl.LazyFrame:
    """A table's kept rows in the contract schema, as seen at `as_of` (future payments masked)."""
    kept = frame.select(table.read_names)
    if table.name != "repayments":
        return kept
    return mask_future_payments(kept, day_start_utc(as_of, timezone))


def without_rows(frame: pl.LazyFrame, rows: pl.Series | None) -> pl.LazyFrame:
    """`frame` less the rows at the given positions (the rows the gate set aside)."""
    if rows is None or rows.is_empty():
        return frame
    return frame.with_row_index(ROW).filter(~pl.col(ROW).is_in(rows.implode())).drop(ROW)


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
    """One table's verdict: rows scanned, reasons counted, rows set aside, a sample for GX."""

    rows_scanned: int
    reasons: dict[str, int]
    quarantine: Path | None
    aside_rows: pl.Series | None
    sample: pl.DataFrame


def check_table(
    frame: pl.LazyFrame,
    table: Table,
    as_of: date,
    timezone: str,
    parents: Parents,
    out: Path,
    sample_rows: tuple[int, int],
) -> TableCheck:
    """Every rule on every row of one table, in two streaming passes (three when keys are
    suspect).

    1. Every row-stage rule on every row. The rows that break one, and a sample of the others
       for GX (picked by a hash of one column), are written to a staging file.
    2. 64-bit hashes of the keys and references (8 bytes a row each, held in memory).

    Only when a key repeats or a reference is unknown does a third pass fetch those few rows,
    to judge them exactly. `sample_rows` is (rows in the table, GX sample budget).
    """
    flagged = flag_rows(frame, table, as_of, timezone, parents)
    failing = pl.col(REASON).is_not_null()
    path = out / "quarantine" / f"{table.name}.parquet"
    staged = path.with_name(f".{table.name}.row_stage.parquet")
    rows, budget = sample_rows
    half = max(1, budget // 2)
    # The pass decodes every column anyway to judge the rows: picking the sample there costs
    # a hash of one column, where a pass of its own decoded the whole table again.
    picked = pl.col(table.read_names[0]).hash(seed=1) % max(1, -(-rows // half)) == 0
    numbered = frame.with_row_index(ROW)
    staged.parent.mkdir(parents=True, exist_ok=True)
    # One scan feeds both passes: 30-40% less time than two scans, for 1.5 GiB more memory
    # at 80M rows (the hashes are held either way).
    _, hashes = pl.collect_all(
        [
            flagged.filter(failing | picked)
            .select(quarantine_columns(table))
            .sink_parquet(staged, lazy=True),
            numbered.select(ROW, **key_hashes(table, parents)),
        ],
        engine="streaming",
    )
    failed = pl.scan_parquet(staged).filter(failing).select(ROW).collect().to_series()
    sample = (
        pl.scan_parquet(staged)
        .filter(~failing)
        .head(half)
        .select(ROW, *table.read_names, SOURCE_PARTITION)
        .collect()
    )
    rows_scanned = hashes.height
    if not failed.is_empty():
        hashes = hashes.filter(~pl.col(ROW).is_in(failed.implode()))
    suspects = key_problems(hashes, table, parents)
    del hashes
    late = pl.DataFrame(schema=pl.scan_parquet(staged).collect_schema())
    if suspects:
        suspect = pl.col(ROW).is_in(pl.concat(list(suspects.values())).implode())
        suspect_rows = (
            numbered.filter(suspect)
            .select(ROW, *table.read_names, SOURCE_FILE, SOURCE_PARTITION)
            .collect(engine="streaming")
        )
        late = judge_key_problems(suspect_rows, table, suspects).cast(late.schema)
    reasons, quarantine = _write_quarantine(staged, late, path)
    aside = pl.scan_parquet(quarantine) if quarantine is not None else None
    sample = sample.filter(~pl.col(ROW).is_in(late[ROW].implode())).drop(ROW)
    return TableCheck(
        rows_scanned=rows_scanned,
        reasons=reasons,
        quarantine=quarantine,
        aside_rows=None if aside is None else aside.select(ROW).collect().to_series(),
        sample=gx_sample(sample, aside, table, half, as_of, timezone),
    )


def _write_quarantine(
    staged: Path, late: pl.DataFrame, path: Path
) -> tuple[dict[str, int], Path | None]:
    """Move the set-aside rows into place; return the count of each reason (None: no file)."""
    failed = pl.scan_parquet(staged).filter(pl.col(REASON).is_not_null())
    pl.concat([failed, late.lazy()]).sink_parquet(path)
    staged.unlink()
    reasons = dict(pl.scan_parquet(path).group_by(REASON).len().collect().iter_rows())
    if not reasons:
        path.unlink()
        return {}, None
    return {str(reason): n for reason, n in reasons.items()}, path


def gx_sample(
    kept: pl.DataFrame,
    aside: pl.LazyFrame | None,
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
    if aside is not None:
        reason = pl.col(REASON).cast(pl.String).cast(dtype)
        parts.insert(0, aside.head(half).with_columns(reason).select(columns).collect())
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
    aside = check.aside_rows if check.aside_rows is not None else pl.Series([], dtype=pl.UInt32)
    kept = check.rows_scanned - aside.filter(aside < check.rows_scanned).n_unique()
    count = TableCount(rows_read=read, rows_kept=kept, reasons=check.reasons)
    if count.rows_read != count.rows_kept + count.rows_set_aside:
        raise RuntimeError(
            f"rows lost in {table.name}: read {count.rows_read}, kept {count.rows_kept}, "
            f"set aside {count.rows_set_aside}"
        )
    return count


def _remember(parents: Parents, name: str, kept: pl.LazyFrame, aside: pl.LazyFrame | None) -> None:
    if name == "users":
        parents.key_hashes[("users", "user_id")] = _hashes(kept, "user_id")
    if name == "applications":
        parents.key_hashes[("applications", "application_id")] = _hashes(kept, "application_id")
        approved = kept.filter(pl.col("decision") == "approved")
        parents.key_hashes[("applications", "loan_id")] = _hashes(approved, "loan_id")
        if aside is not None:
            parents.future_loans = (
                aside.filter(pl.col(REASON) == "applied_at_before_as_of")
                .select("loan_id")
                .drop_nulls()
                .collect()
            )


def _hashes(frame: pl.LazyFrame, column: str) -> pl.Series:
    return frame.select(value_hash(column)).collect().to_series().drop_nulls()


def _table_stops(name: str, count: TableCount, settings: ValidationSettings) -> list[str]:
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
        stops.append(
            f"table {name}: {broken:,} of {considered:,} rows ({broken / considered:.1%}) break "
            f"the contract, above the {settings.max_set_aside_share:.1%} limit; most often "
            f"{top[0]} ({top[1]:,} rows)"
        )
    shifted = sum(n for r, n in count.reasons.items() if r.endswith("_matches_partition"))
    if considered and shifted / considered > settings.max_partition_mismatch_share:
        stops.append(
            f"table {name}: {shifted / considered:.1%} of timestamps fall on another local day "
            "than their dt= partition: clocks in the wrong time zone?"
        )
    return stops


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
        sample_rows = (rows_read[name], settings.gx_sample_rows)
        check = check_table(tables[name], table, day, timezone, parents, out, sample_rows)
        if check.aside_rows is not None:
            report.set_aside[name] = check.aside_rows
        kept = without_rows(tables[name], check.aside_rows)
        report.tables[name] = _count(rows_read[name], check, table)
        report.samples[name] = check.sample
        aside = pl.scan_parquet(check.quarantine) if check.quarantine is not None else None
        _remember(parents, name, kept, aside)
        report.stops += _table_stops(name, report.tables[name], settings)
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

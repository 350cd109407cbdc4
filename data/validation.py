"""The data gate's Polars engine: every raw row is kept or set aside with the rule it broke.

For each contract table, one lazy pass flags the rows that break a rule of ``data.rules``:

1. row rules: nulls, unknown enumeration values, non-positive amounts, ranges, records on or
   after the as-of day, timestamps filed under another ``dt=`` partition, loan ids on rejected
   applications;
2. uniqueness among the rows that passed: an exact copy of a row (a day loaded twice) is set
   aside and one copy kept; rows that share a unique id but differ are all set aside, since
   nothing says which one is true;
3. references to rows of other tables that were kept (users, approved loans), and repayments
   of loans applied on or after the as-of day.

A table with rows set aside is written once, every row with ``_reason`` (the first rule broken,
null when kept) and ``_file``, to ``checked/<table>.parquet``, and its set-aside rows are copied
to ``quarantine/<table>.parquet`` for people to inspect. A clean table is not copied at all.
:func:`scan_validated` reads the kept rows of every table from wherever they are. Rows read
= rows kept + rows set aside is checked for every table on every run. A table that cannot be
used at all stops the run with a :class:`~data.readers.ContractError` instead.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from data.asof import TableCount, day_start_utc, default_as_of, local_date, mask_future_payments
from data.config import ValidationSettings
from data.contract import TABLES, Table
from data.readers import SOURCE_FILE, SOURCE_PARTITION, ContractError, scan_raw
from data.rules import ROW_KINDS, RULES, Kind, Rule

REASON = "_reason"
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
    sources: dict[str, Path] = field(default_factory=dict)
    quarantine: Path | None = None
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
            ok = pl.col(SOURCE_PARTITION).is_null() | (
                local_date(col, timezone) == pl.col(SOURCE_PARTITION)
            )
        case Kind.LOAN_ID_IFF_APPROVED:
            ok = (pl.col("decision") == "approved") == pl.col("loan_id").is_not_null()
        case _:
            raise ValueError(f"{rule.name} is not a row rule")
    return ok.fill_null(True)


def _first_broken(rules: list[Rule], current: pl.Expr | None = None) -> pl.Expr:
    candidates = [] if current is None else [current]
    candidates += [pl.when(~pl.col(flag(r))).then(pl.lit(r.name)) for r in rules]
    return pl.coalesce(candidates) if candidates else pl.lit(None, pl.String)


def unique_flag(rule: Rule, table: Table) -> pl.Expr:
    """Among rows that passed the row rules: one copy of an exact duplicate is kept; rows that
    share the key but differ are all set aside."""
    passing = pl.col(REASON).is_null()
    key = list(rule.columns)
    content = pl.struct(table.column_names).hash(seed=0)
    variants = content.filter(passing).n_unique().over(key)
    first_copy = passing.cum_sum().over(key) == 1
    return ~passing | ((variants == 1) & first_copy)


def _unique(frame: pl.LazyFrame, rule: Rule, table: Table) -> pl.LazyFrame:
    """Flag duplicates; the exact (costly) check runs only on rows whose key repeats.

    Repeated keys are found first, in a separate pass over the key alone: a group-by on a
    64-bit hash of the key (a collision only sends a few more rows to the exact check). The
    main pass then only probes that small set, row by row, which keeps it streaming.
    """
    key = list(rule.columns)
    key_hash = (pl.struct(key) if len(key) > 1 else pl.col(key[0])).hash(seed=0)
    repeated = (
        frame.select(key_hash.alias("_key"))
        .group_by("_key")
        .len()
        .filter(pl.col("len") > 1)
        .collect()
        .get_column("_key")
    )
    is_repeated = key_hash.is_in(repeated.implode())
    return pl.concat(
        [
            frame.filter(~is_repeated).with_columns(pl.lit(True).alias(flag(rule))),
            frame.filter(is_repeated).with_columns(unique_flag(rule, table).alias(flag(rule))),
        ]
    )


@dataclass
class Parents:
    """Keys kept so far, that later tables may reference."""

    keys: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)
    future_loans: pl.DataFrame | None = None


def _reference_flag(frame: pl.LazyFrame, rule: Rule, parents: Parents) -> pl.LazyFrame:
    """A row-wise probe of the parent's kept keys (no join: order and streaming are kept)."""
    assert rule.references is not None
    keys = parents.keys.get(rule.references)
    if keys is None:
        return frame.with_columns(pl.lit(True).alias(flag(rule)))
    column = pl.col(rule.column)
    known = column.is_in(keys.get_column(rule.references[1]).implode())
    return frame.with_columns((column.is_null() | known).alias(flag(rule)))


def flag_rows(
    frame: pl.LazyFrame, table: Table, as_of: date, timezone: str, parents: Parents
) -> pl.LazyFrame:
    """Add one `_rule_*` column per rule and `_reason`, the first rule each row breaks."""
    rules = RULES[table.name]
    row_rules = [r for r in rules if r.kind in ROW_KINDS]
    frame = frame.with_columns(
        row_rule(r, table, as_of, timezone).alias(flag(r)) for r in row_rules
    )
    frame = frame.with_columns(_first_broken(row_rules).alias(REASON))
    for rule in rules:
        if rule.kind is Kind.UNIQUE:
            frame = _unique(frame, rule, table)
        elif rule.kind is Kind.LOAN_BEFORE_AS_OF:
            future = (
                parents.future_loans
                if parents.future_loans is not None
                else pl.DataFrame(schema={"loan_id": pl.String()})
            )
            frame = frame.with_columns(
                (~pl.col("loan_id").is_in(future["loan_id"].implode()))
                .fill_null(True)
                .alias(flag(rule))
            )
        elif rule.kind is Kind.REFERENCE:
            frame = _reference_flag(frame, rule, parents)
        else:
            continue
        frame = frame.with_columns(_first_broken([rule], pl.col(REASON)).alias(REASON))
    return frame


def kept_rows(checked: pl.LazyFrame, table: Table, as_of: date, timezone: str) -> pl.LazyFrame:
    """The rows of a checked table that were kept, in the contract schema, as seen at `as_of`."""
    kept = checked.filter(pl.col(REASON).is_null()).select(table.column_names)
    if table.name != "repayments":
        return kept
    return mask_future_payments(kept, day_start_utc(as_of, timezone))


def gx_sample(
    checked: pl.LazyFrame, table: Table, rows: int, budget: int, as_of: date, timezone: str
) -> pl.DataFrame:
    """A bounded, deterministic sample for Great Expectations, with one `_rule_*` column per rule.

    Row rules are evaluated again on the sample (so GX and Polars can be compared rule by rule);
    rules that need the whole table or other tables are read off the recorded reason.
    """
    half = max(1, budget // 2)
    step = max(1, -(-rows // half))
    # A filter on one column's hash lets the reader skip the other columns of unsampled rows.
    picked = pl.col(table.column_names[0]).hash(seed=1) % step == 0
    sample = pl.concat(
        [
            checked.filter(pl.col(REASON).is_not_null()).head(half),
            checked.filter(pl.col(REASON).is_null() & picked).head(half),
        ]
    )
    flags = [
        row_rule(r, table, as_of, timezone).alias(flag(r))
        if r.kind in ROW_KINDS
        else (pl.col(REASON) != r.name).fill_null(True).alias(flag(r))
        for r in RULES[table.name]
    ]
    return (
        sample.with_columns(flags)
        .select(*table.column_names, *(flag(r) for r in RULES[table.name]), REASON)
        .collect()
    )


def _write_table(frame: pl.LazyFrame, table: Table, out: Path) -> dict[str, int] | None:
    """Count the reasons; write the table only when rows were set aside.

    A clean table (the nightly norm) costs one pass and no write: its kept rows are the raw
    rows. Otherwise every row is written once with its reason to ``checked/``, and the set-aside
    rows are copied to ``quarantine/``. Returns None for a clean table.
    """
    reasons = dict(frame.group_by(REASON).len().drop_nulls(REASON).collect().iter_rows())
    if not reasons:
        return None
    checked = out / "checked" / f"{table.name}.parquet"
    frame.select(*table.column_names, SOURCE_FILE, SOURCE_PARTITION, REASON).sink_parquet(
        checked, mkdir=True
    )
    aside = pl.scan_parquet(checked).filter(pl.col(REASON).is_not_null())
    aside.sink_parquet(out / "quarantine" / f"{table.name}.parquet", mkdir=True)
    return dict(aside.group_by(REASON).len().collect().iter_rows())


def _count(read: int, reasons: dict[str, int], checked: pl.LazyFrame, table: Table) -> TableCount:
    """Rows read (counted on the raw files), kept and set aside; nothing may be lost."""
    kept = checked.filter(pl.col(REASON).is_null()).select(pl.len()).collect().item()
    count = TableCount(rows_read=read, rows_kept=int(kept), reasons=reasons)
    if count.rows_read != count.rows_kept + count.rows_set_aside:
        raise RuntimeError(
            f"rows lost in {table.name}: read {count.rows_read}, kept {count.rows_kept}, "
            f"set aside {count.rows_set_aside}"
        )
    return count


def _remember(parents: Parents, name: str, checked: pl.LazyFrame) -> None:
    kept = checked.filter(pl.col(REASON).is_null())
    if name == "users":
        parents.keys[("users", "user_id")] = kept.select("user_id").collect()
    if name == "applications":
        parents.keys[("applications", "application_id")] = kept.select("application_id").collect()
        parents.keys[("applications", "loan_id")] = (
            kept.filter(pl.col("decision") == "approved").select("loan_id").collect()
        )
        parents.future_loans = (
            checked.filter(pl.col(REASON) == "applied_at_before_as_of")
            .select("loan_id")
            .drop_nulls()
            .collect()
        )


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
    """Validate every table of a raw root as of a date; write validated and quarantined rows.

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
    report = GateReport(as_of=day, tables={}, quarantine=out / "quarantine")
    for name in ORDER:
        table = TABLES[name]
        frame = flag_rows(tables[name], table, day, timezone, parents)
        reasons = _write_table(frame, table, out)
        if reasons is None:
            checked = tables[name].with_columns(pl.lit(None, pl.String).alias(REASON))
            report.sources[name] = Path(raw) / name
        else:
            report.sources[name] = out / "checked" / f"{name}.parquet"
            checked = pl.scan_parquet(report.sources[name])
        report.tables[name] = _count(rows_read[name], reasons or {}, checked, table)
        report.samples[name] = gx_sample(
            checked, table, rows_read[name], settings.gx_sample_rows, day, timezone
        )
        _remember(parents, name, checked)
        report.stops += _table_stops(name, report.tables[name], settings)
    return report


def scan_validated(report: GateReport, timezone: str) -> dict[str, pl.LazyFrame]:
    """The kept rows of every table the gate checked, as lazy frames in the contract schema."""
    frames = {}
    for name, source in report.sources.items():
        table = TABLES[name]
        if source.suffix == ".parquet":
            frames[name] = kept_rows(pl.scan_parquet(source), table, report.as_of, timezone)
        else:
            raw = scan_raw(source.parent, [name])[name].with_columns(
                pl.lit(None, pl.String).alias(REASON)
            )
            frames[name] = kept_rows(raw, table, report.as_of, timezone)
    return frames

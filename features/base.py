"""The feature settings, the catalogue's row (:class:`FeatureDef`) and the building blocks the
engine (``features.engine``) and the query families share: the point-in-time join, window
buckets, exact integer sums and spreads, days as bits.

Point in time: every family sees only records strictly before each spine row's cut-off (the
``cutoff`` column of the spine: for an application, the start of its local day).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Joined rows carry an integer key for their application: the streaming group-by hashes it
# more cheaply than the string application_id (figures: tests/bench/RESULTS.md).
APPLICATION = "_application"
BUCKET = "_bucket"  # a joined row's window bucket (:func:`window_bucket`)
SPINE_COLUMNS = ("application_id", "user_id", "cutoff", "prev_loan_at")  # what a family reads
SPINE_KEYS = (APPLICATION, "user_id", "cutoff", "prev_loan_at")  # what joined rows carry
SINCE_PREV_LOAN = "since_prev_loan"
SHARE = (0.0, 1.0)
UNBOUNDED = (None, None)


class FeatureSettings(BaseModel):
    """Windows and thresholds of the behavioural features, and the protected attributes."""

    model_config = ConfigDict(extra="forbid")

    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90, 180], min_length=1)
    night_end_hour: int = Field(6, ge=1, le=12, description="Night-time is 00:00 to this hour")
    trend_days: tuple[int, int] = Field(
        (30, 180), description="Trend features compare the per-day rate of these two windows"
    )
    last_n: int = Field(10, ge=1, description="Size of the 'last N events' features")
    large_multiple: float = Field(
        3.0, gt=1, description="A purchase is large above this multiple of the user's mean"
    )
    protected: list[Literal["gender", "age"]] = Field(
        default_factory=lambda: ["gender"],
        description="Profile attributes kept out of model features (fairness reporting only); "
        "gender always is, age where lending law requires it",
    )
    bureau_trend_months: int = Field(
        3,
        ge=1,
        description="Bureau trend features compare the latest report with the one this many "
        "months earlier",
    )
    bureau_worst_months: int = Field(
        6,
        ge=1,
        description="Months of bureau reports the worst current days past due is taken over",
    )
    slope_months: int = Field(
        6,
        ge=2,
        description="Slope features fit the totals of this many 30-day months before the "
        "cut-off (within the longest window)",
    )
    slice_rows: int = Field(
        700_000,
        ge=1,
        description="Most spine rows whose windowed features are built in one pass: a larger "
        "spine is cut into slices of about equal size in cut-off order, so the build's memory "
        "grows with a slice, not with the history",
    )
    active_days: int = Field(
        30,
        ge=1,
        description="`pdflow features --users-on D`: users with any activity in this many days "
        "before D",
    )

    @field_validator("protected")
    @classmethod
    def _gender_always_protected(cls, value: list[str]) -> list[str]:
        if "gender" not in value:
            raise ValueError("gender is a protected attribute and must stay listed in 'protected'")
        return value

    @model_validator(mode="after")
    def _trend_windows_exist(self) -> FeatureSettings:
        short, long = self.trend_days
        if not short < long or {short, long} - set(self.windows_days):
            raise ValueError(
                f"trend_days {self.trend_days} must be two of windows_days "
                f"{self.windows_days}, shorter first"
            )
        if self.slope_months * 30 > max(self.windows_days):
            raise ValueError(
                f"slope_months {self.slope_months} x 30 days must lie within the longest "
                f"window ({max(self.windows_days)} days)"
            )
        return self


@dataclass(frozen=True)
class FeatureDef:
    """One feature as the catalogue lists it."""

    name: str
    family: str
    window: str
    description: str
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class Aggregate:
    """A feature computed by one aggregation over a family's event rows.

    ``agg`` receives a boolean expression that marks the rows inside the window and returns
    the aggregate. ``fill`` is the value for an application with no rows at all (a count is 0,
    a share or a mean is unknown and stays null). ``bounds`` is the range any value must lie in
    (the feature table's expectation suite checks it).
    """

    stem: str
    description: str
    agg: Callable[[pl.Expr], pl.Expr]
    fill: float | None = 0.0
    bounds: tuple[float | None, float | None] = (0.0, None)
    since_prev_loan: bool = False


@dataclass(frozen=True)
class AcrossFamilies:
    """A feature computed once the families are joined, from several families' columns."""

    name: str
    window: str
    description: str
    expr: pl.Expr
    bounds: tuple[float | None, float | None] = (0.0, None)

    def definition(self, family: str) -> FeatureDef:
        return FeatureDef(self.name, family, self.window, self.description, *self.bounds)


def count(mask: pl.Expr, where: pl.Expr | None = None) -> pl.Expr:
    rows = mask if where is None else mask & where
    return rows.sum()


# Float sums depend on the order rows are added in, and the streaming engine adds them in a
# different order on every run. Sums, means and spreads are therefore taken over fixed-point
# integers (exact to 1e-6 of the unit, and in any order), then turned back into floats.
FIXED_POINT = 1_000_000


def fixed_point(expr: pl.Expr) -> pl.Expr:
    """The float expression as an exact integer of millionths."""
    return (expr * FIXED_POINT).round().cast(pl.Int128)


# Spreads are taken over hundredths: their sums of squares stay inside 128 bits for any
# amount up to data.contract.MAX_AMOUNT, above which the gate sets rows aside.
CENTS = 100
INT128_SAFE = 1e38


def cents(expr: pl.Expr) -> pl.Expr:
    return (expr * CENTS).round().cast(pl.Int128)


def std_from_sums(n: pl.Expr, total: pl.Expr, squares: pl.Expr) -> pl.Expr:
    """Sample standard deviation from the count, sum and sum of squares of integers; null
    below two values.

    sqrt((n * squares - total^2) / (n * (n - 1))) is computed on the exact 128-bit integers,
    so the cancellation that makes this formula unstable in floating point cannot occur. Where
    n * squares would not fit in 128 bits (many amounts near the gate's bound,
    ``data.contract.MAX_AMOUNT``), the floating-point form is used instead of a wrapped-around
    integer. The squares themselves fit for any amount the gate keeps.
    """
    n = n.cast(pl.Int128)
    exact = (n * squares - total * total).cast(pl.Float64)
    n_float = n.cast(pl.Float64)
    approximate = squares.cast(pl.Float64) * n_float - total.cast(pl.Float64) ** 2
    fits = n_float * squares.cast(pl.Float64) < INT128_SAFE
    spread = pl.when(fits).then(exact).otherwise(approximate).clip(lower_bound=0.0)
    return pl.when(n > 1).then((spread / (n_float * (n_float - 1))).sqrt())


def entropy_of_counts(counts: Sequence[pl.Expr], n: pl.Expr) -> pl.Expr:
    """Shannon entropy (nats) of the shares counts / n; null when n is 0."""
    n = n.cast(pl.Float64)
    terms = []
    for category_count in counts:
        p = category_count.cast(pl.Float64) / n
        terms.append(pl.when(p > 0).then(-p * p.log()).otherwise(0.0))
    # An explicit left fold: pl.sum_horizontal adds its inputs in an order that varies from
    # run to run, which changed the last bits of the entropy between identical runs.
    return pl.when(n > 0).then(functools.reduce(operator.add, terms))


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null where the denominator is not positive or is null."""
    return pl.when(denominator > 0).then(numerator / denominator)


def last_n(column: str, n: int, time_column: str = "ts") -> pl.Expr:
    """The column's values on the latest `n` rows (ties in time broken by value: deterministic)."""
    return pl.col(column).sort_by(time_column, column).tail(n)


def window_label(days: int) -> str:
    return f"{days}d"


def fill_for(name: str, value: float, since_prev_loan: bool = False) -> pl.Expr:
    """The value of feature `name` for an application without rows: `value`, except that a
    "since the previous loan" feature stays null when there was no previous loan."""
    filled = pl.col(name).fill_null(value)
    return only_after_a_loan(filled) if since_prev_loan else filled


def only_after_a_loan(value: pl.Expr) -> pl.Expr:
    """`value` where the applicant had a previous loan with us, null otherwise."""
    return pl.when(pl.col("prev_loan_at").is_not_null()).then(value)


def windowed(
    family: str, specs: Sequence[Aggregate], windows: Sequence[int], time_column: str = "ts"
) -> tuple[list[FeatureDef], list[pl.Expr], list[pl.Expr]]:
    """Expand aggregates over windows: definitions, aggregation expressions and fill expressions.

    Every aggregate gets one feature per window in days; one with ``since_prev_loan`` also gets
    ``<stem>_since_prev_loan`` over the rows since the applicant's previous loan with us was
    disbursed (within the longest window; null when there was none).
    """
    defs: list[FeatureDef] = []
    exprs: list[pl.Expr] = []
    fills: list[pl.Expr] = []
    since_loan = pl.col(time_column) >= pl.col("prev_loan_at")
    for spec in specs:
        masks = [
            (window_label(days), pl.col(time_column) >= pl.col("cutoff") - pl.duration(days=days))
            for days in windows
        ]
        if spec.since_prev_loan:
            masks.append((SINCE_PREV_LOAN, since_loan.fill_null(False)))
        for label, in_window in masks:
            name = f"{spec.stem}_{label}"
            defs.append(FeatureDef(name, family, label, spec.description, *spec.bounds))
            exprs.append(spec.agg(in_window).alias(name))
            if spec.fill is not None:
                fills.append(fill_for(name, spec.fill, label == SINCE_PREV_LOAN))
    return defs, exprs, fills


def events_before_cutoff(
    spine: pl.LazyFrame,
    events: pl.LazyFrame,
    horizon_days: int | None,
    time_column: str = "ts",
    keys: Sequence[str] = SPINE_KEYS,
) -> pl.LazyFrame:
    """Each application (its `keys` columns) joined to its user's events in
    [cutoff - horizon, cutoff)."""
    joined = with_application_key(spine).select(keys).join(events, on="user_id", how="inner")
    before = pl.col(time_column) < pl.col("cutoff")
    if horizon_days is not None:
        before &= pl.col(time_column) >= pl.col("cutoff") - pl.duration(days=horizon_days)
    return joined.filter(before)


def event_span(spine: pl.LazyFrame, horizon_days: int) -> tuple[datetime, datetime] | None:
    """The instants that rows of :func:`events_before_cutoff` over `horizon_days` can hold:
    from the earliest cut-off less the horizon to the latest cut-off (None without
    applications). Reads the spine's cut-offs."""
    cutoff = pl.col("cutoff")
    first, last = spine.select(cutoff.min().alias("first"), cutoff.max()).collect().row(0)
    if first is None:
        return None
    return first - timedelta(days=horizon_days), last


def with_application_key(spine: pl.LazyFrame) -> pl.LazyFrame:
    """The spine with its integer key column (the row number), if it has none yet. Every use
    of the key must read the same spine rows in the same order: a materialised spine, or a
    lazy one whose order is total (``features.build.application_spine``)."""
    if APPLICATION in spine.collect_schema().names():
        return spine
    return spine.with_row_index(APPLICATION)


def with_states(
    spine: pl.LazyFrame, states: pl.LazyFrame, keep_null: Sequence[str] = ()
) -> pl.LazyFrame:
    """Every spine application (key, id, cut-off, previous loan) with its windowed states. An
    application without rows has counts and sums of 0; the states in `keep_null` (latest
    times, maxima, means) stay null."""
    names = states.collect_schema().names()
    filled = [c for c in names if c != APPLICATION and c not in keep_null]
    return (
        with_application_key(spine)
        .select(APPLICATION, "application_id", "cutoff", "prev_loan_at")
        .join(states, on=APPLICATION, how="left")
        .with_columns(pl.col(filled).fill_null(0))
    )


def per_application(
    spine: pl.LazyFrame,
    rows: pl.LazyFrame,
    exprs: Sequence[pl.Expr],
    fills: Sequence[pl.Expr] | dict[str, float] = (),
    derived: Sequence[AcrossFamilies] = (),
) -> pl.LazyFrame:
    """Aggregate joined rows per application; every spine application gets a row.

    `fills` give the value of applications without rows (a mapping reads as name -> value);
    `derived` features are computed last, from the filled aggregates.
    """
    if isinstance(fills, dict):
        fills = [fill_for(name, value) for name, value in fills.items()]
    aggregated = rows.group_by(APPLICATION).agg(exprs)
    frame = (
        with_application_key(spine)
        .select(APPLICATION, "application_id", "prev_loan_at")
        .join(aggregated, on=APPLICATION, how="left")
        .with_columns(fills)
    )
    if derived:
        frame = frame.with_columns(d.expr.alias(d.name) for d in derived)
    return frame.drop(APPLICATION, "prev_loan_at")


def days_between(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    """Fractional days from `earlier` to `later`."""
    return (later - earlier).dt.total_seconds(fractional=True) / 86_400.0


def window_bucket(windows: Sequence[int], time_column: str = "ts") -> pl.Expr:
    """How many of the windows (any order) do not contain the row: a row lies in the i-th
    shortest window exactly when its bucket is at most i.

    Aggregating per (application, bucket) once and adding the buckets up afterwards costs one
    update per state and row, where one masked aggregate per window costs one per window.
    """
    outside = [(~in_window(days, time_column)).cast(pl.UInt8) for days in sorted(windows)]
    return functools.reduce(operator.add, outside)


BUCKET_KEY = "_application_bucket"


def by_bucket(rows: pl.LazyFrame, windows: Sequence[int], aggs: Sequence[pl.Expr]) -> pl.LazyFrame:
    """`aggs` per (application, window bucket) of the joined rows, with ``APPLICATION`` and
    ``BUCKET`` as they were.

    The pair is grouped as one integer (application x buckets + bucket): the streaming
    group-by hashes a single integer key faster than it row-encodes two columns
    (``tests/bench/RESULTS.md``, feature build history)."""
    buckets = len(windows) + 1  # a row outside every window would have bucket len(windows)
    key = pl.col(APPLICATION).cast(pl.UInt64) * buckets + pl.col(BUCKET)
    return (
        rows.with_columns(key.alias(BUCKET_KEY))
        .group_by(BUCKET_KEY)
        .agg(aggs)
        .select(
            (pl.col(BUCKET_KEY) // buckets).cast(pl.get_index_type()).alias(APPLICATION),
            (pl.col(BUCKET_KEY) % buckets).cast(pl.UInt8).alias(BUCKET),
            pl.exclude(BUCKET_KEY),
        )
    )


def bucket_totals(states: Sequence[str], windows: Sequence[int]) -> list[pl.Expr]:
    """``<state>@<window>``: each summed state added up over the buckets inside each window
    (rows of partial states per application and :func:`window_bucket`, in ``BUCKET``)."""
    return [
        pl.when(pl.col(BUCKET) <= i).then(pl.col(state)).sum().alias(f"{state}@{window_label(d)}")
        for i, d in enumerate(sorted(windows))
        for state in states
    ]


DAY_BITS = 64


def day_bit_words(horizon: int) -> int:
    """UInt64 words that hold one bit per local day offset 0..horizon + 1 (a window of N days
    of 24 hours can touch N + 1 local days when a daylight-saving switch falls in it)."""
    return (horizon + 1) // DAY_BITS + 1


def day_bits(offset: pl.Expr, horizon: int) -> list[pl.Expr]:
    """The day `offset` (local days before the cut-off's day) as a single bit, one expression
    per word: their bitwise-or over rows is the set of days with a row, a reducible
    aggregate, where a distinct count of days is not."""
    words = []
    for word in range(day_bit_words(horizon)):
        low = word * DAY_BITS
        bit = pl.lit(2, pl.UInt64).pow((offset - low).cast(pl.UInt32))
        words.append(pl.when((offset >= low) & (offset < low + DAY_BITS)).then(bit))
    return words


def count_bits(words: Sequence[pl.Expr]) -> pl.Expr:
    """The number of days in a set held by :func:`day_bits` words."""
    return functools.reduce(operator.add, [w.bitwise_count_ones().cast(pl.UInt32) for w in words])


def in_window(days: int, time_column: str = "ts") -> pl.Expr:
    return pl.col(time_column) >= pl.col("cutoff") - pl.duration(days=days)

"""The feature engine: an event family is declared once, as a feature view, and one query
computes any family for any spine.

A declaration (:class:`EventFamily`) names

- its **source**: the table, the columns read, an optional preparation of the events
  (:class:`Source`);
- **row values**, computed once per joined row (a value several states read);
- named **states**, each with its combine rule: :class:`Count`, :class:`Sum`, :class:`Max`,
  :class:`Min`, :class:`DaySet` (distinct days or months, as bits), :class:`MonthlySlope` (the slope
  of the sums per month), :class:`Distinct` (distinct
  values of a column, optionally only those meeting conditions), :class:`FirstSeen` (values used
  for the first time ever), :class:`LastN` and :class:`Exceeding` (second-pass states over the
  window's rows);
- **features** over the states: :class:`PerWindow` (every window, and the time since the
  previous loan where asked), :class:`Single` (one value), :class:`Derived` (from the family's
  other features).

Names, windows and descriptions are format strings over the settings (``{night_end_hour}``,
``{horizon}`` for the longest window in days, ``{short}`` and ``{long}`` for the trend windows).
A declaration is checked when it is made (:meth:`EventFamily.__post_init__`): a feature that
reads a state the family does not build, a duplicate name, an empty description or a bound
that cannot hold raises :class:`DeclarationError` at import.

The query (:func:`build_family`), the same for every family and spine, in two passes so that
the streaming group-by only ever reduces, however many rows are joined:

1. each spine row is joined to its user's events in [cut-off - longest window, cut-off) and
   each joined row gets its window bucket (:func:`features.base.window_bucket`); the partial
   states are aggregated per (row, bucket) (:func:`features.base.by_bucket`), the distinct
   states per (row, value);
2. the buckets are combined into every window (``<state>@<window>``) by each state's rule; the
   second-pass states read the first pass's windowed states; every feature is an expression
   over the windowed states, joined back to every spine row (a row without events gets counts
   of 0 and null extremes).
"""

from __future__ import annotations

import functools
import hashlib
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import polars as pl

from data.asof import local_clock, local_date
from data.config import LabelSettings
from features.base import (
    APPLICATION,
    BUCKET,
    FIXED_POINT,
    SINCE_PREV_LOAN,
    UNBOUNDED,
    FeatureDef,
    FeatureSettings,
    bucket_totals,
    by_bucket,
    count_bits,
    day_bit_words,
    day_bits,
    days_between,
    event_span,
    events_before_cutoff,
    last_n,
    only_after_a_loan,
    window_bucket,
    window_label,
    with_application_key,
    with_states,
)

LOCAL = "_local"  # a joined row's local wall-clock time (Source.local_clock)
CUTOFF_DAY = "cutoff_day"  # the spine row's local day (Source.cutoff_day)
SINCE = "_since"  # whether a joined row is at or after the previous loan's disbursal
Bounds = tuple[float | str | None, float | str | None]  # a text is a setting: "{horizon}"


class DeclarationError(ValueError):
    """A family declaration that cannot be built: raised when it is made."""


@dataclass(frozen=True)
class Context:
    """What a declaration's names, descriptions and expressions may read: the settings, the
    windows (sorted) and the time zone."""

    settings: FeatureSettings
    timezone: str = "UTC"
    labels: LabelSettings = field(default_factory=LabelSettings)

    @property
    def windows(self) -> list[int]:
        return sorted(self.settings.windows_days)

    @property
    def horizon(self) -> int:
        return self.windows[-1]

    @property
    def window_labels(self) -> list[str]:
        return [window_label(days) for days in self.windows]

    def format(self, text: str) -> str:
        """`text` with its ``{field}`` placeholders filled from the settings."""
        short, long = self.settings.trend_days
        fields = {**self.settings.model_dump(), "horizon": self.horizon}
        return text.format(**fields, short=short, long=long)


Value = pl.Expr | Callable[[Context], pl.Expr]


def resolve(value: Value | None, ctx: Context) -> pl.Expr | None:
    return value(ctx) if callable(value) else value


# ---------------------------------------------------------------------------------------------
# Source


@dataclass(frozen=True)
class Source:
    """The events a family reads: `table`'s `columns` (``user_id`` and `time` among them),
    `prepare`d, with the joined rows' local wall-clock time (``LOCAL``) and the spine row's
    local day (``CUTOFF_DAY``) where asked. `prepare` sees only the events some spine row's
    longest window can hold (a neighbour it reads outside them is in no window either)."""

    table: str
    columns: tuple[str, ...]
    time: str = "ts"
    prepare: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None
    local_clock: bool = False
    cutoff_day: bool = False


# ---------------------------------------------------------------------------------------------
# States


@dataclass(frozen=True)
class Bucketed(ABC):
    """A state aggregated per (row, window bucket) and combined over the buckets of each window
    (`windowed`) or over all of them (the longest window). With `since_prev_loan`, also over
    the rows since the previous loan (``<name>@since_prev_loan``)."""

    name: str
    windowed: bool = True
    since_prev_loan: bool = False
    fill: ClassVar[float | None] = 0

    def row_values(self, ctx: Context) -> list[pl.Expr]:
        return []

    @abstractmethod
    def partial(self, ctx: Context) -> list[pl.Expr]:
        """The aggregates of one (row, window bucket) group."""

    def combine(self, ctx: Context) -> list[pl.Expr]:
        if self.windowed:
            combined = bucket_totals([self.name], ctx.windows)
        else:
            combined = [pl.col(self.name).sum()]
        if self.since_prev_loan:
            combined.append(pl.col(f"{self.name}@{SINCE_PREV_LOAN}").sum())
        return combined


@dataclass(frozen=True)
class Count(Bucketed):
    """Rows (where `when` holds; null reads as false)."""

    when: Value | None = None

    def partial(self, ctx: Context) -> list[pl.Expr]:
        when = resolve(self.when, ctx)
        counted = [(pl.len() if when is None else when.sum()).alias(self.name)]
        if self.since_prev_loan:
            since = pl.col(SINCE) if when is None else pl.col(SINCE) & when
            counted.append(since.sum().alias(f"{self.name}@{SINCE_PREV_LOAN}"))
        return counted


@dataclass(frozen=True)
class Sum(Bucketed):
    """Sum of an integer-valued expression (take floats through ``features.base.fixed_point``:
    integer sums are the same in any order of the rows)."""

    value: Value = field(default=None)  # type: ignore[assignment]

    def partial(self, ctx: Context) -> list[pl.Expr]:
        value = resolve(self.value, ctx)
        sums = [value.sum().alias(self.name)]
        if self.since_prev_loan:
            since = pl.when(SINCE).then(value).sum()
            sums.append(since.alias(f"{self.name}@{SINCE_PREV_LOAN}"))
        return sums


@dataclass(frozen=True)
class Extreme(Bucketed):
    value: Value = field(default=None)  # type: ignore[assignment]
    fill: ClassVar[float | None] = None
    method: ClassVar[str] = "max"

    def partial(self, ctx: Context) -> list[pl.Expr]:
        return [getattr(resolve(self.value, ctx), self.method)().alias(self.name)]

    def combine(self, ctx: Context) -> list[pl.Expr]:
        if not self.windowed:
            return [getattr(pl.col(self.name), self.method)()]
        return [
            getattr(pl.when(pl.col(BUCKET) <= i).then(pl.col(self.name)), self.method)().alias(
                f"{self.name}@{label}"
            )
            for i, label in enumerate(ctx.window_labels)
        ]


@dataclass(frozen=True)
class Max(Extreme):
    """The largest value (null without rows)."""


@dataclass(frozen=True)
class Min(Extreme):
    """The smallest value (null without rows)."""

    method: ClassVar[str] = "min"


@dataclass(frozen=True)
class DaySet(Bucketed):
    """How many distinct offsets (local days, or months, before the cut-off's) the rows fall
    on: each row sets one bit (:func:`features.base.day_bits`), the bits are or-ed together.
    `size` is the largest offset."""

    offset: Value = field(default=None)  # type: ignore[assignment]
    size: Callable[[Context], int] = lambda ctx: ctx.horizon

    def words(self, ctx: Context) -> list[str]:
        return [f"_{self.name}_bits_{k}" for k in range(day_bit_words(self.size(ctx)))]

    def row_values(self, ctx: Context) -> list[pl.Expr]:
        bits = day_bits(resolve(self.offset, ctx), self.size(ctx))
        return [word.alias(name) for word, name in zip(bits, self.words(ctx), strict=True)]

    def partial(self, ctx: Context) -> list[pl.Expr]:
        return [pl.col(word).bitwise_or().alias(word[1:]) for word in self.words(ctx)]

    def combine(self, ctx: Context) -> list[pl.Expr]:
        words = [word[1:] for word in self.words(ctx)]
        if not self.windowed:
            return [
                count_bits([pl.col(w).bitwise_or().fill_null(0) for w in words]).alias(self.name)
            ]
        combined = []
        for i, label in enumerate(ctx.window_labels):
            inside = [
                pl.when(pl.col(BUCKET) <= i).then(pl.col(w)).bitwise_or().fill_null(0)
                for w in words
            ]
            combined.append(count_bits(inside).alias(f"{self.name}@{label}"))
        return combined


MONTH_DAYS = 30
NEWEST = "_newest"  # per (row, value): the lowest bucket its rows fall in


@dataclass(frozen=True)
class MonthlySlope(Bucketed):
    """The least-squares slope of the sums of an integer-valued expression per 30-day month,
    over the last ``slope_months`` months before the cut-off (read it with
    :meth:`States.slope`: per month, in the expression's unit).

    Kept as one exact integer sum: each row's value times its month's integer weight
    ``2x - (n - 1)`` (x = 0 for the oldest month of n), which is the slope's numerator times
    two; no per-month sums are held."""

    value: Value = field(default=None)  # type: ignore[assignment]
    time: str = "ts"
    windowed: bool = False

    def row_values(self, ctx: Context) -> list[pl.Expr]:
        months = ctx.settings.slope_months
        age = (pl.col("cutoff") - pl.col(self.time)).dt.total_microseconds()
        latest_first = age // (MONTH_DAYS * 86_400 * 10**6)
        weight = (months - 1) - 2 * latest_first
        return [pl.when(latest_first < months).then(weight).alias(f"_{self.name}_weight")]

    def partial(self, ctx: Context) -> list[pl.Expr]:
        weighted = resolve(self.value, ctx).cast(pl.Int128) * pl.col(f"_{self.name}_weight")
        return [weighted.sum().alias(self.name)]

    def combine(self, ctx: Context) -> list[pl.Expr]:
        return [pl.col(self.name).sum()]

    @staticmethod
    def per_unit(ctx: Context) -> float:
        """What the weighted sum is multiplied by to give the slope: with n months, the
        slope is sum((x - mean) * y) / sum((x - mean)^2) = weighted / 2 * 12 / (n (n^2 - 1))."""
        n = ctx.settings.slope_months
        return 6 / (n * (n * n - 1))


def condition_name(condition: pl.Expr) -> str:
    """A column name for the lowest bucket of a condition's rows, the same for equal ones."""
    return "_lowest_" + hashlib.sha1(str(condition).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Distinct:
    """Distinct non-null values of `column` per window. With conditions, a value counts in a
    window when, among its rows in that window, each condition of `all_of` holds on some row
    and no condition of `none_of` holds on any."""

    name: str
    column: str
    all_of: tuple[Value, ...] = ()
    none_of: tuple[Value, ...] = ()
    fill: ClassVar[float | None] = 0

    @property
    def plain(self) -> bool:
        """Without conditions: counted from the lowest bucket of its values (``NEWEST``)."""
        return not self.all_of and not self.none_of

    def lowest_buckets(self, ctx: Context) -> tuple[list[pl.Expr], list[pl.Expr]]:
        """Per (row, value): the lowest bucket of each condition's rows (what must, what must
        not be in the window)."""
        every = [resolve(c, ctx) for c in self.all_of] or [pl.lit(True)]
        exclude = [resolve(c, ctx) for c in self.none_of]

        def lowest(conditions: list[pl.Expr]) -> list[pl.Expr]:
            # Named by the condition: states of a column that share one share the aggregate.
            return [
                pl.when(c).then(pl.col(BUCKET)).min().alias(condition_name(c)) for c in conditions
            ]

        return lowest(every), lowest(exclude)

    def combine(self, ctx: Context, several: bool = False) -> list[pl.Expr]:
        """Per row and window, from its groups per value (per combination of values of
        `several` columns, where a value can stand in several groups)."""
        if self.plain and not several:
            return [
                (pl.col(NEWEST) <= i).sum().alias(f"{self.name}@{label}")
                for i, label in enumerate(ctx.window_labels)
            ]
        if self.plain:
            value = pl.col(self.column)
            return [
                pl.when(pl.col(NEWEST) <= i)
                .then(value)
                .drop_nulls()
                .n_unique()
                .alias(f"{self.name}@{label}")
                for i, label in enumerate(ctx.window_labels)
            ]
        every, exclude = (
            [pl.col(e.meta.output_name()) for e in part] for part in self.lowest_buckets(ctx)
        )
        counts = []
        for i, label in enumerate(ctx.window_labels):
            counted = functools.reduce(operator.and_, [(c <= i).fill_null(False) for c in every])
            for c in exclude:
                counted = counted & ~(c <= i).fill_null(False)
            counts.append(counted.sum().alias(f"{self.name}@{label}"))
        return counts


@dataclass(frozen=True)
class FirstSeen:
    """Values of `column` used for the first time ever (before the cut-off) in each window:
    their oldest bucket is in the window and the user had not used them before the longest
    window. Reads the source's events before every row's longest window."""

    name: str
    column: str
    fill: ClassVar[float | None] = 0

    @property
    def oldest(self) -> str:
        return f"_{self.name}_oldest"

    @property
    def earlier(self) -> str:
        return f"_{self.name}_earlier"

    def combine(self, ctx: Context) -> list[pl.Expr]:
        return [
            (pl.col(self.oldest) <= i).sum().alias(f"{self.name}@{label}")
            for i, label in enumerate(ctx.window_labels)
        ]


@dataclass(frozen=True)
class LastN:
    """`reduce` of `column` over the latest `n` rows in the longest window (ties in time broken
    by value). Only the buckets of the shortest window that holds `n` rows by the `count`
    state are sorted."""

    name: str
    column: str
    n: Callable[[Context], int]
    count: str
    reduce: Callable[[pl.Expr], pl.Expr] = pl.Expr.mean
    fill: ClassVar[float | None] = None

    def reach(self, ctx: Context) -> pl.Expr:
        n = self.n(ctx)
        short_of_n = [
            (pl.col(f"{self.count}@{label}") < n).cast(pl.UInt8) for label in ctx.window_labels[:-1]
        ]
        return pl.sum_horizontal(short_of_n) if short_of_n else pl.lit(0)


@dataclass(frozen=True)
class Exceeding:
    """Rows per window whose `column` is above `limit`, an expression over the first pass's
    windowed states (:class:`States` at the longest window)."""

    name: str
    column: str
    limit: Callable[[States], pl.Expr]
    fill: ClassVar[float | None] = 0


AnyState = (
    Count | Sum | Max | Min | DaySet | MonthlySlope | Distinct | FirstSeen | LastN | Exceeding
)
SECOND_PASS = (LastN, Exceeding)


# ---------------------------------------------------------------------------------------------
# Features


class States:
    """What a feature's value reads: ``s(name)``, the state at the feature's window (a state
    combined over all buckets reads as it is), and ``s.ctx``. Records every name read, so that
    a declaration is checked without data."""

    def __init__(self, ctx: Context, windowed: set[str], label: str) -> None:
        self.ctx, self.windowed, self.label, self.read = ctx, windowed, label, set()

    def __call__(self, name: str) -> pl.Expr:
        self.read.add(name)
        return pl.col(f"{name}@{self.label}" if name in self.windowed else name)

    def slope(self, name: str) -> pl.Expr:
        """A :class:`MonthlySlope` state as the slope per month."""
        return self(name).cast(pl.Float64) * MonthlySlope.per_unit(self.ctx)


class Features:
    """What a derived feature reads: ``f(name)``, another feature of the family (a formatted
    name), ``f.window`` (the window label of a per-window derived feature) and ``f.ctx``."""

    def __init__(self, ctx: Context, window: str = "") -> None:
        self.ctx, self.window, self.read = ctx, window, set()

    def __call__(self, name: str) -> pl.Expr:
        name = self.ctx.format(name)
        self.read.add(name)
        return pl.col(name)


StateValue = Callable[[States], pl.Expr]


@dataclass(frozen=True)
class PerWindow:
    """``<stem>_<window>`` for every window (or only the longest, `longest_only`), and
    ``<stem>_since_prev_loan`` where asked (null without a previous loan)."""

    stem: str
    description: str
    value: Callable[[States], pl.Expr]
    bounds: Bounds
    since_prev_loan: bool = False
    longest_only: bool = False

    def expand(self, ctx: Context) -> list[tuple[str, str]]:
        labels = ctx.window_labels[-1:] if self.longest_only else ctx.window_labels
        labels = [*labels, SINCE_PREV_LOAN] if self.since_prev_loan else labels
        return [(f"{ctx.format(self.stem)}_{label}", label) for label in labels]

    def expr(self, states: States, label: str) -> pl.Expr:
        value = self.value(states)
        return only_after_a_loan(value) if label == SINCE_PREV_LOAN else value


@dataclass(frozen=True)
class Single:
    """One feature; its states read at the longest window."""

    name: str
    window: str
    description: str
    value: Callable[[States], pl.Expr]
    bounds: Bounds

    def expand(self, ctx: Context) -> list[tuple[str, str]]:
        return [(ctx.format(self.name), ctx.format(self.window))]

    def expr(self, states: States, label: str) -> pl.Expr:
        return self.value(states)


def bounds(spec: Feature, ctx: Context) -> tuple[float | None, float | None]:
    """The spec's bounds, a setting's value where a bound names one."""
    return tuple(float(ctx.format(b)) if isinstance(b, str) else b for b in spec.bounds)


def recency(name: str, state: str, description: str) -> Single:
    """Days from the latest time in `state` to the cut-off (0 to the longest window)."""
    return Single(
        name,
        "{horizon}d",
        description,
        lambda s: days_between(pl.col("cutoff"), s(state)),
        (0.0, "{horizon}"),
    )


@dataclass(frozen=True)
class Derived:
    """A feature computed from the family's other features (a ratio, a trend); with
    `per_window`, one per window, named ``<name>_<window>``."""

    name: str
    window: str
    description: str
    value: Callable[[Features], pl.Expr]
    bounds: Bounds
    per_window: bool = False

    def expand(self, ctx: Context) -> list[tuple[str, str]]:
        if self.per_window:
            return [(f"{ctx.format(self.name)}_{label}", label) for label in ctx.window_labels]
        return [(ctx.format(self.name), ctx.format(self.window))]

    def expr(self, ctx: Context, label: str) -> pl.Expr:
        return self.value(Features(ctx, label if self.per_window else ""))


def trend(stem: str, what: str) -> Derived:
    """Per-day `what` over the short trend window relative to the long one (1 = steady)."""

    def value(f: Features) -> pl.Expr:
        short, long = f.ctx.settings.trend_days
        rate_short = f(f"{stem}_{short}d") / short
        rate_long = f(f"{stem}_{long}d") / long
        return pl.when(rate_long > 0).then(rate_short / rate_long)

    return Derived(
        f"{stem}_trend_{{short}}d_{{long}}d",
        "{short}d vs {long}d",
        f"Per-day {what} over the last {{short}} days relative to the last {{long}} days "
        "(1 = steady; null without any in the long window)",
        value,
        (0.0, None),
    )


def monthly_slope(stem: str, state: str, what: str, scale: float = FIXED_POINT) -> Single:
    """``<stem>_slope_<N>m``: the slope of a :class:`MonthlySlope` state, per month (divided by
    `scale`: its values are millionths by default)."""
    return Single(
        f"{stem}_slope_{{slope_months}}m",
        "last {slope_months} months",
        f"Least-squares slope of {what} per 30-day month over the last {{slope_months}} months "
        "(CNY per month; 0 = flat, negative = falling)",
        lambda s: s.slope(state) / scale,
        UNBOUNDED,
    )


Feature = PerWindow | Single | Derived


# ---------------------------------------------------------------------------------------------
# The family


DEFAULT_CONTEXT = Context(FeatureSettings())


@dataclass(frozen=True)
class EventFamily:
    """A family of features over one event table, as the engine reads it.

    `state_rows` restricts the bucketed states to some of the joined rows (distinct and
    second-pass states see them all). `views` are further queries of the family that are not
    windowed states of its events (a lookup over all history, an as-of join): each takes
    ``(tables, spine, ctx)`` and returns definitions and a frame keyed by ``application_id``.
    """

    name: str
    source: Source
    states: tuple[AnyState, ...]
    features: tuple[Feature, ...]
    row_values: Callable[[Context], list[pl.Expr]] = lambda ctx: []
    state_rows: pl.Expr | None = None
    views: tuple[View, ...] = ()

    def __post_init__(self) -> None:
        check(self, DEFAULT_CONTEXT)

    def definitions(self, ctx: Context) -> list[FeatureDef]:
        return [
            FeatureDef(name, self.name, window, ctx.format(spec.description), *bounds(spec, ctx))
            for spec in self.features
            for name, window in spec.expand(ctx)
        ]

    def build(
        self, tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, ctx: Context
    ) -> tuple[list[FeatureDef], pl.LazyFrame]:
        """Definitions and one lazy frame over the whole `spine`."""
        return self.with_views(tables, spine, build_family(self, tables, spine, ctx), ctx)

    def collect(
        self,
        tables: dict[str, pl.LazyFrame],
        spine: pl.DataFrame,
        ctx: Context,
        slices: Sequence[pl.DataFrame],
    ) -> tuple[list[FeatureDef], pl.DataFrame]:
        """Definitions and the table over `spine`: the windowed states built slice by slice
        (memory grows with a slice), the views over the whole spine (each reads all history
        once)."""
        parts = [collect(build_family(self, tables, part.lazy(), ctx)) for part in slices]
        defs, frame = self.with_views(tables, spine.lazy(), pl.concat(parts).lazy(), ctx)
        return defs, collect(frame)

    def with_views(
        self,
        tables: dict[str, pl.LazyFrame],
        spine: pl.LazyFrame,
        frame: pl.LazyFrame,
        ctx: Context,
    ) -> tuple[list[FeatureDef], pl.LazyFrame]:
        defs = self.definitions(ctx)
        for view in self.views:
            view_defs, view_frame = view(tables, spine, ctx)
            defs += view_defs
            frame = frame.join(collect(view_frame).lazy(), on="application_id", how="left")
        return defs, frame


View = Callable[
    [dict[str, pl.LazyFrame], pl.LazyFrame, Context], tuple[list[FeatureDef], pl.LazyFrame]
]


@dataclass(frozen=True)
class QueryFamily:
    """A family that is not a windowed view of events (the application's profile, our own
    loans' history): its own query, `query(tables, spine, ctx)`."""

    name: str
    query: View

    def build(
        self, tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, ctx: Context
    ) -> tuple[list[FeatureDef], pl.LazyFrame]:
        return self.query(tables, spine, ctx)

    def collect(
        self,
        tables: dict[str, pl.LazyFrame],
        spine: pl.DataFrame,
        ctx: Context,
        slices: Sequence[pl.DataFrame],
    ) -> tuple[list[FeatureDef], pl.DataFrame]:
        """Definitions and the table over the whole `spine` (these queries are small)."""
        defs, frame = self.build(tables, spine.lazy(), ctx)
        return defs, collect(frame)


def collect(frame: pl.LazyFrame) -> pl.DataFrame:
    """`frame` by the streaming engine, without common-subplan elimination: a query that
    aggregates its rows in several ways would otherwise hold them all in memory, to save a
    second streaming pass over them."""
    no_cache = pl.QueryOptFlags(comm_subplan_elim=False)
    return frame.collect(engine="streaming", optimizations=no_cache)


Family = EventFamily | QueryFamily


# ---------------------------------------------------------------------------------------------
# Checks


def check(family: EventFamily, ctx: Context) -> None:
    """Raise DeclarationError for what would only fail at build time, or build wrong."""

    def fail(message: str) -> None:
        raise DeclarationError(f"feature family {family.name!r}: {message}")

    state_names = [state.name for state in family.states]
    for name in [n for n in state_names if state_names.count(n) > 1][:1]:
        fail(f"state {name!r} is declared twice")
    windowed = windowed_states(family)
    counts = {s.name for s in family.states if isinstance(s, Count) and s.windowed}
    for state in family.states:
        if isinstance(state, LastN) and state.count not in counts:
            fail(f"state {state.name!r} counts rows with {state.count!r}, not a windowed Count")
    names: list[str] = []
    built: set[str] = set()
    for spec in family.features:
        try:
            description = ctx.format(spec.description)
            expanded = spec.expand(ctx)
        except (KeyError, IndexError, ValueError) as error:
            fail(f"feature {spec_name(spec)!r}: unknown setting {error} in its name or text")
        if not description.strip():
            fail(f"feature {spec_name(spec)!r} has no description")
        low, high = bounds(spec, ctx)
        if low is not None and high is not None and low > high:
            fail(f"feature {spec_name(spec)!r}: lower bound {low} above upper bound {high}")
        for name, label in expanded:
            read = reads(spec, ctx, windowed, label)
            missing = read - (built if isinstance(spec, Derived) else set(state_names))
            if missing:
                kind = "features" if isinstance(spec, Derived) else "states"
                fail(f"feature {name!r} reads {kind} the family does not build: {sorted(missing)}")
            names.append(name)
        built.update(name for name, _ in expanded)
    for name in [n for n in names if names.count(n) > 1][:1]:
        fail(f"feature {name!r} is declared twice")


def spec_name(spec: Feature) -> str:
    return spec.stem if isinstance(spec, PerWindow) else spec.name


def reads(spec: Feature, ctx: Context, windowed: set[str], label: str) -> set[str]:
    if isinstance(spec, Derived):
        features = Features(ctx, label if spec.per_window else "")
        spec.value(features)
        return features.read
    states = States(ctx, windowed, label if isinstance(spec, PerWindow) else ctx.window_labels[-1])
    spec.value(states)
    return states.read


def windowed_states(family: EventFamily) -> set[str]:
    """States read per window (``<state>@<window>``); the others read as they are."""
    return {
        s.name
        for s in family.states
        if isinstance(s, Distinct | FirstSeen | Exceeding) or getattr(s, "windowed", False)
    }


def check_unique(families: Sequence[Family], ctx: Context = DEFAULT_CONTEXT) -> None:
    """Raise DeclarationError if two event families declare the same feature name."""
    seen: dict[str, str] = {}
    for family in families:
        if not isinstance(family, EventFamily):
            continue
        for definition in family.definitions(ctx):
            if definition.name in seen:
                raise DeclarationError(
                    f"feature {definition.name!r} is declared by families "
                    f"{seen[definition.name]!r} and {family.name!r}"
                )
            seen[definition.name] = family.name


# ---------------------------------------------------------------------------------------------
# The query


def build_family(
    family: EventFamily, tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, ctx: Context
) -> pl.LazyFrame:
    """The family's features for every spine row: ``application_id`` and one column per
    feature, in declaration order."""
    keyed = with_application_key(spine)
    if family.source.cutoff_day:
        keyed = keyed.with_columns(local_date("cutoff", ctx.timezone).alias(CUTOFF_DAY))
    rows = joined_rows(family.source, tables, keyed, ctx)
    queries = first_pass(family, rows, keyed, tables, ctx)
    # One streaming pass over the joined rows feeds every query (their common plan is shared).
    collected = dict(
        zip(queries, pl.collect_all(queries.values(), engine="streaming"), strict=True)
    )
    states = combine(family, {k: v.lazy() for k, v in collected.items()}, ctx)
    narrow = collected[NARROW].lazy() if NARROW in collected else None
    states = second_pass(family, states, narrow, ctx)
    return features_frame(family, keyed, states, ctx)


def joined_rows(
    source: Source, tables: dict[str, pl.LazyFrame], keyed: pl.LazyFrame, ctx: Context
) -> pl.LazyFrame:
    """Each spine row's events within its longest window, with their window bucket. Only the
    events between the earliest cut-off less the longest window and the latest cut-off are
    read, and `prepare`d."""
    events = tables[source.table].select(source.columns)
    span = event_span(keyed, ctx.horizon)
    if span is not None:
        events = events.filter(pl.col(source.time).is_between(*span, closed="left"))
    if source.prepare is not None:
        events = source.prepare(events)
    keys = [APPLICATION, "user_id", "cutoff", "prev_loan_at"]
    keys += [CUTOFF_DAY] if source.cutoff_day else []
    rows = events_before_cutoff(keyed, events, ctx.horizon, source.time, keys=keys)
    return rows.with_columns(window_bucket(ctx.windows, source.time).alias(BUCKET))


PARTIAL = "partial"
NARROW = "narrow"  # the joined rows' key, bucket, time and the columns second-pass states read


def first_pass(
    family: EventFamily,
    rows: pl.LazyFrame,
    keyed: pl.LazyFrame,
    tables: dict[str, pl.LazyFrame],
    ctx: Context,
) -> dict[str, pl.LazyFrame]:
    """The queries over the joined rows, collected together: the partial states per (row,
    bucket) (``PARTIAL``); per group of value columns, its distinct and first-seen states per
    row and window (:func:`distinct_counts`); a narrow copy of the joined rows for the second
    pass (``NARROW``)."""
    bucketed = [s for s in family.states if isinstance(s, Bucketed)]
    values = [*family.row_values(ctx), *(v for s in bucketed for v in s.row_values(ctx))]
    if any(s.since_prev_loan for s in bucketed):
        since = pl.col(family.source.time) >= pl.col("prev_loan_at")
        values.append(since.fill_null(False).alias(SINCE))
    counted = rows if family.state_rows is None else rows.filter(family.state_rows)
    if family.source.local_clock:  # computed once per row, for the values and states it feeds
        span = event_span(keyed, ctx.horizon)
        counted = counted.with_columns(
            local_clock(family.source.time, ctx.timezone, span).alias(LOCAL)
        )
    aggs = [agg for s in bucketed for agg in s.partial(ctx)]
    queries = {PARTIAL: by_bucket(counted.with_columns(values), ctx.windows, aggs)}
    for columns, column_aggs in value_groups(family, ctx).items():
        queries[group_key(columns)] = distinct_counts(
            family, columns, column_aggs, rows, keyed, tables, ctx
        )
    second = sorted({s.column for s in family.states if isinstance(s, SECOND_PASS)})
    if second:
        queries[NARROW] = rows.select(APPLICATION, BUCKET, family.source.time, *second)
    return queries


def distinct_counts(
    family: EventFamily,
    columns: tuple[str, ...],
    aggs: list[pl.Expr],
    rows: pl.LazyFrame,
    keyed: pl.LazyFrame,
    tables: dict[str, pl.LazyFrame],
    ctx: Context,
) -> pl.LazyFrame:
    """Per spine row: the distinct and first-seen states of `columns` per window, through one
    group-by per (row, values) whose aggregates are `aggs`, streamed into the per-row counts."""
    values = rows.group_by(APPLICATION, *columns).agg(aggs)
    if len(columns) == 1:  # Several columns: a null counts in none of them (``Distinct``).
        values = values.with_columns(no_buckets_for_null(columns[0], aggs))
    states = [
        s for s in family.states if isinstance(s, Distinct | FirstSeen) and s.column in columns
    ]
    for state in states:
        if isinstance(state, FirstSeen):
            earlier = earlier_uses(family.source, state, tables, keyed, ctx)
            values = new_only(values, earlier, keyed, state, ctx)
    several = len(columns) > 1
    counts = [
        s.combine(ctx, several) if isinstance(s, Distinct) else s.combine(ctx) for s in states
    ]
    return values.group_by(APPLICATION).agg(a for combined in counts for a in combined)


def no_buckets_for_null(column: str, aggs: list[pl.Expr]) -> list[pl.Expr]:
    """The aggregates of a (row, value) group cleared where the value is null, so that a null
    is no value and counts in no window. Clearing groups, not filtering rows: a filter on the
    joined rows keeps Polars from sharing them with the family's other queries (each then
    joins the events again)."""
    is_value = pl.col(column).is_not_null()
    names = [agg.meta.output_name() for agg in aggs]
    return [pl.when(is_value).then(pl.col(name)).alias(name) for name in names]


def value_groups(family: EventFamily, ctx: Context) -> dict[tuple[str, ...], list[pl.Expr]]:
    """The group-bys per (row, value) and their aggregates: one per column with conditioned
    distinct or first-seen states; one for all the columns that have only plain distinct
    states, which are then counted from the lowest bucket of each combination of values."""
    per_column: dict[str, list[pl.Expr]] = {}
    plain: list[str] = []
    for state in family.states:
        if isinstance(state, Distinct) and state.plain:
            plain.append(state.column)
        elif isinstance(state, Distinct):
            every, exclude = state.lowest_buckets(ctx)
            per_column.setdefault(state.column, []).extend([*every, *exclude])
        elif isinstance(state, FirstSeen):
            per_column.setdefault(state.column, []).append(pl.col(BUCKET).max().alias(state.oldest))
    groups = {
        (column,): list({a.meta.output_name(): a for a in aggs}.values())
        for column, aggs in per_column.items()
    }
    shared = tuple(dict.fromkeys(c for c in plain if c not in per_column))
    if shared:
        groups[shared] = [pl.col(BUCKET).min().alias(NEWEST)]
    for column in dict.fromkeys(c for c in plain if c in per_column):
        groups[(column,)].append(pl.col(BUCKET).min().alias(NEWEST))
    return groups


def group_key(columns: tuple[str, ...]) -> str:
    return "values:" + ",".join(columns)


def earlier_uses(
    source: Source,
    state: FirstSeen,
    tables: dict[str, pl.LazyFrame],
    keyed: pl.LazyFrame,
    ctx: Context,
) -> pl.LazyFrame:
    """Per (user, value): its first use among the events older than every spine row's longest
    window. Only whether a value was used before a row's window matters (the window's own rows
    say the rest), so newer events and other users are skipped."""
    users = keyed.select(pl.col("user_id").unique()).collect().to_series()
    before = keyed.select(pl.col("cutoff").max() - pl.duration(days=ctx.horizon)).collect().item()
    time = pl.col(source.time)
    older = pl.lit(False) if before is None else time < before  # None: an empty spine
    return (
        tables[source.table]
        .select("user_id", source.time, state.column)
        .filter(older, pl.col("user_id").is_in(users.implode()))
        .group_by("user_id", state.column)
        .agg(time.min().alias(state.earlier))
    )


def combine(family: EventFamily, collected: dict[str, pl.LazyFrame], ctx: Context) -> pl.LazyFrame:
    """Per spine row with events: every state combined per window (materialised: the second
    pass and the features read it several times)."""
    bucketed = [s for s in family.states if isinstance(s, Bucketed)]
    frame = (
        collected[PARTIAL]
        .group_by(APPLICATION)
        .agg(agg for s in bucketed for agg in s.combine(ctx))
    )
    for columns in value_groups(family, ctx):
        counts = collected[group_key(columns)]
        frame = frame.join(counts, on=APPLICATION, how="full", coalesce=True)
    return frame.collect().lazy()


def new_only(
    values: pl.LazyFrame,
    earlier: pl.LazyFrame,
    keyed: pl.LazyFrame,
    state: FirstSeen,
    ctx: Context,
) -> pl.LazyFrame:
    """The (row, value) groups with the oldest bucket of `state` cleared where the user had
    used the value before the row's longest window (so it is new in no window)."""
    before_window = pl.col("cutoff") - pl.duration(days=ctx.horizon)
    seen = (pl.col(state.earlier) < before_window).fill_null(False)
    return (
        values.join(keyed.select(APPLICATION, "user_id", "cutoff"), on=APPLICATION)
        .join(earlier, on=["user_id", state.column], how="left")
        .with_columns(pl.when(~seen).then(pl.col(state.oldest)).alias(state.oldest))
        .drop("user_id", "cutoff", state.earlier)
    )


def second_pass(
    family: EventFamily, states: pl.LazyFrame, narrow: pl.LazyFrame | None, ctx: Context
) -> pl.LazyFrame:
    """The states that read the first pass's windowed states, over the `narrow` copy of the
    joined rows the first pass kept (``NARROW``)."""
    later = [s for s in family.states if isinstance(s, SECOND_PASS)]
    if not later or narrow is None:
        return states
    windowed = windowed_states(family)
    longest = States(ctx, windowed, ctx.window_labels[-1])
    for state in later:
        if isinstance(state, Exceeding):
            limit = states.select(APPLICATION, _limit=state.limit(longest))
            above = (pl.col(state.column) > pl.col("_limit")).sum().alias(state.name)
            per_bucket = by_bucket(narrow.join(limit, on=APPLICATION), ctx.windows, [above])
            extra = per_bucket.group_by(APPLICATION).agg(bucket_totals([state.name], ctx.windows))
        else:
            reach = states.select(APPLICATION, _reach=state.reach(ctx))
            kept = narrow.join(reach, on=APPLICATION).filter(pl.col(BUCKET) <= pl.col("_reach"))
            latest = last_n(state.column, state.n(ctx), family.source.time)
            extra = kept.group_by(APPLICATION).agg(state.reduce(latest).alias(state.name))
        states = states.join(extra, on=APPLICATION, how="left")
    return states


def features_frame(
    family: EventFamily, keyed: pl.LazyFrame, states: pl.LazyFrame, ctx: Context
) -> pl.LazyFrame:
    """Every spine row with its states (filled for rows without events) and the features."""
    keep_null = [s.name for s in family.states if s.fill is None]
    names = states.collect_schema().names()
    keep = [n for n in names if n.split("@")[0] in keep_null]
    windowed = windowed_states(family)
    direct, derived, order = [], [], []
    for spec in family.features:
        for name, label in spec.expand(ctx):
            order.append(name)
            if isinstance(spec, Derived):
                derived.append(spec.expr(ctx, label).alias(name))
            else:
                states_at = States(
                    ctx, windowed, label if isinstance(spec, PerWindow) else ctx.window_labels[-1]
                )
                direct.append(spec.expr(states_at, label).alias(name))
    frame = with_states(keyed, states, keep_null=keep).with_columns(direct)
    if derived:
        frame = frame.with_columns(derived)
    return frame.select("application_id", *order)

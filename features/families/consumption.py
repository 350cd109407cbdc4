"""Merchant consumption: spend level and volatility, night-time and weekend habits, risky
categories, credit, spread over places and devices, large purchases and spending trends.

The family is computed in two passes over the purchases joined to the applications, so that
every aggregation over the joined rows, however many, is one the streaming group-by can
reduce as it goes (a distinct count, a comparison with the group's own mean or a sort
would make it hold every row):

1. *partial states* per (application, window bucket) (:func:`features.base.by_bucket`):
   counts (the boolean ones two to a word, :func:`features.base.packed_flags`), exact integer
   sums, maxima and the set of local days as bits (:func:`features.base.day_bits`); the
   newest bucket of each (application, city, device); a narrow copy of the joined rows
   (application, bucket, time, amount);
2. the buckets are added up into *windowed states* (``<state>@<window>``); distinct cities and
   devices are counted over the few (application, city, device) rows; large purchases (against
   the mean the first pass found) and the latest N purchases are taken from the narrow rows.

Every feature is then an expression over the windowed states.
"""

from __future__ import annotations

import polars as pl

from data.asof import local_clock, local_date
from data.contract import MERCHANT_CATEGORIES
from features.base import (
    APPLICATION,
    BUCKET,
    CENTS,
    FIXED_POINT,
    SHARE,
    SINCE_PREV_LOAN,
    Derived,
    FeatureDef,
    FeatureSettings,
    PerWindow,
    State,
    at,
    bucket_totals,
    by_bucket,
    cents,
    count_bits,
    day_bit_words,
    day_bits,
    days_between,
    entropy_of_counts,
    event_span,
    events_before_cutoff,
    expand,
    fixed_point,
    last_n,
    packed_flags,
    packed_sums,
    ratio,
    std_from_sums,
    trend,
    unpacked,
    window_bucket,
    window_label,
    with_application_key,
    with_states,
)

FAMILY = "consumption"
EVENT_COLUMNS = ("user_id", "ts", "amount", "merchant_category", "city", "device_id", "pay_method")
LOCAL = "_local"
PLACES = ("city", "device_id")


def category_state(category: str) -> str:
    return f"category_{category}"


def flags(settings: FeatureSettings) -> dict[str, pl.Expr]:
    """The purchases counted per group (state name -> whether a purchase counts)."""
    local = pl.col(LOCAL)
    return {
        "night": local.dt.hour() < settings.night_end_hour,
        "weekend": local.dt.weekday() >= 6,
        "credit": pl.col("pay_method") == "credit",
        **{category_state(c): pl.col("merchant_category") == c for c in MERCHANT_CATEGORIES},
    }


def row_values(settings: FeatureSettings, horizon: int) -> list[pl.Expr]:
    """What each joined row adds to its group's states, computed once per row (inside the
    aggregations, a value several of them read would be computed once per aggregation)."""
    local = pl.col(LOCAL)
    day_offset = (pl.col("cutoff_day") - local.dt.date()).dt.total_days()
    amount_cents = cents(pl.col("amount"))
    return [
        fixed_point(pl.col("amount")).alias("_micro"),
        amount_cents.alias("_cents"),
        (amount_cents * amount_cents).alias("_cents2"),
        *packed_flags(list(flags(settings).values())),
        (pl.col("ts") >= pl.col("prev_loan_at")).fill_null(False).alias("_since"),
        *(bits.alias(f"_day_bits_{k}") for k, bits in enumerate(day_bits(day_offset, horizon))),
    ]


def partial_states(horizon: int) -> list[pl.Expr]:
    """Reducible aggregates of one (application, bucket) group, over
    :func:`row_values` (the :func:`flags` counted in packed words)."""
    amount = pl.col("amount")
    since = pl.col("_since")
    return [
        pl.len().alias("n"),
        amount.count().alias("amount_n"),
        pl.col("_micro").sum().alias("amount_micro"),
        pl.col("_cents").sum().alias("amount_cents"),
        pl.col("_cents2").sum().alias("amount_cents2"),
        amount.max().alias("amount_max"),
        packed_sums(),
        *(
            pl.col(f"_day_bits_{k}").bitwise_or().alias(f"day_bits_{k}")
            for k in range(day_bit_words(horizon))
        ),
        pl.col("ts").max().alias("last_ts"),
        since.sum().alias(f"n@{SINCE_PREV_LOAN}"),
        pl.when(since).then(pl.col("_micro")).sum().alias(f"amount_micro@{SINCE_PREV_LOAN}"),
    ]


SUMMED = (
    "n",
    "amount_n",
    "amount_micro",
    "amount_cents",
    "amount_cents2",
    "night",
    "weekend",
    "credit",
    *map(category_state, MERCHANT_CATEGORIES),
)


def windowed_states(windows: list[int], horizon: int) -> list[pl.Expr]:
    """Per application: the partial states of the buckets inside each window, combined."""
    exprs = bucket_totals(SUMMED, windows)
    for i, days in enumerate(windows):
        inside = pl.col(BUCKET) <= i
        label = window_label(days)
        exprs.append(pl.when(inside).then(pl.col("amount_max")).max().alias(f"amount_max@{label}"))
        words = [
            pl.when(inside).then(pl.col(f"day_bits_{k}")).bitwise_or().fill_null(0)
            for k in range(day_bit_words(horizon))
        ]
        exprs.append(count_bits(words).alias(f"days@{label}"))
    since = [f"{s}@{SINCE_PREV_LOAN}" for s in ("n", "amount_micro")]
    return [*exprs, *(pl.col(s).sum() for s in since), pl.col("last_ts").max()]


def place_counts(places: pl.LazyFrame, windows: list[int]) -> pl.LazyFrame:
    """``city@<window>``, ``device_id@<window>``: distinct places per window, from the newest
    bucket of each (application, city, device)."""
    return places.group_by(APPLICATION).agg(
        pl.when(pl.col(BUCKET) <= i)
        .then(pl.col(p))
        .drop_nulls()
        .n_unique()
        .alias(f"{p}@{window_label(days)}")
        for i, days in enumerate(windows)
        for p in PLACES
    )


def amount_mean(s: State) -> pl.Expr:
    return ratio(s("amount_micro") / FIXED_POINT, s("amount_n"))


def amount_std(s: State) -> pl.Expr:
    return std_from_sums(s("amount_n"), s("amount_cents"), s("amount_cents2")) / CENTS


def level_features() -> list[PerWindow]:
    """How much is spent, and how evenly."""
    return [
        PerWindow(
            "consumption_count", "Number of purchases", lambda s: s("n"), since_prev_loan=True
        ),
        PerWindow(
            "consumption_amount_sum",
            "Total amount spent (CNY)",
            lambda s: s("amount_micro") / FIXED_POINT,
            since_prev_loan=True,
        ),
        PerWindow("consumption_amount_mean", "Mean purchase amount (CNY)", amount_mean),
        PerWindow(
            "consumption_amount_std",
            "Sample standard deviation of purchase amounts (CNY; null below two purchases)",
            amount_std,
        ),
        PerWindow(
            "consumption_amount_cv",
            "Standard deviation over mean of purchase amounts (null below two purchases)",
            lambda s: ratio(amount_std(s), amount_mean(s)),
        ),
        PerWindow(
            "consumption_amount_max", "Largest single purchase (CNY)", lambda s: s("amount_max")
        ),
    ]


def share_of(state: str, stem: str, description: str) -> PerWindow:
    """Share of the window's purchases counted by `state` (null for an empty window)."""
    return PerWindow(stem, description, lambda s: ratio(s(state), s("n")), bounds=SHARE)


def habit_features(settings: FeatureSettings) -> list[PerWindow]:
    """When, where, on what and how purchases are made."""
    return [
        PerWindow(
            "consumption_active_days",
            "Number of distinct local calendar days with a purchase",
            lambda s: s("days"),
        ),
        share_of(
            "night",
            "consumption_night_share",
            f"Share of purchases made 00:00-{settings.night_end_hour:02d}:00 local time",
        ),
        share_of(
            "weekend",
            "consumption_weekend_share",
            "Share of purchases made on a local Saturday or Sunday",
        ),
        share_of(
            category_state("luxury"),
            "consumption_luxury_share",
            "Share of purchases in the luxury category",
        ),
        share_of(
            category_state("gaming"),
            "consumption_gaming_share",
            "Share of purchases in the gaming category",
        ),
        share_of("credit", "consumption_credit_share", "Share of purchases paid on credit"),
        PerWindow(
            "consumption_category_entropy",
            "Shannon entropy (nats) of the merchant-category mix of purchases (0 = one category)",
            lambda s: entropy_of_counts(
                [s(category_state(c)) for c in MERCHANT_CATEGORIES], s("n")
            ),
        ),
        PerWindow(
            "consumption_distinct_cities",
            "Number of distinct cities purchased in",
            lambda s: s("city"),
        ),
        PerWindow(
            "consumption_distinct_devices",
            "Number of distinct devices purchased from",
            lambda s: s("device_id"),
        ),
    ]


def large_purchases(settings: FeatureSettings, horizon: int) -> PerWindow:
    """Purchases well above the applicant's mean purchase over the longest window."""
    return PerWindow(
        "consumption_large_count",
        f"Number of purchases above {settings.large_multiple:g} times the applicant's mean "
        f"purchase amount over the last {horizon} days",
        lambda s: s("large"),
    )


def category_shares() -> list[PerWindow]:
    return [
        share_of(
            category_state(category),
            f"consumption_category_share_{category}",
            f"Share of purchases in the {category} merchant category",
        )
        for category in MERCHANT_CATEGORIES
    ]


def recency_and_last_n(
    settings: FeatureSettings, horizon: int
) -> tuple[list[FeatureDef], list[pl.Expr]]:
    """Days since the last purchase and the mean amount of the latest purchases (both within
    the longest window)."""
    n = settings.last_n
    recency = FeatureDef(
        "consumption_days_since_last",
        FAMILY,
        window_label(horizon),
        "Days from the last purchase to the application day (null if none in the window)",
        min_value=0.0,
    )
    latest = FeatureDef(
        f"consumption_amount_mean_last{n}",
        FAMILY,
        f"last {n}",
        f"Mean amount of the latest {n} purchases in the last {horizon} days (CNY)",
        min_value=0.0,
    )
    exprs = [
        days_between(pl.col("cutoff"), pl.col("last_ts")).alias(recency.name),
        pl.col("last_n_mean").alias(latest.name),
    ]
    return [recency, latest], exprs


def trends(settings: FeatureSettings) -> list[Derived]:
    short, long = settings.trend_days
    label = f"{window_label(short)}/{window_label(long)}"
    measures = (("consumption_count", "purchases"), ("consumption_amount_sum", "amount spent"))
    return [
        Derived(
            f"{stem}_trend_{short}d_{long}d",
            label,
            f"Daily {what} over the last {short} days relative to the last {long} days "
            f"(1 = steady; null without purchases in the last {long} days)",
            trend(stem, short, long),
        )
        for stem, what in measures
    ]


def joined_purchases(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, windows: list[int], timezone: str
) -> pl.LazyFrame:
    """Each application's purchases within the longest window, with their window bucket."""
    events = tables["consumption"].select(EVENT_COLUMNS)
    keys = (APPLICATION, "user_id", "cutoff", "prev_loan_at", "cutoff_day")
    rows = events_before_cutoff(spine, events, max(windows), keys=keys)
    # The local wall-clock time once per row: every calendar state reads it.
    local = local_clock("ts", timezone, event_span(spine, max(windows))).alias(LOCAL)
    return rows.with_columns(local, window_bucket(windows).alias(BUCKET))


def large_counts(
    recent: pl.LazyFrame, windowed: pl.LazyFrame, settings: FeatureSettings, windows: list[int]
) -> pl.LazyFrame:
    """``large@<window>``: purchases above `large_multiple` times the longest window's mean."""
    longest = at(window_label(windows[-1]))
    limit = windowed.select(APPLICATION, limit=settings.large_multiple * amount_mean(longest))
    large = (pl.col("amount") > pl.col("limit")).sum().alias("large")
    per_bucket = by_bucket(recent.join(limit, on=APPLICATION), windows, [large])
    return per_bucket.group_by(APPLICATION).agg(bucket_totals(["large"], windows))


def latest_mean(
    recent: pl.LazyFrame, windowed: pl.LazyFrame, settings: FeatureSettings, windows: list[int]
) -> pl.LazyFrame:
    """``last_n_mean``: the mean amount of the latest `last_n` purchases. Only the buckets of
    the shortest window that holds that many purchases are sorted."""
    n = settings.last_n
    short_of_n = [(pl.col(f"n@{window_label(d)}") < n).cast(pl.UInt8) for d in windows[:-1]]
    reach = windowed.select(
        APPLICATION, reach=pl.sum_horizontal(short_of_n) if short_of_n else pl.lit(0)
    )
    rows = recent.join(reach, on=APPLICATION).filter(pl.col(BUCKET) <= pl.col("reach"))
    return rows.group_by(APPLICATION).agg(last_n("amount", n).mean().alias("last_n_mean"))


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    windows = sorted(settings.windows_days)
    horizon = windows[-1]
    keyed = with_application_key(spine).with_columns(cutoff_day=local_date("cutoff", timezone))
    rows = joined_purchases(tables, keyed, windows, timezone)
    per_row = rows.with_columns(row_values(settings, horizon))
    groups = by_bucket(per_row, windows, partial_states(horizon))
    newest = rows.group_by(APPLICATION, *PLACES).agg(pl.col(BUCKET).min())
    narrow = rows.select(APPLICATION, BUCKET, "ts", "amount")
    # One pass over the joined rows feeds all three (their common plan is shared, not cached).
    partial, places, recent = pl.collect_all([groups, newest, narrow], engine="streaming")
    partial = partial.with_columns(unpacked(list(flags(settings))))
    windowed = (
        partial.lazy()
        .group_by(APPLICATION)
        .agg(windowed_states(windows, horizon))
        .join(place_counts(places.lazy(), windows), on=APPLICATION, how="left")
        .collect()
        .lazy()
    )
    windowed = windowed.join(
        large_counts(recent.lazy(), windowed, settings, windows), on=APPLICATION, how="left"
    ).join(latest_mean(recent.lazy(), windowed, settings, windows), on=APPLICATION, how="left")

    specs = [*level_features(), *habit_features(settings), large_purchases(settings, horizon)]
    defs, exprs = expand(FAMILY, specs, windows)
    share_defs, share_exprs = expand(FAMILY, category_shares(), [horizon])
    latest_defs, latest_exprs = recency_and_last_n(settings, horizon)
    derived = trends(settings)
    defs += [*share_defs, *latest_defs, *(d.definition(FAMILY) for d in derived)]

    maxima = [f"amount_max@{window_label(days)}" for days in windows]
    frame = (
        with_states(keyed, windowed, keep_null=[*maxima, "last_ts", "last_n_mean"])
        .with_columns(*exprs, *share_exprs, *latest_exprs)
        .with_columns(d.expr.alias(d.name) for d in derived)
    )
    return defs, frame.select("application_id", *(d.name for d in defs))

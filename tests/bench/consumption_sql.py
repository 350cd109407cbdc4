"""The consumption family written as DuckDB SQL, for the engine comparison of bench_features.

The definitions are those of ``features.families.consumption`` (see its docstrings): every
application is joined to its user's purchases in [cutoff - longest window, cutoff), and one
aggregation per application computes every window through ``FILTER`` clauses. The query text
is generated from the feature settings (windows, night hour, last N, large multiple), so the
same settings give the same feature set as the Polars family.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from data.contract import MERCHANT_CATEGORIES
from features.base import FeatureSettings

PREFIX = "consumption"
EVENT_COLUMNS = "user_id, ts, amount, merchant_category, city, device_id, pay_method"


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def label(days: int) -> str:
    return f"{days}d"


def windowed_columns(settings: FeatureSettings) -> list[str]:
    """Per-application aggregates of every window, since the previous loan and of the latest
    purchases (helper names: the features are computed from them in `feature_columns`)."""
    night, multiple = settings.night_end_hour, settings.large_multiple
    columns = []
    for days in settings.windows_days:
        w, name = f"in_{label(days)}", label(days)
        columns += [
            f"count_if({w}) AS count_{name}",
            f"sum(amount) FILTER (WHERE {w}) AS amount_sum_{name}",
            f"avg(amount) FILTER (WHERE {w}) AS amount_mean_{name}",
            f"stddev_samp(amount) FILTER (WHERE {w}) AS amount_std_{name}",
            f"max(amount) FILTER (WHERE {w}) AS amount_max_{name}",
            f"count(DISTINCT local_day) FILTER (WHERE {w}) AS active_days_{name}",
            f"avg((hour(local_ts) < {night})::DOUBLE) FILTER (WHERE {w}) AS night_share_{name}",
            f"avg((isodow(local_ts) >= 6)::DOUBLE) FILTER (WHERE {w}) AS weekend_share_{name}",
            f"avg((pay_method = 'credit')::DOUBLE) FILTER (WHERE {w}) AS credit_share_{name}",
            f"count(DISTINCT city) FILTER (WHERE {w}) AS distinct_cities_{name}",
            f"count(DISTINCT device_id) FILTER (WHERE {w}) AS distinct_devices_{name}",
            f"count_if({w} AND amount > {multiple!r} * user_mean) AS large_count_{name}",
        ]
        columns += [
            f"count_if({w} AND merchant_category = {literal(c)}) AS n_{c}_{name}"
            for c in MERCHANT_CATEGORIES
        ]
    columns += [
        "count_if(since_loan) AS count_since_prev_loan",
        "sum(amount) FILTER (WHERE since_loan) AS amount_sum_since_prev_loan",
        "avg(amount) FILTER (WHERE is_latest) AS amount_mean_latest",
        "max(ts) AS last_ts",
    ]
    return columns


def share(count: str, total: str) -> str:
    return f"CASE WHEN ({total}) > 0 THEN ({count}) / ({total}) END"


def entropy(total: str, counts: list[str]) -> str:
    """Shannon entropy (nats) of the category shares; null without rows."""
    terms = " + ".join(
        f"CASE WHEN {n} > 0 THEN {n} / {total} * ln({n} / {total}) ELSE 0 END" for n in counts
    )
    return f"CASE WHEN {total} > 0 THEN -({terms}) END"


def feature_columns(settings: FeatureSettings) -> list[str]:
    """The features, in the Polars family's order, from the aggregates of ``a`` and spine ``s``."""
    horizon = label(max(settings.windows_days))
    windows = [label(days) for days in settings.windows_days]

    def each(stem: str, expr: str) -> list[str]:
        """`expr` over every window ({w} stands for the window label)."""
        return [expr.format(w=w) + f" AS {PREFIX}_{stem}_{w}" for w in windows]

    def filled(stem: str) -> str:
        return f"coalesce(a.{stem}_{{w}}, 0)"

    since_loan = [
        f"CASE WHEN s.prev_loan_at IS NOT NULL THEN coalesce(a.{stem}_since_prev_loan, 0) END"
        f" AS {PREFIX}_{stem}_since_prev_loan"
        for stem in ("count", "amount_sum")
    ]
    total = "a.count_{w}"
    columns = [
        *each("count", filled("count")),
        since_loan[0],
        *each("amount_sum", filled("amount_sum")),
        since_loan[1],
        *each("amount_mean", "a.amount_mean_{w}"),
        *each("amount_std", "a.amount_std_{w}"),
        *each("amount_cv", share("a.amount_std_{w}", "a.amount_mean_{w}")),
        *each("amount_max", "a.amount_max_{w}"),
        *each("active_days", filled("active_days")),
        *each("night_share", "a.night_share_{w}"),
        *each("weekend_share", "a.weekend_share_{w}"),
        *each("luxury_share", share("a.n_luxury_{w}", total)),
        *each("gaming_share", share("a.n_gaming_{w}", total)),
        *each("credit_share", "a.credit_share_{w}"),
        *each("category_entropy", entropy(total, [f"a.n_{c}_{{w}}" for c in MERCHANT_CATEGORIES])),
        *each("distinct_cities", filled("distinct_cities")),
        *each("distinct_devices", filled("distinct_devices")),
        *each("large_count", filled("large_count")),
    ]
    columns += [
        share(f"a.n_{c}_{horizon}", f"a.count_{horizon}")
        + f" AS {PREFIX}_category_share_{c}_{horizon}"
        for c in MERCHANT_CATEGORIES
    ]
    columns += [
        f"(epoch_us(s.cutoff) - epoch_us(a.last_ts)) / 1e6 / 86400.0 AS {PREFIX}_days_since_last",
        f"a.amount_mean_latest AS {PREFIX}_amount_mean_last{settings.last_n}",
    ]
    short, long = settings.trend_days
    for stem in ("count", "amount_sum"):
        rate_short = f"coalesce(a.{stem}_{label(short)}, 0) / {short}"
        rate_long = f"coalesce(a.{stem}_{label(long)}, 0) / {long}"
        columns.append(
            share(rate_short, rate_long) + f" AS {PREFIX}_{stem}_trend_{label(short)}_{label(long)}"
        )
    return columns


def query(
    events: str, spine: str, as_of_cutoff: datetime, settings: FeatureSettings, timezone: str
) -> str:
    """The feature query: `events` is the consumption table's Parquet glob, `spine` the spine's
    Parquet file, `as_of_cutoff` the instant the as-of day begins (later rows are not read)."""
    horizon_hours = 24 * max(settings.windows_days)
    as_of = as_of_cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    masks = ",\n        ".join(
        f"ts >= cutoff - INTERVAL {24 * days} HOUR AS in_{label(days)}"
        for days in settings.windows_days
    )
    aggregates = ",\n        ".join(windowed_columns(settings))
    features = ",\n    ".join(feature_columns(settings))
    return f"""
WITH spine AS (
    SELECT application_id, user_id, cutoff, prev_loan_at FROM read_parquet({literal(spine)})
),
events AS (
    SELECT {EVENT_COLUMNS} FROM read_parquet({literal(events)})
    WHERE ts < TIMESTAMPTZ {literal(as_of)}
),
joined AS (
    SELECT s.application_id, s.cutoff, s.prev_loan_at,
        e.ts, e.amount, e.merchant_category, e.city, e.device_id, e.pay_method
    FROM spine s JOIN events e USING (user_id)
    WHERE e.ts < s.cutoff AND e.ts >= s.cutoff - INTERVAL {horizon_hours} HOUR
),
rows AS (
    SELECT *,
        {masks},
        coalesce(ts >= prev_loan_at, false) AS since_loan,
        timezone({literal(timezone)}, ts) AS local_ts,
        CAST(timezone({literal(timezone)}, ts) AS DATE) AS local_day,
        avg(amount) OVER (PARTITION BY application_id) AS user_mean,
        row_number() OVER (PARTITION BY application_id ORDER BY ts DESC, amount DESC)
            <= {settings.last_n} AS is_latest
    FROM joined
),
a AS (
    SELECT application_id,
        {aggregates}
    FROM rows
    GROUP BY application_id
)
SELECT s.application_id,
    {features}
FROM spine s LEFT JOIN a USING (application_id)
ORDER BY s.application_id
"""


def connect(threads: int = 2, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = {literal(memory_limit)}")
    return con


def consumption_features(
    con: duckdb.DuckDBPyConnection,
    raw: Path,
    spine: Path,
    as_of_cutoff: datetime,
    settings: FeatureSettings,
    timezone: str,
) -> pl.DataFrame:
    """The consumption features of every spine application, sorted by application id."""
    events = str(Path(raw) / "consumption" / "**" / "*.parquet")
    return con.sql(query(events, str(spine), as_of_cutoff, settings, timezone)).pl()

"""Transactions and cash flow: salary and its regularity, inflow and outflow, red packets,
person-to-person money and borrowing from other lenders.

Computed like the consumption family, in two passes over the transactions joined to the
applications, so that the streaming group-by only ever reduces:

1. *partial states* per (application, window bucket): counts and exact integer sums per kind of
   money, the salary months as bits and the sums behind the spreads; next to them, per
   (application, counterparty), the bucket of the latest transfer with that counterparty;
2. the buckets are added up into every window (``<state>@<window>``), and the counterparties
   whose latest transfer falls in a window are counted.
"""

from __future__ import annotations

import polars as pl

from data.asof import local_date
from features.base import (
    APPLICATION,
    BUCKET,
    CENTS,
    FIXED_POINT,
    SINCE_PREV_LOAN,
    UNBOUNDED,
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
    events_before_cutoff,
    expand,
    fixed_point,
    newest_in_windows,
    ratio,
    recency,
    std_from_sums,
    trend,
    window_bucket,
    window_label,
    with_application_key,
    with_states,
)

FAMILY = "transactions"
INFLOW = pl.col("direction") == "in"
OUTFLOW = pl.col("direction") == "out"
SALARY = pl.col("txn_type") == "salary"
RED_PACKET = pl.col("txn_type") == "red_packet"
KINDS = {  # the kinds of money counted and summed per window
    "salary": SALARY,
    "inflow": INFLOW,
    "outflow": OUTFLOW,
    "red_packets_given": RED_PACKET & OUTFLOW,
    "red_packets_received": RED_PACKET & INFLOW,
    "other_lender_disbursed": INFLOW & (pl.col("txn_type") == "loan_disbursement"),
    "other_lender_repaid": OUTFLOW & (pl.col("txn_type") == "loan_repayment"),
}
SINCE_LOAN_KINDS = ("inflow", "outflow")
SALARY_SUMS = ("salary_cents", "salary_cents2", "payday_cents", "payday_cents2")
MONTH_BITS = "salary_month_bits"
LAST_SALARY = "last_salary_ts"


def count_state(kind: str) -> str:
    return f"n_{kind}"


def sum_state(kind: str) -> str:
    return f"micro_{kind}"


def months_in(horizon: int) -> int:
    """The most calendar months a window of `horizon` days can touch, less one (an offset)."""
    return horizon // 28 + 1


def month_index(day: pl.Expr) -> pl.Expr:
    return day.dt.year().cast(pl.Int32) * 12 + day.dt.month().cast(pl.Int32)


def row_values(timezone: str, horizon: int) -> list[pl.Expr]:
    """What each joined row adds to its group's states, computed once per row (inside the
    aggregations, a value several of them read would be computed once per aggregation)."""
    amount = pl.col("amount")
    salary_day = local_date(pl.when(SALARY).then(pl.col("ts")), timezone)
    month_offset = month_index(pl.col("cutoff_day")) - month_index(salary_day)
    salary_cents = cents(pl.when(SALARY).then(amount))
    payday_cents = cents(salary_day.dt.day().cast(pl.Float64))
    return [
        *(kind.alias(f"_is_{name}") for name, kind in KINDS.items()),
        fixed_point(amount).alias("_micro"),
        (pl.col("ts") >= pl.col("prev_loan_at")).fill_null(False).alias("_since"),
        *(
            word.alias(f"_{MONTH_BITS}_{k}")
            for k, word in enumerate(day_bits(month_offset, months_in(horizon)))
        ),
        salary_cents.alias("_salary_cents"),
        (salary_cents * salary_cents).alias("_salary_cents2"),
        payday_cents.alias("_payday_cents"),
        (payday_cents * payday_cents).alias("_payday_cents2"),
    ]


def partial_states(horizon: int) -> list[pl.Expr]:
    """Reducible aggregates of one (application, bucket) group, over :func:`row_values`."""
    micro = pl.col("_micro")
    inflow = pl.col("_is_inflow")
    return [
        *(pl.col(f"_is_{name}").sum().alias(count_state(name)) for name in KINDS),
        *(pl.when(f"_is_{name}").then(micro).sum().alias(sum_state(name)) for name in KINDS),
        # A row that is not "in" counts as money out, as a null direction does in the sum.
        pl.when(inflow).then(micro).otherwise(0 - micro).sum().alias(sum_state("net")),
        *(
            pl.when(pl.col("_since") & pl.col(f"_is_{name}"))
            .then(micro)
            .sum()
            .alias(f"{sum_state(name)}@{SINCE_PREV_LOAN}")
            for name in SINCE_LOAN_KINDS
        ),
        pl.when("_is_salary").then(pl.col("ts")).max().alias(LAST_SALARY),
        *(
            pl.col(f"_{MONTH_BITS}_{k}").bitwise_or().alias(f"{MONTH_BITS}_{k}")
            for k in range(day_bit_words(months_in(horizon)))
        ),
        pl.when("_is_salary").then(pl.col("amount")).count().alias("salary_amount_n"),
        *(pl.col(f"_{state}").sum().alias(state) for state in SALARY_SUMS),
    ]


SUMMED = (
    *map(count_state, KINDS),
    *map(sum_state, KINDS),
    sum_state("net"),
)


def combined_states(windows: list[int], horizon: int) -> list[pl.Expr]:
    """Per application: the bucket states added up per window; salary regularity and the
    since-previous-loan sums over all buckets (the longest window)."""
    words = [
        pl.col(f"{MONTH_BITS}_{k}").bitwise_or().fill_null(0)
        for k in range(day_bit_words(months_in(horizon)))
    ]
    since = [f"{sum_state(name)}@{SINCE_PREV_LOAN}" for name in SINCE_LOAN_KINDS]
    return [
        *bucket_totals(SUMMED, windows),
        *(pl.col(s).sum() for s in (*since, "salary_amount_n", *SALARY_SUMS)),
        pl.col(LAST_SALARY).max(),
        count_bits(words).alias("salary_months"),
    ]


def counterparty_counts(rows: pl.LazyFrame, windows: list[int]) -> pl.LazyFrame:
    """``counterparties@<window>``: distinct counterparties with a transfer in the window (a
    counterparty is in every window that holds its latest transfer, the lowest bucket)."""
    latest = (
        rows.filter(pl.col("counterparty_id").is_not_null())
        .group_by(APPLICATION, "counterparty_id")
        .agg(pl.col(BUCKET).min())
    )
    return latest.group_by(APPLICATION).agg(
        newest_in_windows(pl.col(BUCKET), "counterparties", windows)
    )


def amount(kind: str) -> State:
    return lambda s: s(sum_state(kind)) / FIXED_POINT


def count_of(kind: str) -> State:
    return lambda s: s(count_state(kind))


def cash_flow_features() -> list[PerWindow]:
    return [
        PerWindow("txn_salary_count", "Number of salary payments received", count_of("salary")),
        PerWindow("txn_salary_amount", "Total salary received (CNY)", amount("salary")),
        PerWindow("txn_inflow_sum", "Total money in (CNY)", amount("inflow"), since_prev_loan=True),
        PerWindow(
            "txn_outflow_sum", "Total money out (CNY)", amount("outflow"), since_prev_loan=True
        ),
        PerWindow(
            "txn_net_flow", "Money in minus money out (CNY)", amount("net"), bounds=UNBOUNDED
        ),
    ]


def transfer_features() -> list[PerWindow]:
    given, received = "red_packets_given", "red_packets_received"
    return [
        PerWindow("txn_red_packets_given_count", "Red packets given", count_of(given)),
        PerWindow(
            "txn_red_packets_given_amount", "Total of red packets given (CNY)", amount(given)
        ),
        PerWindow("txn_red_packets_received_count", "Red packets received", count_of(received)),
        PerWindow(
            "txn_red_packets_received_amount",
            "Total of red packets received (CNY)",
            amount(received),
        ),
        PerWindow(
            "txn_p2p_counterparties",
            "Distinct users money was sent to or received from",
            lambda s: s("counterparties"),
        ),
    ]


def other_lender_features() -> list[PerWindow]:
    disbursed, repaid = "other_lender_disbursed", "other_lender_repaid"
    return [
        PerWindow(
            "txn_other_lender_disbursements",
            "Loan disbursements received from other lenders (multi-lending)",
            count_of(disbursed),
        ),
        PerWindow(
            "txn_other_lender_disbursed_amount",
            "Total of loan disbursements received from other lenders (CNY)",
            amount(disbursed),
        ),
        PerWindow(
            "txn_other_lender_repayments", "Repayments made to other lenders", count_of(repaid)
        ),
        PerWindow(
            "txn_other_lender_repaid_amount",
            "Total of repayments made to other lenders (CNY)",
            amount(repaid),
        ),
    ]


def salary_regularity(horizon: int) -> tuple[list[FeatureDef], list[pl.Expr]]:
    """Salary regularity, over the longest window only."""
    label = window_label(horizon)
    n = pl.col("salary_amount_n")
    salary_std = std_from_sums(n, pl.col("salary_cents"), pl.col("salary_cents2")) / CENTS
    salary_mean = ratio(amount("salary")(at(label)), n)
    paydays = count_of("salary")(at(label))
    payday_std = std_from_sums(paydays, pl.col("payday_cents"), pl.col("payday_cents2")) / CENTS
    features = {
        "txn_salary_months": (
            "Distinct local calendar months with a salary payment",
            pl.col("salary_months"),
        ),
        "txn_salary_payday_std": (
            "Sample std of the local day of month of salary payments (null below two)",
            payday_std,
        ),
        "txn_salary_amount_cv": (
            "Coefficient of variation of salary amounts (null below two)",
            ratio(salary_std, salary_mean),
        ),
    }
    defs = [
        FeatureDef(f"{stem}_{label}", FAMILY, label, description, 0.0)
        for stem, (description, _) in features.items()
    ]
    exprs = [expr.alias(d.name) for d, (_, expr) in zip(defs, features.values(), strict=True)]
    return defs, exprs


def derived(settings: FeatureSettings) -> list[Derived]:
    ratios = [
        Derived(
            f"txn_income_to_spend_{label}",
            label,
            "Money in over money out (null if nothing went out)",
            ratio(pl.col(f"txn_inflow_sum_{label}"), pl.col(f"txn_outflow_sum_{label}")),
        )
        for label in map(window_label, settings.windows_days)
    ]
    short, long = settings.trend_days
    outflow_trend = Derived(
        f"txn_outflow_sum_trend_{short}d_{long}d",
        f"{short}d vs {long}d",
        f"Per-day money out over the last {short} days relative to the last {long} (1 = steady)",
        trend("txn_outflow_sum", short, long),
    )
    return [*ratios, outflow_trend]


def days_since_salary(horizon: int) -> tuple[FeatureDef, pl.Expr]:
    definition = recency(
        "txn_days_since_salary",
        FAMILY,
        horizon,
        "Days from the last salary payment to the application day (null if none in the window)",
    )
    return definition, days_between(pl.col("cutoff"), pl.col(LAST_SALARY)).alias(definition.name)


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    windows = sorted(settings.windows_days)
    horizon = windows[-1]
    keyed = with_application_key(spine).with_columns(cutoff_day=local_date("cutoff", timezone))
    events = tables["transactions"].select(
        "user_id", "ts", "direction", "txn_type", "amount", "counterparty_id"
    )
    keys = (APPLICATION, "user_id", "cutoff", "prev_loan_at", "cutoff_day")
    rows = events_before_cutoff(keyed, events, horizon, keys=keys).with_columns(
        window_bucket(windows).alias(BUCKET)
    )
    per_row = rows.with_columns(row_values(timezone, horizon))
    partial = by_bucket(per_row, windows, partial_states(horizon))
    partial, counterparties = pl.collect_all(
        [partial, counterparty_counts(rows, windows)], engine="streaming"
    )
    combined = partial.lazy().group_by(APPLICATION).agg(combined_states(windows, horizon))

    specs = [*cash_flow_features(), *transfer_features(), *other_lender_features()]
    defs, exprs = expand(FAMILY, specs, windows)
    regularity_defs, regularity_exprs = salary_regularity(horizon)
    recency_def, recency_expr = days_since_salary(horizon)
    extra = derived(settings)
    defs += [*regularity_defs, recency_def, *(d.definition(FAMILY) for d in extra)]

    states = combined.join(counterparties.lazy(), on=APPLICATION, how="left")
    frame = (
        with_states(keyed, states, keep_null=[LAST_SALARY])
        .with_columns(*exprs, *regularity_exprs, recency_expr)
        .with_columns(d.expr.alias(d.name) for d in extra)
    )
    return defs, frame.select("application_id", *(d.name for d in defs))

"""Transactions and cash flow: salary and its regularity, inflow and outflow, red packets,
person-to-person money and borrowing from other lenders."""

from __future__ import annotations

import polars as pl

from features.base import (
    UNBOUNDED,
    Aggregate,
    Derived,
    FeatureDef,
    FeatureSettings,
    coefficient_of_variation,
    count,
    days_since_last,
    distinct,
    events_before_cutoff,
    exact_std,
    exact_sum,
    per_application,
    ratio,
    total,
    trend,
    window_label,
    windowed,
    with_application_key,
)

FAMILY = "transactions"
INFLOW = pl.col("direction") == "in"
OUTFLOW = pl.col("direction") == "out"
SALARY = pl.col("txn_type") == "salary"


def local_salary_times(mask: pl.Expr, timezone: str) -> pl.Expr:
    """Local time of the salary payments inside the window."""
    return pl.col("ts").filter(mask & SALARY).dt.convert_time_zone(timezone)


def cash_flow_aggregates() -> list[Aggregate]:
    signed = pl.when(INFLOW).then(pl.col("amount")).otherwise(-pl.col("amount"))
    return [
        Aggregate(
            "txn_salary_count", "Number of salary payments received", lambda w: count(w, SALARY)
        ),
        Aggregate(
            "txn_salary_amount", "Total salary received (CNY)", lambda w: total(w, "amount", SALARY)
        ),
        Aggregate(
            "txn_inflow_sum",
            "Total money in (CNY)",
            lambda w: total(w, "amount", INFLOW),
            since_prev_loan=True,
        ),
        Aggregate(
            "txn_outflow_sum",
            "Total money out (CNY)",
            lambda w: total(w, "amount", OUTFLOW),
            since_prev_loan=True,
        ),
        Aggregate(
            "txn_net_flow",
            "Money in minus money out (CNY)",
            lambda w: exact_sum(pl.when(w).then(signed)),
            bounds=UNBOUNDED,
        ),
    ]


def transfer_aggregates() -> list[Aggregate]:
    red_packet = pl.col("txn_type") == "red_packet"
    given = red_packet & OUTFLOW
    received = red_packet & INFLOW
    return [
        Aggregate("txn_red_packets_given_count", "Red packets given", lambda w: count(w, given)),
        Aggregate(
            "txn_red_packets_given_amount",
            "Total of red packets given (CNY)",
            lambda w: total(w, "amount", given),
        ),
        Aggregate(
            "txn_red_packets_received_count", "Red packets received", lambda w: count(w, received)
        ),
        Aggregate(
            "txn_red_packets_received_amount",
            "Total of red packets received (CNY)",
            lambda w: total(w, "amount", received),
        ),
        Aggregate(
            "txn_p2p_counterparties",
            "Distinct users money was sent to or received from",
            lambda w: distinct(w, "counterparty_id"),
        ),
    ]


def other_lender_aggregates() -> list[Aggregate]:
    disbursed = INFLOW & (pl.col("txn_type") == "loan_disbursement")
    repaid = OUTFLOW & (pl.col("txn_type") == "loan_repayment")
    return [
        Aggregate(
            "txn_other_lender_disbursements",
            "Loan disbursements received from other lenders (multi-lending)",
            lambda w: count(w, disbursed),
        ),
        Aggregate(
            "txn_other_lender_disbursed_amount",
            "Total of loan disbursements received from other lenders (CNY)",
            lambda w: total(w, "amount", disbursed),
        ),
        Aggregate(
            "txn_other_lender_repayments",
            "Repayments made to other lenders",
            lambda w: count(w, repaid),
        ),
        Aggregate(
            "txn_other_lender_repaid_amount",
            "Total of repayments made to other lenders (CNY)",
            lambda w: total(w, "amount", repaid),
        ),
    ]


def salary_regularity_aggregates(timezone: str) -> list[Aggregate]:
    """Salary regularity, over the longest window only."""
    return [
        Aggregate(
            "txn_salary_months",
            "Distinct local calendar months with a salary payment",
            lambda w: local_salary_times(w, timezone).dt.truncate("1mo").n_unique(),
        ),
        Aggregate(
            "txn_salary_payday_std",
            "Sample std of the local day of month of salary payments (null below two)",
            lambda w: exact_std(local_salary_times(w, timezone).dt.day().cast(pl.Float64)),
            fill=None,
        ),
        Aggregate(
            "txn_salary_amount_cv",
            "Coefficient of variation of salary amounts (null below two)",
            lambda w: coefficient_of_variation(w & SALARY, "amount"),
            fill=None,
        ),
    ]


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
    return days_since_last(
        "txn_days_since_salary",
        FAMILY,
        horizon,
        "Days from the last salary payment to the application day (null if none in the window)",
        where=SALARY,
    )


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    spine = with_application_key(spine)
    horizon = max(settings.windows_days)
    per_window = cash_flow_aggregates() + transfer_aggregates() + other_lender_aggregates()
    defs, exprs, fills = windowed(FAMILY, per_window, settings.windows_days)
    regularity = windowed(FAMILY, salary_regularity_aggregates(timezone), [horizon])
    recency_def, recency_expr = days_since_salary(horizon)
    extra = derived(settings)
    defs += [*regularity[0], recency_def, *(d.definition(FAMILY) for d in extra)]
    exprs += [*regularity[1], recency_expr]
    fills += regularity[2]
    events = tables["transactions"].select(
        "user_id", "ts", "direction", "txn_type", "amount", "counterparty_id"
    )
    rows = events_before_cutoff(spine, events, horizon)
    return defs, per_application(spine, rows, exprs, fills, extra)

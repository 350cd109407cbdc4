"""Transactions and cash flow: salary, inflow and outflow, and borrowing from other lenders."""

from __future__ import annotations

import polars as pl

from features.base import (
    UNBOUNDED,
    Aggregate,
    FeatureDef,
    FeatureSettings,
    count,
    events_before_cutoff,
    per_application,
    total,
    windowed,
)

FAMILY = "transactions"


def aggregates() -> list[Aggregate]:
    inflow = pl.col("direction") == "in"
    outflow = pl.col("direction") == "out"
    salary = pl.col("txn_type") == "salary"
    other_lender_in = inflow & (pl.col("txn_type") == "loan_disbursement")
    other_lender_out = outflow & (pl.col("txn_type") == "loan_repayment")
    signed = pl.when(inflow).then(pl.col("amount")).otherwise(-pl.col("amount"))
    return [
        Aggregate(
            "txn_salary_count", "Number of salary payments received", lambda w: count(w, salary)
        ),
        Aggregate(
            "txn_salary_amount", "Total salary received (CNY)", lambda w: total(w, "amount", salary)
        ),
        Aggregate("txn_inflow_sum", "Total money in (CNY)", lambda w: total(w, "amount", inflow)),
        Aggregate(
            "txn_outflow_sum", "Total money out (CNY)", lambda w: total(w, "amount", outflow)
        ),
        Aggregate(
            "txn_net_flow",
            "Money in minus money out (CNY)",
            lambda w: signed.filter(w).sum(),
            bounds=UNBOUNDED,
        ),
        Aggregate(
            "txn_other_lender_disbursements",
            "Loan disbursements received from other lenders (multi-lending)",
            lambda w: count(w, other_lender_in),
        ),
        Aggregate(
            "txn_other_lender_repayments",
            "Repayments made to other lenders",
            lambda w: count(w, other_lender_out),
        ),
    ]


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    defs, exprs, fills = windowed(FAMILY, aggregates(), settings.windows_days)
    events = tables["transactions"].select("user_id", "ts", "direction", "txn_type", "amount")
    rows = events_before_cutoff(spine, events, max(settings.windows_days))
    return defs, per_application(spine, rows, exprs, fills)

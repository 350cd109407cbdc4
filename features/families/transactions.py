"""Transactions and cash flow: salary and its regularity, inflow and outflow, red packets,
person-to-person money and borrowing from other lenders.

A declaration read by the feature engine (``features.engine``).
"""

from __future__ import annotations

import polars as pl

from data.asof import local_date
from features.base import (
    CENTS,
    FIXED_POINT,
    UNBOUNDED,
    cents,
    fixed_point,
    ratio,
    std_from_sums,
)
from features.engine import (
    CUTOFF_DAY,
    Context,
    Count,
    DaySet,
    Derived,
    Distinct,
    EventFamily,
    Max,
    MonthlySlope,
    PerWindow,
    Single,
    Source,
    States,
    StateValue,
    Sum,
    monthly_slope,
    recency,
    trend,
)

COUNT = (0.0, None)
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


def count_state(kind: str) -> str:
    return f"n_{kind}"


def sum_state(kind: str) -> str:
    return f"micro_{kind}"


def is_kind(kind: str) -> pl.Expr:
    return pl.col(f"_is_{kind}")


def months_in(horizon: int) -> int:
    """The most calendar months a window of `horizon` days can touch, less one (an offset)."""
    return horizon // 28 + 1


def month_index(day: pl.Expr) -> pl.Expr:
    return day.dt.year().cast(pl.Int32) * 12 + day.dt.month().cast(pl.Int32)


def salary_day(ctx: Context) -> pl.Expr:
    return local_date(pl.when(SALARY).then(pl.col("ts")), ctx.timezone)


def row_values(ctx: Context) -> list[pl.Expr]:
    """Computed once per joined transaction: its kinds, its amount in millionths, the cents
    behind the salary's spreads."""
    salary_cents = cents(pl.when(SALARY).then(pl.col("amount")))
    payday_cents = cents(salary_day(ctx).dt.day().cast(pl.Float64))
    return [
        *(kind.alias(f"_is_{name}") for name, kind in KINDS.items()),
        fixed_point(pl.col("amount")).alias("_micro"),
        salary_cents.alias("_salary_cents"),
        (salary_cents * salary_cents).alias("_salary_cents2"),
        payday_cents.alias("_payday_cents"),
        (payday_cents * payday_cents).alias("_payday_cents2"),
    ]


def salary_month_offset(ctx: Context) -> pl.Expr:
    """Calendar months from a salary payment's local month to the cut-off's."""
    return month_index(pl.col(CUTOFF_DAY)) - month_index(salary_day(ctx))


MICRO = pl.col("_micro")
NET = pl.when(is_kind("inflow")).then(MICRO).otherwise(0 - MICRO)
STATES = (
    *(Count(count_state(kind), when=is_kind(kind)) for kind in KINDS),
    *(
        Sum(
            sum_state(kind),
            value=pl.when(is_kind(kind)).then(MICRO),
            since_prev_loan=kind in SINCE_LOAN_KINDS,
        )
        for kind in KINDS
    ),
    # A row that is not "in" counts as money out, as a null direction does in the sum.
    Sum(sum_state("net"), value=NET),
    MonthlySlope("net_slope", value=NET),
    Max("last_salary_ts", value=pl.when(is_kind("salary")).then(pl.col("ts")), windowed=False),
    DaySet(
        "salary_months",
        offset=salary_month_offset,
        size=lambda ctx: months_in(ctx.horizon),
        windowed=False,
    ),
    Count(
        "salary_amount_n",
        when=pl.when(is_kind("salary")).then(pl.col("amount")).is_not_null(),
        windowed=False,
    ),
    *(Sum(state, value=pl.col(f"_{state}"), windowed=False) for state in SALARY_SUMS),
    Distinct("counterparties", "counterparty_id"),
)


def amount(kind: str) -> StateValue:
    return lambda s: s(sum_state(kind)) / FIXED_POINT


def count_of(kind: str) -> StateValue:
    return lambda s: s(count_state(kind))


def salary_std(s: States) -> pl.Expr:
    return std_from_sums(s("salary_amount_n"), s("salary_cents"), s("salary_cents2")) / CENTS


def payday_std(s: States) -> pl.Expr:
    return std_from_sums(s(count_state("salary")), s("payday_cents"), s("payday_cents2")) / CENTS


def salary_cv(s: States) -> pl.Expr:
    return ratio(salary_std(s), ratio(amount("salary")(s), s("salary_amount_n")))


def regularity(stem: str, description: str, value: StateValue) -> Single:
    """Salary regularity, over the longest window."""
    return Single(f"{stem}_{{horizon}}d", "{horizon}d", description, value, COUNT)


FEATURES = (
    PerWindow("txn_salary_count", "Number of salary payments received", count_of("salary"), COUNT),
    PerWindow("txn_salary_amount", "Total salary received (CNY)", amount("salary"), COUNT),
    PerWindow(
        "txn_inflow_sum", "Total money in (CNY)", amount("inflow"), COUNT, since_prev_loan=True
    ),
    PerWindow(
        "txn_outflow_sum", "Total money out (CNY)", amount("outflow"), COUNT, since_prev_loan=True
    ),
    PerWindow("txn_net_flow", "Money in minus money out (CNY)", amount("net"), UNBOUNDED),
    PerWindow(
        "txn_red_packets_given_count", "Red packets given", count_of("red_packets_given"), COUNT
    ),
    PerWindow(
        "txn_red_packets_given_amount",
        "Total of red packets given (CNY)",
        amount("red_packets_given"),
        COUNT,
    ),
    PerWindow(
        "txn_red_packets_received_count",
        "Red packets received",
        count_of("red_packets_received"),
        COUNT,
    ),
    PerWindow(
        "txn_red_packets_received_amount",
        "Total of red packets received (CNY)",
        amount("red_packets_received"),
        COUNT,
    ),
    PerWindow(
        "txn_p2p_counterparties",
        "Distinct users money was sent to or received from",
        lambda s: s("counterparties"),
        COUNT,
    ),
    PerWindow(
        "txn_other_lender_disbursements",
        "Loan disbursements received from other lenders (multi-lending)",
        count_of("other_lender_disbursed"),
        COUNT,
    ),
    PerWindow(
        "txn_other_lender_disbursed_amount",
        "Total of loan disbursements received from other lenders (CNY)",
        amount("other_lender_disbursed"),
        COUNT,
    ),
    PerWindow(
        "txn_other_lender_repayments",
        "Repayments made to other lenders",
        count_of("other_lender_repaid"),
        COUNT,
    ),
    PerWindow(
        "txn_other_lender_repaid_amount",
        "Total of repayments made to other lenders (CNY)",
        amount("other_lender_repaid"),
        COUNT,
    ),
    PerWindow(
        "txn_other_lender_repaid_share_of_income",
        "Repayments made to other lenders over the money received that was not borrowed from "
        "them (null without such money)",
        lambda s: ratio(
            s(sum_state("other_lender_repaid")),
            s(sum_state("inflow")) - s(sum_state("other_lender_disbursed")),
        ),
        COUNT,
    ),
    regularity(
        "txn_salary_months",
        "Distinct local calendar months with a salary payment",
        lambda s: s("salary_months"),
    ),
    regularity(
        "txn_salary_payday_std",
        "Sample std of the local day of month of salary payments (null below two)",
        payday_std,
    ),
    regularity(
        "txn_salary_amount_cv",
        "Coefficient of variation of salary amounts (null below two)",
        salary_cv,
    ),
    recency(
        "txn_days_since_salary",
        "last_salary_ts",
        "Days from the last salary payment to the application day (null if none in the window)",
    ),
    Derived(
        "txn_income_to_spend",
        "",
        "Money in over money out (null if nothing went out)",
        lambda f: ratio(f(f"txn_inflow_sum_{f.window}"), f(f"txn_outflow_sum_{f.window}")),
        COUNT,
        per_window=True,
    ),
    trend("txn_outflow_sum", "money out"),
    monthly_slope("txn_net_flow", "net_slope", "money in minus money out"),
)

TRANSACTIONS = EventFamily(
    "transactions",
    Source(
        "transactions",
        ("user_id", "ts", "direction", "txn_type", "amount", "counterparty_id"),
        cutoff_day=True,
    ),
    STATES,
    FEATURES,
    row_values=row_values,
)

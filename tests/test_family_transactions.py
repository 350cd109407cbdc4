"""Transactions family on a hand-made ledger: exact values, and nothing at or after the cut-off."""

from __future__ import annotations

import polars as pl
import pytest
from family_frames import applications, build_family, row, utc

from features.families import transactions

APPLICATIONS = [
    # application_id, user_id, applied_at (local), decision
    ("a0", "u1", "2024-05-01 12:00", "approved"),
    ("a1", "u1", "2024-07-01 10:00", "rejected"),
    ("a2", "u2", "2024-07-01 10:00", "rejected"),
]
LEDGER = [
    # ts (local), direction, txn_type, amount, counterparty_id
    ("2024-04-01 10:00", "out", "loan_repayment", 300.0, None),
    ("2024-04-14 09:00", "in", "salary", 4000.0, None),
    ("2024-05-12 09:00", "in", "salary", 5000.0, None),
    ("2024-05-20 12:00", "in", "red_packet", 200.0, "u5"),
    # Local 1 June, UTC 31 May: a June salary, paid on day 1 of the month.
    ("2024-06-01 00:30", "in", "salary", 6000.0, None),
    ("2024-06-15 12:00", "out", "transfer", 500.0, "u4"),
    ("2024-06-16 12:00", "out", "transfer", 100.0, None),
    ("2024-06-20 12:00", "in", "loan_disbursement", 1000.0, None),
    ("2024-06-25 12:00", "out", "loan_repayment", 300.0, None),
    ("2024-06-28 20:00", "out", "red_packet", 88.0, "u2"),
    ("2024-06-28 20:05", "out", "red_packet", 66.0, "u3"),
    # At and after a1's cut-off: never counted for a1.
    ("2024-07-01 00:00", "in", "salary", 1e6, "u9"),
    ("2024-07-01 00:00", "out", "red_packet", 1e6, "u9"),
    ("2024-07-01 09:00", "out", "loan_repayment", 1e6, None),
]


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    apps = applications(APPLICATIONS, ["application_id", "user_id", "applied_at", "decision"])
    ledger = pl.LazyFrame(
        LEDGER,
        schema=["ts", "direction", "txn_type", "amount", "counterparty_id"],
        orient="row",
    ).with_columns(ts=utc("ts"), user_id=pl.lit("u1"))
    return build_family(transactions.TRANSACTIONS, {"applications": apps, "transactions": ledger})


def test_salary_regularity_uses_local_calendar(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    assert a1["txn_salary_count_180d"] == 3
    assert a1["txn_salary_count_30d"] == 1
    assert a1["txn_salary_amount_180d"] == 15000.0
    assert a1["txn_salary_months_180d"] == 3
    # Local paydays 14, 12 and 1: mean 9, squared deviations 25 + 9 + 64 over 2.
    assert a1["txn_salary_payday_std_180d"] == pytest.approx(7.0)
    assert a1["txn_salary_amount_cv_180d"] == pytest.approx(0.2)
    assert a1["txn_days_since_salary"] == pytest.approx(30 - 0.5 / 24)


def test_flows_red_packets_and_counterparties(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    assert a1["txn_inflow_sum_180d"] == 16200.0
    assert a1["txn_outflow_sum_180d"] == 1354.0
    assert a1["txn_outflow_sum_30d"] == 1054.0
    assert a1["txn_net_flow_180d"] == 16200.0 - 1354.0
    assert a1["txn_income_to_spend_180d"] == pytest.approx(16200.0 / 1354.0)
    assert a1["txn_outflow_sum_trend_30d_180d"] == pytest.approx((1054 / 30) / (1354 / 180))
    assert a1["txn_red_packets_given_count_7d"] == 2
    assert a1["txn_red_packets_given_amount_7d"] == 154.0
    assert a1["txn_red_packets_received_count_30d"] == 0
    assert a1["txn_red_packets_received_amount_90d"] == 200.0
    assert a1["txn_p2p_counterparties_30d"] == 3
    assert a1["txn_p2p_counterparties_90d"] == 4


def test_other_lenders_and_since_previous_loan(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    assert a1["txn_other_lender_disbursements_30d"] == 1
    assert a1["txn_other_lender_disbursed_amount_30d"] == 1000.0
    assert a1["txn_other_lender_repayments_180d"] == 2
    assert a1["txn_other_lender_repaid_amount_7d"] == 300.0
    assert a1["txn_inflow_sum_since_prev_loan"] == 12200.0
    assert a1["txn_outflow_sum_since_prev_loan"] == 1054.0
    a0 = row(features, "a0")
    assert a0["txn_inflow_sum_since_prev_loan"] is None
    assert a0["txn_salary_count_180d"] == 1
    assert a0["txn_salary_payday_std_180d"] is None
    assert a0["txn_income_to_spend_30d"] == pytest.approx(4000.0 / 300.0)


def test_applicant_without_transactions(features: pl.DataFrame) -> None:
    a2 = row(features, "a2")
    assert a2["txn_salary_count_180d"] == 0
    assert a2["txn_salary_months_180d"] == 0
    assert a2["txn_p2p_counterparties_7d"] == 0
    assert a2["txn_red_packets_given_amount_180d"] == 0
    for name in (
        "txn_salary_payday_std_180d",
        "txn_salary_amount_cv_180d",
        "txn_days_since_salary",
        "txn_income_to_spend_180d",
        "txn_outflow_sum_trend_30d_180d",
        "txn_inflow_sum_since_prev_loan",
    ):
        assert a2[name] is None, name

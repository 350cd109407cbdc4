"""Bureau and history families on hand-made records: exact values, nothing on or after the
application day."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from family_frames import TZ, applications, build_family, by_window, row, utc
from pydantic import ValidationError

from data.config import LabelSettings
from features.base import FeatureSettings
from features.build import feature_definitions, store_manifest
from features.families import bureau, history

APPLICATIONS = [
    # application_id, user_id, applied_at (local), decision, loan_id, amount_requested
    ("b1", "u1", "2024-07-15 10:00", "rejected", None, 1000.0),
    ("b2", "u2", "2024-07-01 10:00", "rejected", None, 1000.0),
    ("b3", "u3", "2024-07-01 10:00", "rejected", None, 1000.0),
    ("b4", "u4", "2024-05-10 10:00", "rejected", None, 1000.0),
    ("h0", "u9", "2023-12-01 10:00", "approved", "L0", 500.0),
    ("h1", "u9", "2024-05-20 10:00", "rejected", None, 800.0),
    ("h2", "u9", "2024-06-10 10:00", "approved", "L2", 1200.0),
    ("h3", "u9", "2024-07-01 08:00", "approved", "L3", 2000.0),  # same day as h4
    ("h4", "u9", "2024-07-01 18:00", "rejected", None, 3000.0),
]
INQUIRIES = [
    # user_id, ts (local), reason, institution_type
    ("u1", "2024-07-14 12:00", "loan_approval", "microloan"),
    ("u1", "2024-07-10 12:00", "self_query", "bank"),
    ("u1", "2024-07-10 00:00", "loan_approval", "consumer_finance"),
    ("u1", "2024-05-01 12:00", "credit_card_approval", "bank"),
    ("u1", "2024-01-01 12:00", "guarantee", "other"),  # older than 180 days
    ("u1", "2024-07-15 00:00", "post_loan", "microloan"),  # at the cut-off
    ("u2", "2024-06-30 18:00", "self_query", "other"),
]
SNAPSHOTS = [
    # user_id, report_date, total_limit, total_balance, max_dpd_current
    ("u1", "2024-01-01", 1000.0, 100.0, 99),  # older than 6 months before 2024-07-15
    ("u1", "2024-02-01", 1000.0, 100.0, 0),
    ("u1", "2024-03-01", 1000.0, 100.0, 60),
    ("u1", "2024-04-01", 2000.0, 500.0, 5),  # 3 months before the latest usable one
    ("u1", "2024-05-01", 2000.0, 500.0, 0),
    ("u1", "2024-06-01", 2000.0, 500.0, 0),
    ("u1", "2024-07-01", 5000.0, 4000.0, 30),  # latest usable
    ("u1", "2024-07-15", 1.0, 1.0, 500),  # dated on the application day: not usable
    # u2: March is missing, so "3 months before June" is February.
    ("u2", "2024-01-01", 100.0, 0.0, 7),
    ("u2", "2024-02-01", 100.0, 50.0, 3),
    ("u2", "2024-04-01", 100.0, 0.0, 0),
    ("u2", "2024-05-01", 100.0, 0.0, 0),
    ("u2", "2024-06-01", 300.0, 30.0, 1),
    ("u2", "2024-07-01", 9.0, 9.0, 400),  # on the application day
    ("u3", "2024-06-01", 0.0, 0.0, 2),  # a single report, with no limit
    # u4: reports at month ends; 3 months before April 30 is January 31.
    ("u4", "2024-01-31", 400.0, 100.0, 10),
    ("u4", "2024-02-29", 400.0, 100.0, 20),
    ("u4", "2024-03-31", 400.0, 100.0, 0),
    ("u4", "2024-04-30", 800.0, 100.0, 0),
]
REPAYMENTS = [
    # loan_id, installment_no, due_date, paid_at (local, None = unpaid)
    ("L0", 1, "2024-01-01", "2023-12-31 12:00"),
    ("L0", 2, "2024-02-01", "2024-02-05 12:00"),
    ("L0", 3, "2024-03-01", None),
    ("L0", 4, "2024-04-01", "2024-07-01 09:00"),  # paid after h4's cut-off: open for h4
    ("L2", 1, "2024-07-01", None),  # due on h4's application day: not yet due
    ("L2", 2, "2024-08-01", None),
]


def tables() -> dict[str, pl.LazyFrame]:
    apps = applications(
        APPLICATIONS,
        ["application_id", "user_id", "applied_at", "decision", "loan_id", "amount_requested"],
    )
    inquiries = pl.LazyFrame(
        INQUIRIES, schema=["user_id", "ts", "reason", "institution_type"], orient="row"
    ).with_columns(ts=utc("ts"))
    snapshots = pl.LazyFrame(
        SNAPSHOTS,
        schema=["user_id", "report_date", "total_limit", "total_balance", "max_dpd_current"],
        orient="row",
    ).with_columns(
        report_date=pl.col("report_date").str.to_date(),
        max_dpd_current=pl.col("max_dpd_current").cast(pl.Int16),
        open_accounts=pl.lit(2, pl.Int16),
        max_dpd_24m=pl.lit(0, pl.Int16),
    )
    repayments = pl.LazyFrame(
        REPAYMENTS, schema=["loan_id", "installment_no", "due_date", "paid_at"], orient="row"
    ).with_columns(
        installment_no=pl.col("installment_no").cast(pl.Int16),
        due_date=pl.col("due_date").str.to_date(),
        paid_at=utc("paid_at"),
        amount_due=pl.lit(100.0),
        amount_paid=pl.when(pl.col("paid_at").is_null()).then(0.0).otherwise(100.0),
    )
    return {
        "applications": apps,
        "bureau_inquiries": inquiries,
        "bureau_snapshots": snapshots,
        "repayments": repayments,
    }


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    data = tables()
    return build_family(bureau.BUREAU, data).join(
        build_family(history.HISTORY, data), on="application_id"
    )


def test_inquiries_by_reason_and_institution(features: pl.DataFrame) -> None:
    b1 = row(features, "b1")
    assert by_window(b1, "bureau_inquiries") == [3, 3, 4, 4]
    assert by_window(b1, "bureau_inquiries_reason_loan_approval") == [2, 2, 2, 2]
    assert by_window(b1, "bureau_inquiries_reason_self_query") == [1, 1, 1, 1]
    assert by_window(b1, "bureau_inquiries_reason_credit_card_approval") == [0, 0, 1, 1]
    assert by_window(b1, "bureau_inquiries_reason_guarantee") == [0, 0, 0, 0]
    assert by_window(b1, "bureau_inquiries_reason_post_loan") == [0, 0, 0, 0]
    assert by_window(b1, "bureau_inquiries_institution_bank") == [1, 1, 2, 2]
    assert by_window(b1, "bureau_inquiries_institution_microloan") == [1, 1, 1, 1]
    assert by_window(b1, "bureau_inquiries_institution_consumer_finance") == [1, 1, 1, 1]
    assert by_window(b1, "bureau_inquiries_institution_other") == [0, 0, 0, 0]
    assert by_window(b1, "bureau_nonbank_loan_inquiries") == [2, 2, 2, 2]


def test_inquiry_gaps_and_recency(features: pl.DataFrame) -> None:
    b1 = row(features, "b1")
    # 05-01 12:00, 07-10 00:00, 07-10 12:00, 07-14 12:00: gaps of 69.5, 0.5 and 4 days.
    assert b1["bureau_inquiry_gap_mean_days_180d"] == pytest.approx(74 / 3)
    assert b1["bureau_inquiry_gap_min_days_180d"] == pytest.approx(0.5)
    assert b1["bureau_days_since_last_inquiry"] == pytest.approx(0.5)
    b2 = row(features, "b2")  # a single inquiry
    assert b2["bureau_inquiry_gap_mean_days_180d"] is None
    assert b2["bureau_inquiry_gap_min_days_180d"] is None
    assert b2["bureau_days_since_last_inquiry"] == pytest.approx(0.25)
    b3 = row(features, "b3")  # none
    assert by_window(b3, "bureau_inquiries") == [0, 0, 0, 0]
    assert b3["bureau_days_since_last_inquiry"] is None


def test_snapshot_trend_ignores_the_report_dated_on_the_application_day(
    features: pl.DataFrame,
) -> None:
    b1 = row(features, "b1")  # latest usable: 07-01; 3 months earlier: 04-01
    assert b1["bureau_total_limit"] == 5000.0
    assert b1["bureau_report_age_days"] == 14
    assert b1["bureau_max_dpd_current_change_3m"] == 25.0
    assert b1["bureau_utilisation_change_3m"] == pytest.approx(0.8 - 0.25)
    assert b1["bureau_total_limit_change_3m"] == 3000.0
    # 02-01 to 07-01: the 01-01 report is older than 6 months, the 07-15 one is not usable.
    assert b1["bureau_worst_dpd_current_6m"] == 60.0


def test_snapshot_trend_with_a_missing_month_and_month_end_reports(
    features: pl.DataFrame,
) -> None:
    b2 = row(features, "b2")  # latest usable: 06-01; March missing, so 02-01
    assert b2["bureau_max_dpd_current_change_3m"] == -2.0
    assert b2["bureau_utilisation_change_3m"] == pytest.approx(0.1 - 0.5)
    assert b2["bureau_total_limit_change_3m"] == 200.0
    assert b2["bureau_worst_dpd_current_6m"] == 7.0  # 01-01 is exactly 6 months back
    b3 = row(features, "b3")  # a single report: no trend
    assert b3["bureau_max_dpd_current"] == 2.0
    assert b3["bureau_utilisation"] is None
    assert b3["bureau_max_dpd_current_change_3m"] is None
    assert b3["bureau_total_limit_change_3m"] is None
    assert b3["bureau_worst_dpd_current_6m"] == 2.0
    b4 = row(features, "b4")  # latest 04-30; 3 months earlier: 01-31
    assert b4["bureau_max_dpd_current_change_3m"] == -10.0
    assert b4["bureau_total_limit_change_3m"] == 400.0
    assert b4["bureau_worst_dpd_current_6m"] == 20.0


SHORTER = FeatureSettings(bureau_trend_months=2, bureau_worst_months=3)


def test_the_trend_and_worst_months_follow_the_settings() -> None:
    features = build_family(bureau.BUREAU, tables(), SHORTER)
    assert [c for c in features.columns if "_change_" in c or "_worst_" in c] == [
        "bureau_max_dpd_current_change_2m",
        "bureau_utilisation_change_2m",
        "bureau_total_limit_change_2m",
        "bureau_worst_dpd_current_3m",
    ]
    b1 = row(features, "b1")  # latest usable: 07-01; 2 months earlier: 05-01
    assert b1["bureau_max_dpd_current_change_2m"] == 30.0
    assert b1["bureau_total_limit_change_2m"] == 3000.0
    assert b1["bureau_worst_dpd_current_3m"] == 30.0  # 05-01 to 07-01: March's 60 is out
    b2 = row(features, "b2")  # latest usable: 06-01; 2 months earlier: 04-01
    assert b2["bureau_max_dpd_current_change_2m"] == 1.0
    assert b2["bureau_utilisation_change_2m"] == pytest.approx(0.1 - 0.0)
    assert b2["bureau_worst_dpd_current_3m"] == 1.0  # 04-01 is exactly 3 months back
    b4 = row(features, "b4")  # latest 04-30; 2 months earlier: 02-29
    assert b4["bureau_max_dpd_current_change_2m"] == -20.0
    assert b4["bureau_worst_dpd_current_3m"] == 20.0


def test_the_catalogue_and_the_store_manifest_follow_the_bureau_months() -> None:
    defs = {d.name: d for d in feature_definitions(SHORTER, TZ)}
    trend = defs["bureau_utilisation_change_2m"]
    assert trend.window == "latest report vs 2 months earlier"
    assert trend.description == "Change of the utilisation since the report 2 months earlier"
    worst = defs["bureau_worst_dpd_current_3m"]
    assert worst.window == "last 3 months of reports"
    assert "bureau_utilisation_change_3m" not in defs
    manifest = store_manifest(SHORTER, TZ, LabelSettings(), "raw")
    assert manifest != store_manifest(FeatureSettings(), TZ, LabelSettings(), "raw")
    assert manifest["settings"]["features"]["bureau_trend_months"] == 2


@pytest.mark.parametrize("key", ["bureau_trend_months", "bureau_worst_months"])
def test_bureau_months_below_one_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match=key):
        FeatureSettings(**{key: 0})


def test_previous_loan_and_open_installments(features: pl.DataFrame) -> None:
    h4 = row(features, "h4")  # h3 (same day) is not earlier; the previous loan is h2
    assert h4["history_prev_applications"] == 3
    assert h4["history_prev_rejections"] == 1
    assert h4["history_prev_loans"] == 2
    assert by_window(h4, "history_prev_loans") == [0, 1, 1, 1]
    # 2024-06-10 10:00 to 2024-07-01 00:00
    assert h4["history_days_since_prev_loan"] == pytest.approx(20 + 14 / 24)
    assert h4["history_prev_loan_amount"] == 1200.0
    # L0's four installments are due; #3 unpaid and #4 paid only after the cut-off.
    assert h4["history_open_installments"] == 2
    assert h4["history_worst_dpd"] == (date(2024, 7, 1) - date(2024, 3, 1)).days
    assert h4["history_on_time_share"] == pytest.approx(1 / 4)
    h2 = row(features, "h2")  # previous loan h0, 2023-12-01 10:00
    assert h2["history_days_since_prev_loan"] == pytest.approx(191 + 14 / 24)
    assert h2["history_prev_loan_amount"] == 500.0
    assert by_window(h2, "history_prev_loans") == [0, 0, 0, 0]
    assert h2["history_open_installments"] == 2


def test_no_previous_loan(features: pl.DataFrame) -> None:
    h0 = row(features, "h0")
    assert h0["history_days_since_prev_loan"] is None
    assert h0["history_prev_loan_amount"] is None
    assert h0["history_prev_loans"] == 0
    assert by_window(h0, "history_prev_loans") == [0, 0, 0, 0]
    assert h0["history_open_installments"] == 0
    assert h0["history_on_time_share"] is None

"""The contract's label on hand-made repayment schedules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from data.asof import build_view
from data.config import LabelSettings
from data.contract import APPLICATIONS, REPAYMENTS
from data.labels import label_loans

TZ = "Asia/Shanghai"
DISBURSED = date(2024, 1, 10)
FIRST_DUES = [date(2024, m, 10) for m in range(2, 8)]  # installments 1..6, due months 1..6


def paid_on(day: date) -> datetime:
    """Noon local time on `day` (04:00 UTC in Shanghai)."""
    return datetime(day.year, day.month, day.day, 4, tzinfo=UTC)


def application(app_id: str, decision: str = "approved") -> dict:
    return {
        "application_id": app_id,
        "user_id": f"u-{app_id}",
        "applied_at": paid_on(DISBURSED),
        "amount_requested": 3000.0,
        "term_months": 10,
        "channel": "organic",
        "decision": decision,
        "loan_id": f"L-{app_id}" if decision == "approved" else None,
    }


def schedule(app_id: str, paid: list[date | None]) -> list[dict]:
    """Installments 1..len(paid), due monthly from Feb 10; None means never paid."""
    rows = []
    for number, (due, paid_day) in enumerate(zip(FIRST_DUES, paid, strict=False), start=1):
        rows.append(
            {
                "loan_id": f"L-{app_id}",
                "installment_no": number,
                "due_date": due,
                "amount_due": 330.0,
                "paid_at": paid_on(paid_day) if paid_day else None,
                "amount_paid": 330.0 if paid_day else 0.0,
            }
        )
    return rows


def on_time() -> list[date | None]:
    return list(FIRST_DUES)


def labels_at(as_of: date, apps: list[dict], reps: list[dict]) -> dict[str, dict]:
    tables = {
        "applications": pl.LazyFrame(apps, schema=APPLICATIONS.schema),
        "repayments": pl.LazyFrame(reps, schema=REPAYMENTS.schema),
    }
    view = build_view(tables, as_of, TZ)
    frame = label_loans(
        view["applications"], view["repayments"], as_of, TZ, LabelSettings()
    ).collect()
    return {row["application_id"]: row for row in frame.iter_rows(named=True)}


LAST_DUE = FIRST_DUES[-1]
MATURE_AS_OF = LAST_DUE + timedelta(days=120)


def test_paid_89_days_late_is_good_and_90_is_bad() -> None:
    late_89 = on_time()
    late_89[2] = FIRST_DUES[2] + timedelta(days=89)
    late_90 = on_time()
    late_90[2] = FIRST_DUES[2] + timedelta(days=90)
    rows = labels_at(
        MATURE_AS_OF,
        [application("a89"), application("a90")],
        schedule("a89", late_89) + schedule("a90", late_90),
    )
    assert rows["a89"]["label"] == 0 and rows["a89"]["worst_dpd_in_window"] == 89
    assert rows["a90"]["label"] == 1 and rows["a90"]["worst_dpd_in_window"] == 90


def test_unpaid_and_immature_is_unlabelled() -> None:
    paid = on_time()
    paid[5] = None  # the last in-window installment is unpaid
    as_of = FIRST_DUES[5] + timedelta(days=89)
    row = labels_at(as_of, [application("a")], schedule("a", paid))["a"]
    assert row["is_labelled"] is False and row["label"] is None


def test_unpaid_and_mature_is_bad() -> None:
    paid = on_time()
    paid[5] = None
    as_of = FIRST_DUES[5] + timedelta(days=90)
    row = labels_at(as_of, [application("a")], schedule("a", paid))["a"]
    assert row["label"] == 1 and row["is_mature"] is True


def test_bad_is_labelled_before_the_loan_matures() -> None:
    paid = on_time()
    paid[0] = None
    as_of = FIRST_DUES[0] + timedelta(days=90)
    row = labels_at(as_of, [application("a")], schedule("a", paid))["a"]
    assert row["label"] == 1 and row["is_mature"] is False


def test_late_payer_who_cures_after_90_days_stays_bad() -> None:
    paid = on_time()
    paid[1] = FIRST_DUES[1] + timedelta(days=100)
    row = labels_at(MATURE_AS_OF, [application("a")], schedule("a", paid))["a"]
    assert row["label"] == 1


def test_payment_after_as_of_reads_as_unpaid() -> None:
    paid = on_time()
    paid[0] = FIRST_DUES[0] + timedelta(days=100)
    as_of = FIRST_DUES[0] + timedelta(days=95)  # the cure is still in the future
    row = labels_at(as_of, [application("a")], schedule("a", paid))["a"]
    assert row["label"] == 1 and row["worst_dpd_in_window"] == 95


def test_good_loan_matures_only_when_every_window_installment_is_past_threshold() -> None:
    early = labels_at(LAST_DUE + timedelta(days=89), [application("a")], schedule("a", on_time()))[
        "a"
    ]
    late = labels_at(LAST_DUE + timedelta(days=90), [application("a")], schedule("a", on_time()))[
        "a"
    ]
    assert early["label"] is None
    assert late["label"] == 0


def test_installments_after_the_window_do_not_count() -> None:
    rows = schedule("a", on_time()) + [
        {
            "loan_id": "L-a",
            "installment_no": 7,
            "due_date": date(2024, 8, 10),
            "amount_due": 330.0,
            "paid_at": None,
            "amount_paid": 0.0,
        }
    ]
    row = labels_at(date(2025, 3, 1), [application("a")], rows)["a"]
    assert row["label"] == 0 and row["installments_in_window"] == 6


def test_rejected_application_is_never_labelled() -> None:
    rows = labels_at(MATURE_AS_OF, [application("r", "rejected")], [])
    assert rows == {}


@pytest.mark.parametrize("window,threshold", [(3, 30), (6, 60)])
def test_window_and_threshold_are_settings(window: int, threshold: int) -> None:
    paid = on_time()
    paid[4] = FIRST_DUES[4] + timedelta(days=threshold)  # installment 5, due month 5
    tables = {
        "applications": pl.LazyFrame([application("a")], schema=APPLICATIONS.schema),
        "repayments": pl.LazyFrame(schedule("a", paid), schema=REPAYMENTS.schema),
    }
    view = build_view(tables, MATURE_AS_OF, TZ)
    settings = LabelSettings(window_months=window, threshold_days=threshold)
    label = (
        label_loans(view["applications"], view["repayments"], MATURE_AS_OF, TZ, settings)
        .collect()
        .item(0, "label")
    )
    assert label == (1 if window >= 5 else 0)


def test_loan_without_schedule_stays_unlabelled() -> None:
    row = labels_at(MATURE_AS_OF, [application("a")], [])["a"]
    assert row["is_labelled"] is False and row["installments_in_window"] == 0


def test_cohort_is_complete_only_when_its_last_day_has_matured() -> None:
    # Disbursed in January 2024: the month's last loan (Jan 31) is mature from Jul 31 + 90 days.
    last_mature = date(2024, 7, 31) + timedelta(days=90)
    before = labels_at(
        last_mature - timedelta(days=1), [application("a")], schedule("a", on_time())
    )
    after = labels_at(last_mature, [application("a")], schedule("a", on_time()))
    assert before["a"]["is_mature"] and not before["a"]["cohort_complete"]
    assert after["a"]["cohort_complete"]

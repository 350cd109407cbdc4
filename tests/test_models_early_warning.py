"""Post-loan early warning: who goes on the list and why, the days to the next instalment, and
the backtest's shares against random lists."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest

from models.config import DecisionSettings, EarlyWarningSettings
from models.early_warning import (
    first_missed,
    next_instalments,
    trigger,
    warning_backtest,
    with_movement,
)

TZ = "Asia/Shanghai"


def test_a_loan_goes_on_the_list_by_grade_or_by_pd_ratio() -> None:
    """Grades A <= 1%, B <= 2%, C <= 4%, D <= 7%, ..., G above 20% (the default policy)."""
    rescored = pl.DataFrame({"application_id": ["same", "grade", "ratio", "both", "better"]})
    today = np.array([0.015, 0.030, 0.50, 0.060, 0.005])
    then = np.array([0.014, 0.019, 0.21, 0.019, 0.030])
    settings = EarlyWarningSettings()
    moved = with_movement(
        rescored.with_columns(pd=pl.Series(today)).with_columns(
            grade=pl.Series(["B", "C", "G", "D", "A"])
        ),
        then,
        DecisionSettings(),
        settings,
    ).with_columns(trigger=pl.when("early_warning").then(trigger(settings)))
    rows = {r["application_id"]: r for r in moved.iter_rows(named=True)}
    assert [rows[k]["grade_steps"] for k in rows] == [0, 1, 0, 2, -2]
    assert [rows[k]["early_warning"] for k in rows] == [False, True, True, True, False]
    assert rows["grade"]["trigger"] == "grade B at disbursal, C today"
    assert rows["ratio"]["trigger"] == "PD 2.4x its PD at disbursal"
    assert rows["both"]["trigger"] == "grade B at disbursal, D today; PD 3.2x its PD at disbursal"
    assert rows["same"]["trigger"] is None and rows["better"]["trigger"] is None

    stricter = EarlyWarningSettings(grades_worse=2, pd_factor=3.0)
    listed = with_movement(
        moved.select("application_id", "pd", "grade"), then, DecisionSettings(), stricter
    )
    assert listed.filter("early_warning")["application_id"].to_list() == ["both"]


def utc(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def repayments() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "loan_id": ["L1", "L1", "L1", "L2", "L2", "L3"],
            "installment_no": [1, 2, 3, 1, 2, 1],
            "due_date": [
                date(2025, 5, 1),
                date(2025, 6, 1),
                date(2025, 7, 1),
                date(2025, 5, 10),
                date(2025, 6, 10),
                date(2025, 5, 20),
            ],
            # L1 pays its first on time, its second a day late (after the scoring day);
            # L2 never pays; L3 paid before the scoring day (off book).
            "paid_at": [utc("2025-04-30"), utc("2025-06-02"), None, None, None, utc("2025-05-01")],
        },
        schema_overrides={"paid_at": pl.Datetime("us", "UTC")},
    )


def test_the_next_instalment_is_the_first_not_paid_before_the_day() -> None:
    due = next_instalments(repayments(), date(2025, 5, 25), TZ).collect().sort("loan_id")
    assert due.to_dicts() == [
        {"loan_id": "L1", "next_due": date(2025, 6, 1), "days_to_next_instalment": 7},
        {"loan_id": "L2", "next_due": date(2025, 5, 10), "days_to_next_instalment": -15},
    ]


def test_the_first_missed_instalment_is_the_first_paid_late_or_unpaid_after_its_due_date() -> None:
    missed = first_missed(repayments(), date(2025, 8, 1), TZ).collect().sort("loan_id")
    assert missed.to_dicts() == [
        {"loan_id": "L1", "first_missed": date(2025, 6, 1)},
        {"loan_id": "L2", "first_missed": date(2025, 5, 10)},
    ]


def test_the_backtest_counts_only_warnings_before_the_first_missed_instalment() -> None:
    """Four matured loans on book on two days (and one immature, left out): D1 defaults and is
    warned on day 1, before its miss; D2 defaults and is warned only after its miss; G1 is
    warned and repays; G2 is never warned."""
    day1, day2 = date(2025, 5, 1), date(2025, 6, 1)
    daily = pl.DataFrame(
        {
            "day": [day1] * 5 + [day2] * 5,
            "loan_id": ["D1", "D2", "G1", "G2", "I1"] * 2,
            "early_warning": [True, False, True, False, True, True, True, False, False, True],
        }
    )
    outcomes = pl.DataFrame(
        {
            "loan_id": ["D1", "D2", "G1", "G2", "I1"],
            "label": [1, 1, 0, 0, None],
            "first_missed": [date(2025, 5, 15), date(2025, 5, 20), None, None, None],
        },
        schema_overrides={"label": pl.Int8},
    )
    result = warning_backtest(daily, outcomes, draws=200, seed=1)
    assert (result.loans, result.defaults, result.days) == (4, 2, 2)
    assert result.warned == 2  # D1 and G1; D2's warning came after its first miss
    assert result.caught == 0.5 and result.precision == 0.5
    # Random lists of 2 of the 4 eligible loans (2 defaults): half the defaults, half bad.
    assert result.random_caught == pytest.approx(0.5, abs=0.08)
    assert result.random_precision == pytest.approx(0.5, abs=0.08)
    # A list that holds only the defaults beats random lists of its size.
    perfect = daily.with_columns(early_warning=pl.col("loan_id").is_in(["D1", "D2"]))
    best = warning_backtest(perfect, outcomes, draws=400, seed=2)
    assert (best.caught, best.precision) == (1.0, 1.0)
    assert best.random_caught == pytest.approx(0.5, abs=0.05)
    assert best.random_precision == pytest.approx(0.5, abs=0.05)
    assert result.as_dict()["draws"] == 200

"""Protected attributes stay out of model features and are kept for fairness reporting only."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from pydantic import ValidationError

from data.config import LabelSettings
from data.contract import TABLES
from features.base import FeatureSettings
from features.build import FAIRNESS, application_spine, build_features, feature_definitions

TZ = "Asia/Shanghai"


def tiny_tables() -> dict[str, pl.LazyFrame]:
    tables = {name: pl.LazyFrame(schema=t.read_schema) for name, t in TABLES.items()}
    tables["users"] = pl.LazyFrame(
        {
            "user_id": ["u1"],
            "registered_at": [datetime(2020, 1, 1, tzinfo=UTC)],
            "birth_year": [1990],
            "gender": ["F"],
            "city_tier": [2],
            "occupation": ["gig"],
        },
        schema=TABLES["users"].read_schema,
    )
    tables["applications"] = pl.LazyFrame(
        {
            "application_id": ["a1"],
            "user_id": ["u1"],
            "applied_at": [datetime(2024, 6, 1, 4, tzinfo=UTC)],
            "amount_requested": [3000.0],
            "term_months": [10],
            "channel": ["organic"],
            "decision": ["rejected"],
            "loan_id": [None],
        },
        schema=TABLES["applications"].read_schema,
    )
    return tables


def build(settings: FeatureSettings) -> tuple[list[str], pl.DataFrame]:
    tables = tiny_tables()
    spine = application_spine(tables["applications"], TZ)
    defs, frame = build_features(tables, spine, settings, TZ, LabelSettings())
    return [d.name for d in defs], frame.collect()


@pytest.mark.parametrize("protected", [["gender"], ["gender", "age"]])
def test_protected_attributes_are_never_model_features(protected: list[str]) -> None:
    settings = FeatureSettings(protected=protected)
    names, frame = build(settings)
    assert not [n for n in names if "gender" in n or n.startswith("fairness_")]
    assert ("application_age_years" in names) == ("age" not in protected)
    assert names == [d.name for d in feature_definitions(settings, TZ)]
    # Kept beside the features for fairness reporting.
    row = frame.select(*FAIRNESS).row(0, named=True)
    assert row == {"fairness_gender": "F", "fairness_age_years": 34.0}


def test_gender_cannot_be_made_a_feature() -> None:
    with pytest.raises(ValidationError, match="gender is a protected attribute"):
        FeatureSettings(protected=["age"])


def test_amount_relative_to_salary_is_null_without_salary() -> None:
    names, frame = build(FeatureSettings())
    assert "application_amount_to_monthly_salary" in names
    assert frame["application_amount_to_monthly_salary"].is_null().all()


def test_amount_relative_to_salary_uses_the_longest_window() -> None:
    tables = tiny_tables()
    salary = {
        "txn_id": ["t1", "t2"],
        "user_id": ["u1", "u1"],
        "ts": [datetime(2024, 5, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC)],  # in, out
        "direction": ["in", "in"],
        "txn_type": ["salary", "salary"],
        "amount": [6000.0, 50000.0],
        "counterparty_id": [None, None],
        "channel": ["bank_card", "bank_card"],
    }
    tables["transactions"] = pl.LazyFrame(salary, schema=TABLES["transactions"].read_schema)
    spine = application_spine(tables["applications"], TZ)
    _, frame = build_features(tables, spine, FeatureSettings(), TZ, LabelSettings())
    # 6000 CNY over 180 days is 1000 CNY a month; 3000 requested is three months of salary.
    assert frame.collect()["application_amount_to_monthly_salary"].item() == pytest.approx(3.0)

"""GX side of the data gate: committed suites, the runner, statistical checks and Data Docs."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from data.config import StatsSettings
from data.contract import TABLES
from data.rules import RULES, Kind
from expectations.naming import (
    FEATURES_SUITE,
    SUITES_DIR,
    TRAINING_SUITE,
    derived_rules,
    raw_suite_name,
    rule_column,
)
from expectations.runner import SuiteResult, load_suite, validate
from expectations.stats import statistical_checks
from expectations.suites import build_suites, features_suite, stale_suites, training_suite
from features.base import FeatureSettings
from features.build import CATEGORICAL, KEYS, feature_definitions

TZ = "Asia/Shanghai"
BASE = datetime(2024, 3, 1, 4, tzinfo=UTC)  # local noon


# --------------------------------------------------------------------------- frames


def good_table(table: str, n: int = 20) -> pl.DataFrame:
    """`n` rows of `table` that obey every contract rule, plus the derived _rule_* columns."""
    data: dict[str, list[object]] = {}
    for col in TABLES[table].columns:
        if col.values is not None:
            data[col.name] = [col.values[i % len(col.values)] for i in range(n)]
        elif col.dtype == pl.String():
            data[col.name] = [f"{col.name}-{i}" for i in range(n)]
        elif isinstance(col.dtype, pl.Datetime):
            data[col.name] = [BASE + timedelta(minutes=i) for i in range(n)]
        elif col.dtype == pl.Date():
            data[col.name] = [date(2024, 1, 1) + timedelta(days=i) for i in range(n)]
        elif col.min_value is not None:
            data[col.name] = [col.min_value] * n
        elif col.max_value is not None:
            data[col.name] = [col.max_value] * n
        else:
            data[col.name] = [10.0 + i for i in range(n)]
    frame = pl.DataFrame(data).cast(dict(TABLES[table].schema))
    return frame.with_columns(pl.lit(True).alias(rule_column(r)) for r in derived_rules(table))


def set_value(frame: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    values = frame.get_column(column).to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))


def only_failure(result: SuiteResult) -> tuple[str, int | None]:
    failures = result.failures
    assert len(failures) == 1, [f.message for f in failures]
    return failures[0].name, failures[0].unexpected_count


# --------------------------------------------------------------------------- suite files


def test_committed_suites_are_up_to_date():
    assert stale_suites() == [], "run `python -m expectations.suites` and commit the result"


def test_every_rule_has_exactly_one_expectation_in_its_tables_suite():
    for table, rules in RULES.items():
        data = json.loads((SUITES_DIR / f"{raw_suite_name(table)}.json").read_text())
        counts = Counter(e["meta"].get("rule") for e in data["expectations"])
        counts.pop(None, None)
        assert counts == Counter(r.name for r in rules), table
        derived = {
            e["kwargs"]["column"]
            for e in data["expectations"]
            if e["kwargs"].get("column", "").startswith("_rule_")
        }
        assert derived == {rule_column(r) for r in derived_rules(table)}


def test_suite_files_load_and_equal_the_generator():
    suites = build_suites()
    assert set(suites) == {raw_suite_name(t) for t in TABLES} | {FEATURES_SUITE, TRAINING_SUITE}
    loaded = load_suite("raw.applications")
    assert [e.expectation_type for e in loaded.expectations] == [
        e.expectation_type for e in suites["raw.applications"].expectations
    ]
    with pytest.raises(FileNotFoundError):
        load_suite("raw.nope")


# --------------------------------------------------------------------------- runner, raw suites


@pytest.mark.parametrize("table", list(TABLES))
def test_good_rows_pass_their_tables_suite(table):
    result = validate(raw_suite_name(table), good_table(table))
    assert result.success, result.messages()
    assert all(o.success for o in result.results)
    assert json.loads(json.dumps(result.raw))["success"] is True


@pytest.mark.parametrize(
    ("table", "column", "row", "value", "rule", "unexpected"),
    [
        ("transactions", "txn_id", 3, None, "txn_id_not_null", 1),
        ("transactions", "direction", 2, "sideways", "direction_in_set", 1),
        ("transactions", "amount", 5, 0.0, "amount_positive", 1),
        ("consumption", "amount", 1, -3.5, "amount_positive", 1),
        ("applications", "term_months", 0, 7, "term_months_in_set", 1),
        ("users", "city_tier", 4, 9, "city_tier_in_range", 1),
        ("bureau_snapshots", "total_limit", 0, -1.0, "total_limit_non_negative", 1),
        # a duplicate id: both rows that share it are unexpected
        ("transactions", "txn_id", 7, "txn_id-0", "txn_id_unique", 2),
        ("repayments", "loan_id", 1, "loan_id-0", "loan_id_installment_no_unique", 2),
    ],
)
def test_breaking_one_rule_fails_exactly_that_expectation(
    table, column, row, value, rule, unexpected
):
    frame = set_value(good_table(table), column, row, value)
    result = validate(raw_suite_name(table), frame)
    assert not result.success
    assert only_failure(result) == (rule, unexpected)
    assert rule in result.failures[0].message


def test_derived_rule_column_false_fails_that_rule():
    rule = next(r for r in RULES["applications"] if r.kind is Kind.LOAN_ID_IFF_APPROVED)
    frame = good_table("applications")
    frame = frame.with_columns(
        pl.arange(0, frame.height).is_in([1, 4]).not_().alias(rule_column(rule))
    )
    result = validate("raw.applications", frame, result_format="BASIC")
    assert only_failure(result) == (rule.name, 2)


def test_missing_column_fails_without_raising():
    frame = good_table("transactions").drop("channel")
    result = validate("raw.transactions", frame)
    failed = {o.name for o in result.failures}
    assert {"contract_columns", "channel_not_null", "channel_in_set"} <= failed
    assert any(o.exception for o in result.failures)


# --------------------------------------------------------------------------- features, training


@pytest.fixture(scope="module")
def feature_defs():
    return feature_definitions(FeatureSettings(), TZ)


def good_features(defs, n: int = 50) -> pl.DataFrame:
    data: dict[str, object] = {
        "application_id": [f"a{i}" for i in range(n)],
        "user_id": [f"u{i}" for i in range(n)],
        "applied_at": [BASE] * n,
    }
    for d in defs:
        low, high = getattr(d, "min_value", None), getattr(d, "max_value", None)
        if d.name in CATEGORICAL:
            data[d.name] = [CATEGORICAL[d.name].categories[0]] * n
        else:
            value = low if low is not None else (high if high is not None else 1.0)
            data[d.name] = [float(value)] * n
    return pl.DataFrame(data)


def test_feature_suite_passes_good_features_and_catches_bad_ones(feature_defs):
    # ~350 expectations cost ~3 s per validation whatever the rows: two validations only
    suite = features_suite(feature_defs, StatsSettings())
    frame = good_features(feature_defs)
    assert set(KEYS) <= set(frame.columns)
    good = validate(suite, frame)
    assert good.success, good.messages()
    assert good.action == "stop"

    bounded = next(d for d in feature_defs if d.max_value is not None)
    always_null, missing = (d.name for d in feature_defs[-2:])
    bad_frame = set_value(frame, bounded.name, 0, bounded.max_value + 1)
    bad_frame = bad_frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(always_null))
    bad = validate(suite, bad_frame.drop(missing))
    assert bad.stops
    failed = {o.name: o for o in bad.failures}
    assert set(failed) == {
        f"{bounded.name}_in_range",
        f"{always_null}_not_always_null",
        f"{missing}_exists",
        f"{missing}_not_always_null",  # cannot run without the column
        *([f"{missing}_in_range"] if feature_defs[-1].min_value is not None else []),
    }
    assert failed[f"{bounded.name}_in_range"].unexpected_count == 1
    assert failed[f"{always_null}_not_always_null"].unexpected_count == frame.height


def test_training_suite_checks_labels_and_bad_rate():
    suite = training_suite(StatsSettings())
    n = 100
    frame = pl.DataFrame(
        {
            "application_id": [f"a{i}" for i in range(n)],
            "label": [int(i % 10 == 0) for i in range(n)],
        },
        schema={"application_id": pl.String, "label": pl.Int8},
    )
    assert validate(suite, frame).success
    all_good = frame.with_columns(label=pl.lit(0, dtype=pl.Int8))
    result = validate(suite, all_good)
    assert only_failure(result)[0] == "bad_rate"
    assert result.failures[0].observed_value == 0
    assert result.stops
    assert only_failure(validate(suite, set_value(frame, "label", 3, 2)))[0] == "label_in_set"
    assert not validate(suite, frame.head(0)).success


# --------------------------------------------------------------------------- statistical checks

AS_OF = date(2024, 5, 10)
DAYS = 70
PER_DAY = 40


def consumption_days(days: int = DAYS) -> pl.DataFrame:
    """`PER_DAY` purchases at local noon on each of the `days` days before AS_OF."""
    start = datetime(AS_OF.year, AS_OF.month, AS_OF.day, 4, tzinfo=UTC) - timedelta(days=days)
    n = days * PER_DAY
    categories = TABLES["consumption"].column("merchant_category").values
    methods = TABLES["consumption"].column("pay_method").values
    return pl.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n)],
            "user_id": [f"u{i % 97}" for i in range(n)],
            "ts": [start + timedelta(days=i // PER_DAY, seconds=i % PER_DAY) for i in range(n)],
            "amount": [20.0 + (i * 37) % 200 for i in range(n)],
            "merchant_category": [categories[i % len(categories)] for i in range(n)],
            "city": ["Shanghai"] * n,
            "device_id": [f"d{i % 13}" for i in range(n)],
            "pay_method": [methods[i % len(methods)] for i in range(n)],
        }
    ).cast(dict(TABLES["consumption"].schema))


def recent(frame: pl.DataFrame, days: int = 7) -> pl.Expr:
    cutoff = datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=UTC) - timedelta(days=days)
    return pl.col("ts") >= cutoff


def run_stats(frame: pl.DataFrame, settings: StatsSettings | None = None) -> dict[str, SuiteResult]:
    results = statistical_checks(
        {"consumption": frame.lazy()}, AS_OF, TZ, settings or StatsSettings()
    )
    return {r.suite_name: r for r in results}


def test_stats_pass_on_steady_data():
    results = run_stats(consumption_days())
    assert set(results) == {
        "stats.volume.consumption",
        "stats.amount.consumption",
        "stats.enum.consumption",
    }
    for result in results.values():
        assert result.success, result.messages()
        assert not result.skipped
        assert result.rows is not None and result.rows < 100
    assert results["stats.volume.consumption"].rows == 7


def test_amounts_in_cents_fail_the_amount_check_with_stop():
    frame = consumption_days()
    frame = frame.with_columns(
        amount=pl.when(recent(frame)).then(pl.col("amount") * 100).otherwise(pl.col("amount"))
    )
    results = run_stats(frame)
    amount = results["stats.amount.consumption"]
    assert not amount.success
    assert amount.action == "stop" and amount.stops
    (failure,) = amount.failures
    assert "consumption.amount" in failure.message and "bound [0.5, 2.0]" in failure.message
    assert 90 < failure.observed_value[0] < 110  # the recent/history median ratio
    assert results["stats.volume.consumption"].success


def test_tripled_recent_volume_fails_the_volume_check():
    frame = consumption_days()
    last_days = frame.filter(recent(frame, days=3))
    results = run_stats(pl.concat([frame, last_days, last_days]))
    volume = results["stats.volume.consumption"]
    assert not volume.success and volume.action == "warn" and not volume.stops
    (failure,) = volume.failures
    assert failure.unexpected_count == 3
    assert "3 of 7 recent days" in failure.message
    # doubling sits exactly on the default upper bound (inclusive); a tighter bound catches it
    doubled = pl.concat([frame, last_days])
    tight = StatsSettings(volume_ratio=(0.5, 1.5))
    assert run_stats(doubled)["stats.volume.consumption"].success
    assert not run_stats(doubled, tight)["stats.volume.consumption"].success


def test_missing_recent_days_fail_the_volume_check():
    frame = consumption_days()
    frame = frame.filter(~recent(frame, days=2))
    volume = run_stats(frame)["stats.volume.consumption"]
    assert volume.failures[0].unexpected_count == 2


def test_enum_share_shift_fails_the_enum_check():
    frame = consumption_days()
    frame = frame.with_columns(
        merchant_category=pl.when(recent(frame))
        .then(pl.lit("luxury"))
        .otherwise(pl.col("merchant_category"))
    )
    enum = run_stats(frame)["stats.enum.consumption"]
    assert not enum.success
    (failure,) = enum.failures
    assert failure.check == "enum.consumption.merchant_category"
    assert "'luxury'" in failure.message
    assert {o.check for o in enum.results} == {
        "enum.consumption.merchant_category",
        "enum.consumption.pay_method",
    }


def test_short_history_skips_with_a_note():
    results = run_stats(consumption_days(days=10))
    for result in results.values():
        assert result.success and result.skipped
        assert "history" in result.notes[0]


def test_freshness_stops_when_no_table_has_a_row_before_the_as_of_date():
    frame = consumption_days()
    settings = StatsSettings()
    late = AS_OF + timedelta(days=settings.history_days + settings.recent_days)
    checks = statistical_checks(
        {"consumption": frame.lazy()}, late, TZ, settings, {"consumption": frame.height}
    )
    freshness = {r.suite_name: r for r in checks}["stats.freshness"]
    assert freshness.stops
    (failure,) = freshness.failures
    assert f"as-of date {late}" in failure.message
    assert f"{frame.height:,} older rows" in failure.message
    # The day before, the newest day of data is inside the window: the check passes.
    checks = statistical_checks(
        {"consumption": frame.lazy()},
        late - timedelta(days=1),
        TZ,
        settings,
        {"consumption": frame.height},
    )
    assert {r.suite_name: r for r in checks}["stats.freshness"].success


def test_freshness_skips_tables_without_rows_and_runs_only_with_kept_counts():
    empty = consumption_days().clear()
    checks = statistical_checks(
        {"consumption": empty.lazy()}, AS_OF, TZ, StatsSettings(), {"consumption": 0}
    )
    freshness = {r.suite_name: r for r in checks}["stats.freshness"]
    assert freshness.success and freshness.skipped
    assert "stats.freshness" not in run_stats(consumption_days())


# --------------------------------------------------------------------------- data docs


def test_data_docs_and_json(tmp_path):
    from expectations.docs import build_data_docs, results_json

    bad = set_value(good_table("transactions"), "amount", 0, -1.0)
    results = [
        validate("raw.transactions", bad),
        *run_stats(consumption_days()).values(),
        *run_stats(consumption_days(days=10)).values(),
    ]
    index = build_data_docs(results, tmp_path / "docs")
    assert index.name == "index.html" and index.is_file()
    html = index.read_text()
    for name in ("raw.transactions", "stats.volume.consumption", "stats.enum.consumption"):
        assert name in html
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))
    summary = json.loads(results_json(results))
    assert summary["success"] is False
    assert summary["suites"][0]["expectations"][0]["name"] == "contract_columns"
    assert "amount_positive" in {
        e["name"] for e in summary["suites"][0]["expectations"] if not e["success"]
    }

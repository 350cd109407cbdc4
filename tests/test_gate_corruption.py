"""The data gate against corrupted exports: one fault at a time, on clean generated data.

Every case asserts the outcome (a stop naming what is wrong, or the right rows set aside with
the right reason) and the conservation of rows: rows read = rows kept + rows set aside, where
rows read is counted here, straight from the files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from data.config import ValidationSettings
from data.generator import GeneratorConfig, generate
from data.readers import ContractError
from data.validation import REASON, GateReport, run_gate, scan_validated
from expectations.gate import run_data_gate

TZ = "Asia/Shanghai"
CONFIG = GeneratorConfig(users=800, months=8, seed=5, start=date(2024, 1, 1))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gate") / "raw"
    generate(out, CONFIG, progress=False)
    return out


@pytest.fixture
def raw(clean: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "raw"
    shutil.copytree(clean, copy)
    return copy


def files(raw: Path, table: str) -> list[Path]:
    return sorted((raw / table).rglob("*.parquet"))


def rewrite(raw: Path, table: str, change: Callable[[pl.DataFrame], pl.DataFrame], n: int = 1):
    """Apply `change` to the first `n` files of a table, in place."""
    for path in files(raw, table)[:n]:
        change(pl.read_parquet(path)).write_parquet(path)


def rows_on_disk(raw: Path, table: str) -> int:
    """The rows the table's files hold, from their footers."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files(raw, table))


def gate(raw: Path, tmp_path: Path, as_of: date | None = None, **settings) -> GateReport:
    report = run_gate(raw, tmp_path / "gate", ValidationSettings(**settings), TZ, as_of)
    for name, count in report.tables.items():
        assert count.rows_read == count.rows_kept + count.rows_set_aside, name
        if (raw / name).exists():
            assert count.rows_read == rows_on_disk(raw, name), name
    return report


def quarantined(report: GateReport, table: str) -> pl.DataFrame:
    path = report.quarantine / f"{table}.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame()


def test_clean_data_passes_with_nothing_set_aside(clean: Path, tmp_path: Path) -> None:
    report = gate(clean, tmp_path)
    assert report.ok, report.stops
    assert all(count.rows_set_aside == 0 for count in report.tables.values())
    kept = scan_validated(report, TZ)
    assert kept["consumption"].select(pl.len()).collect().item() == rows_on_disk(
        clean, "consumption"
    )


@pytest.mark.parametrize(
    "table,column,value,reason",
    [
        ("consumption", "user_id", None, "user_id_not_null"),
        ("transactions", "txn_id", None, "txn_id_not_null"),
        ("consumption", "merchant_category", "crypto", "merchant_category_in_set"),
        ("transactions", "direction", "sideways", "direction_in_set"),
        ("transactions", "amount", -5.0, "amount_positive"),
        ("consumption", "amount", 0.0, "amount_positive"),
        ("consumption", "amount", float("nan"), "amount_positive"),
        ("consumption", "user_id", "U-nobody", "user_id_known"),
        ("bureau_snapshots", "total_limit", -1.0, "total_limit_non_negative"),
        # Contract-valid but beyond pdflow's MAX_AMOUNT: the features could not hold them.
        ("consumption", "amount", 1e31, "amount_in_range"),
        ("transactions", "amount", 2e12, "amount_in_range"),
        ("bureau_snapshots", "total_balance", 1e300, "total_balance_in_range"),
    ],
)
def test_row_faults_are_set_aside_with_their_rule(
    raw: Path, tmp_path: Path, table: str, column: str, value: object, reason: str
) -> None:
    broken = 3
    dtype = pl.read_parquet_schema(files(raw, table)[0])[column]
    rewrite(
        raw,
        table,
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < broken)
            .then(pl.lit(value, dtype=dtype))
            .otherwise(pl.col(column))
            .alias(column)
        ),
    )
    report = gate(raw, tmp_path)
    assert report.tables[table].reasons == {reason: broken}
    aside = quarantined(report, table)
    assert aside.height == broken and set(aside[REASON]) == {reason}
    assert aside["_file"].str.contains(table).all()


@pytest.mark.parametrize(
    "table,column", [("social", "peer_id"), ("transactions", "counterparty_id")]
)
def test_peers_and_payees_who_are_not_customers_are_kept(
    raw: Path, tmp_path: Path, table: str, column: str
) -> None:
    # Contract 1.1: a friend or payee need not be a customer (nor registered yet).
    outsiders = 5
    rewrite(
        raw,
        table,
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < outsiders)
            .then(pl.lit("U-not-a-customer"))
            .otherwise(pl.col(column))
            .alias(column)
        ),
    )
    report = gate(raw, tmp_path)
    assert report.tables[table].rows_set_aside == 0
    kept = scan_validated(report, TZ)[table].filter(pl.col(column) == "U-not-a-customer")
    assert kept.select(pl.len()).collect().item() == outsiders


@pytest.mark.parametrize(
    "table,column,reason",
    [
        ("social", "peer_id", "peer_id_differs_from_user_id"),
        ("transactions", "counterparty_id", "counterparty_id_differs_from_user_id"),
    ],
)
def test_a_user_named_as_their_own_peer_is_set_aside(
    raw: Path, tmp_path: Path, table: str, column: str, reason: str
) -> None:
    # The contract's peer and counterparty are another user: a self-loop would count the
    # applicant among their own friends (and their own default among the friends').
    broken = 4
    rewrite(
        raw,
        table,
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < broken)
            .then(pl.col("user_id"))
            .otherwise(pl.col(column))
            .alias(column)
        ),
    )
    report = gate(raw, tmp_path)
    assert report.tables[table].reasons == {reason: broken}
    assert set(quarantined(report, table)[REASON]) == {reason}


@pytest.mark.parametrize("micros", [-(2**62), -(2**61), 2**61, 2**62])
def test_timestamps_python_cannot_hold_are_set_aside(
    raw: Path, tmp_path: Path, micros: int
) -> None:
    # Years around -144,000 and 148,000: contract-valid types, but no date can be inferred or
    # computed from them; they would move the default as-of date out of reach.
    absurd = pl.lit(micros, pl.Int64).cast(pl.Datetime("us", "UTC"))
    broken = 2
    for table, column in (("consumption", "ts"), ("repayments", "paid_at")):
        rewrite(
            raw,
            table,
            lambda df, c=column: df.with_columns(
                pl.when(pl.int_range(pl.len()) < broken).then(absurd).otherwise(pl.col(c)).alias(c)
            ),
        )
    clean_as_of = gate(raw, tmp_path / "clean").as_of
    report = gate(raw, tmp_path)
    assert report.as_of == clean_as_of < date(2025, 1, 1)
    assert report.tables["consumption"].reasons == {"ts_in_range": broken}
    assert report.tables["repayments"].reasons == {"paid_at_in_range": broken}


def test_rows_after_the_as_of_date_are_set_aside_and_payments_read_unpaid(
    raw: Path, tmp_path: Path
) -> None:
    as_of = CONFIG.start + timedelta(days=120)
    report = gate(raw, tmp_path, as_of=as_of)
    assert report.ok, report.stops
    later = (
        pl.scan_parquet(files(raw, "consumption"))
        .filter(pl.col("ts").dt.convert_time_zone(TZ).dt.date() >= as_of)
        .select(pl.len())
        .collect()
        .item()
    )
    assert report.tables["consumption"].reasons == {"ts_before_as_of": later}
    kept = scan_validated(report, TZ)
    assert (
        kept["repayments"]
        .filter(pl.col("paid_at").dt.convert_time_zone(TZ).dt.date() >= as_of)
        .collect()
        .is_empty()
    )
    assert "loan_applied_before_as_of" in report.tables["repayments"].reasons


def test_conflicting_duplicate_ids_are_all_set_aside(raw: Path, tmp_path: Path) -> None:
    def clash(df: pl.DataFrame) -> pl.DataFrame:
        twin = df.head(2).with_columns(amount=pl.col("amount") + 1.0)
        return pl.concat([df, twin])

    rewrite(raw, "transactions", clash)
    report = gate(raw, tmp_path)
    assert report.tables["transactions"].reasons == {"txn_id_unique": 4}


def test_a_partition_loaded_twice_keeps_one_copy(raw: Path, tmp_path: Path) -> None:
    original = files(raw, "consumption")[5]
    shutil.copy(original, original.with_name("part-reloaded.parquet"))
    copies = pl.read_parquet(original).height
    report = gate(raw, tmp_path)
    assert report.tables["consumption"].reasons == {"order_id_unique": copies}
    kept = scan_validated(report, TZ)["consumption"].collect()
    assert kept["order_id"].is_unique().all()


def test_days_loaded_twice_stop_the_run_naming_the_files(raw: Path, tmp_path: Path) -> None:
    days = files(raw, "consumption")[:40]
    for path in days:
        shutil.copy(path, path.with_name("part-rerun.parquet"))
    copies = sum(pl.read_parquet(p).height for p in days)
    report = gate(raw, tmp_path)
    assert report.tables["consumption"].reasons == {"order_id_unique": copies}
    (stop,) = report.stops
    assert "a file or day was probably loaded twice" in stop
    named = stop.split("files whose rows repeat: ")[1]
    largest = max(days, key=lambda p: pl.read_parquet(p).height)
    assert str(largest) in named and str(largest.with_name("part-rerun.parquet")) in named
    assert "and 70 more" in named  # 80 files repeat: the ten with the most rows are named


def test_a_few_repeated_rows_warn_without_stopping(raw: Path, tmp_path: Path) -> None:
    original = files(raw, "transactions")[3]
    shutil.copy(original, original.with_name("part-again.parquet"))
    report = gate(raw, tmp_path)
    assert report.ok, report.stops
    (warning,) = report.warnings
    assert warning.startswith("table transactions: ") and "loaded twice" in warning
    assert str(original.with_name("part-again.parquet")) in warning


def test_every_row_sharing_one_id_is_set_aside(raw: Path, tmp_path: Path) -> None:
    paths = files(raw, "consumption")
    for path in paths:
        pl.read_parquet(path).with_columns(order_id=pl.lit("O-1")).write_parquet(path)
    report = gate(raw, tmp_path)
    rows = rows_on_disk(raw, "consumption")
    assert report.tables["consumption"].reasons == {"order_id_unique": rows}
    assert any("rows share a unique id with rows of different content" in s for s in report.stops)


def test_one_user_holding_the_applications_and_the_events_stops_the_gate(
    raw: Path, tmp_path: Path
) -> None:
    # Contract-valid, but the feature build would pair every purchase with every application.
    someone = pl.read_parquet(files(raw, "users")[0])["user_id"][0]
    for table in ("applications", "consumption"):
        rewrite(raw, table, lambda df: df.with_columns(user_id=pl.lit(someone)), n=10_000)
    report = gate(raw, tmp_path)
    applications = rows_on_disk(raw, "applications")
    purchases = rows_on_disk(raw, "consumption")
    stops = {stop.split(":")[0]: stop for stop in report.stops}
    # Their loans' repayments meet every application too (the history family).
    assert set(stops) == {"table applications", "table repayments", "table consumption"}
    assert f"{applications * purchases:,} times" in stops["table consumption"]
    assert f"user_id {someone} alone holds {purchases:,} rows" in stops["table consumption"]
    assert all(count.rows_set_aside == 0 for count in report.tables.values())


def test_a_heavy_user_on_a_few_rows_does_not_stop_the_gate(raw: Path, tmp_path: Path) -> None:
    someone = pl.read_parquet(files(raw, "users")[0])["user_id"][0]
    rewrite(raw, "applications", lambda df: df.with_columns(user_id=pl.lit(someone)), n=10)
    report = gate(raw, tmp_path)
    assert report.ok, report.stops


def test_exact_duplicate_rows_in_a_table_without_ids(raw: Path, tmp_path: Path) -> None:
    rewrite(raw, "app_events", lambda df: pl.concat([df, df.head(4)]))
    report = gate(raw, tmp_path)
    assert report.tables["app_events"].reasons == {"row_unique": 4}
    (warning,) = report.warnings  # repeated within one file: not a file loaded twice
    assert "4 rows are exact copies of other rows, 0 of them in other files" in warning


def test_repayment_of_an_unknown_loan(raw: Path, tmp_path: Path) -> None:
    rewrite(
        raw,
        "repayments",
        lambda df: df.with_columns(
            loan_id=pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("L-ghost")).otherwise("loan_id")
        ),
    )
    report = gate(raw, tmp_path)
    assert report.tables["repayments"].reasons == {"loan_id_known": 2}


def test_loan_id_on_a_rejected_application(raw: Path, tmp_path: Path) -> None:
    def reject(df: pl.DataFrame) -> pl.DataFrame:
        first = pl.int_range(pl.len()) == pl.arg_where(pl.col("decision") == "approved").first()
        return df.with_columns(
            decision=pl.when(first).then(pl.lit("rejected")).otherwise("decision")
        )

    apps = pl.read_parquet(files(raw, "applications"))
    target = next(
        p
        for p in files(raw, "applications")
        if (pl.read_parquet(p)["decision"] == "approved").any()
    )
    loan = pl.read_parquet(target).filter(pl.col("decision") == "approved")["loan_id"][0]
    reject(pl.read_parquet(target)).write_parquet(target)
    installments = (
        pl.scan_parquet(files(raw, "repayments"))
        .filter(pl.col("loan_id") == loan)
        .select(pl.len())
        .collect()
        .item()
    )
    report = gate(raw, tmp_path)
    assert apps.height > 0
    assert report.tables["applications"].reasons == {"loan_id_iff_approved": 1}
    # Its schedule now belongs to no kept approved loan.
    assert report.tables["repayments"].reasons == {"loan_id_known": installments}


def test_timestamps_in_the_wrong_time_zone_stop_the_run(raw: Path, tmp_path: Path) -> None:
    rewrite(
        raw, "consumption", lambda df: df.with_columns(pl.col("ts") + timedelta(hours=8)), n=400
    )
    report = gate(raw, tmp_path)
    assert not report.ok
    assert any("consumption" in stop and "time zone" in stop for stop in report.stops)
    assert report.tables["consumption"].reasons.get("ts_matches_partition", 0) > 0


def test_many_broken_rows_stop_the_run(raw: Path, tmp_path: Path) -> None:
    rewrite(raw, "transactions", lambda df: df.with_columns(amount=-pl.col("amount")), n=10_000)
    report = gate(raw, tmp_path)
    assert not report.ok
    assert any("table transactions" in s and "amount_positive" in s for s in report.stops)


@pytest.mark.parametrize(
    "break_it,message,column",
    [
        (lambda raw: shutil.rmtree(raw / "social"), "table folder is missing", None),
        (
            lambda raw: rewrite(raw, "consumption", lambda df: df.drop("city")),
            "required column is missing",
            "city",
        ),
        (
            lambda raw: rewrite(
                raw, "transactions", lambda df: df.with_columns(pl.col("amount").cast(pl.String))
            ),
            "contract says",
            "amount",
        ),
        (
            lambda raw: files(raw, "app_events")[0].write_bytes(b"not parquet"),
            "not readable Parquet",
            None,
        ),
        (
            lambda raw: rewrite(
                raw, "consumption", lambda df: df.rename({"merchant_category": "category"})
            ),
            "required column is missing",
            "merchant_category",
        ),
    ],
)
def test_unusable_tables_stop_with_table_column_and_file(
    raw: Path, tmp_path: Path, break_it: Callable[[Path], None], message: str, column: str | None
) -> None:
    break_it(raw)
    with pytest.raises(ContractError, match=message) as err:
        run_gate(raw, tmp_path / "gate", ValidationSettings(), TZ)
    assert err.value.table is not None and err.value.file is not None
    if column:
        assert err.value.column == column


def test_required_table_without_rows_stops(raw: Path, tmp_path: Path) -> None:
    for path in files(raw, "applications"):
        path.unlink()
    schema = pl.read_parquet_schema(files(raw, "users")[0])
    with pytest.raises(ContractError, match="required table is empty") as err:
        run_gate(raw, tmp_path / "gate", ValidationSettings(), TZ)
    assert err.value.table == "applications" and schema


def test_malformed_partition_folder_is_named(raw: Path, tmp_path: Path) -> None:
    first = files(raw, "social")[0]
    bad = first.parent.with_name("dt=2024-13-45")
    first.parent.rename(bad)
    with pytest.raises(ContractError, match="dt=YYYY-MM-DD"):
        run_gate(raw, tmp_path / "gate", ValidationSettings(), TZ)


def test_gate_is_repeatable(raw: Path, tmp_path: Path) -> None:
    rewrite(raw, "consumption", lambda df: df.with_columns(amount=pl.lit(-1.0)))
    first = gate(raw, tmp_path / "a")
    second = gate(raw, tmp_path / "b")
    assert first.as_dict() == second.as_dict()
    assert quarantined(first, "consumption").equals(quarantined(second, "consumption"))


def test_amounts_in_cents_stop_the_whole_gate(raw: Path, tmp_path: Path) -> None:
    from expectations.gate import run_data_gate

    last_week = CONFIG.start.replace(month=CONFIG.start.month + CONFIG.months) - timedelta(days=7)
    for path in files(raw, "consumption"):
        if path.parent.name >= f"dt={last_week}":
            pl.read_parquet(path).with_columns(amount=pl.col("amount") * 100).write_parquet(path)
    outcome = run_data_gate(raw, tmp_path / "gate", ValidationSettings(), TZ)
    assert not outcome.ok
    assert any("consumption" in stop and "amount" in stop for stop in outcome.stops)
    assert outcome.report.tables["consumption"].rows_set_aside == 0


def test_great_expectations_agrees_with_polars_on_a_dirty_sample(raw: Path, tmp_path: Path) -> None:
    from expectations.gate import run_data_gate

    def dirty(df: pl.DataFrame) -> pl.DataFrame:
        row = pl.int_range(pl.len())
        return df.with_columns(
            amount=pl.when(row < 2).then(-3.0).otherwise("amount"),
            merchant_category=pl.when(row.is_between(2, 4))
            .then(pl.lit("crypto"))
            .otherwise("merchant_category"),
            user_id=pl.when(row == 5).then(pl.lit("U-nobody")).otherwise("user_id"),
        )

    rewrite(raw, "consumption", dirty)
    outcome = run_data_gate(raw, tmp_path / "gate", ValidationSettings(), TZ)
    result = next(r for r in outcome.results if r.suite_name == "raw.consumption")
    failed = {o.rule: o.unexpected_count for o in result.results if o.rule and not o.success}
    assert failed == {"amount_positive": 2, "merchant_category_in_set": 3, "user_id_known": 1}
    assert outcome.report.tables["consumption"].reasons == failed


def test_a_record_dated_far_ahead_moves_the_default_as_of_and_stops_the_gate(
    raw: Path, tmp_path: Path
) -> None:
    # One user registered "in 2100": the default as-of date follows it, past all the events.
    rewrite(
        raw,
        "users",
        lambda df: df.with_columns(
            registered_at=pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit(datetime(2100, 1, 1, tzinfo=UTC), dtype=pl.Datetime("us", "UTC")))
            .otherwise(pl.col("registered_at"))
        ),
    )
    outcome = run_data_gate(raw, tmp_path / "gate", ValidationSettings(), TZ)
    assert outcome.report.as_of == date(2100, 1, 2)
    assert not outcome.ok
    (stop,) = outcome.stops
    assert "the as-of date is wrong" in stop and "2100-01-02" in stop
    assert "Latest record per table: users 2100-01-01, " in stop  # the culprit comes first

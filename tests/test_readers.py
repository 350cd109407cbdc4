"""Readers: flat and hive layouts, and clear errors for tables that cannot be used."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from data.contract import TABLES
from data.readers import (
    SOURCE_FILE,
    SOURCE_ROW,
    ContractError,
    file_rows,
    list_table_files,
    scan_file_rows,
    scan_raw,
    scan_table,
)

CONSUMPTION_ROWS = [
    {
        "order_id": f"o{i}",
        "user_id": f"u{i % 3}",
        "ts": datetime(2024, 3, 1 + i, 10, tzinfo=UTC),
        "amount": 10.0 + i,
        "merchant_category": "dining",
        "city": "Shenzhen",
        "device_id": "d1",
        "pay_method": "balance",
    }
    for i in range(6)
]


def consumption_frame() -> pl.DataFrame:
    return pl.DataFrame(CONSUMPTION_ROWS, schema=TABLES["consumption"].schema)


def write_hive(root: Path, frame: pl.DataFrame) -> None:
    for (day,), part in frame.group_by(pl.col("ts").dt.date(), maintain_order=True):
        folder = root / "consumption" / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        part.write_parquet(folder / "part-0.parquet")


def test_hive_and_flat_layouts_read_the_same_rows(tmp_path: Path) -> None:
    frame = consumption_frame()
    write_hive(tmp_path / "hive", frame)
    flat = tmp_path / "flat" / "consumption"
    flat.mkdir(parents=True)
    frame.head(2).write_parquet(flat / "a.parquet")
    frame.tail(4).write_parquet(flat / "b.parquet")
    hive_rows = scan_table(tmp_path / "hive", "consumption").collect().sort("order_id")
    flat_rows = scan_table(tmp_path / "flat", "consumption").collect().sort("order_id")
    assert hive_rows.equals(frame.sort("order_id"))
    assert flat_rows.equals(frame.sort("order_id"))
    assert "dt" not in hive_rows.columns


def test_extra_columns_are_dropped_and_compatible_types_cast(tmp_path: Path) -> None:
    folder = tmp_path / "consumption"
    folder.mkdir()
    frame = consumption_frame().with_columns(
        pl.col("ts").dt.cast_time_unit("ns"),
        pl.col("merchant_category").cast(pl.Categorical),
        vendor_extra=pl.lit(1),
    )
    frame.write_parquet(folder / "x.parquet")
    read = scan_table(tmp_path, "consumption").collect()
    assert read.schema == TABLES["consumption"].schema


def test_missing_folder_names_table_and_path(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="table folder is missing") as err:
        scan_table(tmp_path, "consumption")
    assert err.value.table == "consumption"
    assert str(tmp_path / "consumption") in str(err.value)


def test_missing_optional_truth_reads_empty(tmp_path: Path) -> None:
    assert scan_table(tmp_path, "_truth").collect().is_empty()


def test_empty_folder_is_an_empty_table(tmp_path: Path) -> None:
    (tmp_path / "consumption").mkdir()
    frame = scan_table(tmp_path, "consumption").collect()
    assert frame.is_empty() and frame.schema == TABLES["consumption"].schema
    (tmp_path / "users").mkdir()
    assert scan_table(tmp_path, "users").collect_schema() == TABLES["users"].read_schema


def test_missing_column_names_table_column_and_file(tmp_path: Path) -> None:
    write_hive(tmp_path, consumption_frame())
    bad = next((tmp_path / "consumption").rglob("*.parquet"))
    pl.read_parquet(bad).drop("pay_method").write_parquet(bad)
    with pytest.raises(ContractError, match="required column is missing") as err:
        scan_table(tmp_path, "consumption")
    assert (err.value.table, err.value.column, err.value.file) == ("consumption", "pay_method", bad)


@pytest.mark.parametrize(
    "column,wrong",
    [
        ("amount", pl.col("amount").cast(pl.String)),
        ("ts", pl.col("ts").dt.replace_time_zone(None)),
        ("user_id", pl.col("user_id").str.slice(1).cast(pl.Int64)),
    ],
)
def test_wrong_type_names_table_column_and_file(
    tmp_path: Path, column: str, wrong: pl.Expr
) -> None:
    folder = tmp_path / "consumption"
    folder.mkdir()
    path = folder / "x.parquet"
    consumption_frame().with_columns(wrong.alias(column)).write_parquet(path)
    with pytest.raises(ContractError, match="contract says") as err:
        scan_table(tmp_path, "consumption")
    assert (err.value.column, err.value.file) == (column, path)


def test_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    write_hive(tmp_path, consumption_frame())
    junk = tmp_path / "consumption" / "dt=2024-03-02" / "part-9.parquet"
    junk.write_text("user_id,amount\nu1,3\n")
    with pytest.raises(ContractError, match="not readable Parquet") as err:
        scan_table(tmp_path, "consumption")
    assert err.value.file == junk


def test_hidden_in_progress_files_are_ignored(tmp_path: Path) -> None:
    write_hive(tmp_path, consumption_frame())
    (tmp_path / "consumption" / "_tmp").mkdir()
    (tmp_path / "consumption" / "_tmp" / "half.parquet").write_text("partial")
    assert scan_table(tmp_path, "consumption").collect().height == len(CONSUMPTION_ROWS)


def test_missing_raw_root(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="raw root folder does not exist"):
        scan_raw(tmp_path / "nope")


def users_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1"],
            "registered_at": [datetime(2023, 1, 1, tzinfo=UTC)],
            "birth_year": [1990],
            "gender": ["F"],
            "city_tier": [2],
            "occupation": ["salaried"],
            "id_number": ["110101199001011234"],
            "phone": ["13800000000"],
        },
        schema=TABLES["users"].schema,
    )


def test_pii_never_leaves_the_reader(tmp_path: Path) -> None:
    (tmp_path / "users").mkdir()
    users_frame().write_parquet(tmp_path / "users" / "u.parquet")
    for with_source in (False, True):
        read = scan_table(tmp_path, "users", with_source=with_source).collect()
        assert not {"id_number", "phone"} & set(read.columns)
        assert read.height == 1 and read["user_id"].item() == "u1"


def test_pii_columns_are_still_required_in_the_files(tmp_path: Path) -> None:
    (tmp_path / "users").mkdir()
    path = tmp_path / "users" / "u.parquet"
    users_frame().drop("phone").write_parquet(path)
    with pytest.raises(ContractError, match="required column is missing") as err:
        scan_table(tmp_path, "users")
    assert (err.value.table, err.value.column, err.value.file) == ("users", "phone", path)


def test_some_files_scanned_alone_keep_the_whole_tables_row_numbers(tmp_path: Path) -> None:
    """file_rows places each file's rows in the numbered scan; scan_file_rows reads a few
    files with those numbers, across groups of files in different compatible types."""
    frame = consumption_frame()
    write_hive(tmp_path, frame)
    widened = tmp_path / "consumption" / "dt=2024-03-03" / "part-0.parquet"
    pl.read_parquet(widened).with_columns(pl.col("amount").cast(pl.Float32)).write_parquet(widened)
    whole = scan_table(tmp_path, "consumption", with_source=True).collect()
    files = list_table_files(tmp_path, TABLES["consumption"])
    layout = file_rows(files)
    assert [f.rows for f in layout] == [1] * 6 and len({f.group for f in layout}) == 2
    some = [layout[1], layout[2], layout[5]]
    alone = scan_file_rows(some, TABLES["consumption"]).collect().sort(SOURCE_ROW)
    expected = whole.filter(pl.col(SOURCE_ROW).is_in([f.first_row for f in some]))
    assert alone.equals(expected.sort(SOURCE_ROW))
    assert alone.height == 3


def test_a_vendor_column_named_like_the_readers_own_is_ignored(tmp_path: Path) -> None:
    frame = consumption_frame().with_columns(_file=pl.lit("vendor"), _row=pl.lit(-1))
    write_hive(tmp_path, frame)
    read = scan_table(tmp_path, "consumption", with_source=True).collect()
    assert read[SOURCE_ROW].to_list() == list(range(6))
    assert read[SOURCE_FILE].str.ends_with("part-0.parquet").all()


def test_a_wider_integer_holding_what_the_contract_type_cannot_is_named(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    schema = {**TABLES["users"].schema, "birth_year": pl.Int32()}
    row = {c: None for c in schema} | {"user_id": "u1", "birth_year": 40_000}
    pl.DataFrame([row], schema=schema).write_parquet(users / "part-0.parquet")
    with pytest.raises(ContractError, match="cannot hold") as caught:
        scan_table(tmp_path, "users")
    assert (caught.value.table, caught.value.column) == ("users", "birth_year")
    assert caught.value.file == users / "part-0.parquet"


@pytest.mark.parametrize("folder", ["dt=20240301", "dt=2024-W09-5", "dt=2024-3-1"])
def test_a_dt_folder_not_written_yyyy_mm_dd_is_named(tmp_path: Path, folder: str) -> None:
    (tmp_path / "consumption" / folder).mkdir(parents=True)
    consumption_frame().write_parquet(tmp_path / "consumption" / folder / "part-0.parquet")
    with pytest.raises(ContractError, match="is not dt=YYYY-MM-DD"):
        scan_table(tmp_path, "consumption")

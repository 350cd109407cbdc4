"""Data digests: the same data gives the same digest, any change to it another one."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from data.asof import TableCount
from data.fingerprint import frame_digest, raw_fingerprint
from data.generator import GeneratorConfig, generate


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "application_id": ["a3", "a1", "a2"],
            "amount": [1.5, None, 3.0],
            "term": [5, 10, None],
            "channel": pl.Series(
                ["organic", "referral", None], dtype=pl.Enum(["organic", "referral"])
            ),
            "applied_at": [datetime(2024, 1, d, tzinfo=UTC) for d in (3, 1, 2)],
            "label": [True, False, False],
        }
    )


def test_frame_digest_depends_on_content_not_row_order() -> None:
    base = frame_digest(frame(), order_by="application_id")
    assert len(base) == 32
    assert frame_digest(frame().reverse(), order_by="application_id") == base
    assert frame_digest(frame().select(reversed(frame().columns)), "application_id") == base
    changed = [
        frame().with_columns(amount=pl.col("amount").fill_null(0.0)),  # a null is not a zero
        frame().with_columns(term=pl.col("term") + 1),
        frame().with_columns(label=~pl.col("label")),
        frame().with_columns(applied_at=pl.col("applied_at").dt.offset_by("1us")),
        frame().rename({"amount": "amount_cny"}),
        frame().head(2),
        frame().with_columns(channel=pl.col("channel").cast(pl.String).fill_null("push")),
    ]
    digests = {frame_digest(f, order_by="application_id") for f in changed}
    assert len(digests) == len(changed) and base not in digests


def test_frame_digest_ignores_how_a_number_is_typed() -> None:
    """The same integers held in 16 or 64 bits are the same data."""
    wide = frame().with_columns(pl.col("term").cast(pl.Int64))
    narrow = frame().with_columns(pl.col("term").cast(pl.Int16))
    assert frame_digest(wide) == frame_digest(narrow)


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fingerprint") / "raw"
    generate(out, GeneratorConfig(users=200, months=3, seed=5, start=date(2024, 1, 1)))
    return out


def test_raw_fingerprint_sees_files_and_counts_not_what_came_after(
    tiny_raw: Path, tmp_path: Path
) -> None:
    as_of = date(2024, 3, 1)
    counts = {"users": TableCount(rows_read=200, rows_kept=200)}
    base = raw_fingerprint(tiny_raw, as_of, counts)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_raw, copy)
    assert raw_fingerprint(copy, as_of, counts) == base  # where the root lies does not matter
    assert raw_fingerprint(copy, date(2024, 3, 2), counts) != base
    set_aside = {"users": TableCount(rows_read=200, rows_kept=199, reasons={"x": 1})}
    assert raw_fingerprint(copy, as_of, set_aside) != base

    later = sorted((copy / "transactions").glob("dt=2024-03-1*/*.parquet"))[0]
    pl.read_parquet(later).head(1).write_parquet(later)  # a day after the as-of day
    assert raw_fingerprint(copy, as_of, counts) == base
    earlier = sorted((copy / "transactions").glob("dt=2024-02-1*/*.parquet"))[0]
    rows = pl.read_parquet(earlier)
    rows.with_columns(amount=pl.col("amount") + 0.01).write_parquet(earlier)
    assert raw_fingerprint(copy, as_of, counts) != base

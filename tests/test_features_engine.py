"""The feature engine: declarations are checked when they are made, and a feature added to a
family is one declaration that the engine computes with nothing else to edit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from family_frames import applications, build_family, row, utc

from features.base import SHARE, FeatureSettings, ratio
from features.build import FAMILIES, catalogue_markdown, feature_definitions
from features.engine import (
    Context,
    Count,
    DeclarationError,
    Derived,
    Distinct,
    EventFamily,
    FirstSeen,
    LastN,
    PerWindow,
    Single,
    Source,
    Sum,
    check_unique,
)
from features.families.consumption import CONSUMPTION

COUNT = (0.0, None)
SOURCE = Source("consumption", ("user_id", "ts", "amount"))
STATES = (Count("n"), Sum("amount_sum", value=pl.col("amount").cast(pl.Int64)))


def family(*features: object, states: tuple = STATES, name: str = "test") -> EventFamily:
    return EventFamily(name, SOURCE, states, tuple(features))


def per_window(stem: str, value=lambda s: s("n"), description: str = "Purchases") -> PerWindow:
    return PerWindow(stem, description, value, COUNT)


def test_a_well_formed_declaration_is_accepted() -> None:
    made = family(per_window("test_n"), per_window("test_sum", lambda s: s("amount_sum")))
    settings = FeatureSettings(windows_days=[7, 90], trend_days=(7, 90), slope_months=3)
    names = [d.name for d in made.definitions(Context(settings))]
    assert names == ["test_n_7d", "test_n_90d", "test_sum_7d", "test_sum_90d"]


@pytest.mark.parametrize(
    ("features", "states", "message"),
    [
        ((per_window("test_n", lambda s: s("nope")),), STATES, "reads states .*'nope'"),
        ((per_window("test_n"), per_window("test_n")), STATES, "'test_n_7d' is declared twice"),
        ((per_window("test_n", description=" "),), STATES, "has no description"),
        (
            (PerWindow("test_n", "Purchases", lambda s: s("n"), (1.0, 0.0)),),
            STATES,
            "lower bound 1.0 above upper bound 0.0",
        ),
        ((per_window("test_n_{no_such_setting}"),), STATES, "unknown setting"),
        (
            (Derived("test_d", "7d", "A ratio", lambda f: f("test_missing_7d"), COUNT),),
            STATES,
            "reads features .*'test_missing_7d'",
        ),
        ((per_window("test_n"),), (*STATES, Count("n")), "state 'n' is declared twice"),
        (
            (Single("test_last", "last 3", "Mean", lambda s: s("last"), COUNT),),
            (*STATES, LastN("last", "amount", n=lambda ctx: 3, count="rows")),
            "counts rows with 'rows'",
        ),
    ],
    ids=[
        "unknown-state",
        "duplicate-name",
        "no-description",
        "bounds-crossed",
        "unknown-setting",
        "derived-reads-unknown-feature",
        "duplicate-state",
        "last-n-without-count",
    ],
)
def test_a_bad_declaration_fails_when_it_is_made(
    features: tuple, states: tuple, message: str
) -> None:
    with pytest.raises(DeclarationError, match=message):
        family(*features, states=states)


def test_a_feature_without_bounds_cannot_be_declared() -> None:
    with pytest.raises(TypeError, match="bounds"):
        PerWindow("test_n", "Purchases", lambda s: s("n"))  # type: ignore[call-arg]


def test_two_families_may_not_declare_the_same_feature() -> None:
    check_unique(FAMILIES)
    twin = family(per_window("consumption_count"), name="twin")
    with pytest.raises(DeclarationError, match="'consumption_count_7d' is declared by"):
        check_unique([CONSUMPTION, twin])


def test_the_catalogue_fails_on_a_bad_declaration(tmp_path: Path) -> None:
    """`make catalogue` on a copy of the features whose consumption family has one feature
    reading a state it does not build: it fails, naming it, and writes no page."""
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "features"
    shutil.copytree(root / "features", copy)
    family = copy / "families" / "consumption.py"
    family.write_text(
        family.read_text().replace(
            '    trend("consumption_count", "purchases"),',
            '    PerWindow("consumption_x", "X", lambda s: s("no_such_state"), COUNT),\n'
            '    trend("consumption_count", "purchases"),',
        )
    )
    page = tmp_path / "CATALOGUE.md"
    done = subprocess.run(
        [sys.executable, "-m", "features.catalogue", str(page)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{root}", "PATH": ""},
    )
    assert done.returncode != 0
    assert "DeclarationError" in done.stderr and "'no_such_state'" in done.stderr
    assert not page.exists()


def test_one_declaration_adds_a_feature_the_engine_computes() -> None:
    """A share of large purchases, from the family's existing states: one PerWindow more, and
    the catalogue and the table both carry it, computed per window."""
    share = PerWindow(
        "consumption_large_share",
        "Share of purchases above {large_multiple:g} times the mean",
        lambda s: ratio(s("large"), s("n")),
        SHARE,
    )
    extended = replace(CONSUMPTION, features=(*CONSUMPTION.features, share))
    apps = applications(
        [("a1", "u1", "2024-06-10 12:00")], ["application_id", "user_id", "applied_at"]
    )
    purchases = pl.LazyFrame(
        {
            "user_id": ["u1"] * 4,
            "ts": ["2024-06-09 10:00", "2024-06-08 10:00", "2024-06-07 10:00", "2024-05-01 10:00"],
            "amount": [10.0, 10.0, 10.0, 500.0],
            "merchant_category": ["groceries"] * 4,
            "city": ["c"] * 4,
            "device_id": ["d"] * 4,
            "pay_method": ["balance"] * 4,
        }
    ).with_columns(ts=utc("ts"))
    table = build_family(extended, {"applications": apps, "consumption": purchases})
    values = row(table, "a1")
    assert values["consumption_large_share_7d"] == 0.0  # the large purchase is 40 days old
    assert values["consumption_large_share_90d"] == pytest.approx(1 / 4)
    assert "consumption_large_share_30d" in catalogue_markdown(
        extended.definitions(Context(FeatureSettings()))
    )


def test_a_null_value_counts_in_no_window_of_a_distinct_or_first_seen_state() -> None:
    """Devices per window, plain, conditioned (on a large amount) and first seen: the rows
    without a device count as rows, never as a device."""
    large = pl.col("amount") > 100
    states = (
        Count("n"),
        Distinct("devices", "device_id"),
        Distinct("large_devices", "device_id", all_of=(large,)),
        FirstSeen("new_devices", "device_id"),
    )
    made = family(
        per_window("test_n"),
        *(
            per_window(f"test_{name}", lambda s, n=name: s(n), description="Devices")
            for name in ("devices", "large_devices", "new_devices")
        ),
        states=states,
    )
    made = replace(made, source=Source("consumption", ("user_id", "ts", "amount", "device_id")))
    apps = applications(
        [("a1", "u1", "2024-06-10 12:00")], ["application_id", "user_id", "applied_at"]
    )
    purchases = pl.LazyFrame(
        {
            "user_id": ["u1"] * 4,
            "ts": ["2024-06-09 10:00", "2024-06-08 10:00", "2024-06-08 11:00", "2024-05-20 10:00"],
            "amount": [500.0, 500.0, 10.0, 500.0],
            "device_id": [None, "d1", "d1", None],
        }
    ).with_columns(ts=utc("ts"))
    values = row(build_family(made, {"applications": apps, "consumption": purchases}), "a1")
    assert [values[f"test_n_{w}"] for w in ("7d", "30d")] == [3, 4]
    for name in ("devices", "large_devices", "new_devices"):
        assert [values[f"test_{name}_{w}"] for w in ("7d", "30d", "90d")] == [1, 1, 1], name


def test_every_catalogued_feature_has_a_description_and_a_family() -> None:
    defs = feature_definitions(FeatureSettings(), "Asia/Shanghai")
    assert len({d.name for d in defs}) == len(defs)
    assert all(d.description.strip() and d.family for d in defs)


def test_monthly_slopes_are_the_least_squares_slope_of_the_monthly_sums() -> None:
    """Spend of 60, 20, 50, 0, 10, 90 CNY in the 30-day months before the cut-off (latest
    first): the slope is numpy's least-squares fit of the sums oldest first; purchases older
    than six months count in none."""
    cutoff = datetime(2024, 6, 10, tzinfo=UTC) - timedelta(hours=8)  # local midnight
    by_month = [60.0, 20.0, 50.0, 0.0, 10.0, 90.0, 500.0]  # the last is 6 months back
    times = [cutoff - timedelta(days=30 * k + 3) for k in range(len(by_month))]
    apps = applications(
        [("a1", "u1", "2024-06-10 12:00")], ["application_id", "user_id", "applied_at"]
    )
    purchases = pl.LazyFrame(
        {
            "user_id": ["u1"] * len(by_month),
            "ts": times,
            "amount": by_month,
            "merchant_category": ["groceries"] * len(by_month),
            "city": ["c"] * len(by_month),
            "device_id": ["d"] * len(by_month),
            "pay_method": ["balance"] * len(by_month),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    table = build_family(CONSUMPTION, {"applications": apps, "consumption": purchases})
    expected = np.polyfit(np.arange(6), by_month[:6][::-1], 1)[0]
    assert row(table, "a1")["consumption_amount_slope_6m"] == pytest.approx(expected, abs=1e-9)

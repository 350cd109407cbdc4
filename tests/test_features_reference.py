"""Point in time, proved on small random hand-built tables (property-based, with hypothesis).

1. A plain-Python reference (loops over lists of dicts, zoneinfo for local time; no Polars)
   computes a few features; the feature build must agree with it exactly.
2. Records stamped at or after an application's cut-off, however extreme, in any table change
   none of that application's features.

Timestamps cluster on the cut-offs and window edges (to the microsecond), on local 06:00 (the
night boundary) and include far-past and far-future instants; one era lies in 1988, when
Asia/Shanghai kept daylight-saving time, so local days and hours are not fixed UTC offsets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from data.config import LabelSettings
from data.contract import (
    APP_EVENTS,
    APPLICATION_CHANNELS,
    DECISIONS,
    DIRECTIONS,
    INQUIRY_REASONS,
    INSTITUTION_TYPES,
    INTERACTIONS,
    MERCHANT_CATEGORIES,
    PAY_METHODS,
    TABLES,
    TERMS,
    TXN_CHANNELS,
    TXN_TYPES,
)
from features.base import FeatureSettings
from features.build import application_spine, build_features

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
FEATURES = FeatureSettings()
WINDOWS = FEATURES.windows_days
HORIZON = max(WINDOWS)
NIGHT_END_HOUR = FEATURES.night_end_hour

Row = dict[str, object]
Tables = dict[str, list[Row]]
Value = float | None

US = timedelta(microseconds=1)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# Application eras: a plain one, one inside Shanghai's 1986-1991 daylight-saving time (windows
# straddle its April switch), and one across a year end in the future.
ERAS = (date(2024, 2, 20), date(1988, 5, 1), date(2031, 12, 1))
FAR_INSTANTS = (
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1999, 12, 31, 16, tzinfo=UTC),
    datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
)
USERS = ("u0", "u1", "u2")
EVENT_TABLES = ("consumption", "transactions", "social", "app_events", "bureau_inquiries")
HUGE = 1e15

# `make test` draws 60 examples; the fast lane (`make test-fast`) fewer, from the same
# derandomised sequence.
SETTINGS = settings(
    max_examples=int(os.environ.get("PDFLOW_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- local time, as the contract defines it (plain Python) ----------------------------------


def local_midnight(day: date) -> datetime:
    """The UTC instant local day `day` begins."""
    return datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)


def local_day(ts: datetime) -> date:
    return ts.astimezone(TZ).date()


def cutoff_of(applied_at: datetime) -> datetime:
    return local_midnight(local_day(applied_at))


# --- strategies ----------------------------------------------------------------------------

amounts = st.one_of(
    st.sampled_from([0.01, 1.0, 99.99, 1e6]),
    st.integers(1, 5_000_000).map(lambda cents: cents / 100),
)
extreme_amounts = st.sampled_from([1e-6, 0.01, 1e9, HUGE])
times_of_day = st.one_of(
    st.sampled_from([timedelta(0), US, 6 * HOUR - US, 6 * HOUR, DAY - US]),
    st.integers(0, 86_400_000_000 - 1).map(lambda us: us * US),
)


@st.composite
def instants_near(draw: st.DrawFn, anchor: datetime) -> datetime:
    """An instant near an anchor (a cut-off): on a window edge to the microsecond, at any time
    of one of the few local days before it (around 06:00 included), anywhere in the half year
    before it, or far away in the past or the future."""
    kind = draw(st.sampled_from(["edge", "recent day", "random", "far"]))
    if kind == "edge":
        days = draw(st.sampled_from([0, *WINDOWS, HORIZON + 1]))
        return anchor - days * DAY + draw(st.sampled_from([-US, 0 * US, US]))
    if kind == "recent day":
        day = local_day(anchor) - timedelta(days=draw(st.integers(-1, 3)))
        return local_midnight(day) + draw(times_of_day)
    if kind == "random":
        return anchor + draw(st.integers(-(HORIZON + 5) * 86_400, 2 * 86_400)) * 1_000_000 * US
    return draw(st.sampled_from(FAR_INSTANTS))


def users_of(app: Row) -> st.SearchStrategy[str]:
    """Mostly the applicant, sometimes anyone."""
    return st.one_of(st.just(app["user_id"]), st.just(app["user_id"]), st.sampled_from(USERS))


@st.composite
def applications(draw: st.DrawFn, era: date) -> list[Row]:
    """Applications from `era` on, each on the day of the one before or some days later, by
    the same applicant or another: same-day ones are separated by the cut-off, not the time of
    day, and earlier loans have installments due before later applications."""
    rows: list[Row] = []
    day = era
    for i in range(draw(st.integers(1, 6))):
        day += timedelta(days=draw(st.one_of(st.just(0), st.integers(1, 5), st.integers(1, 60))))
        user = draw(st.one_of(st.just(USERS[0]), st.sampled_from(USERS)))
        approved = draw(st.booleans())
        rows.append(
            {
                "application_id": f"a{i}",
                "user_id": user,
                "applied_at": local_midnight(day) + draw(times_of_day),
                "amount_requested": draw(amounts),
                "term_months": draw(st.sampled_from(TERMS)),
                "channel": draw(st.sampled_from(APPLICATION_CHANNELS)),
                "decision": "approved" if approved else "rejected",
                "loan_id": f"L{i}" if approved else None,
            }
        )
    return rows


@st.composite
def event_rows(draw: st.DrawFn, table: str, apps: list[Row]) -> list[Row]:
    """Rows of one event table, each for (mostly) the user of an application and near its
    cut-off."""
    rows = []
    for i in range(draw(st.integers(0, 12))):
        app = draw(st.sampled_from(apps))
        instants = instants_near(cutoff_of(app["applied_at"]))
        rows.append(draw(event_row(table, users_of(app), instants, f"{table}{i}")))
    return rows


def event_row(
    table: str, users: st.SearchStrategy[str], instants: st.SearchStrategy[datetime], key: str
) -> st.SearchStrategy[Row]:
    anyone = st.sampled_from(USERS)
    columns: dict[str, st.SearchStrategy] = {"user_id": users, "ts": instants}
    if table == "consumption":
        columns |= {
            "order_id": st.just(key),
            "amount": amounts,
            "merchant_category": st.sampled_from(MERCHANT_CATEGORIES),
            "city": st.sampled_from(["Shanghai", "Chengdu"]),
            "device_id": st.sampled_from(["d0", "d1"]),
            "pay_method": st.sampled_from(PAY_METHODS),
        }
    elif table == "transactions":
        columns |= {
            "txn_id": st.just(key),
            "direction": st.sampled_from(DIRECTIONS),
            "txn_type": st.sampled_from(TXN_TYPES),
            "amount": amounts,
            "counterparty_id": st.one_of(st.none(), anyone),
            "channel": st.sampled_from(TXN_CHANNELS),
        }
    elif table == "social":
        columns |= {"peer_id": anyone, "interaction": st.sampled_from(INTERACTIONS)}
    elif table == "app_events":
        columns |= {
            "event": st.sampled_from(APP_EVENTS),
            "session_id": st.sampled_from(["s0", "s1"]),
            "device_id": st.sampled_from(["d0", "d1"]),
        }
    else:
        columns |= {
            "reason": st.sampled_from(INQUIRY_REASONS),
            "institution_type": st.sampled_from(INSTITUTION_TYPES),
        }
    return st.fixed_dictionaries(columns)


def snapshot_row(user: str, report_date: date, extreme: bool = False) -> st.SearchStrategy:
    small = st.integers(0, 999 if extreme else 60)
    return st.fixed_dictionaries(
        {
            "user_id": st.just(user),
            "report_date": st.just(report_date),
            "open_accounts": small,
            "total_limit": st.one_of(st.just(0.0), extreme_amounts if extreme else amounts),
            "total_balance": st.one_of(st.just(0.0), extreme_amounts if extreme else amounts),
            "max_dpd_current": small,
            "max_dpd_24m": small,
        }
    )


@st.composite
def snapshots(draw: st.DrawFn, apps: list[Row]) -> list[Row]:
    """Monthly-ish reports dated around the applications' local days (the day before, on, after)."""
    keys = set()
    for _ in range(draw(st.integers(0, 6))):
        app = draw(st.sampled_from(apps))
        offset = draw(st.one_of(st.sampled_from([-1, 0, 1]), st.integers(-400, 60)))
        keys.add((draw(users_of(app)), local_day(app["applied_at"]) + timedelta(days=offset)))
    return [draw(snapshot_row(user, day)) for user, day in sorted(keys)]


@st.composite
def repayments(draw: st.DrawFn, apps: list[Row]) -> list[Row]:
    """Installments of the approved applications: unpaid, paid around the due date, or paid
    some days after the loan's cut-off."""
    rows = []
    for app in apps:
        if app["loan_id"] is None:
            continue
        disbursed = local_day(app["applied_at"])
        for no in range(1, draw(st.integers(0, 4)) + 1):
            offset = st.one_of(st.integers(1, 3), st.integers(1, 40), st.integers(1, 200))
            due = disbursed + timedelta(days=draw(offset))
            paid = draw(
                st.one_of(
                    st.none(),
                    st.none(),
                    st.integers(-20, 200).map(lambda d, due=due: local_midnight(due) + d * DAY),
                    st.integers(0, 60).map(lambda d, a=app: cutoff_of(a["applied_at"]) + d * DAY),
                )
            )
            rows.append(
                {
                    "loan_id": app["loan_id"],
                    "installment_no": no,
                    "due_date": due,
                    "amount_due": draw(amounts),
                    "paid_at": paid,
                    "amount_paid": 0.0 if paid is None else draw(amounts),
                }
            )
    return rows


@st.composite
def raw_tables(draw: st.DrawFn) -> Tables:
    """A handful of users, applications, snapshots, repayments and events in one era."""
    era = draw(st.sampled_from(ERAS))
    apps = draw(applications(era))
    tables: Tables = {
        "users": [
            {
                "user_id": user,
                "registered_at": datetime(1980, 1, 1, tzinfo=UTC),
                "birth_year": 1960,
                "gender": "U",
                "city_tier": 1,
                "occupation": "salaried",
                "id_number": "1" * 18,
                "phone": "1" * 11,
            }
            for user in USERS
        ],
        "applications": apps,
        "bureau_snapshots": draw(snapshots(apps)),
        "repayments": draw(repayments(apps)),
    }
    for table in EVENT_TABLES:
        tables[table] = draw(event_rows(table, apps))
    return tables


# --- the feature build under test -----------------------------------------------------------


def frames(tables: Tables) -> dict[str, pl.LazyFrame]:
    """Every contract table as a lazy frame of the contract's schema (empty where not given)."""
    return {
        name: pl.DataFrame(tables.get(name, []), schema=table.schema, orient="row").lazy()
        if tables.get(name)
        else pl.LazyFrame(schema=table.schema)
        for name, table in TABLES.items()
    }


def build(tables: Tables) -> pl.DataFrame:
    lazy = frames(tables)
    spine = application_spine(lazy["applications"], TZ_NAME)
    _, frame = build_features(lazy, spine, FEATURES, TZ_NAME, LabelSettings())
    return frame.collect().sort("application_id")


# --- the reference (plain Python) -----------------------------------------------------------


def in_window(rows: Iterable[Row], user: str, cutoff: datetime, days: int) -> list[Row]:
    start = cutoff - timedelta(days=days)
    return [r for r in rows if r["user_id"] == user and start <= r["ts"] < cutoff]


def consumption_reference(rows: list[Row], user: str, cutoff: datetime) -> dict[str, Value]:
    expected: dict[str, Value] = {}
    for days in WINDOWS:
        window = in_window(rows, user, cutoff, days)
        spend = [r["amount"] for r in window]
        nights = [r for r in window if r["ts"].astimezone(TZ).hour < NIGHT_END_HOUR]
        expected |= {
            f"consumption_count_{days}d": float(len(window)),
            f"consumption_amount_sum_{days}d": float(sum(spend)),
            f"consumption_amount_max_{days}d": max(spend) if spend else None,
            f"consumption_active_days_{days}d": float(len({local_day(r["ts"]) for r in window})),
            f"consumption_night_share_{days}d": len(nights) / len(window) if window else None,
        }
    recent = in_window(rows, user, cutoff, HORIZON)
    last = max((r["ts"] for r in recent), default=None)
    expected["consumption_days_since_last"] = (
        None if last is None else (cutoff - last).total_seconds() / 86_400
    )
    return expected


def bureau_reference(tables: Tables, user: str, cutoff: datetime) -> dict[str, Value]:
    expected: dict[str, Value] = {
        f"bureau_inquiries_{days}d": float(
            len(in_window(tables["bureau_inquiries"], user, cutoff, days))
        )
        for days in WINDOWS
    }
    application_day = local_day(cutoff)
    usable = [
        s
        for s in tables["bureau_snapshots"]
        if s["user_id"] == user and s["report_date"] < application_day
    ]
    latest = max(usable, key=lambda s: s["report_date"], default=None)
    expected["bureau_total_limit"] = None if latest is None else latest["total_limit"]
    return expected


def history_reference(tables: Tables, user: str, cutoff: datetime) -> dict[str, Value]:
    earlier = [
        a for a in tables["applications"] if a["user_id"] == user and a["applied_at"] < cutoff
    ]
    return {
        "history_prev_applications": float(len(earlier)),
        "history_prev_loans": float(sum(a["decision"] == "approved" for a in earlier)),
    }


def reference(tables: Tables) -> dict[str, dict[str, Value]]:
    """Per application id, the reference value of each checked feature."""
    result = {}
    for app in tables["applications"]:
        user, cutoff = app["user_id"], cutoff_of(app["applied_at"])
        result[app["application_id"]] = (
            consumption_reference(tables["consumption"], user, cutoff)
            | bureau_reference(tables, user, cutoff)
            | history_reference(tables, user, cutoff)
        )
    return result


def same(got: Value, expected: Value) -> bool:
    if got is None or expected is None:
        return got is None and expected is None
    return math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-9)


@SETTINGS
@given(raw_tables())
def test_features_agree_with_a_plain_python_reference(tables: Tables) -> None:
    built = {row["application_id"]: row for row in build(tables).iter_rows(named=True)}
    expected = reference(tables)
    assert built.keys() == expected.keys()
    wrong = [
        (app_id, name, built[app_id].get(name, "missing"), value)
        for app_id, features in expected.items()
        for name, value in features.items()
        if name not in built[app_id] or not same(built[app_id][name], value)
    ]
    assert not wrong, f"(application, feature, got, expected): {wrong}"


# --- invariance under records at or after the cut-off ---------------------------------------


def at_or_after(t: datetime) -> st.SearchStrategy[datetime]:
    return st.one_of(
        st.sampled_from([t, t + US, t + DAY - US, t + DAY, FAR_INSTANTS[-1]]),
        st.integers(0, 400 * 86_400_000_000).map(lambda us: t + us * US),
    )


def every_enum_value(user: str, peer: str, t: datetime) -> Tables:
    """Records at exactly `t` carrying every value of every enumeration, with extreme amounts."""
    base = {"user_id": user, "ts": t}
    return {
        "consumption": [
            base
            | {
                "order_id": f"xc-{category}-{method}",
                "amount": HUGE,
                "merchant_category": category,
                "city": "Nowhere",
                "device_id": "new-device",
                "pay_method": method,
            }
            for category in MERCHANT_CATEGORIES
            for method in PAY_METHODS
        ],
        "transactions": [
            base
            | {
                "txn_id": f"xt-{direction}-{kind}-{channel}",
                "direction": direction,
                "txn_type": kind,
                "amount": HUGE,
                "counterparty_id": peer,
                "channel": channel,
            }
            for direction in DIRECTIONS
            for kind in TXN_TYPES
            for channel in TXN_CHANNELS
        ],
        "social": [
            {"user_id": a, "peer_id": b, "ts": t, "interaction": interaction}
            for a, b in ((user, peer), (peer, user))
            for interaction in INTERACTIONS
        ],
        "app_events": [
            base | {"event": event, "session_id": "xs", "device_id": f"xd-{event}"}
            for event in APP_EVENTS
        ],
        "bureau_inquiries": [
            base | {"reason": reason, "institution_type": institution}
            for reason in INQUIRY_REASONS
            for institution in INSTITUTION_TYPES
        ],
    }


@st.composite
def future_applications(draw: st.DrawFn, chosen: Row, t: datetime) -> list[Row]:
    """Applications at or after `t`, mostly by the chosen applicant: the same day's later
    cut-off, a later day, or the far future."""
    rows = []
    for i in range(draw(st.integers(0, 3))):
        decision = draw(st.sampled_from(DECISIONS))
        rows.append(
            {
                "application_id": f"xa{i}",
                "user_id": draw(users_of(chosen)),
                "applied_at": draw(at_or_after(t)),
                "amount_requested": draw(extreme_amounts),
                "term_months": draw(st.sampled_from(TERMS)),
                "channel": draw(st.sampled_from(APPLICATION_CHANNELS)),
                "decision": decision,
                "loan_id": f"xL{i}" if decision == "approved" else None,
            }
        )
    return rows


@st.composite
def future_repayments(
    draw: st.DrawFn, tables: Tables, new_loans: list[str], t: datetime
) -> list[Row]:
    """The repayments table with (a) payments not made before `t` now made at or after it, or
    unmade, with extreme amounts; (b) installments due on or after `t`'s local day, unpaid or
    paid at or after `t`, added to old and new loans."""
    day = local_day(t)
    rows = []
    for row in tables["repayments"]:
        later = row["paid_at"] is None or row["paid_at"] >= t
        if later and draw(st.sampled_from([True, True, True, False])):
            paid = draw(st.one_of(at_or_after(t), at_or_after(t), st.none()))
            row = row | {"paid_at": paid, "amount_paid": 0.0 if paid is None else HUGE}
        rows.append(row)
    loans = sorted({a["loan_id"] for a in tables["applications"] if a["loan_id"]}) + new_loans
    for loan in draw(st.lists(st.sampled_from(loans), max_size=4)) if loans else []:
        paid = draw(st.one_of(st.none(), at_or_after(t)))
        rows.append(
            {
                "loan_id": loan,
                "installment_no": 100 + len(rows),
                "due_date": day + timedelta(days=draw(st.integers(0, 400))),
                "amount_due": draw(extreme_amounts),
                "paid_at": paid,
                "amount_paid": 0.0 if paid is None else HUGE,
            }
        )
    return rows


@st.composite
def future_snapshots(draw: st.DrawFn, tables: Tables, chosen: Row, t: datetime) -> list[Row]:
    """Reports dated on or after `t`'s local day, mostly that very day (replacing any the user
    had on that date)."""
    day = local_day(t)
    offsets = st.one_of(st.just(0), st.integers(0, 40), st.integers(0, 400))
    keys = draw(st.lists(st.tuples(users_of(chosen), offsets), max_size=4, unique=True))
    new = [draw(snapshot_row(user, day + timedelta(days=k), extreme=True)) for user, k in keys]
    taken = {(s["user_id"], s["report_date"]) for s in new}
    kept = [s for s in tables["bureau_snapshots"] if (s["user_id"], s["report_date"]) not in taken]
    return kept + new


@st.composite
def tables_and_future(draw: st.DrawFn) -> tuple[Tables, Tables, datetime]:
    """Random tables, the cut-off `t` of one of their applications, and the same tables with
    records at or after `t` added in every table (and payments made at or after it changed)."""
    tables = draw(raw_tables())
    latest = max(tables["applications"], key=lambda a: a["applied_at"])
    chosen = draw(st.one_of(st.just(latest), st.sampled_from(tables["applications"])))
    t = cutoff_of(chosen["applied_at"])
    peer = draw(st.sampled_from([u for u in USERS if u != chosen["user_id"]]))
    enums = every_enum_value(chosen["user_id"], peer, t)
    new_apps = draw(future_applications(chosen, t))
    poisoned = dict(tables)
    for table in EVENT_TABLES:
        later = [
            draw(event_row(table, users_of(chosen), at_or_after(t), f"x{table}{i}"))
            for i in range(draw(st.integers(0, 4)))
        ]
        poisoned[table] = tables[table] + enums[table] + later
    poisoned["applications"] = tables["applications"] + new_apps
    new_loans = [a["loan_id"] for a in new_apps if a["loan_id"]]
    poisoned["repayments"] = draw(future_repayments(tables, new_loans, t))
    poisoned["bureau_snapshots"] = draw(future_snapshots(tables, chosen, t))
    return tables, poisoned, t


def rows_cut_by(frame: pl.DataFrame, t: datetime, apps: list[Row]) -> pl.DataFrame:
    ids = [a["application_id"] for a in apps if cutoff_of(a["applied_at"]) <= t]
    return frame.filter(pl.col("application_id").is_in(ids)).sort("application_id")


def assert_unchanged(tables: Tables, poisoned: Tables, t: datetime) -> None:
    before = rows_cut_by(build(tables), t, tables["applications"])
    after = rows_cut_by(build(poisoned), t, tables["applications"])
    assert before.height >= 1
    assert_frame_equal(after, before, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(tables_and_future())
def test_records_at_or_after_the_cutoff_change_no_feature(
    case: tuple[Tables, Tables, datetime],
) -> None:
    assert_unchanged(*case)


def test_the_invariance_check_sees_a_record_one_microsecond_before_the_cutoff() -> None:
    """The comparison is not vacuous: the same records a microsecond earlier do show."""
    applied = local_midnight(date(2024, 3, 1)) + 10 * HOUR
    tables: Tables = {
        "applications": [
            {
                "application_id": "a0",
                "user_id": "u0",
                "applied_at": applied,
                "amount_requested": 1000.0,
                "term_months": 5,
                "channel": "organic",
                "decision": "rejected",
                "loan_id": None,
            }
        ]
    }
    t = cutoff_of(applied)

    def records_at(at: datetime) -> Tables:
        return tables | every_enum_value("u0", "u1", at)

    assert_unchanged(tables, records_at(t), t)
    before = build(tables)
    after = build(records_at(t - US))
    changed = [c for c in before.columns if not before[c].equals(after[c])]
    assert {"consumption_count_7d", "bureau_inquiries_7d", "app_logins_7d"} <= set(changed)

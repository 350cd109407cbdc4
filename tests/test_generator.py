"""Tests of the synthetic generator: determinism, contract conformance, world sanity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data.contract import EVENT_TABLES, PARTITION_COLUMN, TABLES
from data.generator import GeneratorConfig, append_days, generate, root_config
from data.generator.timeline import add_months

# One worker runs the module: its module-scoped worlds are built once, not once per worker.
pytestmark = pytest.mark.xdist_group("generator")

SMALL = GeneratorConfig(users=600, months=7, seed=11, start=date(2024, 3, 1), block_users=300)
TZ = "Asia/Shanghai"


def read(root: Path, name: str) -> pl.DataFrame:
    files = sorted((root / name).rglob("*.parquet"))
    assert files, name
    return pl.read_parquet(files, hive_partitioning=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "raw"
    report = generate(out, SMALL, progress=False)
    assert report.rows["users"] == SMALL.users
    assert report.rows == {n: read(out, n).height for n in TABLES}
    return out


@pytest.fixture(scope="module")
def frames(small) -> dict[str, pl.DataFrame]:
    return {name: read(small, name) for name in TABLES}


def end_instant(cfg: GeneratorConfig) -> datetime:
    end = add_months(cfg.start, cfg.months)
    return datetime(end.year, end.month, end.day, tzinfo=timezone(timedelta(hours=8)))


def test_every_table_has_exact_schema_and_layout(small):
    for name, table in TABLES.items():
        files = sorted((small / name).rglob("*.parquet"))
        assert files, name
        for f in files:
            df = pl.read_parquet(f, hive_partitioning=False)
            assert df.schema == table.schema, (name, f)
            assert PARTITION_COLUMN not in df.columns
            if table.partitioned:
                assert f.parent.name.startswith(f"{PARTITION_COLUMN}="), f
                assert f.parent.parent.name == name
            else:
                assert f.parent.name == name
            assert f.name.startswith("part-")


def test_partition_is_local_date_of_timestamp(small):
    for name, table in TABLES.items():
        if not table.partitioned:
            continue
        for f in sorted((small / name).rglob("*.parquet"))[:40]:
            df = pl.read_parquet(f, hive_partitioning=False)
            local = df[table.time_column].dt.convert_time_zone(TZ).dt.date().unique()
            assert local.to_list() == [date.fromisoformat(f.parent.name.split("=")[1])], f


def test_value_sets_and_row_rules(frames):
    assert_rows_follow_the_contract(frames)
    users = frames["users"]
    assert users["id_number"].str.len_chars().eq(18).all()
    assert users["phone"].str.contains(r"^1\d{10}$").all()
    # every value of the small enumerations actually occurs
    for name, col in [
        ("transactions", "txn_type"),
        ("consumption", "merchant_category"),
        ("app_events", "event"),
        ("social", "interaction"),
        ("applications", "channel"),
        ("users", "occupation"),
    ]:
        assert set(frames[name][col].unique()) == set(TABLES[name].column(col).values), col


def assert_rows_follow_the_contract(frames: dict[str, pl.DataFrame]) -> None:
    """Every table's schema, nulls, value sets, ranges and unique keys are the contract's."""
    for name, table in TABLES.items():
        assert frames[name].schema == table.schema, name
        df = frames[name]
        for col in table.columns:
            s = df[col.name]
            if not col.nullable:
                assert s.null_count() == 0, (name, col.name)
            if col.values is not None:
                assert set(s.drop_nulls().unique().to_list()) <= set(col.values), (name, col.name)
            if col.positive:
                assert (s > 0).all(), (name, col.name)
            if col.non_negative:
                assert (s >= 0).all(), (name, col.name)
            if col.min_value is not None:
                assert s.min() >= col.min_value, (name, col.name)
            if col.max_value is not None:
                assert s.max() <= col.max_value, (name, col.name)
        if table.unique:
            assert df.select(table.unique).is_duplicated().sum() == 0, name


def peers(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Every (user, peer) of the social rows and the person-to-person transactions."""
    tx = frames["transactions"].filter(pl.col("counterparty_id").is_not_null())
    return pl.concat(
        [
            frames["social"].select("user_id", peer="peer_id", table=pl.lit("social")),
            tx.select("user_id", peer="counterparty_id", table=pl.lit("transactions")),
        ]
    )


def test_foreign_keys_resolve(frames):
    uids = frames["users"]["user_id"]
    for name in (*EVENT_TABLES, "bureau_snapshots", "applications"):
        assert frames[name]["user_id"].is_in(uids).all(), name
    tx = frames["transactions"]
    p2p = tx["txn_type"].is_in(["transfer", "red_packet"])
    cp = tx["counterparty_id"]
    assert cp.filter(p2p).null_count() == 0
    assert cp.filter(~p2p).null_count() == (~p2p).sum()
    # a peer or counterparty is another person, a customer or not, never the user themself
    both = peers(frames)
    assert (both["peer"] != both["user_id"]).all()
    assert both["peer"].str.contains(r"^U\d{9}$").all()
    number = both["peer"].str.slice(1).cast(pl.Int64)
    customer = number < SMALL.users
    assert both["peer"].filter(customer).is_in(uids).all()  # customers' ids resolve
    assert not both["peer"].filter(~customer).is_in(uids).any()
    assert frames["repayments"]["loan_id"].is_in(frames["applications"]["loan_id"]).all()
    assert (
        frames["_truth"]["application_id"]
        .sort()
        .equals(frames["applications"]["application_id"].sort())
    )


def test_some_friends_and_payees_are_outsiders(frames):
    """About ``outsider_share`` of social rows and of person-to-person transactions name a
    person who is not a customer; outsiders come from their block's own id range, above every
    customer, have no rows of their own, and some are shared by several customers."""
    uids = frames["users"]["user_id"]
    both = peers(frames).with_columns(outsider=~pl.col("peer").is_in(uids.implode()))
    share = dict(both.group_by("table").agg(pl.col("outsider").mean()).iter_rows())
    for table in ("social", "transactions"):
        assert 0.5 * SMALL.outsider_share < share[table] < 1.5 * SMALL.outsider_share, share
    out = both.filter("outsider")
    number = out["peer"].str.slice(1).cast(pl.Int64)
    user_number = out["user_id"].str.slice(1).cast(pl.Int64)
    assert (number >= SMALL.users).all() and (number < 2 * SMALL.users).all()
    block = (number - SMALL.users) // SMALL.block_users
    assert (block == user_number // SMALL.block_users).all()  # no id shared across blocks
    assert block.n_unique() == SMALL.n_blocks
    for name in TABLES:
        if "user_id" in frames[name].columns:
            assert not frames[name]["user_id"].is_in(out["peer"].implode()).any(), name
    customers_per_outsider = out.group_by("peer").agg(pl.col("user_id").n_unique())
    assert (customers_per_outsider["user_id"] >= 2).any()


def test_no_outsiders_at_share_zero_and_the_rest_of_the_world_unchanged(tmp_path, frames):
    out = tmp_path / "raw"
    generate(out, replace(SMALL, outsider_share=0.0), progress=False)
    zero = {name: read(out, name) for name in TABLES}
    uids = zero["users"]["user_id"]
    assert peers(zero)["peer"].is_in(uids).all()
    # outsiders are extra contacts: every other table, and the friendships among customers,
    # are what they would be without them
    for name in TABLES:
        if name not in ("social", "transactions"):
            assert zero[name].equals(frames[name]), name

    def ties_among_customers(f):
        adds = f["social"].filter(pl.col("interaction") == "friend_add")
        return adds.filter(pl.col("peer_id").is_in(uids.implode())).select("user_id", "peer_id")

    assert (
        ties_among_customers(zero)
        .sort(pl.all())
        .equals(ties_among_customers(frames).sort(pl.all()))
    )
    with_outsiders = frames["social"].filter(pl.col("interaction") == "friend_add").height
    assert with_outsiders > zero["social"].filter(pl.col("interaction") == "friend_add").height


def test_outsider_share_is_validated_and_read_from_settings(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from flows.settings import load_settings

    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="outsider_share"):
            GeneratorConfig(outsider_share=bad)
    with pytest.raises(ValueError, match="users"):
        GeneratorConfig(users=600_000_000)  # outsiders' numbers would need 10 digits
    assert GeneratorConfig(users=600_000_000, outsider_share=0.0).users == 600_000_000
    path = tmp_path / "settings.yml"
    path.write_text("generator:\n  outsider_share: 0.12\n")
    monkeypatch.delenv("PDFLOW_GENERATOR__OUTSIDER_SHARE", raising=False)
    assert load_settings(path).generator.outsider_share == 0.12
    monkeypatch.setenv("PDFLOW_GENERATOR__OUTSIDER_SHARE", "0.2")
    assert load_settings(path).generator.outsider_share == 0.2
    path.write_text("generator:\n  outsider_share: 1.5\n")
    monkeypatch.delenv("PDFLOW_GENERATOR__OUTSIDER_SHARE")
    with pytest.raises(ValidationError, match="outsider_share"):
        load_settings(path)


def test_nothing_at_or_after_end_and_nothing_before_registration(frames):
    end = end_instant(SMALL)
    reg = frames["users"].select("user_id", "registered_at")
    assert reg["registered_at"].max() < end
    for name, table in TABLES.items():
        if table.time_column is None:
            continue
        df = frames[name]
        assert df[table.time_column].max() < end, name
        joined = df.join(reg, on="user_id")
        assert (joined[table.time_column] > joined["registered_at"]).all(), name
    paid = frames["repayments"]["paid_at"].drop_nulls()
    assert paid.max() < end
    start = datetime(2024, 3, 1, tzinfo=timezone(timedelta(hours=8)))
    assert frames["transactions"]["ts"].min() >= start


def test_loans_exactly_for_approved_and_schedule_shape(frames):
    apps = frames["applications"]
    approved = apps["decision"] == "approved"
    assert (apps["loan_id"].is_not_null() == approved).all()
    rate = approved.mean()
    assert 0.45 < rate < 0.85, rate
    rep = frames["repayments"].join(
        apps.select("loan_id", "applied_at", "term_months", "amount_requested"), on="loan_id"
    )
    shape = rep.group_by("loan_id").agg(
        n=pl.len(),
        term=pl.col("term_months").first(),
        inst=pl.col("installment_no").sort(),
    )
    assert shape.height == approved.sum()
    assert (shape["n"] == shape["term"].cast(pl.UInt32)).all()
    assert all(v == list(range(1, len(v) + 1)) for v in shape["inst"].to_list())
    # installment k due k months after the local disbursal date
    local = rep["applied_at"].dt.convert_time_zone(TZ).dt.date()
    expected = local.dt.offset_by(pl.Series([f"{k}mo" for k in rep["installment_no"]]))
    assert (rep["due_date"] == expected).all()
    # amount_due covers principal plus interest; paid rows pay it in full, unpaid ones zero
    total_due = rep.group_by("loan_id").agg(
        pl.col("amount_due").sum(), pl.col("amount_requested").first()
    )
    assert (total_due["amount_due"] >= total_due["amount_requested"] - 0.01 * 20).all()
    paid = rep["paid_at"].is_not_null()
    assert (rep.filter(paid)["amount_paid"] == rep.filter(paid)["amount_due"]).all()
    assert (rep.filter(~paid)["amount_paid"] == 0).all()
    assert (rep.filter(paid)["paid_at"] > rep.filter(paid)["applied_at"]).all()


def test_app_sessions_start_with_login(frames):
    ev = frames["app_events"]
    first = (
        ev.sort("ts")
        .group_by("session_id")
        .agg(pl.col("event").first(), pl.col("user_id").n_unique())
    )
    assert (first["event"] == "login").all()
    assert (first["user_id"] == 1).all()
    # every application has an apply_submit by the same user just before it
    apps = frames["applications"]
    submits = ev.filter(pl.col("event") == "apply_submit")
    assert submits.height == apps.height


def test_same_seed_identical_other_seed_different(tmp_path, frames):
    again = tmp_path / "again"
    generate(again, SMALL, progress=False)
    for name in TABLES:
        assert read(again, name).equals(frames[name]), name
    other = tmp_path / "other"
    cfg = GeneratorConfig(**{**SMALL.__dict__, "seed": 12})
    generate(other, cfg, progress=False)
    for name in ("users", "transactions", "applications", "_truth"):
        assert not read(other, name).equals(frames[name]), name


def test_byte_identical_files_and_replace_semantics(tmp_path):
    cfg = GeneratorConfig(users=300, months=6, seed=3, block_users=150)
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, cfg, progress=False)
    generate(b, cfg, progress=False)
    fa = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    fb = sorted(p.relative_to(b) for p in b.rglob("*.parquet"))
    assert fa == fb
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in fa)
    # a previous output is replaced only once the new one is complete
    generate(a, GeneratorConfig(users=200, months=6, seed=4), progress=False)
    assert read(a, "users").height == 200
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # anything that is not a previous output is refused
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate(foreign, cfg, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.parquet")}


def test_appended_days_continue_the_same_world(tmp_path):
    """Two days appended: the root is what generating with the two days revealed gives, byte
    for byte; every file of a day before the old cut is unchanged; the new days hold events,
    applications and repayments paid in them; installments paid after the cut stay unpaid."""
    cfg = GeneratorConfig(users=400, months=4, seed=3, block_users=200)
    root, direct = tmp_path / "root", tmp_path / "direct"
    generate(root, cfg, progress=False)
    before = files_of(root)
    users, schedules = read(root, "users"), read(root, "repayments")
    report = append_days(root, 2, progress=False)
    generate(direct, replace(cfg, extra_days=2), progress=False)
    after = files_of(root)
    assert after == files_of(direct)
    assert root_config(root) == replace(cfg, extra_days=2) and report.config.extra_days == 2

    old_cut = cfg.cut
    dated = {k: v for k, v in before.items() if "/dt=" in k}
    assert all(after[k] == v for k, v in dated.items())
    new_days = {k.split("/")[1] for k in set(after) - set(before)}
    assert new_days == {f"dt={old_cut}", f"dt={old_cut + timedelta(days=1)}"}
    assert read(root, "users").equals(users)

    tz = timezone(timedelta(hours=8))
    cut_at = datetime(old_cut.year, old_cut.month, old_cut.day, tzinfo=tz).astimezone(UTC)
    end_at = cut_at + timedelta(days=2)
    new_apps = read(root, "applications").filter(pl.col("applied_at") >= cut_at)
    assert new_apps.height > 0 and new_apps["applied_at"].max() < end_at
    paid = read(root, "repayments")["paid_at"].drop_nulls()
    assert paid.max() < end_at and ((paid >= cut_at) & (paid < end_at)).sum() > 0
    new_loans = set(new_apps["loan_id"].drop_nulls())
    grown = read(root, "repayments")
    assert new_loans and new_loans <= set(grown["loan_id"])
    assert (
        grown.height == schedules.height + grown.filter(pl.col("loan_id").is_in(new_loans)).height
    )
    assert set(read(root, "_truth")["application_id"]) == set(
        read(root, "applications")["application_id"]
    )


def test_appending_is_refused_past_the_reserve_and_for_foreign_roots(tmp_path):
    cfg = GeneratorConfig(users=200, months=3, seed=3, reserve_months=1)
    root = tmp_path / "root"
    generate(root, cfg, progress=False)
    room = (add_months(cfg.start, 4) - cfg.period_end).days
    with pytest.raises(ValueError, match=f"holds {room} days"):
        append_days(root, room + 1, progress=False)
    assert root_config(root) == cfg
    with pytest.raises(FileNotFoundError, match="only a root written by `pdflow generate`"):
        append_days(tmp_path / "elsewhere", 1, progress=False)


def test_failed_run_leaves_no_output(tmp_path, monkeypatch):
    import data.generator.block as block

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(block.T, "social", boom)
    out = tmp_path / "raw"
    with pytest.raises(RuntimeError):
        generate(out, GeneratorConfig(users=200, months=6), progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_world_signal_and_bad_rate(tmp_path):
    """Mid-size run: bad rate of matured approved loans and that true_pd ranks them."""
    cfg = GeneratorConfig(users=8000, months=14, seed=5)
    out = tmp_path / "raw"
    generate(out, cfg, progress=False)
    end = add_months(cfg.start, cfg.months)
    apps = read(out, "applications")
    rep = read(out, "repayments").filter(pl.col("installment_no") <= 6)
    rep = rep.with_columns(
        late=pl.coalesce(pl.col("paid_at").dt.convert_time_zone(TZ).dt.date(), pl.lit(end))
        .sub(pl.col("due_date"))
        .dt.total_days(),
        ripe=(pl.lit(end) - pl.col("due_date")).dt.total_days() >= 90,
    )
    lab = rep.group_by("loan_id").agg(bad=(pl.col("late") >= 90).any(), ripe=pl.col("ripe").all())
    lab = lab.filter(pl.col("bad") | pl.col("ripe")).join(
        apps.join(read(out, "_truth"), on="application_id"), on="loan_id"
    )
    assert lab.height > 800
    bad = lab["bad"].mean()
    assert 0.025 < bad < 0.10, bad
    # oracle ranking: defaulters have clearly higher true_pd
    y = lab["bad"].to_numpy()
    p = lab["true_pd"].to_numpy()
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    auc = (ranks[y].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (~y).sum())
    assert 0.70 < auc < 0.95, auc
    # push-message applicants are riskier (selection) and approval is in range
    by_ch = (
        apps.join(read(out, "_truth"), on="application_id")
        .group_by("channel")
        .agg(pl.col("true_pd").mean())
    )
    pd_ch = dict(by_ch.iter_rows())
    assert pd_ch["push_message"] > 1.3 * pd_ch["organic"]
    # gender carries no risk
    users = read(out, "users")
    g = apps.join(read(out, "_truth"), on="application_id").join(users, on="user_id")
    gm = dict(g.group_by("gender").agg(pl.col("true_pd").mean()).iter_rows())
    assert abs(gm["F"] - gm["M"]) < 0.25 * (gm["F"] + gm["M"]) / 2
    # night-time consumption is more common for users who later default
    cons = read(out, "consumption").with_columns(
        night=pl.col("ts").dt.convert_time_zone(TZ).dt.hour() < 6
    )
    night = cons.group_by("user_id").agg(pl.col("night").mean())
    per = lab.join(night, on="user_id").group_by("bad").agg(pl.col("night").mean())
    nm = dict(per.iter_rows())
    assert nm[True] > nm[False]
    # salary regularity: salaried users get one salary a month on a stable day
    tx = read(out, "transactions").filter(pl.col("txn_type") == "salary")
    assert (
        tx["user_id"]
        .is_in(users.filter(pl.col("occupation").is_in(["salaried", "retired"]))["user_id"])
        .all()
    )

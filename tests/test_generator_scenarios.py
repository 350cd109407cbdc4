"""Scenario knobs and presets of the synthetic generator: the default world is unchanged, each
knob changes what it says and nothing else, and presets resolve from file, environment and
flags with explicit values on top."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, fields, replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from scipy.stats import spearmanr
from test_generator import assert_rows_follow_the_contract, read
from typer.testing import CliRunner

from data.contract import TABLES
from data.generator import GeneratorConfig, generate
from data.generator.block import block_streams
from data.generator.config import SCENARIO_DESCRIPTIONS, SCENARIOS, SIGNALS, with_scenario
from data.generator.population import build_population
from data.generator.timeline import Timeline
from flows.cli import app
from flows.settings import load_settings

# One worker runs the module: its module-scoped worlds are built once, not once per worker.
pytestmark = pytest.mark.xdist_group("generator_scenarios")

# Big enough for stable rank correlations (about 1,400 users with an application), small
# enough to generate in about 1.5 s.
BASE = GeneratorConfig(users=6_000, months=6, seed=5)
FAMILY_TABLES = {
    "bureau_signal": ("bureau_snapshots", "bureau_inquiries"),
    "consumption_signal": ("consumption",),
    "transactions_signal": ("transactions",),
    "social_signal": ("social",),
    "app_signal": ("app_events",),
}
WORLD_TABLES = ("users", "applications", "repayments", "_truth")


def world_digest(root: Path) -> str:
    """A digest of every file's path and every value, independent of the Parquet encoder."""
    h = hashlib.sha256()
    for name in sorted(TABLES):
        files = sorted((root / name).rglob("*.parquet"))
        h.update("\n".join([name, *(str(f.relative_to(root)) for f in files)]).encode())
        df = pl.read_parquet(files, hive_partitioning=False)
        for col in df.columns:
            s = df[col]
            h.update(col.encode() + s.is_null().to_numpy().tobytes())
            if s.dtype == pl.String:
                h.update("\x1f".join(s.fill_null("").to_list()).encode())
            else:
                h.update(s.to_physical().fill_null(0).to_numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """``world(**knobs)``: the root of BASE with ``knobs``, generated once per module."""
    roots: dict[tuple, Path] = {}

    def make(**knobs) -> Path:
        key = tuple(sorted(knobs.items()))
        if key not in roots:
            roots[key] = tmp_path_factory.mktemp("world") / "raw"
            generate(roots[key], replace(BASE, **knobs), progress=False)
        return roots[key]

    return make


def frames_of(root: Path, names=TABLES) -> dict[str, pl.DataFrame]:
    return {name: read(root, name) for name in names}


# ----------------------------------------------------------------------------- default world


def test_default_knobs_give_the_world_of_before(tmp_path):
    """The digest of a world generated before the scenario knobs existed (same config), and
    before the world ran past the period (no reserve)."""
    cfg = GeneratorConfig(
        users=400, months=4, seed=11, block_users=200, start=date(2024, 3, 1), reserve_months=0
    )
    generate(tmp_path / "raw", cfg, progress=False)
    assert world_digest(tmp_path / "raw") == (
        "e58ce4d9234d541a66bf73c234c17a76e93decccf82937a08566ee24c2f0cecd"
    )
    # spelling the defaults out, or naming the default scenario, is the same world
    explicit = GeneratorConfig.from_scenario(
        "default", **{k: v for k, v in asdict(cfg).items() if k != "scenario"}
    )
    assert explicit == cfg


def test_every_knob_away_from_its_default_is_still_deterministic(tmp_path):
    cfg = GeneratorConfig(
        users=500,
        months=4,
        seed=3,
        block_users=250,
        community_weight=1.7,
        bureau_coverage=0.6,
        **dict.fromkeys(SIGNALS, 0.4),
    )
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, cfg, progress=False)
    generate(b, cfg, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.parquet"))
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in files)


# ----------------------------------------------------------------------------- signals


def risk_per_user(root: Path) -> pl.DataFrame:
    """Each applicant's mean true PD."""
    apps = read(root, "applications").join(read(root, "_truth"), on="application_id")
    return apps.group_by("user_id").agg(pd=pl.col("true_pd").mean())


def family_statistics(root: Path) -> dict[str, pl.DataFrame]:
    """Per user, one statistic of each family's rows that its latent risk drives and the
    observable profile does not (no night shares: youth is observable and risky)."""
    snapshots = (
        read(root, "bureau_snapshots")
        .group_by("user_id")
        .agg(x=(pl.col("max_dpd_current") > 0).mean())
    )
    consumption = (
        read(root, "consumption")
        .group_by("user_id")
        .agg(x=(pl.col("pay_method") == "credit").mean())
    )
    # loans from other lenders: disbursements less one per loan of ours
    ours = (
        read(root, "applications")
        .filter(pl.col("decision") == "approved")
        .group_by("user_id")
        .agg(ours=pl.len())
    )
    disbursed = (
        read(root, "transactions")
        .filter(pl.col("txn_type") == "loan_disbursement")
        .group_by("user_id")
        .agg(x=pl.len())
    )
    transactions = (
        read(root, "users")
        .join(disbursed, on="user_id", how="left")
        .join(ours, on="user_id", how="left")
        .select("user_id", x=pl.col("x").fill_null(0) - pl.col("ours").fill_null(0))
    )
    friends_risk = risk_per_user(root).rename({"user_id": "peer_id", "pd": "x"})
    social = (
        read(root, "social")
        .select("user_id", "peer_id")
        .unique()
        .join(friends_risk, on="peer_id")
        .group_by("user_id")
        .agg(pl.col("x").mean())
    )
    browsing = (
        read(root, "app_events")
        .group_by("user_id")
        .agg(x=pl.col("event").is_in(["limit_check", "view_rate_compare"]).sum())
    )
    return {
        "bureau_signal": snapshots,
        "consumption_signal": consumption,
        "transactions_signal": transactions,
        "social_signal": social,
        "app_signal": browsing,
    }


def correlations(root: Path) -> dict[str, float]:
    """Spearman correlation of each family's statistic with the applicants' true PD."""
    risk = risk_per_user(root)
    out = {}
    for knob, stat in family_statistics(root).items():
        joined = risk.join(stat, on="user_id").drop_nulls()
        assert joined.height > 900, knob
        out[knob] = spearmanr(joined["pd"], joined["x"]).statistic
    return out


def test_a_family_at_signal_zero_tells_nothing_about_risk(world):
    """At 1 each family's statistic ranks applicants by true PD; at 0 it does not (about
    1,400 applicants: a correlation's standard error is about 0.027); above 1 more."""
    real = correlations(world())
    blind = correlations(world(**dict.fromkeys(SIGNALS, 0.0)))
    loud = correlations(world(**dict.fromkeys(SIGNALS, 2.0)))
    for knob in SIGNALS:
        assert real[knob] > 0.25, (knob, real)
        assert abs(blind[knob]) < 0.09, (knob, blind)
        assert loud[knob] > real[knob] - 0.02, (knob, loud, real)
    assert loud["bureau_signal"] > real["bureau_signal"] + 0.1


def test_signals_change_only_their_family(world):
    """The world (users, applications, repayments, true PD) and the other families are
    the default world's, row for row."""
    default = frames_of(world())
    for knob, tables in FAMILY_TABLES.items():
        shown = frames_of(world(**{knob: 0.0}))
        for name in TABLES:
            same = shown[name].equals(default[name])
            assert same != (name in tables), (knob, name)


def test_views_keep_the_contract(world):
    """Rewired friends are never the user themself; amplified families stay in range."""
    for knobs in (dict.fromkeys(SIGNALS, 0.0), dict.fromkeys(SIGNALS, 2.0)):
        frames = frames_of(world(**knobs))
        assert_rows_follow_the_contract(frames)
        social = frames["social"]
        assert (social["user_id"] != social["peer_id"]).all()
        uids = frames["users"]["user_id"]
        assert social["peer_id"].str.slice(1).cast(pl.Int64).max() < 2 * BASE.users
        assert frames["bureau_snapshots"]["user_id"].is_in(uids.implode()).all()


# ----------------------------------------------------------------------------- coverage


def test_bureau_coverage_leaves_the_others_without_a_file(world):
    full, thin = frames_of(world()), frames_of(world(bureau_coverage=0.3))
    bureau = ("bureau_snapshots", "bureau_inquiries")
    for name in TABLES:
        if name not in bureau:
            assert thin[name].equals(full[name]), name
    filed_full = set(full["bureau_snapshots"]["user_id"]) | set(full["bureau_inquiries"]["user_id"])
    filed = set(thin["bureau_snapshots"]["user_id"]) | set(thin["bureau_inquiries"]["user_id"])
    assert filed <= filed_full
    assert 0.27 < len(filed) / len(filed_full) < 0.33, len(filed) / len(filed_full)
    # the users with a file have every row they have in the full world, and only those
    for name in bureau:
        kept = full[name].filter(pl.col("user_id").is_in(list(filed)))
        assert thin[name].equals(kept), name


# ----------------------------------------------------------------------------- community


def community_share(root: Path, cfg: GeneratorConfig) -> float:
    """Share of the variance of applications' true default logit between communities
    (the communities are the simulator's: rebuilt from the block's seed)."""
    assert cfg.n_blocks == 1
    tl = Timeline.build(cfg.start, cfg.horizon_months, cfg.timezone)
    rngs = block_streams(np.random.SeedSequence(cfg.seed).spawn(1)[0])
    pop = build_population(0, 0, cfg.users, tl, cfg, rngs["population"], rngs["outsiders"])
    comm = pl.DataFrame({"user_id": pop.uid, "comm": pop.comm})
    apps = read(root, "applications").join(read(root, "_truth"), on="application_id")
    z = apps.join(comm, on="user_id").select(
        "comm", z=(pl.col("true_pd") / (1 - pl.col("true_pd"))).log()
    )
    centred = z.with_columns(pl.col("z") - pl.col("z").mean())
    between = (
        centred.group_by("comm").agg((pl.len() * pl.col("z").mean() ** 2).alias("z"))["z"].sum()
    )
    return between / (centred["z"] ** 2).sum()


def test_community_weight_puts_more_of_the_risk_in_communities(world):
    # One 6,000-user world has too few applications per community for a stable share (one
    # seed's share at weight 1 fell below its share at weight 0), so three seeds are averaged.
    def share(w: float) -> float:
        seeds = (BASE.seed, BASE.seed + 1, BASE.seed + 2)
        knobs = [{"community_weight": w, "seed": seed} for seed in seeds]
        return float(np.mean([community_share(world(**k), replace(BASE, **k)) for k in knobs]))

    shares = {w: share(w) for w in (0.0, 1.0, 2.0)}
    assert shares[0.0] + 0.04 < shares[1.0] < shares[2.0] - 0.08, shares
    bad = {w: read(world(community_weight=w), "_truth")["true_pd"].mean() for w in (1.0, 2.0)}
    assert bad[2.0] > bad[1.0]


# ----------------------------------------------------------------------------- presets


def test_every_preset_is_a_valid_world_with_a_description():
    names = {f.name for f in fields(GeneratorConfig)}
    assert set(SCENARIO_DESCRIPTIONS) == set(SCENARIOS)
    assert {
        "default",
        "small_lender",
        "short_history",
        "bureau_heavy",
        "thin_file",
        "social_heavy",
        "noisy_app",
        "strong_drift",
        "large_lender",
    } <= set(SCENARIOS)
    for name, overrides in SCENARIOS.items():
        assert set(overrides) <= names - {"scenario"}, name
        cfg = GeneratorConfig.from_scenario(name)
        assert cfg.scenario == name
        assert {k: getattr(cfg, k) for k in overrides} == dict(overrides)
        assert SCENARIO_DESCRIPTIONS[name].strip(), name
        # resolving again changes nothing (the settings validate twice)
        assert with_scenario(asdict(cfg)) == asdict(cfg)
    assert GeneratorConfig.from_scenario("default") == GeneratorConfig()
    small = GeneratorConfig.from_scenario("thin_file", users=300, bureau_signal=0.9)
    assert (small.users, small.months, small.bureau_signal) == (300, 18, 0.9)
    assert small.bureau_coverage == 0.3


def test_unknown_scenarios_and_bad_knobs_are_refused():
    known = "known scenarios: default, small_lender, short_history"
    with pytest.raises(ValueError, match=known):
        GeneratorConfig.from_scenario("thick_file")
    with pytest.raises(ValueError, match=known):
        GeneratorConfig(scenario="thick_file")
    for knob in (*SIGNALS, "community_weight"):
        for bad in (-0.1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=knob):
                GeneratorConfig(**{knob: bad})
    for bad in (0.0, -0.5, 1.01):
        with pytest.raises(ValueError, match="bureau_coverage"):
            GeneratorConfig(bureau_coverage=bad)


def test_settings_apply_the_preset_under_file_environment_and_flags(tmp_path, monkeypatch):
    for var in ("SCENARIO", "USERS", "BUREAU_COVERAGE", "SOCIAL_SIGNAL"):
        monkeypatch.delenv(f"PDFLOW_GENERATOR__{var}", raising=False)
    path = tmp_path / "settings.yml"
    path.write_text("generator:\n  scenario: thin_file\n  users: 1000\n")
    gen = load_settings(path).generator
    assert (gen.scenario, gen.users, gen.months, gen.bureau_coverage) == (
        "thin_file",
        1000,
        18,
        0.3,
    )
    # the environment names another preset; the file's users still win over its size
    monkeypatch.setenv("PDFLOW_GENERATOR__SCENARIO", "social_heavy")
    gen = load_settings(path).generator
    assert (gen.scenario, gen.users, gen.months) == ("social_heavy", 1000, 24)
    assert (gen.community_weight, gen.social_signal, gen.bureau_coverage) == (2.0, 1.5, 1.0)
    monkeypatch.setenv("PDFLOW_GENERATOR__SOCIAL_SIGNAL", "0.7")
    assert load_settings(path).generator.social_signal == 0.7
    # flags win over everything
    gen = load_settings(path, generator={"scenario": "thin_file", "bureau_coverage": 0.5}).generator
    assert (gen.scenario, gen.bureau_coverage, gen.social_signal) == ("thin_file", 0.5, 0.7)
    monkeypatch.setenv("PDFLOW_GENERATOR__SCENARIO", "thick_file")
    with pytest.raises(ValidationError, match="known scenarios: default, small_lender"):
        load_settings(path)


runner = CliRunner()


def test_generate_with_a_scenario_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv("PDFLOW_GENERATOR__SCENARIO", raising=False)
    out = tmp_path / "raw"
    args = ["generate", "--out", str(out), "--scenario", "small_lender"]
    result = runner.invoke(app, [*args, "--users", "500", "--months", "3"])
    assert result.exit_code == 0, result.output
    assert read(out, "users").height == 500
    days = sorted(p.name for p in (out / "consumption").iterdir())
    assert days[0] >= "dt=2024-01-01" and days[-1] <= "dt=2024-03-31"
    # the preset's other values apply: a thin file, through the environment this time
    monkeypatch.setenv("PDFLOW_GENERATOR__SCENARIO", "thin_file")
    result = runner.invoke(app, ["generate", "--out", str(out), "--users", "600", "--months", "3"])
    assert result.exit_code == 0, result.output
    filed = read(out, "bureau_snapshots")["user_id"].n_unique() / 600
    assert 0.2 < filed < 0.4, filed


def test_an_unknown_scenario_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("PDFLOW_GENERATOR__SCENARIO", raising=False)
    help_text = runner.invoke(app, ["generate", "--help"]).output
    for name in SCENARIOS:
        assert name in help_text.replace("\n", " ").replace("│", " ").replace(" ", ""), name
    out = tmp_path / "raw"
    result = runner.invoke(app, ["generate", "--out", str(out), "--scenario", "thick_file"])
    assert result.exit_code == 2
    assert "unknown scenario 'thick_file'; known scenarios: default, small_lender" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()

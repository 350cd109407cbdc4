"""The governed registry: aliases, the promotion gate's rules, promote and rollback, the lock."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from models.config import PromotionSettings
from models.errors import RegistryError
from models.pd_model import PDModel
from models.promotion import GateResult, compare
from models.registry import (
    CHALLENGER,
    CHAMPION,
    EVALUATED_MODEL,
    EVALUATED_MONTHS,
    FITTED_MONTHS,
    Registry,
    fair_champion_uri,
    gate_against,
    months_before,
)
from models.train import FeatureSpec

NAME = "pdflow-pd"


def simulated(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(signal * 1.5 - 3)))).astype(int)
    return labels, signal


def as_pd(score: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(score * 1.5 - 3)))


def test_gate_passes_a_clearly_better_calibrated_challenger() -> None:
    labels, signal = simulated()
    rng = np.random.default_rng(1)
    champion = as_pd(signal + rng.normal(scale=1.5, size=signal.size))
    challenger = as_pd(signal + rng.normal(scale=0.3, size=signal.size))
    result = compare(labels, challenger, champion, PromotionSettings(max_psi=5.0))
    assert result.discriminates and result.p_value < 0.001
    assert result.auc_difference_low < result.auc_difference < result.auc_difference_high
    assert result.challenger_auc > result.champion_auc


def test_gate_keeps_the_champion_against_an_equal_model() -> None:
    labels, signal = simulated()
    pd = as_pd(signal)
    result = compare(labels, pd, pd, PromotionSettings())
    assert not result.passed and not result.discriminates
    assert result.auc_difference == 0 and result.p_value == 1.0 and result.psi == 0.0


def test_gate_fails_a_better_ranking_but_miscalibrated_challenger() -> None:
    labels, signal = simulated()
    rng = np.random.default_rng(2)
    champion = as_pd(signal + rng.normal(scale=1.5, size=signal.size))
    ranks_better = np.clip(as_pd(signal) * 4, 0, 0.99)  # same order as the truth, PD x4
    result = compare(labels, ranks_better, champion, PromotionSettings(max_psi=50.0))
    assert result.discriminates and not result.calibrated and not result.passed
    assert "calibration: fails" in result.checks[1]


def test_gate_fails_on_a_score_shift_a_reviewer_may_accept() -> None:
    labels, signal = simulated()
    rng = np.random.default_rng(3)
    champion = as_pd(signal + rng.normal(scale=1.5, size=signal.size))
    challenger = as_pd(signal + rng.normal(scale=0.3, size=signal.size))
    result = compare(labels, challenger, champion, PromotionSettings(max_psi=0.001))
    assert result.discriminates and not result.stable and not result.passed
    assert result.psi_only_failure


def test_fair_champion_never_saw_the_challengers_loans() -> None:
    assert months_before("2024-03..2025-04", "2025-05")
    assert not months_before("2024-03..2025-05", "2025-05")
    assert not months_before(None, "2025-05")
    registry = Registry.__new__(Registry)
    registry.name = NAME

    def version(tags: dict[str, str]) -> ModelVersion:
        return ModelVersion(NAME, "3", 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()])

    refit_on_all = {
        FITTED_MONTHS: "2024-03..2025-06",
        EVALUATED_MONTHS: "2024-03..2025-04",
        EVALUATED_MODEL: "models:/m-evaluated",
    }
    assert fair_champion_uri(registry, version(refit_on_all), "2025-05") == "models:/m-evaluated"
    assert fair_champion_uri(registry, version(refit_on_all), "2025-07") == f"models:/{NAME}/3"
    assert fair_champion_uri(registry, version(refit_on_all), "2025-04") is None
    assert fair_champion_uri(registry, version({}), "2025-05") is None


# --- On a real SQLite store --------------------------------------------------------------


def tiny_model(seed: int) -> tuple[PDModel, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"x": rng.normal(size=600), "y": rng.normal(size=600)})
    labels = (frame["x"].to_numpy() + rng.normal(size=600) > 1.2).astype(int)
    spec = FeatureSpec(names=("x", "y"))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed},
        lgb.Dataset(spec.matrix(frame), labels),
        num_boost_round=5,
    )
    return PDModel(booster, spec), frame.with_columns(label=pl.Series(labels))


def log_tiny(tracking_uri: str, seed: int) -> tuple[str, str]:
    """A tiny PD model logged in a run of the store's experiment "tiny", whose artifacts lie
    beside the store's file."""
    mlflow.set_tracking_uri(tracking_uri)
    folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    experiment = mlflow.get_experiment_by_name("tiny")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else mlflow.create_experiment("tiny", (folder / "artifacts").as_uri())
    )
    model, _ = tiny_model(seed)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=model, pip_requirements=[])
    return info.model_uri, run.info.run_id


def registry_at(folder: Path) -> Registry:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return Registry(uri, NAME, folder / "mlflow.db.promotion.lock")


def passing_gate(champion: ModelVersion) -> GateResult:
    return GateResult(passed=True, comparable=True, checks=["all checks pass"])


def test_first_version_is_champion_and_later_ones_challengers(tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    uris = [log_tiny(registry.tracking_uri, seed) for seed in range(3)]
    failing = GateResult(passed=False, comparable=True, checks=["discrimination: fails"])
    outcomes = []
    for (uri, run_id), gate in zip(
        uris, [passing_gate, lambda c: failing, passing_gate], strict=True
    ):
        with registry.locked():
            version = registry.register(uri, run_id, {})
            outcomes.append(registry.settle(str(version.version), gate, "auto"))
    assert [o.event.action for o in outcomes] == ["first champion", "kept champion", "promoted"]
    assert (
        str(registry.alias(CHAMPION).version) == "3"
        and str(registry.alias(CHALLENGER).version) == "3"
    )
    history = registry.history()
    assert [(e.champion_before, e.champion_after) for e in history] == [
        (None, "1"),
        ("1", "1"),
        ("1", "3"),
    ]

    event = registry.rollback("version 3 declines too many gig workers")
    assert (event.action, event.version, event.champion_before) == ("rollback", "1", "3")
    assert str(registry.alias(CHAMPION).version) == "1"
    tags = registry.version("1").tags
    assert tags["pdflow.restored_reason"] == "version 3 declines too many gig workers"
    assert tags["pdflow.restored_by"] and tags["pdflow.restored_at"]
    assert registry.version("3").tags["pdflow.rolled_back_reason"].startswith("version 3")
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("again")

    event = registry.promote("2", "reviewed: the drift is seasonal")
    assert (event.action, event.champion_before, event.champion_after) == ("promote", "1", "2")
    assert registry.version("2").tags["pdflow.promoted_reason"] == "reviewed: the drift is seasonal"
    assert registry.rollback("back").champion_after == "1"
    with pytest.raises(RegistryError, match="no version 9"):
        registry.promote("9", "typo")
    assert [e.number for e in registry.history()] == list(range(1, 7))


def test_promote_refuses_a_version_whose_model_cannot_load(tmp_path: Path) -> None:
    from models.errors import ModelNotFound

    registry = registry_at(tmp_path)
    uri, run_id = log_tiny(registry.tracking_uri, 0)
    with registry.locked():
        registry.settle(str(registry.register(uri, run_id, {}).version), passing_gate, "auto")
        broken = registry.register(str(tmp_path / "nowhere"), run_id, {})
    with pytest.raises(ModelNotFound):
        registry.promote(str(broken.version), "try it")
    assert str(registry.alias(CHAMPION).version) == "1"


def test_manual_mode_only_recommends(tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    for seed in range(2):
        uri, run_id = log_tiny(registry.tracking_uri, seed)
        with registry.locked():
            version = registry.register(uri, run_id, {})
            settled = registry.settle(str(version.version), passing_gate, "manual")
    assert settled.event.action == "recommended" and not settled.promoted
    assert (
        str(registry.alias(CHAMPION).version) == "1"
        and str(registry.alias(CHALLENGER).version) == "2"
    )


def test_gate_rescores_the_champion_through_its_registered_model(tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    uri, run_id = log_tiny(registry.tracking_uri, 0)
    tags = {FITTED_MONTHS: "2024-01..2024-12", EVALUATED_MONTHS: "2024-01..2024-12"}
    with registry.locked():
        champion = registry.register(uri, run_id, tags)
    model, frame = tiny_model(0)
    oot = frame.with_columns(month=pl.lit("2025-02"))
    same = model.predict_pd(oot)
    result = gate_against(registry, champion, oot, same, PromotionSettings(), 10)
    assert result.comparable and result.auc_difference == 0 and not result.passed
    lacking = gate_against(registry, champion, oot.drop("y"), same, PromotionSettings(), 10)
    assert not lacking.comparable and "cannot be scored" in lacking.checks[0]
    leaked = gate_against(
        registry, champion, oot.with_columns(month=pl.lit("2024-06")), same, PromotionSettings(), 10
    )
    assert not leaked.comparable and "no fair comparison" in leaked.checks[0]


def _train_and_settle(folder: str, seed: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    """One 'training' finishing: register a version and settle the aliases under the lock."""
    registry = registry_at(Path(folder))
    uri, run_id = log_tiny(registry.tracking_uri, seed)

    def slow_gate(champion: ModelVersion) -> GateResult:
        time.sleep(0.5)  # re-scoring the champion: a wide window for a race
        return passing_gate(champion)

    read_alias = registry.alias

    def slow_alias(alias: str) -> ModelVersion | None:
        found = read_alias(alias)
        time.sleep(0.5)  # a slow store: a wide window between reading an alias and moving it
        return found

    registry.alias = slow_alias  # type: ignore[method-assign]
    barrier.wait()
    with registry.locked():
        version = registry.register(uri, run_id, {})
        registry.settle(str(version.version), slow_gate, "auto")


@pytest.mark.slow  # two processes, each importing the whole stack
def test_two_trainings_finishing_together_leave_consistent_aliases(tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    log_tiny(registry.tracking_uri, 99)  # create the store before the race
    registry.client.create_registered_model(NAME)  # no version yet: both may think they are first
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_train_and_settle, args=(str(tmp_path), seed, barrier))
        for seed in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    history = registry.history()
    assert [e.action for e in history] == ["first champion", "promoted"]
    first, second = history
    assert second.champion_before == first.version != second.version
    assert str(registry.alias(CHAMPION).version) == second.version
    assert str(registry.alias(CHALLENGER).version) == second.version
    assert sorted(str(v.version) for v in registry.versions()) == ["1", "2"]


def test_gate_uses_the_champions_evaluated_model_when_its_refit_saw_the_loans(
    tmp_path: Path,
) -> None:
    """final_refit: all registers a model refitted on the out-of-time loans too: the gate
    re-scores the champion's evaluated twin instead, never a model on loans it learned from."""
    registry = registry_at(tmp_path)
    evaluated_uri, _ = log_tiny(registry.tracking_uri, 0)
    refit_uri, run_id = log_tiny(registry.tracking_uri, 1)
    tags = {
        FITTED_MONTHS: "2024-01..2025-03",
        EVALUATED_MONTHS: "2024-01..2024-12",
        EVALUATED_MODEL: evaluated_uri,
    }
    with registry.locked():
        champion = registry.register(refit_uri, run_id, tags)
    evaluated, frame = tiny_model(0)
    oot = frame.with_columns(month=pl.lit("2025-02"))
    result = gate_against(
        registry, champion, oot, evaluated.predict_pd(oot), PromotionSettings(), 10
    )
    assert result.comparable and result.auc_difference == 0 and result.psi == 0
    refit, _ = tiny_model(1)
    against_refit = compare(
        oot["label"].to_numpy(),
        evaluated.predict_pd(oot),
        refit.predict_pd(oot),
        PromotionSettings(),
    )
    assert against_refit.auc_difference != 0  # the two champions' models do differ

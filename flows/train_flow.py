"""The nightly training flow: data gate -> labels -> features -> model -> registry (a new
version as ``challenger``, the promotion gate against the ``champion``, the model card).

Tasks exchange file paths and small summaries, never big frames (Prefect would pickle them).
Everything a run writes goes under ``<workspace>/runs/<as-of>/``, each file written atomically.
The gate runs first; when it stops, nothing is trained and nothing is registered. The tasks
that read and write their files retry on transient errors (``flows.retries``); the registry
step does not (a second try could register a second version): when it fails, the run fails
and the champion stays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from mlflow.entities.model_registry import ModelVersion
from prefect import flow, get_run_logger, task

from data.asof import day_start_utc, default_as_of
from data.fingerprint import raw_files_fingerprint, raw_fingerprint
from data.labels import label_loans
from data.readers import scan_raw
from data.storage import write_parquet_atomic
from data.validation import scan_validated
from expectations.feature_check import check_new_features
from expectations.gate import DataGateOutcome, DataGateStop, gate_or_stop
from expectations.runner import SuiteResult, validate
from expectations.suites import training_suite
from features.build import catalogue_markdown, update_feature_store
from features.store import MONTH, scan_feature_store
from flows.resume import result_key, resumable
from flows.retries import retrying
from flows.settings import Settings, as_settings
from flows.tracking import (
    Champion,
    RegisteredRun,
    as_json,
    end_parent_run,
    find_champion,
    log_training,
    parent_run_tags,
    record_decision,
    registration_tags,
    start_parent_run,
)
from models.card import CardInputs, card_html, model_card, segment_metrics
from models.drift import with_reference
from models.pipeline import TrainingOutcome, baseline_margins, train_pd_model, training_set
from models.registry import Registry, Settlement, decision_line, gate_against, lock_path
from models.split import SPLITS


@dataclass
class FeatureOutput:
    path: Path
    families: dict[str, str]
    words: dict[str, str]  # feature -> "description (window)", for reason codes
    catalogue: str
    check: SuiteResult


@dataclass
class TrainSummary:
    run: RegisteredRun
    as_of: date
    metrics: dict[str, float]
    split_rows: dict[str, int]
    split_months: dict[str, str]
    trials: int
    warnings: list[str]
    chosen: str = ""
    choice: str = ""
    candidates: pl.DataFrame | None = None
    fitted_on: dict[str, str] | None = None
    settlement: Settlement | None = None
    mode: str = "auto"


@dataclass
class RunContext:
    """When the flow started (the parent run's start) and what triggered it."""

    started_ms: int
    trigger: str


@dataclass
class Registered:
    run: RegisteredRun
    settlement: Settlement


def resolve_as_of(
    raw: Path, as_of: date | str | None, settings: Settings, trigger: str = "manual"
) -> date:
    """`as_of` as given (a date, or its ISO text from a deployment's parameters); without one,
    today's local date for a scheduled run (the night's work), else the day after the latest
    record."""
    if isinstance(as_of, str):
        return date.fromisoformat(as_of)
    if as_of is not None:
        return as_of
    timezone = settings.contract.timezone
    if trigger == "schedule":
        return datetime.now(ZoneInfo(timezone)).date()
    return default_as_of(scan_raw(raw), timezone)


def raw_root(raw: Path | str | None, settings: Settings) -> Path:
    return Path(raw) if raw else settings.raw_dir


@task(name="data gate")
def check_data(raw: Path, as_of: date, settings: Settings, out: Path) -> DataGateOutcome:
    """Validate every table; set bad rows aside; stop on unusable data."""
    outcome = gate_or_stop(
        raw, out / "gate", settings.validation, settings.contract.timezone, as_of
    )
    logger = get_run_logger()
    logger.info("data gate as of %s: %s", as_of, as_json(outcome.as_dict()["tables"]))
    for warning in outcome.warnings:
        logger.warning("data gate: %s", warning)
    return outcome


@task(name="label loans")
def make_labels(gate: DataGateOutcome, settings: Settings, out: Path) -> Path:
    tz = settings.contract.timezone
    tables = scan_validated(gate.report, tz)
    labels = label_loans(
        tables["applications"], tables["repayments"], gate.as_of, tz, settings.labels
    )
    return write_parquet_atomic(labels.collect(), out / "labels.parquet")


@task(name="build point-in-time features")
def make_features(gate: DataGateOutcome, raw: Path, settings: Settings, out: Path) -> FeatureOutput:
    """Add the applications the feature store lacks, then read every one before the as-of day."""
    tz = settings.contract.timezone
    tables = scan_validated(gate.report, tz)
    update = update_feature_store(
        tables,
        settings.feature_store,
        settings.features,
        tz,
        settings.labels,
        tag=gate.as_of.isoformat(),
        source=str(raw.resolve()),
    )
    get_run_logger().info(
        "feature store %s: %s %d applications (%d stored)",
        settings.feature_store,
        "rebuilt with" if update.rebuilt else "appended",
        update.added,
        update.stored,
    )
    defs = update.defs
    features = (
        scan_feature_store(settings.feature_store)
        .filter(pl.col("applied_at") < day_start_utc(gate.as_of, tz))
        .drop(MONTH)
        .sort("application_id")
        .collect()
    )
    check = check_new_features(
        defs, features, gate.as_of, settings.feature_store, settings.validation.stats, tz
    )
    return FeatureOutput(
        path=write_parquet_atomic(features, out / "features.parquet"),
        families={d.name: d.family for d in defs},
        words={d.name: f"{d.description} ({d.window})" for d in defs},
        catalogue=catalogue_markdown(defs),
        check=check,
    )


@task(name="split, tune and train")
def train_model(
    features: FeatureOutput,
    labels_path: Path,
    gate: DataGateOutcome,
    settings: Settings,
    champion: Champion | None,
) -> tuple[TrainingOutcome, SuiteResult]:
    feature_frame = pl.read_parquet(features.path)
    labels = pl.read_parquet(labels_path)
    check = validate(
        training_suite(settings.validation.stats),
        training_set(feature_frame, labels),
        action=settings.validation.stats.bad_rate_action,
    )
    if not check.success and check.action == "stop":
        raise DataGateStop(check.messages())
    truth = scan_validated(gate.report, settings.contract.timezone)["_truth"].collect()
    get_run_logger().info(
        "tuning warm-starts from %s",
        f"the champion, version {champion.version}" if champion else "the base parameters only",
    )
    outcome = train_pd_model(
        feature_frame,
        labels,
        features.families,
        settings.split,
        settings.training,
        settings.contract.timezone,
        truth=truth,
        evaluation=settings.evaluation,
        decision=settings.decision,
        words=features.words,
        warm_start=champion.params if champion else None,
    )
    with_reference(
        outcome.registered,
        feature_frame,
        gate.as_of,
        outcome.metrics["oot_auc"],
        settings.contract.timezone,
        settings.monitor,
        settings.evaluation.bins,
    )
    logger = get_run_logger()
    logger.info("chosen candidate: %s (%s)", outcome.chosen, outcome.choice)
    behind = {n: m for n, m in baseline_margins(outcome.metrics).items() if m <= 0}
    if behind:
        logger.warning(
            "the chosen model does not beat every baseline on out-of-time AUC: %s",
            ", ".join(f"{name} by {-margin:.4f}" for name, margin in behind.items()),
        )
    return outcome, check


def run_params(
    outcome: TrainingOutcome,
    raw: Path,
    features: FeatureOutput,
    settings: Settings,
    gate: DataGateOutcome,
) -> dict[str, object]:
    return {
        "as_of": gate.as_of.isoformat(),
        "raw": str(raw),
        "timezone": settings.contract.timezone,
        "label_window_months": settings.labels.window_months,
        "label_threshold_days": settings.labels.threshold_days,
        "feature_windows_days": ",".join(map(str, settings.features.windows_days)),
        "n_features": len(features.families),
        "trials": outcome.tuning.trials,
        "seed": settings.training.seed,
        "final_refit": settings.training.final_refit,
        "promotion_mode": settings.promotion.mode,
    }


def gate_metrics(gate: DataGateOutcome) -> dict[str, float]:
    """Rows read, kept and set aside per table, and the gate's warnings."""
    metrics: dict[str, float] = {"gate_warnings": float(len(gate.warnings))}
    for name, count in gate.report.tables.items():
        metrics[f"gate_{name}_rows_read"] = float(count.rows_read)
        metrics[f"gate_{name}_rows_kept"] = float(count.rows_kept)
        metrics[f"gate_{name}_rows_set_aside"] = float(count.rows_set_aside)
    return metrics


def trained_line(outcome: TrainingOutcome, as_of: date) -> str:
    """What was trained on what and how it scored, in a line."""
    return (
        f"{outcome.chosen.capitalize()} PD model as of {as_of}, fitted on "
        f"{outcome.fitted_on['registered']}; out-of-time AUC {outcome.metrics['oot_auc']:.4f} "
        f"on {outcome.split_rows['oot']:,} loans ({outcome.split_months['oot']})."
    )


def card_inputs(
    outcome: TrainingOutcome,
    features: FeatureOutput,
    gate: DataGateOutcome,
    settings: Settings,
    settlement: Settlement,
    version: ModelVersion,
) -> CardInputs:
    oot = outcome.training_set.filter(pl.col("split") == "oot")
    model_features = outcome.registered.spec.names
    return CardInputs(
        model_name=settings.mlflow.registered_model_name,
        version=str(version.version),
        as_of=gate.as_of,
        chosen=outcome.chosen,
        choice=outcome.choice,
        fitted_on=outcome.fitted_on,
        split_months=outcome.split_months,
        split_rows=outcome.split_rows,
        label_window_months=settings.labels.window_months,
        label_threshold_days=settings.labels.threshold_days,
        families={name: features.families[name] for name in model_features},
        catalogue_link="feature_catalogue.md",
        metrics=outcome.metrics,
        champion=champion_comparison(settlement),
        ablation=outcome.tables.get("evaluation/ablation.csv"),
        grades=outcome.tables.get("evaluation/oot_grades.csv"),
        segments=segment_metrics(oot, outcome.oot_scores["model"], settings.decision),
        protected=list(settings.features.protected),
        drift_warnings=list(gate.warnings),
        limitations=[],
    )


def champion_comparison(settlement: Settlement) -> dict[str, object] | None:
    gate = settlement.gate
    if gate is None:
        return None
    return {
        "version": settlement.event.champion_before,
        "champion_auc": gate.champion_auc,
        "challenger_auc": gate.challenger_auc,
        "difference": gate.auc_difference,
        "p_value": gate.p_value,
        "decision": settlement.event.action,
        "reason": settlement.event.reason,
    }


@task(name="log to MLflow, register, apply the promotion gate")
def register(
    outcome: TrainingOutcome,
    raw: Path,
    gate: DataGateOutcome,
    features: FeatureOutput,
    checks: list[SuiteResult],
    settings: Settings,
    out: Path,
    run: RunContext,
    fingerprint: str,
) -> Registered:
    """The parent run (started with the flow) with everything a reviewer compares, a new
    version with the ``challenger`` alias, the gate against the champion, the model card."""
    from expectations.docs import build_data_docs, results_json
    from models.plots import evaluation_plots

    results = [*gate.results, *checks]
    docs = build_data_docs(results, out / "gate" / "data_docs")
    plots = out / "plots"
    oot = outcome.training_set.filter(pl.col("split") == "oot")
    tables, study = outcome.tables, outcome.tuning.study
    evaluation_plots(outcome.model, oot, tables, study, settings.evaluation.bins, plots)
    splits = {
        name: write_parquet_atomic(
            outcome.training_set.filter(pl.col("split") == name), out / "splits" / f"{name}.parquet"
        )
        for name in SPLITS
    }
    artifacts = {
        "feature_catalogue.md": features.catalogue,
        "data_gate/report.json": as_json(gate.as_dict()),
        "data_gate/gx_results.json": results_json(results),
    }
    tags = parent_run_tags(outcome, gate.as_of.isoformat(), fingerprint, run.trigger)
    name = f"{outcome.chosen} as of {gate.as_of}"
    parent = start_parent_run(settings.mlflow, run.started_ms, tags, name)
    try:
        logged = log_training(
            outcome,
            settings.mlflow,
            parent,
            run_params(outcome, raw, features, settings, gate),
            gate_metrics(gate),
            artifacts,
            folders={"data_gate/data_docs": docs.parent, "plots": plots},
            splits=splits,
        )
        registry = Registry(
            settings.mlflow.tracking_uri,
            settings.mlflow.registered_model_name,
            lock_path(settings.mlflow.tracking_uri, settings.workspace),
        )
        with registry.locked():
            version = registry.register(
                logged.model_uri, logged.run_id, registration_tags(outcome, logged, tags)
            )
            settlement = registry.settle(
                str(version.version),
                lambda champion: gate_against(
                    registry,
                    champion,
                    oot,
                    outcome.oot_scores["model"],
                    settings.promotion,
                    settings.evaluation.bins,
                ),
                settings.promotion.mode,
            )
        card = model_card(card_inputs(outcome, features, gate, settings, settlement, version))
        record_decision(
            registry,
            logged,
            str(version.version),
            settlement,
            card,
            card_html(card, f"Model card: {registry.name} version {version.version}"),
            trained_line(outcome, gate.as_of),
            settings.promotion.mode,
        )
    except BaseException:
        end_parent_run(parent[0], "FAILED")
        raise
    end_parent_run(parent[0], "FINISHED")
    get_run_logger().info("promotion gate: %s", decision_line(settlement))
    return Registered(
        RegisteredRun(
            run_id=logged.run_id,
            experiment_id=logged.experiment_id,
            model_uri=f"models:/{registry.name}/{version.version}",
            model_version=str(version.version),
            tracking_uri=logged.tracking_uri,
        ),
        settlement,
    )


@flow(name="nightly-retrain", log_prints=True, validate_parameters=False)
def train_flow(
    settings: Settings | dict[str, Any] | None = None,
    raw: Path | str | None = None,
    as_of: date | str | None = None,
    trigger: str = "manual",
) -> TrainSummary:
    """Train and register one PD model on raw logs (default: the workspace's) as they stood
    on the morning of `as_of` (:func:`resolve_as_of`); `trigger` says what started it
    (manual, schedule, backfill)."""
    run = RunContext(started_ms=time.time_ns() // 1_000_000, trigger=trigger)
    settings = as_settings(settings)
    raw = raw_root(raw, settings)
    day = resolve_as_of(raw, as_of, settings, trigger)
    out = settings.run_dir(day.isoformat())
    files = raw_files_fingerprint(raw, day)
    gate_key = result_key("gate", files, settings, str(raw.resolve()), day)
    gate = resumable(retrying(check_data, settings.retries), gate_key)(raw, day, settings, out)
    labels = retrying(make_labels, settings.retries)(gate, settings, out)
    features = retrying(make_features, settings.retries)(gate, raw, settings, out)
    fingerprint = raw_fingerprint(raw, gate.as_of, gate.report.tables)
    champion = find_champion(settings.mlflow)
    key = result_key("train", fingerprint, settings, champion and champion.version)
    outcome, training_check = resumable(train_model, key)(
        features, labels, gate, settings, champion
    )
    checks = [features.check, training_check]
    registered = register(outcome, raw, gate, features, checks, settings, out, run, fingerprint)
    return TrainSummary(
        run=registered.run,
        as_of=day,
        metrics=outcome.metrics,
        split_rows=outcome.split_rows,
        split_months=outcome.split_months,
        trials=outcome.tuning.trials,
        warnings=gate.warnings,
        chosen=outcome.chosen,
        choice=outcome.choice,
        candidates=outcome.tables["evaluation/candidates.csv"],
        fitted_on=outcome.fitted_on,
        settlement=registered.settlement,
        mode=settings.promotion.mode,
    )

"""The nightly training flow: raw logs as of a date -> labels -> features -> model -> registry.

Tasks exchange file paths and small summaries, never big frames (Prefect would pickle them).
Everything a run writes goes under ``<workspace>/runs/<as-of>/``, each file written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task

from data.asof import AsOfView, build_view, default_as_of
from data.labels import label_loans
from data.readers import scan_raw
from data.storage import write_parquet_atomic
from features.build import application_spine, build_features, catalogue_markdown
from flows.settings import Settings
from flows.tracking import RegisteredRun, as_json, log_training
from models.pipeline import TrainingOutcome, train_pd_model


@dataclass
class RawSummary:
    raw: Path
    as_of: date
    counts: dict[str, dict[str, object]]


@dataclass
class FeatureOutput:
    path: Path
    families: dict[str, str]
    catalogue: str


@dataclass
class TrainSummary:
    run: RegisteredRun
    as_of: date
    metrics: dict[str, float]
    split_rows: dict[str, int]
    split_months: dict[str, str]
    trials: int


def _view(raw: Path, as_of: date, settings: Settings) -> AsOfView:
    return build_view(scan_raw(raw), as_of, settings.contract.timezone)


@task(name="read raw logs as of")
def read_raw(raw: Path, as_of: date | None, settings: Settings) -> RawSummary:
    """Check every table against the contract and count what the as-of date sets aside."""
    tables = scan_raw(raw)
    day = as_of or default_as_of(tables, settings.contract.timezone)
    view = build_view(tables, day, settings.contract.timezone)
    counts = {name: count.as_dict() for name, count in view.counts().items()}
    for name, count in counts.items():
        if count["rows_read"] != count["rows_kept"] + count["rows_set_aside"]:
            raise RuntimeError(f"rows lost in table {name}: {count}")
    get_run_logger().info("as of %s: %s", day, as_json(counts))
    return RawSummary(raw=raw, as_of=day, counts=counts)


@task(name="label loans")
def make_labels(raw: RawSummary, settings: Settings, out: Path) -> Path:
    view = _view(raw.raw, raw.as_of, settings)
    labels = label_loans(
        view["applications"],
        view["repayments"],
        raw.as_of,
        settings.contract.timezone,
        settings.labels,
    )
    return write_parquet_atomic(labels.collect(), out / "labels.parquet")


@task(name="build point-in-time features")
def make_features(raw: RawSummary, settings: Settings, out: Path) -> FeatureOutput:
    view = _view(raw.raw, raw.as_of, settings)
    tz = settings.contract.timezone
    spine = application_spine(view["applications"], tz)
    defs, frame = build_features(view.kept, spine, settings.features, tz, settings.labels)
    path = write_parquet_atomic(frame.sort("application_id").collect(), out / "features.parquet")
    return FeatureOutput(
        path=path,
        families={d.name: d.family for d in defs},
        catalogue=catalogue_markdown(defs),
    )


@task(name="split, tune and train")
def train_model(
    features: FeatureOutput, labels_path: Path, raw: RawSummary, settings: Settings
) -> TrainingOutcome:
    view = _view(raw.raw, raw.as_of, settings)
    truth = view["_truth"].collect()
    return train_pd_model(
        pl.read_parquet(features.path),
        pl.read_parquet(labels_path),
        features.families,
        settings.split,
        settings.training,
        settings.contract.timezone,
        truth=truth,
    )


@task(name="log and register in MLflow")
def register(
    outcome: TrainingOutcome, raw: RawSummary, features: FeatureOutput, settings: Settings
) -> RegisteredRun:
    set_aside = {
        f"rows_set_aside_{name}": float(count["rows_set_aside"])  # type: ignore[arg-type]
        for name, count in raw.counts.items()
    }
    params = {
        "as_of": raw.as_of.isoformat(),
        "raw": str(raw.raw),
        "timezone": settings.contract.timezone,
        "label_window_months": settings.labels.window_months,
        "label_threshold_days": settings.labels.threshold_days,
        "feature_windows_days": ",".join(map(str, settings.features.windows_days)),
        "n_features": len(features.families),
        "trials": outcome.tuning.trials,
        "seed": settings.training.seed,
    }
    artifacts = {
        "feature_catalogue.md": features.catalogue,
        "rows_as_of.json": as_json(raw.counts),
    }
    tags = {"pdflow.flow": "nightly-train", "pdflow.as_of": raw.as_of.isoformat()}
    return log_training(outcome, settings.mlflow, params, set_aside, artifacts, tags)


@flow(name="nightly-train", log_prints=True, validate_parameters=False)
def train_flow(settings: Settings, raw: Path, as_of: date | None = None) -> TrainSummary:
    """Train and register one PD model on raw logs as they stood on the morning of `as_of`."""
    summary = read_raw(raw, as_of, settings)
    out = settings.run_dir(summary.as_of.isoformat())
    labels = make_labels(summary, settings, out)
    features = make_features(summary, settings, out)
    outcome = train_model(features, labels, summary, settings)
    run = register(outcome, summary, features, settings)
    return TrainSummary(
        run=run,
        as_of=summary.as_of,
        metrics=outcome.metrics,
        split_rows=outcome.split_rows,
        split_months=outcome.split_months,
        trials=outcome.tuning.trials,
    )

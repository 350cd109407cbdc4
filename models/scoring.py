"""Scoring with a registered model (``pdflow score``, the daily-score flow).

- Backtest: every application applied in a date range, each on its own point-in-time features
  (:func:`score_applications`). The data gate and the feature build run as of the day after
  the range, so an application is scored on exactly what was recorded before its own local
  application day, as at training.
- A day D (:func:`score_day`): the applications of day D-1 the same way, and every loan on book
  at D re-scored with the features as of D, against its own application's scoring, for the
  post-loan early-warning list (:mod:`models.early_warning`). Written as one partition,
  ``dt=D``, of the scores folder (:func:`write_day`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from data.asof import day_start_utc, local_date
from data.config import LabelSettings, ValidationSettings
from data.labels import label_loans
from data.storage import swap_into_place, write_text_atomic
from data.validation import GateReport, scan_validated, set_aside_reasons
from expectations.gate import gate_or_stop
from features import spines
from features.base import FeatureSettings
from features.build import feature_table
from models.config import EarlyWarningSettings
from models.early_warning import (
    WarningBacktest,
    first_missed,
    moved_reasons,
    next_instalments,
    trigger,
    warning_backtest,
    with_movement,
)
from models.errors import ModelNotFound
from models.pd_model import PDModel
from models.registry import load_pd_model

SCORE_KEYS = ("application_id", "user_id", "applied_at")


@dataclass
class LoadedModel:
    model: PDModel
    uri: str
    version: str  # "<name>/<version>" for registry URIs, else the URI itself


def default_model_uri(registered_model_name: str) -> str:
    return f"models:/{registered_model_name}@champion"


def registry_version(uri: str) -> str:
    """``<name>/<version>`` of a registry URI (an alias or ``latest`` resolved now, by MLflow),
    else the URI as given."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version
    from mlflow.tracking import MlflowClient

    if not uri.startswith("models:/"):
        return uri
    found = get_model_name_and_version(MlflowClient(), uri)
    return "/".join(map(str, found)) if len(found) == 2 else uri


def load_model(uri: str | None, tracking_uri: str, registered_name: str = "") -> LoadedModel:
    """Load a registered PD model (`uri`, or the champion of `registered_name` when none is
    given); :class:`ModelNotFound` with the reason if there is none."""
    uri = uri or default_model_uri(registered_name)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = load_pd_model(uri)
        version = registry_version(uri)
    except ModelNotFound as err:
        raise ModelNotFound(
            f"{err} (store {tracking_uri}). Name one with --model (e.g. models:/<name>/<version>)"
        ) from None
    return LoadedModel(model=model, uri=uri, version=version)


@dataclass
class Scored:
    """The scored applications, and those of the range the data gate set aside unscored."""

    scores: pl.DataFrame
    unscored: dict[str, int]  # reason: applications of the range set aside for it
    quarantine: Path | None


def score_applications(
    raw: Path,
    start: date,
    end: date,
    loaded: LoadedModel,
    *,
    timezone: str,
    validation: ValidationSettings,
    features: FeatureSettings,
    labels: LabelSettings,
    gate_dir: Path,
) -> Scored:
    """Every application applied from `start` to `end` (local days, inclusive), scored:
    ``application_id``, ``user_id``, ``applied_at``, ``pd``, ``score``, ``grade``,
    ``credit_limit``, ``price_tier``, ``reason_codes``, ``reasons``, ``model_version``; and
    the range's applications that broke the contract, counted by reason. The gate runs as of
    the day after `end`, writing its report under `gate_dir`, and stops the scoring if it
    says so."""
    outcome = gate_or_stop(raw, gate_dir, validation, timezone, end + timedelta(days=1))
    tables = scan_validated(outcome.report, timezone)
    scores = scored_applications(tables, start, loaded, timezone, features, labels)
    unscored = unscored_applications(outcome.report, start, end, timezone)
    return Scored(scores, unscored, outcome.report.quarantine)


def scored_applications(
    tables: dict[str, pl.LazyFrame],
    start: date,
    loaded: LoadedModel,
    timezone: str,
    features: FeatureSettings,
    labels: LabelSettings,
) -> pl.DataFrame:
    """The applications of `tables` applied on local day `start` or later, scored."""
    _, built = feature_table(
        tables, features, timezone, labels, since=day_start_utc(start, timezone)
    )
    return decided(built, loaded)


def decided(built: pl.DataFrame, loaded: LoadedModel) -> pl.DataFrame:
    """The keys of a feature table, its rows' decisions, and the model version."""
    loaded.model.check_inputs(built.columns)
    decisions = loaded.model.decide(built)
    return pl.concat([built.select(SCORE_KEYS), decisions], how="horizontal").with_columns(
        model_version=pl.lit(loaded.version)
    )


def unscored_applications(
    report: GateReport, start: date, end: date, timezone: str
) -> dict[str, int]:
    """The applications from `start` to `end` the gate set aside, counted by reason."""
    # An application with no usable time may belong to the range: it is counted too.
    in_range = pl.col("applied_at").is_null() | local_date("applied_at", timezone).is_between(
        start, end
    )
    return set_aside_reasons(report, "applications", in_range)


@dataclass
class DayScores:
    """What the daily scoring of day D produced."""

    day: date
    applications: pl.DataFrame  # day D-1's applications, scored
    loans: pl.DataFrame  # every loan on book at D, re-scored, with its movement since disbursal
    unscored: dict[str, int]  # reason: D-1's applications set aside for it
    quarantine: Path | None

    @property
    def warnings(self) -> pl.DataFrame:
        """The early-warning list: the loans on book whose risk moved past the thresholds."""
        return self.loans.filter(pl.col("early_warning")).drop("early_warning")


def score_day(
    raw: Path,
    day: date,
    loaded: LoadedModel,
    *,
    timezone: str,
    validation: ValidationSettings,
    features: FeatureSettings,
    labels: LabelSettings,
    warning: EarlyWarningSettings,
    gate_dir: Path,
) -> DayScores:
    """Day `day`'s scoring on what was recorded before its start: the applications of the day
    before, and every loan on book (:func:`score_loans_on_book`). The gate runs as of `day`."""
    outcome = gate_or_stop(raw, gate_dir, validation, timezone, day)
    tables = scan_validated(outcome.report, timezone)
    yesterday = day - timedelta(days=1)
    return DayScores(
        day=day,
        applications=scored_applications(tables, yesterday, loaded, timezone, features, labels),
        loans=score_loans_on_book(tables, day, loaded, timezone, features, labels, warning),
        unscored=unscored_applications(outcome.report, yesterday, yesterday, timezone),
        quarantine=outcome.report.quarantine,
    )


def score_loans_on_book(
    tables: dict[str, pl.LazyFrame],
    day: date,
    loaded: LoadedModel,
    timezone: str,
    features: FeatureSettings,
    labels: LabelSettings,
    warning: EarlyWarningSettings,
) -> pl.DataFrame:
    """Every loan on book at the start of `day` (``features.spines.loans_on``): its application
    re-scored with the features as of `day`; its PD and grade on its own application's features
    (at disbursal); what moved, the trigger and the reasons in words where it goes on the
    early-warning list; its ``loan_id`` and the days to its next instalment."""
    model = loaded.model
    _, today = feature_table(tables, features, timezone, labels, spine=spines.loans_on(day))
    ids = today.select("application_id")
    _, then = feature_table(tables, features, timezone, labels, spine=spines.applications_of(ids))
    # Both tables are sorted by key; the rows of one loan must meet.
    if not then["application_id"].equals(today["application_id"]):
        raise AssertionError("the loans' features at disbursal do not match the loans on book")
    rescored = pl.concat(
        [decided(today, loaded), moved_reasons(model, today, then, warning.reasons)],
        how="horizontal",
    )
    moved = with_movement(rescored, model.predict_pd(then), model.decision, warning)
    loans = tables["applications"].select("application_id", "loan_id")
    due = next_instalments(tables["repayments"], day, timezone)
    return (
        moved.lazy()
        .join(loans, on="application_id", how="left")
        .join(due, on="loan_id", how="left")
        .with_columns(trigger=pl.when("early_warning").then(trigger(warning)))
        .sort("application_id")
        .collect()
    )


def write_day(scores: DayScores, root: Path) -> Path:
    """Write the day's partition ``<root>/dt=<day>/`` whole or not at all: applications,
    loans (every loan on book), early_warning (the list) as Parquet, and a summary (JSON).
    A partition written before for the same day is replaced."""
    out = root / f"dt={scores.day.isoformat()}"
    root.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=root))
    try:
        scores.applications.write_parquet(staged / "applications.parquet")
        scores.loans.write_parquet(staged / "loans.parquet")
        scores.warnings.write_parquet(staged / "early_warning.parquet")
        write_text_atomic(json.dumps(day_summary(scores), indent=2), staged / "summary.json")
        swap_into_place(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def day_summary(scores: DayScores) -> dict[str, object]:
    versions = pl.concat(
        [scores.applications["model_version"], scores.loans["model_version"]]
    ).unique()
    return {
        "day": scores.day.isoformat(),
        "applications_scored": scores.applications.height,
        "applications_unscored": scores.unscored,
        "loans_on_book": scores.loans.height,
        "early_warnings": scores.warnings.height,
        "model_version": versions.sort().to_list(),
    }


def is_scored(root: Path, day: date) -> bool:
    """Whether day `day`'s partition is complete under `root` (it is written whole or not at
    all, so a partition that exists is complete)."""
    return (root / f"dt={day.isoformat()}" / "summary.json").is_file()


def backtest_warnings(
    raw: Path,
    days: list[date],
    loaded: LoadedModel,
    *,
    as_of: date,
    timezone: str,
    validation: ValidationSettings,
    features: FeatureSettings,
    labels: LabelSettings,
    warning: EarlyWarningSettings,
    gate_dir: Path,
    draws: int = 20,
    seed: int = 0,
) -> WarningBacktest:
    """The early-warning list as it would have been issued on each of `days` (each on what was
    recorded before that day), judged on the loans' outcomes as of `as_of`
    (:func:`models.early_warning.warning_backtest`). For an honest figure `loaded` was trained
    as of the first day or earlier: a later model has seen the outcomes."""
    outcome = gate_or_stop(raw, gate_dir, validation, timezone, as_of)
    tables = scan_validated(outcome.report, timezone)
    daily = pl.concat(
        [
            score_loans_on_book(tables, day, loaded, timezone, features, labels, warning).select(
                pl.lit(day).alias("day"), "loan_id", "early_warning"
            )
            for day in days
        ]
    )
    labelled = label_loans(tables["applications"], tables["repayments"], as_of, timezone, labels)
    outcomes = (
        labelled.select("loan_id", "label")
        .join(first_missed(tables["repayments"], as_of, timezone), on="loan_id", how="left")
        .collect()
    )
    return warning_backtest(daily, outcomes, draws, seed)

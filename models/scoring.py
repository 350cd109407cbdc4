"""Backtest scoring: every application applied in a date range, each on its own point-in-time
features, with a registered model (``pdflow score``; a scoring flow reuses it).

The data gate and the feature build run as of the day after the range, so an application is
scored on exactly what was recorded before its own local application day, as at training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from data.asof import day_start_utc, local_date
from data.config import LabelSettings, ValidationSettings
from data.validation import scan_validated, set_aside_reasons
from expectations.gate import gate_or_stop
from features.base import FeatureSettings
from features.build import feature_table
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


def load_model(uri: str, tracking_uri: str) -> LoadedModel:
    """Load a registered PD model; :class:`ModelNotFound` with the reason if there is none."""
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
    since = day_start_utc(start, timezone)
    _, built = feature_table(tables, features, timezone, labels, since=since)
    loaded.model.check_inputs(built.columns)
    decided = loaded.model.decide(built)
    scores = pl.concat([built.select(SCORE_KEYS), decided], how="horizontal").with_columns(
        model_version=pl.lit(loaded.version)
    )
    # An application with no usable time may belong to the range: it is counted too.
    in_range = pl.col("applied_at").is_null() | local_date("applied_at", timezone).is_between(
        start, end
    )
    unscored = set_aside_reasons(outcome.report, "applications", in_range)
    return Scored(scores, unscored, outcome.report.quarantine)

"""The daily scoring flow (``daily-score``): with the champion, day D's scores and the
post-loan early-warning list, written as the partition ``<scores>/dt=D/``.

Wiring only: the scoring is :func:`models.scoring.score_day`, the partition
:func:`models.scoring.write_day`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows.retries import retrying
from flows.settings import Settings, as_settings
from flows.train_flow import raw_root, resolve_as_of
from models.scoring import (
    DayScores,
    day_summary,
    load_model,
    score_day,
    write_day,
)


@dataclass
class DailyScoreSummary:
    day: date
    out: Path
    summary: dict[str, object]
    unscored: dict[str, int]
    quarantine: Path | None


@task(name="score the day")
def score(raw: Path, day: date, model: str | None, settings: Settings) -> DayScores:
    mlflow = settings.mlflow
    loaded = load_model(model, mlflow.tracking_uri, mlflow.registered_model_name)
    get_run_logger().info("scoring %s with %s", day, loaded.version)
    return score_day(
        raw,
        day,
        loaded,
        timezone=settings.contract.timezone,
        validation=settings.validation,
        features=settings.features,
        labels=settings.labels,
        warning=settings.early_warning,
        gate_dir=settings.run_dir(f"score-{day}") / "gate",
    )


@task(name="write the day's partition")
def write(scores: DayScores, out: Path) -> Path:
    return write_day(scores, out)


@flow(name="daily-score", log_prints=True, validate_parameters=False)
def daily_score_flow(
    settings: Settings | dict[str, Any] | None = None,
    raw: Path | str | None = None,
    as_of: date | str | None = None,
    out: Path | str | None = None,
    model: str | None = None,
    trigger: str = "manual",
) -> DailyScoreSummary:
    """Score day `as_of` (``flows.train_flow.resolve_as_of``) with `model` (default: the
    champion) into ``<out>/dt=<as_of>/`` (default `out`: ``<workspace>/scores``)."""
    settings = as_settings(settings)
    raw = raw_root(raw, settings)
    day = resolve_as_of(raw, as_of, settings, trigger)
    scores = retrying(score, settings.retries)(raw, day, model, settings)
    folder = retrying(write, settings.retries)(scores, Path(out) if out else settings.scores_dir)
    summary = day_summary(scores)
    get_run_logger().info("scored %s: %s", day, summary)
    return DailyScoreSummary(day, folder, summary, scores.unscored, scores.quarantine)

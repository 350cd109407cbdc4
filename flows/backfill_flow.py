"""The backfill flow: the daily flows for each date of a range, in date order, skipping what is
already complete, so that a team can rebuild a quarter of history (and re-run a backfill that
stopped half-way: it resumes at the first incomplete date).

Complete means: ``nightly-retrain`` registered a version as of that date; ``daily-score``
wrote that date's partition (written whole or not at all); ``daily-monitor`` wrote that
date's report. The first failure stops the backfill (later dates build on earlier ones).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.monitor_flow import daily_monitor_flow
from flows.score_flow import daily_score_flow
from flows.settings import Settings, as_settings
from flows.train_flow import raw_root, train_flow
from models.registry import Registry, lock_path
from models.scoring import is_scored

ORDER = ("nightly-retrain", "daily-score", "daily-monitor")


def retrained(settings: Settings, day: date) -> bool:
    registry = Registry(
        settings.mlflow.tracking_uri,
        settings.mlflow.registered_model_name,
        lock_path(settings.mlflow.tracking_uri, settings.workspace),
    )
    return any(v.tags.get("pdflow.as_of") == day.isoformat() for v in registry.versions())


def monitored(settings: Settings, day: date) -> bool:
    return (settings.workspace / "monitor" / f"{day}.json").is_file()


COMPLETE: dict[str, Callable[[Settings, date], bool]] = {
    "nightly-retrain": retrained,
    "daily-score": lambda settings, day: is_scored(settings.scores_dir, day),
    "daily-monitor": monitored,
}


def days_between(start: date, end: date, every: int = 1) -> list[date]:
    """From `start` to `end` (inclusive), every `every` days."""
    return [start + timedelta(days=i) for i in range(0, (end - start).days + 1, every)]


@flow(name="backfill", log_prints=True, validate_parameters=False)
def backfill_flow(
    start: date | str,
    end: date | str,
    flows: list[str] | None = None,
    settings: Settings | dict[str, Any] | None = None,
    raw: Path | str | None = None,
) -> dict[str, dict[str, str]]:
    """`flows` (default: all three, in their nightly order) for each date from `start` to
    `end` (inclusive): per date and flow, ``ran`` or ``skipped`` (already complete)."""
    settings = as_settings(settings)
    raw = raw_root(raw, settings)
    first, last = (date.fromisoformat(d) if isinstance(d, str) else d for d in (start, end))
    unknown = sorted(set(flows or ()) - set(ORDER))
    if unknown:
        raise ValueError(f"unknown flows {unknown}: choose among {', '.join(ORDER)}")
    chosen = [name for name in ORDER if name in (flows or ORDER)]
    run = {
        "nightly-retrain": lambda day: train_flow(settings, raw, day, trigger="backfill"),
        "daily-score": lambda day: daily_score_flow(settings, raw, day, trigger="backfill"),
        "daily-monitor": lambda day: daily_monitor_flow(settings, raw, day, trigger="backfill"),
    }
    logger = get_run_logger()
    done: dict[str, dict[str, str]] = {}
    for day in days_between(first, last):
        done[day.isoformat()] = {}
        for name in chosen:
            if COMPLETE[name](settings, day):
                done[day.isoformat()][name] = "skipped"
                logger.info("%s %s: already complete", day, name)
                continue
            run[name](day)
            done[day.isoformat()][name] = "ran"
    return done

"""The scheduled deployments: ``nightly-retrain``, ``daily-score`` and ``daily-monitor``, on
the cron schedules of ``schedule`` in the contract's time zone.

``pdflow serve`` serves them from this process (:func:`runner_deployments`); ``prefect
deploy`` reads the same three from ``prefect.yaml`` for a work pool and its workers. A
scheduled run has no as-of date: it works on today's local date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.monitor_flow import daily_monitor_flow
from flows.score_flow import daily_score_flow
from flows.settings import Settings
from flows.train_flow import train_flow

FLOWS = {
    "nightly-retrain": (train_flow, "retrain"),
    "daily-score": (daily_score_flow, "score"),
    "daily-monitor": (daily_monitor_flow, "monitor"),
}


def schedule_parameters(settings: Settings, raw: Path) -> dict[str, Any]:
    """What every scheduled run is given: these settings (their JSON form), the raw root, and
    the trigger that makes a run without an as-of date work on today."""
    return {
        "settings": settings.model_dump(mode="json"),
        "raw": str(raw.resolve()),
        "trigger": "schedule",
    }


def runner_deployments(settings: Settings, raw: Path) -> list[RunnerDeployment]:
    """The three deployments, each with its cron schedule in the contract's time zone."""
    parameters = schedule_parameters(settings, raw)
    return [
        flow.to_deployment(
            name=name,
            schedule=Cron(getattr(settings.schedule, key), timezone=settings.contract.timezone),
            parameters=parameters,
            tags=["pdflow"],
            description=(flow.description or "").split("\n")[0],
        )
        for name, (flow, key) in FLOWS.items()
    ]

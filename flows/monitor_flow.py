"""The daily monitoring flow (``daily-monitor``): the champion's population stability and its
performance on matured loans, a verdict, logged to MLflow and written as JSON.

Wiring only: the report is :func:`models.monitor.monitor_day`, its MLflow run
:func:`flows.tracking.log_monitor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from data.storage import write_text_atomic
from flows.retries import retrying
from flows.settings import Settings, as_settings
from flows.tracking import as_json, log_monitor
from flows.train_flow import raw_root, resolve_as_of
from models.monitor import MonitorReport, monitor_day
from models.scoring import load_model


@dataclass
class MonitorSummary:
    report: MonitorReport
    run_id: str
    json_path: Path


@task(name="monitor the model")
def check(raw: Path, day: date, model: str | None, settings: Settings) -> MonitorReport:
    mlflow = settings.mlflow
    loaded = load_model(model, mlflow.tracking_uri, mlflow.registered_model_name)
    return monitor_day(
        raw,
        day,
        loaded.model,
        loaded.version,
        timezone=settings.contract.timezone,
        validation=settings.validation,
        features=settings.features,
        labels=settings.labels,
        settings=settings.monitor,
        gate_dir=settings.run_dir(f"monitor-{day}") / "gate",
    )


@task(name="log the report")
def record(report: MonitorReport, settings: Settings, out: Path) -> tuple[str, Path]:
    run_id = log_monitor(report, settings.mlflow)
    path = write_text_atomic(as_json(report.as_dict()), out)
    return run_id, path


@flow(name="daily-monitor", log_prints=True, validate_parameters=False)
def daily_monitor_flow(
    settings: Settings | dict[str, Any] | None = None,
    raw: Path | str | None = None,
    as_of: date | str | None = None,
    model: str | None = None,
    json_path: Path | str | None = None,
    trigger: str = "manual",
) -> MonitorSummary:
    """Monitor `model` (default: the champion) on day `as_of`
    (``flows.train_flow.resolve_as_of``); the report goes to MLflow and to `json_path`
    (default: ``<workspace>/monitor/<as_of>.json``)."""
    settings = as_settings(settings)
    raw = raw_root(raw, settings)
    day = resolve_as_of(raw, as_of, settings, trigger)
    report = retrying(check, settings.retries)(raw, day, model, settings)
    out = Path(json_path) if json_path else settings.workspace / "monitor" / f"{day}.json"
    run_id, path = retrying(record, settings.retries)(report, settings, out)
    get_run_logger().info("monitor %s: %s %s", day, report.verdict, "; ".join(report.reasons))
    return MonitorSummary(report, run_id, path)

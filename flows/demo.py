"""The nightly loop shown on the synthetic lender, a day at a time: the next local day of the
root's world arrives (:func:`data.generator.append_days`), then ``nightly-retrain``,
``daily-score`` and ``daily-monitor`` run for the morning after it, and the day is summed up
in one :class:`DemoDay`. A data gate that stops the night stops that day's flows (the champion
keeps serving) and the demo goes on with the next day.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from data.generator import append_days
from expectations.gate import DataGateStop
from flows.monitor_flow import daily_monitor_flow
from flows.score_flow import daily_score_flow
from flows.settings import Settings
from flows.train_flow import train_flow


@dataclass(frozen=True)
class DemoDay:
    """One simulated night: the day that arrived and what each flow made of it."""

    day: date
    applications: int | None = None
    gate: str = ""
    challenger_auc: float | None = None
    promoted: bool | None = None
    warnings: int | None = None
    monitor: str | None = None


def demo_days(settings: Settings, raw: Path, days: int) -> Iterator[DemoDay]:
    """Append ``days`` days to ``raw`` one by one; after each, run the three flows as of the
    morning after it and yield what they did."""
    for _ in range(days):
        arrived = append_days(raw, 1, progress=False).config.cut - timedelta(days=1)
        yield night(settings, raw, arrived)


def night(settings: Settings, raw: Path, arrived: date) -> DemoDay:
    as_of = arrived + timedelta(days=1)
    try:
        trained = train_flow(settings, raw, as_of, trigger="demo")
    except DataGateStop as stop:
        return DemoDay(arrived, gate="stop: " + "; ".join(stop.problems))
    gate = f"pass, {len(trained.warnings)} warnings" if trained.warnings else "pass"
    scored = daily_score_flow(settings, raw, as_of, trigger="demo")
    monitored = daily_monitor_flow(settings, raw, as_of, trigger="demo")
    return DemoDay(
        day=arrived,
        applications=int(scored.summary["applications_scored"]) + sum(scored.unscored.values()),
        gate=gate,
        challenger_auc=trained.metrics["oot_auc"],
        promoted=trained.settlement.promoted if trained.settlement else None,
        warnings=int(scored.summary["early_warnings"]),
        monitor=monitored.report.verdict,
    )

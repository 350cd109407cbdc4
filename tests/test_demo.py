"""The demo's loop: each day appended to the root before the three flows run for the morning
after it, what they return put in the day's line, a stopped gate ending only that day; and a
demo longer than the root's reserve refused before anything runs. The flows themselves are
tested on their own (test_train_flow, test_score_flow); here they are stand-ins that record
what they were asked."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from typer.testing import CliRunner

import flows.demo as demo
from data.generator import GeneratorConfig, generate, root_config
from expectations.gate import DataGateStop
from flows.cli import app
from flows.settings import load_settings

CONFIG = GeneratorConfig(users=300, months=2, seed=4, start=date(2024, 1, 1))


@dataclass
class StandIns:
    """The three flows, recording (flow, as-of date, days the root held when called)."""

    raw: Path
    calls: list[tuple[str, date, date]] = field(default_factory=list)
    stop_on: date | None = None

    def held(self) -> date:
        return root_config(self.raw).cut

    def train(self, settings, raw, as_of, trigger):
        self.calls.append(("train", as_of, self.held()))
        if as_of == self.stop_on:
            raise DataGateStop(["applications: too many rows set aside"])
        settlement = SimpleNamespace(promoted=as_of.day % 2 == 0)
        return SimpleNamespace(warnings=[], metrics={"oot_auc": 0.7}, settlement=settlement)

    def score(self, settings, raw, as_of, trigger):
        self.calls.append(("score", as_of, self.held()))
        summary = {"applications_scored": 5, "early_warnings": 3}
        return SimpleNamespace(summary=summary, unscored={"future": 1})

    def monitor(self, settings, raw, as_of, trigger):
        self.calls.append(("monitor", as_of, self.held()))
        return SimpleNamespace(report=SimpleNamespace(verdict="ok"))


def test_each_day_arrives_before_the_flows_run_for_the_morning_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    generate(raw, CONFIG, progress=False)
    first = CONFIG.cut
    flows = StandIns(raw, stop_on=first + timedelta(days=3))
    monkeypatch.setattr(demo, "train_flow", flows.train)
    monkeypatch.setattr(demo, "daily_score_flow", flows.score)
    monkeypatch.setattr(demo, "daily_monitor_flow", flows.monitor)

    nights = list(demo.demo_days(load_settings(workspace=tmp_path / "ws"), raw, 2))

    assert [n.day for n in nights] == [first, first + timedelta(days=1)]
    mornings = [first + timedelta(days=1), first + timedelta(days=2)]
    assert flows.calls == [
        (name, morning, morning) for morning in mornings for name in ("train", "score", "monitor")
    ]
    assert nights[0] == demo.DemoDay(first, 6, "pass", 0.7, True, 3, "ok")
    assert root_config(raw).extra_days == 2

    stopped = next(demo.demo_days(load_settings(workspace=tmp_path / "ws"), raw, 1))
    assert stopped.gate.startswith("stop: applications") and stopped.monitor is None
    assert [c[0] for c in flows.calls[6:]] == ["train"]


def test_a_demo_longer_than_the_roots_reserve_is_refused_before_it_starts(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, CONFIG, progress=False)
    # the command runs in this process: whatever it sets in the environment (Prefect's home,
    # were it to get that far) must not leak into the later tests of this worker
    with mock.patch.dict(os.environ):
        result = CliRunner(env={"COLUMNS": "300"}).invoke(
            app, ["--workspace", str(tmp_path / "ws"), "demo", "--raw", str(raw), "--days", "40"]
        )
    assert result.exit_code == 2 and "do not fit in the simulated world" in result.output
    assert root_config(raw) == CONFIG

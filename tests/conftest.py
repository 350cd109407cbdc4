"""Shared fixtures: small generated raw roots, built once per test session (per worker)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from data.generator import GeneratorConfig, generate

SMALL = GeneratorConfig(users=6_000, months=20, seed=11, start=date(2024, 1, 1))


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw root of 6,000 users over 20 months: enough mature loans for a time split."""
    out = tmp_path_factory.mktemp("raw") / "small"
    generate(out, SMALL, progress=False)
    return out

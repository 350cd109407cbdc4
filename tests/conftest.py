"""Shared fixtures: small generated raw roots, built once per test session (per worker)."""

from __future__ import annotations

import os

# The suite runs on two workers over two cores: each worker's LightGBM fits get one thread
# (`training.num_threads`, in process and in the `pdflow` commands tests start). With two
# threads each, the workers oversubscribe the cores and OpenMP's spinning waits make every
# boosting round many times slower; with passive waits a worker left alone pays a wake-up
# per parallel region instead. Set before anything loads the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PDFLOW_TRAINING__NUM_THREADS", "1")

from datetime import date
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import HealthCheck, Phase, settings

from data.generator import GeneratorConfig, generate
from models.config import TrainSettings

TrainSettings.model_fields["num_threads"].default = int(os.environ["PDFLOW_TRAINING__NUM_THREADS"])
TrainSettings.model_rebuild(force=True)

# Hypothesis profiles of the gate's fuzz suite (tests/test_gate_fuzz.py), chosen with
# PDFLOW_FUZZ_PROFILE. Each example runs `pdflow` in a subprocess (seconds each: validate,
# then features), so `ci`, run inside `make test`, draws few examples from a fixed
# seed (repeatable) and does not shrink a failure (each shrink step is another subprocess);
# `fuzz` (`make fuzz`) draws PDFLOW_FUZZ_EXAMPLES from a random seed (pytest's
# --hypothesis-seed replays it) and shrinks each failure to a minimal mixture.
_UNHEALTHY = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "pdflow-ci",
    max_examples=6,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=_UNHEALTHY,
    print_blob=True,
)
settings.register_profile(
    "pdflow-fuzz",
    max_examples=int(os.environ.get("PDFLOW_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=_UNHEALTHY,
    print_blob=True,
)

SMALL = GeneratorConfig(users=6_000, months=20, seed=11, start=date(2024, 1, 1))


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A raw root of 6,000 users over 20 months: enough mature loans for a time split. Read
    only; generated once for all test workers (they share the base folder's parent, and
    `generate` writes the root whole or not at all)."""
    base = tmp_path_factory.getbasetemp()
    out = (base if worker_id == "master" else base.parent) / "small-raw"
    with FileLock(f"{out}.lock"):
        if not out.is_dir():
            generate(out, SMALL, progress=False)
    return out


@pytest.fixture(scope="session")
def fuzz_base(tmp_path_factory: pytest.TempPathFactory):
    """The fuzz suite's root (200 users x 4 months) in memory, and its memory cap: measured
    on a clean `pdflow validate` of it, once per session (per worker)."""
    from corruption import load_root
    from gate_cli import FUZZ_BASE, measure_base

    work = tmp_path_factory.mktemp("fuzz-base")
    generate(work / "generated", FUZZ_BASE, progress=False)
    return measure_base(load_root(work / "generated"), work)


@pytest.fixture(scope="session")
def two_trainings(small_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    """One MLflow store after `pdflow train` ran twice on `small_raw` (as `make run` twice):
    shared by the registry and UI tests (keep them in the xdist group "two_trainings")."""
    from training_runs import train_twice

    return train_twice(small_raw, tmp_path_factory.mktemp("two-trainings"))

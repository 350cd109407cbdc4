"""The data gate against random mixtures of faults, through the real command line.

Each example builds a small raw root (flat or hive-partitioned) from one generated root held
in memory (``fuzz_base`` in conftest.py), applies a hypothesis-drawn mixture of faults from
``corruption.py`` (which keeps a book of every row it broke), writes it, and runs
``pdflow validate`` in a subprocess under a memory cap (``gate_cli.py``); where the gate
passes, ``pdflow features`` too. The outcome must be the one the contract gives for the
mixture drawn (``corruption.expected``).

Hypothesis profiles (conftest.py), chosen with PDFLOW_FUZZ_PROFILE: ``ci`` (the default,
inside ``make test``: few examples, a fixed seed, no shrinking) and ``fuzz`` (``make fuzz``:
more examples, a random seed, each failure shrunk to a minimal mixture).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from corruption import Fault, expected, flatten, mixtures
from gate_cli import FUZZ_BASE, MISMATCH, SHARE, Base, assert_no_crash, run_case
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.fuzz
PROFILE = settings.get_profile("pdflow-" + os.environ.get("PDFLOW_FUZZ_PROFILE", "ci"))
SPAN_DAYS = 120  # FUZZ_BASE's four months


@dataclass(frozen=True)
class Case:
    """One example: the layout of the partitioned tables, the faults in the order applied,
    and the --as-of date (None: the default, the day after the latest record)."""

    layout: str
    faults: tuple[Fault, ...]
    as_of: date | None


@st.composite
def cases(draw: st.DrawFn, max_faults: int = 4) -> Case:
    layout = draw(st.sampled_from(["hive", "flat"]))
    mixture = draw(mixtures(max_faults))
    day = st.integers(-5, SPAN_DAYS + 90).map(lambda d: FUZZ_BASE.start + timedelta(days=d))
    return Case(layout=layout, faults=mixture, as_of=draw(st.none() | day))


def test_a_clean_root_passes_with_nothing_set_aside(fuzz_base: Base) -> None:
    clean = fuzz_base.clean
    assert_no_crash(clean)
    assert clean.returncode == 0, clean.describe()
    verdict = expected(fuzz_base.root, None, SHARE, MISMATCH)
    assert verdict.exit_codes == {0, 1} and not any(verdict.reasons.values())
    report = json.loads((fuzz_base.raw.parent / "clean.json").read_text())
    assert report["tables"] and all(
        count["rows_set_aside"] == 0 for count in report["tables"].values()
    )


@PROFILE
@given(case=cases())
def test_the_gate_gives_the_contracts_outcome_for_any_mixture_of_faults(
    fuzz_base: Base, case: Case
) -> None:
    root = flatten(fuzz_base.root) if case.layout == "flat" else fuzz_base.root.copy()
    for fault in case.faults:
        fault.apply(root)
    work = Path(tempfile.mkdtemp(prefix="pdflow-fuzz-"))
    try:
        run_case(root, case.as_of, work, fuzz_base.cap)
    finally:
        shutil.rmtree(work, ignore_errors=True)

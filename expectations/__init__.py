"""Great Expectations side of the data gate: versioned suites, a runner, statistical checks
and Data Docs.

Polars enforces the contract's row rules on every row (``data.validation``); GX is the engine
of record on a sample and on small aggregate frames:

- ``expectations.suites``: one suite per contract table (``raw.<table>``), one for the feature
  table (``features``) and one for the labelled training set (``training_set``), generated from
  ``data.rules.RULES``, the feature definitions and the settings into ``expectations/suites/``
  by ``python -m expectations.suites`` (never hand-edited).
- ``expectations.runner``: ``validate(suite, frame) -> SuiteResult`` and ``load_suite(name)``.
- ``expectations.stats``: ``statistical_checks(...)`` (volume, amount and enumeration drift).
- ``expectations.docs``: ``build_data_docs(results, out_dir)`` and ``results_json(results)``.

Importing this package is cheap; importing great_expectations takes seconds, so the modules
that need it import it themselves and the names below load lazily.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# GX phones home unless told not to; runs here are offline. Set before GX is first imported.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from expectations.naming import (
    FEATURES_SUITE,
    SUITES_DIR,
    TRAINING_SUITE,
    derived_rules,
    raw_suite_name,
    rule_column,
)

_LAZY = {
    "ExpectationOutcome": "expectations.runner",
    "SuiteResult": "expectations.runner",
    "load_suite": "expectations.runner",
    "validate": "expectations.runner",
    "statistical_checks": "expectations.stats",
    "build_data_docs": "expectations.docs",
    "results_json": "expectations.docs",
    "build_suites": "expectations.suites",
}

__all__ = [
    "FEATURES_SUITE",
    "SUITES_DIR",
    "TRAINING_SUITE",
    "derived_rules",
    "raw_suite_name",
    "rule_column",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'expectations' has no attribute {name!r}")

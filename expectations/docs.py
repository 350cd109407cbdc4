"""GX Data Docs (static HTML) and a JSON summary for a run's validation results.

``build_data_docs`` makes a fresh in-memory GX context whose only Data Docs site is a local
folder, puts each result's suite into its suite store and each validation result into its
results store, and lets GX's own ``SiteBuilder`` render ``index.html``, one page per suite
(``expectations/...``) and one per validation (``validations/...``). Nothing is read from or
written to a GX project folder, and no network is needed to build (the pages link
Bootstrap/jQuery from public CDNs for styling when opened).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core.expectation_validation_result import (
    expectationSuiteValidationResultSchema,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.data_context.context_factory import project_manager
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from expectations.runner import DATASOURCE, SuiteResult, context, jsonable

SITE = "pdflow"


def build_data_docs(
    results: Sequence[SuiteResult],
    out_dir: Path | str,
    *,
    run_name: str = "pdflow",
    run_time: datetime | None = None,
) -> Path:
    """Render GX Data Docs for `results` into `out_dir`; return its index.html.

    `out_dir` is replaced when it is empty or holds earlier Data Docs; any other non-empty
    folder is refused.
    Skipped checks are rendered too (their suite has no expectations; its notes say why).
    """
    out = Path(out_dir).resolve()
    if out.exists():
        if any(out.iterdir()) and not (out / "index.html").is_file():
            raise FileExistsError(f"{out} is not empty and holds no Data Docs: not replacing it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    previous = context()
    ctx = gx.get_context(mode="ephemeral")  # becomes GX's current project until restored
    try:
        return _build(ctx, results, out, run_name, run_time)
    finally:
        project_manager.set_project(previous)


def _build(
    ctx: Any, results: Sequence[SuiteResult], out: Path, run_name: str, run_time: datetime | None
) -> Path:
    for site in list(ctx.get_config().data_docs_sites or {}):
        ctx.delete_data_docs_site(site)
    ctx.add_data_docs_site(
        SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(out),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    run_id = RunIdentifier(run_name=run_name, run_time=run_time or datetime.now(UTC))
    seen: Counter[str] = Counter()
    for result in results:
        if result.suite and not seen[result.suite_name]:
            ctx.suites.add(gx.ExpectationSuite(**_suite_for_store(result.suite)))
        seen[result.suite_name] += 1
        # the same suite twice in one run (e.g. two samples) gets two pages, not one
        repeat = f"-{seen[result.suite_name]}" if seen[result.suite_name] > 1 else ""
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=run_id,
            batch_identifier=f"{DATASOURCE}-{result.suite_name}{repeat}",
        )
        validation = expectationSuiteValidationResultSchema.load(_result_for_store(result))
        validation.meta["run_id"] = run_id
        ctx.validation_results_store.set(key, validation)
    ctx.build_data_docs(site_names=[SITE])
    index = out / "index.html"
    if not index.is_file():
        raise RuntimeError(f"GX wrote no Data Docs index into {out}")
    return index


def _suite_for_store(suite: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in suite.items() if k != "id"}
    data["expectations"] = [
        {k: v for k, v in e.items() if k != "id"} for e in data.get("expectations", [])
    ]
    return data


def _result_for_store(result: SuiteResult) -> dict[str, Any]:
    raw = json.loads(json.dumps(result.raw))
    raw.setdefault("suite_name", result.suite_name)
    raw["suite_name"] = result.suite_name
    # Validation pages render batch markers (under "Show more info..."), not free meta: the
    # check's action and notes (why a check was skipped) go there to be visible.
    markers = raw.setdefault("meta", {}).setdefault("batch_markers", {})
    if result.action:
        markers["pdflow_action"] = result.action
    if result.skipped:
        markers["pdflow_skipped"] = "true"
    for i, note in enumerate(result.notes, start=1):
        markers[f"pdflow_note_{i}"] = note
    return raw


def results_summary(results: Sequence[SuiteResult]) -> dict[str, Any]:
    """Results as plain data: per suite its verdict, action, notes and per-expectation lines."""
    return {
        "success": all(r.success for r in results),
        "stops": [r.suite_name for r in results if r.stops],
        "suites": [
            {
                "suite_name": r.suite_name,
                "success": r.success,
                "action": r.action,
                "skipped": r.skipped,
                "notes": r.notes,
                "rows": r.rows,
                "seconds": r.seconds,
                "expectations": [
                    {
                        "name": o.name,
                        "rule": o.rule,
                        "check": o.check,
                        "expectation_type": o.expectation_type,
                        "column": o.column,
                        "success": o.success,
                        "unexpected_count": o.unexpected_count,
                        "observed_value": o.observed_value,
                        "severity": o.severity,
                        "exception": o.exception,
                        "message": o.message,
                    }
                    for o in r.results
                ],
            }
            for r in results
        ],
    }


def results_json(results: Sequence[SuiteResult]) -> str:
    """``results_summary`` as pretty JSON (deterministic key order)."""
    return json.dumps(jsonable(results_summary(results)), indent=2, sort_keys=True) + "\n"

"""A night's data work, full and after appended days: the time and peak memory of each data
stage of ``nightly-retrain`` (everything before training), on a root of the generator.

    .venv/bin/python tests/bench/bench_night.py --raw DIR --workspace WS [--append-days 1]

One after the other, in this process, on the workspace's settings (``mlflow.yml``):

1. the full night as of the root's cut, the feature store empty;
2. ``--append-days`` days appended to the root (:func:`data.generator.append_days`; timed
   apart, it is the data arriving, not the night's work);
3. the incremental night as of the new cut, on the same workspace.

Each night runs the stages as the flow's tasks do: ``gate`` (the data gate), ``labels`` (every
loan labelled and written), ``feature store`` (features for the applications the store lacks,
appended), ``training table`` (every stored application before the as-of day read, the
feature suite run on the rows it has not passed and the recent window
(:func:`expectations.feature_check.check_new_features`), the table written). The peak memory
of a stage is the process's peak resident set (``VmHWM``), reset before the stage to what the
process holds then (``/proc/self/clear_refs``), so it includes memory kept from earlier stages.
Prints
one Markdown row per stage: seconds and peak GiB of each night, and the incremental night's
share of the full.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

STAGES = ("gate", "labels", "feature store", "training table")


def peak_gib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024**2


def measured(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """`run()`, its seconds and the process's peak GiB while it ran."""
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started, peak_gib()


def night(raw: Path, settings: Any, as_of: Any) -> dict[str, tuple[float, float]]:
    """The data stages of a night as of `as_of`: per stage, (seconds, peak GiB)."""
    from data.asof import day_start_utc
    from data.labels import label_loans
    from data.storage import write_parquet_atomic
    from data.validation import scan_validated
    from expectations.feature_check import check_new_features
    from expectations.gate import gate_or_stop
    from features.build import update_feature_store
    from features.store import MONTH, scan_feature_store

    tz = settings.contract.timezone
    out = settings.run_dir(as_of.isoformat())
    shown: dict[str, tuple[float, float]] = {}
    gate, *shown["gate"] = measured(
        lambda: gate_or_stop(raw, out / "gate", settings.validation, tz, as_of)
    )
    tables = scan_validated(gate.report, tz)

    def labels() -> Path:
        loans = label_loans(
            tables["applications"], tables["repayments"], as_of, tz, settings.labels
        )
        return write_parquet_atomic(loans.collect(), out / "labels.parquet")

    _, *shown["labels"] = measured(labels)
    update, *shown["feature store"] = measured(
        lambda: update_feature_store(
            tables,
            settings.feature_store,
            settings.features,
            tz,
            settings.labels,
            tag=as_of.isoformat(),
            source=str(raw.resolve()),
        )
    )

    def training_table() -> int:
        features = (
            scan_feature_store(settings.feature_store)
            .filter(pl.col("applied_at") < day_start_utc(as_of, tz))
            .drop(MONTH)
            .sort("application_id")
            .collect()
        )
        stats = settings.validation.stats
        check_new_features(update.defs, features, as_of, settings.feature_store, stats, tz)
        write_parquet_atomic(features, out / "features.parquet")
        return features.height

    rows, *shown["training table"] = measured(training_table)
    print(f"night as of {as_of}: {update.added:,} applications added, {rows:,} in the table")
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--append-days", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from data.generator import append_days, root_config
    from flows.settings import load_settings

    settings = load_settings(workspace=args.workspace)
    config = root_config(args.raw)
    full = night(args.raw, settings, config.cut)
    _, append_s, append_gib = measured(
        lambda: append_days(args.raw, args.append_days, progress=False, workers=2)
    )
    new_cut = config.cut + timedelta(days=args.append_days)
    incremental = night(args.raw, settings, new_cut)

    print(
        f"\n{config.users:,} users, {config.start} to {config.cut - timedelta(days=1)}, then "
        f"{args.append_days} day(s) appended in {append_s:.1f} s (peak {append_gib:.2f} GiB); "
        f"{platform.processor() or platform.machine()}, {platform.python_version()}, "
        f"polars {pl.__version__}\n"
    )
    print(
        "| stage | full night s | incremental s | incremental / full | full peak GiB | "
        "incremental peak GiB |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    rows = [*STAGES, "all"]
    total = {
        "all": (
            (sum(full[s][0] for s in STAGES), max(full[s][1] for s in STAGES)),
            (sum(incremental[s][0] for s in STAGES), max(incremental[s][1] for s in STAGES)),
        )
    }
    for stage in rows:
        (fs, fg), (inc_s, inc_g) = total.get(stage, (full.get(stage), incremental.get(stage)))
        print(f"| {stage} | {fs:.1f} | {inc_s:.1f} | {inc_s / fs:.2f} | {fg:.2f} | {inc_g:.2f} |")
    if args.json:
        args.json.write_text(
            json.dumps({"full": full, "incremental": incremental, "append_s": append_s}, indent=2)
        )


if __name__ == "__main__":
    main()

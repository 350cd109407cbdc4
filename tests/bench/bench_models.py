"""The modelling across many worlds: every candidate and baseline, out of time, with intervals.

    .venv/bin/python tests/bench/bench_models.py [--scenarios a,b,...] [--out DIR]
        [--resamples 1000] [--json FILE]

For each scenario (a named preset of the synthetic lender, ``data.generator.config.SCENARIOS``),
one after the other in this process: generate its raw logs under ``OUT/<scenario>/raw`` (kept
and reused when its settings match), run the data gate, label the loans, build the features,
and train as ``pdflow train`` does (``models.pipeline.train_pd_model``, default settings),
with the split of a short history (3 train / 1 validation / 1 out-of-time months) where the
scenario has fewer than 16 months.

Prints one Markdown row per scenario: labelled loans and bads per split, the candidate chosen
on validation, the out-of-time AUC of the chosen model and of every candidate (fitted on
train) and baseline with a 95% paired bootstrap interval over the out-of-time loans, the
oracle AUC (the simulator's true PD) and the chosen model's ratio to it, and whether any
baseline beats the chosen model beyond the interval (the 95% interval of its AUC minus the
chosen model's lies above zero). Every model's out-of-time scores are written to
``OUT/<scenario>/oot_scores.parquet`` (``application_id``, ``label``, ``model`` for the chosen
one, ``candidate_<name>``, the baselines), for paired comparisons with other code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TZ = "Asia/Shanghai"
SHORT_HISTORY_MONTHS = 16
SHORT_SPLIT = {"oot_months": 1, "valid_months": 1, "min_train_months": 3}
BASELINES = ("lightgbm_default", "woe_scorecard", "bureau_only")


def raw_root(scenario: str, out: Path) -> tuple[Path, Any, float]:
    """The scenario's raw logs, generated unless a root with the same settings exists."""
    from data.generator import generate
    from data.generator.config import GeneratorConfig

    config = replace(GeneratorConfig.from_scenario(scenario), timezone=TZ)
    root = out / scenario / "raw"
    stamp = out / scenario / "generator.json"
    wanted = json.dumps(asdict(config), default=str, sort_keys=True)
    if root.exists() and stamp.exists() and stamp.read_text() == wanted:
        return root, config, 0.0
    started = time.perf_counter()
    generate(root, config, progress=False)
    stamp.write_text(wanted)
    return root, config, time.perf_counter() - started


def prepared(root: Path, work: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    """Features, labels, truth and feature families, as the training flow prepares them."""
    from data.asof import default_as_of
    from data.labels import label_loans
    from data.readers import scan_raw
    from data.validation import scan_validated
    from expectations.gate import run_data_gate
    from features.build import feature_table
    from flows.settings import load_settings

    settings = load_settings()
    as_of = default_as_of(scan_raw(root), TZ)
    gate = run_data_gate(root, work / "gate", settings.validation, TZ, as_of)
    if not gate.ok:
        raise SystemExit(f"the data gate stopped {root}: {gate.stops}")
    tables = scan_validated(gate.report, TZ)
    labels = label_loans(
        tables["applications"], tables["repayments"], as_of, TZ, settings.labels
    ).collect()
    defs, features = feature_table(tables, settings.features, TZ, settings.labels)
    truth = tables["_truth"].collect()
    return features, labels, truth, {d.name: d.family for d in defs}


def interval(
    statistic: Any, samples: tuple[np.ndarray, ...], resamples: int, seed: int
) -> list[float]:
    """95% percentile interval of `statistic` over loans resampled with replacement, the
    same loans for every one of the paired `samples`."""
    from scipy.stats import bootstrap

    result = bootstrap(
        samples,
        statistic,
        paired=True,
        vectorized=False,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def auc_gap(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    from models.metrics import auc

    return auc(labels, a) - auc(labels, b)


def run_scenario(scenario: str, out: Path, resamples: int) -> dict[str, Any]:
    from flows.settings import load_settings
    from models.config import SplitSettings
    from models.metrics import auc
    from models.pipeline import train_pd_model

    root, config, generate_seconds = raw_root(scenario, out)
    started = time.perf_counter()
    features, labels, truth, families = prepared(root, out / scenario)
    prepare_seconds = time.perf_counter() - started
    settings = load_settings()
    split = SplitSettings(**SHORT_SPLIT) if config.months < SHORT_HISTORY_MONTHS else settings.split
    started = time.perf_counter()
    outcome = train_pd_model(
        features,
        labels,
        families,
        split,
        settings.training,
        TZ,
        truth=truth,
        show_progress=False,
        evaluation=settings.evaluation,
        decision=settings.decision,
    )
    train_seconds = time.perf_counter() - started
    oot = outcome.training_set.filter(pl.col("split") == "oot")
    y = oot["label"].to_numpy()
    chosen = outcome.oot_scores["model"]
    models = {name: scores for name, scores in outcome.oot_scores.items() if name != "model"}
    oot.select("application_id", "label").with_columns(
        pl.Series(name, scores) for name, scores in outcome.oot_scores.items()
    ).write_parquet(out / scenario / "oot_scores.parquet")
    result: dict[str, Any] = {
        "scenario": scenario,
        "users": config.users,
        "months": config.months,
        "split": split.model_dump(),
        "loans": {
            str(key[0]): [int(part.height), int(part["label"].sum())]
            for key, part in outcome.training_set.group_by("split")
        },
        "chosen": outcome.chosen,
        "choice": outcome.choice,
        "fitted_on": outcome.fitted_on["evaluated"],
        "auc": {"chosen": auc(y, chosen), **{n: auc(y, s) for n, s in models.items()}},
        "interval": {"chosen": interval(auc, (y, chosen), resamples, 1)},
        "valid_auc": {
            row["candidate"]: row["valid_auc"]
            for row in outcome.tables["evaluation/candidates.csv"].iter_rows(named=True)
        },
        "oracle_auc": outcome.metrics.get("oot_oracle_auc"),
        "seconds": {
            "generate": generate_seconds,
            "gate_labels_features": prepare_seconds,
            "train": train_seconds,
        },
    }
    for name, scores in models.items():
        result["interval"][name] = interval(auc, (y, scores), resamples, 1)
    result["baseline_minus_chosen"] = {
        name: interval(auc_gap, (y, models[name], chosen), resamples, 2)
        for name in BASELINES
        if name in models
    }
    result["beaten_by"] = [n for n, (low, _) in result["baseline_minus_chosen"].items() if low > 0]
    if result["oracle_auc"]:
        result["to_oracle"] = result["auc"]["chosen"] / result["oracle_auc"]
    return result


def row(result: dict[str, Any]) -> str:
    def shown(name: str) -> str:
        low, high = result["interval"][name]
        return f"{result['auc'][name]:.3f} [{low:.3f}, {high:.3f}]"

    loans = result["loans"]
    counts = " / ".join(f"{loans[s][0]:,} ({loans[s][1]})" for s in ("train", "valid", "oot"))
    cells = [
        result["scenario"],
        f"{result['users']:,} x {result['months']}",
        counts,
        result["chosen"],
        shown("chosen"),
        *(shown(f"candidate_{c}") for c in ("scorecard", "lightgbm", "blend")),
        *(shown(b) for b in BASELINES),
        f"{result['oracle_auc']:.3f}" if result["oracle_auc"] else "-",
        f"{result.get('to_oracle', float('nan')):.3f}",
        ", ".join(result["beaten_by"]) or "no",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| scenario | users x months | loans train / valid / oot (bads) | chosen | chosen AUC | "
    "scorecard | lightgbm | blend | LightGBM default | WOE scorecard (untuned) | bureau only | "
    "oracle | to oracle | beaten beyond the interval |\n" + "| --- " * 15 + "|"
)


def main() -> None:
    from data.generator.config import SCENARIOS
    from models.split import SplitError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=Path(".pdflow/bench/models"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    print(f"machine: {machine}")
    print(HEADER, flush=True)
    results = []
    for name in names:
        try:
            result = run_scenario(name, args.out, args.resamples)
        except SplitError as err:  # too few loans for the split: a finding, not a crash
            print(f"| {name} | cannot train: {err} |", flush=True)
            continue
        results.append(result)
        print(row(result), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    for result in results:
        seconds = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
        print(f"{result['scenario']}: {result['choice']}; {seconds}")


if __name__ == "__main__":
    main()

"""Training and tuning time against the number of labelled loans, and LightGBM against
XGBoost's hist method on the same split.

    .venv/bin/python tests/bench/bench_train.py --raw DIR [--as-of YYYY-MM-DD]
        [--sizes 100000,300000,0] [--trials N]

Set-up, not timed: the feature table and labels as the pipeline builds them, the time split.
Each size takes that many labelled loans (0: all), drawn at random with a fixed seed within
each split, so the time split is kept. For each size, one after the other in this process:

- ``lightgbm``: one fit with the configured base parameters, early-stopped on validation;
- ``xgboost-hist``: XGBoost's hist method with the closest parameters (same learning rate,
  leaves, minimum child weight, column and row sampling, L2; early-stopped on validation);
- ``tuning``: ``--trials`` Optuna trials as the pipeline runs them.

Prints one Markdown row per stage: loans (train / valid / out of time), seconds, rounds, and
the out-of-time AUC, so that time is compared at the AUC each reaches.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import polars as pl

TZ = "Asia/Shanghai"
SPLITS = ("train", "valid", "oot")


def labelled_split(raw: Path, as_of: date | None) -> tuple[pl.DataFrame, list[str]]:
    """Matured labelled loans with their features and split, and the feature names."""
    from data.asof import build_view, default_as_of
    from data.config import LabelSettings
    from data.labels import label_loans
    from data.readers import scan_raw
    from features.base import FeatureSettings
    from features.build import feature_table
    from models.config import SplitSettings
    from models.pipeline import training_set
    from models.split import time_split

    tables = scan_raw(raw)
    day = as_of or default_as_of(tables, TZ)
    view = build_view(tables, day, TZ)
    labels = LabelSettings()
    defs, features = feature_table(view.kept, FeatureSettings(), TZ, labels)
    loans = label_loans(view["applications"], view["repayments"], day, TZ, labels).collect()
    data = time_split(training_set(features, loans), SplitSettings(), TZ)
    return data, [d.name for d in defs]


def sample(data: pl.DataFrame, size: int, seed: int = 0) -> pl.DataFrame:
    """`size` loans in the same proportions per split (all of them for 0 or more than there are)."""
    if size <= 0 or size >= data.height:
        return data
    share = size / data.height
    parts = []
    for name in SPLITS:
        part = data.filter(pl.col("split") == name)
        parts.append(part.sample(n=round(part.height * share), seed=seed).sort("applied_at"))
    return pl.concat(parts)


def run_lightgbm(parts: dict[str, pl.DataFrame], names: list[str]) -> tuple[float, int, float]:
    from models.config import TrainSettings
    from models.metrics import auc
    from models.train import FeatureSpec, TrainData, default_params, fit

    settings = TrainSettings()
    spec = FeatureSpec.from_frame(parts["train"], names)
    started = time.perf_counter()
    data = TrainData.build(spec, parts["train"], parts["valid"])
    booster = fit(data, default_params(settings), settings)
    seconds = time.perf_counter() - started
    scores = booster.predict(spec.matrix(parts["oot"]), num_iteration=booster.best_iteration)
    return seconds, booster.best_iteration, auc(parts["oot"]["label"].to_numpy(), scores)


def run_xgboost(parts: dict[str, pl.DataFrame], names: list[str]) -> tuple[float, int, float]:
    import xgboost as xgb

    from models.config import TrainSettings
    from models.metrics import auc
    from models.train import FeatureSpec

    settings = TrainSettings()
    spec = FeatureSpec.from_frame(parts["train"], names)
    params = {
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "tree_method": "hist",
        "grow_policy": "lossguide",
        "max_leaves": settings.num_leaves,
        "max_depth": 0,
        "eta": settings.learning_rate,
        "min_child_weight": 1e-3,
        "colsample_bytree": settings.feature_fraction,
        "subsample": settings.bagging_fraction,
        "lambda": settings.lambda_l2,
        "nthread": settings.num_threads,
        "seed": settings.seed,
    }
    started = time.perf_counter()
    train = xgb.DMatrix(spec.matrix(parts["train"]), label=parts["train"]["label"].to_numpy())
    valid = xgb.DMatrix(spec.matrix(parts["valid"]), label=parts["valid"]["label"].to_numpy())
    booster = xgb.train(
        params,
        train,
        num_boost_round=settings.max_rounds,
        evals=[(valid, "valid")],
        early_stopping_rounds=settings.early_stopping_rounds,
        verbose_eval=False,
    )
    seconds = time.perf_counter() - started
    oot = xgb.DMatrix(spec.matrix(parts["oot"]))
    scores = booster.predict(oot, iteration_range=(0, booster.best_iteration + 1))
    return seconds, booster.best_iteration + 1, auc(parts["oot"]["label"].to_numpy(), scores)


def run_tuning(
    parts: dict[str, pl.DataFrame], names: list[str], trials: int
) -> tuple[float, int, float]:
    from models.config import TrainSettings
    from models.metrics import auc
    from models.train import FeatureSpec, TrainData, fit, tune

    settings = TrainSettings(trials=trials)
    spec = FeatureSpec.from_frame(parts["train"], names)
    started = time.perf_counter()
    data = TrainData.build(spec, parts["train"], parts["valid"])
    result = tune(data, settings, show_progress=False)
    booster = fit(data, result.params, settings)
    seconds = time.perf_counter() - started
    scores = booster.predict(spec.matrix(parts["oot"]), num_iteration=booster.best_iteration)
    return seconds, booster.best_iteration, auc(parts["oot"]["label"].to_numpy(), scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat)
    parser.add_argument("--sizes", default="100000,300000,0")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    data, names = labelled_split(args.raw, args.as_of)
    print(f"machine: {platform.machine()}, set-up {time.perf_counter() - started:.0f} s")
    print(f"labelled loans: {data.height:,}, features: {len(names)}", flush=True)
    print("| loans (train / valid / oot) | stage | seconds | rounds | OOT AUC |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    stages = {
        "lightgbm": run_lightgbm,
        "xgboost-hist": run_xgboost,
        f"tuning ({args.trials} trials)": lambda p, n: run_tuning(p, n, args.trials),
    }
    for size in (int(s) for s in args.sizes.split(",")):
        chosen = sample(data, size)
        parts = {name: chosen.filter(pl.col("split") == name) for name in SPLITS}
        counts = " / ".join(f"{parts[n].height:,}" for n in SPLITS)
        for stage, run in stages.items():
            seconds, rounds, oot_auc = run(parts, names)
            print(f"| {counts} | {stage} | {seconds:.1f} | {rounds} | {oot_auc:.4f} |", flush=True)


if __name__ == "__main__":
    main()

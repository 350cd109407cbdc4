"""MLflow logging of a training: the parent run (started with the flow), its parameters,
metrics, artifacts and split datasets, a child run per Optuna trial, candidate and baseline,
the models, provenance tags, and the promotion gate's decision written on the run and the
version. What the registry does with aliases is ``models.registry``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import polars as pl
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, Param
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from data.fingerprint import frame_digest
from flows.settings import REPO_ROOT, MlflowSettings
from models.metrics import auc, ks
from models.monitor import MonitorReport
from models.pd_model import PDModel
from models.pipeline import TrainingOutcome, finite
from models.registry import (
    EVALUATED_MODEL,
    EVALUATED_MONTHS,
    FITTED_MONTHS,
    Registry,
    Settlement,
    decision_line,
    decision_record,
    version_description,
    version_tags,
)

# What loading the registered model imports (models.pd_model and what it pickles).
MODEL_REQUIREMENTS = (
    "lightgbm",
    "scikit-learn",
    "scipy",
    "pydantic",
    "polars",
    "pandas",
    "numpy",
    "mlflow",
    "pyarrow",
)


# The UI opens an experiment of this kind on its training runs, not its GenAI pages.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
EXPERIMENT_NOTE = (
    "PD models trained by pdflow's nightly flow: one parent run per training, with child runs "
    "per Optuna trial, candidate and baseline. Registered versions carry the champion and "
    "challenger aliases and the promotion gate's decision."
)
DATASET_CONTEXT = {"train": "training", "valid": "validation", "oot": "evaluation"}


@dataclass
class LoggedRun:
    """A training's parent run, still open, and the models it logged."""

    run_id: str
    experiment_id: str
    model_uri: str  # the model to register
    evaluated_uri: str  # the model evaluated out of time (the same unless final_refit: all)
    tracking_uri: str


@dataclass
class RegisteredRun:
    run_id: str
    experiment_id: str
    model_uri: str
    model_version: str
    tracking_uri: str


def use_tracking(settings: MlflowSettings, experiment_name: str | None = None) -> str:
    """Point MLflow at the configured store and make sure the experiment (default: the
    training one) exists, tagged as model development (the UI then opens it on its runs, not
    its GenAI pages)."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient()
    name = experiment_name or settings.experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        Path(settings.artifact_location).mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(
            name,
            artifact_location=Path(settings.artifact_location).as_uri()
            if "://" not in settings.artifact_location
            else settings.artifact_location,
        )
    else:
        experiment_id = experiment.experiment_id
    if (experiment and experiment.tags.get(EXPERIMENT_KIND)) != MODEL_DEVELOPMENT:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, MODEL_DEVELOPMENT)
        client.set_experiment_tag(experiment_id, MLFLOW_RUN_NOTE, EXPERIMENT_NOTE)
    return experiment_id


def start_parent_run(
    settings: MlflowSettings, started_ms: int, tags: dict[str, str], name: str
) -> tuple[str, str]:
    """The training's parent run, started when the flow started (its duration is the
    training's): its id and the experiment's."""
    experiment_id = use_tracking(settings)
    run = MlflowClient().create_run(experiment_id, start_time=started_ms, tags=tags, run_name=name)
    return run.info.run_id, experiment_id


def log_training(
    outcome: TrainingOutcome,
    settings: MlflowSettings,
    run: tuple[str, str],
    params: dict[str, Any],
    extra_metrics: dict[str, float],
    artifacts: dict[str, str],
    folders: dict[str, Path] | None = None,
    splits: dict[str, Path] | None = None,
) -> LoggedRun:
    """Log one training into its parent run `run` (run id, experiment id): parameters,
    metrics, artifacts, the split sets as datasets, a child run per Optuna trial, candidate
    and baseline, and the models (not yet registered).

    `artifacts` maps artifact paths to text; `folders` maps artifact paths to local folders;
    `splits` maps split names to the Parquet file of each split's loans."""
    run_id, experiment_id = run
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({**params, **candidate_params(outcome)})
        mlflow.log_param("best_iteration", outcome.best_iteration)
        if outcome.model.calibrator is not None:
            mlflow.log_param("calibration", outcome.model.calibrator.method)
        mlflow.log_metrics(finite({**outcome.metrics, **extra_metrics}))
        mlflow.log_metrics({f"rows_{k}": float(v) for k, v in outcome.split_rows.items()})
        tables = {name: table.write_csv() for name, table in outcome.tables.items()}
        log_texts({**artifacts, **tables})
        for artifact_path, folder in (folders or {}).items():
            mlflow.log_artifacts(str(folder), artifact_path=artifact_path)
        summary = {"split_months": outcome.split_months, "split_rows": outcome.split_rows}
        mlflow.log_dict(summary, "split.json")
        schema = infer_signature(input_example(outcome.training_set, outcome.registered)).inputs
        for name, path in (splits or {}).items():
            log_split(outcome, name, path, schema)
        log_children(outcome, experiment_id, run_id)
        model_uri = log_model(outcome.registered, outcome, "model")
        evaluated_uri = model_uri
        if outcome.registered is not outcome.model:
            evaluated_uri = log_model(outcome.model, outcome, "evaluated_model")
    return LoggedRun(run_id, experiment_id, model_uri, evaluated_uri, settings.tracking_uri)


def log_texts(texts: dict[str, str]) -> None:
    """Each text as an artifact at its path."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in texts.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            parent = str(Path(name).parent)
            mlflow.log_artifact(str(path), artifact_path=None if parent == "." else parent)


def log_model(model: PDModel, outcome: TrainingOutcome, name: str) -> str:
    """Log a PD model with its signature and an input example holding no ids and no person's
    data (each feature's median or most common value over the training split)."""
    example = input_example(outcome.training_set, model)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=model,
        signature=infer_signature(example, model.predict_pd(pl.from_pandas(example))),
        input_example=example,
        pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS],
    )
    return info.model_uri


def input_example(training_set: pl.DataFrame, model: PDModel) -> pd.DataFrame:
    """One made-up applicant: the median of each numeric feature and the most common value
    of each categorical one over the training split, in the model's feature encoding.
    Numbers are typed as floats, so the signature accepts a missing value in any of them."""
    spec = model.spec
    train = training_set.filter(pl.col("split") == "train").select(spec.names)
    typical = train.select(
        pl.col(name).drop_nulls().mode().sort().first()
        if name in spec.categories
        else pl.col(name).cast(pl.Float64).median()
        for name in spec.names
    )
    return spec.to_pandas(typical)


def log_split(outcome: TrainingOutcome, name: str, path: Path, schema: Schema) -> None:
    """One split's loans as an MLflow dataset: its Parquet file as source, a digest of its
    content (``data.fingerprint.frame_digest``), and the model's input `schema`."""
    part = outcome.training_set.filter(pl.col("split") == name)
    with warnings.catch_warnings():  # MLflow registers its local-file source twice
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(path.resolve()))
    dataset = MetaDataset(
        source=source,
        name=f"{name}_loans",
        digest=frame_digest(part, order_by="application_id"),
        schema=schema,
    )
    mlflow.log_input(dataset, context=DATASET_CONTEXT[name])


def log_children(outcome: TrainingOutcome, experiment_id: str, parent_id: str) -> None:
    """A child run per Optuna trial (its parameters, validation AUC, state), per candidate
    (validation and out-of-time measures) and per baseline (out-of-time measures), with the
    same metric keys across children so the UI compares them."""
    client = MlflowClient()
    oot_labels = outcome.training_set.filter(pl.col("split") == "oot")["label"].to_numpy()
    for study_name, study in outcome.studies.items():
        for trial in study.trials:
            values = {"valid_auc": trial.value} if trial.value is not None else {}
            child(
                client,
                experiment_id,
                parent_id,
                f"{study_name} trial {trial.number}",
                {
                    "pdflow.child": "trial",
                    "pdflow.study": study_name,
                    "pdflow.trial_state": trial.state.name,
                },
                trial.params,
                values,
                _ms(trial.datetime_start),
                _ms(trial.datetime_complete),
            )
    for row in outcome.tables["evaluation/candidates.csv"].iter_rows(named=True):
        name = row["candidate"]
        metrics = {k: row[k] for k in ("valid_auc", "oot_auc", "oot_ks", "oot_brier")}
        tags = {"pdflow.child": "candidate", "pdflow.chosen": str(row["chosen"]).lower()}
        params = outcome.candidate_params.get(name, {})
        child(client, experiment_id, parent_id, f"candidate {name}", tags, params, metrics)
    for name, scores in outcome.oot_scores.items():
        if name == "model" or name.startswith("candidate_"):
            continue
        metrics = {"oot_auc": auc(oot_labels, scores), "oot_ks": ks(oot_labels, scores)}
        tags = {"pdflow.child": "baseline"}
        child(client, experiment_id, parent_id, f"baseline {name}", tags, {}, metrics)


def child(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    name: str,
    tags: dict[str, str],
    params: dict[str, Any],
    metrics: dict[str, float],
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> None:
    run = client.create_run(
        experiment_id,
        start_time=start_ms,
        tags={MLFLOW_PARENT_RUN_ID: parent_id, **tags},
        run_name=name,
    )
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), start_ms or 0, 0) for k, v in finite(metrics).items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id, "FINISHED", end_time=end_ms)


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def candidate_params(outcome: TrainingOutcome) -> dict[str, Any]:
    """The choice and how each candidate was fitted: ``chosen_candidate``, ``chosen_because``,
    ``fitted_on_evaluated`` / ``fitted_on_registered``, the tuned LightGBM candidate's
    parameters as ``lgbm_*`` (what the next run warm-starts from), and the other candidates'
    as ``<candidate>_*``."""
    found = {
        "chosen_candidate": outcome.chosen,
        "chosen_because": outcome.choice,
        **{f"fitted_on_{k}": v for k, v in outcome.fitted_on.items()},
        **{f"lgbm_{k}": v for k, v in outcome.params.items()},
    }
    for name, values in outcome.candidate_params.items():
        if name != "lightgbm":
            found.update({f"{name}_{k}": v for k, v in values.items()})
    return found


@dataclass
class Champion:
    version: str
    params: dict[str, Any]  # the LightGBM parameters it was trained with


def _parameter(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def find_champion(settings: MlflowSettings) -> Champion | None:
    """The registered model's version under the alias ``champion`` and its LightGBM
    parameters, or None when no version carries the alias (or the registry is empty)."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    try:
        version = client.get_model_version_by_alias(settings.registered_model_name, "champion")
    except MlflowException:
        return None
    logged = client.get_run(version.run_id).data.params
    params = {
        k.removeprefix("lgbm_"): _parameter(v) for k, v in logged.items() if k.startswith("lgbm_")
    }
    return Champion(version=str(version.version), params=params)


def as_json(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2, sort_keys=True, default=str)


def code_commit(root: Path = REPO_ROOT) -> str:
    """The git commit of the code that runs (``+dirty`` with uncommitted changes), or
    ``unknown`` outside a git checkout."""
    try:
        found = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{found}+dirty" if dirty else found


def parent_run_tags(
    outcome: TrainingOutcome, as_of: str, fingerprint: str, trigger: str
) -> dict[str, str]:
    """What a reviewer filters and compares parent runs on: as-of day, each split's first and
    last application month, the raw data's fingerprint, the code's commit, the trigger and
    pdflow's version."""
    commit = code_commit()
    tags = {
        "pdflow.flow": "nightly-retrain",
        "pdflow.as_of": as_of,
        "pdflow.raw_fingerprint": fingerprint,
        "pdflow.git_commit": commit,
        "pdflow.trigger": trigger,
        "pdflow.version": version("pdflow"),
        "pdflow.chosen_candidate": outcome.chosen,
        **{f"pdflow.window.{name}": months for name, months in outcome.split_months.items()},
    }
    if commit != "unknown":
        tags[MLFLOW_GIT_COMMIT] = commit.removesuffix("+dirty")
    return tags


def registration_tags(
    outcome: TrainingOutcome, logged: LoggedRun, run_tags: dict[str, str]
) -> dict[str, str]:
    """Tags of a new version: what it is, what it learned from and where its evaluated twin is
    (the gate re-scores a champion only with a model that never saw the loans compared on)."""
    tags = {
        "pdflow.as_of": run_tags["pdflow.as_of"],
        "pdflow.chosen_candidate": outcome.chosen,
        "pdflow.oot_auc": f"{outcome.metrics['oot_auc']:.6g}",
        "pdflow.raw_fingerprint": run_tags["pdflow.raw_fingerprint"],
        "pdflow.trigger": run_tags["pdflow.trigger"],
        FITTED_MONTHS: outcome.fitted_months["registered"],
        EVALUATED_MONTHS: outcome.fitted_months["evaluated"],
    }
    if logged.evaluated_uri != logged.model_uri:
        tags[EVALUATED_MODEL] = logged.evaluated_uri
    return tags


def record_decision(
    registry: Registry,
    logged: LoggedRun,
    version: str,
    settlement: Settlement,
    card_markdown: str,
    card_html: str,
    trained: str,
    mode: str,
) -> None:
    """The gate's decision on the version (tags, Markdown description) and on the run
    (``promotion_*`` metrics, ``promotion/decision.json``, its description), and the model
    card beside the run's other artifacts."""
    with mlflow.start_run(run_id=logged.run_id):
        log_texts({"model_card.md": card_markdown, "model_card.html": card_html})
        record = decision_record(settlement, registry.name, mode)
        mlflow.log_dict(record, "promotion/decision.json")
        if settlement.gate is not None:
            mlflow.log_metrics(finite(settlement.gate.metrics()))
        mlflow.log_metric("promotion_promoted", float(settlement.promoted))
        mlflow.set_tag(MLFLOW_RUN_NOTE, f"{trained} Gate: {decision_line(settlement)}.")
    card_link = (
        f"#/experiments/{logged.experiment_id}/runs/{logged.run_id}/artifacts/model_card.html"
    )
    for key, value in version_tags(settlement).items():
        registry.client.set_model_version_tag(registry.name, version, key, value)
    registry.client.update_model_version(
        registry.name, version, version_description(settlement, trained, card_link)
    )


def end_parent_run(run_id: str, status: str) -> None:
    MlflowClient().set_terminated(run_id, status)


def log_monitor(report: MonitorReport, settings: MlflowSettings) -> str:
    """The monitor's run in the monitoring experiment, tagged with the model version, the day
    and the verdict: metrics, the report (JSON) and the stability table (CSV). A run with the
    same report for the same day and version is not logged twice: its id is returned."""
    experiment_id = use_tracking(settings, settings.monitor_experiment_name)
    body = as_json(report.as_dict())
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    tags = {
        "pdflow.flow": "daily-monitor",
        "pdflow.as_of": report.as_of.isoformat(),
        "pdflow.model_version": report.model_version,
        "pdflow.verdict": report.verdict,
        "pdflow.report_digest": digest,
    }
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    found = MlflowClient().search_runs(
        [experiment_id], f"{query} and attributes.status = 'FINISHED'"
    )
    if found:
        return found[0].info.run_id
    name = f"monitor {report.as_of} ({report.model_version})"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_metrics(report.metrics())
        mlflow.log_text(body, "monitor/report.json")
        mlflow.log_text(report.stability.write_csv(), "monitor/stability.csv")
    return run.info.run_id

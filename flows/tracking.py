"""MLflow: one run per training, its parameters, metrics, artifacts and a registered version
(the chosen candidate, as refitted for serving)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from flows.settings import MlflowSettings
from models.pipeline import TrainingOutcome, finite

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


@dataclass
class RegisteredRun:
    run_id: str
    experiment_id: str
    model_uri: str
    model_version: str
    tracking_uri: str


def use_tracking(settings: MlflowSettings) -> str:
    """Point MLflow at the configured store and make sure the experiment exists."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        Path(settings.artifact_location).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(
            settings.experiment_name,
            artifact_location=Path(settings.artifact_location).as_uri()
            if "://" not in settings.artifact_location
            else settings.artifact_location,
        )
    return experiment.experiment_id


def log_training(
    outcome: TrainingOutcome,
    settings: MlflowSettings,
    params: dict[str, Any],
    extra_metrics: dict[str, float],
    artifacts: dict[str, str],
    tags: dict[str, str],
    folders: dict[str, Path] | None = None,
) -> RegisteredRun:
    """Log one training run and register its model as a new version.

    `artifacts` maps artifact paths to text; `folders` maps artifact paths to local folders.
    """
    experiment_id = use_tracking(settings)
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_params({**params, **candidate_params(outcome)})
        mlflow.log_param("best_iteration", outcome.best_iteration)
        if outcome.model.calibrator is not None:
            mlflow.log_param("calibration", outcome.model.calibrator.method)
        mlflow.log_metrics(finite({**outcome.metrics, **extra_metrics}))
        mlflow.log_metrics({f"rows_{k}": float(v) for k, v in outcome.split_rows.items()})
        tables = {name: table.write_csv() for name, table in outcome.tables.items()}
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in {**artifacts, **tables}.items():
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                parent = str(Path(name).parent)
                mlflow.log_artifact(str(path), artifact_path=None if parent == "." else parent)
        for artifact_path, folder in (folders or {}).items():
            mlflow.log_artifacts(str(folder), artifact_path=artifact_path)
            summary = {"split_months": outcome.split_months, "split_rows": outcome.split_rows}
            mlflow.log_dict(summary, "split.json")
        sample = outcome.training_set.head(20)
        registered = outcome.registered
        example = registered.spec.to_pandas(sample)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=registered,
            signature=infer_signature(example, registered.predict_pd(sample)),
            input_example=example.head(3),
            pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS],
            registered_model_name=settings.registered_model_name,
        )
    return RegisteredRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        model_version=str(info.registered_model_version),
        tracking_uri=settings.tracking_uri,
    )


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

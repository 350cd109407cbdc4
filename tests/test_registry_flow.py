"""Two `pdflow train` runs on one store, as `make run` twice: what a reviewer finds in MLflow
(comparable parent and child runs, datasets, tags, the gate's decision, the model card) and
what `pdflow models`, `promote` and `rollback` do to it."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from training_runs import Store, run_pdflow

from features.base import FeatureSettings
from models.card import protected_inputs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("two_trainings")]
NAME = "pdflow-pd"
IDS = {"application_id", "user_id", "loan_id", "id_number", "phone"}


def parent_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name(NAME)
    found = "tags.pdflow.flow = 'nightly-retrain'"
    return client.search_runs([experiment.experiment_id], found, order_by=["start_time ASC"])


def test_runs_compare_and_carry_their_provenance(two_trainings: Store) -> None:
    client = MlflowClient(tracking_uri=two_trainings.tracking_uri)
    experiment = client.get_experiment_by_name(NAME)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"]
    first, second = parent_runs(client)
    for run in (first, second):
        tags = run.data.tags
        assert tags["pdflow.as_of"] == "2025-09-01" and tags["pdflow.trigger"] == "manual"
        assert tags["pdflow.version"] and len(tags["pdflow.raw_fingerprint"]) == 32
        assert tags["pdflow.git_commit"] == "unknown" or len(tags["pdflow.git_commit"]) >= 40
        for split in ("train", "valid", "oot"):
            assert ".." in tags[f"pdflow.window.{split}"]
        assert "out-of-time AUC" in tags["mlflow.note.content"]
        assert "Gate:" in tags["mlflow.note.content"]
        # The parent run spans the flow: gate, features, tuning, registration.
        assert run.info.end_time - run.info.start_time > 5_000
        children = client.search_runs(
            [experiment.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
        )
        kinds = [c.data.tags["pdflow.child"] for c in children]
        trials = run.data.params["trials"]
        assert kinds.count("candidate") == 3 and kinds.count("baseline") == 3
        assert kinds.count("trial") >= int(trials)
        for c in children:
            if c.data.tags["pdflow.child"] == "trial":
                assert "pdflow.trial_state" in c.data.tags
            else:
                assert "oot_auc" in c.data.metrics
    same = ("pdflow.raw_fingerprint", "pdflow.window.train", "pdflow.window.oot")
    assert all(first.data.tags[k] == second.data.tags[k] for k in same)
    digests = [
        {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}
        for run in (first, second)
    ]
    assert set(digests[0]) == {"train_loans", "valid_loans", "oot_loans"}
    assert digests[0] == digests[1]  # the same data, the same digests
    assert len(set(digests[0].values())) == 3  # different sets, different digests
    contexts = {
        i.dataset.name: {t.value for t in i.tags if t.key == "mlflow.data.context"}
        for i in first.inputs.dataset_inputs
    }
    assert contexts["oot_loans"] == {"evaluation"}


def test_model_is_logged_with_a_signature_and_an_example_without_ids(
    two_trainings: Store,
) -> None:
    mlflow.set_tracking_uri(two_trainings.tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{NAME}/1")
    inputs = {column.name for column in info.signature.inputs.inputs}
    assert inputs and not inputs & IDS
    assert not protected_inputs(sorted(inputs), list(FeatureSettings().protected))
    assert not any(name.startswith("fairness_") for name in inputs)
    example = mlflow.pyfunc.load_model(f"models:/{NAME}/1").input_example
    assert len(example) == 1 and not set(example.columns) & IDS


def test_make_run_twice_leaves_a_champion_a_challenger_and_a_decision(
    two_trainings: Store,
) -> None:
    mlflow.set_tracking_uri(two_trainings.tracking_uri)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    second_stdout = two_trainings.outputs[1]
    assert "Promotion gate" in second_stdout and "kept champion" in second_stdout
    assert "challenger -> version 2" in second_stdout

    version = client.get_model_version(NAME, "2")
    assert version.tags["pdflow.gate.decision"] == "kept champion"
    assert float(version.tags["pdflow.gate.p_value"]) == 1.0  # the same model, retrained
    assert "DeLong" in version.description and "model_card.html" in version.description
    run_id = version.run_id
    decision = mlflow.artifacts.load_dict(f"runs:/{run_id}/promotion/decision.json")
    assert decision["event"]["action"] == "kept champion" and not decision["promoted"]
    gate = decision["gate"]
    assert gate["challenger_auc"] == gate["champion_auc"] and gate["auc_difference"] == 0
    for key in ("p_value", "challenger_brier", "champion_ece", "psi", "auc_difference_low"):
        assert key in gate
    metrics = client.get_run(run_id).data.metrics
    assert metrics["promotion_p_value"] == 1.0 and metrics["promotion_promoted"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model_card.md", "model_card.html", "promotion"} <= artifacts
    card = mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
    for section in ("Intended use", "Metrics by segment", "Protected attributes", "champion"):
        assert section.lower() in card.lower()


def test_reviewer_lists_promotes_and_rolls_back(two_trainings: Store) -> None:
    def pdflow(*args: str):
        return run_pdflow(list(args), two_trainings.workspace, two_trainings.tracking_uri)

    listed = pdflow("models", "--history")
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout and "challenger" in listed.stdout
    assert "kept champion" in listed.stdout and "first champion" in listed.stdout

    refused = pdflow("promote", "--version", "9", "--reason", "typo")
    assert refused.returncode == 2 and "no version 9" in refused.stderr
    assert "Traceback" not in refused.stderr
    promoted = pdflow("promote", "--version", "2", "--reason", "reviewed the card")
    assert promoted.returncode == 0, promoted.stderr
    client = MlflowClient(tracking_uri=two_trainings.tracking_uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["pdflow.promoted_reason"] == "reviewed the card" and tags["pdflow.promoted_by"]

    rolled = pdflow("rollback", "--reason", "back to the evaluated champion")
    assert rolled.returncode == 0, rolled.stderr
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    history = client.get_registered_model(NAME).tags
    events = [json.loads(v) for k, v in sorted(history.items()) if k.startswith("pdflow.history.")]
    assert [e["action"] for e in events][-2:] == ["promote", "rollback"]

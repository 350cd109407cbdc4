"""The scheduled deployments: their schedules as defined, and end to end against a real Prefect
server on loopback (``pdflow serve``, runs triggered through the API, schedules left active)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest
from training_runs import PDFLOW, SMALL_TRAINING

from flows.deployments import runner_deployments
from flows.settings import load_settings

EXPECTED = {
    "nightly-retrain": "0 2 * * *",
    "daily-score": "0 6 * * *",
    "daily-monitor": "0 7 * * *",
}


def test_the_deployments_carry_their_cron_schedules_in_the_contracts_time_zone(
    tmp_path: Path,
) -> None:
    settings = load_settings(workspace=tmp_path / "ws", schedule={"score": "30 5 * * *"})
    deployments = runner_deployments(settings, tmp_path)
    found = {d.name: d.schedules[0].schedule for d in deployments}
    assert {name: s.cron for name, s in found.items()} == {**EXPECTED, "daily-score": "30 5 * * *"}
    assert {s.timezone for s in found.values()} == {"Asia/Shanghai"}
    for deployment in deployments:
        assert deployment.parameters["trigger"] == "schedule"
        assert deployment.parameters["raw"] == str(tmp_path.resolve())
        assert deployment.parameters["settings"]["workspace"] == str((tmp_path / "ws").resolve())


def test_serve_says_when_no_server_is_named(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    result = subprocess.run(
        [PDFLOW, "serve", "--raw", str(tmp_path / "raw")],
        env={**env, "PDFLOW_WORKSPACE": str(tmp_path / "ws")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "PREFECT_API_URL is not set" in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, what: str, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def deployments_of(api: str) -> dict[str, dict]:
    found = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    return {d["name"]: d for d in found}


def finished(api: str, run_id: str) -> dict | None:
    answer = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30)
    if answer.status_code != 200:
        return None
    run = answer.json()
    return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None


def trigger(api: str, deployment: dict, parameters: dict) -> dict:
    """Create a run of the deployment and wait for it to end. A server on two busy cores can
    answer 5xx for a moment (SQLite busy), so creating is retried; the last answer is shown."""
    answers: list[httpx.Response] = []

    def created() -> str | None:
        answers.append(
            httpx.post(
                f"{api}/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": parameters},
                timeout=30,
            )
        )
        return answers[-1].json()["id"] if answers[-1].status_code == 201 else None

    try:
        run_id = wait_for(created, f"a run of {deployment['name']}", timeout=120, every=3)
    except AssertionError as timed_out:
        last = answers[-1]
        raise AssertionError(
            f"{timed_out}; last answer {last.status_code}: {last.text[:500]}"
        ) from None
    return wait_for(lambda: finished(api, run_id), deployment["name"], timeout=900, every=3)


def stopped(process: subprocess.Popen | None) -> None:
    """Ctrl-C to the process group, then SIGKILL if it has not ended in a minute."""
    if process is None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def schedules_hold(found: dict[str, dict]) -> None:
    assert set(found) == set(EXPECTED)
    for name, cron in EXPECTED.items():
        schedule = found[name]["schedules"][0]
        assert schedule["schedule"]["cron"] == cron
        assert schedule["schedule"]["timezone"] == "Asia/Shanghai"
        assert schedule["active"] and not found[name]["paused"], name


@pytest.mark.slow
def test_deployments_run_on_a_real_server_served_and_through_a_work_pool(
    small_raw: Path, tmp_path: Path
) -> None:
    """`prefect server start` on loopback. First `pdflow serve`: the schedules read back
    through the server's API; nightly-retrain and daily-score triggered there and completed
    with a new model version and a scores partition; the schedules still active after serve
    stops. Then the repository's `prefect.yaml` through `prefect deploy --all` to a process
    work pool with a worker: the same schedules, not paused, and daily-monitor triggered and
    run by the worker to its report."""
    api = f"http://127.0.0.1:{free_port()}/api"
    port = api.split(":")[2].split("/")[0]
    server_env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    prefect = str(Path(sys.executable).parent / "prefect")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", port],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    workspace = tmp_path / "ws"
    client_env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PDFLOW_WORKSPACE": str(workspace),
        "MLFLOW_TRACKING_URI": tracking,
        "PDFLOW_MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
        **SMALL_TRAINING,
    }
    served = worker = None
    try:
        wait_for(lambda: healthy(api), "the Prefect server", timeout=120)
        try:
            served = subprocess.Popen(
                [PDFLOW, "serve", "--raw", str(small_raw)],
                env=client_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            found = wait_for(
                lambda: (d := deployments_of(api)) and len(d) == 3 and d, "3 deployments", 180
            )
            schedules_hold(found)
            retrained = trigger(api, found["nightly-retrain"], {"as_of": "2025-09-01"})
            assert retrained["state"]["type"] == "COMPLETED", retrained["state"]
            mlflow.set_tracking_uri(tracking)
            versions = mlflow.MlflowClient().search_model_versions("name='pdflow-pd'")
            assert [str(v.version) for v in versions] == ["1"]

            scored = trigger(api, found["daily-score"], {"as_of": "2025-09-01"})
            assert scored["state"]["type"] == "COMPLETED", scored["state"]
            partition = workspace / "scores" / "dt=2025-09-01"
            assert (partition / "summary.json").is_file()
            assert (partition / "loans.parquet").is_file()
        finally:
            stopped(served)
        schedules_hold(deployments_of(api))

        repo = Path(__file__).resolve().parents[1]
        for command in (
            ["work-pool", "create", "pdflow", "--type", "process"],
            ["deploy", "--all"],
        ):
            done = subprocess.run(
                [prefect, "--no-prompt", *command],
                cwd=repo,
                env=client_env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        deployed = deployments_of(api)
        schedules_hold(deployed)
        assert {d["work_pool_name"] for d in deployed.values()} == {"pdflow"}
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "pdflow"],
            cwd=repo,
            env=client_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        parameters = {"as_of": "2025-09-01", "raw": str(small_raw)}
        monitored = trigger(api, deployed["daily-monitor"], parameters)
        assert monitored["state"]["type"] == "COMPLETED", monitored["state"]
        assert (workspace / "monitor" / "2025-09-01.json").is_file()
    finally:
        stopped(worker)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

"""Retries for the tasks that read or write: only on errors that may pass by themselves (a
store busy with another writer, a dropped connection, a timeout), with backoff; never on bad
input, which fails at once with its own message (the gate's, a contract error)."""

from __future__ import annotations

from typing import Any, TypeVar

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from flows.settings import RetrySettings

TRANSIENT = (ConnectionError, TimeoutError, BlockingIOError, InterruptedError)
BUSY = ("database is locked", "database table is locked")

T = TypeVar("T", bound=Task)


def transient(error: BaseException) -> bool:
    """Whether `error` may pass on a second try: a connection or timeout error, or a busy
    SQLite store (MLflow's, Optuna's)."""
    if isinstance(error, TRANSIENT):
        return True
    return any(busy in str(error).lower() for busy in BUSY)


def on_transient(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Prefect's retry condition: retry a failed run only when its error is transient."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and transient(error)


def retrying(task: T, settings: RetrySettings) -> T:
    """`task` retried on transient errors, `settings.attempts` more times at most, waiting
    `settings.delays_seconds` between tries."""
    return task.with_options(  # type: ignore[return-value]
        retries=settings.attempts,
        retry_delay_seconds=list(settings.delays_seconds),
        retry_condition_fn=on_transient,
    )

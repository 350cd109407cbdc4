"""Flow tasks retry on transient errors only: bad input fails at once."""

from __future__ import annotations

import sqlite3

import pytest
from prefect.states import Completed, Failed

from data.readers import ContractError
from expectations.gate import DataGateStop
from flows.retries import on_transient, retrying, transient
from flows.settings import RetrySettings
from flows.train_flow import check_data


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("reset by peer"),
        TimeoutError("read timed out"),
        sqlite3.OperationalError("database is locked"),
        RuntimeError("(sqlite3.OperationalError) database is locked [SQL: INSERT ...]"),
    ],
)
def test_a_transient_error_is_retried(error: BaseException) -> None:
    assert transient(error)
    assert on_transient(check_data, None, Failed(data=error))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        DataGateStop(["transactions: 12% of rows set aside (txn_type_in_set)"]),
        ContractError("transactions: column amount has type String, expected Float64"),
        FileNotFoundError("raw root /nowhere does not exist"),
        ValueError("too few months for the split"),
    ],
)
def test_bad_input_is_not_retried(error: BaseException) -> None:
    assert not transient(error)
    assert not on_transient(check_data, None, Failed(data=error))  # type: ignore[arg-type]
    assert not on_transient(check_data, None, Completed(data=1))  # type: ignore[arg-type]


def test_the_retry_settings_reach_the_task() -> None:
    task = retrying(check_data, RetrySettings(attempts=2, delays_seconds=(1.0, 4.0)))
    assert task.retries == 2 and task.retry_delay_seconds == [1.0, 4.0]
    assert task.retry_condition_fn is on_transient

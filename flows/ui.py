"""The MLflow UI over pdflow's store: `mlflow server` in a subprocess, started and stopped.

`serving_ui` is what `pdflow ui` and the browser test both use: it refuses a store that does
not exist yet and a port that is taken, starts the venv's `mlflow server` in its own process
group, waits until its `/health` answers, and on exit stops the whole group (the server's
uvicorn workers included).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

WILDCARD_HOSTS = ("0.0.0.0", "::", "")
STOP_GRACE_S = 10.0
POLL_S = 0.25
# The server's job runners (online scoring, trace archival) are GenAI features pdflow does not
# use; without them the server starts fewer processes.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class NoRunsYet(FileNotFoundError):
    """The tracking store's SQLite file does not exist: nothing was trained into it."""


class PortInUse(OSError):
    """Something already listens on the port the UI should use."""


class UiDidNotStart(RuntimeError):
    """`mlflow server` exited, or did not answer in time, before serving."""


@dataclass(frozen=True)
class UiServer:
    """A running `mlflow server`: the address a browser opens and its process."""

    url: str
    process: subprocess.Popen[bytes]

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        while True:
            # A bare wait() blocks in waitpid, which a signal delivered to another of this
            # process's threads does not interrupt: Ctrl-C would go unnoticed.
            with suppress(subprocess.TimeoutExpired):
                return self.process.wait(timeout=POLL_S)


def mlflow_executable() -> Path:
    """The `mlflow` command of the running interpreter's environment (the venv's)."""
    return Path(sys.executable).parent / "mlflow"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI; None for other stores."""
    url = make_url(tracking_uri)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def require_store(tracking_uri: str) -> None:
    """Refuse a SQLite store that does not exist (`mlflow server` would create an empty one)."""
    path = sqlite_file(tracking_uri)
    if path is not None and not path.is_file():
        raise NoRunsYet(f"no runs yet: run `make run` first ({path} does not exist)")


def url_host(host: str) -> str:
    """The host part of a URL that reaches a server bound to `host`."""
    reachable = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"[{reachable}]" if ":" in reachable else reachable


def require_free_port(host: str, port: int) -> None:
    """Raise PortInUse when a listener already holds `port` on `host`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise PortInUse(
                f"port {port} on {host} is taken ({err.strerror}): pick another with --port"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, chosen by the operating system."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def allowed_hosts(host: str, port: int) -> str:
    """Host headers the server accepts: the address it prints, localhost, and for a server
    bound to every interface, this machine's name."""
    others = [socket.gethostname()] if host in WILDCARD_HOSTS else []
    names = dict.fromkeys([url_host(host), "127.0.0.1", "localhost", *others])
    return ",".join(f"{name}{suffix}" for name in names for suffix in ("", f":{port}"))


def server_command(
    tracking_uri: str, host: str, port: int, artifact_root: str | None = None
) -> list[str]:
    """The `mlflow server` command line for a store (one worker: a UI for one person)."""
    command = [
        str(mlflow_executable()),
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--allowed-hosts",
        allowed_hosts(host, port),
    ]
    if artifact_root is not None:
        command += ["--default-artifact-root", artifact_root]
    return command


def answers(url: str) -> bool:
    """Whether the server at `url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_until_answering(server: UiServer, timeout_s: float) -> None:
    """Poll the server's `/health` until it answers; UiDidNotStart when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while not answers(server.url):
        code = server.process.poll()
        if code is not None:
            raise UiDidNotStart(f"mlflow server exited with code {code} before answering")
        if time.monotonic() > deadline:
            raise UiDidNotStart(f"mlflow server did not answer {server.url} in {timeout_s:.0f} s")
        time.sleep(POLL_S)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group: SIGTERM, then SIGKILL after a grace period."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def interrupt_on_termination() -> None:
    """Treat SIGTERM and SIGHUP like Ctrl-C, so that `serving_ui` stops its server on them too
    (the server runs in its own session and would otherwise outlive this process)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


@contextmanager
def serving_ui(
    tracking_uri: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    artifact_root: str | None = None,
    output: IO[bytes] | int | None = None,
    timeout_s: float = 120.0,
) -> Iterator[UiServer]:
    """Serve the MLflow UI for `tracking_uri` until the block ends.

    `port` None picks a free one. `output` receives the server's stdout and stderr (None: this
    process's). The server runs in its own session, so Ctrl-C reaches only this process, which
    stops the server on the way out.
    """
    require_store(tracking_uri)
    port = free_port(host if host not in WILDCARD_HOSTS else "127.0.0.1") if port is None else port
    require_free_port(host, port)
    process = subprocess.Popen(
        server_command(tracking_uri, host, port, artifact_root),
        stdin=subprocess.DEVNULL,
        env={**os.environ, **SERVER_ENV},
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )
    server = UiServer(f"http://{url_host(host)}:{port}", process)
    try:
        wait_until_answering(server, timeout_s)
        yield server
    finally:
        stop(process)

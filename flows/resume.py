"""A finished task's result kept for a re-run: a re-run after a failure (the registry down, the
process killed) takes the result of the costly task that finished instead of computing it
again.

A task made :func:`resumable` persists its result (pickled by Prefect into its local storage,
under the workspace's Prefect home) under a key made of everything that decides it: the raw
data (:func:`data.fingerprint.raw_files_fingerprint` of the files a gate reads, or
:func:`data.fingerprint.raw_fingerprint` of what it kept), the code of pdflow's packages, the
settings and what else the caller names (the raw root and as-of date of a gate, the champion a
tuning warm-starts from). Any change to one of them is a new key, so a result is never taken
for other inputs. A task that fails (a gate that stops) persists nothing.
"""

from __future__ import annotations

import hashlib
import importlib
from functools import cache
from pathlib import Path
from typing import TypeVar

from prefect import Task

from flows.settings import Settings

PACKAGES = ("data", "expectations", "features", "models", "flows")

T = TypeVar("T", bound=Task)


@cache
def code_version() -> str:
    """A digest of the source of pdflow's packages (the files, not a version number, so an
    uncommitted change counts too)."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root.parent).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def result_key(name: str, fingerprint: str, settings: Settings, *more: object) -> str:
    """The key of task `name`'s result on the data of `fingerprint` with `settings`, this code
    and `more`."""
    digest = hashlib.sha256()
    for part in (fingerprint, code_version(), settings.model_dump_json(), *map(repr, more)):
        digest.update(part.encode())
        digest.update(b"\0")
    return f"{name}-{digest.hexdigest()[:32]}"


def resumable(task: T, key: str) -> T:
    """`task` with its result persisted under `key`, and taken from there when present."""
    return task.with_options(  # type: ignore[return-value]
        cache_key_fn=lambda *_: key, persist_result=True, refresh_cache=False
    )

"""Synthetic raw logs for pdflow: a latent world of micro-loan borrowers, written to the contract.

Public API::

    from data.generator import GeneratorConfig, GenerationReport, generate
    report = generate(Path("raw"), GeneratorConfig(users=20_000, months=24, seed=7))
    report = generate(Path("thin"), GeneratorConfig.from_scenario("thin_file", users=5_000))
    report = append_days(Path("raw"), 1)  # the next local day of the same world

The world (details in :mod:`.population` and :mod:`.tables`):

- every user has latent traits (income, income stability, impulsivity, repayment discipline,
  appetite for credit) partly reflected by the observable profile (occupation, city tier,
  age; gender is pure noise);
- a monthly financial-stress process per user (AR(1), community shocks, rare jumps) makes
  risk dynamic; from ``shock_start`` a macro shock raises stress of gig / self-employed
  workers and tier 4-5 cities;
- users live in communities with a shared risk factor; friendships are mostly within them;
- not every friend is a customer: about ``outsider_share`` of a user's friendship ties are to
  outsiders, people with ids of the same scheme (above every customer's) and no rows of their
  own, so social rows and transfers / red packets sometimes name a non-customer;
- from ``campaign_start`` a push-message campaign brings extra, riskier applicants;
- every table is a noisy view of traits and *current* stress; ``_truth.true_pd`` is the
  non-linear default probability the simulator drew each loan's outcome from;
- scenario knobs change the world, not only its size: per family of tables a signal
  (``bureau_signal``, ``consumption_signal``, ``transactions_signal``, ``social_signal``,
  ``app_signal``; 1 = as above, 0 = the family shows every user as the population's typical
  risk, > 1 amplified) scales how strongly its rows reflect latent risk, without changing
  who defaults; ``bureau_coverage`` leaves the users without a bureau file out of the
  bureau's tables; ``community_weight`` scales how much of stress and default the
  community shares. Named presets of them (``SCENARIOS``: ``small_lender``, ``thin_file``,
  ``strong_drift``, ...) are in :mod:`.config`; ``GeneratorConfig.from_scenario(name,
  **overrides)`` builds one.

Output layout, determinism and atomicity are documented on :func:`generate`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, fields, replace
from datetime import date
from pathlib import Path

import numpy as np

from data.contract import EVENT_TABLES, TABLES
from data.storage import swap_into_place

from .block import BlockResult, finish_output, run_block
from .config import SCENARIO_DESCRIPTIONS, SCENARIOS, GenerationReport, GeneratorConfig
from .timeline import Timeline

__all__ = [
    "SCENARIOS",
    "SCENARIO_DESCRIPTIONS",
    "GenerationReport",
    "GeneratorConfig",
    "append_days",
    "generate",
    "root_config",
]

#: The config a root was generated with, beside its table folders.
MANIFEST = "_generator.json"


def _replaceable(out: Path) -> bool:
    """True when ``out`` is absent, empty, or only holds contract table folders (and the
    generator's manifest)."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    return all(
        (e.is_dir() and e.name in TABLES) or (e.is_file() and e.name == MANIFEST)
        for e in os.scandir(out)
    )


def write_manifest(root: Path, config: GeneratorConfig) -> None:
    values = {k: v for k, v in asdict(config).items() if k != "workers"}
    (root / MANIFEST).write_text(json.dumps(values, default=str, indent=2, sort_keys=True))


def root_config(root: Path) -> GeneratorConfig:
    """The config ``root`` was generated with (its manifest); a clear error for a root the
    generator did not write."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{root} has no {MANIFEST}: only a root written by `pdflow generate` can be "
            "extended, since the new days continue the world it simulated"
        )
    values = json.loads(path.read_text())
    known = {f.name for f in fields(GeneratorConfig)}
    if not isinstance(values, dict) or set(values) - known or "start" not in values:
        raise ValueError(f"{path} is not a generator manifest this version can read")
    return GeneratorConfig(**{**values, "start": date.fromisoformat(values["start"])})


def append_days(
    root: Path, days: int, progress: bool = True, workers: int | None = None
) -> GenerationReport:
    """Extend ``root`` by ``days`` local days of the same world: new logs, applications and
    decisions, and the repayments that come due or are paid in them.

    The root is generated again with its own config and ``extra_days`` raised (the world is
    the same, so every file of a day before the old cut is rewritten byte for byte) and
    replaced whole when complete, as :func:`generate` does. The report's ``rows`` are those
    of the whole root."""
    if days < 1:
        raise ValueError("days must be >= 1")
    config = root_config(root)
    grown = replace(
        config,
        extra_days=config.extra_days + days,
        workers=config.workers if workers is None else workers,
    )
    return generate(root, grown, progress)


def generate(out: Path, config: GeneratorConfig, progress: bool = True) -> GenerationReport:
    """Simulate ``config`` and write every contract table under ``out``.

    Layout: ``out/<table>/dt=YYYY-MM-DD/part-<block>.parquet`` for the event tables and
    ``applications`` (``dt`` = local date of the row's timestamp, not stored in the file);
    ``out/<table>/part-<block>.parquet`` for ``users``, ``bureau_snapshots``, ``repayments``
    and ``_truth``. Every file has exactly ``data.contract.TABLES[name].schema``.

    Period: ``[start, cut)`` in local time, ``cut`` being ``start + months`` plus
    ``extra_days`` (:attr:`GeneratorConfig.cut`); no timestamp (events, applications,
    ``registered_at``, ``paid_at``) is at or after it, no user acts before ``registered_at``.
    Repayment schedules list every installment, including those due after the cut (unpaid
    there). ``out/_generator.json`` records the config, so :func:`append_days` can continue
    the world.

    Determinism: block ``b`` (users ``b*block_users`` ...) draws from
    ``SeedSequence(seed).spawn(n_blocks)[b]``; rows are sorted (local day, user, time) before
    ids are numbered, so the same config gives byte-identical files.

    Atomicity (replace only when complete): everything is written into a hidden temporary
    sibling ``.<name>.tmp-*`` and moved into place by a rename only after every block
    succeeded. If ``out`` already exists it is replaced at that moment, but only when it is
    empty or holds nothing but contract table folders (a previous raw output); anything else
    raises :class:`FileExistsError` before any work. A failed or killed run leaves ``out``
    untouched (a killed run may leave the hidden temporary folder behind; it is safe to
    delete).
    """
    out = Path(out)
    if not _replaceable(out):
        raise FileExistsError(
            f"{out} exists and is not a previous generator output (only contract table "
            "folders may be replaced); choose another --out or remove it"
        )
    t_start = time.perf_counter()
    tl = Timeline.build(config.start, config.horizon_months, config.timezone)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    rows: dict[str, int] = dict.fromkeys(TABLES, 0)
    files = 0
    active_months = 0.0
    bar = None
    try:
        children = np.random.SeedSequence(config.seed).spawn(config.n_blocks)
        bar = _progress(progress, config.n_blocks)
        workers = max(1, min(config.workers, config.n_blocks))

        def collect(result: BlockResult) -> None:
            nonlocal files, active_months
            for k, v in result.rows.items():
                rows[k] += v
            files += result.files
            active_months += result.active_user_months
            if bar is not None:
                bar[0].update(bar[1], advance=1, rows=sum(rows.values()))

        if workers == 1:
            for b, ss in enumerate(children):
                collect(run_block(b, ss, tmp, config))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [
                    pool.submit(run_block, b, ss, tmp, config) for b, ss in enumerate(children)
                ]
                try:
                    for fut in as_completed(futures):
                        collect(fut.result())
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
        files += finish_output(tmp, tl)
        write_manifest(tmp, config)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar[0].stop()
    seconds = time.perf_counter() - t_start
    event_rows = sum(rows[t] for t in EVENT_TABLES)
    return GenerationReport(
        out=out,
        config=config,
        rows=rows,
        seconds=seconds,
        event_rows=event_rows,
        events_per_second=event_rows / seconds if seconds > 0 else 0.0,
        rows_per_second=sum(rows.values()) / seconds if seconds > 0 else 0.0,
        active_user_months=active_months,
        events_per_active_user_month=event_rows / active_months if active_months else 0.0,
        files=files,
    )


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("generating blocks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    bar.start()
    task = bar.add_task("generate", total=total, rows=0)
    return bar, task

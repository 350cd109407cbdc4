"""One user block: simulate its world and write its part of every table.

Blocks are independent (communities and friendships stay inside a block, and each block
has its own outsiders, numbered apart from every other block's), so they can run in separate
worker processes; block ``b`` always draws from the same seed-sequence child and writes only
files named ``part-<b>.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import tables as T
from .config import GeneratorConfig
from .population import build_population
from .timeline import Timeline
from .writer import PartWriter, write_empty_tables

STREAMS = (
    "population",
    "users",
    "applications",
    "bureau_snapshots",
    "bureau_inquiries",
    "transactions",
    "consumption",
    "social",
    "app_events",
    "outsiders",  # last: spawning one more child leaves the seeds of the others as they were
)


@dataclass
class BlockResult:
    block: int
    rows: dict[str, int]
    files: int
    active_user_months: float


def run_block(
    b: int, ss: np.random.SeedSequence, root: Path, config: GeneratorConfig
) -> BlockResult:
    """Simulate block ``b`` (seeded by ``ss``) and write its files under ``root``."""
    tl = Timeline.build(config.start, config.months, config.timezone)
    rngs = dict(
        zip(STREAMS, (np.random.default_rng(s) for s in ss.spawn(len(STREAMS))), strict=True)
    )
    first = b * config.block_users
    n = min(config.block_users, config.users - first)
    writer = PartWriter(root, tl)
    try:
        pop = build_population(b, first, n, tl, config, rngs["population"], rngs["outsiders"])
        writer.write(T.users(rngs["users"], pop), b)
        apps, reps, truth, ev = T.applications(rngs["applications"], pop, tl, config)
        for chunk in (apps, reps, truth):
            writer.write(chunk, b)
        del apps, reps, truth
        writer.write(T.bureau_snapshots(rngs["bureau_snapshots"], pop, tl), b)
        writer.write(T.bureau_inquiries(rngs["bureau_inquiries"], pop, tl, ev), b)
        writer.write(T.transactions(rngs["transactions"], pop, tl, config, ev), b)
        writer.flush()
        writer.write(T.consumption(rngs["consumption"], pop, tl, config), b)
        writer.flush()
        writer.write(T.social(rngs["social"], pop, tl, config), b)
        writer.write(T.app_events(rngs["app_events"], pop, tl, config, ev), b)
        writer.flush()
        active = float(pop.frac.sum())
    finally:
        writer.close()
    return BlockResult(b, dict(writer.rows), writer.files, active)


def finish_output(root: Path, tl: Timeline) -> int:
    """Give every table a folder (and an empty typed file if it got no rows)."""
    return write_empty_tables(root, tl)

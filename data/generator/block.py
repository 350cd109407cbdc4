"""One user block: simulate its world and write its part of every table.

Blocks are independent (communities and friendships stay inside a block, and each block
has its own outsiders, numbered apart from every other block's), so they can run in separate
worker processes; block ``b`` always draws from the same seed-sequence child and writes only
files named ``part-<b>.parquet``.

Each family of tables reads the world through its own view (:func:`.population.family_view`,
the family's signal knob), and the bureau's tables keep only the users it has a file on
(``bureau_coverage``). What the views and the coverage draw comes from streams of their own,
used only when a knob is not at its default, so the default world's rows do not depend on
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import tables as T
from .config import GeneratorConfig
from .population import build_population, family_view
from .reveal import Cut, before, loans_before
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
    "outsiders",  # after the others: spawning more children leaves the seeds of the others
    # the scenario knobs' own streams, drawn from only when a knob is not at its default
    "bureau_coverage",
    "bureau_view",
    "transactions_view",
    "consumption_view",
    "social_view",
    "app_view",
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
    tl = Timeline.build(config.start, config.horizon_months, config.timezone)
    cut = Cut.of(config.cut, tl)
    rngs = block_streams(ss)
    first = b * config.block_users
    n = min(config.block_users, config.users - first)
    writer = PartWriter(root, tl)

    def write(chunk: T.Chunk) -> None:
        writer.write(before(chunk, cut), b)

    try:
        pop = build_population(b, first, n, tl, config, rngs["population"], rngs["outsiders"])
        write(T.users(rngs["users"], pop))
        apps, reps, truth, ev = T.applications(rngs["applications"], pop, tl, config)
        for chunk in loans_before(apps, reps, truth, cut):
            writer.write(chunk, b)
        del apps, reps, truth
        view = family_view(pop, config.bureau_signal, rngs["bureau_view"])
        filed = bureau_files(rngs["bureau_coverage"], pop.n, config.bureau_coverage)
        snapshots = T.bureau_snapshots(rngs["bureau_snapshots"], view, tl)
        write(T.of_users(snapshots, pop.first_user, filed))
        inquiries = T.bureau_inquiries(rngs["bureau_inquiries"], view, tl, ev)
        write(T.of_users(inquiries, pop.first_user, filed))
        del view, snapshots, inquiries
        view = family_view(pop, config.transactions_signal, rngs["transactions_view"])
        write(T.transactions(rngs["transactions"], view, tl, config, ev))
        writer.flush()
        view = family_view(pop, config.consumption_signal, rngs["consumption_view"])
        write(T.consumption(rngs["consumption"], view, tl, config))
        writer.flush()
        view = family_view(pop, config.social_signal, rngs["social_view"])
        write(T.social(rngs["social"], view, tl, config))
        view = family_view(pop, config.app_signal, rngs["app_view"])
        write(T.app_events(rngs["app_events"], view, tl, config, ev))
        del view
        writer.flush()
        active = float(pop.frac[:, : tl.month_of_day(cut.day)].sum())
    finally:
        writer.close()
    return BlockResult(b, dict(writer.rows), writer.files, active)


def block_streams(ss: np.random.SeedSequence) -> dict[str, np.random.Generator]:
    """The random streams of the block seeded by ``ss``, by name (:data:`STREAMS`)."""
    children = ss.spawn(len(STREAMS))
    return dict(zip(STREAMS, (np.random.default_rng(s) for s in children), strict=True))


def bureau_files(rng: np.random.Generator, n: int, coverage: float) -> np.ndarray | None:
    """Which of the block's ``n`` users the bureau has a file on (None: every one)."""
    return None if coverage >= 1.0 else rng.random(n) < coverage


def finish_output(root: Path, tl: Timeline) -> int:
    """Give every table a folder (and an empty typed file if it got no rows)."""
    return write_empty_tables(root, tl)

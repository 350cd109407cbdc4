"""Benchmark of the synthetic generator: wall time, rows per table, events/s, peak RSS.

    python tests/bench/bench_generate.py --users 1000000 --months 12 --out /tmp/bench_raw

Prints a Markdown table row for ``tests/bench/RESULTS.md`` ("Generator"). Peak RSS is the
maximum resident set of this process and of any worker process (``getrusage``), sampled
as well from /proc so that concurrent workers are summed. ``--keep`` keeps the output;
by default it is deleted afterwards (disk is limited).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import threading
import time
from datetime import date
from pathlib import Path

from data.contract import TABLES
from data.generator import GeneratorConfig, generate


def _tree_rss_kib() -> int:
    """Sum of VmRSS of this process and its children (Linux /proc)."""
    me = os.getpid()
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if int(pid) != me and ppid != me:
                continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    ap.add_argument("--block-users", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()

    cfg = GeneratorConfig(
        users=args.users,
        months=args.months,
        seed=args.seed,
        start=args.start,
        block_users=args.block_users,
        workers=args.workers,
    )
    peak_sampled = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_sampled
        while not stop.is_set():
            peak_sampled = max(peak_sampled, _tree_rss_kib())
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    report = generate(args.out, cfg, progress=args.progress)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_gib = max(own, kids, peak_sampled) / 1024**2
    disk = sum(p.stat().st_size for p in args.out.rglob("*.parquet")) / 1024**3

    print(f"config: {cfg}")
    py = platform.python_version()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python {py}")
    for name in TABLES:
        print(f"  {name:18s} {report.rows[name]:>14,}")
    print(
        f"wall {wall:.1f} s, rows {report.total_rows:,}, event rows {report.event_rows:,}, "
        f"events/s {report.events_per_second:,.0f}, events per active user-month "
        f"{report.events_per_active_user_month:.1f}, files {report.files:,}, "
        f"disk {disk:.2f} GiB, peak RSS {peak_gib:.2f} GiB"
    )
    print()
    print(
        "| users | months | block | workers | wall s | total rows | event rows | events/s "
        "| ev/active user-month | files | disk GiB | peak RSS GiB |"
    )
    print(
        f"| {cfg.users:,} | {cfg.months} | {cfg.block_users:,} | {cfg.workers} | {wall:.1f} "
        f"| {report.total_rows:,} | {report.event_rows:,} | {report.events_per_second:,.0f} "
        f"| {report.events_per_active_user_month:.1f} | {report.files:,} | {disk:.2f} "
        f"| {peak_gib:.2f} |"
    )
    if not args.keep:
        shutil.rmtree(args.out)


if __name__ == "__main__":
    main()

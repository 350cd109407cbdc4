"""Cost of the data gate against the feature build, side by side on the same raw root.

    .venv/bin/python tests/bench/bench_gate.py --raw DIR [--as-of YYYY-MM-DD]
        [--stages features,gate-polars,gate] [--repeat N] [--code OTHER_CHECKOUT]
        [--reload-day TABLE/dt=YYYY-MM-DD]

Each stage runs in its own process (so peak RSS is its own), one after the other, round robin
when repeated:

- ``gate``: the whole data gate (contract check of every file footer, every rule on every row
  in Polars, Great Expectations on the samples, statistical expectations);
- ``gate-polars``: the Polars engine alone (what scales with the data);
- ``features``: the feature build on the same rows, as the pipeline collects it
  (``features.build.feature_table``).

``--code`` adds each gate stage run with another checkout's code (``PYTHONPATH``), so that two
versions are measured side by side on the same root (``gate-polars@other``).
``--reload-day`` is the fault of a day loaded twice: the day's files of that table are copied
beside themselves for the run (and removed after), as a re-run export job does.

Prints the rows read and one Markdown row per run: seconds, peak RSS, and the ratio to the
feature build (when it ran).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

TZ = "Asia/Shanghai"
RELOADED = "part-reloaded-{}.parquet"


def stage(name: str, raw: Path, as_of: date, out: Path) -> dict[str, float]:
    from data.config import LabelSettings, ValidationSettings

    started = time.perf_counter()
    if name == "gate":
        from expectations.gate import run_data_gate

        run_data_gate(raw, out, ValidationSettings(), TZ, as_of)
    elif name == "gate-polars":
        from data.validation import run_gate

        run_gate(raw, out, ValidationSettings(), TZ, as_of)
    else:
        from data.asof import build_view
        from data.readers import scan_raw
        from features.base import FeatureSettings
        from features.build import feature_table

        view = build_view(scan_raw(raw), as_of, TZ)
        feature_table(view.kept, FeatureSettings(), TZ, LabelSettings())
    seconds = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"seconds": seconds, "peak_rss_gib": peak_gib}


def rows_read(raw: Path) -> int:
    import polars as pl

    from data.readers import scan_raw

    return sum(frame.select(pl.len()).collect().item() for frame in scan_raw(raw).values())


@contextmanager
def reloaded(raw: Path, day: str | None) -> Iterator[int]:
    """The day's files copied beside themselves while the block runs; yields the files copied."""
    if day is None:
        yield 0
        return
    originals = sorted((raw / day).glob("*.parquet"))
    copies = [path.with_name(RELOADED.format(i)) for i, path in enumerate(originals)]
    try:
        for original, copy in zip(originals, copies, strict=True):
            shutil.copy(original, copy)
        yield len(copies)
    finally:
        for copy in copies:
            copy.unlink(missing_ok=True)


def run_stage(name: str, args: argparse.Namespace, code: Path | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--raw", str(args.raw), "--as-of", str(args.as_of)]
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    started = time.perf_counter()
    done = subprocess.run([*command, "--stage", name], capture_output=True, text=True, env=env)
    if done.returncode != 0:  # a stage killed for memory is a result, not the bench's end
        died = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        return {"seconds": time.perf_counter() - started, "peak_rss_gib": math.nan, "died": died}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat)
    parser.add_argument("--stages", default="features,gate-polars,gate")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--code", type=Path, help="another checkout to run the gate stages with")
    parser.add_argument("--reload-day", help="TABLE/dt=YYYY-MM-DD: that day loaded twice")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_of is None:
        from data.asof import default_as_of
        from data.readers import scan_raw

        args.as_of = default_as_of(scan_raw(args.raw), TZ)
    if args.stage:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(stage(args.stage, args.raw, args.as_of, Path(tmp) / "gate")))
        return
    runs: list[tuple[str, dict[str, float]]] = []
    stages = args.stages.split(",")
    with reloaded(args.raw, args.reload_day) as copied:
        read = rows_read(args.raw)
        for _ in range(args.repeat):
            for name in stages:
                runs.append((name, run_stage(name, args, None)))
                if args.code is not None and name != "features":
                    runs.append((f"{name}@{args.code.name}", run_stage(name, args, args.code)))
    base = next((r["seconds"] for name, r in runs if name == "features"), None)
    fault = f", {args.reload_day} loaded twice ({copied} files)" if args.reload_day else ""
    print(f"raw: {args.raw}, as of {args.as_of}, {read:,} rows read{fault}")
    print("| stage | seconds | x feature build | peak RSS GiB |")
    print("| --- | --- | --- | --- |")
    for name, r in runs:
        ratio = f"{r['seconds'] / base:.2f}" if base else "-"
        peak = f"died ({r['died']})" if "died" in r else f"{r['peak_rss_gib']:.2f}"
        print(f"| {name} | {r['seconds']:.1f} | {ratio} | {peak} |")


if __name__ == "__main__":
    main()

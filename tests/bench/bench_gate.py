"""Cost of the data gate against the feature build, side by side on the same raw root.

    .venv/bin/python tests/bench/bench_gate.py --raw DIR [--as-of YYYY-MM-DD]

Each stage runs in its own process (so peak RSS is its own), one after the other:

- ``gate``: the whole data gate (contract check of every file footer, every rule on every row
  in Polars, Great Expectations on the samples, statistical expectations);
- ``gate-polars``: the Polars engine alone (what scales with the data);
- ``features``: the feature build on the same rows, as the pipeline collects it
  (``features.build.feature_table``).

Prints one Markdown row per stage: seconds, peak RSS, and the ratio to the feature build.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

TZ = "Asia/Shanghai"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat)
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
    results = {}
    for name in ("features", "gate-polars", "gate"):
        command = [sys.executable, __file__, "--raw", str(args.raw), "--as-of", str(args.as_of)]
        done = subprocess.run(
            [*command, "--stage", name], capture_output=True, text=True, check=True
        )
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results["features"]["seconds"]
    print(f"raw: {args.raw}, as of {args.as_of}")
    print("| stage | seconds | x feature build | peak RSS GiB |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['seconds']:.1f} | {r['seconds'] / base:.2f} | {r['peak_rss_gib']:.2f} |"
        )


if __name__ == "__main__":
    main()

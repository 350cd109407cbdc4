"""Running ``pdflow validate`` and ``pdflow features`` under a memory cap, and checking their
outcome against the contract's verdict (:func:`corruption.expected`).

Shared by the fuzz suite (``test_gate_fuzz.py``) and the fixed cases
(``test_gate_regressions.py``).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
from corruption import Root, Unusable, Verdict, expected, over_limit_by_repeats, rows_on_disk

from data.generator import GeneratorConfig
from flows.settings import load_settings

# The fuzz suite's root: small, so that an example costs about the processes' start.
FUZZ_BASE = GeneratorConfig(users=200, months=4, seed=3, start=date(2025, 1, 1))
REPO = Path(__file__).resolve().parents[1]
PDFLOW = Path(sys.executable).with_name("pdflow")
GATE = load_settings(REPO / "mlflow.yml").validation
SHARE, MISMATCH = GATE.max_set_aside_share, GATE.max_partition_mismatch_share
# The memory cap: a multiple of what a clean run of the same root needs (see run_pdflow).
CAP_FACTOR = 4
TIMEOUT_S = 300
CRASH_MARKS = {
    "Traceback (most recent call last)": None,  # named by the exception's type
    "panicked at": "RustPanic",
    "memory allocation of": "MemoryCap",
    "MemoryError": "MemoryCap",
    "Segmentation fault": "Segfault",
}


@dataclass(frozen=True)
class Run:
    """One finished command: exit code, output, memory high-water marks, time."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes
    peak_data: int  # bytes of private writable memory (VmData), polled
    seconds: float
    cap: int | None

    def describe(self) -> str:
        cap = f"{self.cap / 2**20:,.0f} MiB" if self.cap else "none"
        tail = "\n".join(self.stderr.strip().splitlines()[-12:])
        return (
            f"`pdflow {' '.join(self.args)}` exit {self.returncode} in {self.seconds:.1f} s, "
            f"peak RSS {self.peak_rss / 2**20:,.0f} MiB, VmData {self.peak_data / 2**20:,.0f} "
            f"MiB (cap {cap}); stderr tail:\n{tail}"
        )


def vm_data(pid: int) -> int:
    """A live process's private writable memory (VmData), in bytes; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_pdflow(*args: str, cap: int | None, timeout: float = TIMEOUT_S) -> Run:
    """Run the CLI in a subprocess, its private writable memory capped at `cap` bytes.

    The cap is RLIMIT_DATA, not RLIMIT_AS. A clean `pdflow validate` of the 200-user root of
    the fuzz suite, measured on the 2-core VM: peak RSS about 390 MiB; address space
    (VmPeak) 2.9 GiB; private writable mappings (VmData) 1.6 GiB, 1 GiB of which is one
    untouched arena that pyarrow's mimalloc pool reserves up front (16 MiB of it resident).

    - RLIMIT_AS counts all of the address space: shared libraries, memory-mapped Parquet
      files, glibc's 64 MiB per-thread arena reservations (PROT_NONE) and every thread's
      stack. What a run needs then grows with the number of cores (threads), not the data.
    - RLIMIT_DATA (Linux >= 4.7) counts private writable mappings only: the heaps of Python,
      jemalloc (Polars) and mimalloc (pyarrow), and thread stacks: the memory a process can
      fill. Under a cap between about 1.1 and 1.7 GiB a clean run fails at random
      (mimalloc's 1 GiB reservation fits, then a thread stack or an allocation does not), so
      the cap is a multiple of the clean run's peak VmData, the currency the limit counts
      in, not of its RSS: CAP_FACTOR x peak VmData, about 6.5 GiB here.

    Past the cap an allocation fails: Polars aborts ("memory allocation of N bytes failed",
    SIGABRT), Python raises MemoryError; both are failures. Peak VmData (polled every
    20 ms) and peak RSS (from wait4) are reported with every run.
    """

    def limit() -> None:
        if cap:
            resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PDFLOW_", "MLFLOW_"))}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(PDFLOW), *args], stdout=out, stderr=err, preexec_fn=limit, env=env, cwd=REPO
        )
        peak_data = 0
        while True:
            peak_data = max(peak_data, vm_data(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                proc.send_signal(signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Run(
            args=args,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            peak_rss=usage.ru_maxrss * 1024,
            peak_data=peak_data,
            seconds=seconds,
            cap=cap,
        )


class Crash(AssertionError):
    """A traceback, a panic, a signal or a timeout. Each kind gets its own subclass (named by
    the exception type), so that hypothesis tells them apart and shrinks each one."""


_CRASHES: dict[str, type[Crash]] = {}


EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s|$)")


def crash_kind(run: Run) -> str | None:
    """What crashed, if anything: the exception type of a traceback (its last line
    ``module.Type: message``), a Rust panic, the memory cap, a signal or the timeout."""
    if run.seconds >= TIMEOUT_S:
        return "Timeout"
    for mark, kind in CRASH_MARKS.items():
        if mark not in run.stderr:
            continue
        if kind is None:
            found = [m[1] for m in map(EXCEPTION_LINE.match, run.stderr.splitlines()) if m]
            kind = found[-1].rsplit(".", 1)[-1] if found else "Traceback"
        return kind
    if run.returncode < 0:
        return f"Signal{-run.returncode}"
    return None


def assert_no_crash(run: Run) -> None:
    kind = crash_kind(run)
    if kind is None:
        return
    name = "".join(ch for ch in kind if ch.isalnum()) or "Unknown"
    error = _CRASHES.setdefault(name, type(f"Crash{name}", (Crash,), {}))
    raise error(f"{kind}: " + run.describe())


def names_cause(message: str, cause: Unusable, raw: Path) -> bool:
    """Whether a stop message names the cause's table, column and one of its files."""
    if f"table {cause.table}" not in message:
        return False
    if cause.column and f"column {cause.column}" not in message:
        return False
    if not cause.files:
        return str(raw / cause.table) in message
    return any(str(raw / cause.table / file) in message for file in cause.files)


def stopped_tables(stops: list[str], words: str) -> set[str]:
    return {s.split(":")[0].removeprefix("table ") for s in stops if words in s}


def check_validate(verdict: Verdict, run: Run, raw: Path, report_path: Path) -> bool:
    """Assert the gate's outcome against the verdict; True when the data can be used."""
    assert_no_crash(run)
    assert run.returncode in verdict.exit_codes, (
        f"expected exit {sorted(verdict.exit_codes)}; " + run.describe()
    )
    if run.returncode == 2:
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, "more than one line on stderr: " + run.describe()
        assert any(names_cause(lines[0], c, raw) for c in verdict.unusable), (
            f"the message names none of {verdict.unusable}: " + run.describe()
        )
        return False
    assert report_path.exists(), "no JSON report: " + run.describe()
    report = json.loads(report_path.read_text())
    tables = report["tables"]
    for name, count in tables.items():
        assert count["rows_read"] == count["rows_kept"] + count["rows_set_aside"], name
        assert count["rows_read"] == rows_on_disk(raw, name), name
    if verdict.as_of is None:
        return False
    assert report["as_of"] == verdict.as_of.isoformat()
    assert set(tables) == set(verdict.rows_read)
    for name, count in tables.items():
        assert count["rows_read"] == verdict.rows_read[name], name
        assert count["rows_set_aside"] == verdict.set_aside(name), (
            f"{name}: set aside {count['reasons']}, the contract says {verdict.reasons[name]}"
        )
        assert count["reasons"] == verdict.reasons[name], (
            f"{name}: reasons {count['reasons']}, the contract says {verdict.reasons[name]}"
        )
    stops = report["stops"]
    assert stopped_tables(stops, "break the contract") == verdict.contract_stops, stops
    assert stopped_tables(stops, "time zone") == verdict.partition_stops, stops
    assert stopped_tables(stops, "no usable rows") == verdict.empty_stops, stops
    for name in sorted(verdict.contract_stops):
        if not over_limit_by_repeats(verdict, name, SHARE):
            continue
        (stop,) = [s for s in stops if s.startswith(f"table {name}:") and "contract" in s]
        assert "loaded twice" in stop, f"{name}: over the limit by repeated rows, but: {stop}"
        files = verdict.repeat_files[name]
        assert any(Path(f).name in stop for f in files), f"names none of {sorted(files)}: {stop}"
    return run.returncode == 0


def check_features(verdict: Verdict, run: Run, out: Path) -> None:
    """One feature row per kept application (all kept ones are before the as-of day)."""
    assert_no_crash(run)
    assert run.returncode == 0, run.describe()
    built = pl.scan_parquet(out / "**/*.parquet").select("application_id").collect()
    assert built["application_id"].is_unique().all()
    assert set(built["application_id"]) == verdict.kept_applications, (
        f"{built.height} feature rows for {len(verdict.kept_applications)} kept applications"
    )


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    validate: Run
    features: Run | None


def run_case(root: Root, as_of: date | None, work: Path, cap: int) -> Outcome:
    """Write `root` under `work`, validate it (and build features where the gate passes),
    and assert the contract's outcome for it."""
    from corruption import write_root

    raw = work / "raw"
    write_root(root, raw)
    verdict = expected(root, as_of, SHARE, MISMATCH)
    day = ["--as-of", as_of.isoformat()] if as_of else []
    report = work / "report.json"
    workspace = ["--workspace", str(work / "ws")]
    run = run_pdflow(
        *workspace, "validate", "--raw", str(raw), *day, "--json", str(report), cap=cap
    )
    built = None
    if check_validate(verdict, run, raw, report):
        out = work / "features"
        built = run_pdflow(
            *workspace, "features", "--raw", str(raw), *day, "--out", str(out), cap=cap
        )
        check_features(verdict, built, out)
    return Outcome(verdict, run, built)


@dataclass(frozen=True, repr=False)
class Base:
    """A generated root held in memory, and the memory cap measured on a clean run of it."""

    root: Root
    raw: Path
    clean: Run
    cap: int

    def __repr__(self) -> str:
        return (
            f"Base({self.root.tables['users'].height} users, clean run peak VmData "
            f"{self.clean.peak_data / 2**20:,.0f} MiB, cap {self.cap / 2**20:,.0f} MiB)"
        )


def measure_base(root: Root, work: Path) -> Base:
    """Write `root` clean, run `pdflow validate` on it with no cap, and set the cap at
    CAP_FACTOR x its peak VmData."""
    from corruption import write_root

    raw = work / "clean"
    write_root(root, raw)
    clean = run_pdflow(
        "--workspace", str(work / "ws"), "validate", "--raw", str(raw),
        "--json", str(work / "clean.json"), cap=None,
    )  # fmt: skip
    return Base(root=root, raw=raw, clean=clean, cap=CAP_FACTOR * max(clean.peak_data, 1))

"""The `pdflow` command line.

Commands and flags are a public interface: keep them stable. Errors in the input (a raw root
that breaks the contract, too little data for the split, a bad setting) end with one clear
message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from data.generator.config import SCENARIOS, GeneratorConfig
from data.readers import ContractError
from expectations.gate import DataGateStop
from flows.settings import Settings, load_settings
from models.errors import ModelInputError, ModelNotFound, NoUsableModel, RegistryError
from models.split import SplitError

if TYPE_CHECKING:
    from flows.demo import DemoDay

app = typer.Typer(
    name="pdflow",
    help="Feature engineering and PD-model training for micro-loan default risk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

DateOption = Annotated[
    datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"], help="A local calendar date, YYYY-MM-DD", show_default=False
    ),
]


# OSError covers paths that exist, are missing or cannot be written: the user's to fix.
USER_ERRORS = (
    ContractError,
    SplitError,
    OSError,
    ValidationError,
    DataGateStop,
    ModelNotFound,
    ModelInputError,
    NoUsableModel,
    RegistryError,
)


class HideUserErrorTracebacks(logging.Filter):
    """Prefect logs every failed task with its traceback; for bad input, the message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], USER_ERRORS):
            record.exc_info = None
            record.exc_text = None
        return True


def hide_user_error_tracebacks() -> None:
    for handler in logging.getLogger("prefect").handlers + logging.getLogger().handlers:
        handler.addFilter(HideUserErrorTracebacks())


ModelUri = Annotated[
    str | None, typer.Option(help="Model URI (default: models:/<registered name>@champion)")
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn problems with the user's input into one clear message and exit code 2."""
    try:
        yield
    except DataGateStop as err:
        errors.print(f"[bold red]stopped:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    except (
        ContractError,
        SplitError,
        OSError,
        ModelNotFound,
        ModelInputError,
        NoUsableModel,
        RegistryError,
    ) as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as err:
        errors.print(f"[bold red]invalid settings:[/] {err}", highlight=False)
        raise typer.Exit(2) from None


def flow_setup(ctx: typer.Context, raw: Path | None, **overrides: Any) -> tuple[Settings, Path]:
    """What a command that runs a flow does first: the settings, the raw root (default:
    ``<workspace>/raw``) checked to exist, Prefect's local state pointed into the workspace."""
    settings = _settings(ctx, **overrides)
    root = raw or settings.raw_dir
    if not root.is_dir():
        raise FileNotFoundError(
            f"raw root {root} does not exist (write one with `pdflow generate --out DIR`)"
        )
    configure_runtime(settings)
    return settings, root


def _settings(ctx: typer.Context, **overrides: Any) -> Settings:
    options = ctx.obj or {}
    return load_settings(options.get("config"), workspace=options.get("workspace"), **overrides)


def configure_runtime(settings: Settings) -> None:
    """Point Prefect's local state into the workspace, before Prefect is imported."""
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    # A cold ephemeral server takes ~13 s on 2 cores; Prefect's default timeout is 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@app.callback()
def options(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            envvar="PDFLOW_WORKSPACE",
            help="Folder for everything a run writes (features, reports, Prefect state)",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(envvar="PDFLOW_CONFIG", help="Settings file (default: mlflow.yml)"),
    ] = None,
) -> None:
    """Feature engineering and PD-model training for micro-loan default risk."""
    # Paths given on the command line are relative to where the user stands.
    ctx.obj = {"workspace": workspace and workspace.resolve(), "config": config}


@app.command()
def generate(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Raw root to write (replaced when complete)")],
    users: Annotated[int | None, typer.Option(min=1, help="Number of users")] = None,
    months: Annotated[int | None, typer.Option(min=1, help="Months simulated")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    start: DateOption = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="A preset world (default: generator.scenario in the settings): "
            f"{', '.join(SCENARIOS)}. Values set in the settings or by other flags win over "
            "the preset's",
            show_default=False,
        ),
    ] = None,
    reserve_months: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Months the world runs past the period, for --append-days later "
            "(default: generator.reserve_months)",
            show_default=False,
        ),
    ] = None,
    append_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Extend the existing root --out by N local days of its own world (new logs, "
            "applications, decisions and the repayments that come due); the world flags "
            "cannot be given with it",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write synthetic raw logs of a simulated lender, in the raw-log contract."""
    from data.generator import append_days as run_append
    from data.generator import generate as run_generator

    chosen = {"users": users, "months": months, "seed": seed, "start": start and start.date()}
    chosen |= {"scenario": scenario, "reserve_months": reserve_months}
    with user_errors():
        if append_days is not None:
            given = [f"--{k.replace('_', '-')}" for k, v in chosen.items() if v is not None]
            if given:
                raise typer.BadParameter(
                    f"{', '.join(given)} cannot change the world of an existing root",
                    param_hint="--append-days",
                )
            try:
                report = run_append(out, append_days, progress=sys.stderr.isatty())
            except ValueError as err:
                raise typer.BadParameter(str(err), param_hint="--append-days") from None
        else:
            settings = _settings(ctx, generator=chosen)
            config = generator_config(settings)
            report = run_generator(out, config, progress=sys.stderr.isatty())
    config = report.config
    world = (
        f"the {config.scenario} world, {config.users:,} users, local days "
        f"{config.start} to {config.cut - timedelta(days=1)}"
    )
    table = Table("table", "rows", title=f"Wrote {out}: {world}")
    for name, rows in report.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"{report.event_rows:,} events in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f} events/s)"
    )


def generator_config(settings: Settings) -> GeneratorConfig:
    """The generator's config from the settings, in the contract's time zone."""
    return replace(settings.generator, timezone=settings.contract.timezone)


def run_gate(settings: Settings, raw: Path, as_of: datetime | None) -> tuple[date, Any]:
    """The data gate as of `as_of` (default: the day after the latest record): the day and
    the outcome; :class:`DataGateStop`, carrying the outcome, when it says stop."""
    from data.asof import default_as_of
    from data.readers import scan_raw
    from expectations.gate import gate_or_stop

    tz = settings.contract.timezone
    day = as_of.date() if as_of else default_as_of(scan_raw(raw), tz)
    out = settings.run_dir(day.isoformat()) / "gate"
    return day, gate_or_stop(raw, out, settings.validation, tz, day)


@app.command()
def validate(
    ctx: typer.Context,
    raw: Annotated[Path, typer.Option(help="Raw root to validate")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Validate what was recorded before this local day (default: day after the "
            "latest record)",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the machine-readable report here", show_default=False),
    ] = None,
) -> None:
    """Run the data gate alone: exit 0 when the data can be used (rows may be set aside)."""
    from data.storage import write_text_atomic

    def report(outcome: Any) -> None:
        if json_out:
            write_text_atomic(json.dumps(outcome.as_dict(), indent=2, sort_keys=True), json_out)
        print_gate(outcome)

    with user_errors():
        try:
            _, outcome = run_gate(_settings(ctx), raw, as_of)
        except DataGateStop as stop:
            report(stop.outcome)
            raise
        report(outcome)


@app.command()
def features(
    ctx: typer.Context,
    raw: Annotated[Path, typer.Option(help="Raw root to build features from")],
    out: Annotated[Path, typer.Option(help="Folder for the feature table (replaced as a whole)")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Every application applied before this local day, on what was recorded before "
            "it (default: day after the latest record)",
            show_default=False,
        ),
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Keep OUT's rows and add only applications it lacks (rebuilt if OUT was built "
            "with other settings or another raw root)",
        ),
    ] = False,
    users_on: Annotated[
        datetime | None,
        typer.Option(
            "--users-on",
            formats=["%Y-%m-%d"],
            help="Instead of applications: every user with any activity in the "
            "features.active_days days before this local day, on what was recorded before it",
            show_default=False,
        ),
    ] = None,
    loans_on: Annotated[
        datetime | None,
        typer.Option(
            "--loans-on",
            formats=["%Y-%m-%d"],
            help="Instead of applications: every loan on book at the start of this local day, "
            "on what was recorded before it",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Build the point-in-time feature table after the data gate; write it as Parquet.

    One row per application applied before the as-of day (approved or not), keyed by
    application_id, with user_id, partitioned by month: OUT/applied_month=YYYY-MM/. With
    --loans-on D: one row per loan on book at D (keyed by its application_id); with
    --users-on D: one row per active user (keyed by user_id); both with ``cutoff``, the start
    of D, and cut there.
    """
    on_day = {"loans": loans_on, "users": users_on}
    chosen = [kind for kind, day in on_day.items() if day is not None]
    if len(chosen) > 1 or (chosen and (as_of or incremental)):
        raise typer.BadParameter(
            "give one of --as-of, --loans-on and --users-on; --incremental only with --as-of",
            param_hint="--loans-on / --users-on",
        )
    from data.validation import scan_validated
    from features import spines
    from features.build import feature_table, store_manifest, update_feature_store
    from features.store import check_replaceable, part_files, write_feature_store

    with user_errors():
        settings = _settings(ctx)
        tz = settings.contract.timezone
        check_replaceable(out)  # before the gate, not after minutes of work
        try:
            day, outcome = run_gate(settings, raw, on_day[chosen[0]] if chosen else as_of)
        except DataGateStop as stop:
            print_gate(stop.outcome)
            raise
        print_set_aside(outcome)
        tables = scan_validated(outcome.report, tz)
        source = str(raw.resolve())
        if chosen:
            kind = chosen[0]
            spine = spines.on_day(kind, day, settings.features.active_days)  # type: ignore[arg-type]
            defs, table = feature_table(tables, settings.features, tz, settings.labels, spine=spine)
            table = spines.keyed_on_day(table, kind, day, tz)  # type: ignore[arg-type]
            meta = store_manifest(settings.features, tz, settings.labels, source)
            write_feature_store(table, out, tz, {**meta, "spine": f"{kind} on {day}"}, "cutoff")
            console.print(f"Wrote {table.height:,} {kind} on {day} x {len(defs)} features to {out}")
            return
        if incremental:
            update = update_feature_store(
                tables, out, settings.features, tz, settings.labels, day.isoformat(), source
            )
            how = "rebuilt" if update.rebuilt else "appended"
            console.print(
                f"{how.capitalize()} {update.added:,} applications x {len(update.defs)} features "
                f"as of {day} in {out} ({update.stored:,} stored)"
            )
            return
        defs, table = feature_table(tables, settings.features, tz, settings.labels)
        meta = store_manifest(settings.features, tz, settings.labels, source)
        write_feature_store(table, out, tz, meta)
    console.print(
        f"Wrote {table.height:,} applications x {len(defs)} features as of {day} "
        f"to {out} ({len(part_files(out))} monthly files)"
    )


def reasons_text(reasons: dict[str, int]) -> str:
    """``reason n, ...``, the most frequent first."""
    return ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))


def print_warnings(outcome: Any) -> None:
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def print_set_aside(outcome: Any) -> None:
    """One line per table the gate set rows aside from, and the gate's warnings: a run that
    goes on still says what it left out."""
    for name, count in outcome.report.tables.items():
        if count.rows_set_aside:
            console.print(
                f"[yellow]set aside:[/] {name} {count.rows_set_aside:,} of {count.rows_read:,} "
                f"rows ({reasons_text(count.reasons)})",
                highlight=False,
            )
    print_warnings(outcome)
    if any(count.rows_set_aside for count in outcome.report.tables.values()):
        console.print(f"quarantined rows: {outcome.report.quarantine}")


def print_gate(outcome: Any) -> None:
    table = Table(
        "table", "read", "kept", "set aside", "reasons", title=f"Data gate as of {outcome.as_of}"
    )
    for name, count in outcome.report.tables.items():
        table.add_row(
            name,
            f"{count.rows_read:,}",
            f"{count.rows_kept:,}",
            f"{count.rows_set_aside:,}",
            reasons_text(count.reasons),
        )
    console.print(table)
    print_warnings(outcome)
    console.print(f"quarantined rows: {outcome.report.quarantine}")
    console.print("data can be used" if outcome.ok else "[bold red]data gate stopped[/]")


@app.command()
def score(
    ctx: typer.Context,
    raw: Annotated[Path, typer.Option(help="Raw root to score from")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Daily scoring of this local day: the day before's applications and every "
            "loan on book, with the early-warning list",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="Backtest: first local application day"),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option(
            "--to", formats=["%Y-%m-%d"], help="Backtest: last local application day (inclusive)"
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Backtest: Parquet file to write (replaced when complete). Daily: the scores "
            "folder that gets the partition dt=<day> (default: <workspace>/scores)",
            show_default=False,
        ),
    ] = None,
    model: ModelUri = None,
) -> None:
    """Score with a registered model: one day (--as-of), or the applications of a date range
    (--from/--to), each on its own point-in-time features.

    Rows carry pd, score, grade, credit_limit, price_tier, reason_codes, reasons and
    model_version. A day writes <out>/dt=<day>/: applications.parquet (the day before's),
    loans.parquet (every loan on book, re-scored, with its PD and grade at disbursal),
    early_warning.parquet (the loans whose risk moved, why, and the days to their next
    instalment) and summary.json.
    """
    if as_of is not None:
        if start is not None or end is not None:
            raise typer.BadParameter("give either --as-of or --from/--to", param_hint="--as-of")
        score_day_command(ctx, raw, as_of.date(), out, model)
        return
    if start is None or end is None or out is None:
        raise typer.BadParameter(
            "give --as-of DAY, or --from, --to and --out for a backtest", param_hint="--as-of"
        )
    if end < start:
        raise typer.BadParameter(f"{end.date()} is before --from {start.date()}", param_hint="--to")
    score_range_command(ctx, raw, start.date(), end.date(), out, model)


@app.command("backtest-warnings")
def backtest_warnings(
    ctx: typer.Context,
    raw: Annotated[Path, typer.Option(help="Raw root")],
    start: Annotated[
        datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day a list is issued")
    ],
    end: Annotated[
        datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day a list may be issued")
    ],
    every: Annotated[int, typer.Option(min=1, help="Days between two lists")] = 7,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Judge on outcomes known before this day (default: day after the latest record)",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model URI, trained as of --from or earlier (default: the champion)",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the figures as JSON", show_default=False),
    ] = None,
) -> None:
    """How early the post-loan early-warning list warns: issued every --every days from --from
    to --to, on matured loans, the share of eventual defaults warned before their first missed
    instalment and the share of warned loans that defaulted, against random lists of the same
    size."""
    from data.asof import default_as_of
    from data.readers import scan_raw
    from data.storage import write_text_atomic
    from flows.backfill_flow import days_between
    from models.scoring import backtest_warnings as backtest
    from models.scoring import load_model

    if end < start:
        raise typer.BadParameter(f"{end.date()} is before --from {start.date()}", param_hint="--to")
    with user_errors():
        settings = _settings(ctx)
        if not raw.is_dir():
            raise FileNotFoundError(f"raw root {raw} does not exist")
        tz = settings.contract.timezone
        judged = as_of.date() if as_of else default_as_of(scan_raw(raw), tz)
        loaded = load_model(
            model, settings.mlflow.tracking_uri, settings.mlflow.registered_model_name
        )
        first, last = start.date(), end.date()
        days = days_between(first, last, every)
        result = backtest(
            raw,
            days,
            loaded,
            as_of=judged,
            timezone=tz,
            validation=settings.validation,
            features=settings.features,
            labels=settings.labels,
            warning=settings.early_warning,
            gate_dir=settings.run_dir(f"backtest-warnings-{first}-{last}") / "gate",
        )
        if json_out is not None:
            write_text_atomic(json.dumps(result.as_dict(), indent=2), json_out)
    table = Table(
        "",
        "early-warning list",
        "random lists (same size)",
        title=f"Early warning with {loaded.version}: {result.days} lists {first}..{last}, "
        f"{result.loans:,} matured loans, {result.defaults:,} defaults, judged as of {judged}",
    )
    table.add_row("loans listed in time", f"{result.warned:,}", f"{result.warned:,}")
    table.add_row(
        "defaults warned before their first missed instalment",
        share(result.caught),
        share(result.random_caught),
    )
    table.add_row(
        "listed loans that defaulted", share(result.precision), share(result.random_precision)
    )
    console.print(table)


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def score_range_command(
    ctx: typer.Context, raw: Path, first: date, last: date, out: Path, model: str | None
) -> None:
    from data.storage import write_parquet_atomic
    from models.scoring import load_model, score_applications

    with user_errors():
        settings = _settings(ctx)
        if not raw.is_dir():
            raise FileNotFoundError(f"raw root {raw} does not exist")
        loaded = load_model(
            model, settings.mlflow.tracking_uri, settings.mlflow.registered_model_name
        )
        result = score_applications(
            raw,
            first,
            last,
            loaded,
            timezone=settings.contract.timezone,
            validation=settings.validation,
            features=settings.features,
            labels=settings.labels,
            gate_dir=settings.run_dir(f"score-{first}-{last}") / "gate",
        )
        scored = result.scores
        write_parquet_atomic(scored, out)
    console.print(
        f"Scored {scored.height:,} applications applied {first}..{last} with "
        f"{loaded.version} -> {out}"
    )
    print_grades(scored)
    print_unscored(result.unscored, result.quarantine)


def score_day_command(
    ctx: typer.Context, raw: Path, day: date, out: Path | None, model: str | None
) -> None:
    with user_errors():
        settings, raw = flow_setup(ctx, raw)
        from flows.score_flow import daily_score_flow

        hide_user_error_tracebacks()
        result = daily_score_flow(settings, raw, day, out, model)
    summary = result.summary
    console.print(
        f"Scored {day} with {', '.join(summary['model_version'])} -> {result.out}: "
        f"{summary['applications_scored']:,} applications of the day before, "
        f"{summary['loans_on_book']:,} loans on book, "
        f"{summary['early_warnings']:,} on the early-warning list"
    )
    print_unscored(result.unscored, result.quarantine)


def print_grades(scored: Any) -> None:
    if scored.height:
        grades = scored.group_by("grade").len().sort("grade")
        console.print("by grade: " + ", ".join(f"{g} {n:,}" for g, n in grades.iter_rows()))


def print_unscored(unscored: dict[str, int], quarantine: Path | None) -> None:
    if unscored:
        n = sum(unscored.values())
        console.print(
            f"[yellow]not scored:[/] {n:,} application{'' if n == 1 else 's'} of the range "
            f"broke the contract and {'was' if n == 1 else 'were'} set aside "
            f"({reasons_text(unscored)}): "
            f"{quarantine}/applications.parquet",
            highlight=False,
        )


@app.command()
def monitor(
    ctx: typer.Context,
    raw: Annotated[Path, typer.Option(help="Raw root")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Monitor on what was recorded before this local day (default: day after the "
            "latest record)",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write the report here (default: <workspace>/monitor/<day>.json)",
            show_default=False,
        ),
    ] = None,
    model: ModelUri = None,
) -> None:
    """Monitor the model in use: PSI of its PD and CSI of its features on recent applications
    against its training reference, AUC, KS and calibration by grade on the loans matured
    since it was trained, and a verdict (ok, warn, retrain).

    Exit code 0 for ok and warn, 1 for retrain, so that a scheduler can act on it.
    """
    with user_errors():
        settings, raw = flow_setup(ctx, raw)
        from flows.monitor_flow import daily_monitor_flow

        hide_user_error_tracebacks()
        day: date | None = as_of.date() if as_of else None
        summary = daily_monitor_flow(settings, raw, day, model, json_out)
    print_monitor(summary.report)
    console.print(f"MLflow run {summary.run_id}; report {summary.json_path}")
    if summary.report.verdict == "retrain":
        raise typer.Exit(1)


def print_monitor(report: Any) -> None:
    table = Table(
        "measure", "value", title=f"Monitor of {report.model_version} as of {report.as_of}"
    )
    table.add_row("trained as of", str(report.trained_as_of))
    table.add_row("recent applications", f"{report.applications:,}")
    if report.score_psi is not None:
        table.add_row("PSI of the PD", f"{report.score_psi:.4f}")
        shown = report.stability.tail(-1).head(5).select("column", "index").iter_rows()
        for column, value in shown:
            table.add_row(f"CSI {column}", f"{value:.4f}")
    perf = report.performance
    table.add_row("matured loans since training (bads)", f"{perf.loans:,} ({perf.bads:,})")
    if perf.auc is not None:
        trained = f" (training {report.trained_auc:.4f})" if report.trained_auc is not None else ""
        table.add_row("AUC", f"{perf.auc:.4f}{trained}")
        table.add_row("KS", f"{perf.ks:.4f}")
        table.add_row("grades failing calibration", str(perf.grades_failing))
    else:
        table.add_row("AUC", "not judged (too few matured loans or one outcome)")
    console.print(table)
    colour = {"ok": "green", "warn": "yellow", "retrain": "bold red"}[report.verdict]
    console.print(f"verdict: [{colour}]{report.verdict}[/]")
    for reason in report.reasons:
        console.print(f"  - {reason}", highlight=False)


@app.command()
def serve(
    ctx: typer.Context,
    raw: Annotated[
        Path | None, typer.Option(help="Raw root (default: <workspace>/raw)", show_default=False)
    ] = None,
) -> None:
    """Serve the scheduled deployments (nightly-retrain, daily-score, daily-monitor) against
    the Prefect server PREFECT_API_URL names, until Ctrl-C; their schedules stay active after.
    """
    with user_errors():
        api = os.environ.get("PREFECT_API_URL")
        if not api:
            errors.print(
                "[bold red]error:[/] PREFECT_API_URL is not set: start a server (`prefect "
                "server start`) and export PREFECT_API_URL=http://127.0.0.1:4200/api",
                highlight=False,
            )
            raise typer.Exit(2)
        settings, raw_root = flow_setup(ctx, raw)
        from prefect import serve as serve_deployments

        from flows.deployments import runner_deployments

        deployments = runner_deployments(settings, raw_root)
        for deployment in deployments:
            schedule = deployment.schedules[0].schedule
            console.print(
                f"{deployment.name}: {schedule.cron} ({schedule.timezone}) against {api}",
                highlight=False,
            )
        serve_deployments(*deployments, pause_on_shutdown=False, print_starting_message=False)


@app.command()
def backfill(
    ctx: typer.Context,
    start: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First date")],
    end: Annotated[
        datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last date (inclusive)")
    ],
    raw: Annotated[
        Path | None, typer.Option(help="Raw root (default: <workspace>/raw)", show_default=False)
    ] = None,
    flows: Annotated[
        str,
        typer.Option(help="Comma-separated flows, run in this order each date"),
    ] = "nightly-retrain,daily-score,daily-monitor",
) -> None:
    """Run the daily flows for each date of a range, in order, skipping dates (and flows)
    already complete; the first failure stops it, and a re-run resumes there."""
    from flows.backfill_flow import ORDER

    chosen = [name.strip() for name in flows.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ORDER))
    if unknown:
        raise typer.BadParameter(f"unknown {unknown}: choose among {', '.join(ORDER)}")
    if end < start:
        raise typer.BadParameter(f"{end.date()} is before --from {start.date()}", param_hint="--to")
    with user_errors():
        settings, raw_root = flow_setup(ctx, raw)
        from flows.backfill_flow import backfill_flow

        hide_user_error_tracebacks()
        done = backfill_flow(start.date(), end.date(), chosen, settings, raw_root)
    table = Table("date", *chosen, title="Backfill")
    for day, results in done.items():
        table.add_row(day, *(results.get(name, "") for name in chosen))
    console.print(table)


@app.command()
def demo(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, help="Days to simulate")] = 14,
    raw: Annotated[
        Path | None,
        typer.Option(
            help="Raw root the days are appended to, written first when missing "
            "(default: <workspace>/raw)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The nightly loop on the synthetic lender: each day arrives in the root, then the three
    flows run for the morning after it; one line per day."""
    from data.generator import generate as run_generator

    with user_errors():
        settings = _settings(ctx)
        root = raw or settings.raw_dir
        if not root.exists():
            config = generator_config(settings)
            run_generator(root, config, progress=sys.stderr.isatty())
        from data.generator import root_config

        config = root_config(root)
        try:
            replace(config, extra_days=config.extra_days + days)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--days") from None
        settings, root = flow_setup(ctx, root)
        from flows.demo import demo_days

        hide_user_error_tracebacks()
        columns = ("day", "applications", "gate", "challenger AUC", "promoted", "warnings")
        columns += ("monitor",)
        table = Table(*columns, title=f"{days} days on {root}")
        for night in demo_days(settings, root, days):
            cells = demo_cells(night)
            line = "  ".join(f"{name}: {cell}" for name, cell in zip(columns, cells, strict=True))
            console.print(line, highlight=False)
            table.add_row(*cells)
    console.print(table)


def demo_cells(night: DemoDay) -> list[str]:
    def shown(value: object, form: str = "{}") -> str:
        return "-" if value is None else form.format(value)

    return [
        night.day.isoformat(),
        shown(night.applications, "{:,}"),
        night.gate,
        shown(night.challenger_auc, "{:.4f}"),
        shown(None if night.promoted is None else ("yes" if night.promoted else "no")),
        shown(night.warnings, "{:,}"),
        shown(night.monitor),
    ]


@app.command()
def train(
    ctx: typer.Context,
    raw: Annotated[
        Path | None, typer.Option(help="Raw root (default: <workspace>/raw)", show_default=False)
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Train on what was recorded before this local day (default: day after the "
            "latest record)",
            show_default=False,
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(min=0, help="Optuna trials (0: base parameters only)")
    ] = None,
) -> None:
    """Run the nightly training flow once: validate, label, build features, train, register."""
    with user_errors():
        settings, raw_root = flow_setup(ctx, raw, training={"trials": trials})
        from flows.train_flow import train_flow

        hide_user_error_tracebacks()
        day: date | None = as_of.date() if as_of else None
        summary = train_flow(settings, raw_root, day)
    print_summary(summary)


def print_candidates(summary: Any) -> None:
    """The candidates side by side, and which was chosen and why."""
    if summary.candidates is None:
        return
    table = Table(
        "candidate",
        "chosen",
        "validation AUC",
        "out-of-time AUC",
        "out-of-time KS",
        "out-of-time Brier",
        title="Candidates (fitted on train, calibrated on validation; chosen on validation AUC)",
    )
    for row in summary.candidates.iter_rows(named=True):
        values = (row[k] for k in ("valid_auc", "oot_auc", "oot_ks", "oot_brier"))
        chosen = "yes" if row["chosen"] else ""
        table.add_row(row["candidate"], chosen, *(f"{v:.4f}" for v in values))
    console.print(table)
    console.print(f"Chosen: {summary.chosen}, {summary.choice}.")
    fitted = summary.fitted_on or {}
    if fitted.get("evaluated"):
        console.print(f"The model evaluated out of time was fitted on {fitted['evaluated']}.")
    if fitted.get("registered") != fitted.get("evaluated"):
        console.print(f"The registered model was fitted on {fitted['registered']}.")


def print_summary(summary: Any) -> None:
    print_candidates(summary)
    metrics = summary.metrics
    table = Table("metric", "value", title=f"{summary.chosen} model trained as of {summary.as_of}")
    shown = [
        ("out-of-time AUC", "oot_auc"),
        ("out-of-time KS", "oot_ks"),
        ("out-of-time Brier score (calibrated PD)", "oot_brier"),
        ("out-of-time expected calibration error", "oot_ece"),
        ("out-of-time bad rate", "oot_bad_rate"),
        ("out-of-time mean PD", "oot_mean_pd"),
        ("PSI of the PD, train to out-of-time", "psi_train_to_oot"),
        ("grades failing the binomial test", "oot_grades_failing_binomial_test"),
        ("baseline AUC: LightGBM, default parameters", "oot_auc_lightgbm_default"),
        ("baseline AUC: WOE logistic scorecard", "oot_auc_woe_scorecard"),
        ("baseline AUC: LightGBM, bureau features only", "oot_auc_bureau_only"),
        ("smallest margin over a baseline (AUC)", "smallest_margin"),
        ("oracle AUC (true PD, synthetic only)", "oot_oracle_auc"),
        ("validation AUC (the choice's measure)", "valid_auc"),
    ]
    from models.pipeline import baseline_margins

    margins = baseline_margins(metrics)
    if margins:
        metrics = {**metrics, "smallest_margin": min(margins.values())}
    for label, key in shown:
        if key in metrics:
            table.add_row(label, f"{metrics[key]:.4f}")
    for name, rows in summary.split_rows.items():
        table.add_row(f"{name} loans ({summary.split_months[name]})", f"{rows:,}")
    console.print(table)
    run = summary.run
    console.print(f"MLflow run      {run.run_id} (experiment {run.experiment_id})")
    console.print(f"Model version   {run.model_version}  ({run.model_uri})")
    print_settlement(summary.settlement, summary.mode)
    console.print("Open the UI     pdflow ui  (or make ui)")


def print_settlement(settlement: Any, mode: str) -> None:
    """The promotion gate's decision, its numbers and what the aliases are now."""
    from models.registry import decision_line

    if settlement is None:
        return
    gate = settlement.gate
    if gate is not None and gate.comparable:
        table = Table("", "challenger", "champion", title="Promotion gate (out-of-time loans)")
        table.add_row("AUC", f"{gate.challenger_auc:.4f}", f"{gate.champion_auc:.4f}")
        table.add_row("Brier score", f"{gate.challenger_brier:.5f}", f"{gate.champion_brier:.5f}")
        table.add_row(
            "expected calibration error", f"{gate.challenger_ece:.4f}", f"{gate.champion_ece:.4f}"
        )
        console.print(table)
        console.print(
            f"AUC difference {gate.auc_difference:+.4f} "
            f"[{gate.auc_difference_low:+.4f}, {gate.auc_difference_high:+.4f}], one-sided "
            f"DeLong p = {gate.p_value:.4g}; PSI against the champion {gate.psi:.4f}"
        )
    for check in gate.checks if gate is not None else []:
        console.print(f"  {check}", highlight=False)
    event = settlement.event
    console.print(f"Gate ({mode})     {decision_line(settlement)}", highlight=False)
    console.print(
        f"Aliases         champion -> version {event.champion_after}, "
        f"challenger -> version {event.version}"
    )
    if gate is not None and gate.psi_only_failure:
        console.print(
            "Only the score shift fails the gate: a reviewer who accepts it promotes with "
            f"`pdflow promote --version {event.version} --reason TEXT`"
        )
    elif mode == "manual" and gate is not None and gate.passed:
        console.print(f"Promote with    pdflow promote --version {event.version} --reason TEXT")


def registry(settings: Settings) -> Any:
    from models.registry import Registry, lock_path

    return Registry(
        settings.mlflow.tracking_uri,
        settings.mlflow.registered_model_name,
        lock_path(settings.mlflow.tracking_uri, settings.workspace),
    )


ReasonOption = Annotated[
    str, typer.Option(help="Why, in words: recorded on the version and in the history")
]


def _auc_text(value: str | None) -> str:
    return f"{float(value):.4f}" if value else ""


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[int, typer.Option(min=1, help="The registered version to make champion")],
    reason: ReasonOption,
) -> None:
    """Make a registered version the champion (who, when and why are recorded)."""
    with user_errors():
        event = registry(_settings(ctx)).promote(str(version), reason)
    console.print(
        f"Version {event.version} is the champion (was {event.champion_before}); recorded as "
        f"event {event.number} by {event.by} at {event.at}."
    )


@app.command()
def rollback(ctx: typer.Context, reason: ReasonOption) -> None:
    """Make the previous champion the champion again (who, when and why are recorded)."""
    with user_errors():
        event = registry(_settings(ctx)).rollback(reason)
    console.print(
        f"Rolled back: version {event.version} is the champion again (was "
        f"{event.champion_before}); recorded as event {event.number} by {event.by} at {event.at}."
    )


@app.command()
def models(
    ctx: typer.Context,
    history: Annotated[
        bool, typer.Option("--history", help="Also list every change of alias")
    ] = False,
) -> None:
    """List the registered versions: aliases, as-of day, out-of-time AUC, gate decision."""
    with user_errors():
        found = registry(_settings(ctx))
        versions = found.versions()
        aliases = found.aliases()
        events = found.history()
    table = Table(
        "version",
        "aliases",
        "as of",
        "candidate",
        "out-of-time AUC",
        "gate decision",
        title=f"Registered versions of {found.name}",
    )
    for v in versions:
        table.add_row(
            str(v.version),
            ", ".join(aliases.get(str(v.version), [])),
            v.tags.get("pdflow.as_of", ""),
            v.tags.get("pdflow.chosen_candidate", ""),
            _auc_text(v.tags.get("pdflow.oot_auc")),
            v.tags.get("pdflow.gate.decision", ""),
        )
    console.print(table)
    if not versions:
        console.print("No versions yet: `make run` (or `pdflow train`) registers one.")
    if history:
        console.print(f"History of {found.name}'s aliases ({len(events)} events):")
        for e in events:
            reason = e.reason if len(e.reason) <= 160 else e.reason[:157] + "..."
            console.print(
                f"  {e.number:>3}  {e.at}  {e.by}: {e.action}, version {e.version} "
                f"(champion {e.champion_before or '-'} -> {e.champion_after or '-'}): {reason}",
                highlight=False,
            )


def ui_links(settings: Settings, url: str) -> dict[str, str]:
    """Where a reviewer starts: the experiment's training runs (the workflow parameter opens
    them even where the UI's GenAI/training switch is left on GenAI) and the registered
    model."""
    from mlflow.tracking import MlflowClient

    store = settings.mlflow
    experiment = MlflowClient(store.tracking_uri).get_experiment_by_name(store.experiment_name)
    links = {}
    if experiment is not None:
        runs = f"{url}/#/experiments/{experiment.experiment_id}/runs"
        links["training runs"] = f"{runs}?workflowType=machine_learning"
    links["registered model"] = f"{url}/#/models/{store.registered_model_name}"
    return links


@app.command()
def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 5000,
) -> None:
    """Serve the MLflow UI for the configured store (runs, compare view, registered model)
    until Ctrl-C."""
    from flows.ui import UiDidNotStart, interrupt_on_termination, serving_ui

    interrupt_on_termination()
    with user_errors():
        settings = _settings(ctx)
        store = settings.mlflow
        artifact_root = store.artifact_location
        if "://" not in artifact_root:
            artifact_root = Path(artifact_root).as_uri()
        console.print(f"Starting the MLflow UI for {store.tracking_uri} ...", highlight=False)
        try:
            with serving_ui(store.tracking_uri, host, port, artifact_root=artifact_root) as server:
                console.print(f"MLflow UI at {server.url}  (Ctrl-C to stop)", highlight=False)
                for label, link in ui_links(settings, server.url).items():
                    console.print(f"  {label:<16}{link}", highlight=False)
                code = server.wait()
        except KeyboardInterrupt:
            console.print("MLflow UI stopped.")
            return
        except UiDidNotStart as err:
            errors.print(f"[bold red]error:[/] {err}", highlight=False)
            raise typer.Exit(1) from None
    if code != 0:
        errors.print(f"[bold red]error:[/] mlflow server exited with code {code}", highlight=False)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

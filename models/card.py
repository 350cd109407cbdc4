"""The model card of a registered model version: what the model is for, what it was trained
on, how well it ranks and is calibrated out of time, overall and by segment, and what it must
not be used for. Markdown first (deterministic: the same inputs give the same text), with a
standalone HTML rendering of it.

Segment metrics come from fairlearn's ``MetricFrame``; the HTML from Python-Markdown with the
tables extension, raw HTML in the text escaped rather than passed through.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote

import markdown
import numpy as np
import polars as pl
from fairlearn.metrics import MetricFrame, count, mean_prediction
from sklearn.metrics import roc_auc_score

from models.config import DecisionSettings
from models.decision import decide
from models.pipeline import baseline_margins

UNKNOWN = "unknown"
AGE_BREAKS = [18.0, 25.0, 35.0, 45.0, 55.0]
AGE_BANDS = ["under 18", "18-24", "25-34", "35-44", "45-54", "55+"]


def _as_group(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).fill_null(UNKNOWN)


# Segment name -> its group of each loan, derived from training-set columns (missing: unknown).
SEGMENTS: dict[str, pl.Expr] = {
    "city tier": _as_group(pl.col("application_city_tier").fill_nan(None).cast(pl.Int64)),
    "occupation": _as_group(pl.col("application_occupation")),
    "channel": _as_group(pl.col("application_channel")),
    "age band": _as_group(
        pl.col("fairness_age_years")
        .fill_nan(None)
        .cut(AGE_BREAKS, labels=AGE_BANDS, left_closed=True)
    ),
    "gender": _as_group(pl.col("fairness_gender")),
}

# An AUC from fewer bads (or goods) than this is too imprecise to compare groups on: with 20
# bads its standard error is about 0.05 at an AUC of 0.7 (Hanley and McNeil), a 95% interval
# of +-0.1 already; with fewer, group differences are mostly noise.
MIN_BADS = 20

SEGMENT_COLUMNS = (
    "count",
    "bads",
    "bad_rate",
    "auc",
    "mean_pd",
    "mean_pd_minus_bad_rate",
    "approval_rate",
)
_SEGMENT_SCHEMA = pl.Schema(
    {
        "segment": pl.String(),
        "group": pl.String(),
        "count": pl.Int64(),
        "bads": pl.Int64(),
        **{name: pl.Float64() for name in SEGMENT_COLUMNS[2:]},
    }
)
GAP_METRICS = ("auc", "approval_rate", "mean_pd_minus_bad_rate")


def approved(pd: np.ndarray, decision: DecisionSettings) -> np.ndarray:
    """Whether the policy table offers each PD a loan: its grade has a credit limit and a price
    tier other than ``decline``."""
    decided = decide(pd, decision)
    offered = (decided["credit_limit"] > 0) & (decided["price_tier"] != "decline")
    return offered.to_numpy()


def _metrics(decision: DecisionSettings, min_bads: int) -> dict[str, Callable[..., float]]:
    """The per-group metrics, each a function of (labels, PD) as MetricFrame calls them."""

    def bads(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.sum(y_true))

    def bad_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(y_true))

    def auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        n_bads = int(np.sum(y_true))
        if min(n_bads, len(y_true) - n_bads) < max(min_bads, 1):
            return math.nan
        return float(roc_auc_score(y_true, y_pred))

    def calibration(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(y_pred) - np.mean(y_true))

    def approval_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(approved(np.asarray(y_pred), decision)))

    return {
        "count": count,
        "bads": bads,
        "bad_rate": bad_rate,
        "auc": auc,
        "mean_pd": mean_prediction,
        "mean_pd_minus_bad_rate": calibration,
        "approval_rate": approval_rate,
    }


def segment_frames(
    frame: pl.DataFrame, pd: np.ndarray, decision: DecisionSettings, min_bads: int = MIN_BADS
) -> dict[str, MetricFrame]:
    """One fairlearn ``MetricFrame`` per segment of :data:`SEGMENTS` whose columns `frame`
    has: the metrics of :func:`segment_metrics` by group. `pd` is in `frame`'s row order."""
    pd = np.asarray(pd, dtype=np.float64)
    if len(pd) != frame.height:
        raise ValueError(f"{len(pd)} PDs for {frame.height} loans: they must be in row order")
    labels = frame["label"].cast(pl.Int64).to_numpy()
    metrics = _metrics(decision, min_bads)
    frames = {}
    for segment, expr in SEGMENTS.items():
        if set(expr.meta.root_names()) - set(frame.columns):
            continue
        groups = frame.select(expr.alias("group"))["group"].to_numpy()
        frames[segment] = MetricFrame(
            metrics=metrics, y_true=labels, y_pred=pd, sensitive_features=groups
        )
    return frames


def segment_metrics(
    frame: pl.DataFrame, pd: np.ndarray, decision: DecisionSettings, min_bads: int = MIN_BADS
) -> pl.DataFrame:
    """One row per (segment, group) of the loans in `frame` (with their ``label``) scored
    with `pd`: loans, bads, bad rate, AUC, mean PD, mean PD minus bad rate, and the share the
    policy table approves (see :func:`approved`).

    The AUC is null where the group has fewer than `min_bads` bads or fewer than `min_bads`
    goods (a single class included): the rarer class bounds its precision. Segments whose
    columns `frame` lacks are left out. Groups are sorted within each segment."""
    parts = [
        _by_group(segment, metric_frame)
        for segment, metric_frame in segment_frames(frame, pd, decision, min_bads).items()
    ]
    if not parts:
        return pl.DataFrame(schema=_SEGMENT_SCHEMA)
    return pl.concat(parts)


def _by_group(segment: str, metric_frame: MetricFrame) -> pl.DataFrame:
    table = metric_frame.by_group
    columns = {name: table[name].to_numpy(dtype=np.float64) for name in SEGMENT_COLUMNS}
    return pl.DataFrame(
        {
            "segment": [segment] * len(table),
            "group": [str(group) for group in table.index],
            **columns,
        },
        nan_to_null=True,
    ).cast(dict(_SEGMENT_SCHEMA))


def largest_gaps(segments: pl.DataFrame) -> pl.DataFrame:
    """Per segment and metric (AUC, approval rate, mean PD minus bad rate): the groups with the
    highest and the lowest value and the gap between them, from :func:`segment_metrics`'
    table. This is ``MetricFrame.difference()`` (between groups, null values skipped) with the
    groups named; a metric with fewer than two valued groups in a segment has no row."""
    segment_order = {
        segment: position
        for position, segment in enumerate(segments["segment"].unique(maintain_order=True))
    }
    metric_order = {metric: position for position, metric in enumerate(GAP_METRICS)}
    ranked = (
        segments.unpivot(index=["segment", "group"], on=list(GAP_METRICS), variable_name="metric")
        .drop_nulls("value")
        .with_columns(
            segment_order=pl.col("segment").replace_strict(segment_order, return_dtype=pl.Int64),
            metric_order=pl.col("metric").replace_strict(metric_order, return_dtype=pl.Int64),
        )
        .sort(
            ["segment_order", "metric_order", "value", "group"],
            descending=[False, False, True, False],
        )
    )
    return (
        ranked.group_by("segment", "metric", maintain_order=True)
        .agg(
            groups=pl.len(),
            highest_group=pl.col("group").first(),
            highest=pl.col("value").first(),
            lowest_group=pl.col("group").last(),
            lowest=pl.col("value").last(),
        )
        .filter(pl.col("groups") >= 2)
        .select(
            "segment",
            "metric",
            "highest_group",
            "highest",
            "lowest_group",
            "lowest",
            gap=pl.col("highest") - pl.col("lowest"),
        )
    )


# Words that name a protected attribute inside a feature name (as a whole "_"-separated word).
PROTECTED_WORDS = {"gender": ("gender", "sex"), "age": ("age", "birth", "dob")}
FAIRNESS_PREFIX = "fairness_"


def protected_inputs(feature_names: list[str], protected: list[str]) -> list[str]:
    """The model features that are, or directly encode, a protected attribute: the
    ``fairness_*`` columns, any name containing "gender", and any name with one of a listed
    attribute's words (:data:`PROTECTED_WORDS`, else the attribute's own name) as a whole
    word, such as ``application_age_years`` when "age" is protected."""
    words = {word for name in protected for word in PROTECTED_WORDS.get(name, (name,))}

    def encodes(name: str) -> bool:
        lowered = name.lower()
        tokens = set(re.split(r"[^a-z0-9]+", lowered))
        return lowered.startswith(FAIRNESS_PREFIX) or "gender" in lowered or bool(tokens & words)

    return [name for name in feature_names if encodes(name)]


@dataclass
class CardInputs:
    """Everything the card says, gathered by the caller (see the module docstring)."""

    model_name: str
    version: str | None
    as_of: date
    chosen: str
    choice: str
    fitted_on: dict[str, str]
    split_months: dict[str, str]
    split_rows: dict[str, int]
    label_window_months: int
    label_threshold_days: int
    families: dict[str, str]  # model feature -> family (only the model's features)
    catalogue_link: str  # e.g. "feature_catalogue.md" (artifact beside the card)
    metrics: dict[str, float]  # the run's metrics
    # Gate comparison: version, champion_auc, challenger_auc, difference, p_value, decision,
    # reason (None: the first model of its name).
    champion: dict[str, object] | None
    ablation: pl.DataFrame | None
    grades: pl.DataFrame | None
    segments: pl.DataFrame  # from segment_metrics
    protected: list[str]  # features.protected
    drift_warnings: list[str]  # the data gate's warnings
    limitations: list[str]  # extra limitations the caller knows of


BASELINES = {
    "lightgbm_default": "LightGBM with default parameters, every feature",
    "woe_scorecard": "WOE logistic scorecard, untuned",
    "bureau_only": "LightGBM on the bureau features only",
}
FITTED_WORDS = {
    "evaluated": "The model evaluated out of time",
    "registered": "The registered version",
}
SPLIT_WORDS = {"train": "Training", "valid": "Validation", "oot": "Out of time"}


def model_card(inputs: CardInputs) -> str:
    """The model card in Markdown: intended use and out-of-scope uses, data, label, features
    by family, out-of-time performance against the baselines and the champion, family
    ablation, calibration by grade, metrics by segment and their largest gaps, protected
    attributes, known limitations and drift warnings. Nothing in it depends on when it is
    written but the as-of date it states."""
    sections = [
        _title(inputs),
        _intended_use(),
        _out_of_scope(),
        _data(inputs),
        _label(inputs),
        _features(inputs),
        _performance(inputs),
        _ablation(inputs.ablation),
        _calibration(inputs.grades),
        _segments(inputs.segments),
        _protected(inputs),
        _limitations(inputs),
        _drift(inputs.drift_warnings),
    ]
    return "\n\n".join(section.strip("\n") for section in sections) + "\n"


def card_html(markdown_text: str, title: str) -> str:
    """`markdown_text` as a standalone HTML page titled `title`: Python-Markdown with the
    tables extension and a small inline style sheet. Raw HTML in the text is shown as text,
    not run, so nothing a caller passes in (a warning, a reason) can inject markup."""
    renderer = markdown.Markdown(extensions=["tables"], output_format="html")
    renderer.preprocessors.deregister("html_block")
    renderer.inlinePatterns.deregister("html")
    body = renderer.convert(markdown_text)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


STYLE = (
    "body{font-family:system-ui,sans-serif;line-height:1.45;color:#1b1b1b;margin:0}"
    "main{max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;"
    "margin-top:2rem}"
    "table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}"
    "th,td{border:1px solid #ccc;padding:.25rem .55rem;text-align:left}"
    "th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}"
    "code{background:#f3f3f3;padding:0 .2rem;border-radius:3px}"
)


# Formatting -------------------------------------------------------------------------------


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _auc(value: object) -> str:
    return "n/a" if _missing(value) else f"{float(value):.4f}"  # type: ignore[arg-type]


def _signed(value: object) -> str:
    return "n/a" if _missing(value) else f"{float(value):+.4f}"  # type: ignore[arg-type]


def _pct(value: object) -> str:
    return "n/a" if _missing(value) else f"{100 * float(value):.2f}%"  # type: ignore[arg-type]


def _pp(value: object) -> str:
    """A difference of rates, in percentage points."""
    return "n/a" if _missing(value) else f"{100 * float(value):+.2f} pp"  # type: ignore[arg-type]


def _count(value: object) -> str:
    return "n/a" if _missing(value) else f"{round(float(value)):,}"  # type: ignore[arg-type]


def _p_value(value: object) -> str:
    if _missing(value):
        return "n/a"
    return "< 0.0001" if float(value) < 1e-4 else f"{float(value):.4f}"  # type: ignore[arg-type]


MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|])")


def _text(value: object) -> str:
    """Free text from the caller, shown as written: Markdown's specials escaped, "<" as an
    entity, line breaks as spaces (it may sit in a table cell or a list item)."""
    escaped = MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(str(value).split()))
    return escaped.replace("<", "&lt;")


def _bads(value: object) -> str:
    return "1 bad" if value == 1 else f"{_count(value)} bads"


def _code(name: str) -> str:
    return f"`{name.replace('`', '')}`"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _months(span: str) -> str:
    return _text(span.replace("..", " to "))


# Sections ---------------------------------------------------------------------------------


def _title(inputs: CardInputs) -> str:
    version = f"version {_text(inputs.version)}" if inputs.version else "unregistered"
    return (
        f"# Model card: {_text(inputs.model_name)} ({version})\n\n"
        f"As of {inputs.as_of.isoformat()}. Chosen candidate: **{_text(inputs.chosen)}** "
        f"({_text(inputs.choice)})."
    )


def _intended_use() -> str:
    return (
        "## Intended use\n\n"
        "Estimates the probability of default (PD) of a small unsecured consumer loan at the "
        "time of application, from what is known about the applicant on the application day. "
        "The PD feeds the scorecard score (points), the risk grade, and through the policy "
        "table the credit limit and the price tier offered, or a decline. Decisions it informs "
        "are shown with the applicant's main adverse factors (reason codes)."
    )


def _out_of_scope() -> str:
    uses = [
        "collections or recovery strategy on loans already granted (it predicts default at "
        "application, not cure or payment after delinquency);",
        "marketing, propensity or response targeting;",
        "other products (secured, larger or longer loans, credit cards, business lending);",
        "populations unlike the training data (other lenders, regions, channels or applicant "
        "profiles not seen in training);",
        "fully automated adverse action without the reasons shown to the applicant.",
    ]
    return "## Out of scope\n\nThe model is not for:\n\n" + _bullets(uses)


def _data(inputs: CardInputs) -> str:
    rows = [
        [SPLIT_WORDS.get(name, _text(name)), _months(months), _count(inputs.split_rows.get(name))]
        for name, months in inputs.split_months.items()
    ]
    fitted = [
        f"{FITTED_WORDS.get(model, _text(model))}: {_text(scope)}"
        for model, scope in inputs.fitted_on.items()
    ]
    return (
        "## Data\n\n"
        "Population: applications of the lender's users that were approved and disbursed, "
        "whose loans had matured by the as-of date, in complete monthly cohorts. Rejected "
        "applications have no outcome and are not in the data.\n\n"
        "Window (application months) and loans of each split:\n\n"
        + _table(["Split", "Months", "Loans"], rows)
        + "\n\nFitted on:\n\n"
        + _bullets(fitted)
    )


def _label(inputs: CardInputs) -> str:
    days, months = inputs.label_threshold_days, inputs.label_window_months
    return (
        "## Label definition\n\n"
        f"A loan is bad (label 1) when an installment due within its first {months} months on "
        f"book reaches {days} days past due: paid {days} days or more after its due date, or "
        f"still unpaid {days} days after it. A loan is labelled once it is bad or every "
        f"installment due in the window is at least {days} days past its due date; loans not "
        "yet mature, and whole months in which not every loan has matured, are left out. "
        "Loans without an installment due in the window stay unlabelled."
    )


def _features(inputs: CardInputs) -> str:
    by_family: dict[str, list[str]] = {}
    for name, family in inputs.families.items():
        by_family.setdefault(family, []).append(name)
    families = sorted(by_family)
    counts = [[_text(f), str(len(by_family[f]))] for f in families]
    counts.append(["**total**", str(len(inputs.families))])
    names = [
        f"**{_text(f)}**: " + ", ".join(_code(n) for n in sorted(by_family[f])) for f in families
    ]
    link = quote(inputs.catalogue_link, safe=":/#?&=%.~-_")
    return (
        "## Features by family\n\n"
        f"What each feature means, its window and its bounds: [the feature catalogue]({link})."
        "\n\n" + _table(["Family", "Features"], counts) + "\n\n" + _bullets(names)
    )


def _baselines(metrics: dict[str, float]) -> list[str]:
    found = [name for name in baseline_margins(metrics) if f"oot_auc_{name}" in metrics]
    known = [name for name in BASELINES if name in found]
    return known + sorted(set(found) - set(known))


def _candidates(metrics: dict[str, float]) -> list[str]:
    pattern = re.compile(r"candidate_(.+)_oot_auc$")
    return sorted(m.group(1) for key in metrics if (m := pattern.match(key)))


HEADLINE = (
    ("oot_auc", "AUC", _auc),
    ("oot_gini", "Gini", _auc),
    ("oot_ks", "KS", _auc),
    ("oot_brier", "Brier score", _auc),
    ("oot_ece", "Expected calibration error", _pct),
    ("oot_bad_rate", "Bad rate", _pct),
    ("oot_mean_pd", "Mean PD", _pct),
    ("psi_train_to_oot", "PSI of PD, train to out of time", _auc),
)


def _performance(inputs: CardInputs) -> str:
    metrics = inputs.metrics
    headline = [[words, fmt(metrics[key])] for key, words, fmt in HEADLINE if key in metrics]
    model_auc = metrics.get("oot_auc", math.nan)
    rows = [[f"This model ({_text(inputs.chosen)})", _auc(model_auc), ""]]
    for name in _baselines(metrics):
        other = metrics[f"oot_auc_{name}"]
        words = BASELINES.get(name, _text(name))
        rows.append([f"Baseline: {words}", _auc(other), _signed(_margin(model_auc, other))])
    for name in _candidates(metrics):
        other = metrics[f"candidate_{name}_oot_auc"]
        rows.append(
            [
                f"Candidate {_text(name)}, fitted on train",
                _auc(other),
                _signed(_margin(model_auc, other)),
            ]
        )
    if "oot_oracle_auc" in metrics:
        oracle = metrics["oot_oracle_auc"]
        rows.append(
            ["Oracle: the simulator's true PD", _auc(oracle), _signed(_margin(model_auc, oracle))]
        )
    if inputs.champion:
        champion_auc = inputs.champion.get("champion_auc")
        rows.append(
            [
                f"Champion (version {_text(inputs.champion.get('version'))})",
                _auc(champion_auc),
                _signed(_margin(model_auc, champion_auc)),
            ]
        )
    return (
        "## Performance out of time\n\n"
        f"On the out-of-time split ({_count(inputs.split_rows.get('oot'))} loans):\n\n"
        + _table(["Metric", "Value"], headline)
        + "\n\nAUC against the baselines, the candidates and the champion on the same loans "
        "(margin: this model's AUC minus the other's):\n\n"
        + _table(["Model", "AUC", "Margin"], rows)
        + "\n\n"
        + _gate(inputs.champion)
    )


def _margin(model_auc: float, other: object) -> float:
    return model_auc - float(other) if isinstance(other, int | float) else math.nan


def _gate(champion: dict[str, object] | None) -> str:
    if not champion:
        return "Gate: no champion to compare with (the first model of this name)."
    return (
        f"Gate against the champion (version {_text(champion.get('version'))}): challenger AUC "
        f"{_auc(champion.get('challenger_auc'))}, champion AUC "
        f"{_auc(champion.get('champion_auc'))}, difference "
        f"{_signed(champion.get('difference'))}, p-value {_p_value(champion.get('p_value'))}. "
        f"Decision: **{_text(champion.get('decision'))}**: {_text(champion.get('reason'))}."
    )


def _ablation(ablation: pl.DataFrame | None) -> str:
    if ablation is None or ablation.is_empty():
        return "## Family ablation\n\nNot run for this model."
    rows = [
        [
            _text(row["step"]),
            _count(row["features"]),
            _auc(row["oot_auc"]),
            _signed(row["auc_lift"]) if row["auc_lift"] is not None else "",
            _auc(row["oot_ks"]),
            _signed(row["ks_lift"]) if row["ks_lift"] is not None else "",
        ]
        for row in ablation.iter_rows(named=True)
    ]
    header = ["Families", "Features", "AUC", "AUC lift", "KS", "KS lift"]
    return (
        "## Family ablation\n\n"
        "Out-of-time AUC and KS as families are added one at a time (the first alone), each "
        "with the tuned parameters; lifts are over the step before.\n\n" + _table(header, rows)
    )


def _calibration(grades: pl.DataFrame | None) -> str:
    if grades is None or grades.is_empty():
        return "## Calibration by grade\n\nNo grade table for this model."
    rows = [
        [
            _text(row["grade"]),
            f"{_pct(row['min_pd'])} to {_pct(row['max_pd'])}",
            _count(row["n"]),
            _count(row["bads"]),
            _pct(row["mean_pd"]),
            _pct(row["bad_rate"]),
            _p_value(row["binomial_p_value"]),
            _grade_result(row),
        ]
        for row in grades.iter_rows(named=True)
    ]
    header = ["Grade", "PD band", "Loans", "Bads", "Mean PD", "Bad rate", "p-value", "Result"]
    return (
        "## Calibration by grade\n\n"
        "Out of time, per risk grade: the bads against the grade's mean PD, by a two-sided "
        "exact binomial test.\n\n" + _table(header, rows)
    )


def _grade_result(row: dict[str, object]) -> str:
    if not row["n"]:
        return "no loans"
    return "consistent" if row["calibrated"] else "**fails**"


SEGMENT_HEADER = [
    "Group",
    "Loans",
    "Bads",
    "Bad rate",
    "AUC",
    "Mean PD",
    "Mean PD − bad rate",
    "Approval rate",
]
GAP_WORDS = {
    "auc": ("AUC", _auc),
    "approval_rate": ("approval rate", _pct),
    "mean_pd_minus_bad_rate": ("mean PD − bad rate", _pp),
}


def _segments(segments: pl.DataFrame) -> str:
    if segments.is_empty():
        return "## Metrics by segment\n\nNo segment could be derived from the training set."
    parts = [
        "## Metrics by segment\n\n"
        "Out of time. AUC is n/a where a group has too few bads (or goods) for it to mean "
        "anything; approval rate is the share the policy table does not decline."
    ]
    for (segment,), table in segments.group_by("segment", maintain_order=True):
        rows = [
            [
                _text(row["group"]),
                _count(row["count"]),
                _count(row["bads"]),
                _pct(row["bad_rate"]),
                _auc(row["auc"]),
                _pct(row["mean_pd"]),
                _pp(row["mean_pd_minus_bad_rate"]),
                _pct(row["approval_rate"]),
            ]
            for row in table.iter_rows(named=True)
        ]
        parts.append(f"### {_text(segment)}\n\n" + _table(SEGMENT_HEADER, rows))
    parts.append("### Largest gaps\n\n" + _gap_lines(largest_gaps(segments)))
    return "\n\n".join(parts)


def _gap_lines(gaps: pl.DataFrame) -> str:
    if gaps.is_empty():
        return "No segment has two groups to compare."
    lines = []
    for row in gaps.iter_rows(named=True):
        words, fmt = GAP_WORDS[row["metric"]]
        gap = _pp(row["gap"]).lstrip("+") if row["metric"] != "auc" else _auc(row["gap"])
        segment = _text(row["segment"])
        lines.append(
            f"**{segment}**, {words}: {fmt(row['highest'])} "
            f"({segment} {_text(row['highest_group'])}) against {fmt(row['lowest'])} "
            f"({segment} {_text(row['lowest_group'])}), a gap of {gap}"
        )
    return _bullets(lines)


def _protected(inputs: CardInputs) -> str:
    attributes = sorted({"gender", *inputs.protected})
    segments = inputs.segments["segment"].unique(maintain_order=True).to_list()
    leaked = protected_inputs(list(inputs.families), inputs.protected)
    check = (
        "Checked: no model input is, or directly encodes, a protected attribute."
        if not leaked
        else "**Check failed**: these model inputs are or encode a protected attribute: "
        + ", ".join(_code(n) for n in leaked)
        + "."
    )
    return (
        "## Protected attributes\n\n"
        f"Protected attributes ({', '.join(_text(a) for a in attributes)}) appear only as "
        "segments of the reporting above, never as model inputs. "
        f"Segments reported: {', '.join(_text(s) for s in segments) or 'none'}.\n\n" + check
    )


def _limitations(inputs: CardInputs) -> str:
    items = [
        _oot_precision(inputs),
        "Trained on approved loans only (no reject inference): its PDs for applicants unlike "
        "those approved in the past are extrapolations.",
        *_refit_note(inputs.fitted_on),
        *_failing_grades(inputs.grades),
        *_segments_without_auc(inputs.segments),
        *_missing_segments(inputs.segments),
        *_beaten_by(inputs.metrics),
        *_synthetic(inputs.metrics),
        *_leaks(inputs),
        *(_text(item) for item in inputs.limitations),
    ]
    return "## Known limitations\n\n" + _bullets(item for item in items if item)


def _oot_precision(inputs: CardInputs) -> str:
    loans = inputs.split_rows.get("oot", 0)
    rate = inputs.metrics.get("oot_bad_rate")
    model_auc = inputs.metrics.get("oot_auc")
    if not loans or rate is None or model_auc is None:
        return ""
    bads = round(rate * loans)
    se = _hanley_mcneil_se(model_auc, bads, loans - bads)
    return (
        f"The out-of-time split has {_bads(bads)} among {loans:,} loans: the AUC's standard "
        f"error is about {_auc(se)} (Hanley and McNeil), a 95% interval of about "
        f"±{_auc(1.96 * se)} around it."
    )


def _hanley_mcneil_se(area: float, bads: int, goods: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC from the counts of each class."""
    if bads < 1 or goods < 1:
        return math.nan
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    variance = (area * (1 - area) + (bads - 1) * (q1 - area**2) + (goods - 1) * (q2 - area**2)) / (
        bads * goods
    )
    return math.sqrt(max(variance, 0.0))


def _refit_note(fitted_on: dict[str, str]) -> list[str]:
    evaluated, registered = fitted_on.get("evaluated"), fitted_on.get("registered")
    if not evaluated or not registered or evaluated == registered:
        return []
    return [
        f"The registered version was refitted on {_text(registered)}; the out-of-time "
        f"figures describe the model fitted on {_text(evaluated)}, so they have no held-out "
        "check of the registered one."
    ]


def _failing_grades(grades: pl.DataFrame | None) -> list[str]:
    if grades is None:
        return []
    failing = grades.filter((pl.col("n") > 0) & ~pl.col("calibrated").fill_null(True))
    return [
        f"Grade {_text(row['grade'])} fails the binomial calibration test: {_bads(row['bads'])} "
        f"among {_count(row['n'])} loans ({_pct(row['bad_rate'])}) against a mean PD of "
        f"{_pct(row['mean_pd'])} (p-value {_p_value(row['binomial_p_value'])})."
        for row in failing.iter_rows(named=True)
    ]


def _segments_without_auc(segments: pl.DataFrame) -> list[str]:
    lacking = segments.filter(pl.col("auc").is_null())
    if lacking.is_empty():
        return []
    groups = [
        f"{_text(row['segment'])} {_text(row['group'])} ({_bads(row['bads'])} in "
        f"{_count(row['count'])} loans)"
        for row in lacking.iter_rows(named=True)
    ]
    return [
        "Too few bads (or goods) for an AUC in: "
        + "; ".join(groups)
        + ". The model's ranking there is unmeasured."
    ]


def _missing_segments(segments: pl.DataFrame) -> list[str]:
    missing = [s for s in SEGMENTS if s not in set(segments["segment"].to_list())]
    if not missing:
        return []
    absent = ", ".join(missing)
    return [f"Not reported by segment (columns absent from the training set): {absent}."]


def _beaten_by(metrics: dict[str, float]) -> list[str]:
    model_auc = metrics.get("oot_auc")
    if model_auc is None:
        return []
    return [
        f"Out of time the model does not beat the baseline ({BASELINES.get(name, _text(name))}):"
        f" AUC {_auc(model_auc)} against {_auc(metrics[f'oot_auc_{name}'])}."
        for name in _baselines(metrics)
        if metrics[f"oot_auc_{name}"] >= model_auc
    ]


def _synthetic(metrics: dict[str, float]) -> list[str]:
    if "oot_oracle_auc" not in metrics:
        return []
    return [
        "Trained and evaluated on synthetic data (the simulator's true PD is known: oracle AUC "
        f"{_auc(metrics['oot_oracle_auc'])}): these figures are no evidence of its performance "
        "on real applicants."
    ]


def _leaks(inputs: CardInputs) -> list[str]:
    leaked = protected_inputs(list(inputs.families), inputs.protected)
    if not leaked:
        return []
    return ["Protected attributes reach the model: " + ", ".join(_code(n) for n in leaked) + "."]


def _drift(warnings: list[str]) -> str:
    if not warnings:
        return "## Drift warnings\n\nNone."
    return "## Drift warnings\n\n" + _bullets(_text(w) for w in warnings)

"""Population drift against a reference frozen when a model is trained (the monitor's,
``models.monitor``), kept light: the registered model carries its :class:`Reference`.

The reference: the applications of the last ``monitor.reference_days`` days before the
training day, all decisions (the population the model scores, not only the approved),
scored by the model. Per column (the PD, then every model feature) it keeps the decile
edges of those applications, or their categories, and the share in each bin, missing values
in a bin of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from data.asof import day_start_utc
from models.config import MonitorSettings
from models.metrics import psi_of_shares

if TYPE_CHECKING:
    from models.pd_model import PDModel

PD = "pd"


@dataclass(frozen=True)
class Binned:
    """One column's frozen bins and the reference's share in each. A number goes to the first
    bin whose interior edge is above it (``edges``); a category to its own bin
    (``categories``), a category the reference never saw to the bin after them; missing
    values to the last bin."""

    edges: list[float]
    shares: list[float]
    categories: list[str] | None = None

    @property
    def bins(self) -> int:
        present = len(self.categories) + 1 if self.categories is not None else len(self.edges) + 1
        return present + 1


@dataclass(frozen=True)
class Reference:
    """What the model's population looked like when it was trained."""

    as_of: date
    applications: int
    auc: float | None  # out of time, at training
    columns: dict[str, Binned] = field(default_factory=dict)


def is_categorical(values: pl.Series) -> bool:
    return isinstance(values.dtype, pl.Categorical | pl.Enum | pl.String)


def bin_index(values: pl.Series, binned: Binned) -> np.ndarray:
    """The bin of each value (see :class:`Binned`)."""
    if binned.categories is not None:
        text = values.cast(pl.String)
        known = {c: i for i, c in enumerate(binned.categories)}
        index = text.replace_strict(known, default=len(known), return_dtype=pl.Int64)
        return np.where(text.is_null().to_numpy(), len(known) + 1, index.to_numpy())
    array = values.cast(pl.Float64).to_numpy()
    missing = np.isnan(array)
    found = np.searchsorted(np.asarray(binned.edges), np.where(missing, 0.0, array), side="right")
    return np.where(missing, len(binned.edges) + 1, found)


def shares(index: np.ndarray, bins: int) -> np.ndarray:
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def frozen_bins(values: pl.Series, bins: int) -> Binned:
    """A category per bin for categorical `values`; else equal-count edges of the present
    values (ties merged). Their shares in `values`."""
    if is_categorical(values):
        categories = sorted(values.cast(pl.String).drop_nulls().unique().to_list())
        binned = Binned([], [], categories)
    else:
        present = values.cast(pl.Float64).fill_nan(None).drop_nulls().to_numpy()
        cuts = np.linspace(0, 1, bins + 1)[1:-1]
        quantiles = np.quantile(present, cuts) if present.size else []
        binned = Binned([float(e) for e in np.unique(quantiles)], [])
    counted = shares(bin_index(values, binned), binned.bins).tolist()
    return Binned(binned.edges, counted, binned.categories)


def build_reference(
    features: pl.DataFrame,
    pd: np.ndarray,
    names: tuple[str, ...],
    as_of: date,
    auc: float | None,
    bins: int,
) -> Reference:
    """The reference of `features` (the applications, one row each) scored `pd`."""
    columns = {PD: frozen_bins(pl.Series(pd), bins)}
    columns |= {name: frozen_bins(features[name], bins) for name in names}
    return Reference(as_of, features.height, auc, columns)


def with_reference(
    model: PDModel,
    features: pl.DataFrame,
    as_of: date,
    auc: float | None,
    timezone: str,
    settings: MonitorSettings,
    bins: int,
) -> PDModel:
    """`model` with its reference set: the applications of `features` (the training run's
    table, every application before `as_of`) of the last ``reference_days`` days."""
    since = day_start_utc(as_of - timedelta(days=settings.reference_days), timezone)
    recent = features.filter(pl.col("applied_at") >= since)
    pd = model.predict_pd(recent)
    model.reference = build_reference(recent, pd, model.spec.names, as_of, auc, bins)
    return model


def stability_index(binned: Binned, values: pl.Series) -> float:
    """PSI (CSI for a feature) of `values` against the reference's bins."""
    actual = shares(bin_index(values, binned), binned.bins)
    return psi_of_shares(np.asarray(binned.shares), actual)


def stability(reference: Reference, features: pl.DataFrame, pd: np.ndarray) -> pl.DataFrame:
    """Per column of the reference (``pd`` first, then the model's features): its stability
    index on recent applications `features` scored `pd`, largest first after the PD (null
    without recent applications)."""

    def index(binned: Binned, values: pl.Series) -> float | None:
        return stability_index(binned, values) if values.len() else None

    rows = [("score", PD, index(reference.columns[PD], pl.Series(pd, dtype=pl.Float64)))]
    rows += [
        ("feature", name, index(binned, features[name]))
        for name, binned in reference.columns.items()
        if name != PD
    ]
    schema = {"kind": pl.String, "column": pl.String, "index": pl.Float64}
    table = pl.DataFrame(rows, schema=schema, orient="row")
    return pl.concat([table.head(1), table.tail(-1).sort("index", descending=True)])

"""Typed settings of the data stage: time zone, default definition and the data gate."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ContractSettings(BaseModel):
    """How raw logs are interpreted."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field("Asia/Shanghai", description="Local time zone of the lender's days")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


class LabelSettings(BaseModel):
    """The default definition: `threshold_days` past due within the first `window_months`."""

    model_config = ConfigDict(extra="forbid")

    window_months: int = Field(6, ge=1, le=60)
    threshold_days: int = Field(90, ge=1, le=720)


Action = Literal["warn", "stop"]


class StatsSettings(BaseModel):
    """Statistical expectations: thresholds and what breaking each one does."""

    model_config = ConfigDict(extra="forbid")

    recent_days: int = Field(7, ge=1, description="Window compared against history")
    history_days: int = Field(56, ge=7, description="History the recent window is compared to")
    volume_ratio: tuple[float, float] = (0.5, 2.0)
    volume_action: Action = "warn"
    amount_median_ratio: tuple[float, float] = (0.5, 2.0)
    amount_action: Action = "stop"
    enum_share_max_shift: float = Field(0.15, gt=0, le=1)
    enum_action: Action = "warn"
    bad_rate: tuple[float, float] = (0.005, 0.30)
    bad_rate_action: Action = "stop"
    feature_max_null_share: float = Field(0.999, gt=0, le=1)
    feature_action: Action = "stop"
    freshness_action: Action = Field(
        "stop", description="No event row in the whole window before the as-of date"
    )


class ValidationSettings(BaseModel):
    """The data gate: which tables must have rows, and when set-aside rows stop the run."""

    model_config = ConfigDict(extra="forbid")

    required_nonempty: list[str] = Field(
        default_factory=lambda: ["users", "applications", "repayments"]
    )
    max_set_aside_share: float = Field(
        0.05, ge=0, le=1, description="Above this share of a table's rows set aside, stop"
    )
    max_partition_mismatch_share: float = Field(
        0.01, ge=0, le=1, description="Above this share, timestamps are shifted: stop"
    )
    gx_sample_rows: int = Field(20_000, ge=100, description="Rows per table GX validates")
    max_application_pairs: float = Field(
        50.0,
        gt=0,
        description="Most (row, application) pairs the feature build may join per row of a "
        "table: above it (a few ids holding most rows and applications, such as a default "
        "value in place of user_id) the build would grow with their product, so the gate stops",
    )
    key_bucket_rows: int = Field(
        4_000_000,
        ge=1_000,
        description="Rows per hash bucket when the gate looks for repeated keys: the memory "
        "of that step grows with it, not with the table",
    )
    stats: StatsSettings = Field(default_factory=StatsSettings)

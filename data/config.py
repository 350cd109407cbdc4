"""Typed settings of the data stage: time zone of the contract and the default definition."""

from __future__ import annotations

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

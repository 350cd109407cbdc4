"""Calendar of the simulated period: local days, month boundaries and local -> UTC conversion.

The simulator works in *local day indices* (day 0 = local ``start``) and microseconds since
local midnight. This keeps everything vectorised: the hive partition of an event is its day
index, and the UTC instant is ``(epoch_day + day) * DAY_US + tod_us - utc_offset(day)``.

The UTC offset is taken per local day (at local noon). For zones without daylight saving
time (Asia/Shanghai, the default) the conversion is exact; for DST zones a time within an
hour of a transition may be shifted by that hour (documented approximation).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
SECOND_US = 1_000_000
_EPOCH = date(1970, 1, 1)


def add_months(d: date, k: int) -> date:
    """``d`` plus ``k`` calendar months, the day clamped to the target month's length."""
    y, m = divmod(d.month - 1 + k, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Timeline:
    """The simulated period ``[start, start + months)`` in local days."""

    start: date
    months: int
    tz: str
    n_days: int
    month_start: np.ndarray  # int64, months + 1 entries, last == n_days
    base_day: int  # days since 1970-01-01 of ``start``
    offset_us: np.ndarray  # int64 UTC offset per local day
    end_us: int  # UTC microseconds of local midnight at start + months (exclusive end)

    @classmethod
    def build(cls, start: date, months: int, tz: str) -> Timeline:
        if months < 1:
            raise ValueError("months must be >= 1")
        zone = ZoneInfo(tz)
        end = add_months(start, months)
        n_days = (end - start).days
        month_start = np.array(
            [(add_months(start, k) - start).days for k in range(months + 1)], dtype=np.int64
        )
        offsets = np.empty(n_days, dtype=np.int64)
        for d in range(n_days):  # loop over days (hundreds), not over users or events
            noon = datetime.combine(start + timedelta(days=d), time(12), tzinfo=zone)
            offsets[d] = int(noon.utcoffset().total_seconds()) * SECOND_US
        end_local = datetime.combine(end, time(0), tzinfo=zone)
        end_off = int(end_local.utcoffset().total_seconds()) * SECOND_US
        base_day = (start - _EPOCH).days
        end_us = (base_day + n_days) * DAY_US - end_off
        return cls(start, months, tz, n_days, month_start, base_day, offsets, end_us)

    @property
    def month_len(self) -> np.ndarray:
        return np.diff(self.month_start)

    def to_utc(self, day: np.ndarray, tod_us: np.ndarray) -> np.ndarray:
        """UTC microseconds of local (day index, microseconds since local midnight)."""
        day = np.asarray(day, dtype=np.int64)
        off = self.offset_us[np.clip(day, 0, self.n_days - 1)]
        return (self.base_day + day) * DAY_US + np.asarray(tod_us, dtype=np.int64) - off

    def local_day(self, utc_us: np.ndarray) -> np.ndarray:
        """Local day index of UTC microseconds (inverse of :meth:`to_utc` for whole days)."""
        utc_us = np.asarray(utc_us, dtype=np.int64)
        approx = (utc_us + self.offset_us[0]) // DAY_US - self.base_day
        off = self.offset_us[np.clip(approx, 0, self.n_days - 1)]
        return (utc_us + off) // DAY_US - self.base_day

    def month_of_day(self, day: np.ndarray) -> np.ndarray:
        """Month index (0-based) of local day indices; may be <0 or >= months outside."""
        return np.searchsorted(self.month_start, np.asarray(day), side="right") - 1

    def day_labels(self) -> list[str]:
        """``YYYY-MM-DD`` of every local day of the period (partition folder names)."""
        return [(self.start + timedelta(days=d)).isoformat() for d in range(self.n_days)]

    def as_datetime64(self, day: np.ndarray) -> np.ndarray:
        """Local day indices as ``datetime64[D]`` calendar dates."""
        return np.datetime64(self.start, "D") + np.asarray(day, dtype=np.int64)

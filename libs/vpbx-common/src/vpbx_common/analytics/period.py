"""The period a report covers: an epoch-ms interval and the time zone its days are read in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Bounds that keep every epoch-ms value a UInt64 on both engines and every local date a
# ClickHouse Date (1970..2105 on 18.16).
_MIN_MS = 0
_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


def time_zone(tz: str) -> ZoneInfo:
    """The IANA zone named ``tz``; ValueError naming it when Python's tz database lacks it."""
    if not isinstance(tz, str) or not tz or tz != tz.strip():
        raise ValueError(f"tz must be an IANA time zone name, got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"tz {tz!r} is not a known IANA time zone") from None


def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    """Epoch ms of the first instant of ``day`` in ``tz``.

    Where a DST change skips midnight (e.g. America/Santiago) the skipped wall time is read
    with the offset before the change (zoneinfo's fold=0), which lands inside the new day.
    """
    local = datetime.combine(day, time(0), tzinfo=tz)
    return int(local.astimezone(UTC).timestamp()) * 1000


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    """Calls that started in ``[start_ms, end_ms)``, their days and hours read in ``tz``."""

    start_ms: int
    end_ms: int  # exclusive
    tz: str = "UTC"

    def __post_init__(self) -> None:
        for name in ("start_ms", "end_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer (epoch ms), got {value!r}")
            if not _MIN_MS <= value <= _MAX_MS:
                raise ValueError(f"{name} {value} is outside 1970..2100")
        if self.end_ms <= self.start_ms:
            raise ValueError("the period must end after it starts (end_ms is exclusive)")
        time_zone(self.tz)

    @classmethod
    def from_dates(cls, first: date, last: date, tz: str) -> Self:
        """Local midnight of ``first`` to the local midnight after ``last``: both days whole,
        however long they are (23 or 25 hours on a DST change)."""
        if last < first:
            raise ValueError(f"the period's last day {last} is before its first day {first}")
        zone_info = time_zone(tz)
        return cls(
            start_ms=local_midnight_ms(first, zone_info),
            end_ms=local_midnight_ms(last + timedelta(days=1), zone_info),
            tz=tz,
        )

    @property
    def zoneinfo(self) -> ZoneInfo:
        return time_zone(self.tz)

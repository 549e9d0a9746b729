"""Monthly spend prorated over a report's period, by days.

A month's spend is spread evenly over the month's days in the report's time zone: a
period covering d of the D days of a month gets amount x d / D of it. A day the period
covers only partly (a period not on local midnights) counts for the part it covers, so
a day of 23 or 25 hours (a DST change) still counts as one whole day when covered. The
sum over a label's months is rounded once, to the cent, half up.
"""

from __future__ import annotations

import calendar
import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class MonthSpend:
    label: str
    month: dt.date  # the first day of the month
    amount: Decimal


def _local(ms: int, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms // 1000, zone) + dt.timedelta(milliseconds=ms % 1000)


def _midnight_ms(day: dt.date, zone: zoneinfo.ZoneInfo) -> int:
    moment = dt.datetime.combine(day, dt.time(), zone)
    return int(moment.timestamp()) * 1000


def period_days(start_ms: int, end_ms: int, tz: str) -> tuple[dt.date, dt.date]:
    """The first and the last local day [start_ms, end_ms) touches."""
    zone = zoneinfo.ZoneInfo(tz)
    return _local(start_ms, zone).date(), _local(max(start_ms, end_ms - 1), zone).date()


def covered_days(start_ms: int, end_ms: int, tz: str) -> dict[dt.date, Fraction]:
    """(first day of a month) -> how many of its local days [start_ms, end_ms) covers."""
    zone = zoneinfo.ZoneInfo(tz)
    covered: dict[dt.date, Fraction] = defaultdict(Fraction)
    if end_ms <= start_ms:
        return covered
    day, last = period_days(start_ms, end_ms, tz)
    while day <= last:
        following = day + dt.timedelta(days=1)
        day_start, day_end = _midnight_ms(day, zone), _midnight_ms(following, zone)
        overlap = min(end_ms, day_end) - max(start_ms, day_start)
        if overlap > 0:
            covered[day.replace(day=1)] += Fraction(overlap, day_end - day_start)
        day = following
    return covered


def prorated(
    spends: Iterable[MonthSpend], start_ms: int, end_ms: int, tz: str
) -> dict[str, Decimal]:
    """label -> its spend over [start_ms, end_ms), for every label with a spend row given
    (0.00 for a label whose months the period does not touch)."""
    covered = covered_days(start_ms, end_ms, tz)
    totals: dict[str, Fraction] = defaultdict(Fraction)
    for spend in spends:
        days_in_month = calendar.monthrange(spend.month.year, spend.month.month)[1]
        share = covered.get(spend.month, Fraction(0)) / days_in_month
        totals[spend.label] += Fraction(spend.amount) * share
    return {label: _to_cents(total) for label, total in totals.items()}


def _to_cents(value: Fraction) -> Decimal:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return exact.quantize(CENT, rounding=ROUND_HALF_UP)

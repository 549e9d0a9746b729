"""A report's period from the query: whole local days ``from``..``to`` in ``tz``.

``to`` defaults to today in ``tz`` and ``from`` to six days before ``to`` (a week). The
tenant has no time zone of its own in the control API yet, so ``tz`` defaults to UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import Query

from vpbx_common.analytics import ReportPeriod, time_zone

from .errors import BadPeriod

MAX_DAYS = 400
DEFAULT_DAYS = 7
DEFAULT_TZ = "UTC"
# Every local midnight of these days, in any zone, is a valid epoch-ms bound of the store.
EARLIEST = dt.date(2000, 1, 1)
LATEST = dt.date(2099, 12, 30)


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """The days asked for (for file names) and the period they are."""

    first: dt.date
    last: dt.date
    period: ReportPeriod


def report_window(
    from_: Annotated[
        dt.date | None,
        Query(
            alias="from",
            description="first day of the report (YYYY-MM-DD, local to `tz`), included. "
            "Default: six days before `to`",
            examples=["2026-12-01"],
        ),
    ] = None,
    to: Annotated[
        dt.date | None,
        Query(
            description="last day of the report, included; at most 400 days after `from`. "
            "Default: today in `tz`",
            examples=["2026-12-07"],
        ),
    ] = None,
    tz: Annotated[
        str | None,
        Query(
            max_length=64,
            description="IANA time zone the days, weeks, months and hours are read in. "
            "Default: UTC (tenants have no time zone setting yet)",
            examples=["Europe/Moscow"],
        ),
    ] = None,
) -> ReportWindow:
    zone_name = DEFAULT_TZ if tz is None else tz
    try:
        zone = time_zone(zone_name)
    except ValueError as exc:
        raise BadPeriod("query.tz", str(exc)) from exc
    last = to if to is not None else dt.datetime.now(zone).date()
    first = from_ if from_ is not None else last - dt.timedelta(days=DEFAULT_DAYS - 1)
    for field, day in (("query.from", first), ("query.to", last)):
        if not EARLIEST <= day <= LATEST:
            raise BadPeriod(field, f"must be between {EARLIEST} and {LATEST}")
    if first > last:
        raise BadPeriod("query.from", "must not be after `to`")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadPeriod("query.to", f"the period is at most {MAX_DAYS} days")
    return ReportWindow(first, last, ReportPeriod.from_dates(first, last, zone_name))

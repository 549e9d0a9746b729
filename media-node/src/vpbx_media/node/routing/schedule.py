"""Is a schedule open at an instant? Pure: the instant comes in, no clock is read.

The schedule's own time zone decides the local date and time. A special day
(holiday, short day) replaces that date's weekly hours entirely; a special day
without hours is closed all day. Hours are [start, end) in local time, "24:00"
ending at midnight.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

from vpbx_common.nodeconfig import HoursEntry, ScheduleEntry

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class ScheduleVerdict:
    open: bool
    why: str  # for the route: "mon 09:00-18:00", "special day New Year: closed all day"


def _minute(clock: str) -> int:
    hours, _, minutes = clock.partition(":")
    return int(hours) * 60 + int(minutes)


def _within(hours: Sequence[HoursEntry], seconds: float) -> HoursEntry | None:
    for entry in hours:
        if _minute(entry.start) * 60 <= seconds < _minute(entry.end) * 60:
            return entry
    return None


def schedule_state(schedule: ScheduleEntry, at: dt.datetime) -> ScheduleVerdict:
    """Whether ``schedule`` is open at the aware instant ``at``.

    A time zone this node does not know (the API checks it; a hand-written file
    may not) counts as open, like a deleted schedule: a caller is better put
    through than locked out by a typo.
    """
    try:
        zone = zoneinfo.ZoneInfo(schedule.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ScheduleVerdict(True, f"unknown time zone {schedule.time_zone!r}: open")
    local = at.astimezone(zone)
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    stamp = f"{local:%Y-%m-%d %H:%M} {schedule.time_zone}"
    date = local.date().isoformat()
    for special in schedule.special_days:
        if special.date == date:
            name = f"special day {special.name or date}"
            if not special.hours:
                return ScheduleVerdict(False, f"{name}: closed all day ({stamp})")
            entry = _within(special.hours, seconds)
            if entry is None:
                return ScheduleVerdict(False, f"{name}: outside its hours ({stamp})")
            return ScheduleVerdict(True, f"{name}: {entry.start}-{entry.end} ({stamp})")
    day = _WEEKDAYS[local.weekday()]
    entry = _within([hours for hours in schedule.weekly if hours.day == day], seconds)
    if entry is None:
        return ScheduleVerdict(False, f"outside weekly hours ({stamp}, {day})")
    return ScheduleVerdict(True, f"{day} {entry.start}-{entry.end} ({stamp})")

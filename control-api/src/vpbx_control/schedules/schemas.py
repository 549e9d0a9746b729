from __future__ import annotations

import datetime as dt
import enum
import itertools
import re
import uuid
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from ..schema_base import StrictInput

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class Weekday(enum.StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


def _clock(value: str) -> str:
    if not _CLOCK.fullmatch(value):
        raise ValueError("time must be HH:MM between 00:00 and 24:00")
    return value


def _time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
    return value


Clock = Annotated[str, AfterValidator(_clock), Field(examples=["09:00"])]
TimeZone = Annotated[str, AfterValidator(_time_zone), Field(examples=["Europe/Moscow"])]
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^\S(.*\S)?$")]


class Hours(StrictInput):
    start: Clock
    end: Clock

    @model_validator(mode="after")
    def _ordered(self) -> Hours:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class WeeklyHours(Hours):
    day: Weekday


class SpecialDay(StrictInput):
    date: dt.date
    name: str = Field(default="", max_length=100, examples=["New Year"])
    hours: list[Hours] = Field(
        default_factory=list, description="open hours that day; empty = closed all day"
    )


def _no_overlaps(intervals: list[tuple[str, str]]) -> bool:
    ordered = sorted(intervals)
    return all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(ordered))


class _ScheduleFields(StrictInput):
    @model_validator(mode="after")
    def _consistent(self) -> _ScheduleFields:
        weekly: list[WeeklyHours] | None = getattr(self, "weekly", None)
        for day in Weekday:
            if weekly and not _no_overlaps([(h.start, h.end) for h in weekly if h.day is day]):
                raise ValueError(f"weekly hours overlap on {day.value}")
        special: list[SpecialDay] | None = getattr(self, "special_days", None)
        if special:
            dates = [entry.date for entry in special]
            if len(dates) != len(set(dates)):
                raise ValueError("special_days lists a date twice")
        return self


class ScheduleCreate(_ScheduleFields):
    name: Name = Field(examples=["office hours"])
    time_zone: TimeZone
    weekly: list[WeeklyHours] = Field(
        default_factory=list,
        max_length=100,
        examples=[[{"day": "mon", "start": "09:00", "end": "18:00"}]],
    )
    special_days: list[SpecialDay] = Field(
        default_factory=list,
        max_length=366,
        examples=[[{"date": "2027-01-01", "name": "New Year", "hours": []}]],
    )


class ScheduleUpdate(_ScheduleFields):
    name: Name | None = None
    time_zone: TimeZone | None = None
    weekly: list[WeeklyHours] | None = Field(default=None, max_length=100)
    special_days: list[SpecialDay] | None = Field(default=None, max_length=366)


class ScheduleOut(BaseModel):
    id: uuid.UUID
    name: str
    time_zone: str
    weekly: list[WeeklyHours]
    special_days: list[SpecialDay]
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime

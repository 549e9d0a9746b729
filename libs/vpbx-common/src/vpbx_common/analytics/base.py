"""What every report has in common: its scope and period, its queries, its registry entry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

from vpbx_common.analytics.period import ReportPeriod
from vpbx_common.analytics.scope import ScopedQuery, TenantScope
from vpbx_common.cdr.store import Row


class GroupBy(StrEnum):
    """How a report's rows are keyed (keys are text; local ones read in the period's tz)."""

    DAY = "day"  # 'YYYY-MM-DD', the local day the call started
    WEEK = "week"  # 'YYYY-MM-DD', the local Monday of its ISO week
    MONTH = "month"  # 'YYYY-MM'
    HOUR = "hour"  # '00'..'23', the local hour of day
    WEEKDAY = "weekday"  # '1'..'7', ISO: Monday = 1
    # The extension that answered (a missed call: the last one it rang, or ''); for an
    # outbound call the extension that placed it.
    USER = "user"
    NUMBER = "number"  # the tenant's number dialled (inbound calls; '' for the others)
    LABEL = "label"  # that number's ad-channel label ('' for none)
    GROUP = "group"  # the last group the call entered ('' for none)


# The SQL of each key over {calls} columns. `_local` is the call's start as a DateTime in the
# report's zone (KEY_PRELUDE); 18.16's formatDateTime ignores a DateTime's zone, so keys are
# built from toDate/toHour/toMonday/toDayOfWeek, which honour it on both engines.
KEY_PRELUDE = "toDateTime(intDiv(start_ms, 1000), {tz}) AS _local"
KEY_SQL: dict[GroupBy, str] = {
    GroupBy.DAY: "toString(toDate(_local))",
    GroupBy.WEEK: "toString(toMonday(_local))",
    GroupBy.MONTH: "substring(toString(toDate(_local)), 1, 7)",
    GroupBy.HOUR: "concat(if(toHour(_local) < 10, '0', ''), toString(toHour(_local)))",
    GroupBy.WEEKDAY: "toString(toDayOfWeek(_local))",
    GroupBy.USER: (
        "if(direction = 'outbound', caller, if(answered_by != '', answered_by, last_rung))"
    ),
    GroupBy.NUMBER: "if(direction = 'inbound', dialled, '')",
    GroupBy.LABEL: "label",
    GroupBy.GROUP: "group_name",
}


class CallDirection(StrEnum):
    """Which calls a report counts."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    ALL = "all"

    @property
    def sql(self) -> str:
        """A condition on {calls} columns."""
        if self is CallDirection.ALL:
            return "1"
        return f"direction = '{self.value}'"


# A caller that is a phone number (not an extension, not anonymous): 7 to 15 digits, with or
# without '+'. Only such numbers can be called back or counted as repeated callers.
REAL_NUMBER_SQL = "match({column}, '^[+]?[0-9]{{7,15}}$')"


def real_number(column: str) -> str:
    return REAL_NUMBER_SQL.format(column=column)


class ReportResult(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class Report(ABC):
    """One report for one tenant and period.

    Every report is constructible as ``cls(scope, period)``; its own options are keyword-only
    with defaults, so a test (or the API) can enumerate REPORTS. ``queries()`` builds its
    queries, all through ``self.scope`` (that is what keeps a report inside its tenant); the
    caller runs them in one session (``CdrStore.read`` or the control API's ``CdrReader.read``)
    and hands the rows, in order, to ``parse()``.
    """

    name: ClassVar[str]

    def __init__(self, scope: TenantScope, period: ReportPeriod) -> None:
        self.scope = scope
        self.period = period

    def query(self, template: str, **params: Any) -> ScopedQuery:
        """A query of this report's tenant and period (see TenantScope.query)."""
        return self.scope.query(template, params, period=self.period)

    @abstractmethod
    def queries(self) -> tuple[ScopedQuery, ...]: ...

    @abstractmethod
    def parse(self, rows: list[list[Row]]) -> ReportResult: ...


REPORTS: dict[str, type[Report]] = {}

_ReportClass = TypeVar("_ReportClass", bound=type[Report])


def register(name: str) -> Callable[[_ReportClass], _ReportClass]:
    """Class decorator: list the report in REPORTS under ``name`` (its URL name)."""

    def add(cls: _ReportClass) -> _ReportClass:
        if name in REPORTS and REPORTS[name] is not cls:
            raise ValueError(f"two reports named {name!r}")
        cls.name = name
        REPORTS[name] = cls
        return cls

    return add


def seconds(ms: Any) -> float:
    """A millisecond figure as the reports give it: seconds, to the millisecond."""
    return round(int(ms) / 1000, 3)


def optional_ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator rounded to 4 places, None when there is nothing to divide."""
    return None if denominator == 0 else round(numerator / denominator, 4)

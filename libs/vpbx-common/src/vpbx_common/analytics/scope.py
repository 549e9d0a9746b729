"""The tenant scope: the one place where analytics queries are restricted to one tenant.

A report never names a table. It writes its SQL against placeholders standing for tables
(``{calls}``, ``{legs}``, ``{deals}``, each also as ``{..._since}`` and ``{..._all}``), and
``TenantScope.query`` replaces each by a subquery that reads only the tenant's rows (and, for
the period-bound forms, only the period's). A template that names a raw table, reads FROM or
JOINs anything but a scoped source or a subquery, or reads no scoped source at all is refused
(ScopeError), so a report cannot forget the tenant: there is nothing else it can read.

The subqueries use FINAL, so every version of a call (a batch shipped twice, a node-lost record
replaced by the real one) counts once, and they restrict only by columns all versions of a row
share (tenant, the call's start), so the latest version is the one that counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from vpbx_common.analytics.period import ReportPeriod
from vpbx_common.cdr.migrations import (
    ANALYTICS_COLUMNS,
    CDR_TABLE,
    DEAL_EVENTS_TABLE,
    LEG_COLUMNS,
    LEGS_TABLE,
    MIGRATIONS_TABLE,
    RECORD_COLUMNS,
)
from vpbx_common.cdr.store import CdrQuery, SqlValue


class ScopeError(ValueError):
    """A report's query template could read past its tenant: a programming error."""


class Span(StrEnum):
    PERIOD = "period"  # rows of calls that started in [start_ms, end_ms)
    SINCE = "since"  # rows of calls that started at start_ms or later (callbacks after the end)
    ALL = "all"  # every row of the tenant (history before the period: first-time callers)


@dataclass(frozen=True, slots=True)
class Source:
    """A table as reports see it: the columns they may read and the time the period bounds."""

    table: str
    columns: tuple[str, ...]  # () for every column
    time_column: str
    final: bool = True


# The route (up to ~100 KB a call) and the recording key are left out of {calls}: reports read
# the derived columns, and a narrower subquery keeps 18.16 from reading the route at all.
_CALL_COLUMNS = tuple(c for c in RECORD_COLUMNS if c not in ("route", "recording"))

SOURCES: dict[str, Source] = {
    "calls": Source(CDR_TABLE, (*_CALL_COLUMNS, *ANALYTICS_COLUMNS), "start_ms"),
    # A leg is filed under its call's start (start_ms), so a call's legs share its period.
    "legs": Source(LEGS_TABLE, LEG_COLUMNS, "start_ms"),
    # Deal events from the CRM (migration 8, part D): every column, bounded by the event time.
    "deals": Source(DEAL_EVENTS_TABLE, (), "at_ms"),
}

# Reports may not name these (nor anything in `system.`): they read through SOURCES only.
RAW_TABLES = (CDR_TABLE, LEGS_TABLE, DEAL_EVENTS_TABLE, MIGRATIONS_TABLE)

_SCOPE_PREFIX = "scope_"
_SOURCE_NAMES = "|".join(SOURCES)
_SOURCE = re.compile(r"\{(" + _SOURCE_NAMES + r")(?:_(since|all))?\}")
_RAW = re.compile(r"\b(" + "|".join(RAW_TABLES) + r")\b|\bsystem\s*\.", re.IGNORECASE)
# After FROM or JOIN only a scoped source or a parenthesised subquery may follow.
_UNSCOPED_READ = re.compile(
    r"\b(FROM|JOIN)\s+(?!\(|\{(?:" + _SOURCE_NAMES + r")(?:_since|_all)?\})(\S+)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ScopedQuery(CdrQuery):
    """A CdrQuery built by a TenantScope: it reads only ``tenant``'s rows."""

    tenant: str = field(default="", kw_only=True)


@dataclass(frozen=True, slots=True)
class TenantScope:
    tenant: str

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, str) or not self.tenant:
            raise ScopeError("a tenant scope needs a tenant name")

    def query(
        self,
        template: str,
        params: Mapping[str, SqlValue] | None = None,
        *,
        period: ReportPeriod | None = None,
    ) -> ScopedQuery:
        """``template`` with each ``{source}`` replaced by the tenant's rows of it.

        ``{calls}``/``{legs}``/``{deals}`` are the rows of the period, ``{calls_since}`` etc.
        the rows from the period's start on, ``{calls_all}`` etc. all the tenant's rows. Other
        ``{name}`` placeholders are bound from ``params`` as CdrQuery does. Raises ScopeError.
        """
        values = dict(params or {})
        check_template(template)
        reserved = sorted(name for name in values if name.startswith(_SCOPE_PREFIX))
        if reserved:
            raise ScopeError(f"parameter names starting with {_SCOPE_PREFIX!r}: {reserved}")
        spans: set[Span] = set()

        def subquery(match: re.Match[str]) -> str:
            span = Span(match.group(2)) if match.group(2) else Span.PERIOD
            spans.add(span)
            return _subquery(SOURCES[match.group(1)], span)

        text = _SOURCE.sub(subquery, template)
        values[f"{_SCOPE_PREFIX}tenant"] = self.tenant
        if spans - {Span.ALL}:
            if period is None:
                raise ScopeError("the template reads a period-bound source but has no period")
            values[f"{_SCOPE_PREFIX}start_ms"] = period.start_ms
        if Span.PERIOD in spans:
            assert period is not None  # checked above
            values[f"{_SCOPE_PREFIX}end_ms"] = period.end_ms
        return ScopedQuery(text, values, tenant=self.tenant)


def check_template(template: str) -> None:
    """Refuse a template that could read anything but scoped sources (ScopeError)."""
    raw = _RAW.search(template)
    if raw is not None:
        raise ScopeError(
            f"the template names {raw.group(0).strip()!r}: read {{calls}}, {{legs}} or"
            " {deals} instead, which the tenant scope restricts"
        )
    unscoped = _UNSCOPED_READ.search(template)
    if unscoped is not None:
        raise ScopeError(
            f"the template reads {unscoped.group(2)!r} after {unscoped.group(1)}: only scoped"
            " sources ({calls}, {legs}, {deals}, ..._since, ..._all) and subqueries may follow"
        )
    if _SOURCE.search(template) is None:
        raise ScopeError("the template reads no scoped source ({calls}, {legs} or {deals})")
    if "{" + _SCOPE_PREFIX in template:
        raise ScopeError(f"placeholders starting with {_SCOPE_PREFIX!r} are the scope's own")


def _subquery(source: Source, span: Span) -> str:
    columns = ", ".join(source.columns) if source.columns else "*"
    final = " FINAL" if source.final else ""
    where = f"tenant = {{{_SCOPE_PREFIX}tenant}}"
    if span is not Span.ALL:
        where += f" AND {source.time_column} >= {{{_SCOPE_PREFIX}start_ms}}"
    if span is Span.PERIOD:
        where += f" AND {source.time_column} < {{{_SCOPE_PREFIX}end_ms}}"
    # Identifiers here are module constants; values are placeholders bound by CdrQuery.
    return f"(SELECT {columns} FROM {source.table}{final} WHERE {where})"  # noqa: S608

"""The tenant's call records: the one place where CDR queries are written.

Every query is built from ``_latest()``, which reads the latest version of each call
(``FINAL``: the table is a ReplacingMergeTree, see docs/cdr.md) of the caller's tenant only;
filters that may differ between versions of one call (answer, end reason, route) apply in the
outer query, after the versions collapsed. Values are bound by ``CdrQuery`` (sql_literal), never
formatted into the text; the text is built from constant fragments. Everything here runs on
ClickHouse 18.16 and chdb alike: ``position()`` on the route's compact JSON instead of the
``JSON*`` functions 18.16 lacks, ``LIMIT n OFFSET m``, ``IS NULL`` on the Nullable answer time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from vpbx_common.cdr import RECORD_COLUMNS, CallRecord, CdrQuery, Direction, record_from_row
from vpbx_common.cdr.migrations import CDR_TABLE
from vpbx_common.cdr.store import SqlValue

from ..paging import PageParams
from .schemas import CallStatus
from .store import CdrReader

_COLUMNS = ", ".join(RECORD_COLUMNS)

# Route outcomes that mean an extension's phone was offered the call (docs/cdr.md, the node's
# routing Outcome values as the compact route JSON holds them, with "member" right after). Text
# inside a subject or detail cannot fake a match: its quotes are escaped there (\"outcome\").
# A route longer than 200 steps has lost its middle (bounded_route), and with it such steps.
_OFFERED_NEEDLES = (
    ('"outcome":"ringing","member":', ""),
    ('"outcome":"answered","member":', ""),
    ('"outcome":"queued","member":', ',"detail":"offered"'),
)


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which of the tenant's calls the caller may see: all of them (supervisors, tenant admins)
    or those involving one extension (an agent's own); an agent without an extension (or an
    agent API key, which has none) sees no call."""

    all_calls: bool
    extension: str | None = None

    @property
    def nothing(self) -> bool:
        return not self.all_calls and not self.extension


EVERYTHING = Visibility(all_calls=True)


@dataclass(frozen=True, slots=True)
class CallFilters:
    from_ms: int  # start_ms >= from_ms
    to_ms: int  # start_ms < to_ms
    number: str | None = None  # dialled, E.164
    involving: str | None = None  # an extension that answered, was offered or placed the call
    direction: Direction | None = None
    status: CallStatus | None = None
    label: str | None = None


class _Where:
    """Conditions of constant SQL text with their bound values, ANDed."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: dict[str, SqlValue] = {}

    def add(self, sql: str, **params: SqlValue) -> None:
        clash = params.keys() & self.params.keys()
        if clash:
            raise ValueError(f"placeholder used twice: {sorted(clash)}")
        self.parts.append(sql)
        self.params.update(params)

    def involving(self, extension: str, prefix: str) -> None:
        """Calls the extension answered, was offered (rung, offered by a queue) or placed."""
        names = {"ext": f"{prefix}_ext"}
        params: dict[str, SqlValue] = {names["ext"]: extension}
        tests = [
            f"answered_by = {{{names['ext']}}}",
            f"(caller = {{{names['ext']}}} AND direction != 'inbound')",
        ]
        member = json.dumps(extension, ensure_ascii=False)  # as dumps_route() writes it
        for index, (head, tail) in enumerate(_OFFERED_NEEDLES):
            name = f"{prefix}_offered_{index}"
            params[name] = head + member + tail
            tests.append(f"position(route, {{{name}}}) > 0")
        self.add("(" + " OR ".join(tests) + ")", **params)

    @property
    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "1"


class CallRepository:
    """The calls of one tenant, as one caller may see them."""

    def __init__(self, reader: CdrReader, tenant: str, visibility: Visibility) -> None:
        self.reader = reader
        self.tenant = tenant
        self.visibility = visibility

    def _latest(self, where: str, **params: SqlValue) -> CdrQuery:
        """The latest version of each of the tenant's calls that match ``where`` (constant text
        on columns every version of a call shares: call_id, start_ms)."""
        sql = f"SELECT {_COLUMNS} FROM {CDR_TABLE} FINAL WHERE tenant = {{tenant}} AND {where}"  # noqa: S608
        return CdrQuery(sql, {"tenant": self.tenant, **params})

    def _visible(self) -> _Where:
        where = _Where()
        if not self.visibility.all_calls and self.visibility.extension:
            where.involving(self.visibility.extension, "visible")
        return where

    async def page(self, filters: CallFilters, paging: PageParams) -> tuple[list[CallRecord], int]:
        """Newest first (by start time, then call id); the matching calls' count."""
        if self.visibility.nothing:
            return [], 0
        latest = self._latest(
            "start_ms >= {from_ms} AND start_ms < {to_ms}",
            from_ms=filters.from_ms,
            to_ms=filters.to_ms,
        )
        where = self._visible()
        if filters.number is not None:
            where.add("dialled = {number}", number=filters.number)
        if filters.involving is not None:
            where.involving(filters.involving, "user")
        if filters.direction is not None:
            where.add("direction = {direction}", direction=filters.direction.value)
        if filters.label is not None:
            where.add("label = {label}", label=filters.label)
        if filters.status is CallStatus.ANSWERED:
            where.add("answer_ms IS NOT NULL")
        elif filters.status is CallStatus.MISSED:
            where.add("answer_ms IS NULL")
        elif filters.status is not None:
            where.add("end_reason = {end_reason}", end_reason=filters.status.value)
        params = {**latest.params, **where.params}
        rows, counted = await self.reader.read(
            CdrQuery(
                f"SELECT {_COLUMNS} FROM ({latest.template}) WHERE {where.sql}"  # noqa: S608
                " ORDER BY start_ms DESC, call_id DESC LIMIT {limit} OFFSET {offset}",
                {**params, "limit": paging.limit, "offset": paging.offset},
            ),
            CdrQuery(f"SELECT count() FROM ({latest.template}) WHERE {where.sql}", params),  # noqa: S608
        )
        return [record_from_row(row) for row in rows], int(counted[0][0]) if counted else 0

    async def find(self, call_id: str) -> CallRecord | None:
        """The call, if it is the tenant's and the caller may see it."""
        if self.visibility.nothing:
            return None
        latest = self._latest("call_id = {call_id}", call_id=call_id)
        where = self._visible()
        [rows] = await self.reader.read(
            CdrQuery(
                f"SELECT {_COLUMNS} FROM ({latest.template}) WHERE {where.sql} LIMIT 1",  # noqa: S608
                {**latest.params, **where.params},
            )
        )
        return record_from_row(rows[0]) if rows else None

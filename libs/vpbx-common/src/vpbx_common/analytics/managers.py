"""The managers report: per manager, the calls offered to them and how they went, the deals
they moved and won, and attribution (who brought the client, who closed the deal).

CDRs know managers by extension, deal events by user id. The report keeps both keys: given
``users`` (extension -> user id, which the control API knows), a user's extensions and their
deal steps make one row; an extension no user has is a row of its own (``user_id`` ''), and so
is a user with deal steps but no extension given. Definitions: docs/analytics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from vpbx_common.analytics.base import Report, register, seconds
from vpbx_common.analytics.deal_figures import (
    FIRST_CALLS,
    WON_DEALS,
    amounts_json,
    as_int,
    money,
)
from vpbx_common.analytics.period import ReportPeriod
from vpbx_common.analytics.scope import ScopedQuery, TenantScope
from vpbx_common.cdr.store import Row

# Inbound calls offered to each extension: it rang there (a `ringing` leg naming it) or it
# answered (a call put straight through has no route, so no leg). One row per (extension,
# call); the answering row carries the talk time, so it is counted once per call.
# 18.16 wants the same types on both sides of UNION ALL: the literals are cast.
_INBOUND = """
SELECT extension, uniqExact(call_id), uniqExactIf(call_id, answered_here = 1), sum(talk)
FROM (
    SELECT member AS extension, call_id, toUInt8(0) AS answered_here, toUInt64(0) AS talk
    FROM {legs}
    WHERE outcome = 'ringing' AND member != ''
        AND call_id IN (SELECT call_id FROM {calls} WHERE direction = 'inbound')
    UNION ALL
    SELECT answered_by AS extension, call_id, toUInt8(1) AS answered_here, talk_ms AS talk
    FROM {calls}
    WHERE direction = 'inbound' AND answered_by != ''
)
GROUP BY extension
"""
_OUTBOUND = """
SELECT caller, count(), countIf(isNotNull(answer_ms)), sum(talk_ms)
FROM {calls}
WHERE direction = 'outbound' AND caller != ''
GROUP BY caller
"""
_CLIENTS_BROUGHT = f"""
SELECT first_answered_by, count() FROM ({FIRST_CALLS})
WHERE first_answered_by != '' GROUP BY first_answered_by
"""  # noqa: S608
# Steps made by a user (an API key's or the system's steps have no user and are left out).
_DEAL_STEPS = """
SELECT user_id, uniqExactIf(deal_id, kind = 'created'), uniqExactIf(deal_id, kind != 'created')
FROM {deals}
WHERE user_id != ''
GROUP BY user_id
"""
_WON_BY_OWNER = f"""
SELECT owner_user_id, currency, count(), sum(amount) FROM ({WON_DEALS})
WHERE owner_user_id != '' GROUP BY owner_user_id, currency
"""  # noqa: S608
_CLOSED_BY = f"""
SELECT user_id, count() FROM ({WON_DEALS}) WHERE user_id != '' GROUP BY user_id
"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class ManagerRow:
    key: str  # the user id, or the extension when no user is known for it
    user_id: str  # '' when the extension is no known user's
    extensions: tuple[str, ...]  # the extensions whose calls are counted here
    offered: int  # inbound calls that rang them (or that they answered)
    answered: int  # ...that they answered
    missed: int  # ...that they did not (someone else may have)
    talk_s: float  # talk time of the inbound calls they answered
    outbound: int  # calls they placed
    outbound_answered: int
    outbound_talk_s: float
    clients_brought: int  # first calls of new callers that they answered
    deals_created: int  # deals they created
    deals_moved: int  # deals they moved (any step after creation: stage, won, lost, reopened)
    deals_won: int  # won deals they are responsible for (owner_user_id at the win)
    won_amounts: Mapping[str, Decimal]  # ...their amounts per currency
    deals_closed: int  # won deals whose winning step they made (user_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "user_id": self.user_id,
            "extensions": list(self.extensions),
            "offered": self.offered,
            "answered": self.answered,
            "missed": self.missed,
            "talk_s": self.talk_s,
            "outbound": self.outbound,
            "outbound_answered": self.outbound_answered,
            "outbound_talk_s": self.outbound_talk_s,
            "clients_brought": self.clients_brought,
            "deals_created": self.deals_created,
            "deals_moved": self.deals_moved,
            "deals_won": self.deals_won,
            "won_amounts": amounts_json(self.won_amounts),
            "deals_closed": self.deals_closed,
        }


@dataclass(frozen=True, slots=True)
class ManagersResult:
    rows: tuple[ManagerRow, ...]  # by key

    def to_json(self) -> dict[str, Any]:
        return {"rows": [row.to_json() for row in self.rows]}


@dataclass(slots=True)
class _Figures:
    user_id: str
    extensions: set[str] = field(default_factory=set)
    offered: int = 0
    answered: int = 0
    talk_ms: int = 0
    outbound: int = 0
    outbound_answered: int = 0
    outbound_talk_ms: int = 0
    clients_brought: int = 0
    deals_created: int = 0
    deals_moved: int = 0
    deals_won: int = 0
    won_amounts: dict[str, Decimal] = field(default_factory=dict)
    deals_closed: int = 0


@register("managers")
class ManagersReport(Report):
    """``users``: extension -> user id (the control API's users and their extensions)."""

    def __init__(
        self,
        scope: TenantScope,
        period: ReportPeriod,
        *,
        users: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, period)
        given = dict(users or {})
        for extension, user_id in given.items():
            if not isinstance(extension, str) or not extension:
                raise ValueError(f"users: extensions must be non-empty strings, got {extension!r}")
            if not isinstance(user_id, str) or not user_id:
                raise ValueError(f"users: the user id of {extension!r} must be a non-empty string")
        self.users = given

    def queries(self) -> tuple[ScopedQuery, ...]:
        bounds = {"from_ms": self.period.start_ms, "to_ms": self.period.end_ms}
        return (
            self.query(_INBOUND),
            self.query(_OUTBOUND),
            self.query(_CLIENTS_BROUGHT, **bounds),
            self.query(_DEAL_STEPS),
            self.query(_WON_BY_OWNER),
            self.query(_CLOSED_BY),
        )

    def parse(self, rows: list[list[Row]]) -> ManagersResult:
        inbound, outbound, brought, steps, won, closed = rows
        managers: dict[str, _Figures] = {}

        def by_extension(extension: Any) -> _Figures:
            extension = str(extension)
            user_id = self.users.get(extension, "")
            figures = managers.setdefault(user_id or extension, _Figures(user_id))
            figures.extensions.add(extension)
            return figures

        def by_user(user_id: Any) -> _Figures:
            user_id = str(user_id)
            return managers.setdefault(user_id, _Figures(user_id))

        for extension, offered, answered, talk in inbound:
            figures = by_extension(extension)
            figures.offered += as_int(offered)
            figures.answered += as_int(answered)
            figures.talk_ms += as_int(talk)
        for extension, placed, answered, talk in outbound:
            figures = by_extension(extension)
            figures.outbound += as_int(placed)
            figures.outbound_answered += as_int(answered)
            figures.outbound_talk_ms += as_int(talk)
        for extension, n in brought:
            by_extension(extension).clients_brought += as_int(n)
        for user_id, created, moved in steps:
            figures = by_user(user_id)
            figures.deals_created += as_int(created)
            figures.deals_moved += as_int(moved)
        for user_id, currency, n, amount in won:
            figures = by_user(user_id)
            figures.deals_won += as_int(n)
            amounts = figures.won_amounts
            amounts[str(currency)] = amounts.get(str(currency), Decimal(0)) + money(as_int(amount))
        for user_id, n in closed:
            by_user(user_id).deals_closed += as_int(n)
        return ManagersResult(rows=tuple(_row(key, managers[key]) for key in sorted(managers)))


def _row(key: str, figures: _Figures) -> ManagerRow:
    return ManagerRow(
        key=key,
        user_id=figures.user_id,
        extensions=tuple(sorted(figures.extensions)),
        offered=figures.offered,
        answered=figures.answered,
        missed=figures.offered - figures.answered,
        talk_s=seconds(figures.talk_ms),
        outbound=figures.outbound,
        outbound_answered=figures.outbound_answered,
        outbound_talk_s=seconds(figures.outbound_talk_ms),
        clients_brought=figures.clients_brought,
        deals_created=figures.deals_created,
        deals_moved=figures.deals_moved,
        deals_won=figures.deals_won,
        won_amounts=dict(figures.won_amounts),
        deals_closed=figures.deals_closed,
    )

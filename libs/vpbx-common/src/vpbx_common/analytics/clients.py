"""The clients report: of N inbound calls, how many from existing clients, unknown numbers, VIPs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vpbx_common.analytics.base import Report, real_number, register
from vpbx_common.analytics.period import ReportPeriod
from vpbx_common.analytics.scope import ScopedQuery, TenantScope
from vpbx_common.cdr.store import Row

DEFAULT_TOP = 10
MAX_TOP = 1000


@dataclass(frozen=True, slots=True)
class ClientCalls:
    contact_id: str
    category: str  # as the CRM knew it at the client's last call in the period
    vip: bool  # a VIP at any of those calls
    calls: int
    answered: int

    def to_json(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "category": self.category,
            "vip": self.vip,
            "calls": self.calls,
            "answered": self.answered,
        }


@dataclass(frozen=True, slots=True)
class RepeatedNumber:
    number: str
    calls: int

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "calls": self.calls}


@dataclass(frozen=True, slots=True)
class ClientsResult:
    total: int  # inbound calls in the period
    existing: int  # ...from a contact the CRM knew at call time (contact_id != '')
    unknown: int  # ...from anyone else (total - existing)
    vip: int  # ...from a VIP contact
    by_category: dict[str, int]  # existing calls per contact category ('' for none)
    clients: int  # distinct contacts that called
    repeated_numbers: int  # real numbers that called more than once
    repeated_calls: int  # the calls of those numbers
    repeated: tuple[RepeatedNumber, ...]  # the top of them, most calls first
    top_clients: tuple[ClientCalls, ...]  # contacts by calls, most first

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "existing": self.existing,
            "unknown": self.unknown,
            "vip": self.vip,
            "by_category": dict(self.by_category),
            "clients": self.clients,
            "repeated_numbers": self.repeated_numbers,
            "repeated_calls": self.repeated_calls,
            "repeated": [item.to_json() for item in self.repeated],
            "top_clients": [item.to_json() for item in self.top_clients],
        }


_INBOUND = "(SELECT * FROM {calls} WHERE direction = 'inbound')"
_SUMMARY = f"""
SELECT count(), countIf(contact_id != ''), countIf(contact_vip = 1),
    uniqExactIf(contact_id, contact_id != '')
FROM {_INBOUND}
"""  # noqa: S608
_BY_CATEGORY = f"""
SELECT contact_category, count() AS calls FROM {_INBOUND}
WHERE contact_id != '' GROUP BY contact_category ORDER BY contact_category
"""  # noqa: S608
_REPEATED_NUMBERS = """
SELECT caller, count() AS calls FROM {inbound}
WHERE {real_caller} GROUP BY caller HAVING calls > 1
"""
_TOP_CLIENTS = f"""
SELECT contact_id, argMax(contact_category, start_ms), max(contact_vip), count() AS calls,
    countIf(isNotNull(answer_ms))
FROM {_INBOUND}
WHERE contact_id != ''
GROUP BY contact_id ORDER BY calls DESC, contact_id LIMIT {{top}}
"""  # noqa: S608


@register("clients")
class ClientsReport(Report):
    def __init__(self, scope: TenantScope, period: ReportPeriod, *, top: int = DEFAULT_TOP) -> None:
        super().__init__(scope, period)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
            raise ValueError(f"top must be an integer 1..{MAX_TOP}")
        self.top = top

    def queries(self) -> tuple[ScopedQuery, ...]:
        repeated = _REPEATED_NUMBERS.format(inbound=_INBOUND, real_caller=real_number("caller"))
        return (
            self.query(_SUMMARY),
            self.query(_BY_CATEGORY),
            self.query(f"SELECT count(), sum(calls) FROM ({repeated})"),  # noqa: S608
            self.query(
                f"SELECT caller, calls FROM ({repeated}) ORDER BY calls DESC, caller LIMIT {{top}}",  # noqa: S608
                top=self.top,
            ),
            self.query(_TOP_CLIENTS, top=self.top),
        )

    def parse(self, rows: list[list[Row]]) -> ClientsResult:
        summary, by_category, repeated_summary, repeated, top = rows
        total, existing, vip, clients = (int(value) for value in summary[0])
        repeated_numbers, repeated_calls = repeated_summary[0] if repeated_summary else (0, 0)
        return ClientsResult(
            total=total,
            existing=existing,
            unknown=total - existing,
            vip=vip,
            by_category={str(category): int(calls) for category, calls in by_category},
            clients=clients,
            repeated_numbers=int(repeated_numbers),
            repeated_calls=int(repeated_calls or 0),
            repeated=tuple(RepeatedNumber(str(number), int(calls)) for number, calls in repeated),
            top_clients=tuple(
                ClientCalls(str(contact), str(category), bool(int(vip_)), int(n), int(answered))
                for contact, category, vip_, n, answered in top
            ),
        )

"""The channels report (static call tracking): what each ad-channel label brings and costs.

Per label: the inbound calls on the tenant's numbers carrying it, the first-time callers and new
contacts it brought, the deals created and won that came by it, and, with the spend the tenant
entered for it (the control API's /v1/ad-channels, an input here), the cost per call, per new
client and per won deal. The funnel per channel is first calls -> deals created -> deals won.
Definitions: deal_figures.py and docs/analytics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from vpbx_common.analytics.base import Report, optional_ratio, register
from vpbx_common.analytics.deal_figures import (
    CENT,
    FIRST_CALLS,
    WON_DEALS,
    amounts_json,
    as_int,
    cost,
    money,
    money_json,
)
from vpbx_common.analytics.period import ReportPeriod
from vpbx_common.analytics.scope import ScopedQuery, TenantScope
from vpbx_common.cdr.store import Row

DEFAULT_CURRENCY = "RUB"

_CALLS = """
SELECT label, count() FROM {calls} WHERE direction = 'inbound' GROUP BY label
"""
_FIRST_TIME_CALLERS = f"""
SELECT first_label, count() FROM ({FIRST_CALLS}) GROUP BY first_label
"""  # noqa: S608
# A contact's first inbound call that carried its id (the CRM knew the caller by then).
_NEW_CONTACTS = """
SELECT first_label, count()
FROM (
    SELECT contact_id, min(start_ms) AS first_ms, argMin(label, start_ms) AS first_label
    FROM {calls_all}
    WHERE direction = 'inbound' AND contact_id != ''
    GROUP BY contact_id
)
WHERE first_ms >= {from_ms} AND first_ms < {to_ms}
GROUP BY first_label
"""
_DEALS_CREATED = """
SELECT label, uniqExact(deal_id) FROM {deals} WHERE kind = 'created' GROUP BY label
"""
_DEALS_WON = f"""
SELECT label, currency, count(), sum(amount) FROM ({WON_DEALS}) GROUP BY label, currency
"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class Funnel:
    first_calls: int  # first-time callers
    deals_created: int
    deals_won: int

    def to_json(self) -> dict[str, Any]:
        return {
            "first_calls": self.first_calls,
            "deals_created": self.deals_created,
            "deals_won": self.deals_won,
            # Ratios of the counts of the same period (not a cohort followed over time).
            "first_call_to_deal": optional_ratio(self.deals_created, self.first_calls),
            "deal_to_won": optional_ratio(self.deals_won, self.deals_created),
        }


@dataclass(frozen=True, slots=True)
class ChannelRow:
    label: str  # '' : calls to numbers without a label, deals from no channel
    calls: int
    first_time_callers: int
    new_contacts: int
    deals_created: int
    deals_won: int
    won_amount: Decimal  # won in the report's currency
    won_amounts: Mapping[str, Decimal]  # per currency, every currency won in
    spend: Decimal  # as given (0 when none was given for the label)
    cost_per_call: Decimal | None
    cost_per_new_client: Decimal | None  # spend / first_time_callers
    cost_per_won_deal: Decimal | None

    @property
    def funnel(self) -> Funnel:
        return Funnel(self.first_time_callers, self.deals_created, self.deals_won)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "calls": self.calls,
            "first_time_callers": self.first_time_callers,
            "new_contacts": self.new_contacts,
            "deals_created": self.deals_created,
            "deals_won": self.deals_won,
            "won_amount": money_json(self.won_amount),
            "won_amounts": amounts_json(self.won_amounts),
            "spend": money_json(self.spend),
            "cost_per_call": money_json(self.cost_per_call),
            "cost_per_new_client": money_json(self.cost_per_new_client),
            "cost_per_won_deal": money_json(self.cost_per_won_deal),
            "funnel": self.funnel.to_json(),
        }


@dataclass(frozen=True, slots=True)
class ChannelsResult:
    currency: str
    rows: tuple[ChannelRow, ...]  # by label
    totals: ChannelRow  # label 'total'; every figure summed (each call, caller, deal once)

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "rows": [row.to_json() for row in self.rows],
            "totals": self.totals.to_json(),
        }


@dataclass(slots=True)
class _Figures:
    calls: int = 0
    first_time_callers: int = 0
    new_contacts: int = 0
    deals_created: int = 0
    deals_won: int = 0
    won_amounts: dict[str, Decimal] = field(default_factory=dict)


@register("channels")
class ChannelsReport(Report):
    """``spend``: label -> what the tenant spent on the channel over the period (the control
    API sums its monthly entries); ``currency``: the currency of ``won_amount`` and the spend."""

    def __init__(
        self,
        scope: TenantScope,
        period: ReportPeriod,
        *,
        spend: Mapping[str, Decimal] | None = None,
        currency: str = DEFAULT_CURRENCY,
    ) -> None:
        super().__init__(scope, period)
        given = dict(spend or {})
        for label, amount in given.items():
            if not isinstance(label, str):
                raise ValueError(f"spend labels must be strings, got {label!r}")
            if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
                raise ValueError(f"spend of {label!r} must be a non-negative Decimal")
        if not isinstance(currency, str) or not currency:
            raise ValueError("currency must be a currency code")
        self.spend = {label: amount.quantize(CENT) for label, amount in given.items()}
        self.currency = currency

    def queries(self) -> tuple[ScopedQuery, ...]:
        bounds = {"from_ms": self.period.start_ms, "to_ms": self.period.end_ms}
        return (
            self.query(_CALLS),
            self.query(_FIRST_TIME_CALLERS, **bounds),
            self.query(_NEW_CONTACTS, **bounds),
            self.query(_DEALS_CREATED),
            self.query(_DEALS_WON),
        )

    def parse(self, rows: list[list[Row]]) -> ChannelsResult:
        calls, first, contacts, created, won = rows
        figures: dict[str, _Figures] = {label: _Figures() for label in self.spend}

        def of(label: Any) -> _Figures:
            return figures.setdefault(str(label), _Figures())

        for label, n in calls:
            of(label).calls = as_int(n)
        for label, n in first:
            of(label).first_time_callers = as_int(n)
        for label, n in contacts:
            of(label).new_contacts = as_int(n)
        for label, n in created:
            of(label).deals_created = as_int(n)
        for label, currency, n, amount in won:
            channel = of(label)
            channel.deals_won += as_int(n)
            amounts = channel.won_amounts
            amounts[str(currency)] = amounts.get(str(currency), Decimal(0)) + money(as_int(amount))
        result_rows = tuple(self._row(label, figures[label]) for label in sorted(figures))
        totals = _Figures()
        for row in result_rows:
            totals.calls += row.calls
            totals.first_time_callers += row.first_time_callers
            totals.new_contacts += row.new_contacts
            totals.deals_created += row.deals_created
            totals.deals_won += row.deals_won
            for currency, amount in row.won_amounts.items():
                totals.won_amounts[currency] = totals.won_amounts.get(currency, Decimal(0)) + amount
        return ChannelsResult(
            currency=self.currency,
            rows=result_rows,
            totals=self._row("total", totals, sum(self.spend.values(), Decimal("0.00"))),
        )

    def _row(self, label: str, figures: _Figures, spend: Decimal | None = None) -> ChannelRow:
        spent = self.spend.get(label, Decimal("0.00")) if spend is None else spend
        return ChannelRow(
            label=label,
            calls=figures.calls,
            first_time_callers=figures.first_time_callers,
            new_contacts=figures.new_contacts,
            deals_created=figures.deals_created,
            deals_won=figures.deals_won,
            won_amount=figures.won_amounts.get(self.currency, Decimal("0.00")),
            won_amounts=dict(figures.won_amounts),
            spend=spent,
            cost_per_call=cost(spent, figures.calls),
            cost_per_new_client=cost(spent, figures.first_time_callers),
            cost_per_won_deal=cost(spent, figures.deals_won),
        )

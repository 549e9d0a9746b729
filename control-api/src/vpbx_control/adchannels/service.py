"""Ad channels: labels from the tenant's numbers, spend per month from the database.

A channel exists for the API when a number of the tenant carries its label or when
spend is recorded for it; nothing else names a channel, so there is nothing to create
or delete besides the spend. Spend may be recorded for a label no number carries yet
(the campaign starts before the number is labelled) and stays when the last number
loses the label (last month's reports still need it).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import Principal
from ..nodeconfig.publisher import ConfigPublisher
from ..numbers.service import store_read
from ..numbers.store import NumberStore
from ..paging import PageParams
from ..repository import TenantWork
from .errors import AdChannelNotFound, CurrencyMismatch, SpendNotFound
from .models import AdSpendRow
from .proration import MonthSpend, period_days, prorated
from .repository import SpendRepository
from .schemas import AdChannelOut, MonthSpendOut, SpendIn

DEFAULT_CURRENCY = "RUB"


class Period(Protocol):
    """A report's period: [start_ms, end_ms) and the IANA zone its months are read in
    (vpbx_common.analytics.ReportPeriod)."""

    @property
    def start_ms(self) -> int: ...
    @property
    def end_ms(self) -> int: ...
    @property
    def tz(self) -> str: ...


def month_date(month: str) -> dt.date:
    """'2026-11' (validated by the route) -> 2026-11-01."""
    return dt.date(int(month[:4]), int(month[5:7]), 1)


def month_text(month: dt.date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def amount_of(row: AdSpendRow) -> Decimal:
    return Decimal(row.amount_minor).scaleb(-2)


def month_out(row: AdSpendRow) -> MonthSpendOut:
    return MonthSpendOut(month=month_text(row.month), amount=amount_of(row), currency=row.currency)


class AdChannelService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        numbers: NumberStore,
        publisher: ConfigPublisher,
    ) -> None:
        self.tenant = principal.tenant
        self.numbers = numbers
        self.spends = SpendRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)

    async def _numbers_by_label(self) -> dict[str, list[str]]:
        numbers = await store_read(self.numbers.list_numbers(self.tenant))
        by_label: dict[str, list[str]] = defaultdict(list)
        for number in numbers:
            if number.spec.label:
                by_label[number.spec.label].append(number.spec.number)
        return by_label

    async def list(self, params: PageParams) -> tuple[list[AdChannelOut], int]:
        by_label = await self._numbers_by_label()
        spend: dict[str, list[MonthSpendOut]] = defaultdict(list)
        for row in await self.spends.everything():
            spend[row.label].append(month_out(row))
        labels = sorted(set(by_label) | set(spend))
        channels = [
            AdChannelOut(label=label, numbers=sorted(by_label.get(label, [])), spend=spend[label])
            for label in labels[params.offset : params.offset + params.limit]
        ]
        return channels, len(labels)

    async def get(self, label: str) -> AdChannelOut:
        numbers = (await self._numbers_by_label()).get(label, [])
        rows = await self.spends.of_label(label)
        if not numbers and not rows:
            raise AdChannelNotFound()
        return AdChannelOut(
            label=label, numbers=sorted(numbers), spend=[month_out(row) for row in rows]
        )

    async def spend(self, label: str) -> Sequence[AdSpendRow]:
        channel = await self.get(label)  # 404 for a label the tenant does not have
        return await self.spends.of_label(channel.label)

    async def month(self, label: str, month: str) -> AdSpendRow:
        row = await self.spends.one(label, month_date(month))
        if row is None:
            raise SpendNotFound(month)
        return row

    async def put(self, label: str, month: str, body: SpendIn) -> tuple[AdSpendRow, bool]:
        """The month's spend set; True when there was none before (201)."""
        recorded = await self.spends.currency()
        currency = body.currency or recorded or DEFAULT_CURRENCY
        if recorded is not None and currency != recorded:
            raise CurrencyMismatch(currency, recorded)
        amount_minor = int(body.amount.scaleb(2))
        row = await self.spends.one(label, month_date(month))
        created = row is None
        if row is None:
            row = self.spends.add(
                AdSpendRow(
                    label=label,
                    month=month_date(month),
                    amount_minor=amount_minor,
                    currency=currency,
                    revision=1,
                )
            )
        else:
            row.amount_minor = amount_minor
            row.currency = currency
            self.spends.touch(row)
        # Spend is no routing data: the media nodes' configs stay as they are.
        await self.work.commit(affects_nodes=False)
        return row, created

    async def delete(self, label: str, month: str) -> None:
        row = await self.month(label, month)
        await self.spends.delete(row)
        await self.work.commit(affects_nodes=False)

    async def currency(self) -> str:
        return await self.spends.currency() or DEFAULT_CURRENCY

    async def spend_over(self, period: Period) -> dict[str, Decimal]:
        """label -> its spend prorated over the period (proration.py), for every label
        with spend recorded in a month the period touches."""
        first, last = period_days(period.start_ms, period.end_ms, period.tz)
        rows = await self.spends.overlapping(first, last)
        spends = [MonthSpend(row.label, row.month, amount_of(row)) for row in rows]
        return prorated(spends, period.start_ms, period.end_ms, period.tz)

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import select

from ..repository import TenantRepository
from .models import AdSpendRow


class SpendRepository(TenantRepository[AdSpendRow]):
    model: ClassVar[type[AdSpendRow]] = AdSpendRow
    label: ClassVar[str] = "ad channel spend"

    async def of_label(self, label: str) -> Sequence[AdSpendRow]:
        query = self.scoped().where(AdSpendRow.label == label).order_by(AdSpendRow.month)
        return await self.all(query)

    async def one(self, label: str, month: dt.date) -> AdSpendRow | None:
        query = self.scoped().where(AdSpendRow.label == label, AdSpendRow.month == month)
        return await self.first(query)

    async def overlapping(self, first: dt.date, last: dt.date) -> Sequence[AdSpendRow]:
        """Every label's spend of the months from ``first``'s to ``last``'s (both included)."""
        first_month = first.replace(day=1)
        query = self.scoped().where(AdSpendRow.month >= first_month, AdSpendRow.month <= last)
        return await self.all(query.order_by(AdSpendRow.label, AdSpendRow.month))

    async def everything(self) -> Sequence[AdSpendRow]:
        return await self.all(self.scoped().order_by(AdSpendRow.label, AdSpendRow.month))

    async def currency(self) -> str | None:
        """The currency the tenant's spend is recorded in; None before any is."""
        query = select(AdSpendRow.currency).where(AdSpendRow.tenant_id == self.tenant_id)
        return await self.session.scalar(query.limit(1))

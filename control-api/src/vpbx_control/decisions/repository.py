"""The one place the decision secret is read and written, scoped to the caller's tenant."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..tenants.models import TenantRow
from .models import DecisionSecretRow


class DecisionSecretRepository:
    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def lock(self) -> None:
        """Serialise writers of this tenant's secret until the transaction ends.

        The same tenant-row lock as route-graph changes (routeplans.repository):
        two first plans with an HTTP decision, or a plan and a rotation, at the
        same moment insert one row, not two. SQLite, one writer at a time,
        renders no lock.
        """
        await self.session.execute(
            select(TenantRow.id)
            .where(TenantRow.id == self.tenant_id)
            .with_for_update(key_share=True)
        )

    async def find(self) -> DecisionSecretRow | None:
        result = await self.session.execute(
            select(DecisionSecretRow).where(DecisionSecretRow.tenant_id == self.tenant_id)
        )
        return result.scalar_one_or_none()

    async def put(self, secret: str, now: dt.datetime) -> DecisionSecretRow:
        """Set the tenant's secret (a new row, or the old one replaced); lock first."""
        row = await self.find()
        if row is None:
            row = DecisionSecretRow(tenant_id=self.tenant_id, secret=secret, created_at=now)
            self.session.add(row)
        else:
            row.secret = secret
            row.created_at = now
        return row

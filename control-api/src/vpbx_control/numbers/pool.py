"""The platform's pool of phone numbers: which are free, and claiming one safely.

A claim locks the chosen row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and
marks it with the tenant in the same transaction that creates the Number, so
two concurrent provisions never get the same number, and a failed Number
create rolls the claim back with everything else.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..paging import PageParams, fetch_page
from .models import PoolNumberRow

# Attempts at a conditional claim when another transaction took the row first
# (SQLite has no SKIP LOCKED; PostgreSQL needs no retry).
CLAIM_ATTEMPTS = 5


def like_pattern(pattern: str) -> str:
    """A NumberPattern as a SQL LIKE pattern over E.164 numbers (see schemas.NumberPattern)."""
    if "*" not in pattern:
        return pattern if pattern.startswith("+") else f"%{pattern}%"
    if pattern[0].isdigit():
        pattern = "+" + pattern
    return pattern.replace("*", "%")


class PoolRepository:
    """Platform-wide (not tenant-scoped): the pool belongs to the platform operator."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, number: str) -> PoolNumberRow | None:
        return await self.session.get(PoolNumberRow, number)

    async def existing(self, numbers: Sequence[str]) -> set[str]:
        result = await self.session.execute(
            select(PoolNumberRow.number).where(PoolNumberRow.number.in_(list(numbers)))
        )
        return set(result.scalars().all())

    def filtered(
        self, city: str | None, available: bool | None, tenant: str | None
    ) -> Select[PoolNumberRow]:
        query = select(PoolNumberRow).order_by(PoolNumberRow.number)
        if city is not None:
            query = query.where(PoolNumberRow.city == city)
        if available is True:
            query = query.where(PoolNumberRow.tenant_id.is_(None))
        elif available is False:
            query = query.where(PoolNumberRow.tenant_id.is_not(None))
        if tenant is not None:
            query = query.where(PoolNumberRow.tenant_id == tenant)
        return query

    async def page(
        self, query: Select[PoolNumberRow], params: PageParams
    ) -> tuple[list[PoolNumberRow], int]:
        return await fetch_page(self.session, query, params)

    async def held_by(self, tenant: str) -> list[PoolNumberRow]:
        result = await self.session.execute(
            select(PoolNumberRow).where(PoolNumberRow.tenant_id == tenant)
        )
        return list(result.scalars().all())

    async def claim(
        self,
        tenant: str,
        *,
        city: str | None,
        pattern: str | None = None,
        number: str | None = None,
    ) -> str | None:
        """Mark one free matching number as the tenant's; the number, or None if none is free.

        Takes effect with the session's commit; a rollback frees the number again.
        """
        query = select(PoolNumberRow.number).where(PoolNumberRow.tenant_id.is_(None))
        if city is not None:
            query = query.where(PoolNumberRow.city == city)
        if number is not None:
            query = query.where(PoolNumberRow.number == number)
        if pattern is not None:
            query = query.where(PoolNumberRow.number.like(like_pattern(pattern)))
        query = query.order_by(PoolNumberRow.number).limit(1).with_for_update(skip_locked=True)
        for _ in range(CLAIM_ATTEMPTS):
            candidate = await self.session.scalar(query)
            if candidate is None:
                return None
            claimed = await self.session.execute(
                update(PoolNumberRow)
                .where(PoolNumberRow.number == candidate, PoolNumberRow.tenant_id.is_(None))
                .values(tenant_id=tenant)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                return candidate
        return None

    async def release(self, number: str, city: str) -> None:
        """Return a number to the pool (adding it, for a number that never came from it)."""
        row = await self.find(number)
        if row is None:
            self.session.add(PoolNumberRow(number=number, city=city, tenant_id=None))
        else:
            row.tenant_id = None
        await self.session.flush()

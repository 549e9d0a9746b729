"""Tenant scoping in one place: every CRM query of a tenant's rows starts from ``scoped()``.

A row of another tenant is indistinguishable from a missing one (404).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.errors import NotFound, ReferenceNotFound
from vpbx_control.paging import PageParams, fetch_page

from .db.base import TenantRow

RowT = TypeVar("RowT", bound=TenantRow)


class Scoped(Generic[RowT]):
    model: ClassVar[type[Any]]
    label: ClassVar[str]  # "contact", "deal", ... in error messages

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def scoped(self) -> Select[tuple[RowT]]:
        return select(self.model).where(self.model.tenant_id == self.tenant_id)

    async def find(self, row_id: uuid.UUID) -> RowT | None:
        result = await self.session.execute(self.scoped().where(self.model.id == row_id))
        return cast(RowT | None, result.scalar_one_or_none())

    async def get(self, row_id: uuid.UUID) -> RowT:
        row = await self.find(row_id)
        if row is None:
            raise NotFound(f"{self.label} not found")
        return row

    async def first(self, query: Select[tuple[RowT]]) -> RowT | None:
        """The first row of a query built on ``scoped()``."""
        return cast(RowT | None, await self.session.scalar(query.limit(1)))

    async def all(self, query: Select[tuple[RowT]]) -> list[RowT]:
        """Every row of a query built on ``scoped()``."""
        return cast(list[RowT], list((await self.session.scalars(query)).all()))

    async def referenced(self, row_id: uuid.UUID, field: str) -> RowT:
        """A row named in a request body; missing or foreign names the field (404)."""
        row = await self.find(row_id)
        if row is None:
            raise ReferenceNotFound(field, self.label)
        return row

    async def page(self, query: Select[tuple[RowT]], params: PageParams) -> tuple[list[RowT], int]:
        rows, total = await fetch_page(self.session, query, params)
        return cast(list[RowT], rows), total

    def add(self, row: RowT) -> RowT:
        row.tenant_id = self.tenant_id
        self.session.add(row)
        return row

    @staticmethod
    def touch(row: RowT) -> None:
        """Count an update: the row's ETag changes."""
        row.revision += 1

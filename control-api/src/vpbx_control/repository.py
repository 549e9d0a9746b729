"""Tenant scoping in one place: every tenant-owned query goes through TenantRepository.

A row of another tenant is indistinguishable from a missing one (404).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .db.base import TenantScopedRow
from .errors import Conflict, NotFound, ReferenceNotFound
from .nodeconfig.publisher import ConfigPublisher
from .paging import PageParams, fetch_page

RowT = TypeVar("RowT", bound=TenantScopedRow)


class TenantRepository(Generic[RowT]):
    model: ClassVar[type[Any]]
    label: ClassVar[str]  # "group", "user", ... used in error messages

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

    async def referenced(self, row_id: uuid.UUID, field: str) -> RowT:
        """A row named in a request body; missing or foreign names the field (404)."""
        row = await self.find(row_id)
        if row is None:
            raise ReferenceNotFound(field, self.label)
        return row

    async def page(self, query: Select[tuple[RowT]], params: PageParams) -> tuple[list[RowT], int]:
        rows, total = await fetch_page(self.session, query, params)
        return cast(list[RowT], rows), total

    async def first(self, query: Select[tuple[RowT]]) -> RowT | None:
        """The first row of a query built on ``scoped()``."""
        return cast(RowT | None, await self.session.scalar(query.limit(1)))

    async def all(self, query: Select[tuple[RowT]] | None = None) -> Sequence[RowT]:
        result = await self.session.execute(query if query is not None else self.scoped())
        return cast(Sequence[RowT], result.scalars().all())

    def add(self, row: RowT) -> RowT:
        row.tenant_id = self.tenant_id
        self.session.add(row)
        return row

    @staticmethod
    def touch(row: RowT) -> None:
        """Count an update: the row's ETag changes."""
        row.revision += 1

    async def delete(self, row: RowT) -> None:
        await self.session.delete(row)


class NamedRepository(TenantRepository[RowT]):
    """Objects a tenant names uniquely (groups, schedules, IVR menus, route plans)."""

    def by_name(self, name: str | None) -> Select[tuple[RowT]]:
        """Ordered by name; ``name`` filters case-insensitively by a part of it."""
        query = self.scoped().order_by(self.model.name)
        if name:
            query = query.where(func.lower(self.model.name).contains(name.lower()))
        return query

    async def name_taken(self, name: str) -> bool:
        query = self.scoped().where(self.model.name == name)
        return (await self.session.execute(query)).first() is not None


class TenantWork:
    """Commits a tenant's change and announces it to the media nodes.

    A unique-constraint violation that slipped past the service's own checks
    (two admins at once) becomes a 409 instead of a 500.
    """

    def __init__(self, session: AsyncSession, tenant_id: str, publisher: ConfigPublisher) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.publisher = publisher

    async def commit(
        self, *, affects_nodes: bool = True, moves_phones: bool = False, carriers: bool = False
    ) -> None:
        """Commit; ``moves_phones``: users, devices or cities changed, so the
        home directory (which node each phone registers with) is rewritten too;
        ``carriers``: trunks changed, so the edge's entry of where the tenant's
        carriers call from is rewritten too."""
        try:
            await self.session.commit()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict("the change conflicts with another object (name already used?)") from exc
        if affects_nodes:
            await self.publisher.changed(
                self.tenant_id, moves_phones=moves_phones, carriers=carriers
            )

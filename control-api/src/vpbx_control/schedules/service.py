from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import Principal
from ..nodeconfig.publisher import ConfigPublisher
from ..paging import PageParams, check_if_match
from ..references import refuse_if_referenced
from ..repository import TenantWork
from .errors import ScheduleNameTaken
from .models import ScheduleRow
from .repository import ScheduleRepository
from .schemas import ScheduleCreate, ScheduleUpdate


class ScheduleService:
    def __init__(
        self, session: AsyncSession, principal: Principal, publisher: ConfigPublisher
    ) -> None:
        self.repository = ScheduleRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)

    async def list(self, params: PageParams, name: str | None) -> tuple[list[ScheduleRow], int]:
        return await self.repository.page(self.repository.filtered(name), params)

    async def get(self, schedule_id: uuid.UUID) -> ScheduleRow:
        return await self.repository.get(schedule_id)

    async def create(self, body: ScheduleCreate) -> ScheduleRow:
        if await self.repository.name_taken(body.name):
            raise ScheduleNameTaken(body.name)
        row = self.repository.add(ScheduleRow(**body.model_dump(mode="json"), revision=1))
        await self.work.commit()
        return row

    async def update(
        self, schedule_id: uuid.UUID, body: ScheduleUpdate, if_match: str | None
    ) -> ScheduleRow:
        row = await self.repository.get(schedule_id)
        check_if_match(if_match, row.etag())
        changes = body.model_dump(mode="json", exclude_unset=True)
        if changes.get("name") not in (None, row.name) and await self.repository.name_taken(
            changes["name"]
        ):
            raise ScheduleNameTaken(changes["name"])
        for key, value in changes.items():
            if value is not None:
                setattr(row, key, value)
        self.repository.touch(row)
        await self.work.commit()
        return row

    async def delete(self, schedule_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.repository.get(schedule_id)
        check_if_match(if_match, row.etag())
        await refuse_if_referenced(self.repository.session, row.tenant_id, row.id, "schedule")
        await self.repository.delete(row)
        await self.work.commit()

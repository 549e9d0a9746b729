from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Select, func

from ..repository import TenantRepository
from .models import ScheduleRow


class ScheduleRepository(TenantRepository[ScheduleRow]):
    model: ClassVar[type[ScheduleRow]] = ScheduleRow
    label: ClassVar[str] = "schedule"

    def filtered(self, name: str | None) -> Select[tuple[ScheduleRow]]:
        query = self.scoped().order_by(ScheduleRow.name)
        if name:
            query = query.where(func.lower(ScheduleRow.name).contains(name.lower()))
        return query

    async def name_taken(self, name: str) -> bool:
        return (
            await self.session.execute(self.scoped().where(ScheduleRow.name == name))
        ).first() is not None

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Select

from ..repository import NamedRepository
from .models import ScheduleRow


class ScheduleRepository(NamedRepository[ScheduleRow]):
    model: ClassVar[type[ScheduleRow]] = ScheduleRow
    label: ClassVar[str] = "schedule"

    def filtered(self, name: str | None) -> Select[tuple[ScheduleRow]]:
        return self.by_name(name)

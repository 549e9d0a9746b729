from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Select

from ..repository import TenantRepository
from .models import ConferenceRoomRow


class ConferenceRoomRepository(TenantRepository[ConferenceRoomRow]):
    model: ClassVar[type[ConferenceRoomRow]] = ConferenceRoomRow
    label: ClassVar[str] = "conference room"

    def ordered(self) -> Select[tuple[ConferenceRoomRow]]:
        return self.scoped().order_by(ConferenceRoomRow.extension)

    async def extension_owner(self, extension: str) -> ConferenceRoomRow | None:
        """The tenant's room with this extension, if any."""
        rows = await self.all(self.scoped().where(ConferenceRoomRow.extension == extension))
        return rows[0] if rows else None

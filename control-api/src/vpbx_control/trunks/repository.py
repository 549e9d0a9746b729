from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Select, func, select

from ..repository import NamedRepository
from .models import TrunkRow


class TrunkRepository(NamedRepository[TrunkRow]):
    model: ClassVar[type[TrunkRow]] = TrunkRow
    label: ClassVar[str] = "trunk"

    def in_order(self) -> Select[tuple[TrunkRow]]:
        """The order outbound calls try them in: priority, then name."""
        return self.scoped().order_by(TrunkRow.priority, TrunkRow.name, TrunkRow.id)

    async def count(self) -> int:
        total = await self.session.scalar(
            select(func.count()).select_from(TrunkRow).where(TrunkRow.tenant_id == self.tenant_id)
        )
        return int(total or 0)

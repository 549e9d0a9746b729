from __future__ import annotations

import uuid
from typing import ClassVar

from sqlalchemy import Select, delete, func, select

from ..repository import TenantRepository
from .models import IvrMenuRow, PromptRow


class IvrMenuRepository(TenantRepository[IvrMenuRow]):
    model: ClassVar[type[IvrMenuRow]] = IvrMenuRow
    label: ClassVar[str] = "IVR menu"

    def filtered(self, name: str | None) -> Select[tuple[IvrMenuRow]]:
        query = self.scoped().order_by(IvrMenuRow.name)
        if name:
            query = query.where(func.lower(IvrMenuRow.name).contains(name.lower()))
        return query

    async def name_taken(self, name: str) -> bool:
        return (
            await self.session.execute(self.scoped().where(IvrMenuRow.name == name))
        ).first() is not None


class PromptRepository(TenantRepository[PromptRow]):
    model: ClassVar[type[PromptRow]] = PromptRow
    label: ClassVar[str] = "prompt"

    async def exists(self, prompt_id: uuid.UUID) -> bool:
        query = select(PromptRow.id).where(
            PromptRow.tenant_id == self.tenant_id, PromptRow.id == prompt_id
        )
        return (await self.session.execute(query)).first() is not None

    async def prune(self) -> None:
        """Delete the tenant's prompts that no menu plays any more (ids only, no audio read)."""
        prompts = await self.session.scalars(
            select(PromptRow.id).where(PromptRow.tenant_id == self.tenant_id)
        )
        menus = await self.session.scalars(
            select(IvrMenuRow.prompt).where(IvrMenuRow.tenant_id == self.tenant_id)
        )
        in_use = {str(prompt.get("prompt_id")) for prompt in menus if prompt.get("kind") == "audio"}
        unused = [prompt_id for prompt_id in prompts if str(prompt_id) not in in_use]
        if unused:
            await self.session.execute(
                delete(PromptRow).where(
                    PromptRow.tenant_id == self.tenant_id, PromptRow.id.in_(unused)
                )
            )

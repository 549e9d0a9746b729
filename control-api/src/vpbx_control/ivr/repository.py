from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Select, delete, select

from ..repository import NamedRepository, TenantRepository
from .models import IvrMenuRow, PromptRow


class IvrMenuRepository(NamedRepository[IvrMenuRow]):
    model: ClassVar[type[IvrMenuRow]] = IvrMenuRow
    label: ClassVar[str] = "IVR menu"

    def filtered(self, name: str | None) -> Select[tuple[IvrMenuRow]]:
        return self.by_name(name)


class PromptRepository(TenantRepository[PromptRow]):
    model: ClassVar[type[PromptRow]] = PromptRow
    label: ClassVar[str] = "prompt"

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

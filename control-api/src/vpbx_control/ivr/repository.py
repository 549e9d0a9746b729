from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import ClassVar

from sqlalchemy import Select, delete, select

from ..prompts.uses import prompt_users
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

    async def speaking(self, text: str, language: str) -> uuid.UUID | None:
        """The tenant's rendering of this text in this language, if there is one."""
        found = await self.session.scalars(
            select(PromptRow.id)
            .where(
                PromptRow.tenant_id == self.tenant_id,
                PromptRow.language == language,
                PromptRow.text == text,
            )
            .order_by(PromptRow.created_at.desc())
            .limit(1)
        )
        return found.first()

    async def texts(self, prompt_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
        """Prompt id -> (text, language) for those of the prompts that are rendered speech."""
        if not prompt_ids:
            return {}
        rows = await self.session.execute(
            select(PromptRow.id, PromptRow.text, PromptRow.language).where(
                PromptRow.tenant_id == self.tenant_id,
                PromptRow.id.in_(prompt_ids),
                PromptRow.text.is_not(None),
            )
        )
        return {
            prompt_id: (text, language or "")
            for prompt_id, text, language in rows
            if text is not None
        }

    async def prune(self) -> None:
        """Delete the tenant's prompts that nothing plays any more (prompts/uses.py says
        what plays them: menus, number greetings, queue music, voicemail greetings), ids
        only, no audio read. Prompts in the tenant's library stay until the tenant deletes
        them: an upload that nothing plays yet is what the library is for."""
        prompts = await self.session.scalars(
            select(PromptRow.id).where(
                PromptRow.tenant_id == self.tenant_id, PromptRow.library.is_(False)
            )
        )
        in_use = await prompt_users(self.session, self.tenant_id)
        unused = [prompt_id for prompt_id in prompts if str(prompt_id) not in in_use]
        if unused:
            await self.session.execute(
                delete(PromptRow).where(
                    PromptRow.tenant_id == self.tenant_id, PromptRow.id.in_(unused)
                )
            )

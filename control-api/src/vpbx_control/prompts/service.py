"""The tenant's prompt library: uploads and rendered speech kept until the tenant deletes
them, to be named as a queue's music, a voicemail or number greeting, or a menu's prompt."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, func
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import Principal
from ..ivr.models import PromptRow
from ..ivr.repository import PromptRepository
from ..ivr.service import speech_errors
from ..ivr.speech import SpeechEngine
from ..nodeconfig.publisher import ConfigPublisher
from ..paging import PageParams, check_if_match
from ..repository import TenantWork
from .errors import PromptInUse
from .schemas import SpeechCreate
from .upload import LIBRARY_PROMPT_LIMITS, convert_upload
from .uses import prompt_users

# A spoken prompt without a name is called by the start of its text.
_NAME_FROM_TEXT = 60


class PromptLibraryService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        publisher: ConfigPublisher,
        speech: SpeechEngine,
    ) -> None:
        self.session = session
        self.tenant_id = principal.tenant
        self.prompts = PromptRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)
        self.speech = speech

    async def list(
        self, params: PageParams, name: str | None, library: bool | None
    ) -> tuple[list[PromptRow], int]:
        query: Select[tuple[PromptRow]] = self.prompts.scoped()
        if name:
            query = query.where(func.lower(PromptRow.name).contains(name.lower()))
        if library is not None:
            query = query.where(PromptRow.library.is_(library))
        query = query.order_by(PromptRow.name, PromptRow.created_at, PromptRow.id)
        return await self.prompts.page(query, params)

    async def get(self, prompt_id: uuid.UUID) -> PromptRow:
        return await self.prompts.get(prompt_id)

    async def upload(self, filename: str | None, name: str | None, data: bytes) -> PromptRow:
        converted = await convert_upload(data, LIBRARY_PROMPT_LIMITS)
        name = name or filename or "prompt.wav"
        row = self.prompts.add(PromptRow.converted(converted, name, library=True))
        # Nothing plays it yet: the nodes' config does not change.
        await self.work.commit(affects_nodes=False)
        return row

    async def speak(self, body: SpeechCreate) -> PromptRow:
        with speech_errors("body"):
            spoken = await self.speech.render(body.text, body.language)
        name = body.name or body.text.strip()[:_NAME_FROM_TEXT]
        row = self.prompts.add(
            PromptRow.converted(
                spoken.audio, name, text=body.text, language=body.language, library=True
            )
        )
        await self.work.commit(affects_nodes=False)
        return row

    async def delete(self, prompt_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.prompts.get(prompt_id)
        check_if_match(if_match, row.etag())
        users = (await prompt_users(self.session, self.tenant_id)).get(str(row.id))
        if users:
            raise PromptInUse(users)
        await self.prompts.delete(row)
        await self.work.commit(affects_nodes=False)

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.storage import ObjectStore, StorageError

from ..audio.errors import ObjectStoreUnavailable
from ..auth.principal import Principal
from ..db.base import utcnow
from ..errors import InvalidInput
from ..paging import PageParams
from .errors import VoicemailNotFound
from .models import VoicemailRow
from .repository import VoicemailFilters, VoicemailRepository
from .schemas import VoicemailUpdate

logger = logging.getLogger(__name__)


class VoicemailService:
    def __init__(self, session: AsyncSession, principal: Principal, store: ObjectStore) -> None:
        self.session = session
        self.principal = principal
        self.store = store
        self.voicemails = VoicemailRepository(session, principal)

    async def page(
        self, filters: VoicemailFilters, params: PageParams
    ) -> tuple[list[VoicemailRow], int]:
        if filters.start is not None and filters.end is not None and filters.start >= filters.end:
            raise InvalidInput.at("query.from", "must be earlier than `to`")
        return await self.voicemails.page(filters, params)

    async def get(self, voicemail_id: uuid.UUID) -> VoicemailRow:
        row = await self.voicemails.find(voicemail_id)
        if row is None:
            raise VoicemailNotFound()
        return row

    async def update(self, voicemail_id: uuid.UUID, body: VoicemailUpdate) -> VoicemailRow:
        row = await self.get(voicemail_id)
        if not body.listened:
            row.listened_at = None
        elif row.listened_at is None:
            row.listened_at = utcnow()
        await self.session.commit()
        return row

    async def delete(self, voicemail_id: uuid.UUID) -> None:
        """The audio goes first: a message the store could not delete stays listed (and the
        client gets 503), never an unlisted object nobody can reach any more. The row stays
        as a tombstone (see VoicemailRow.deleted_at)."""
        row = await self.get(voicemail_id)
        try:
            await self.store.delete(row.key)
        except StorageError as exc:
            logger.warning(
                "call=%s tenant=%s voicemail %s: audio not deleted: %s",
                row.call_id,
                row.tenant_id,
                row.id,
                exc,
            )
            raise ObjectStoreUnavailable() from exc
        row.deleted_at = utcnow()
        await self.session.commit()
        logger.info("call=%s tenant=%s voicemail %s deleted", row.call_id, row.tenant_id, row.id)

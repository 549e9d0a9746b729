"""Voice messages of one tenant, as one caller may see them: the only place they are queried.

Supervisors and tenant admins see every box of the tenant; an agent only their own box
(messages whose ``user_id`` is theirs); an API key of the agent role (no person) none.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import MANAGERS, Principal
from ..paging import PageParams, fetch_page
from .models import VoicemailRow


@dataclass(frozen=True, slots=True)
class VoicemailFilters:
    user_id: uuid.UUID | None = None
    start: dt.datetime | None = None  # created_at >= start
    end: dt.datetime | None = None  # created_at < end
    listened: bool | None = None


class VoicemailRepository:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.tenant_id = principal.tenant
        self.principal = principal

    def visible(self) -> Select[VoicemailRow]:
        query = select(VoicemailRow).where(
            VoicemailRow.tenant_id == self.tenant_id, VoicemailRow.deleted_at.is_(None)
        )
        if self.principal.role in MANAGERS:
            return query
        if self.principal.user_id is None:
            return query.where(false())
        return query.where(VoicemailRow.user_id == self.principal.user_id)

    async def page(
        self, filters: VoicemailFilters, params: PageParams
    ) -> tuple[list[VoicemailRow], int]:
        query = self.visible()
        if filters.user_id is not None:
            query = query.where(VoicemailRow.user_id == filters.user_id)
        if filters.start is not None:
            query = query.where(VoicemailRow.created_at >= filters.start)
        if filters.end is not None:
            query = query.where(VoicemailRow.created_at < filters.end)
        if filters.listened is True:
            query = query.where(VoicemailRow.listened_at.is_not(None))
        elif filters.listened is False:
            query = query.where(VoicemailRow.listened_at.is_(None))
        query = query.order_by(VoicemailRow.created_at.desc(), VoicemailRow.id)
        rows, total = await fetch_page(self.session, query, params)
        return list(rows), total

    async def find(self, voicemail_id: uuid.UUID) -> VoicemailRow | None:
        result = await self.session.execute(self.visible().where(VoicemailRow.id == voicemail_id))
        return result.scalar_one_or_none()

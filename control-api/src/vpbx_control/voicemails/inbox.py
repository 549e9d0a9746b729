"""The voicemail inbox: one row per ``voicemail.new`` call event.

Every API replica runs one consumer of the group ``voicemails`` on the stream
``vpbx:call-events`` (vpbx_common.events), next to the webhook bridge's group: each
entry is handled by one replica, and acknowledged once its row is committed. Delivery
is at least once, so the insert is idempotent: the row's id is derived from the tenant
and the call id, and a second insert of the same call does nothing (also after the
message was deleted: the tombstone row stays). Events of other types are acknowledged
and ignored; an event that cannot become a row (unknown tenant, a key outside the
tenant's voicemail prefix, values too long) is logged and dropped, never retried
forever.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import redis.asyncio as redis
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.events import VOICEMAILS_GROUP, CallEvent, CallEventConsumer, CallEventType

from ..audio.store import belongs_to
from ..db.session import Database
from ..tenants.models import TenantRow
from ..users.models import UserRow
from .models import VoicemailRow, voicemail_id

logger = logging.getLogger(__name__)

VOICEMAIL_PREFIX = "voicemail"  # vpbx_common.storage.voicemail_key
_MAX_CALL_ID = 1024
_MAX_KEY = 1024


async def box_owner(session: AsyncSession, tenant: str, event: CallEvent) -> uuid.UUID | None:
    """The user whose box got the message: the event's ``box_user_id`` when it is a user of
    the tenant, else the tenant's user with the box's extension; None for the general box."""
    if event.box_user_id:
        try:
            candidate = uuid.UUID(event.box_user_id)
        except ValueError:
            candidate = None
        if candidate is not None:
            found = await session.scalar(
                select(UserRow.id).where(UserRow.tenant_id == tenant, UserRow.id == candidate)
            )
            if found is not None:
                return found
    if not event.box:
        return None
    return await session.scalar(
        select(UserRow.id).where(UserRow.tenant_id == tenant, UserRow.extension == event.box)
    )


class VoicemailInbox:
    def __init__(
        self,
        database: Database,
        client: redis.Redis,
        *,
        consumer: str | None = None,
        **tuning: Any,
    ) -> None:
        self.database = database
        self.consumer = CallEventConsumer(
            client, VOICEMAILS_GROUP, self.handle, consumer=consumer, **tuning
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def handle(self, event: CallEvent) -> bool:
        """Store one voicemail.new; True when a new row was written."""
        if event.type is not CallEventType.VOICEMAIL_NEW:
            return False
        problem = self._unusable(event)
        if problem is not None:
            logger.warning(
                "call=%s tenant=%s voicemail.new dropped: %s", event.call_id, event.tenant, problem
            )
            return False
        async with self.database.session() as session:
            if await session.get(TenantRow, event.tenant) is None:
                logger.warning(
                    "call=%s tenant=%s voicemail.new for an unknown tenant; dropped",
                    event.call_id,
                    event.tenant,
                )
                return False
            values = {
                "id": voicemail_id(event.tenant, event.call_id),
                "tenant_id": event.tenant,
                "call_id": event.call_id,
                "box": event.box,
                "user_id": await box_owner(session, event.tenant, event),
                # Display values: cut to the column rather than refuse the message.
                "caller": event.caller[:64],
                "number": event.number[:64],
                "city": event.city[:63],
                "duration_ms": max(0, event.duration_ms),
                "size_bytes": max(0, event.size_bytes),
                "key": event.key,
                "created_at": dt.datetime.fromtimestamp(event.at_ms / 1000, dt.UTC),
            }
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = (
                insert(VoicemailRow)
                .values(values)
                .on_conflict_do_nothing()
                .returning(VoicemailRow.id)
            )
            inserted = (await session.execute(statement)).scalar_one_or_none()
            await session.commit()
        if inserted is None:
            logger.info(
                "call=%s tenant=%s voicemail.new seen before; nothing to do",
                event.call_id,
                event.tenant,
            )
            return False
        logger.info(
            "call=%s tenant=%s voicemail %s stored (box %s)",
            event.call_id,
            event.tenant,
            inserted,
            event.box or "general",
        )
        return True

    @staticmethod
    def _unusable(event: CallEvent) -> str | None:
        if len(event.call_id) > _MAX_CALL_ID:
            return "call id too long"
        if len(event.box) > 32:
            return "box too long"
        if not event.key or len(event.key) > _MAX_KEY:
            return "no usable storage key"
        if not belongs_to(event.key, VOICEMAIL_PREFIX, event.tenant):
            return f"key {event.key!r} is outside the tenant's voicemail"
        return None

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.cdr import CallRecord, Direction

from ..audio.store import belongs_to
from ..auth.principal import MANAGERS, Principal
from ..paging import PageParams
from ..users.repository import UserRepository
from .errors import CallNotFound, RecordingNotFound, TimeRangeInverted
from .repository import EVERYTHING, CallFilters, CallRepository, Visibility
from .schemas import CallDetailOut, CallOut, CallStatus, epoch_ms
from .store import CdrReader

logger = logging.getLogger(__name__)

DEFAULT_PERIOD = dt.timedelta(days=7)
RECORDINGS_PREFIX = "recordings"  # vpbx_common.storage.recording_key
_LATEST_MS = 2**63 - 1  # far beyond any datetime; keeps the bound a valid UInt64


@dataclass(frozen=True, slots=True)
class CallQuery:
    """The list's filters as the client gave them (already validated and normalised)."""

    start: dt.datetime | None = None  # `from`
    end: dt.datetime | None = None  # `to`
    number: str | None = None
    user_id: uuid.UUID | None = None
    direction: Direction | None = None
    status: CallStatus | None = None
    label: str | None = None

    def period_ms(self, now: dt.datetime) -> tuple[int, int]:
        """[from, to) in epoch ms: `to` defaults to now, `from` to seven days before `to`."""
        end = self.end if self.end is not None else now
        start = self.start if self.start is not None else end - DEFAULT_PERIOD
        if start >= end:
            raise TimeRangeInverted()
        return max(0, epoch_ms(start)), min(_LATEST_MS, max(0, epoch_ms(end)))


def may_hear(visibility: Visibility, record: CallRecord) -> bool:
    """Whether the caller may hear the call's recording: supervisors and tenant admins
    every call; an agent the calls their extension answered, or placed (internal and
    outbound calls from it), not the ones only offered to them."""
    if visibility.all_calls:
        return True
    extension = visibility.extension
    if not extension:
        return False
    placed = record.caller == extension and record.direction is not Direction.INBOUND
    return record.answered_by == extension or placed


class CallService:
    def __init__(self, session: AsyncSession, principal: Principal, reader: CdrReader) -> None:
        self.principal = principal
        self.users = UserRepository(session, principal.tenant)
        self.reader = reader

    async def page(self, query: CallQuery, paging: PageParams) -> tuple[list[CallOut], int]:
        start_ms, end_ms = query.period_ms(dt.datetime.now(dt.UTC))
        involving = None
        if query.user_id is not None:
            involving = await self._extension_of(query.user_id)
            if involving is None:  # not the tenant's user, or one without an extension
                return [], 0
        filters = CallFilters(
            from_ms=start_ms,
            to_ms=end_ms,
            number=query.number,
            involving=involving,
            direction=query.direction,
            status=query.status,
            label=query.label,
        )
        visibility = await self._visibility()
        calls = self._repository(visibility)
        records, total = await calls.page(filters, paging)
        user_ids = await self._user_ids(records)
        return [
            CallOut.of(record, user_ids, may_hear=may_hear(visibility, record))
            for record in records
        ], total

    async def get(self, call_id: str) -> CallDetailOut:
        visibility = await self._visibility()
        record = await self._repository(visibility).find(call_id)
        if record is None:
            raise CallNotFound()
        return CallDetailOut.of(
            record, await self._user_ids([record]), may_hear=may_hear(visibility, record)
        )

    async def recording_key(self, call_id: str) -> str:
        """The storage key of the call's recording, if the caller may hear it.

        Raises CallNotFound (no such call in the tenant, or one the caller may not hear:
        an agent hears the calls they answered or placed, not those merely offered to
        them) or RecordingNotFound (the call was not recorded).
        """
        visibility = await self._visibility()
        record = await self._repository(visibility).find(call_id)
        if record is None or not may_hear(visibility, record):
            raise CallNotFound()
        if not record.recording:
            raise RecordingNotFound()
        if not belongs_to(record.recording, RECORDINGS_PREFIX, self.principal.tenant):
            # Never serve another tenant's object, whatever a node wrote into the CDR.
            logger.error(
                "call=%s tenant=%s CDR recording key %r is outside the tenant's recordings",
                call_id,
                self.principal.tenant,
                record.recording,
            )
            raise RecordingNotFound()
        return record.recording

    def _repository(self, visibility: Visibility) -> CallRepository:
        return CallRepository(self.reader, self.principal.tenant, visibility)

    async def _visibility(self) -> Visibility:
        """Supervisors and tenant admins see every call; an agent the calls of their extension."""
        if self.principal.role in MANAGERS:
            return EVERYTHING
        user_id = self.principal.user_id
        extension = None if user_id is None else await self._extension_of(user_id)
        return Visibility(all_calls=False, extension=extension)

    async def _extension_of(self, user_id: uuid.UUID) -> str | None:
        user = await self.users.find(user_id)
        return user.extension if user is not None and user.extension else None

    async def _user_ids(self, records: Iterable[CallRecord]) -> dict[str, uuid.UUID]:
        extensions = {record.answered_by for record in records if record.answered_by}
        return await self.users.ids_by_extension(extensions)

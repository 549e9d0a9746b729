"""Conference rooms: one plan of extensions with the users, a write-only PIN.

A room's extension must be free: no user has it and no other room (409
``extension-taken``; users are refused a room's extension the same way). A room
that a route plan, an IVR menu, a group's overflow or a number's entry still
sends calls to cannot be deleted (409).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import Principal
from ..nodeconfig.publisher import ConfigPublisher
from ..numbers.store import NumberStore
from ..paging import PageParams, check_if_match
from ..references import refuse_if_number_entry, refuse_if_referenced
from ..repository import TenantWork
from ..users.errors import ExtensionTaken
from ..users.repository import UserRepository
from .errors import RoomIsNumberEntry
from .models import ConferenceRoomRow
from .repository import ConferenceRoomRepository
from .schemas import RoomCreate, RoomUpdate


class ConferenceRoomService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        publisher: ConfigPublisher,
        numbers: NumberStore,
    ) -> None:
        self.session = session
        self.tenant_id = principal.tenant
        self.rooms = ConferenceRoomRepository(session, principal.tenant)
        self.users = UserRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)
        self.numbers = numbers

    async def list(self, params: PageParams) -> tuple[list[ConferenceRoomRow], int]:
        return await self.rooms.page(self.rooms.ordered(), params)

    async def get(self, room_id: uuid.UUID) -> ConferenceRoomRow:
        return await self.rooms.get(room_id)

    async def create(self, body: RoomCreate) -> ConferenceRoomRow:
        await self._claim_extension(body.extension, None)
        row = self.rooms.add(
            ConferenceRoomRow(
                id=uuid.uuid4(),
                extension=body.extension,
                name=body.name,
                pin=body.pin.get_secret_value() if body.pin is not None else None,
                max_participants=body.max_participants,
                revision=1,
            )
        )
        await self.work.commit()
        return row

    async def update(
        self, room_id: uuid.UUID, body: RoomUpdate, if_match: str | None
    ) -> ConferenceRoomRow:
        row = await self.rooms.get(room_id)
        check_if_match(if_match, row.etag())
        given = body.model_fields_set
        if body.extension is not None and body.extension != row.extension:
            await self._claim_extension(body.extension, row)
            row.extension = body.extension
        if body.name is not None:
            row.name = body.name
        if body.max_participants is not None:
            row.max_participants = body.max_participants
        if "pin" in given:  # left out: unchanged; null: no PIN any more
            row.pin = body.pin.get_secret_value() if body.pin is not None else None
        self.rooms.touch(row)
        await self.work.commit()
        return row

    async def delete(self, room_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.rooms.get(room_id)
        check_if_match(if_match, row.etag())
        await refuse_if_referenced(self.session, self.tenant_id, row.id, "conference room")
        await refuse_if_number_entry(self.numbers, self.tenant_id, row.id, RoomIsNumberEntry)
        await self.rooms.delete(row)
        await self.work.commit()

    async def _claim_extension(self, extension: str, room: ConferenceRoomRow | None) -> None:
        # The tenant row is locked as the users' service locks it when a user takes an
        # extension: two admins giving one extension to a user and a room wait in turn.
        await self.users.tenant(for_update=True)
        if await self.users.extension_owner(extension) is not None:
            raise ExtensionTaken(extension, "a user")
        other = await self.rooms.extension_owner(extension)
        if other is not None and (room is None or other.id != room.id):
            raise ExtensionTaken(extension, f"conference room {other.name!r}")

"""/v1/conference-rooms: rooms callers dial (or are routed to) to talk together.

A room is an extension of the tenant's plan: a phone dialling it, an IVR option,
a number's entry or a route-plan step (``{"type": "conference", "room_id"}``)
takes the caller in. The media node of the caller's city mixes the room (a room
per node: callers of another city's node meet in that node's room). The PIN is
write-only: answers say ``pin_set``, never the PIN.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .models import ConferenceRoomRow
from .schemas import RoomCreate, RoomOut, RoomUpdate
from .service import ConferenceRoomService

router = APIRouter(prefix="/v1/conference-rooms", tags=["conference-rooms"])


def room_service(
    session: Session, principal: TenantMember, context: Context
) -> ConferenceRoomService:
    return ConferenceRoomService(session, principal, context.publisher, context.numbers)


Service = Annotated[ConferenceRoomService, Depends(room_service)]


def _out(row: ConferenceRoomRow, response: Response | None = None) -> RoomOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return RoomOut(
        id=row.id,
        extension=row.extension,
        name=row.name,
        pin_set=row.pin is not None,
        max_participants=row.max_participants,
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("", response_model=Page[RoomOut], summary="List conference rooms (by extension)")
async def list_rooms(_: TenantMember, service: Service, paging: Paging) -> Page[RoomOut]:
    rows, total = await service.list(paging)
    return Page(
        items=[_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    response_model=RoomOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a conference room",
    description=(
        "The extension must not be a user's nor another room's (409 `extension-taken`). "
        "Callers reach the room by dialling it from a tenant phone, or through any target "
        '`{"type": "conference", "room_id"}` (IVR options, number entries, route-plan '
        "steps, group overflows)."
    ),
    responses=error_responses(409, 422),
)
async def create_room(
    _: TenantAdmin, service: Service, body: RoomCreate, response: Response
) -> RoomOut:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/conference-rooms/{row.id}"
    return _out(row, response)


@router.get(
    "/{room_id}",
    response_model=RoomOut,
    summary="Read a conference room (never its PIN)",
    responses=error_responses(404),
)
async def get_room(
    _: TenantMember, service: Service, room_id: uuid.UUID, response: Response
) -> RoomOut:
    return _out(await service.get(room_id), response)


@router.patch(
    "/{room_id}",
    response_model=RoomOut,
    summary="Change a conference room",
    description=(
        "Fields left out are not changed; the PIN only changes when `pin` is given "
        "(`pin: null` removes it). Callers already in the room stay."
    ),
    responses=error_responses(404, 409, 412, 422),
)
async def update_room(
    _: TenantAdmin,
    service: Service,
    room_id: uuid.UUID,
    body: RoomUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> RoomOut:
    return _out(await service.update(room_id, body, if_match), response)


@router.delete(
    "/{room_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a conference room nothing routes to",
    responses=error_responses(404, 409, 412),
)
async def delete_room(
    _: TenantAdmin, service: Service, room_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(room_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""/v1/notes: what people wrote down about a contact, a company or a deal."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from vpbx_control.errors import error_responses
from vpbx_control.paging import IfMatchHeader, Page, check_if_match

from ..deps import Paging, Session, TenantMember
from ..errors import NoteNotFound
from .models import NoteRow
from .schemas import Note, NoteCreate, NoteUpdate
from .service import TARGETS, NoteService, one_target, view

router = APIRouter(prefix="/v1/notes", tags=["notes"])


def note_service(session: Session, caller: TenantMember) -> NoteService:
    return NoteService(session, caller)


Service = Annotated[NoteService, Depends(note_service)]


async def _note(service: NoteService, note_id: uuid.UUID) -> NoteRow:
    row = await service.notes.find(note_id)
    if row is None:
        raise NoteNotFound()
    return row


@router.post(
    "",
    status_code=201,
    response_model=Note,
    summary="Write a note on a contact, a company or a deal",
    responses=error_responses(404),
)
async def create_note(body: NoteCreate, service: Service, response: Response) -> Note:
    """Exactly one of ``contact_id``, ``company_id``, ``deal_id`` (422 naming them
    otherwise); 404 ``reference-not-found`` for one the tenant does not have."""
    row = await service.create(body)
    response.headers["Location"] = f"/v1/notes/{row.id}"
    response.headers["ETag"] = row.etag()
    return view(row)


@router.get(
    "",
    response_model=Page[Note],
    summary="The notes on a contact, a company or a deal (newest first)",
    responses=error_responses(404),
)
async def list_notes(
    service: Service,
    paging: Paging,
    contact_id: uuid.UUID | None = None,
    company_id: uuid.UUID | None = None,
    deal_id: uuid.UUID | None = None,
) -> Page[Note]:
    """Exactly one of the three filters (422 naming them otherwise)."""
    values = dict(zip(TARGETS, (contact_id, company_id, deal_id), strict=True))
    name, target_id = one_target(values, "query")
    items, total = await service.page(await service.search(name, target_id), paging)
    return Page[Note](items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{note_id}", response_model=Note, summary="Read a note", responses=error_responses(404)
)
async def read_note(note_id: uuid.UUID, service: Service, response: Response) -> Note:
    row = await _note(service, note_id)
    response.headers["ETag"] = row.etag()
    return view(row)


@router.patch(
    "/{note_id}",
    response_model=Note,
    summary="Change a note's text (its author, supervisors and tenant admins)",
    responses=error_responses(403, 404, 412),
)
async def update_note(
    note_id: uuid.UUID,
    body: NoteUpdate,
    service: Service,
    response: Response,
    if_match: IfMatchHeader = None,
) -> Note:
    row = await _note(service, note_id)
    check_if_match(if_match, row.etag())
    row = await service.update(row, body)
    response.headers["ETag"] = row.etag()
    return view(row)


@router.delete(
    "/{note_id}",
    status_code=204,
    summary="Delete a note (its author, supervisors and tenant admins)",
    responses=error_responses(403, 404, 412),
)
async def delete_note(
    note_id: uuid.UUID, service: Service, if_match: IfMatchHeader = None
) -> Response:
    row = await _note(service, note_id)
    check_if_match(if_match, row.etag())
    await service.delete(row)
    return Response(status_code=204)

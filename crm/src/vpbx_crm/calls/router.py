"""/v1/contacts/{id}/calls and /v1/calls: the call timeline the nodes' events build."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.errors import error_responses
from vpbx_control.paging import Page, fetch_page
from vpbx_control.voicemails.models import voicemail_id

from ..contacts.repository import Contacts
from ..deps import Paging, Session, TenantMember
from ..errors import ContactNotFound, NotFound
from ..events.handler import MISSED_REASONS
from ..identity import Caller
from .models import CallRow
from .schemas import CallEntry

router = APIRouter(tags=["calls"])


def call_entry(row: CallRow) -> CallEntry:
    talk_s = 0
    if row.answered_at is not None and row.ended_at is not None:
        talk_s = max(0, round((row.ended_at - row.answered_at).total_seconds()))
    return CallEntry(
        call_id=row.call_id,
        contact_id=row.contact_id,
        direction=row.direction,
        phone=row.phone,
        number=row.number,
        label=row.label,
        status=row.status,
        end_reason=row.end_reason,
        answered_by=row.answered_by,
        answered_user_id=row.answered_user_id,
        missed=row.direction == "inbound" and row.end_reason in MISSED_REASONS,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        talk_s=talk_s,
        recording_url=(
            f"/v1/calls/{quote(row.call_id, safe='@')}/recording" if row.recording_key else None
        ),
        recording_ms=row.recording_ms,
        voicemail_url=(
            f"/v1/voicemails/{voicemail_id(row.tenant_id, row.call_id)}/audio"
            if row.voicemail_key
            else None
        ),
        voicemail_ms=row.voicemail_ms,
    )


class CallTimeline:
    def __init__(self, session: AsyncSession, caller: Caller) -> None:
        self.session = session
        self.caller = caller

    def scoped(self) -> Select[Any]:
        return select(CallRow).where(CallRow.tenant_id == self.caller.tenant)

    async def page(self, query: Select[Any], paging: Paging) -> Page[CallEntry]:
        rows, total = await fetch_page(
            self.session, query.order_by(CallRow.started_at.desc(), CallRow.call_id), paging
        )
        return Page[CallEntry](
            items=[call_entry(row) for row in rows],
            total=total,
            limit=paging.limit,
            offset=paging.offset,
        )


def call_timeline(session: Session, caller: TenantMember) -> CallTimeline:
    return CallTimeline(session, caller)


Timeline = Annotated[CallTimeline, Depends(call_timeline)]


@router.get(
    "/v1/contacts/{contact_id}/calls",
    response_model=Page[CallEntry],
    summary="A contact's calls, newest first, with recordings and voice messages",
    responses=error_responses(404),
)
async def contact_calls(
    contact_id: uuid.UUID, timeline: Timeline, paging: Paging
) -> Page[CallEntry]:
    contacts = Contacts(timeline.session, timeline.caller.tenant)
    if await contacts.find(contact_id) is None:
        raise ContactNotFound()
    return await timeline.page(timeline.scoped().where(CallRow.contact_id == contact_id), paging)


@router.get("/v1/calls", response_model=Page[CallEntry], summary="The tenant's calls, newest first")
async def list_calls(
    timeline: Timeline,
    paging: Paging,
    phone: Annotated[
        str | None, Query(max_length=16, description="the outside party, E.164")
    ] = None,
    status: Annotated[str | None, Query(pattern="^(ringing|talking|ended)$")] = None,
) -> Page[CallEntry]:
    query = timeline.scoped()
    if phone is not None:
        query = query.where(CallRow.phone == phone)
    if status is not None:
        query = query.where(CallRow.status == status)
    return await timeline.page(query, paging)


@router.get(
    "/v1/calls/{call_id}",
    response_model=CallEntry,
    summary="One call of the timeline",
    responses=error_responses(404),
)
async def read_call(call_id: str, timeline: Timeline) -> CallEntry:
    row = await timeline.session.get(CallRow, (timeline.caller.tenant, call_id))
    if row is None:
        raise NotFound("call not found")
    return call_entry(row)

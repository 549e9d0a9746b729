"""/v1/contacts/{id}/calls and /v1/calls: the call timeline the nodes' events build."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Select, false, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.auth.principal import MANAGERS
from vpbx_control.errors import error_responses
from vpbx_control.paging import Page, fetch_page
from vpbx_control.voicemails.models import voicemail_id

from ..contacts.models import ContactRow
from ..contacts.repository import Contacts
from ..deps import Context, Paging, Session, TenantMember
from ..errors import ContactNotFound, IdentityUnavailable, NotFound
from ..events.handler import MISSED_REASONS
from ..identity import Caller, IdentityClient, IdentityUnavailableError
from ..scripts.schemas import CallScript
from ..scripts.service import CallScriptService, script_view
from .models import CallRow
from .results import CallResultService, result_view
from .schemas import CallEntry, CallResultCreate

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
        result=result_view(row),
    )


class CallTimeline:
    def __init__(self, session: AsyncSession, caller: Caller, identity: IdentityClient) -> None:
        self.session = session
        self.caller = caller
        self.identity = identity

    def scoped(self) -> Select[Any]:
        return select(CallRow).where(CallRow.tenant_id == self.caller.tenant)

    async def visible(self) -> Select[Any]:
        """The calls the caller may see: all of the tenant's for supervisors and tenant
        admins; for an agent those offered to, answered or placed by their extension, and
        those of the clients they are responsible for."""
        query = self.scoped()
        if self.caller.role in MANAGERS:
            return query
        me = self.caller.user_id
        if me is None:
            return query.where(false())  # an agent's API key is nobody's extension
        try:
            user = await self.identity.user(self.caller.tenant, str(me))
        except IdentityUnavailableError as exc:
            raise IdentityUnavailable() from exc
        mine = [
            CallRow.answered_user_id == me,
            CallRow.contact_id.in_(
                select(ContactRow.id).where(
                    ContactRow.tenant_id == self.caller.tenant, ContactRow.owner_user_id == me
                )
            ),
        ]
        extension = user.extension if user is not None else None
        if extension:
            offered = literal(",").concat(CallRow.callee).concat(",")
            mine += [
                CallRow.answered_by == extension,
                CallRow.caller == extension,
                # Every extension the call rang, comma-separated.
                offered.contains(f",{extension},", autoescape=True),
            ]
        return query.where(or_(*mine))

    async def call(self, call_id: str, *, lock: bool = False) -> CallRow:
        """A call the caller may see; 404 for any other (another tenant's, a colleague's)."""
        query = (await self.visible()).where(CallRow.call_id == call_id)
        if lock:
            query = query.with_for_update(of=CallRow)
        row: CallRow | None = (await self.session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound("call not found")
        return row

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


def call_timeline(session: Session, caller: TenantMember, context: Context) -> CallTimeline:
    return CallTimeline(session, caller, context.identity)


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


@router.get(
    "/v1/calls",
    response_model=Page[CallEntry],
    summary="The tenant's calls, newest first (an agent's own and their clients')",
)
async def list_calls(
    timeline: Timeline,
    paging: Paging,
    phone: Annotated[
        str | None, Query(max_length=16, description="the outside party, E.164")
    ] = None,
    status: Annotated[str | None, Query(pattern="^(ringing|talking|ended)$")] = None,
) -> Page[CallEntry]:
    """Supervisors and tenant admins see every call; an agent those offered to, answered or
    placed by them and those of the clients they are responsible for."""
    query = await timeline.visible()
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
    """404 for a call the caller may not see (an agent sees their own and their clients')."""
    return call_entry(await timeline.call(call_id))


@router.get(
    "/v1/calls/{call_id}/script",
    response_model=CallScript | None,
    summary="The call script for the call: the dialled number's, else its campaign's",
    responses=error_responses(404),
)
async def call_script(call_id: str, timeline: Timeline) -> CallScript | None:
    """null when no script names the number nor its label."""
    row = await timeline.call(call_id)
    scripts = CallScriptService(timeline.session, timeline.caller)
    script = await scripts.for_call(row.number, row.label)
    return None if script is None else script_view(script)


@router.post(
    "/v1/calls/{call_id}/result",
    status_code=201,
    response_model=CallEntry,
    summary="Store the after-call form's result and apply its actions",
    responses=error_responses(403, 404, 409),
)
async def store_result(
    call_id: str, body: CallResultCreate, timeline: Timeline, context: Context
) -> CallEntry:
    """The checked stages of the call's script, the outcome, and at most one of each
    action: move a deal of the call's contact to a stage, close a task of the call or the
    contact, create a follow-up task. All in one transaction: an action refused (422 naming
    its field, 403, 404) stores nothing. 409 ``call-result-exists`` for a second result."""
    row = await timeline.call(call_id, lock=True)
    service = CallResultService(
        timeline.session,
        timeline.caller,
        context.identity,
        deal_outbox=context.settings.analytics_store_configured,
    )
    return call_entry(await service.store(row, body))

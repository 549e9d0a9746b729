"""/v1/calls: the tenant's call records (CDRs), read from the CDR store."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime

from vpbx_common.cdr import Direction

from ..deps import Context, Paging, Session, TenantMember
from ..errors import error_responses
from ..paging import Page
from ..targets import E164
from .schemas import CallDetailOut, CallOut, CallStatus
from .service import CallQuery, CallService

router = APIRouter(prefix="/v1/calls", tags=["calls"])

VISIBILITY = (
    "Supervisors and tenant admins see all of the tenant's calls; an agent only the calls "
    "their extension answered, was offered (rung, or offered by a queue) or placed."
)


def call_service(session: Session, principal: TenantMember, context: Context) -> CallService:
    return CallService(session, principal, context.calls)


Service = Annotated[CallService, Depends(call_service)]


@router.get(
    "",
    response_model=Page[CallOut],
    summary="List calls, newest first",
    description="Calls that started in [`from`, `to`) (default: the last 7 days), newest "
    f"first. {VISIBILITY} 503 when the CDR store does not answer.",
    responses=error_responses(503),
)
async def list_calls(
    _: TenantMember,
    service: Service,
    paging: Paging,
    from_: Annotated[
        AwareDatetime | None,
        Query(
            alias="from",
            description="ISO 8601 instant with an offset (2025-11-22T09:00:00+03:00); "
            "calls that started then or later. Default: 7 days before `to`",
        ),
    ] = None,
    to: Annotated[
        AwareDatetime | None,
        Query(description="ISO 8601 instant; calls that started before it. Default: now"),
    ] = None,
    number: Annotated[
        E164 | None,
        Query(description="the tenant number dialled, in any common form (normalised to E.164)"),
    ] = None,
    user: Annotated[
        uuid.UUID | None,
        Query(description="a user id: calls the user's extension answered, was offered or placed"),
    ] = None,
    direction: Annotated[Direction | None, Query(description="only this direction")] = None,
    status: Annotated[
        CallStatus | None,
        Query(
            description="`answered` (somebody answered in person), `missed` (nobody did; "
            "voicemail included) or one end reason"
        ),
    ] = None,
    label: Annotated[
        str | None, Query(max_length=63, description="only calls to numbers with this ad channel")
    ] = None,
) -> Page[CallOut]:
    query = CallQuery(
        start=from_,
        end=to,
        number=number,
        user_id=user,
        direction=direction,
        status=status,
        label=label,
    )
    items, total = await service.page(query, paging)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{call_id:path}",
    response_model=CallDetailOut,
    summary="Read a call with its route",
    description=f"The call and how the routing engine handled it. {VISIBILITY} Another "
    "tenant's call, or one an agent may not see, is 404.",
    responses=error_responses(404, 503),
)
async def get_call(
    _: TenantMember,
    service: Service,
    call_id: Annotated[
        str, Path(min_length=1, max_length=1024, description="the call's SIP Call-ID")
    ],
) -> CallDetailOut:
    return await service.get(call_id)

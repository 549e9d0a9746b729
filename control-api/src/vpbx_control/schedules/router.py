"""/v1/schedules: working hours used by route plans' schedule branches."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .models import ScheduleRow
from .schemas import ScheduleCreate, ScheduleOut, ScheduleUpdate
from .service import ScheduleService

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


def schedule_service(
    session: Session, principal: TenantMember, context: Context
) -> ScheduleService:
    return ScheduleService(session, principal, context.publisher)


Service = Annotated[ScheduleService, Depends(schedule_service)]


def _out(row: ScheduleRow, response: Response | None = None) -> ScheduleOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return ScheduleOut.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[ScheduleOut], summary="List schedules")
async def list_schedules(
    _: TenantMember,
    service: Service,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=63, description="name contains")] = None,
) -> Page[ScheduleOut]:
    rows, total = await service.list(paging, name)
    return Page(
        items=[_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    response_model=ScheduleOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a schedule",
    responses=error_responses(409, 422),
)
async def create_schedule(
    _: TenantAdmin, service: Service, body: ScheduleCreate, response: Response
) -> ScheduleOut:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/schedules/{row.id}"
    return _out(row, response)


@router.get(
    "/{schedule_id}",
    response_model=ScheduleOut,
    summary="Read a schedule",
    responses=error_responses(404),
)
async def get_schedule(
    _: TenantMember, service: Service, schedule_id: uuid.UUID, response: Response
) -> ScheduleOut:
    return _out(await service.get(schedule_id), response)


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleOut,
    summary="Change a schedule",
    responses=error_responses(404, 409, 412, 422),
)
async def update_schedule(
    _: TenantAdmin,
    service: Service,
    schedule_id: uuid.UUID,
    body: ScheduleUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> ScheduleOut:
    return _out(await service.update(schedule_id, body, if_match), response)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a schedule no route plan uses",
    responses=error_responses(404, 409, 412),
)
async def delete_schedule(
    _: TenantAdmin, service: Service, schedule_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(schedule_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

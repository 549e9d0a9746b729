"""/v1/route-plans: the entry point of a number as an ordered chain of steps."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .models import RoutePlanRow
from .schemas import RoutePlanCreate, RoutePlanOut, RoutePlanUpdate
from .service import RoutePlanService

router = APIRouter(prefix="/v1/route-plans", tags=["route-plans"])


def route_plan_service(
    session: Session, principal: TenantMember, context: Context
) -> RoutePlanService:
    return RoutePlanService(
        session, principal, context.publisher, context.numbers, context.outbound
    )


Service = Annotated[RoutePlanService, Depends(route_plan_service)]


def _out(row: RoutePlanRow, response: Response | None = None) -> RoutePlanOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return RoutePlanOut.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[RoutePlanOut], summary="List route plans")
async def list_route_plans(
    _: TenantMember,
    service: Service,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=63, description="name contains")] = None,
) -> Page[RoutePlanOut]:
    rows, total = await service.page(paging, name)
    return Page(
        items=[_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    response_model=RoutePlanOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a route plan",
    description="Every object a step names must exist in the tenant (404 naming the field); "
    "a step after one that always ends the call is refused (422 `unreachable-step`). "
    "The tenant's first `http-decision` step makes its decision secret, which signs the "
    "requests; it is not shown: `POST /v1/route-plans/decision-secret` makes one to read.",
    responses=error_responses(404, 409, 422),
)
async def create_route_plan(
    _: TenantAdmin, service: Service, body: RoutePlanCreate, response: Response
) -> RoutePlanOut:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/route-plans/{row.id}"
    return _out(row, response)


@router.get(
    "/{route_plan_id}",
    response_model=RoutePlanOut,
    summary="Read a route plan",
    responses=error_responses(404),
)
async def get_route_plan(
    _: TenantMember, service: Service, route_plan_id: uuid.UUID, response: Response
) -> RoutePlanOut:
    return _out(await service.get(route_plan_id), response)


@router.patch(
    "/{route_plan_id}",
    response_model=RoutePlanOut,
    summary="Change a route plan",
    description="A change that lets a call come back to a plan it already went through "
    "(via other plans, IVR menus or group overflows) is refused with 422 `route-cycle`.",
    responses=error_responses(404, 409, 412, 422),
)
async def update_route_plan(
    _: TenantAdmin,
    service: Service,
    route_plan_id: uuid.UUID,
    body: RoutePlanUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> RoutePlanOut:
    return _out(await service.update(route_plan_id, body, if_match), response)


@router.delete(
    "/{route_plan_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a route plan nothing uses",
    responses=error_responses(404, 409, 412, 503),
)
async def delete_route_plan(
    _: TenantAdmin, service: Service, route_plan_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(route_plan_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

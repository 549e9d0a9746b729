"""/v1/groups: ring groups, their members and what happens when nobody answers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from vpbx_common.agents import AgentStateStore

from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .models import GroupRow
from .schemas import GroupCreate, GroupOut, GroupUpdate, Strategy
from .service import GroupService

router = APIRouter(prefix="/v1/groups", tags=["groups"])


def group_service(session: Session, principal: TenantMember, context: Context) -> GroupService:
    agents = AgentStateStore(context.redis) if context.redis is not None else None
    return GroupService(session, principal, context.publisher, context.numbers, agents)


Service = Annotated[GroupService, Depends(group_service)]


def _item(view: tuple[GroupRow, GroupOut], response: Response) -> GroupOut:
    row, out = view
    response.headers["ETag"] = row.etag()
    return out


@router.get("", response_model=Page[GroupOut], summary="List groups")
async def list_groups(
    _: TenantMember,
    service: Service,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=63, description="name contains")] = None,
    strategy: Annotated[Strategy | None, Query(description="ring strategy")] = None,
    member_user_id: Annotated[
        uuid.UUID | None, Query(description="only groups this user is a member of")
    ] = None,
) -> Page[GroupOut]:
    views, total = await service.page(paging, name, strategy, member_user_id)
    return Page(
        items=[out for _, out in views], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    response_model=GroupOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a group",
    description="Members and the overflow target must exist in the tenant (404 naming the "
    "field); members need an extension.",
    responses=error_responses(404, 409, 422),
)
async def create_group(
    _: TenantAdmin, service: Service, body: GroupCreate, response: Response
) -> GroupOut:
    view = await service.create(body)
    response.headers["Location"] = f"/v1/groups/{view[0].id}"
    return _item(view, response)


@router.get(
    "/{group_id}", response_model=GroupOut, summary="Read a group", responses=error_responses(404)
)
async def get_group(
    _: TenantMember, service: Service, group_id: uuid.UUID, response: Response
) -> GroupOut:
    return _item(await service.get(group_id), response)


@router.patch(
    "/{group_id}",
    response_model=GroupOut,
    summary="Change a group",
    description="`members`, when given, replaces the list. An overflow that leads back to the "
    "group (through route plans, menus or other groups) is refused with 422 `route-cycle`. "
    "A group that is a number's entry keeps its name (409).",
    responses=error_responses(404, 409, 412, 422, 503),
)
async def update_group(
    _: TenantAdmin,
    service: Service,
    group_id: uuid.UUID,
    body: GroupUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> GroupOut:
    return _item(await service.update(group_id, body, if_match), response)


@router.delete(
    "/{group_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a group nothing uses",
    responses=error_responses(404, 409, 412, 503),
)
async def delete_group(
    _: TenantAdmin, service: Service, group_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(group_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""/v1/deals: deals moving through a pipeline's stages, and their history."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from vpbx_control.errors import error_responses
from vpbx_control.paging import IfMatchHeader, Page, check_if_match

from ..deps import Context, Paging, Session, TenantManager, TenantMember
from ..errors import DealNotFound
from .models import DealRow, StageKind
from .schemas import Deal, DealCreate, DealEvent, DealUpdate
from .service import DealService

router = APIRouter(prefix="/v1/deals", tags=["deals"])


def deal_service(session: Session, caller: TenantMember, context: Context) -> DealService:
    return DealService(
        session, caller, context.identity, outbox=context.settings.analytics_store_configured
    )


Service = Annotated[DealService, Depends(deal_service)]


async def _deal(service: DealService, deal_id: uuid.UUID) -> DealRow:
    row = await service.deals.find(deal_id)
    if row is None:
        raise DealNotFound()
    return row


@router.post(
    "",
    status_code=201,
    response_model=Deal,
    summary="Create a deal",
    responses=error_responses(403, 404),
)
async def create_deal(body: DealCreate, service: Service, response: Response) -> Deal:
    """Without ``pipeline_id`` the deal goes to the tenant's first pipeline (the default
    "Sales" one is created for a tenant that has none), without ``stage_id`` to its first
    open stage. 404 ``reference-not-found`` names a pipeline, stage, contact, company or
    owner the tenant does not have; 422 for a stage of another pipeline and for a lost stage
    without ``loss_reason``."""
    row = await service.create(body)
    response.headers["Location"] = f"/v1/deals/{row.id}"
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.get("", response_model=Page[Deal], summary="Find deals (newest first)")
async def list_deals(
    service: Service,
    paging: Paging,
    pipeline_id: uuid.UUID | None = None,
    stage_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
    company_id: uuid.UUID | None = None,
    owner_user_id: uuid.UUID | None = None,
    status: Annotated[StageKind | None, Query(description="the kind of the deal's stage")] = None,
    q: Annotated[str | None, Query(max_length=100, description="a part of the title")] = None,
) -> Page[Deal]:
    query = service.search(
        pipeline_id=pipeline_id,
        stage_id=stage_id,
        contact_id=contact_id,
        company_id=company_id,
        owner_user_id=owner_user_id,
        status=status,
        text=q,
    )
    items, total = await service.page(query, paging)
    return Page[Deal](items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{deal_id}",
    response_model=Deal,
    summary="Read a deal",
    responses=error_responses(404),
)
async def read_deal(deal_id: uuid.UUID, service: Service, response: Response) -> Deal:
    row = await _deal(service, deal_id)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.get(
    "/{deal_id}/history",
    response_model=Page[DealEvent],
    summary="The deal's steps through the stages (oldest first)",
    responses=error_responses(404),
)
async def deal_history(deal_id: uuid.UUID, service: Service, paging: Paging) -> Page[DealEvent]:
    row = await _deal(service, deal_id)
    items, total = await service.history(row, paging)
    return Page[DealEvent](items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.patch(
    "/{deal_id}",
    response_model=Deal,
    summary="Change a deal, or move it to another stage",
    responses=error_responses(403, 404, 412),
)
async def update_deal(
    deal_id: uuid.UUID,
    body: DealUpdate,
    service: Service,
    response: Response,
    if_match: IfMatchHeader = None,
) -> Deal:
    """A new stage writes a step to the deal's history (moved, won, lost, reopened) and
    closes or reopens the deal. Agents may take an unowned deal for themselves; giving a
    colleague's deal to another manager is for supervisors and tenant admins (403)."""
    row = await _deal(service, deal_id)
    check_if_match(if_match, row.etag())
    row = await service.update(row, body)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.delete(
    "/{deal_id}",
    status_code=204,
    summary="Delete a deal (supervisors and tenant admins)",
    responses=error_responses(403, 404, 412),
)
async def delete_deal(
    _: TenantManager, deal_id: uuid.UUID, service: Service, if_match: IfMatchHeader = None
) -> Response:
    """Its history and notes go with it. A deal that fell through is better moved to a
    lost stage: the funnel keeps counting it."""
    row = await _deal(service, deal_id)
    check_if_match(if_match, row.etag())
    await service.delete(row)
    return Response(status_code=204)

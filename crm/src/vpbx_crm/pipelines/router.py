"""/v1/pipelines: the tenant's sales pipelines, their stages, and each one's board."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from vpbx_control.errors import error_responses
from vpbx_control.paging import IfMatchHeader, Page, check_if_match

from ..deals.models import PipelineRow
from ..deals.schemas import Board
from ..deals.service import DealService
from ..deps import Context, Paging, Session, TenantManager, TenantMember
from ..errors import PipelineNotFound
from .schemas import Pipeline, PipelineCreate, PipelineUpdate
from .service import PipelineService

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])


def pipeline_service(session: Session, caller: TenantMember) -> PipelineService:
    return PipelineService(session, caller)


def deal_service(session: Session, caller: TenantMember, context: Context) -> DealService:
    return DealService(
        session, caller, context.identity, outbox=context.settings.analytics_store_configured
    )


Service = Annotated[PipelineService, Depends(pipeline_service)]
Deals = Annotated[DealService, Depends(deal_service)]


async def _pipeline(service: PipelineService, pipeline_id: uuid.UUID) -> PipelineRow:
    row = await service.pipelines.find(pipeline_id)
    if row is None:
        raise PipelineNotFound()
    return row


@router.post(
    "",
    status_code=201,
    response_model=Pipeline,
    summary="Create a pipeline (supervisors and tenant admins)",
    responses=error_responses(403, 409),
)
async def create_pipeline(
    _: TenantManager, body: PipelineCreate, service: Service, response: Response
) -> Pipeline:
    """422 for stages breaking the rules (at least one open, exactly one won, at least one
    lost; names unique); 409 ``pipeline-name-taken`` for a name another pipeline has."""
    row = await service.create(body)
    response.headers["Location"] = f"/v1/pipelines/{row.id}"
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.get("", response_model=Page[Pipeline], summary="List the pipelines, in order")
async def list_pipelines(service: Service, paging: Paging) -> Page[Pipeline]:
    """A tenant with no pipeline gets the default one here: "Sales" with the stages New,
    Qualified, Proposal, Negotiation (open), Won and Lost."""
    items, total = await service.page(paging)
    return Page[Pipeline](items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{pipeline_id}",
    response_model=Pipeline,
    summary="Read a pipeline",
    responses=error_responses(404),
)
async def read_pipeline(pipeline_id: uuid.UUID, service: Service, response: Response) -> Pipeline:
    row = await _pipeline(service, pipeline_id)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.get(
    "/{pipeline_id}/board",
    response_model=Board,
    summary="The pipeline's board: every stage in order with its deals",
    responses=error_responses(404),
)
async def pipeline_board(
    pipeline_id: uuid.UUID,
    service: Service,
    deals: Deals,
    per_stage: Annotated[
        int, Query(ge=0, le=100, description="how many of each stage's deals to list")
    ] = 20,
    owner_user_id: Annotated[
        uuid.UUID | None, Query(description="only this manager's deals (counts and totals too)")
    ] = None,
) -> Board:
    """Each stage has the count of its deals, their amounts summed per currency and the
    newest ``per_stage`` of them."""
    row = await _pipeline(service, pipeline_id)
    return await deals.board(row, per_stage, owner_user_id)


@router.patch(
    "/{pipeline_id}",
    response_model=Pipeline,
    summary="Change a pipeline and its stages (supervisors and tenant admins)",
    responses=error_responses(403, 404, 409, 412),
)
async def update_pipeline(
    _: TenantManager,
    pipeline_id: uuid.UUID,
    body: PipelineUpdate,
    service: Service,
    response: Response,
    if_match: IfMatchHeader = None,
) -> Pipeline:
    """``stages`` replaces the list: stages given with their ``id`` are kept (renamed,
    reordered), new ones get ids. 409 ``stage-in-use`` names a stage that deals sit in and
    that would be removed or change its kind."""
    row = await _pipeline(service, pipeline_id)
    check_if_match(if_match, row.etag())
    row = await service.update(row, body)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.delete(
    "/{pipeline_id}",
    status_code=204,
    summary="Delete a pipeline (supervisors and tenant admins)",
    responses=error_responses(403, 404, 409, 412),
)
async def delete_pipeline(
    _: TenantManager, pipeline_id: uuid.UUID, service: Service, if_match: IfMatchHeader = None
) -> Response:
    """409 ``pipeline-in-use`` while deals are in it."""
    row = await _pipeline(service, pipeline_id)
    check_if_match(if_match, row.etag())
    await service.delete(row)
    return Response(status_code=204)

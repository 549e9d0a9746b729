"""/v1/call-scripts: what agents say on calls to a number or of a campaign."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from vpbx_control.errors import error_responses
from vpbx_control.paging import IfMatchHeader, Page, check_if_match

from ..deps import Session, TenantManager, TenantMember
from ..errors import NotFound
from .models import CallScriptRow
from .schemas import CallScript, CallScriptCreate, CallScriptUpdate
from .service import MAX_SCRIPTS, CallScriptService, script_view

router = APIRouter(prefix="/v1/call-scripts", tags=["call scripts"])


def script_service(session: Session, caller: TenantMember) -> CallScriptService:
    return CallScriptService(session, caller)


Service = Annotated[CallScriptService, Depends(script_service)]


async def _script(service: CallScriptService, script_id: uuid.UUID) -> CallScriptRow:
    row = await service.scripts.find(script_id)
    if row is None:
        raise NotFound("call script not found")
    return row


@router.post(
    "",
    status_code=201,
    response_model=CallScript,
    summary="Create a call script (supervisors and tenant admins)",
    responses=error_responses(403, 409),
)
async def create_script(
    _: TenantManager, body: CallScriptCreate, service: Service, response: Response
) -> CallScript:
    """409 ``script-target-taken`` names a number or label another script has: a call
    has one script."""
    row = await service.create(body)
    response.headers["Location"] = f"/v1/call-scripts/{row.id}"
    response.headers["ETag"] = row.etag()
    return script_view(row)


@router.get("", response_model=Page[CallScript], summary="The tenant's call scripts, by name")
async def list_scripts(service: Service) -> Page[CallScript]:
    rows = await service.all()
    return Page[CallScript](
        items=[script_view(row) for row in rows], total=len(rows), limit=MAX_SCRIPTS, offset=0
    )


@router.get(
    "/{script_id}",
    response_model=CallScript,
    summary="Read a call script",
    responses=error_responses(404),
)
async def read_script(script_id: uuid.UUID, service: Service, response: Response) -> CallScript:
    row = await _script(service, script_id)
    response.headers["ETag"] = row.etag()
    return script_view(row)


@router.patch(
    "/{script_id}",
    response_model=CallScript,
    summary="Change a call script (supervisors and tenant admins)",
    responses=error_responses(403, 404, 409, 412),
)
async def update_script(
    _: TenantManager,
    script_id: uuid.UUID,
    body: CallScriptUpdate,
    service: Service,
    response: Response,
    if_match: IfMatchHeader = None,
) -> CallScript:
    """Results already stored keep the stage texts they were filled in with."""
    row = await _script(service, script_id)
    check_if_match(if_match, row.etag())
    row = await service.update(row, body)
    response.headers["ETag"] = row.etag()
    return script_view(row)


@router.delete(
    "/{script_id}",
    status_code=204,
    summary="Delete a call script (supervisors and tenant admins)",
    responses=error_responses(403, 404, 412),
)
async def delete_script(
    _: TenantManager, script_id: uuid.UUID, service: Service, if_match: IfMatchHeader = None
) -> Response:
    row = await _script(service, script_id)
    check_if_match(if_match, row.etag())
    await service.delete(row)
    return Response(status_code=204)

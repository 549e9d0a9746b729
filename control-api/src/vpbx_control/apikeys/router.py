"""/v1/api-keys: credentials for the tenant's integrations (tenant admins only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ..deps import Context, Paging, Session, TenantAdmin
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .models import ApiKeyRow
from .schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from .service import ApiKeyService

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


def api_key_service(session: Session, principal: TenantAdmin, context: Context) -> ApiKeyService:
    return ApiKeyService(session, principal, context.publisher)


Service = Annotated[ApiKeyService, Depends(api_key_service)]


def _out(row: ApiKeyRow, response: Response | None = None) -> ApiKeyOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return ApiKeyOut.of(row)


@router.get("", response_model=Page[ApiKeyOut], summary="List API keys (never their secrets)")
async def list_api_keys(
    _: TenantAdmin,
    service: Service,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=100, description="name contains")] = None,
    revoked: Annotated[
        bool | None, Query(description="only revoked (true) or live (false)")
    ] = None,
) -> Page[ApiKeyOut]:
    rows, total = await service.list(paging, name=name, revoked=revoked)
    return Page(
        items=[_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key; the key is shown in this response only",
    responses=error_responses(422),
)
async def create_api_key(
    _: TenantAdmin, service: Service, body: ApiKeyCreate, response: Response
) -> ApiKeyCreated:
    issued = await service.create(body)
    response.headers["Location"] = f"/v1/api-keys/{issued.row.id}"
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**_out(issued.row, response).model_dump(), key=issued.key)


@router.get(
    "/{key_id}",
    response_model=ApiKeyOut,
    summary="Read an API key (never its secret)",
    responses=error_responses(404),
)
async def get_api_key(
    _: TenantAdmin, service: Service, key_id: uuid.UUID, response: Response
) -> ApiKeyOut:
    return _out(await service.get(key_id), response)


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key: it stops working at once; the record stays listed",
    responses=error_responses(404, 412),
)
async def revoke_api_key(
    _: TenantAdmin, service: Service, key_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.revoke(key_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""/v1/platform: the platform operator manages tenants and the pool of phone numbers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from vpbx_common.manifests import RecordingPolicy

from ..deps import Context, Paging, PlatformAdmin, Session
from ..errors import error_responses
from ..numbers.models import PoolNumberRow
from ..outbound.service import outbound_out
from ..paging import IfMatchHeader, Page
from ..tenants.models import TenantRow
from .schemas import (
    PlanLimits,
    PoolAdd,
    PoolAdded,
    PoolNumberOut,
    TenantCreate,
    TenantOut,
    TenantUpdate,
)
from .service import PoolService, TenantService, tenant_etag

router = APIRouter(prefix="/v1/platform", tags=["platform"])


def tenant_service(session: Session, context: Context) -> TenantService:
    return TenantService(session, context.numbers, context.publisher, context.passwords)


def pool_service(session: Session, context: Context) -> PoolService:
    return PoolService(session, context.numbers)


Tenants = Annotated[TenantService, Depends(tenant_service)]
Pool = Annotated[PoolService, Depends(pool_service)]
TenantId = Annotated[str, Path(max_length=63, description="the tenant's name", examples=["acme"])]
PoolNumber = Annotated[
    str,
    Path(max_length=32, description="the phone number (E.164)", examples=["+74950000001"]),
]


def _tenant(row: TenantRow, response: Response | None = None) -> TenantOut:
    if response is not None:
        response.headers["ETag"] = tenant_etag(row)
    return TenantOut(
        id=row.id,
        display_name=row.display_name,
        sip_domain=row.sip_domain,
        cities=[str(city) for city in row.cities],
        plan=PlanLimits(
            seats=row.seats, numbers=row.numbers, concurrent_calls=row.concurrent_calls
        ),
        suspended=row.suspended,
        recording_policy=RecordingPolicy(row.recording_policy),
        outbound=outbound_out(row),
        revision=row.revision,
        created_at=row.created_at,
    )


def _pool_number(row: PoolNumberRow) -> PoolNumberOut:
    return PoolNumberOut(
        number=row.number,
        city=row.city,
        available=row.tenant_id is None,
        tenant_id=row.tenant_id,
        created_at=row.created_at,
    )


# --- tenants -----------------------------------------------------------------------


@router.get("/tenants", response_model=Page[TenantOut], summary="List tenants")
async def list_tenants(
    _: PlatformAdmin,
    service: Tenants,
    paging: Paging,
    name: Annotated[
        str | None, Query(max_length=200, description="name or display name contains")
    ] = None,
    suspended: Annotated[bool | None, Query(description="only (not) suspended ones")] = None,
) -> Page[TenantOut]:
    rows, total = await service.list(paging, name, suspended)
    return Page(
        items=[_tenant(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "/tenants",
    response_model=TenantOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a tenant (and its Tenant resource), optionally with its first admin",
    responses=error_responses(409, 422, 503),
)
async def create_tenant(
    _: PlatformAdmin, service: Tenants, body: TenantCreate, response: Response
) -> TenantOut:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/platform/tenants/{row.id}"
    return _tenant(row, response)


@router.get(
    "/tenants/{tenant_id}",
    response_model=TenantOut,
    summary="Read a tenant",
    responses=error_responses(404),
)
async def get_tenant(
    _: PlatformAdmin, service: Tenants, tenant_id: TenantId, response: Response
) -> TenantOut:
    return _tenant(await service.get(tenant_id), response)


@router.patch(
    "/tenants/{tenant_id}",
    response_model=TenantOut,
    summary="Change a tenant's name, plan limits, cities, suspension or policies",
    responses=error_responses(404, 409, 412, 422, 503),
)
async def update_tenant(
    _: PlatformAdmin,
    service: Tenants,
    tenant_id: TenantId,
    body: TenantUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> TenantOut:
    return _tenant(await service.update(tenant_id, body, if_match), response)


@router.delete(
    "/tenants/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a tenant that holds no numbers, with all its settings",
    responses=error_responses(404, 409, 412, 503),
)
async def delete_tenant(
    _: PlatformAdmin, service: Tenants, tenant_id: TenantId, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(tenant_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the number pool -----------------------------------------------------------------


@router.get("/pool", response_model=Page[PoolNumberOut], summary="List the number pool")
async def list_pool(
    _: PlatformAdmin,
    service: Pool,
    paging: Paging,
    city: Annotated[str | None, Query(max_length=63, description="only this city")] = None,
    available: Annotated[
        bool | None, Query(description="true: free numbers only; false: taken ones only")
    ] = None,
    tenant: Annotated[
        str | None, Query(max_length=63, description="only numbers this tenant holds")
    ] = None,
) -> Page[PoolNumberOut]:
    rows, total = await service.list(paging, city, available, tenant)
    return Page(
        items=[_pool_number(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/pool",
    response_model=PoolAdded,
    status_code=status.HTTP_201_CREATED,
    summary="Add available numbers to the pool",
    responses=error_responses(409, 422, 503),
)
async def add_to_pool(
    _: PlatformAdmin, service: Pool, body: PoolAdd, response: Response
) -> PoolAdded:
    rows = await service.add(body)
    response.headers["Location"] = f"/v1/platform/pool?city={body.city}&available=true"
    return PoolAdded(items=[_pool_number(r) for r in rows])


@router.get(
    "/pool/{number}",
    response_model=PoolNumberOut,
    summary="Read one pool number",
    responses=error_responses(404, 422),
)
async def get_pool_number(_: PlatformAdmin, service: Pool, number: PoolNumber) -> PoolNumberOut:
    return _pool_number(await service.get(number))


@router.delete(
    "/pool/{number}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an available number from the pool",
    responses=error_responses(404, 409, 422),
)
async def remove_from_pool(_: PlatformAdmin, service: Pool, number: PoolNumber) -> Response:
    await service.delete(number)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""/v1/feature-codes: read by every member of the tenant, changed by its admins."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import Context, Session, TenantAdmin, TenantMember
from ..errors import NotFound
from ..repository import TenantWork
from ..tenants.models import TenantRow
from .schemas import FeatureCodes
from .service import stored_codes

router = APIRouter(prefix="/v1/feature-codes", tags=["feature-codes"])

RUNS = (
    "The media nodes run all of them: group and directed pickup answer a call that is "
    "ringing, park holds a caller with music on a slot until a phone dials it, and "
    "listen/whisper/barge are refused (403) to anyone but supervisors and tenant admins."
)


async def _tenant(session: Session, tenant_id: str) -> TenantRow:
    tenant = await session.get(TenantRow, tenant_id)
    if tenant is None:  # deleted while the credential was still valid
        raise NotFound("tenant not found")
    return tenant


@router.get("", response_model=FeatureCodes, summary="The tenant's feature codes", description=RUNS)
async def get_feature_codes(principal: TenantMember, session: Session) -> FeatureCodes:
    return stored_codes(await _tenant(session, principal.tenant))


@router.put(
    "",
    response_model=FeatureCodes,
    summary="Replace the tenant's feature codes",
    description=f"Every code starts with * or # and differs from the others (422 naming the "
    f"field otherwise). Phones use the new codes as soon as their node reloads. {RUNS}",
)
async def put_feature_codes(
    principal: TenantAdmin, session: Session, context: Context, body: FeatureCodes
) -> FeatureCodes:
    tenant = await _tenant(session, principal.tenant)
    tenant.feature_codes = body.model_dump()
    tenant.revision += 1
    await TenantWork(session, principal.tenant, context.publisher).commit()
    return body

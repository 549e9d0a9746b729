"""/v1/outbound-policy: what the tenant's people may dial out (read only)."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import Session, TenantAdmin
from ..errors import NotFound
from ..tenants.models import TenantRow
from .schemas import OutboundPolicyOut
from .service import outbound_out

router = APIRouter(prefix="/v1/outbound-policy", tags=["outbound"])


@router.get(
    "",
    response_model=OutboundPolicyOut,
    summary="The tenant's outbound policy (set by the platform operator)",
    description=(
        "What the tenant's people may dial out: the country whose national forms they "
        "dial, whether calls abroad and to premium-rate numbers are allowed, the caps on "
        "outbound calls at once and minutes per day, and the default caller ID. The "
        "operator pays the carriers, so only the platform operator changes this policy "
        "(`PATCH /v1/platform/tenants/{id}` with `outbound`, or the Tenant resource's "
        "`spec.outbound`); tenant admins can read it here. Which number a call shows is "
        "chosen per call: the user's `settings.caller_id` if set, else one of the "
        "tenant's numbers in or near the callee's region, else `default_caller_id`."
    ),
)
async def get_outbound_policy(principal: TenantAdmin, session: Session) -> OutboundPolicyOut:
    tenant = await session.get(TenantRow, principal.tenant)
    if tenant is None:  # the tenant was deleted while the credential was still valid
        raise NotFound("tenant not found")
    return outbound_out(tenant)

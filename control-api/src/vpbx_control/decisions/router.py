"""/v1/route-plans/decision-secret: the key that signs the tenant's HTTP decisions.

Tenant admins only. HTTP-decision steps (route plans) make the media node POST
the call to the tenant's server; every such request carries
``X-Vpbx-Signature: t=<unix seconds>,v1=<hex>``, the HMAC-SHA256 under the
tenant's decision secret of ``"<t>." + <raw body>``, exactly as webhook
deliveries are signed (``vpbx_common.signing.verify`` checks it). The secret is
made automatically with the tenant's first HTTP-decision step and is never
shown then: rotate it to get one to configure on the receiving server.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from ..deps import Context, Session, TenantAdmin
from .schemas import DecisionSecretIssued, DecisionSecretStatus
from .service import DecisionSecretService

PATH = "/v1/route-plans/decision-secret"

router = APIRouter(prefix=PATH, tags=["route-plans"])


def decision_secret_service(
    session: Session, principal: TenantAdmin, context: Context
) -> DecisionSecretService:
    return DecisionSecretService(session, principal, context.publisher)


Service = Annotated[DecisionSecretService, Depends(decision_secret_service)]


@router.get(
    "",
    response_model=DecisionSecretStatus,
    summary="Whether HTTP decisions are signed, and since when (never the secret)",
)
async def get_decision_secret(_: TenantAdmin, service: Service) -> DecisionSecretStatus:
    row = await service.current()
    if row is None:
        return DecisionSecretStatus(configured=False, created_at=None)
    return DecisionSecretStatus(configured=True, created_at=row.created_at)


@router.post(
    "",
    response_model=DecisionSecretIssued,
    status_code=status.HTTP_201_CREATED,
    summary="Make a new decision secret; it is shown in this response only",
    description=(
        "Replaces the tenant's decision secret (or makes the first one) and returns it, "
        "this once. The media nodes reload their config and sign every HTTP decision "
        "from then on with the new secret; the old one stops working at once. The "
        "secret made automatically with the first HTTP-decision step is never shown: "
        "rotate to read one."
    ),
)
async def rotate_decision_secret(
    _: TenantAdmin, service: Service, response: Response
) -> DecisionSecretIssued:
    row = await service.rotate()
    response.headers["Location"] = PATH
    response.headers["Cache-Control"] = "no-store"
    return DecisionSecretIssued(secret=row.secret, created_at=row.created_at)

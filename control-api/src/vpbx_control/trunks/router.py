"""/v1/trunks: the tenant's own carrier trunks ("bring your own carrier").

Tenant admins only, reads included: a trunk's address and credentials are the
tenant's contract with its carrier. Outbound calls go through the tenant's own
trunks first (by priority), then through the platform's. The password is
write-only: answers say ``password_set``, never the password.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from ..deps import Context, Paging, Session, TenantAdmin
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .models import TrunkRow
from .schemas import Registration, TrunkCreate, TrunkOut, TrunkUpdate
from .service import TrunkService

router = APIRouter(prefix="/v1/trunks", tags=["trunks"])

TRUNKS_DOC = """\
A trunk is `sip:HOST[:PORT][;transport=udp|tcp]`. With `register: true` the tenant's
media nodes register with the carrier (one binding per city, digest auth with
`username` and `password`); otherwise the carrier and the nodes know each other by
address, and `allowed_addresses` lists where the carrier's calls come from. Outside
local mode HOST must be on the Internet: a private, loopback or internal host is
refused (422 on `uri`), and a name is resolved when the trunk is saved.

`registration` is what the tenant's nodes report (per city): `registered`,
`registering`, `failed` (with the carrier's `reason`), `not-registering` (register
off) or `unknown` (no node reported yet, or the reports cannot be read).
"""


def trunk_service(session: Session, principal: TenantAdmin, context: Context) -> TrunkService:
    return TrunkService(session, principal, context)


Service = Annotated[TrunkService, Depends(trunk_service)]


def _out(row: TrunkRow, registration: Registration, response: Response | None = None) -> TrunkOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return TrunkOut(
        id=row.id,
        name=row.name,
        uri=row.uri,
        registers=row.registers,
        username=row.username,
        password_set=row.password is not None,
        allowed_addresses=[str(cidr) for cidr in row.allowed_addresses or ()],
        priority=row.priority,
        passes_caller_id=row.passes_caller_id,
        registration=registration,
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _one(service: TrunkService, row: TrunkRow, response: Response) -> TrunkOut:
    [registration] = await service.registrations([row])
    return _out(row, registration, response)


@router.get(
    "",
    response_model=Page[TrunkOut],
    summary="List the tenant's trunks, in the order calls try them",
    description=TRUNKS_DOC,
)
async def list_trunks(_: TenantAdmin, service: Service, paging: Paging) -> Page[TrunkOut]:
    rows, total = await service.page(paging)
    registrations = await service.registrations(rows)
    return Page(
        items=[_out(row, reg) for row, reg in zip(rows, registrations, strict=True)],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "",
    response_model=TrunkOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a trunk",
    description=TRUNKS_DOC,
    responses=error_responses(409, 422),
)
async def create_trunk(
    _: TenantAdmin, service: Service, body: TrunkCreate, response: Response
) -> TrunkOut:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/trunks/{row.id}"
    return await _one(service, row, response)


@router.get(
    "/{trunk_id}",
    response_model=TrunkOut,
    summary="Read a trunk and its registration (never its password)",
    description=TRUNKS_DOC,
    responses=error_responses(404),
)
async def get_trunk(
    _: TenantAdmin, service: Service, trunk_id: uuid.UUID, response: Response
) -> TrunkOut:
    return await _one(service, await service.get(trunk_id), response)


@router.patch(
    "/{trunk_id}",
    response_model=TrunkOut,
    summary="Change a trunk",
    description=(
        "Fields left out are not changed; the password only changes when `password` is "
        "given.\n\n" + TRUNKS_DOC
    ),
    responses=error_responses(404, 409, 412, 422),
)
async def update_trunk(
    _: TenantAdmin,
    service: Service,
    trunk_id: uuid.UUID,
    body: TrunkUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> TrunkOut:
    return await _one(service, await service.update(trunk_id, body, if_match), response)


@router.delete(
    "/{trunk_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a trunk (the nodes drop it with their next config)",
    responses=error_responses(404, 412),
)
async def delete_trunk(
    _: TenantAdmin, service: Service, trunk_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(trunk_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""/internal/v1/lookup/{tenant}: who is calling, for the media node's crm-lookup step.

One indexed read per call, from the store itself (no cache): a client reassigned a second
ago routes to the new manager. The contract is vpbx_common.crm.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select

from vpbx_common.crm import LOOKUP_PATH, CrmContact
from vpbx_common.e164 import E164_PATTERN
from vpbx_common.manifests import DNS_LABEL
from vpbx_control.errors import error_responses

from ..contacts.models import ContactPhoneRow, ContactRow
from ..deps import Context, MediaNode

router = APIRouter(tags=["internal"])


class LookupContact(BaseModel):
    id: str
    name: str
    category: str
    owner_user_id: str | None
    vip: bool


class LookupResult(BaseModel):
    contact: LookupContact | None = Field(description="null: no contact has this phone")


_LOOKUP = (
    select(
        ContactRow.id,
        ContactRow.name,
        ContactRow.category,
        ContactRow.owner_user_id,
        ContactRow.vip,
    )
    .join(ContactPhoneRow, ContactPhoneRow.contact_id == ContactRow.id)
    .where(
        ContactPhoneRow.tenant_id == bindparam("tenant"),
        ContactPhoneRow.phone == bindparam("phone"),
    )
)


@router.get(
    LOOKUP_PATH,
    response_model=LookupResult,
    summary="The contact a phone belongs to (media nodes only)",
    responses=error_responses(401, 403),
)
async def lookup(
    _node: MediaNode,
    context: Context,
    tenant: Annotated[str, Path(pattern=DNS_LABEL.pattern, max_length=63)],
    phone: Annotated[str, Query(pattern=E164_PATTERN.pattern, description="E.164")],
) -> Response:
    # On every routed call: a pooled connection and one prepared statement, no ORM session,
    # and the body written directly (the response model documents it).
    async with context.database.engine.connect() as pooled:
        # Autocommit: the read alone, without the BEGIN and ROLLBACK round trips around it.
        connection = await pooled.execution_options(isolation_level="AUTOCOMMIT")
        row = (await connection.execute(_LOOKUP, {"tenant": tenant, "phone": phone})).first()
    contact = None
    if row is not None:
        contact = CrmContact(
            id=str(row.id),
            name=row.name,
            category=row.category,
            owner_user_id=str(row.owner_user_id) if row.owner_user_id else None,
            vip=row.vip,
        ).to_dict()
    return Response(json.dumps({"contact": contact}), media_type="application/json")

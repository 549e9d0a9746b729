"""/v1/contacts: the people a tenant talks to."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from vpbx_control.errors import error_responses
from vpbx_control.paging import IfMatchHeader, Page, check_if_match

from ..deps import Context, Paging, Session, TenantMember
from ..errors import ContactNotFound
from ..fields import Category
from .models import ContactRow
from .phones import phone_query
from .schemas import Contact, ContactCreate, ContactUpdate
from .service import ContactService

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


def contact_service(session: Session, caller: TenantMember, context: Context) -> ContactService:
    return ContactService(session, caller, context.identity, context.settings.default_country)


Service = Annotated[ContactService, Depends(contact_service)]


async def _contact(service: ContactService, contact_id: uuid.UUID) -> ContactRow:
    row = await service.contacts.find(contact_id)
    if row is None:
        raise ContactNotFound()
    return row


@router.post(
    "",
    status_code=201,
    response_model=Contact,
    summary="Create a contact",
    responses=error_responses(403, 404, 409),
)
async def create_contact(body: ContactCreate, service: Service, response: Response) -> Contact:
    """409 ``phone-taken`` when a phone already belongs to another contact of the tenant;
    404 ``reference-not-found`` for an owner or company the tenant does not have."""
    row = await service.create(body)
    response.headers["Location"] = f"/v1/contacts/{row.id}"
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.get("", response_model=Page[Contact], summary="Find contacts")
async def list_contacts(
    service: Service,
    paging: Paging,
    phone: Annotated[
        str | None,
        Query(
            max_length=40,
            description="exactly this phone, in any common form (+7 916..., 8 916..., 7916...)",
        ),
    ] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="a part of the name or of a phone")
    ] = None,
    owner_user_id: uuid.UUID | None = None,
    category: Annotated[Category | None, Query()] = None,
    company_id: uuid.UUID | None = None,
    vip: bool | None = None,
) -> Page[Contact]:
    country = service.country
    query = service.search(
        phone=phone_query(phone, country) if phone is not None else None,
        text=q,
        owner_user_id=owner_user_id,
        category=category,
        company_id=company_id,
        vip=vip,
    )
    items, total = await service.page(query, paging)
    return Page[Contact](items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{contact_id}",
    response_model=Contact,
    summary="Read a contact",
    responses=error_responses(404),
)
async def read_contact(contact_id: uuid.UUID, service: Service, response: Response) -> Contact:
    row = await _contact(service, contact_id)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.patch(
    "/{contact_id}",
    response_model=Contact,
    summary="Change a contact (e.g. give the client to another manager)",
    responses=error_responses(403, 404, 409, 412),
)
async def update_contact(
    contact_id: uuid.UUID,
    body: ContactUpdate,
    service: Service,
    response: Response,
    if_match: IfMatchHeader = None,
) -> Contact:
    """Agents may take an unowned client for themselves; reassigning a colleague's client
    is for supervisors and tenant admins (403). The change routes the client's next call
    at once: the media nodes ask the CRM on every call."""
    row = await _contact(service, contact_id)
    check_if_match(if_match, row.etag())
    row = await service.update(row, body)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.delete(
    "/{contact_id}",
    status_code=204,
    summary="Delete a contact (supervisors and tenant admins)",
    responses=error_responses(403, 404, 412),
)
async def delete_contact(
    contact_id: uuid.UUID, service: Service, if_match: IfMatchHeader = None
) -> Response:
    row = await _contact(service, contact_id)
    check_if_match(if_match, row.etag())
    await service.delete(row)
    return Response(status_code=204)

"""/v1/companies: the organisations a tenant's contacts work for."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from vpbx_control.errors import error_responses
from vpbx_control.paging import IfMatchHeader, Page, check_if_match

from ..contacts.schemas import Contact
from ..contacts.service import ContactService
from ..deps import Context, Paging, Session, TenantManager, TenantMember
from ..errors import CompanyNotFound
from ..fields import Category
from .models import CompanyRow
from .schemas import Company, CompanyCreate, CompanyUpdate
from .service import CompanyService, view

router = APIRouter(prefix="/v1/companies", tags=["companies"])


def company_service(session: Session, caller: TenantMember, context: Context) -> CompanyService:
    return CompanyService(session, caller, context.identity, context.settings.default_country)


def contact_service(session: Session, caller: TenantMember, context: Context) -> ContactService:
    return ContactService(session, caller, context.identity, context.settings.default_country)


Service = Annotated[CompanyService, Depends(company_service)]
ContactSearch = Annotated[ContactService, Depends(contact_service)]


async def _company(service: CompanyService, company_id: uuid.UUID) -> CompanyRow:
    row = await service.companies.find(company_id)
    if row is None:
        raise CompanyNotFound()
    return row


@router.post(
    "",
    status_code=201,
    response_model=Company,
    summary="Create a company",
    responses=error_responses(403, 404),
)
async def create_company(body: CompanyCreate, service: Service, response: Response) -> Company:
    """404 ``reference-not-found`` for an owner the tenant does not have; 403 when an agent
    makes a colleague responsible."""
    row = await service.create(body)
    response.headers["Location"] = f"/v1/companies/{row.id}"
    response.headers["ETag"] = row.etag()
    return view(row)


@router.get("", response_model=Page[Company], summary="Find companies")
async def list_companies(
    service: Service,
    paging: Paging,
    q: Annotated[
        str | None,
        Query(max_length=100, description="a part of the name, or digits of the tax id (ИНН)"),
    ] = None,
    owner_user_id: uuid.UUID | None = None,
    category: Annotated[Category | None, Query()] = None,
) -> Page[Company]:
    query = service.search(text=q, owner_user_id=owner_user_id, category=category)
    items, total = await service.page(query, paging)
    return Page[Company](items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{company_id}",
    response_model=Company,
    summary="Read a company",
    responses=error_responses(404),
)
async def read_company(company_id: uuid.UUID, service: Service, response: Response) -> Company:
    row = await _company(service, company_id)
    response.headers["ETag"] = row.etag()
    return view(row)


@router.get(
    "/{company_id}/contacts",
    response_model=Page[Contact],
    summary="The company's contacts",
    responses=error_responses(404),
)
async def list_company_contacts(
    company_id: uuid.UUID, service: Service, contacts: ContactSearch, paging: Paging
) -> Page[Contact]:
    row = await _company(service, company_id)
    items, total = await contacts.page(contacts.search(company_id=row.id), paging)
    return Page[Contact](items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.patch(
    "/{company_id}",
    response_model=Company,
    summary="Change a company",
    responses=error_responses(403, 404, 412),
)
async def update_company(
    company_id: uuid.UUID,
    body: CompanyUpdate,
    service: Service,
    response: Response,
    if_match: IfMatchHeader = None,
) -> Company:
    """Agents may take an unowned company for themselves; giving a colleague's company to
    another manager is for supervisors and tenant admins (403)."""
    row = await _company(service, company_id)
    check_if_match(if_match, row.etag())
    row = await service.update(row, body)
    response.headers["ETag"] = row.etag()
    return view(row)


@router.delete(
    "/{company_id}",
    status_code=204,
    summary="Delete a company (supervisors and tenant admins)",
    responses=error_responses(403, 404, 412),
)
async def delete_company(
    _: TenantManager, company_id: uuid.UUID, service: Service, if_match: IfMatchHeader = None
) -> Response:
    """Its contacts and deals stay, with ``company_id`` null; its notes are deleted."""
    row = await _company(service, company_id)
    check_if_match(if_match, row.etag())
    await service.delete(row)
    return Response(status_code=204)

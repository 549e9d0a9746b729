"""/v1/imports and /v1/exports: contacts and companies in and out as CSV or Excel files.

Supervisors and tenant admins only: an import sets who is responsible for whom, and an
export is the whole client base.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from starlette.responses import StreamingResponse

from vpbx_control.errors import ErrorBody

from ..companies.models import CompanyRow
from ..companies.repository import Companies
from ..contacts.service import ContactService
from ..deps import Context, Session, TenantManager
from ..errors import IdentityUnavailable
from ..fields import Category
from ..identity import Caller, IdentityUnavailableError
from .columns import parse_mapping
from .companies import CompanyImport
from .contacts import ContactImport
from .errors import ImportRejectedBody
from .exporting import XLSX_MEDIA_TYPE, CompanySource, ContactSource, export_response
from .importing import Importer, ImportOptions, PreviewT, run_import
from .owners import Owners
from .schemas import (
    CompanyPreview,
    ContactPreview,
    CsvDelimiter,
    ExportFormat,
    ImportPreview,
    ImportResult,
    OnDuplicate,
)
from .table import LIMITS

router = APIRouter(tags=["import and export"])

_FORMATS = (
    f"Multipart upload, field `file`: CSV (UTF-8 with or without BOM, or Windows-1251 as "
    f"Russian Excel saves it; `,`, `;` or tab separated) or an Excel workbook (.xlsx, its "
    f"first sheet); {LIMITS.describe()} (413 beyond). The first non-empty row is the "
    "header; its names (English or Russian) choose the fields, and the optional form field "
    '`mapping` (JSON, e.g. `{"Заказы": "custom.orders", "Примечание": null}`) names the '
    "field of any column. `?dry_run=true` answers 200 with what the import would do and "
    "writes nothing; without it a file with any problem imports nothing (422 "
    "`import-rejected` listing every problem with its row and field), else everything is "
    "written in one transaction (201). A row that is a record the CRM has follows "
    "`on_duplicate`: `error` (a problem of the row), `skip`, or `update` (the file's "
    "columns replace the record's values, an empty cell clears; columns the file lacks are "
    "kept)."
)

_IMPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody},
    413: {"model": ErrorBody, "description": "the file is too large"},
    422: {"model": ImportRejectedBody, "description": "a problem: nothing was imported"},
    409: {"model": ErrorBody, "description": "a phone was taken while importing"},
}

MappingField = Annotated[
    str | None,
    Form(description='JSON: column header -> field, e.g. {"Заказы": "custom.orders"}'),
]
DryRun = Annotated[bool, Query(description="only say what the import would do")]
Duplicates = Annotated[
    OnDuplicate, Query(description="a row the CRM already has: error, skip or update it")
]
UploadedFile = Annotated[UploadFile, File(description=f"CSV or .xlsx, {LIMITS.describe()}")]


async def _owners(context: Context, caller: Caller) -> Owners:
    try:
        # Read afresh: a manager added a minute ago is named in the file being imported.
        return Owners.of(await context.identity.directory(caller.tenant, fresh=True))
    except IdentityUnavailableError as exc:
        raise IdentityUnavailable() from exc


async def _read(file: UploadFile) -> bytes:
    # One byte beyond the limit is enough to refuse (never all of it).
    data = await file.read(LIMITS.max_bytes + 1)
    if len(data) > LIMITS.max_bytes:
        raise LIMITS.too_large()
    return data


async def _import(
    importer: Importer[PreviewT], file: UploadFile, dry_run: bool, response: Response
) -> ImportPreview[PreviewT] | ImportResult:
    outcome = await run_import(importer, await _read(file), dry_run)
    if dry_run:
        response.status_code = 200
    return outcome


@router.post(
    "/v1/imports/contacts",
    status_code=201,
    response_model=ImportPreview[ContactPreview] | ImportResult,
    summary="Import contacts from a CSV or Excel file (supervisors and tenant admins)",
    description=_FORMATS
    + " Columns: id, name (or Фамилия/Имя/Отчество), phones (several in a cell or several "
    "columns), emails, company (a company of the tenant by name; `create_companies=true` "
    "creates the missing ones), category, owner (e-mail or name of a user), vip "
    "(да/нет/yes/no/1/0/true/false), source_label, custom.<key>. A contact is a duplicate "
    "when one of its phones belongs to a contact of the tenant, or its id is one's.",
    responses={200: {"model": ImportPreview[ContactPreview]}, **_IMPORT_ERRORS},
)
async def import_contacts(
    caller: TenantManager,
    context: Context,
    session: Session,
    file: UploadedFile,
    response: Response,
    mapping: MappingField = None,
    dry_run: DryRun = False,
    on_duplicate: Duplicates = OnDuplicate.ERROR,
    create_companies: Annotated[
        bool, Query(description="create the companies the file names and the CRM lacks")
    ] = False,
) -> ImportPreview[ContactPreview] | ImportResult:
    options = ImportOptions(on_duplicate, create_companies, parse_mapping(mapping))
    owners = await _owners(context, caller)
    importer = ContactImport(session, caller, owners, context.settings.default_country, options)
    return await _import(importer, file, dry_run, response)


@router.post(
    "/v1/imports/companies",
    status_code=201,
    response_model=ImportPreview[CompanyPreview] | ImportResult,
    summary="Import companies from a CSV or Excel file (supervisors and tenant admins)",
    description=_FORMATS
    + " Columns: id, name, phones, emails, website, address, tax_id (ИНН), category, owner "
    "(e-mail or name of a user), custom.<key>. A company is a duplicate when its id is "
    "one's, else its tax id, else its name (among companies without a tax id).",
    responses={200: {"model": ImportPreview[CompanyPreview]}, **_IMPORT_ERRORS},
)
async def import_companies(
    caller: TenantManager,
    context: Context,
    session: Session,
    file: UploadedFile,
    response: Response,
    mapping: MappingField = None,
    dry_run: DryRun = False,
    on_duplicate: Duplicates = OnDuplicate.ERROR,
) -> ImportPreview[CompanyPreview] | ImportResult:
    options = ImportOptions(on_duplicate, mapping=parse_mapping(mapping))
    owners = await _owners(context, caller)
    importer = CompanyImport(session, caller, owners, context.settings.default_country, options)
    return await _import(importer, file, dry_run, response)


_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "the file, as an attachment",
    },
    403: {"model": ErrorBody},
}
FormatQuery = Annotated[ExportFormat, Query(alias="format", description="csv or xlsx")]
DelimiterQuery = Annotated[
    CsvDelimiter,
    Query(description="CSV: semicolon is what Excel in a Russian locale opens by double-click"),
]


@router.get(
    "/v1/exports/contacts",
    response_class=StreamingResponse,
    summary="Export contacts as CSV or Excel (supervisors and tenant admins)",
    description="The columns an import reads (export, edit, import with "
    "`on_duplicate=update`); the filters of the contact list. CSV is UTF-8 with a BOM, "
    "phones and e-mails joined by `, `, owners by e-mail.",
    responses=_EXPORT_RESPONSES,
)
async def export_contacts(
    caller: TenantManager,
    context: Context,
    session: Session,
    export_format: FormatQuery = ExportFormat.CSV,
    delimiter: DelimiterQuery = CsvDelimiter.COMMA,
    q: Annotated[str | None, Query(max_length=100, description="a part of a name or phone")] = None,
    owner_user_id: uuid.UUID | None = None,
    category: Annotated[Category | None, Query()] = None,
    company_id: uuid.UUID | None = None,
    vip: bool | None = None,
) -> StreamingResponse:
    owners = await _owners(context, caller)
    service = ContactService(session, caller, context.identity, context.settings.default_country)
    query = service.search(
        text=q, owner_user_id=owner_user_id, category=category, company_id=company_id, vip=vip
    )
    source = ContactSource(query, caller.tenant, owners)
    return await export_response(context.database, source, caller.tenant, export_format, delimiter)


@router.get(
    "/v1/exports/companies",
    response_class=StreamingResponse,
    summary="Export companies as CSV or Excel (supervisors and tenant admins)",
    description="The columns an import reads; CSV is UTF-8 with a BOM.",
    responses=_EXPORT_RESPONSES,
)
async def export_companies(
    caller: TenantManager,
    context: Context,
    session: Session,
    export_format: FormatQuery = ExportFormat.CSV,
    delimiter: DelimiterQuery = CsvDelimiter.COMMA,
    owner_user_id: uuid.UUID | None = None,
    category: Annotated[Category | None, Query()] = None,
) -> StreamingResponse:
    owners = await _owners(context, caller)
    query = Companies(session, caller.tenant).scoped()
    if owner_user_id is not None:
        query = query.where(CompanyRow.owner_user_id == owner_user_id)
    if category is not None:
        query = query.where(CompanyRow.category == category)
    query = query.order_by(CompanyRow.name, CompanyRow.id)
    source = CompanySource(query, owners)
    return await export_response(context.database, source, caller.tenant, export_format, delimiter)

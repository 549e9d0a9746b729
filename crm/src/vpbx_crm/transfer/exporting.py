"""Exports of contacts and companies, in the columns an import reads.

Rows are read in batches of ``BATCH`` by keyset (name, id), in the list's own order, so
an export of any size holds one batch in memory: per batch one read of the records, and
for contacts one of their phones and one of their companies' names. Before the first
batch, one read of the records' custom fields finds the ``custom.<key>`` columns.

Each batch is read in a session of its own, closed before the batch is written out: a
client reading a big CSV slowly holds no database connection (nor a transaction that
would keep PostgreSQL's vacuum waiting) between batches.

CSV is streamed as it is read (UTF-8 with a BOM: without it Excel reads UTF-8 as
Windows-1251 and shows Cyrillic as mojibake). An Excel workbook is a zip and can only be
sent whole: it is written row by row (openpyxl's write-only mode) into a temporary file in
a worker thread, then streamed.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any, Protocol

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import StreamingResponse

from vpbx_control.db.session import Database

from ..companies.models import CompanyRow
from ..contacts.models import ContactPhoneRow, ContactRow
from .cells import FORMULA_STARTS
from .columns import CUSTOM_PREFIX
from .owners import Owners
from .schemas import CsvDelimiter, ExportFormat
from .store import chunks, plan_with_values

BATCH = 1000
_FILE_CHUNK = 64 * 1024
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

ExportCell = str | int | float | bool | None
ExportRow = list[ExportCell]

# A cell Excel would run as a formula gets a leading apostrophe (the OWASP advice against
# CSV injection); an import takes it off. Numbers and E.164 phones ("+7916..., +7495...")
# start with + or - too but cannot call a function: they are left as they are.
_HARMLESS_SIGNED = re.compile(r"^[+-][0-9\s,.+()-]*$")

CONTACT_COLUMNS = [
    "id",
    "name",
    "phones",
    "emails",
    "company",
    "category",
    "owner",
    "vip",
    "source_label",
]
COMPANY_COLUMNS = [
    "id",
    "name",
    "phones",
    "emails",
    "website",
    "address",
    "tax_id",
    "category",
    "owner",
]


class Source(Protocol):
    """What an export reads: its columns, then its rows in batches."""

    what: str  # "contacts", "companies": the file's name

    async def header(self, session: AsyncSession) -> list[str]: ...

    def batches(self, database: Database) -> AsyncIterator[list[ExportRow]]: ...


@asynccontextmanager
async def _reading(database: Database) -> AsyncIterator[AsyncSession]:
    async with database.session() as session:
        await plan_with_values(session)
        yield session


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


async def _custom_keys(session: AsyncSession, query: Select[Any], column: Any) -> list[str]:
    keys: set[str] = set()
    result = await session.stream(
        query.with_only_columns(column).order_by(None).execution_options(yield_per=BATCH)
    )
    async for custom in result.scalars():
        keys.update(custom or {})
    return sorted(keys)


def _after(query: Select[Any], model: Any, last: tuple[str, uuid.UUID] | None) -> Select[Any]:
    """The next batch of a query ordered by (name, id)."""
    if last is not None:
        name, row_id = last
        query = query.where(or_(model.name > name, and_(model.name == name, model.id > row_id)))
    return query.limit(BATCH)


@dataclass
class ContactSource:
    query: Select[tuple[ContactRow]]  # the list's filters, ordered by (name, id)
    tenant: str
    owners: Owners
    what: str = "contacts"
    custom_keys: tuple[str, ...] = ()

    async def header(self, session: AsyncSession) -> list[str]:
        self.custom_keys = tuple(await _custom_keys(session, self.query, ContactRow.custom))
        return CONTACT_COLUMNS + [CUSTOM_PREFIX + key for key in self.custom_keys]

    async def batches(self, database: Database) -> AsyncIterator[list[ExportRow]]:
        last: tuple[str, uuid.UUID] | None = None
        while True:
            async with _reading(database) as session:
                query = _after(self.query, ContactRow, last)
                rows = list((await session.execute(query)).scalars())
                if not rows:
                    return
                phones = await self._phones(session, [row.id for row in rows])
                companies = await _company_names(
                    session, self.tenant, {row.company_id for row in rows if row.company_id}
                )
                # Plain values from here on: the session (and its rows) is closed.
                session.expunge_all()
            last = (rows[-1].name, rows[-1].id)
            yield [
                [
                    str(row.id),
                    row.name,
                    ", ".join(phones.get(row.id, [])),
                    ", ".join(row.emails),
                    companies.get(row.company_id, "") if row.company_id else "",
                    row.category,
                    self.owners.label(row.owner_user_id),
                    _yes_no(row.vip),
                    row.source_label,
                    *(_custom(row.custom.get(key)) for key in self.custom_keys),
                ]
                for row in rows
            ]

    async def _phones(
        self, session: AsyncSession, contact_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[str]]:
        phones: dict[uuid.UUID, list[str]] = {}
        rows = await session.execute(
            select(ContactPhoneRow.contact_id, ContactPhoneRow.phone)
            .where(
                ContactPhoneRow.tenant_id == self.tenant,
                ContactPhoneRow.contact_id.in_(contact_ids),
            )
            .order_by(ContactPhoneRow.contact_id, ContactPhoneRow.position)
        )
        for contact_id, phone in rows:
            phones.setdefault(contact_id, []).append(phone)
        return phones


async def _company_names(
    session: AsyncSession, tenant: str, company_ids: set[uuid.UUID]
) -> dict[uuid.UUID, str]:
    names: dict[uuid.UUID, str] = {}
    for chunk in chunks(sorted(company_ids)):
        rows = await session.execute(
            select(CompanyRow.id, CompanyRow.name).where(
                CompanyRow.tenant_id == tenant, CompanyRow.id.in_(chunk)
            )
        )
        names.update({company_id: name for company_id, name in rows})
    return names


@dataclass
class CompanySource:
    query: Select[tuple[CompanyRow]]  # filtered, ordered by (name, id)
    owners: Owners
    what: str = "companies"
    custom_keys: tuple[str, ...] = ()

    async def header(self, session: AsyncSession) -> list[str]:
        self.custom_keys = tuple(await _custom_keys(session, self.query, CompanyRow.custom))
        return COMPANY_COLUMNS + [CUSTOM_PREFIX + key for key in self.custom_keys]

    async def batches(self, database: Database) -> AsyncIterator[list[ExportRow]]:
        last: tuple[str, uuid.UUID] | None = None
        while True:
            async with _reading(database) as session:
                query = _after(self.query, CompanyRow, last)
                rows = list((await session.execute(query)).scalars())
                session.expunge_all()
            if not rows:
                return
            last = (rows[-1].name, rows[-1].id)
            yield [
                [
                    str(row.id),
                    row.name,
                    ", ".join(row.phones),
                    ", ".join(row.emails),
                    row.website,
                    row.address,
                    row.tax_id,
                    row.category,
                    self.owners.label(row.owner_user_id),
                    *(_custom(row.custom.get(key)) for key in self.custom_keys),
                ]
                for row in rows
            ]


def _custom(value: Any) -> ExportCell:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # not written by the API; shown rather than lost


# --- CSV --------------------------------------------------------------------------------


def _csv_cell(value: ExportCell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value.startswith(FORMULA_STARTS) and not _HARMLESS_SIGNED.fullmatch(value):
        return "'" + value
    return value


async def csv_stream(
    database: Database, source: Source, delimiter: CsvDelimiter
) -> AsyncIterator[bytes]:
    # Sessions of its own, one per read: the request's is closed once the endpoint has
    # returned the response, and none stays open while the client reads.
    async with _reading(database) as session:
        header = await source.header(session)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter.char)
    writer.writerow(header)
    yield ("\ufeff" + buffer.getvalue()).encode()
    async for batch in source.batches(database):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([_csv_cell(value) for value in row] for row in batch)
        yield buffer.getvalue().encode()


# --- Excel ------------------------------------------------------------------------------


class _Workbook:
    """A write-only workbook: rows go to a temporary file as they come."""

    def __init__(self, title: str, header: Sequence[str]) -> None:
        self.workbook = Workbook(write_only=True)
        self.sheet: WriteOnlyWorksheet = self.workbook.create_sheet(title)
        self.append([list(header)])

    def _cell(self, value: ExportCell) -> Cell | ExportCell:
        if not isinstance(value, str):
            return value
        if ILLEGAL_CHARACTERS_RE.search(value):
            value = ILLEGAL_CHARACTERS_RE.sub("", value)  # control characters: not in XML
        if not value.startswith("="):
            return value
        # openpyxl takes any text starting with "=" for a formula; this is text.
        cell = WriteOnlyCell(self.sheet, value=value)
        cell.data_type = "s"
        return cell

    def append(self, rows: Sequence[ExportRow]) -> None:
        for row in rows:
            self.sheet.append([self._cell(value) for value in row])

    def save(self) -> IO[bytes]:
        target = tempfile.TemporaryFile(prefix="vpbx-export-", suffix=".xlsx")  # noqa: SIM115 - closed by the response's body iterator
        self.workbook.save(target)
        target.seek(0)
        return target


async def xlsx_file(database: Database, source: Source) -> IO[bytes]:
    """The whole workbook in a temporary file (CPU work in a worker thread)."""
    async with _reading(database) as session:
        header = await source.header(session)
    book = await asyncio.to_thread(_Workbook, source.what, header)
    async for batch in source.batches(database):
        await asyncio.to_thread(book.append, batch)
    return await asyncio.to_thread(book.save)


async def file_stream(target: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(target.read, _FILE_CHUNK):
            yield chunk
    finally:
        target.close()


async def export_response(
    database: Database,
    source: Source,
    tenant: str,
    export_format: ExportFormat,
    delimiter: CsvDelimiter,
) -> StreamingResponse:
    filename = f"{source.what}-{tenant}-{dt.datetime.now(dt.UTC):%Y%m%d}.{export_format.value}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if export_format is ExportFormat.CSV:
        return StreamingResponse(
            csv_stream(database, source, delimiter),
            media_type="text/csv; charset=utf-8",
            headers=headers,
        )
    target = await xlsx_file(database, source)
    target.seek(0, io.SEEK_END)
    headers["Content-Length"] = str(target.tell())
    target.seek(0)
    return StreamingResponse(file_stream(target), media_type=XLSX_MEDIA_TYPE, headers=headers)

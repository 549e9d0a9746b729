"""Runs a report of vpbx_common.analytics for the caller's tenant and renders the result.

The report's queries are built by its TenantScope (the one place analytics queries are
restricted to a tenant); this module only ever builds the scope from the caller's own
tenant. Rendering adds the period to the document and writes the format asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.analytics import Report, TenantScope

from ..adchannels.service import AdChannelService
from ..auth.principal import Principal
from ..context import AppContext
from ..users.models import UserRow
from ..users.repository import UserRepository
from .export import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    ExportFormat,
    filename,
    tables_of,
    to_csv,
    to_xlsx,
)
from .period import ReportWindow


class ReportService:
    def __init__(self, session: AsyncSession, principal: Principal, context: AppContext) -> None:
        self.scope = TenantScope(principal.tenant)
        self.reader = context.calls
        self.users = UserRepository(session, principal.tenant)
        self.ad_channels = AdChannelService(session, principal, context.numbers, context.publisher)

    async def run(self, report: Report) -> dict[str, Any]:
        """The report's JSON document. Raises the 503s of CdrReader.read."""
        rows = await self.reader.read(*report.queries())
        return report.parse(rows).to_json()

    async def people(self) -> Sequence[UserRow]:
        """The tenant's users (the managers report names them)."""
        return await self.users.all()


def period_document(window: ReportWindow) -> dict[str, Any]:
    return {
        "from": window.first.isoformat(),
        "to": window.last.isoformat(),
        "tz": window.period.tz,
        "start_ms": window.period.start_ms,
        "end_ms": window.period.end_ms,
    }


async def render(
    name: str,
    document: Mapping[str, Any],
    window: ReportWindow,
    export: ExportFormat,
    model: type[BaseModel],
    decimals: Collection[str] = (),
) -> Response:
    """The report as JSON (checked against its documented model), CSV or XLSX; ``decimals``
    names the money fields (text in JSON, numbers in XLSX)."""
    if export is ExportFormat.JSON:
        body = model.model_validate({**document, "period": period_document(window)})
        return JSONResponse(body.model_dump(mode="json", by_alias=True))
    tables = tables_of(name, document, decimals)
    disposition = f'attachment; filename="{filename(name, window.first, window.last, export)}"'
    if export is ExportFormat.CSV:
        return Response(
            to_csv(tables[0]),
            media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    # Building a workbook is CPU work of some milliseconds: off the event loop.
    content = await asyncio.to_thread(to_xlsx, tables)
    return Response(
        content, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": disposition}
    )

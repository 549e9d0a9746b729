"""/v1/reports/...: the tenant's call analytics over any period of whole days and any
time zone, as JSON, CSV or XLSX (``?format=`` or the Accept header; reports/export.py).

Supervisors and tenant admins only (403 for agents): a report counts every call of the
tenant. 422 naming the field for a bad date, ``from`` after ``to``, a period over 400
days, an unknown ``tz`` or ``group_by``; 503 when the CDR store does not answer (as for
/v1/calls).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from vpbx_common.analytics import (
    CallDirection,
    CallsReport,
    ChannelsReport,
    ClientsReport,
    GroupBy,
    ManagersReport,
)

from ..deps import Context, Session, TenantManager
from ..errors import error_responses
from .export import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, ExportFormat, negotiate
from .period import ReportWindow, report_window
from .schemas import CallsReportOut, ChannelsReportOut, ClientsReportOut, ManagersReportOut
from .service import ReportService, render

router = APIRouter(prefix="/v1/reports", tags=["reports"])


def report_service(session: Session, principal: TenantManager, context: Context) -> ReportService:
    return ReportService(session, principal, context)


Service = Annotated[ReportService, Depends(report_service)]
Window = Annotated[ReportWindow, Depends(report_window)]


def export_format(
    format_: Annotated[
        ExportFormat | None,
        Query(
            alias="format",
            description="`json`, `csv` (UTF-8 with BOM, comma-separated, a header row) or "
            "`xlsx` (a header row, numbers as numbers); left out: the Accept header decides "
            "(`text/csv` or the XLSX media type), else JSON",
        ),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ExportFormat:
    return negotiate(format_, accept)


Export = Annotated[ExportFormat, Depends(export_format)]

EXPORTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the report: JSON, or a CSV/XLSX file named "
        "`<report>-<from>_<to>.<csv|xlsx>` (Content-Disposition)",
        "content": {
            CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **error_responses(403, 422, 503),
}


@router.get(
    "/calls",
    response_model=CallsReportOut,
    summary="Calls: answered, missed, never called back, answer speed, talk time",
    description="The calls that started in the period, one row per `group_by` key plus "
    "the totals: answered, missed (nobody answered in person; voicemail counts as missed), "
    "missed and never called back (a missed inbound call from a real number that no later "
    "answered call, in or out, connected up to now) and the median time to callback, "
    "answer speed (median, p90), service level (answered within `service_level_s`), "
    "abandoned in queue, IVR or while ringing, queue waits and talk time. `group_by=user` "
    "keys by the extension that answered (a missed call: the last one it rang). Not yet "
    "running: agent state changes (away, wrap-up) in the report.",
    responses=EXPORTS,
)
async def calls_report(
    _: TenantManager,
    service: Service,
    window: Window,
    export: Export,
    group_by: Annotated[GroupBy, Query(description="how rows are keyed")] = GroupBy.DAY,
    direction: Annotated[
        CallDirection, Query(description="which calls are counted")
    ] = CallDirection.INBOUND,
    service_level_s: Annotated[
        int, Query(ge=0, le=3600, description="seconds within which an answer counts as in time")
    ] = 20,
) -> Response:
    report = CallsReport(
        service.scope,
        window.period,
        group_by=group_by,
        direction=direction,
        service_level_s=service_level_s,
    )
    document = await service.run(report)
    return await render("calls", document, window, export, CallsReportOut)


@router.get(
    "/clients",
    response_model=ClientsReportOut,
    summary="Clients: of N inbound calls, how many from existing clients, unknown numbers, VIPs",
    description="Of the period's inbound calls: how many came from a contact the CRM knew "
    "at call time (`existing`), from anyone else (`unknown`), from VIPs, and per contact "
    "category; distinct clients, numbers that called more than once (`repeated`, the top "
    "`top` of them) and the clients with the most calls (`top_clients`). The CSV is the "
    "figures (`figure,value`); the XLSX adds a sheet per list.",
    responses=EXPORTS,
)
async def clients_report(
    _: TenantManager,
    service: Service,
    window: Window,
    export: Export,
    top: Annotated[
        int, Query(ge=1, le=1000, description="how many repeated numbers and top clients")
    ] = 10,
) -> Response:
    report = ClientsReport(service.scope, window.period, top=top)
    document = await service.run(report)
    return await render("clients", document, window, export, ClientsReportOut)


# Money fields of the channels and managers reports: exact strings in JSON, numbers in XLSX.
CHANNEL_MONEY = (
    "won_amount",
    "won_amounts",
    "spend",
    "cost_per_call",
    "cost_per_new_client",
    "cost_per_won_deal",
)


@router.get(
    "/channels",
    response_model=ChannelsReportOut,
    summary="Ad channels: calls, first-time callers, deals and what each cost",
    description="Per ad-channel label (the label of the number dialled; '' for numbers "
    "without one): inbound calls, first-time callers (numbers never heard before the "
    "period), new contacts, deals created and won (with amounts) that came by the "
    "channel, and the funnel first call -> deal -> won. `spend` is the channel's spend "
    "from /v1/ad-channels, each month's spread evenly over its days (in `tz`) and summed "
    "over the period; `cost_per_call`, `cost_per_new_client` (per first-time caller) and "
    "`cost_per_won_deal` divide it, null when there is nothing to divide by. A label with "
    "spend and no calls is a row too. Money is a string with two decimals in JSON, a "
    "number in XLSX; `currency` is the tenant's spend currency.",
    responses=EXPORTS,
)
async def channels_report(
    _: TenantManager, service: Service, window: Window, export: Export
) -> Response:
    spend = await service.ad_channels.spend_over(window.period)
    currency = await service.ad_channels.currency()
    report = ChannelsReport(service.scope, window.period, spend=spend, currency=currency)
    document = await service.run(report)
    return await render("channels", document, window, export, ChannelsReportOut, CHANNEL_MONEY)


@router.get(
    "/managers",
    response_model=ManagersReportOut,
    summary="Managers: calls offered, answered, missed, talk time, deals moved and won",
    description="One row per manager: the tenant's user (`key` their id, `name`) whose "
    "extension the calls rang or who made the deal steps, or an extension no user has now "
    "(`key` the extension, `user_id` ''). Inbound calls offered (rang them or they "
    "answered), answered, missed and talk time; calls placed; clients brought (first calls "
    "of new callers they answered); deals created, moved, won (responsible at the win, "
    "with amounts) and closed (made the winning step). Users are matched by their "
    "extension now: calls of an extension that changed hands count for its new owner.",
    responses=EXPORTS,
)
async def managers_report(
    _: TenantManager, service: Service, window: Window, export: Export
) -> Response:
    people = await service.people()
    names = {str(user.id): user.name for user in people}
    by_extension = {user.extension: str(user.id) for user in people if user.extension}
    report = ManagersReport(service.scope, window.period, users=by_extension)
    document = await service.run(report)
    for row in document["rows"]:
        row["name"] = names.get(row["user_id"])
    return await render("managers", document, window, export, ManagersReportOut, ("won_amounts",))

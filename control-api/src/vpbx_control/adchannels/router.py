"""/v1/ad-channels: the tenant's ad channels (the labels its numbers carry) and what
each cost per month. The channels report (/v1/reports/channels) divides this spend,
prorated over the report's period, by the calls and won deals each channel brought.

Supervisors and tenant admins read; tenant admins write. A label is the path's last
segments before ``/spend``, so a label with '/' in it works (encoded or not).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from ..deps import Context, Paging, Session, TenantAdmin, TenantManager
from ..errors import error_responses
from ..paging import Page
from .models import AdSpendRow
from .schemas import MONTH_PATTERN, AdChannelOut, MonthSpendOut, SpendIn, SpendOut
from .service import AdChannelService, amount_of, month_out, month_text

router = APIRouter(prefix="/v1/ad-channels", tags=["ad-channels"])


def ad_channel_service(
    session: Session, principal: TenantManager, context: Context
) -> AdChannelService:
    return AdChannelService(session, principal, context.numbers, context.publisher)


Service = Annotated[AdChannelService, Depends(ad_channel_service)]
LabelPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=63,
        pattern=r"^\S(.*\S)?$",
        description="the ad-channel label, as numbers carry it",
        examples=["yandex-direct"],
    ),
]
MonthPath = Annotated[
    str,
    Path(
        pattern=MONTH_PATTERN,
        description="the calendar month, YYYY-MM (1970-2099)",
        examples=["2026-11"],
    ),
]


def _spend_out(row: AdSpendRow, response: Response | None = None) -> SpendOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return SpendOut(
        label=row.label,
        month=month_text(row.month),
        amount=amount_of(row),
        currency=row.currency,
        revision=row.revision,
        updated_at=row.updated_at,
    )


@router.get(
    "",
    response_model=Page[AdChannelOut],
    summary="List ad channels: labels numbers carry, and labels with spend",
    description="Every label a number of the tenant carries, and every label spend is "
    "recorded for, by label, each with its numbers and its spend per month. 503 when the "
    "number store does not answer.",
    responses=error_responses(403, 503),
)
async def list_channels(_: TenantManager, service: Service, paging: Paging) -> Page[AdChannelOut]:
    items, total = await service.list(paging)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


# The /spend routes come before /{label:path}, which would take ".../spend" into the label.
@router.get(
    "/{label:path}/spend",
    response_model=list[MonthSpendOut],
    summary="Read a channel's spend per month (oldest first)",
    description="404 when no number of the tenant carries the label and no spend is "
    "recorded for it.",
    responses=error_responses(403, 404, 422, 503),
)
async def list_spend(_: TenantManager, service: Service, label: LabelPath) -> list[MonthSpendOut]:
    return [month_out(row) for row in await service.spend(label)]


@router.get(
    "/{label:path}/spend/{month}",
    response_model=SpendOut,
    summary="Read a channel's spend in one month",
    responses=error_responses(403, 404, 422),
)
async def get_spend(
    _: TenantManager, service: Service, label: LabelPath, month: MonthPath, response: Response
) -> SpendOut:
    return _spend_out(await service.month(label, month), response)


@router.put(
    "/{label:path}/spend/{month}",
    response_model=SpendOut,
    summary="Set what a channel cost in one month",
    description="201 when the month had no spend yet, 200 when it replaced it. The label "
    "need not be on a number yet. The amount is at least 0 with at most 2 decimals. All "
    "of a tenant's spend is in one currency (left out: that currency, RUB at first): 422 "
    "`currency-mismatch` naming `body.currency` for another. The channels report spreads "
    "a month's spend evenly over the month's days (see docs/control-api.md). 404 for a path "
    "no label can have (a control character such as a line break in it).",
    responses={201: {"model": SpendOut}, **error_responses(403, 404, 409, 422)},
)
async def put_spend(
    _: TenantAdmin,
    service: Service,
    label: LabelPath,
    month: MonthPath,
    body: SpendIn,
    response: Response,
) -> SpendOut:
    row, created = await service.put(label, month, body)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _spend_out(row, response)


@router.delete(
    "/{label:path}/spend/{month}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a channel's spend of one month",
    responses=error_responses(403, 404, 422),
)
async def delete_spend(
    _: TenantAdmin, service: Service, label: LabelPath, month: MonthPath
) -> Response:
    await service.delete(label, month)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{label:path}",
    response_model=AdChannelOut,
    summary="Read an ad channel: its numbers and spend per month",
    description="404 when no number of the tenant carries the label and no spend is "
    "recorded for it (another tenant's channel included).",
    responses=error_responses(403, 404, 422, 503),
)
async def get_channel(_: TenantManager, service: Service, label: LabelPath) -> AdChannelOut:
    return await service.get(label)

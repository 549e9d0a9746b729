"""/v1/webhooks: the tenant's HTTP callbacks for call events, and their delivery log.

Tenant admins only, reads included: a webhook's URL and its log are integration details.

Every delivery is a ``POST`` of ``application/json`` to the webhook's URL::

    {"id": "<delivery id>", "event": "call.answered", "tenant": "acme",
     "created_at": "2026-11-23T10:00:00Z", "data": {...}}

with the headers ``X-Vpbx-Event`` (the event), ``X-Vpbx-Delivery`` (the delivery
id, the same on every retry: deduplicate on it), ``X-Vpbx-Attempt`` (1, 2, ...)
and ``X-Vpbx-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is the
HMAC-SHA256 under the webhook's secret of ``"<t>." + <raw body>``
(``vpbx_common.signing.verify`` checks it). Any 2xx answer within the
timeout delivers; anything else is retried with exponential backoff, and the
delivery fails after the last attempt. The secret is shown only when the
webhook is created and when it is rotated.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from ..deps import Context, Paging, Session, TenantAdmin
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .delivery import WebhookDispatcher
from .models import WebhookDeliveryRow, WebhookRow
from .schemas import (
    DeliveryOut,
    DeliveryStatus,
    DeliverySummary,
    RotateSecret,
    WebhookCreate,
    WebhookEvent,
    WebhookOut,
    WebhookUpdate,
    WebhookWithSecret,
)
from .service import WebhookService

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

DELIVERY_DOC = """\
**Deliveries.** Each event is `POST`ed as JSON
`{"id", "event", "tenant", "created_at", "data"}` with the headers
`X-Vpbx-Event` (the event), `X-Vpbx-Delivery` (the delivery id, the same on every
retry: deduplicate on it), `X-Vpbx-Attempt` and
`X-Vpbx-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
keyed with the webhook's secret. Verify the HMAC over the raw body before parsing
it, compare in constant time and refuse a `t` more than 5 minutes off. A 2xx
answer delivers; anything else is retried with exponential backoff until the
delivery fails (see `GET /v1/webhooks/{id}/deliveries`).
"""


def webhook_service(session: Session, principal: TenantAdmin, context: Context) -> WebhookService:
    return WebhookService(session, principal, context.publisher, context.outbound, context.redis)


def running_dispatcher(request: Request) -> WebhookDispatcher | None:
    """The app's delivery worker, when the app runs one (``app.state.webhook_dispatcher``)."""
    dispatcher = getattr(request.app.state, "webhook_dispatcher", None)
    return dispatcher if isinstance(dispatcher, WebhookDispatcher) else None


Service = Annotated[WebhookService, Depends(webhook_service)]
Dispatcher = Annotated[WebhookDispatcher | None, Depends(running_dispatcher)]


def _out(row: WebhookRow, response: Response | None = None) -> WebhookOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return WebhookOut.model_validate(row, from_attributes=True)


def _with_secret(row: WebhookRow, secret: str, response: Response) -> WebhookWithSecret:
    response.headers["ETag"] = row.etag()
    response.headers["Cache-Control"] = "no-store"
    return WebhookWithSecret(**_out(row).model_dump(), secret=secret)


def _summary(row: WebhookDeliveryRow) -> DeliverySummary:
    return DeliverySummary.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[WebhookOut], summary="List webhooks")
async def list_webhooks(
    _: TenantAdmin,
    service: Service,
    paging: Paging,
    event: Annotated[WebhookEvent | None, Query(description="subscribed to this event")] = None,
    active: Annotated[bool | None, Query(description="only active / inactive ones")] = None,
) -> Page[WebhookOut]:
    rows, total = await service.page(paging, event, active)
    return Page(
        items=[_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    response_model=WebhookWithSecret,
    status_code=status.HTTP_201_CREATED,
    summary="Create a webhook",
    description="The answer carries the signing secret, shown this once.\n\n" + DELIVERY_DOC,
    responses=error_responses(409, 422),
)
async def create_webhook(
    _: TenantAdmin, service: Service, body: WebhookCreate, response: Response
) -> WebhookWithSecret:
    row, secret = await service.create(body)
    response.headers["Location"] = f"/v1/webhooks/{row.id}"
    return _with_secret(row, secret, response)


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="Read a webhook (without its secret)",
    responses=error_responses(404),
)
async def get_webhook(
    _: TenantAdmin, service: Service, webhook_id: uuid.UUID, response: Response
) -> WebhookOut:
    return _out(await service.get(webhook_id), response)


@router.patch(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="Change a webhook",
    description="`active: false` stops deliveries; those already queued fail when due.",
    responses=error_responses(404, 412, 422),
)
async def update_webhook(
    _: TenantAdmin,
    service: Service,
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> WebhookOut:
    return _out(await service.update(webhook_id, body, if_match), response)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook and its delivery log",
    responses=error_responses(404, 412),
)
async def delete_webhook(
    _: TenantAdmin, service: Service, webhook_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(webhook_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=WebhookWithSecret,
    summary="Replace the signing secret",
    description=(
        "Generates a new secret (or sets the one given) and returns it, this once. "
        "Deliveries sent from now on, retries included, are signed with it."
    ),
    responses=error_responses(404, 412, 422),
)
async def rotate_secret(
    _: TenantAdmin,
    service: Service,
    webhook_id: uuid.UUID,
    response: Response,
    body: Annotated[RotateSecret | None, Body()] = None,
    if_match: IfMatchHeader = None,
) -> WebhookWithSecret:
    row, secret = await service.rotate_secret(webhook_id, body, if_match)
    return _with_secret(row, secret, response)


@router.post(
    "/{webhook_id}/test",
    response_model=DeliverySummary,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a test event",
    description=(
        "Queues a `ping` event for this webhook (even an inactive one); follow it at "
        "the Location given.\n\n" + DELIVERY_DOC
    ),
    responses=error_responses(404),
)
async def send_test_event(
    _: TenantAdmin,
    service: Service,
    dispatcher: Dispatcher,
    webhook_id: uuid.UUID,
    response: Response,
) -> DeliverySummary:
    delivery = await service.send_test(webhook_id, dispatcher)
    response.headers["Location"] = f"/v1/webhooks/{webhook_id}/deliveries/{delivery.id}"
    return _summary(delivery)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliverySummary],
    summary="The webhook's delivery log, newest first",
    responses=error_responses(404),
)
async def list_deliveries(
    _: TenantAdmin,
    service: Service,
    paging: Paging,
    webhook_id: uuid.UUID,
    status_filter: Annotated[
        DeliveryStatus | None, Query(alias="status", description="only this status")
    ] = None,
    event: Annotated[str | None, Query(max_length=64, description="only this event")] = None,
) -> Page[DeliverySummary]:
    rows, total = await service.delivery_log(webhook_id, paging, status_filter, event)
    return Page(
        items=[_summary(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    response_model=DeliveryOut,
    summary="One delivery: its payload and every attempt",
    responses=error_responses(404),
)
async def get_delivery(
    _: TenantAdmin, service: Service, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryOut:
    return DeliveryOut.model_validate(
        await service.delivery(webhook_id, delivery_id), from_attributes=True
    )

from __future__ import annotations

import uuid

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.outbound import OutboundPolicy
from vpbx_common.signing import generate_secret

from ..auth.principal import Principal
from ..db.base import utcnow
from ..errors import InvalidInput
from ..nodeconfig.publisher import ConfigPublisher
from ..paging import PageParams, check_if_match
from ..repository import TenantWork
from .delivery import WebhookDispatcher
from .errors import DeliveryNotFound, WebhookLimitReached
from .models import WebhookDeliveryRow, WebhookRow
from .repository import DeliveryRepository, WebhookRepository
from .schemas import (
    PING_EVENT,
    DeliveryStatus,
    RotateSecret,
    WebhookCreate,
    WebhookEvent,
    WebhookUpdate,
)
from .subscriptions import bump_revision

MAX_WEBHOOKS_PER_TENANT = 20


class WebhookService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        publisher: ConfigPublisher,
        outbound: OutboundPolicy,
        redis_client: redis.Redis | None = None,
    ) -> None:
        self.outbound = outbound
        self.tenant_id = principal.tenant
        self.redis = redis_client
        self.repository = WebhookRepository(session, principal.tenant)
        self.deliveries = DeliveryRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)

    async def page(
        self, params: PageParams, event: WebhookEvent | None, active: bool | None
    ) -> tuple[list[WebhookRow], int]:
        return await self.repository.page(self.repository.filtered(event, active), params)

    async def get(self, webhook_id: uuid.UUID) -> WebhookRow:
        return await self.repository.get(webhook_id)

    async def create(self, body: WebhookCreate) -> tuple[WebhookRow, str]:
        if await self.repository.count() >= MAX_WEBHOOKS_PER_TENANT:
            raise WebhookLimitReached(MAX_WEBHOOKS_PER_TENANT)
        self._check_url(body.url)
        secret = body.secret or generate_secret()
        row = self.repository.add(
            WebhookRow(
                id=uuid.uuid4(),
                url=body.url,
                events=[event.value for event in body.events],
                secret=secret,
                active=body.active,
                description=body.description,
                revision=1,
            )
        )
        await self._committed()
        return row, secret

    async def update(
        self, webhook_id: uuid.UUID, body: WebhookUpdate, if_match: str | None
    ) -> WebhookRow:
        row = await self.repository.get(webhook_id)
        check_if_match(if_match, row.etag())
        if body.url is not None:
            self._check_url(body.url)
            row.url = body.url
        if body.events is not None:
            row.events = [event.value for event in body.events]
        if body.active is not None:
            row.active = body.active
        if "description" in body.model_fields_set:
            row.description = body.description
        self.repository.touch(row)
        await self._committed()
        return row

    async def _committed(self) -> None:
        """Commit a change of the tenant's webhooks and tell every replica's bridge."""
        await self.work.commit(affects_nodes=False)
        await bump_revision(self.redis, self.tenant_id)

    def _check_url(self, url: str) -> None:
        problem = self.outbound.problem(url)
        if problem is not None:
            raise InvalidInput.at("body.url", problem)

    async def delete(self, webhook_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.repository.get(webhook_id)
        check_if_match(if_match, row.etag())
        await self.repository.delete(row)  # its delivery log goes with it (ON DELETE CASCADE)
        await self._committed()

    async def rotate_secret(
        self, webhook_id: uuid.UUID, body: RotateSecret | None, if_match: str | None
    ) -> tuple[WebhookRow, str]:
        """A new secret; deliveries from now on (retries included) are signed with it."""
        row = await self.repository.get(webhook_id)
        check_if_match(if_match, row.etag())
        secret = (body.secret if body is not None else None) or generate_secret()
        row.secret = secret
        self.repository.touch(row)
        await self.work.commit(affects_nodes=False)
        return row, secret

    async def send_test(
        self, webhook_id: uuid.UUID, dispatcher: WebhookDispatcher | None
    ) -> WebhookDeliveryRow:
        """Queue a ``ping`` for this webhook alone (even when it is inactive)."""
        row = await self.repository.get(webhook_id)
        payload = {"webhook_id": str(row.id), "message": "a test delivery from vpbx"}
        delivery = self.deliveries.queue(row, PING_EVENT, payload, utcnow())
        await self.work.commit(affects_nodes=False)
        if dispatcher is not None:
            dispatcher.wake()
        return delivery

    async def delivery_log(
        self,
        webhook_id: uuid.UUID,
        params: PageParams,
        status: DeliveryStatus | None,
        event: str | None,
    ) -> tuple[list[WebhookDeliveryRow], int]:
        await self.repository.get(webhook_id)
        return await self.deliveries.page(
            self.deliveries.of_webhook(webhook_id, status, event), params
        )

    async def delivery(self, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDeliveryRow:
        await self.repository.get(webhook_id)
        row = await self.deliveries.of_webhook_by_id(webhook_id, delivery_id)
        if row is None:
            raise DeliveryNotFound()
        return row

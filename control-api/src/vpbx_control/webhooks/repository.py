from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select, String, cast, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..repository import TenantRepository
from .models import WebhookDeliveryRow, WebhookRow
from .schemas import DeliveryStatus, WebhookEvent


class WebhookRepository(TenantRepository[WebhookRow]):
    model: ClassVar[type[WebhookRow]] = WebhookRow
    label: ClassVar[str] = "webhook"

    def filtered(
        self, event: WebhookEvent | None, active: bool | None
    ) -> Select[tuple[WebhookRow]]:
        query = self.scoped().order_by(WebhookRow.created_at, WebhookRow.id)
        if active is not None:
            query = query.where(WebhookRow.active == active)
        if event is not None:
            # The JSON list as text, on PostgreSQL and SQLite alike: ["call.answered", ...]
            query = query.where(cast(WebhookRow.events, String).contains(f'"{event.value}"'))
        return query

    async def count(self) -> int:
        total = await self.session.scalar(
            select(func.count())
            .select_from(WebhookRow)
            .where(WebhookRow.tenant_id == self.tenant_id)
        )
        return int(total or 0)

    async def subscribed(self, event: str) -> list[WebhookRow]:
        """Active webhooks of the tenant subscribed to ``event`` (few per tenant: filtered here,
        the same on PostgreSQL and SQLite)."""
        rows = await self.all(self.scoped().where(WebhookRow.active.is_(True)))
        return [row for row in rows if event in row.events]


class DeliveryRepository(TenantRepository[WebhookDeliveryRow]):
    model: ClassVar[type[WebhookDeliveryRow]] = WebhookDeliveryRow
    label: ClassVar[str] = "delivery"

    def of_webhook(
        self, webhook_id: uuid.UUID, status: DeliveryStatus | None, event: str | None
    ) -> Select[tuple[WebhookDeliveryRow]]:
        query = (
            self.scoped()
            .where(WebhookDeliveryRow.webhook_id == webhook_id)
            .order_by(WebhookDeliveryRow.created_at.desc(), WebhookDeliveryRow.id)
        )
        if status is not None:
            query = query.where(WebhookDeliveryRow.status == status.value)
        if event is not None:
            query = query.where(WebhookDeliveryRow.event == event)
        return query

    def queue(
        self,
        webhook: WebhookRow,
        event: str,
        payload: Mapping[str, Any],
        now: dt.datetime,
        dedupe_key: str | None = None,
    ) -> WebhookDeliveryRow:
        """A new pending delivery of ``event`` to ``webhook``, due at once."""
        return self.add(
            WebhookDeliveryRow(
                id=uuid.uuid4(),
                webhook_id=webhook.id,
                event=event,
                payload=dict(payload),
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                history=[],
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                revision=1,
                dedupe_key=dedupe_key,
            )
        )

    async def webhooks_queued(self, dedupe_key: str) -> set[uuid.UUID]:
        """The webhooks that already have a delivery standing for ``dedupe_key``."""
        rows = await self.session.scalars(
            select(WebhookDeliveryRow.webhook_id).where(
                WebhookDeliveryRow.tenant_id == self.tenant_id,
                WebhookDeliveryRow.dedupe_key == dedupe_key,
            )
        )
        return set(rows)

    async def of_webhook_by_id(
        self, webhook_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> WebhookDeliveryRow | None:
        rows = await self.all(
            self.scoped().where(
                WebhookDeliveryRow.webhook_id == webhook_id, WebhookDeliveryRow.id == delivery_id
            )
        )
        return rows[0] if rows else None


class DeliveryQueue:
    """The delivery worker's queries. Deliberately across tenants: the worker serves all of
    them and never answers an API request; every row it touches carries its tenant."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(
        self, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[tuple[WebhookDeliveryRow, WebhookRow]]:
        """Take up to ``limit`` due deliveries for this worker until ``lease_until``.

        On PostgreSQL, rows another worker is claiming at the same moment are skipped
        (FOR UPDATE SKIP LOCKED); the lease keeps them away from other workers while
        they are sent, and returns them to the queue if this worker dies meanwhile.
        """
        query = (
            select(WebhookDeliveryRow, WebhookRow)
            .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
            .where(
                WebhookDeliveryRow.status == DeliveryStatus.PENDING.value,
                WebhookDeliveryRow.next_attempt_at <= now,
            )
            .order_by(WebhookDeliveryRow.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
        )
        claimed = [(delivery, webhook) for delivery, webhook in await self.session.execute(query)]
        for delivery, _ in claimed:
            delivery.next_attempt_at = lease_until
        return claimed

    async def get(self, delivery_id: uuid.UUID) -> WebhookDeliveryRow | None:
        return await self.session.get(WebhookDeliveryRow, delivery_id)

    async def next_due(self) -> dt.datetime | None:
        return await self.session.scalar(
            select(func.min(WebhookDeliveryRow.next_attempt_at)).where(
                WebhookDeliveryRow.status == DeliveryStatus.PENDING.value
            )
        )

    async def prune(self, older_than: dt.datetime) -> int:
        """Forget finished deliveries created before ``older_than``."""
        result = await self.session.execute(
            delete(WebhookDeliveryRow).where(
                WebhookDeliveryRow.status != DeliveryStatus.PENDING.value,
                WebhookDeliveryRow.created_at < older_than,
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

"""Moves the deal-event outbox into the analytics store; an outage delays events, never drops them.

Each batch is read from the outbox, inserted into the store, and only then deleted from the
outbox. A crash (or a second CRM replica shipping the same rows) between the insert and the
delete ships a batch again; the store keeps one row per event id, so that is no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from sqlalchemy import delete, select

from vpbx_common.cdr import CdrStore, DealEvent
from vpbx_common.cdr.shipping import BatchShipper, ShipperState
from vpbx_control.db.session import Database

from .models import DealOutboxRow

logger = logging.getLogger(__name__)


__all__ = ["DealEventShipper", "ShipperState"]


class DealEventShipper(BatchShipper):
    """Empties the outbox into the store, oldest events first (vpbx_common.cdr.shipping)."""

    items = "deal events"
    queue = "the outbox"

    def __init__(
        self,
        database: Database,
        store_factory: Callable[[], CdrStore],
        *,
        batch_size: int = 500,
        interval: float = 1.0,
        max_backoff: float = 30.0,
        stop_timeout: float = 4.0,
    ) -> None:
        super().__init__(
            store_factory,
            batch_size=batch_size,
            interval=interval,
            max_backoff=max_backoff,
            stop_timeout=stop_timeout,
        )
        self._database = database

    async def _ship_one_batch(self) -> tuple[int, bool]:
        async with self._database.session() as session:
            rows = (
                await session.execute(
                    select(DealOutboxRow.id, DealOutboxRow.event)
                    .order_by(DealOutboxRow.created_at, DealOutboxRow.id)
                    .limit(self._batch_size)
                )
            ).all()
        if not rows:
            return 0, False
        events: list[DealEvent] = []
        done: list[uuid.UUID] = []
        for row_id, payload in rows:
            try:
                events.append(DealEvent.from_json(payload))
            except (ValueError, TypeError) as exc:
                # Only a hand-edited or corrupted row gets here; kept, it would stop every
                # event behind it, so it is logged whole and dropped.
                logger.error(
                    "dropping an unreadable deal outbox row %s (%s): %r", row_id, exc, payload
                )
            done.append(row_id)
        if events:
            await asyncio.to_thread(self._insert, lambda store: store.insert_deal_events(events))
        async with self._database.session() as session:
            await session.execute(delete(DealOutboxRow).where(DealOutboxRow.id.in_(done)))
            await session.commit()
        return len(events), len(rows) >= self._batch_size

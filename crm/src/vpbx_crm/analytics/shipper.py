"""Moves the deal-event outbox into the analytics store; an outage delays events, never drops them.

Each batch is read from the outbox, inserted into the store, and only then deleted from the
outbox. A crash (or a second CRM replica shipping the same rows) between the insert and the
delete ships a batch again; the store keeps one row per event id, so that is no duplicate.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Callable

from sqlalchemy import delete, select

from vpbx_common.cdr import CdrStore, DealEvent
from vpbx_control.db.session import Database

from .models import DealOutboxRow

logger = logging.getLogger(__name__)


class ShipperState(enum.Enum):
    IDLE = "idle"  # not started, or stopped
    SHIPPING = "shipping"  # the store took the last batch (or nothing was tried yet)
    OUTAGE = "outage"  # the last attempt failed; retrying with backoff


class DealEventShipper:
    """Owns one task that empties the outbox into the store, oldest events first."""

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
        if batch_size <= 0 or interval <= 0 or max_backoff <= 0 or stop_timeout <= 0:
            raise ValueError("batch_size, interval, max_backoff and stop_timeout must be positive")
        self._database = database
        self._store_factory = store_factory
        self._batch_size = batch_size
        self._interval = interval
        self._max_backoff = max_backoff
        self._stop_timeout = stop_timeout
        self._store: CdrStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self.state = ShipperState.IDLE
        self.shipped = 0  # events the store took since start
        self._outage_failures = 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("deal event shipper already started")
        self._stopping.clear()
        self.state = ShipperState.SHIPPING
        self._task = asyncio.create_task(self._run(), name="deal-event-shipper")

    def notify(self) -> None:
        """Ship now rather than at the next interval."""
        self._wakeup.set()

    async def stop(self) -> None:
        """One last pass, bounded by stop_timeout; what is not shipped stays in the outbox
        for the next start (of this replica or another)."""
        task = self._task
        if task is None:
            return
        self._stopping.set()
        self._wakeup.set()
        done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
        self._task = None
        self.state = ShipperState.IDLE
        store, self._store = self._store, None
        if not done:
            logger.warning(
                "deal event shipper did not finish within %.1f s; the rest stays in the outbox",
                self._stop_timeout,
            )
            task.cancel()
            await asyncio.wait({task})
            # A worker thread may still be inside the store: it is left to finish there.
            return
        if not task.cancelled() and task.exception() is not None:
            logger.error("deal event shipper failed", exc_info=task.exception())
        if store is not None:
            await asyncio.to_thread(_close_logged, store)

    async def _run(self) -> None:
        backoff = self._interval
        while not self._stopping.is_set():
            if await self._drain():
                backoff = delay = self._interval
            else:
                delay = backoff
                backoff = min(backoff * 2, self._max_backoff)
            await self._sleep(delay)
        # The final pass: one try, so a dead store cannot hold the shutdown up.
        await self._drain()

    async def _sleep(self, delay: float) -> None:
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
        except TimeoutError:
            return

    async def _drain(self) -> bool:
        """Ship until the outbox is empty; False if the store or the database failed."""
        while True:
            try:
                shipped, more = await self._ship_one_batch()
            except Exception as exc:  # any failure: the rows stay, the next pass retries
                self._on_failure(exc)
                return False
            self._on_success(shipped)
            if not more:
                return True

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
            await asyncio.to_thread(self._insert, events)
        async with self._database.session() as session:
            await session.execute(delete(DealOutboxRow).where(DealOutboxRow.id.in_(done)))
            await session.commit()
        return len(events), len(rows) >= self._batch_size

    def _insert(self, events: list[DealEvent]) -> None:
        """In a worker thread: the store is opened (and migrated) on first use and after a
        failure, so a store that was down at the CRM's start is picked up when it returns."""
        store = self._store
        if store is None:
            store = self._store_factory()
            try:
                store.migrate()
            except Exception:
                _close_logged(store)
                raise
            self._store = store
        try:
            store.insert_deal_events(events)
        except Exception:
            self._store = None  # a half-broken connection is not reused
            _close_logged(store)
            raise

    def _on_failure(self, exc: Exception) -> None:
        self._outage_failures += 1
        if self.state is not ShipperState.OUTAGE:
            self.state = ShipperState.OUTAGE
            logger.warning(
                "analytics store unavailable (%s); deal events wait in the outbox, retrying",
                exc,
                exc_info=exc,
            )
        else:
            logger.debug("analytics store still unavailable: %s", exc)

    def _on_success(self, shipped: int) -> None:
        self.shipped += shipped
        if self.state is ShipperState.OUTAGE:
            logger.warning(
                "analytics store reachable again after %d failed attempts; shipping resumed",
                self._outage_failures,
            )
        self.state = ShipperState.SHIPPING
        self._outage_failures = 0


def _close_logged(store: CdrStore) -> None:
    try:
        store.close()
    except Exception:
        logger.debug("closing the analytics store failed", exc_info=True)

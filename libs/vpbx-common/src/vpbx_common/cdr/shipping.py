"""Moving a durable local queue into the CDR store in batches; an outage delays, never drops.

Two queues use it: the media node's CDR spool (vpbx_media.cdr.shipper) and the CRM's deal
event outbox (vpbx_crm.analytics.shipper). Each batch is inserted and only then removed from
its queue, so a crash in between ships it again; the store's tables keep one row per id, so
that is no duplicate. Failures are logged once per outage and retried with capped exponential
backoff; stopping makes one last bounded pass and leaves the rest queued for the next start.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from vpbx_common.cdr.store import CdrStore

logger = logging.getLogger(__name__)


class ShipperState(enum.Enum):
    IDLE = "idle"  # not started, or stopped
    SHIPPING = "shipping"  # the store took the last batch (or nothing was tried yet)
    OUTAGE = "outage"  # the last attempt failed; retrying with backoff


class BatchShipper(ABC):
    """Owns one task that empties a queue into the store; subclasses ship one batch."""

    # For the log lines: what is shipped, and where it waits meanwhile.
    items = "records"
    queue = "the queue"

    def __init__(
        self,
        store_factory: Callable[[], CdrStore],
        *,
        batch_size: int,
        interval: float,
        max_backoff: float,
        stop_timeout: float,
        on_shipped: Callable[[int], None] | None = None,
        on_store: Callable[[bool], None] | None = None,
    ) -> None:
        if batch_size <= 0 or interval <= 0 or max_backoff <= 0 or stop_timeout <= 0:
            raise ValueError("batch_size, interval, max_backoff and stop_timeout must be positive")
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
        self.shipped = 0  # items inserted since start, for metrics and tests
        self._outage_failures = 0
        # Metrics: items inserted per batch; whether the store is reachable.
        self._on_shipped = on_shipped
        self._on_store = on_store

    @abstractmethod
    async def _ship_one_batch(self) -> tuple[int, bool]:
        """Insert one batch, then remove it from the queue: (items shipped, more waiting)."""

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._stopping.clear()
        self.state = ShipperState.SHIPPING
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    def notify(self) -> None:
        """Something was queued: ship now instead of at the next interval."""
        self._wakeup.set()

    async def stop(self) -> None:
        """One last pass, bounded by stop_timeout; what is not shipped stays queued.

        If the store hangs, the worker thread is left to finish its insert (removing the batch
        from the queue later is safe); closing the store now could block on its lock.
        """
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
                "%s did not finish within %.1f s; unshipped %s stay in %s",
                type(self).__name__,
                self._stop_timeout,
                self.items,
                self.queue,
            )
            task.cancel()
            await asyncio.wait({task})
            return
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", type(self).__name__, exc_info=task.exception())
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
        """Ship until the queue is empty; False if a batch failed."""
        while True:
            try:
                shipped, more = await self._ship_one_batch()
            except Exception as exc:  # any failure: logged, the batch stays queued and is retried
                self._on_failure(exc)
                return False
            self._on_success(shipped)
            if not more:
                return True

    def _insert(self, insert: Callable[[CdrStore], None]) -> None:
        """In a worker thread: run ``insert`` on the store, opened (and migrated) on first use
        and after a failure, so a store that was down at the start is picked up when back."""
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
            insert(store)
        except Exception:
            self._store = None  # a half-broken connection is not reused
            _close_logged(store)
            raise

    def _on_failure(self, exc: Exception) -> None:
        self._outage_failures += 1
        if self.state is not ShipperState.OUTAGE:
            self.state = ShipperState.OUTAGE
            if self._on_store is not None:
                self._on_store(False)
            logger.warning(
                "CDR store unavailable (%s); %s wait in %s and shipping is retried",
                exc,
                self.items,
                self.queue,
                exc_info=exc,
            )
        else:
            logger.debug("CDR store still unavailable: %s", exc)

    def _on_success(self, shipped: int) -> None:
        self.shipped += shipped
        if shipped and self._on_shipped is not None:
            self._on_shipped(shipped)
        if self.state is ShipperState.OUTAGE:
            if self._on_store is not None:
                self._on_store(True)
            logger.warning(
                "CDR store reachable again after %d failed attempts; shipping %s resumed",
                self._outage_failures,
                self.items,
            )
        self.state = ShipperState.SHIPPING
        self._outage_failures = 0


def _close_logged(store: CdrStore) -> None:
    try:
        store.close()
    except Exception:
        logger.debug("closing the CDR store failed", exc_info=True)

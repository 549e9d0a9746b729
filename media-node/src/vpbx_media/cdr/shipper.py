"""Ships spooled CDRs to the CDR store in batches; an outage delays records, never drops them."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from vpbx_common.cdr.store import CdrStore
from vpbx_media.cdr.spool import CdrSpool

logger = logging.getLogger(__name__)


class ShipperState(enum.Enum):
    IDLE = "idle"  # not started, or stopped
    SHIPPING = "shipping"  # store reachable (as far as we know)
    OUTAGE = "outage"  # last attempt failed; retrying with backoff


class CdrShipper:
    """Owns one task that moves spool batches into the store.

    Each batch is inserted and only then acknowledged, so a crash in between re-ships it; the
    store's idempotence by call id turns that into no duplicate. Store errors are logged once per
    outage and retried with capped exponential backoff.
    """

    def __init__(
        self,
        spool: CdrSpool,
        store_factory: Callable[[], CdrStore],
        batch_size: int = 500,
        interval: float = 1.0,
        max_backoff: float = 10.0,
        stop_timeout: float = 5.0,
        on_shipped: Callable[[int], None] | None = None,
        on_store: Callable[[bool], None] | None = None,
    ) -> None:
        if batch_size <= 0 or interval <= 0 or max_backoff <= 0 or stop_timeout <= 0:
            raise ValueError("batch_size, interval, max_backoff and stop_timeout must be positive")
        self._spool = spool
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
        self.shipped = 0  # records inserted since start, for metrics and tests
        self._outage_failures = 0
        # Metrics: records inserted per batch; whether the store is reachable.
        self._on_shipped = on_shipped
        self._on_store = on_store

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("CDR shipper already started")
        self._stopping.clear()
        self.state = ShipperState.SHIPPING
        self._task = asyncio.create_task(self._run(), name="cdr-shipper")

    def notify(self) -> None:
        """Ship now rather than at the next interval (e.g. right after a call ended)."""
        self._wakeup.set()

    async def stop(self) -> None:
        """Stop the loop after one last flush attempt, bounded by stop_timeout.

        Whatever is not shipped stays in the spool for the next start. If the store hangs, the
        worker thread is abandoned (it can only finish an insert; acknowledging later is safe).
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
                "CDR shipper did not finish within %.1fs; unshipped CDRs stay in the spool",
                self._stop_timeout,
            )
            task.cancel()
            await asyncio.wait({task})
            # The worker thread may still be inside the store; closing it now could block on the
            # store's lock, so the store is left to the thread and garbage collection.
            return
        if not task.cancelled() and task.exception() is not None:
            logger.error("CDR shipper task failed", exc_info=task.exception())
        if store is not None:
            await asyncio.to_thread(_close_quietly, store)

    async def _run(self) -> None:
        backoff = self._interval
        while not self._stopping.is_set():
            ok = await self._drain()
            if ok:
                backoff = self._interval
                delay = self._interval
            else:
                delay = backoff
                backoff = min(backoff * 2, self._max_backoff)
            await self._sleep(delay)
        # Final flush: one pass, no retries, so a dead store cannot hold up shutdown.
        await self._drain()

    async def _sleep(self, delay: float) -> None:
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
        except TimeoutError:
            return

    async def _drain(self) -> bool:
        """Ship until the spool is empty; False if the store failed."""
        while True:
            try:
                shipped, more = await asyncio.to_thread(self._ship_one_batch)
            except Exception as exc:  # any store failure: keep the records, report, retry later
                self._on_failure(exc)
                return False
            self._on_success(shipped)
            if not more:
                return True

    def _ship_one_batch(self) -> tuple[int, bool]:
        """Runs in a worker thread: read a batch, insert it, then acknowledge it."""
        batch = self._spool.pending(self._batch_size)
        if not batch.has_progress:
            return 0, False
        if batch.records:
            store = self._store
            if store is None:
                store = self._store_factory()
                try:
                    store.migrate()
                except Exception:
                    _close_quietly(store)
                    raise
                self._store = store
            try:
                store.insert(batch.records)
            except Exception:
                # Start from a fresh connection next time; the old one may be half-broken.
                self._store = None
                _close_quietly(store)
                raise
        self._spool.acknowledge(batch)
        return len(batch.records), len(batch.records) >= self._batch_size

    def _on_failure(self, exc: Exception) -> None:
        self._outage_failures += 1
        if self.state is not ShipperState.OUTAGE:
            self.state = ShipperState.OUTAGE
            if self._on_store is not None:
                self._on_store(False)
            logger.warning(
                "CDR store unavailable (%s); CDRs stay in the spool and shipping is retried",
                exc,
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
                "CDR store reachable again after %d failed attempts; shipping resumed",
                self._outage_failures,
            )
        self.state = ShipperState.SHIPPING
        self._outage_failures = 0


def _close_quietly(store: CdrStore) -> None:
    try:
        store.close()
    except Exception:
        logger.debug("closing the CDR store failed", exc_info=True)

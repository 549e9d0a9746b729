"""Ships spooled CDRs to the CDR store in batches; an outage delays records, never drops them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from vpbx_common.cdr.shipping import BatchShipper, ShipperState
from vpbx_common.cdr.store import CdrStore
from vpbx_media.cdr.spool import CdrSpool

__all__ = ["CdrShipper", "ShipperState"]


class CdrShipper(BatchShipper):
    """The spool's batches into the store (vpbx_common.cdr.shipping for the loop).

    A batch is inserted and only then acknowledged, so a crash in between re-ships it; the
    store's idempotence by call id turns that into no duplicate.
    """

    items = "CDRs"
    queue = "the spool"

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
        super().__init__(
            store_factory,
            batch_size=batch_size,
            interval=interval,
            max_backoff=max_backoff,
            stop_timeout=stop_timeout,
            on_shipped=on_shipped,
            on_store=on_store,
        )
        self._spool = spool

    async def _ship_one_batch(self) -> tuple[int, bool]:
        return await asyncio.to_thread(self._ship_spooled)

    def _ship_spooled(self) -> tuple[int, bool]:
        """In a worker thread: read a batch, insert it, then acknowledge it."""
        batch = self._spool.pending(self._batch_size)
        if not batch.has_progress:
            return 0, False
        if batch.records:
            records = batch.records
            self._insert(lambda store: store.insert(records))
        self._spool.acknowledge(batch)
        return len(batch.records), len(batch.records) >= self._batch_size

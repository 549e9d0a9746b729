"""Ordered, non-blocking writes to the CDR spool.

The spool fsyncs every write. Awaiting that inside a call would delay ringing
by the disk's latency, and doing it on the event loop would stall RTP, so a
call only enqueues its journal entries and CDR; one worker applies them in
order on a thread. A CDR can therefore never overtake its own journal entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class SpoolWriter:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Callable[[], object]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, write: Callable[[], object]) -> None:
        self._queue.put_nowait(write)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            write = await self._queue.get()
            try:
                await asyncio.to_thread(write)
            except Exception:
                # A full or broken disk: the call goes on; the operator sees this.
                logger.exception("spool write failed")
            finally:
                self._queue.task_done()

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (bounded), then stop the worker."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

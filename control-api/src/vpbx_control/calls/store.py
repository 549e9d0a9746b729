"""The control API's access to the CDR store (ClickHouse server or chdb), read-only.

The store is synchronous (vpbx_common.cdr.store): every operation runs in a worker thread. The
schema is migrated once per process before the first read, as the media nodes' shipper does, so
the API works against a store no node has written to yet. chdb locks its data dir per process; the
store opens a session per operation and retries while a node's shipper holds it.
"""

from __future__ import annotations

import asyncio
import logging

from vpbx_common.cdr import CdrQuery, CdrStore, CdrStoreError
from vpbx_common.cdr.store import ChdbCdrStore, ClickHouseCdrStore, Row

from ..settings import ControlSettings
from .errors import CdrStoreNotConfigured, CdrStoreUnavailable

logger = logging.getLogger(__name__)


class CdrReader:
    """Runs bound read queries on the configured store; None: no store is configured."""

    def __init__(self, store: CdrStore | None) -> None:
        self._store = store
        self._migrated = False
        self._migrating = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> CdrReader:
        """Nothing connects here: the server store connects on its first query."""
        if settings.clickhouse_url:
            return cls(ClickHouseCdrStore(settings.clickhouse_url))
        chdb_path = settings.cdr_chdb_path
        return cls(None if chdb_path is None else ChdbCdrStore(chdb_path))

    @property
    def configured(self) -> bool:
        return self._store is not None

    async def read(self, *queries: CdrQuery) -> list[list[Row]]:
        """The rows of each query, read in one store session.

        Raises CdrStoreNotConfigured, or CdrStoreUnavailable when the store fails (logged here
        with the reason; the client learns only that it should retry).
        """
        store = self._store
        if store is None:
            raise CdrStoreNotConfigured()
        try:
            await self._migrate(store)
            return await asyncio.to_thread(store.read, *queries)
        except CdrStoreError as exc:
            logger.warning("CDR store read failed: %s", exc)
            raise CdrStoreUnavailable() from exc

    async def _migrate(self, store: CdrStore) -> None:
        if self._migrated:
            return
        async with self._migrating:
            if not self._migrated:
                await asyncio.to_thread(store.migrate)
                self._migrated = True

    async def close(self) -> None:
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

"""One tenant's entry of the edge routing table, rewritten from the database.

The control API keeps per-tenant entries in the Redis routing table that the SIP
edge reads (the home directory, the tenant's carrier networks). Two replicas
committing at once could write their snapshots in the wrong order and leave an old
entry behind, so each rewrite reads the database and writes Redis under one
per-tenant lock: the last writer has read after the last commit. A periodic pass
rewrites every tenant's entry, which also heals a write that failed or a Redis that
lost its data. Subclasses say what the entry is (``_read`` and ``_write``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from vpbx_common.routing import RoutingTable

from ..db.session import Database
from ..tenants.models import TenantRow

logger = logging.getLogger(__name__)

LOCK_TTL_S = 10.0
LOCK_WAIT_S = 5.0
# Delete the lock only if it is still ours (it may have expired and been taken).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


async def acquire_lock(client: redis.Redis, key: str, token: str) -> bool:
    """Take the lock ``key`` (waiting up to LOCK_WAIT_S); False if another holder kept it."""
    deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
    while not await client.set(key, token, nx=True, px=int(LOCK_TTL_S * 1000)):
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def release_lock(client: redis.Redis, key: str, token: str) -> None:
    """Give the lock back, if it is still ours."""
    await client.eval(_RELEASE, 1, key, token)


class TenantEntryRewriter(ABC):
    # What the entry is, for the log ("home directory", "carrier networks").
    entry: ClassVar[str]
    # What happens without it until the next pass, for the log.
    meanwhile: ClassVar[str]

    def __init__(self, client: redis.Redis, database: Database) -> None:
        self._redis = client
        self._database = database
        self._table = RoutingTable(client)

    @abstractmethod
    def _lock_key(self, tenant_id: str) -> str: ...

    @abstractmethod
    async def _read(self, tenant_id: str) -> Any:
        """What the entry is to say now (reads the database; may resolve names)."""

    @abstractmethod
    def _write(self, pipe: Any, tenant_id: str, value: Any) -> None:
        """Queue the entry's replacement on a Redis transaction."""

    async def _after_pass(self, tenants: set[str]) -> None:  # noqa: B027 - optional hook
        """After a pass over ``tenants`` (every tenant that exists); nothing by default."""

    async def rewrite(self, tenant_id: str) -> bool:
        """Read the tenant's data and replace its entry; False if it failed."""
        lock_key = self._lock_key(tenant_id)
        token = secrets.token_hex(16)
        try:
            if not await acquire_lock(self._redis, lock_key, token):
                raise TimeoutError(f"another replica held {lock_key} for {LOCK_WAIT_S:g} s")
            try:
                value = await self._read(tenant_id)
                async with self._redis.pipeline(transaction=True) as pipe:
                    self._write(pipe, tenant_id, value)
                    await pipe.execute()
            finally:
                await release_lock(self._redis, lock_key, token)
        except (RedisError, SQLAlchemyError, TimeoutError) as exc:
            logger.warning(
                "tenant=%s %s not rewritten (%s): %s", tenant_id, self.entry, self.meanwhile, exc
            )
            return False
        return True

    async def rewrite_all(self) -> int:
        """Rewrite every tenant's entry; how many were written."""
        try:
            async with self._database.session() as session:
                tenants = set((await session.execute(select(TenantRow.id))).scalars().all())
        except SQLAlchemyError as exc:
            logger.warning("%s not rewritten: %s", self.entry, exc)
            return 0
        written = sum([await self.rewrite(tenant_id) for tenant_id in sorted(tenants)])
        await self._after_pass(tenants)
        return written

    async def keep_rewriting(self, interval_s: float, stop: asyncio.Event) -> None:
        """Rewrite every tenant's entry now and then every ``interval_s``, until ``stop``.

        Stopped by the event, not by cancelling: a database query cancelled in
        flight makes the driver tear its connection down slowly (seconds).
        """
        while not stop.is_set():
            try:
                await self.rewrite_all()
            except Exception:  # one failed round must not end the rounds after it (logged)
                logger.exception("%s round failed", self.entry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

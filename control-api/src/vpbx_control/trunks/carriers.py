"""Where a tenant's own trunks call from, in the edge routing table.

The SIP edge takes a call to one of the tenant's numbers only from a carrier: the
platform's (written by the operator or `vpbx up`) or one of the tenant's own trunks
(``vpbx:route:carriers:<tenant>``, vpbx_common.routing), which this module writes.
A trunk's networks are its ``allowed_addresses``, else the addresses its host
resolves to (vpbx_common.carriers).

When: with every committed change of a tenant's trunks (``TenantWork.commit(carriers=
True)``, announced with the config change by nodeconfig.publisher), when a tenant is
created or deleted, and on a periodic pass over every tenant by every replica. The
pass heals a write that failed or a Redis that lost its data, removes the entries of
tenants that no longer exist, and resolves host names again: a carrier whose DNS
answer changed is known to the edge again within one pass
(``VPBX_CARRIER_NETWORKS_REWRITE_S``). A trunk with ``allowed_addresses`` never
depends on DNS.

As for the home directory, each rewrite reads the database and writes Redis under a
per-tenant lock, so the last writer has read after the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.carriers import networks_of
from vpbx_common.routing import RoutingTable

from ..db.session import Database
from ..nodeconfig.homes import LOCK_WAIT_S, acquire_lock, release_lock
from ..tenants.models import TenantRow
from .models import TrunkRow

logger = logging.getLogger(__name__)


async def load_trunk_addresses(
    session: AsyncSession, tenant_id: str
) -> list[tuple[str, list[str]]]:
    """The tenant's trunks as (URI, allowed addresses)."""
    rows = await session.execute(
        select(TrunkRow.uri, TrunkRow.allowed_addresses).where(TrunkRow.tenant_id == tenant_id)
    )
    return [(uri, [str(cidr) for cidr in allowed or ()]) for uri, allowed in rows.all()]


class TenantCarriers:
    def __init__(self, client: redis.Redis, database: Database) -> None:
        self._redis = client
        self._database = database
        self._table = RoutingTable(client)

    def _lock_key(self, tenant_id: str) -> str:
        # Not under the entries' own prefix: the pass scans that for stale entries.
        return f"vpbx:lock:carriers:{tenant_id}"

    async def rewrite(self, tenant_id: str) -> bool:
        """Read the tenant's trunks, resolve and write their networks; False if it failed."""
        lock_key = self._lock_key(tenant_id)
        token = secrets.token_hex(16)
        try:
            if not await acquire_lock(self._redis, lock_key, token):
                raise TimeoutError(f"another replica held {lock_key} for {LOCK_WAIT_S:g} s")
            try:
                async with self._database.session() as session:
                    trunks = await load_trunk_addresses(session, tenant_id)
                networks = await networks_of(trunks)
                async with self._redis.pipeline(transaction=True) as pipe:
                    self._table.replace_tenant_carriers(pipe, tenant_id, networks)
                    await pipe.execute()
            finally:
                await release_lock(self._redis, lock_key, token)
        except (RedisError, SQLAlchemyError, TimeoutError) as exc:
            # The periodic pass will write it; until then the edge goes by the old entry.
            logger.warning("tenant=%s carrier networks not rewritten: %s", tenant_id, exc)
            return False
        return True

    async def rewrite_all(self) -> int:
        """Rewrite every tenant's networks and drop those of tenants gone; how many written."""
        try:
            async with self._database.session() as session:
                tenants = set((await session.execute(select(TenantRow.id))).scalars().all())
        except SQLAlchemyError as exc:
            logger.warning("carrier networks not rewritten: %s", exc)
            return 0
        written = sum([await self.rewrite(tenant_id) for tenant_id in sorted(tenants)])
        await self._forget_gone(tenants)
        return written

    async def _forget_gone(self, tenants: set[str]) -> None:
        """Delete the entries of tenants that no longer exist."""
        prefix = self._table.tenant_carriers_key("")
        try:
            entries = {
                text[len(prefix) :]
                async for key in self._redis.scan_iter(match=f"{prefix}*", count=500)
                if (text := key.decode() if isinstance(key, bytes) else str(key))
            }
            gone = entries - tenants
            if gone:
                # Asked again: a tenant created since the list was read keeps its entry.
                async with self._database.session() as session:
                    found = await session.execute(
                        select(TenantRow.id).where(TenantRow.id.in_(sorted(gone)))
                    )
                    gone -= set(found.scalars().all())
            if gone:
                await self._redis.delete(*(prefix + tenant for tenant in sorted(gone)))
                logger.info("carrier networks of %d deleted tenant(s) removed", len(gone))
        except (RedisError, SQLAlchemyError) as exc:
            logger.warning("stale carrier networks not removed: %s", exc)

    async def keep_rewriting(self, interval_s: float, stop: asyncio.Event) -> None:
        """Rewrite every tenant's networks now and then every ``interval_s``, until ``stop``
        is set (stopped by the event, not by cancelling: see HomeDirectory)."""
        while not stop.is_set():
            try:
                await self.rewrite_all()
            except Exception:  # a pass that failed unexpectedly must not end the next ones
                logger.exception("carrier networks pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

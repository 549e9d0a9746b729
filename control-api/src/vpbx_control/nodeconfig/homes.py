"""The tenant's home directory: which city's node each SIP username registers with.

A user works in one city; their phones should register with that city's node so
their calls' media stays close to them. The SIP edge sees only the username in
a REGISTER (an extension or a device username), so the control API publishes
username -> city for every user and device (``vpbx:route:home:<tenant>``).

Two replicas committing at once could otherwise write their snapshots in the
wrong order and leave an old directory behind. Each rewrite therefore reads
the database and writes Redis under one per-tenant lock: the last writer has
read after the last commit. A periodic pass rewrites every tenant's directory,
which also heals a write that failed or a Redis that lost its data.
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

from vpbx_common.routing import RoutingTable

from ..db.session import Database
from ..tenants.models import TenantRow
from ..users.models import DeviceRow, UserRow

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


async def load_homes(session: AsyncSession, tenant_id: str) -> dict[str, str]:
    users = await session.execute(
        select(UserRow.id, UserRow.extension, UserRow.city).where(
            UserRow.tenant_id == tenant_id, UserRow.city.is_not(None)
        )
    )
    city_of: dict[object, str] = {}
    homes: dict[str, str] = {}
    for user_id, extension, city in users.all():
        if city is None:  # filtered out by the query; narrows the type
            continue
        city_of[user_id] = city
        if extension:
            homes[extension] = city
    devices = await session.execute(
        select(DeviceRow.username, DeviceRow.user_id).where(DeviceRow.tenant_id == tenant_id)
    )
    for username, user_id in devices.all():
        if user_id in city_of:
            homes[username] = city_of[user_id]
    return homes


class HomeDirectory:
    def __init__(self, client: redis.Redis, database: Database) -> None:
        self._redis = client
        self._database = database
        self._table = RoutingTable(client)

    async def rewrite(self, tenant_id: str) -> bool:
        """Read the tenant's users and devices and replace its directory; False if it failed."""
        lock_key = f"{self._table.home_key(tenant_id)}:lock"
        token = secrets.token_hex(16)
        try:
            if not await acquire_lock(self._redis, lock_key, token):
                raise TimeoutError(f"another replica held {lock_key} for {LOCK_WAIT_S:g} s")
            try:
                async with self._database.session() as session:
                    homes = await load_homes(session, tenant_id)
                async with self._redis.pipeline(transaction=True) as pipe:
                    self._table.replace_homes(pipe, tenant_id, homes)
                    await pipe.execute()
            finally:
                await release_lock(self._redis, lock_key, token)
        except (RedisError, SQLAlchemyError, TimeoutError) as exc:
            # The periodic pass will write it; until then phones may register in another city.
            logger.warning("tenant=%s home directory not rewritten: %s", tenant_id, exc)
            return False
        return True

    async def rewrite_all(self) -> int:
        """Rewrite every tenant's directory; the number rewritten."""
        try:
            async with self._database.session() as session:
                tenants = (await session.execute(select(TenantRow.id))).scalars().all()
        except SQLAlchemyError as exc:
            logger.warning("home directories not rewritten: %s", exc)
            return 0
        return sum([await self.rewrite(tenant_id) for tenant_id in tenants])

    async def keep_rewriting(self, interval_s: float, stop: asyncio.Event) -> None:
        """Rewrite every directory now and then every ``interval_s``, until ``stop`` is set.

        Stopped by the event, not by cancelling: a database query cancelled in
        flight makes the driver tear its connection down slowly (seconds).
        """
        while not stop.is_set():
            try:
                await self.rewrite_all()
            except Exception:  # a pass that failed unexpectedly must not end the next ones
                logger.exception("home directory pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

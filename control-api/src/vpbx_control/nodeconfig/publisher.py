"""Announces tenant config changes on Redis so media nodes reload.

Every change bumps the tenant's config revision (``vpbx:config:revision:<tenant>``)
and publishes on ``vpbx:config:<tenant>``; the message is the tenant id. Nodes
then fetch their compiled config with If-None-Match and get 304 when nothing
that concerns them changed. The revision lets every API replica tell whether a
compiled config it holds is still current without compiling again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

import redis.asyncio as redis
from redis.exceptions import RedisError, WatchError

from vpbx_common.nodeconfig import config_channel
from vpbx_common.routing import RoutingTable

logger = logging.getLogger(__name__)


def revision_key(tenant_id: str) -> str:
    return f"vpbx:config:revision:{tenant_id}"


class ConfigPublisher:
    def __init__(self, client: redis.Redis | None) -> None:
        self._redis = client
        # Without Redis there is a single process, so its own count is the truth.
        self._local_revisions: Counter[str] = Counter()
        self.published = 0

    async def changed(self, tenant_id: str, homes: Mapping[str, str] | None = None) -> None:
        """Announce a committed change; ``homes`` also replaces the tenant's home directory."""
        self.published += 1
        self._local_revisions[tenant_id] += 1
        if self._redis is None:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if homes is not None:
                    RoutingTable(self._redis).replace_homes(pipe, tenant_id, homes)
                pipe.incr(revision_key(tenant_id))
                pipe.publish(config_channel(tenant_id), tenant_id)
                await pipe.execute()
        except RedisError as exc:
            # The change is committed; nodes also poll, and compiled configs
            # are cached only briefly, so everyone converges anyway.
            logger.warning("tenant=%s config invalidation not published: %s", tenant_id, exc)

    async def restore_homes(self, tenant_id: str, homes: Mapping[str, str]) -> None:
        """Write a home directory Redis lost, without announcing a change.

        A directory that exists is left alone: another replica may have just
        written a newer one than ``homes``.
        """
        if self._redis is None:
            return
        table = RoutingTable(self._redis)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(table.home_key(tenant_id))
                if await pipe.exists(table.home_key(tenant_id)):
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                table.replace_homes(pipe, tenant_id, homes)
                await pipe.execute()
        except WatchError:
            return  # written meanwhile by a commit: that one is current
        except RedisError as exc:
            logger.warning("tenant=%s home directory not written: %s", tenant_id, exc)

    async def revision(self, tenant_id: str) -> str | None:
        """The tenant's current config revision; None when it cannot be known."""
        if self._redis is None:
            return f"local:{self._local_revisions[tenant_id]}"
        try:
            raw = await self._redis.get(revision_key(tenant_id))
        except RedisError as exc:
            logger.warning("tenant=%s config revision unreadable: %s", tenant_id, exc)
            return None
        if raw is None:
            return "0"
        return raw.decode() if isinstance(raw, bytes) else str(raw)

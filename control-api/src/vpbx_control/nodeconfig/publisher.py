"""Announces tenant config changes on Redis so media nodes reload.

Every change bumps the tenant's config revision (``vpbx:config:revision:<tenant>``)
and publishes on ``vpbx:config:<tenant>``; the message is the tenant id. Nodes
then fetch their compiled config with If-None-Match and get 304 when nothing
that concerns them changed. The revision lets every API replica tell whether a
compiled config it holds is still current without compiling again.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from typing import TYPE_CHECKING

import redis.asyncio as redis
from redis.exceptions import RedisError

from vpbx_common.nodeconfig import config_channel

if TYPE_CHECKING:
    from ..trunks.carriers import TenantCarriers
    from .homes import HomeDirectory

logger = logging.getLogger(__name__)


def _new_epoch() -> int:
    return secrets.randbelow(2**40) << 16  # far below 2**63: INCR never overflows


def revision_key(tenant_id: str) -> str:
    return f"vpbx:config:revision:{tenant_id}"


class ConfigPublisher:
    def __init__(
        self,
        client: redis.Redis | None,
        homes: HomeDirectory | None = None,
        carriers: TenantCarriers | None = None,
    ) -> None:
        self._redis = client
        self._homes = homes
        self._carriers = carriers
        # Without Redis there is a single process, so its own count is the truth.
        self._local_revisions: Counter[str] = Counter()
        self.published = 0

    async def changed(
        self, tenant_id: str, *, moves_phones: bool = False, carriers: bool = False
    ) -> None:
        """Announce a committed change.

        ``moves_phones``: users, devices or the tenant's cities changed, so the
        home directory (which node each phone registers with) is rewritten first.
        ``carriers``: the tenant's trunks changed (or the tenant came or went), so
        the edge's entry of where its carriers call from is rewritten first.
        """
        self.published += 1
        self._local_revisions[tenant_id] += 1
        if moves_phones and self._homes is not None:
            await self._homes.rewrite(tenant_id)
        if carriers and self._carriers is not None:
            await self._carriers.rewrite(tenant_id)
        if self._redis is None:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(revision_key(tenant_id), _new_epoch(), nx=True)
                pipe.incr(revision_key(tenant_id))
                pipe.publish(config_channel(tenant_id), tenant_id)
                await pipe.execute()
        except RedisError as exc:
            # The change is committed; nodes also poll, and compiled configs
            # are cached only briefly, so everyone converges anyway.
            logger.warning("tenant=%s config invalidation not published: %s", tenant_id, exc)

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
            # A fresh (or lost) counter starts at a random value: a config cached
            # at an old revision never matches a new one by coincidence.
            try:
                await self._redis.set(revision_key(tenant_id), _new_epoch(), nx=True)
                raw = await self._redis.get(revision_key(tenant_id))
            except RedisError as exc:
                logger.warning("tenant=%s config revision not started: %s", tenant_id, exc)
                return None
            if raw is None:
                return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

"""Announces tenant config changes on Redis so media nodes reload.

Channel ``vpbx:config:<tenant>``; the message is the tenant id. Nodes then
fetch their compiled config with If-None-Match and get 304 when nothing that
concerns them changed.
"""

from __future__ import annotations

import logging

import redis.asyncio as redis
from redis.exceptions import RedisError

from vpbx_common.nodeconfig import config_channel

logger = logging.getLogger(__name__)


class ConfigPublisher:
    def __init__(self, client: redis.Redis | None) -> None:
        self._redis = client
        self.published = 0

    async def changed(self, tenant_id: str) -> None:
        self.published += 1
        if self._redis is None:
            return
        try:
            await self._redis.publish(config_channel(tenant_id), tenant_id)
        except RedisError as exc:
            # The change is committed; nodes also poll, so they converge anyway.
            logger.warning("tenant=%s config invalidation not published: %s", tenant_id, exc)

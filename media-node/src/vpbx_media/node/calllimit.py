"""The tenant's plan limit on calls at once, counted across all its nodes and cities.

Calls in progress are members of one Redis sorted set per tenant, scored with
the moment they stop counting even if nobody removes them (a node killed
mid-call), so a crash cannot eat the tenant's lines for ever. Taking a line is
one Lua script: drop the stale members, count, add when below the limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as redis

# Longer than any real call; a member left by a dead node stops counting then.
STALE_AFTER_S = 4 * 3600

_TAKE_LINE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class TenantCallLimit:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "vpbx:calls:active",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._clock = clock
        self._prefix = prefix
        self._take_line = client.register_script(_TAKE_LINE)

    def _key(self, tenant: str) -> str:
        return f"{self._prefix}:{tenant}"

    async def acquire(self, tenant: str, call_id: str, limit: int) -> bool:
        """Count ``call_id`` against ``limit`` (> 0); False when every line is in use."""
        now = self._clock()
        taken = await self._take_line(
            keys=[self._key(tenant)],
            args=[now, limit, now + STALE_AFTER_S, call_id, STALE_AFTER_S],
        )
        return bool(taken)

    async def release(self, tenant: str, call_id: str) -> None:
        await self._redis.zrem(self._key(tenant), call_id)

    async def in_progress(self, tenant: str) -> int:
        return int(await self._redis.zcount(self._key(tenant), self._clock(), "+inf"))

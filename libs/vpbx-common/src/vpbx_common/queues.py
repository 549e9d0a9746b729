"""Who waits in a tenant's queues, read from the keys the nodes' queue dispatcher keeps.

The dispatcher (``vpbx_media.node.queues``) is the writer and documents the keys; the
key names live here so that a reader (the CRM's live board) and the writer cannot
drift apart. A queue spans the tenant's cities, so one read gives every caller waiting
in any city: the order (``...:wait``, call id -> join time) and whether the node holding
the caller still refreshes it (``...:alive``, call id -> alive until), both epoch seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as redis


def queue_base(tenant: str) -> str:
    """The prefix of a tenant's queue keys; ``{tenant}`` is a hash tag (one cluster slot
    per tenant, so the dispatcher's scripts get their keys together)."""
    return f"vpbx:queue:{{{tenant}}}"


def queue_key(tenant: str, group: str, part: str) -> str:
    """``part``: wait, alive, entry or waits (see the dispatcher)."""
    return f"{queue_base(tenant)}:{group}:{part}"


@dataclass(frozen=True, slots=True)
class Waiting:
    call_id: str
    queue: str
    joined_ms: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class QueueView:
    """Read-only: the callers waiting in a tenant's queues now."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._clock = clock

    async def waiting(self, tenant: str, groups: Iterable[str]) -> list[Waiting]:
        """Every caller waiting in the queues of ``groups`` (one pipelined round trip),
        oldest first; a caller whose node stopped refreshing it is left out (the
        dispatcher drops it moments later). Raises RedisError."""
        names = sorted(set(groups))
        if not names:
            return []
        now = self._clock()
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in names:
                pipe.zrange(queue_key(tenant, group, "wait"), 0, -1, withscores=True)
                pipe.zrangebyscore(queue_key(tenant, group, "alive"), now, "+inf")
            replies = await pipe.execute()
        found: list[Waiting] = []
        for index, group in enumerate(names):
            order, alive = replies[2 * index], replies[2 * index + 1]
            living = {_text(member) for member in alive}
            for member, joined in order:
                call_id = _text(member)
                if call_id in living:
                    found.append(Waiting(call_id, group, int(float(joined) * 1000)))
        found.sort(key=lambda item: (item.joined_ms, item.call_id))
        return found

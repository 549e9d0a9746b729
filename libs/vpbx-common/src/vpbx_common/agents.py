"""Live agent state in Redis: who is talking, when their last call ended, their presence,
and each group's round-robin pointer.

Every node of a tenant, in every city, routes on the same picture, and the
control API writes presence changes here so they count from the next call on
(the compiled config carries presence too, but reaches the nodes a little later).

Keys per tenant (all hashes or sorted sets, read in one pipelined round trip):

- ``vpbx:agents:<tenant>:talking``  sorted set of ``<extension>|<call id>``, scored
  with the moment the entry stops counting even if nobody removes it (a node
  killed mid-call); nodes refresh the scores of their calls in progress.
- ``vpbx:agents:<tenant>:last-end`` hash extension -> epoch ms its last call ended
  (wrap-up, least-recently-called).
- ``vpbx:agents:<tenant>:presence`` hash extension -> presence set through the API.
- ``vpbx:agents:<tenant>:round-robin`` hash group name -> extension rung last.

Pub/sub ``vpbx:agents:<tenant>:free`` (message: the extension) hints that an agent
may have become free (a call ended, presence set to available): queue dispatchers
wake on it. Only a hint: they poll as well (wrap-up ends without a message).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from vpbx_common.pbx import Presence

# A talking entry outlives any real call only by this much if its node dies.
TALKING_STALE_AFTER_S = 120.0
# Keys of a tenant nobody touches for this long go away on their own.
_KEY_TTL_S = 90 * 24 * 3600


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class AgentStates:
    """One tenant's live agent picture at one moment."""

    talking: frozenset[str] = frozenset()  # extensions on a call now
    last_call_end_ms: Mapping[str, int] = field(default_factory=dict)
    presence: Mapping[str, Presence] = field(default_factory=dict)  # newer than the config's
    last_member: Mapping[str, str] = field(default_factory=dict)  # group -> extension


class AgentStateStore:
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._clock = clock

    @staticmethod
    def key(tenant: str, part: str) -> str:
        return f"vpbx:agents:{tenant}:{part}"

    @staticmethod
    def free_channel(tenant: str) -> str:
        return f"vpbx:agents:{tenant}:free"

    async def snapshot(self, tenant: str) -> AgentStates:
        now = self._clock()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self.key(tenant, "talking"), now, "+inf")
            pipe.hgetall(self.key(tenant, "last-end"))
            pipe.hgetall(self.key(tenant, "presence"))
            pipe.hgetall(self.key(tenant, "round-robin"))
            talking, last_end, presence, last_member = await pipe.execute()
        presences: dict[str, Presence] = {}
        for extension, value in presence.items():
            try:
                presences[_text(extension)] = Presence(_text(value))
            except ValueError:
                continue  # a value a newer API wrote: the config's presence still applies
        return AgentStates(
            talking=frozenset(_text(member).partition("|")[0] for member in talking),
            last_call_end_ms={_text(k): int(v) for k, v in last_end.items()},
            presence=presences,
            last_member={_text(k): _text(v) for k, v in last_member.items()},
        )

    async def talking_calls(self, tenant: str) -> list[tuple[str, str]]:
        """(extension, call id) of every call someone of the tenant talks on now, in any
        city (the live board's calls a CRM replica saw no event of)."""
        members: Any = await self._redis.zrangebyscore(
            self.key(tenant, "talking"), self._clock(), "+inf"
        )
        pairs = []
        for member in members:
            extension, _, call_id = _text(member).partition("|")
            if extension and call_id:
                pairs.append((extension, call_id))
        return sorted(pairs)

    async def call_answered(self, tenant: str, extension: str, call_id: str) -> None:
        key = self.key(tenant, "talking")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {f"{extension}|{call_id}": self._clock() + TALKING_STALE_AFTER_S})
            pipe.expire(key, _KEY_TTL_S)
            await pipe.execute()

    async def is_talking_on(self, tenant: str, extension: str, call_id: str) -> bool:
        """True while ``extension`` talks on ``call_id`` (its entry is fresh)."""
        score = await self._redis.zscore(self.key(tenant, "talking"), f"{extension}|{call_id}")
        return score is not None and float(score) > self._clock()

    async def calls_go_on(self, tenant: str, talking: Iterable[tuple[str, str]]) -> None:
        """Keep the talking entries of calls still in progress (extension, call id) fresh."""
        members = {
            f"{extension}|{call_id}": self._clock() + TALKING_STALE_AFTER_S
            for extension, call_id in talking
        }
        if members:
            await self._redis.zadd(self.key(tenant, "talking"), members, xx=True)

    async def call_ended(self, tenant: str, extension: str, call_id: str) -> None:
        now_ms = int(self._clock() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.key(tenant, "talking"), f"{extension}|{call_id}")
            pipe.zremrangebyscore(self.key(tenant, "talking"), "-inf", self._clock())
            pipe.hset(self.key(tenant, "last-end"), extension, now_ms)
            pipe.expire(self.key(tenant, "last-end"), _KEY_TTL_S)
            pipe.publish(self.free_channel(tenant), extension)
            await pipe.execute()

    async def remember_last_member(self, tenant: str, group: str, extension: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key(tenant, "round-robin"), group, extension)
            pipe.expire(self.key(tenant, "round-robin"), _KEY_TTL_S)
            await pipe.execute()

    async def set_presence(self, tenant: str, extension: str, presence: Presence) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key(tenant, "presence"), extension, str(presence))
            pipe.expire(self.key(tenant, "presence"), _KEY_TTL_S)
            if presence is Presence.AVAILABLE:
                pipe.publish(self.free_channel(tenant), extension)
            await pipe.execute()

    async def forget(self, tenant: str, extension: str) -> None:
        """An extension deleted or renumbered: its presence must not stick to a successor."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(self.key(tenant, "presence"), extension)
            pipe.hdel(self.key(tenant, "last-end"), extension)
            await pipe.execute()

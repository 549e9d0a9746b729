"""Registrations (RFC 3261 section 10) kept in Redis, shared by every node of a tenant.

One hash per extension: field = contact URI, value = the binding as JSON.
The hash expires with its longest binding; shorter ones are filtered on read,
so a phone that stops refreshing disappears without a sweeper.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import redis.asyncio as redis


@dataclass(frozen=True, slots=True)
class Binding:
    tenant: str
    extension: str
    contact: str
    path: tuple[str, ...]
    expires_at: float
    call_id: str
    cseq: int
    user_agent: str = ""
    instance: str = ""

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Binding:
        data = json.loads(text)
        data["path"] = tuple(data.get("path", ()))
        return cls(**data)


class BindingStore:
    def __init__(self, client: redis.Redis, prefix: str = "vpbx:reg") -> None:
        self._redis = client
        self._prefix = prefix

    def _key(self, tenant: str, extension: str) -> str:
        return f"{self._prefix}:{tenant}:{extension}"

    async def list(self, tenant: str, extension: str, now: float | None = None) -> list[Binding]:
        now = time.time() if now is None else now
        raw = await self._redis.hgetall(self._key(tenant, extension))
        live: list[Binding] = []
        expired: list[bytes | str] = []
        for field, value in raw.items():
            binding = Binding.from_json(value)
            if binding.expires_at > now:
                live.append(binding)
            else:
                expired.append(field)
        if expired:
            await self._redis.hdel(self._key(tenant, extension), *expired)
        live.sort(key=lambda b: b.expires_at, reverse=True)
        return live

    async def put(self, binding: Binding) -> None:
        key = self._key(binding.tenant, binding.extension)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, binding.contact, binding.to_json())
            await pipe.execute()
        await self._refresh_ttl(binding.tenant, binding.extension)

    async def remove(self, tenant: str, extension: str, contact: str) -> None:
        await self._redis.hdel(self._key(tenant, extension), contact)

    async def remove_all(self, tenant: str, extension: str) -> None:
        await self._redis.delete(self._key(tenant, extension))

    async def _refresh_ttl(self, tenant: str, extension: str) -> None:
        bindings = await self.list(tenant, extension)
        if bindings:
            longest = max(b.remaining(time.time()) for b in bindings)
            await self._redis.expire(self._key(tenant, extension), max(1, longest + 1))

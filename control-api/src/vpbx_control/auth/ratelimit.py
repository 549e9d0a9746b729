"""Login brute-force limits: failures counted per account and per client address.

Counters live in Redis when there is one (every API replica sees the same
counts), in memory otherwise. A window starts at the first failure.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis


class FailureCounter(Protocol):
    async def count(self, key: str) -> tuple[int, int]:
        """(failures in the window, seconds until it ends)."""
        ...

    async def add(self, key: str, window_s: int) -> None: ...

    async def clear(self, key: str) -> None: ...


class RedisFailureCounter:
    def __init__(self, client: redis.Redis, prefix: str = "vpbx:login") -> None:
        self._redis = client
        self._prefix = prefix

    async def count(self, key: str) -> tuple[int, int]:
        name = f"{self._prefix}:{key}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.ttl(name)
            value, ttl = await pipe.execute()
        return int(value or 0), max(int(ttl), 0)

    async def add(self, key: str, window_s: int) -> None:
        name = f"{self._prefix}:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window_s, nx=True)
            await pipe.execute()

    async def clear(self, key: str) -> None:
        await self._redis.delete(f"{self._prefix}:{key}")


class MemoryFailureCounter:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, float]] = {}

    async def count(self, key: str) -> tuple[int, int]:
        count, until = self._entries.get(key, (0, 0.0))
        remaining = until - time.monotonic()
        if remaining <= 0:
            self._entries.pop(key, None)
            return 0, 0
        return count, int(remaining) + 1

    async def add(self, key: str, window_s: int) -> None:
        count, until = self._entries.get(key, (0, 0.0))
        if until <= time.monotonic():
            count, until = 0, time.monotonic() + window_s
        self._entries[key] = (count + 1, until)

    async def clear(self, key: str) -> None:
        self._entries.pop(key, None)


@dataclass(frozen=True)
class Blocked:
    retry_after_s: int


class LoginLimiter:
    def __init__(
        self, counter: FailureCounter, *, per_account: int, per_address: int, window_s: int
    ) -> None:
        self._counter = counter
        self._per_account = per_account
        self._per_address = per_address
        self._window_s = window_s

    @staticmethod
    def _account_key(email: str) -> str:
        # Hashed: the keys must not put e-mail addresses into Redis in clear.
        return "account:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]

    async def check(self, email: str, address: str) -> Blocked | None:
        for key, limit in (
            (self._account_key(email), self._per_account),
            (f"address:{address}", self._per_address),
        ):
            failures, remaining = await self._counter.count(key)
            if failures >= limit:
                return Blocked(retry_after_s=remaining)
        return None

    async def failed(self, email: str, address: str) -> None:
        await self._counter.add(self._account_key(email), self._window_s)
        await self._counter.add(f"address:{address}", self._window_s)

    async def succeeded(self, email: str) -> None:
        await self._counter.clear(self._account_key(email))

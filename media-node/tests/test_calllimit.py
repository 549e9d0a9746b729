"""The tenant's concurrent-call limit, counted in a real Redis across nodes."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as redis

from vpbx_media.node.calllimit import STALE_AFTER_S, TenantCallLimit


async def test_lines_are_shared_by_all_nodes_and_never_overbooked(flushed_redis: str) -> None:
    clients = [redis.Redis.from_url(flushed_redis) for _ in range(3)]  # three nodes
    try:
        limits = [TenantCallLimit(client) for client in clients]
        results = await asyncio.gather(
            *(limits[i % 3].acquire("acme", f"call-{i}", 5) for i in range(20))
        )
        assert sum(results) == 5
        assert await limits[0].in_progress("acme") == 5
        assert await limits[1].acquire("globex", "other-tenant", 5)  # its own lines

        taken = [f"call-{i}" for i, ok in enumerate(results) if ok]
        await limits[2].release("acme", taken[0])
        assert await limits[0].acquire("acme", "late-call", 5)
        assert not await limits[0].acquire("acme", "one-too-many", 5)
    finally:
        for client in clients:
            await client.aclose()


async def test_a_line_held_by_a_dead_node_frees_itself(flushed_redis: str) -> None:
    now = [time.time()]
    client = redis.Redis.from_url(flushed_redis)
    try:
        limit = TenantCallLimit(client, clock=lambda: now[0])
        assert await limit.acquire("acme", "orphan", 1)
        assert not await limit.acquire("acme", "next", 1)
        # Hours later nobody has released the orphan (its node died); it no longer counts.
        now[0] += STALE_AFTER_S + 1
        assert await limit.acquire("acme", "next", 1)
    finally:
        await client.aclose()

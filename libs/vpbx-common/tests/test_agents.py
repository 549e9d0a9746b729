"""Live agent state in a real Redis: what every node of a tenant routes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from vpbx_common.agents import TALKING_STALE_AFTER_S, AgentStateStore
from vpbx_common.pbx import Presence


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    await connection.flushdb()
    yield connection
    await connection.aclose()


async def test_a_talking_agent_is_busy_on_every_node_until_the_call_ends(
    client: redis.Redis,
) -> None:
    clock = Clock()
    msk, ekb = AgentStateStore(client, clock), AgentStateStore(client, clock)
    await msk.call_answered("acme", "101", "call-1")

    assert (await ekb.snapshot("acme")).talking == {"101"}
    assert (await ekb.snapshot("globex")).talking == frozenset()

    clock.now += 30
    await ekb.call_ended("acme", "101", "call-1")
    states = await msk.snapshot("acme")
    assert states.talking == frozenset()
    assert states.last_call_end_ms == {"101": int(clock.now * 1000)}


async def test_two_calls_of_one_agent_keep_them_busy_until_both_end(client: redis.Redis) -> None:
    store = AgentStateStore(client, Clock())
    await store.call_answered("acme", "101", "call-1")
    await store.call_answered("acme", "101", "call-2")
    await store.call_ended("acme", "101", "call-1")
    assert (await store.snapshot("acme")).talking == {"101"}
    await store.call_ended("acme", "101", "call-2")
    assert (await store.snapshot("acme")).talking == frozenset()


async def test_a_dead_nodes_call_stops_making_the_agent_busy(client: redis.Redis) -> None:
    clock = Clock()
    store = AgentStateStore(client, clock)
    await store.call_answered("acme", "101", "lost")
    await store.call_answered("acme", "102", "alive")
    clock.now += TALKING_STALE_AFTER_S / 2
    await store.calls_go_on("acme", [("102", "alive")])  # only 102's node is still there
    clock.now += TALKING_STALE_AFTER_S / 2 + 1
    assert (await store.snapshot("acme")).talking == {"102"}


async def test_presence_and_round_robin_pointer_are_shared_and_unknown_values_ignored(
    client: redis.Redis,
) -> None:
    store = AgentStateStore(client, Clock())
    await store.set_presence("acme", "101", Presence.DO_NOT_DISTURB)
    await store.remember_last_member("acme", "sales", "102")
    await client.hset(AgentStateStore.key("acme", "presence"), "103", "on-the-moon")

    states = await store.snapshot("acme")
    assert states.presence == {"101": Presence.DO_NOT_DISTURB}
    assert states.last_member == {"sales": "102"}

    await store.forget("acme", "101")
    assert (await store.snapshot("acme")).presence == {}


async def test_a_call_ending_or_presence_available_hints_that_an_agent_is_free(
    client: redis.Redis,
) -> None:
    store = AgentStateStore(client, Clock())
    pubsub = client.pubsub()
    await pubsub.subscribe(AgentStateStore.free_channel("acme"))
    try:
        await store.call_answered("acme", "101", "call-1")
        await store.call_ended("acme", "101", "call-1")
        await store.set_presence("acme", "102", Presence.AWAY)  # no hint
        await store.set_presence("acme", "103", Presence.AVAILABLE)
        hints = []
        async with asyncio.timeout(5):
            while len(hints) < 2:
                # None for the subscription's own confirmation, too
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    hints.append(message["data"])
        assert hints == [b"101", b"103"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]

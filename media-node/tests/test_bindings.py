"""The binding store: one REGISTER is one atomic round trip to a real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from vpbx_media.node.bindings import Binding, BindingStore, ContactChange

KEY = "vpbx:reg:acme:101"


def binding(contact: str, expires_at: float, call_id: str = "c1", cseq: int = 1) -> Binding:
    return Binding("acme", "101", contact, ("<sip:edge;lr>",), expires_at, call_id, cseq)


@pytest.fixture
async def client(flushed_redis: str) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(flushed_redis)
    yield connection
    await connection.aclose()


async def test_contacts_are_bound_refreshed_and_removed(client: redis.Redis) -> None:
    store = BindingStore(client)
    now = time.time()
    desk, mobile = binding("sip:desk@a", now + 600), binding("sip:mobile@b", now + 60)

    live = await store.update(
        "acme",
        "101",
        call_id="c1",
        cseq=1,
        changes=[ContactChange(desk.contact, desk), ContactChange(mobile.contact, mobile)],
        now=now,
    )
    assert live == [desk, mobile]  # longest first
    assert 600 <= await client.ttl(KEY) <= 601

    refreshed = binding("sip:mobile@b", now + 1200, cseq=2)
    live = await store.update(
        "acme",
        "101",
        call_id="c1",
        cseq=2,
        changes=[ContactChange("sip:mobile@b", refreshed), ContactChange("sip:desk@a", None)],
        now=now,
    )
    assert live == [refreshed]
    assert 1200 <= await client.ttl(KEY) <= 1201
    assert await store.list("acme", "101", now) == [refreshed]


async def test_a_late_retransmission_does_not_undo_a_newer_registration(
    client: redis.Redis,
) -> None:
    store = BindingStore(client)
    now = time.time()
    newer = binding("sip:desk@a", now + 600, cseq=5)
    await store.update(
        "acme", "101", call_id="c1", cseq=5, changes=[ContactChange(newer.contact, newer)], now=now
    )

    live = await store.update(
        "acme", "101", call_id="c1", cseq=4, changes=[ContactChange(newer.contact, None)], now=now
    )

    assert live == [newer]


async def test_expired_bindings_are_dropped_and_a_query_changes_nothing(
    client: redis.Redis,
) -> None:
    store = BindingStore(client)
    now = time.time()
    old, fresh = binding("sip:old@a", now - 1), binding("sip:fresh@b", now + 60)
    await client.hset(KEY, mapping={old.contact: old.to_json(), fresh.contact: fresh.to_json()})

    assert await store.update("acme", "101", call_id="q", cseq=1, changes=[], now=now) == [fresh]
    assert await client.hkeys(KEY) == [b"sip:fresh@b"]


async def test_put_and_remove_bind_one_contact_without_ordering(client: redis.Redis) -> None:
    store = BindingStore(client)
    now = time.time()
    first = binding("sip:desk@a", now + 60, call_id="reg", cseq=1)
    await store.put(first)
    again = binding("sip:desk@a", now + 600, call_id="reg", cseq=1)
    await store.put(again)  # same Call-ID and CSeq: put still replaces

    assert await store.list("acme", "101", now) == [again]
    await store.remove("acme", "101", "sip:desk@a")
    assert await store.list("acme", "101", now) == []

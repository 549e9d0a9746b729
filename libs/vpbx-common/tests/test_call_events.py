"""Call events on the Redis stream, against a real redis-server: publisher, consumer groups,
retries, reclaiming a dead consumer's entries, poison entries, prompt stop, trimming."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from vpbx_common.crm import CrmContact
from vpbx_common.events import (
    CALL_EVENTS_STREAM,
    WEBHOOKS_GROUP,
    CallEvent,
    CallEventConsumer,
    CallEventError,
    CallEventPublisher,
    CallEventType,
    ConsumerState,
    default_consumer_name,
    event_from_fields,
    stream_fields,
)

# Fast timings for tests: a dead consumer's entries are reclaimed after 0.3 s.
FAST: dict[str, Any] = {
    "block_s": 0.2,
    "claim_idle_s": 0.3,
    "claim_interval_s": 0.1,
    "retry_base_s": 0.05,
    "max_retry_s": 0.2,
}


def event(call_id: str, kind: CallEventType = CallEventType.RINGING, **extra: Any) -> CallEvent:
    values: dict[str, Any] = {
        "type": kind,
        "call_id": call_id,
        "tenant": "acme",
        "city": "msk",
        "node": "vpbx-node-acme-msk",
        "number": "+74951234567",
        "caller": "+79161234567",
        "callee": "101",
        "at_ms": 1_800_000_000_000,
        **extra,
    }
    return CallEvent(**values)


@pytest.fixture
async def client(flushed_redis: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(flushed_redis)
    yield connection
    await connection.aclose()


@pytest.fixture
def publisher(client: redis.asyncio.Redis) -> CallEventPublisher:
    return CallEventPublisher(client)


class Recorder:
    """A handler recording what it saw; ``behaviour`` may raise or block per event."""

    def __init__(
        self,
        name: str = "",
        behaviour: Callable[[CallEvent], Awaitable[None]] | None = None,
        log: list[tuple[str, str]] | None = None,
    ) -> None:
        self.name = name
        self.behaviour = behaviour
        self.seen: list[CallEvent] = []
        self.log = log if log is not None else []

    async def __call__(self, event: CallEvent) -> None:
        if self.behaviour is not None:
            await self.behaviour(event)
        self.seen.append(event)
        self.log.append((self.name, event.call_id))

    @property
    def call_ids(self) -> list[str]:
        return [e.call_id for e in self.seen]


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def pending(client: redis.asyncio.Redis, group: str = WEBHOOKS_GROUP) -> int:
    summary = await client.xpending(CALL_EVENTS_STREAM, group)
    return int(summary["pending"])


# --- the entry and the event ---------------------------------------------------------------


async def test_one_xadd_per_event_with_tenant_type_and_the_event_json(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    ended = event("call-1", CallEventType.ENDED, end_reason="no-answer", label="yandex")
    entry_id = await publisher.publish(ended)
    [(read_id, fields)] = await client.xrange(CALL_EVENTS_STREAM)
    assert read_id.decode() == entry_id
    assert set(fields) == {b"tenant", b"type", b"event"}
    assert fields[b"tenant"] == b"acme"
    assert fields[b"type"] == b"call.ended"
    # The JSON shape of the pub/sub days, field for field.
    assert json.loads(fields[b"event"]) == {
        "type": "call.ended",
        "call_id": "call-1",
        "tenant": "acme",
        "city": "msk",
        "node": "vpbx-node-acme-msk",
        "number": "+74951234567",
        "caller": "+79161234567",
        "callee": "101",
        "at_ms": 1_800_000_000_000,
        "end_reason": "no-answer",
        "label": "yandex",
        "key": "",
        "duration_ms": 0,
        "size_bytes": 0,
        "box": "",
        "box_user_id": "",
        "direction": "",
        "contact": None,
        "offered": [],
    }
    assert event_from_fields(fields) == ended


# --- the CRM contact, the direction and call.offered ---------------------------------------

CONTACT = CrmContact(
    id="ct-7", name="Иван Петров", category="client", owner_user_id="u-101", vip=True
)


def test_an_event_with_its_contact_round_trips_through_the_stream_entry() -> None:
    offered = event(
        "call-2",
        CallEventType.OFFERED,
        direction="inbound",
        contact=CONTACT.to_dict(),
        offered=("101", "102"),
    )
    document = json.loads(offered.to_json())
    assert document["type"] == "call.offered"
    assert document["contact"] == {
        "id": "ct-7",
        "name": "Иван Петров",
        "category": "client",
        "owner_user_id": "u-101",
        "vip": True,
    }
    assert document["offered"] == ["101", "102"]
    assert document["direction"] == "inbound"
    read = event_from_fields(stream_fields(offered))
    assert read == offered
    assert read.crm_contact == CONTACT


def test_an_event_without_a_contact_reads_back_with_none() -> None:
    plain = event("call-3", direction="internal")
    read = CallEvent.from_json(plain.to_json())
    assert read == plain
    assert (read.contact, read.crm_contact, read.offered) == (None, None, ())


def test_events_of_writers_before_contacts_read_with_the_defaults() -> None:
    document = json.loads(event("call-4").to_json())
    for name in ("direction", "contact", "offered"):
        del document[name]
    read = CallEvent.from_json(json.dumps(document))
    assert (read.direction, read.contact, read.offered) == ("", None, ())


def test_a_contact_field_a_newer_crm_added_is_dropped_and_the_rest_kept() -> None:
    document = json.loads(event("call-5", contact=CONTACT.to_dict()).to_json())
    document["contact"]["region"] = "Novosibirsk"
    assert CallEvent.from_json(json.dumps(document)).crm_contact == CONTACT


@pytest.mark.parametrize(
    ("contact", "error"),
    [
        ("ct-7", "contact: not an object"),
        ({"name": "x", "category": "client"}, "contact.id"),
        ({"id": "ct-7", "name": "x", "category": ""}, "contact.category"),
        ({"id": "ct-7", "name": "x", "category": "client", "vip": "yes"}, "contact.vip"),
        ({"id": "ct-7", "name": "x", "category": "client", "owner_user_id": 5}, "owner_user_id"),
    ],
)
def test_a_malformed_contact_makes_the_entry_no_call_event(contact: object, error: str) -> None:
    document = json.loads(event("call-6").to_json())
    document["contact"] = contact
    with pytest.raises(CallEventError, match=error):
        CallEvent.from_json(json.dumps(document))


@pytest.mark.parametrize("offered", ["101", [101], {"101": True}])
def test_offered_must_be_a_list_of_extensions(offered: object) -> None:
    document = json.loads(event("call-7").to_json())
    document["offered"] = offered
    with pytest.raises(CallEventError, match="offered: not a list of strings"):
        CallEvent.from_json(json.dumps(document))


def test_queue_events_carry_the_queue_place_and_reason_and_older_events_read_without() -> None:
    queued = event("call-8", CallEventType.QUEUED, queue="support", position=3)
    left = event("call-8", CallEventType.DEQUEUED, queue="support", queue_left="hung up")
    for sent in (queued, left):
        assert event_from_fields(stream_fields(sent)) == sent
    assert stream_fields(queued)["type"] == "call.queued"
    # Any other event goes out without them (as before queues were on the stream).
    document = json.loads(event("call-9").to_json())
    assert not {"queue", "position", "queue_left"} & set(document)
    read = CallEvent.from_json(json.dumps(document))
    assert (read.queue, read.position, read.queue_left) == ("", 0, "")
    document["position"] = "3"
    with pytest.raises(CallEventError, match="position: not a int"):
        CallEvent.from_json(json.dumps(document))


def test_readers_ignore_fields_a_newer_writer_added() -> None:
    document = json.loads(event("call-1").to_json())
    document["recording_url"] = "s3://bucket/call-1.wav"
    del document["label"]  # an older writer: defaults apply
    assert CallEvent.from_json(json.dumps(document)) == event("call-1")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "no 'event' field"),
        ({"tenant": "acme", "event": "{not json"}, "not JSON"),
        ({"tenant": "acme", "event": "[1, 2]"}, "not a JSON object"),
        ({"tenant": "acme", "event": '{"type": "call.ringing"}'}, "call_id: missing"),
        (
            {"tenant": "acme", "event": event("c").to_json().replace("call.ringing", "call.x")},
            "unknown event type",
        ),
        (
            {"tenant": "acme", "event": event("c").to_json().replace("1800000000000", '"soon"')},
            "at_ms: not a int",
        ),
        ({"tenant": "globex", "event": event("c").to_json()}, "differs from event tenant"),
    ],
)
def test_entries_that_are_not_call_events_are_refused(fields: dict[str, str], error: str) -> None:
    with pytest.raises(CallEventError, match=error):
        event_from_fields(fields)


def test_the_consumer_name_is_host_and_pid() -> None:
    import os
    import socket

    assert default_consumer_name() == f"{socket.gethostname()}-{os.getpid()}"


# --- durability and sharing ----------------------------------------------------------------


async def test_events_published_before_any_consumer_ran_are_delivered_once_it_starts(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    for n in range(3):
        await publisher.publish(event(f"early-{n}"))  # no group exists yet
    recorder = Recorder()
    consumer = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="api-1", **FAST)
    await consumer.start()
    try:
        await eventually(lambda: len(recorder.seen) == 3)
        await publisher.publish(event("late"))
        await eventually(lambda: len(recorder.seen) == 4)
        await asyncio.sleep(0.3)
        assert recorder.call_ids == ["early-0", "early-1", "early-2", "late"]
        assert await pending(client) == 0
    finally:
        await consumer.stop()

    # Published while the only consumer is stopped: delivered when it runs again.
    await publisher.publish(event("while-down"))
    again = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="api-1b", **FAST)
    await again.start()
    try:
        await eventually(lambda: len(recorder.seen) == 5)
        assert recorder.call_ids[-1] == "while-down"
    finally:
        await again.stop()


async def test_consumers_of_one_group_share_the_events_and_each_is_handled_once(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    log: list[tuple[str, str]] = []

    async def slow(_: CallEvent) -> None:
        await asyncio.sleep(0.002)

    consumers = [
        CallEventConsumer(
            client,
            WEBHOOKS_GROUP,
            Recorder(name, slow, log),
            consumer=name,
            batch_size=4,
            **FAST,
        )
        for name in ("api-1", "api-2")
    ]
    crm = Recorder("crm")
    other_group = CallEventConsumer(client, "crm", crm, consumer="crm-1", **FAST)
    for consumer in [*consumers, other_group]:
        await consumer.start()
    try:
        await asyncio.sleep(0.1)  # both are waiting
        for n in range(200):
            await publisher.publish(event(f"call-{n}"))
        await eventually(lambda: len(log) >= 200 and len(crm.seen) == 200)
        await asyncio.sleep(0.3)  # room for a wrong second handling to show up
    finally:
        for consumer in [*consumers, other_group]:
            await consumer.stop()
    handled = sorted(call_id for _, call_id in log)
    assert handled == sorted(f"call-{n}" for n in range(200))  # each once
    by_consumer = {name: sum(1 for who, _ in log if who == name) for name in ("api-1", "api-2")}
    assert all(count > 0 for count in by_consumer.values()), by_consumer
    # Another group sees every event too.
    assert sorted(crm.call_ids) == handled
    assert await pending(client) == 0


async def test_an_entry_read_by_a_consumer_that_died_is_reclaimed_by_another(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    stuck = asyncio.Event()

    async def hang(_: CallEvent) -> None:
        stuck.set()
        await asyncio.Event().wait()  # never returns: the process dies in here

    doomed = CallEventConsumer(client, WEBHOOKS_GROUP, Recorder("doomed", hang), consumer="api-1")
    await doomed.start()
    await publisher.publish(event("call-orphan"))
    await asyncio.wait_for(stuck.wait(), timeout=5)
    # Killed: no stop(), no ack, its task simply ends.
    assert doomed._task is not None
    doomed._task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed._task
    assert await pending(client) == 1

    rescuer = Recorder("rescuer")
    survivor = CallEventConsumer(client, WEBHOOKS_GROUP, rescuer, consumer="api-2", **FAST)
    await survivor.start()
    try:
        await eventually(lambda: rescuer.call_ids == ["call-orphan"])
        assert survivor.claimed == 1
        await eventually(lambda: survivor.handled == 1)
        assert await pending(client) == 0
    finally:
        await survivor.stop()


async def test_a_restarted_consumer_of_the_same_name_handles_its_own_pending_first(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    """A container restarted in its pod keeps host name and pid 1: same consumer name."""
    stuck = asyncio.Event()

    async def hang(_: CallEvent) -> None:
        stuck.set()
        await asyncio.Event().wait()

    first = CallEventConsumer(client, WEBHOOKS_GROUP, Recorder("first", hang), consumer="pod-1")
    await first.start()
    await publisher.publish(event("call-1"))
    await asyncio.wait_for(stuck.wait(), timeout=5)
    assert first._task is not None
    first._task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first._task

    recorder = Recorder()
    # No reclaiming for a minute: only its own pending list can bring the entry back.
    second = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="pod-1", claim_idle_s=60)
    started = time.monotonic()
    await second.start()
    try:
        await eventually(lambda: recorder.call_ids == ["call-1"])
        assert time.monotonic() - started < 2
        await eventually(lambda: second.handled == 1)
        assert await pending(client) == 0
    finally:
        await second.stop()


# --- failures ------------------------------------------------------------------------------


async def test_a_failing_handler_is_retried_without_holding_up_later_events(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    attempts: dict[str, int] = {}

    async def flaky(e: CallEvent) -> None:
        attempts[e.call_id] = attempts.get(e.call_id, 0) + 1
        if e.call_id == "call-bad" and attempts[e.call_id] <= 2:
            raise RuntimeError("database unavailable")

    recorder = Recorder("api", flaky)
    consumer = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="api-1", **FAST)
    await consumer.start()
    try:
        await publisher.publish(event("call-bad"))
        await publisher.publish(event("call-good"))
        await eventually(lambda: "call-bad" in recorder.call_ids)
        assert recorder.call_ids == ["call-good", "call-bad"]  # the good one did not wait
        assert attempts == {"call-bad": 3, "call-good": 1}
        assert consumer.failed == 2
        await eventually(lambda: consumer.handled == 2)
        assert await pending(client) == 0
    finally:
        await consumer.stop()


async def test_after_an_outage_of_the_handlers_store_every_event_is_handled_once(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    down = True
    attempts = 0

    async def store(_: CallEvent) -> None:
        nonlocal attempts
        attempts += 1
        if down:
            raise ConnectionError("database unavailable")

    recorder = Recorder("api", store)
    consumer = CallEventConsumer(
        client, WEBHOOKS_GROUP, recorder, consumer="api-1", batch_size=8, **FAST
    )
    await consumer.start()
    try:
        for n in range(40):
            await publisher.publish(event(f"call-{n}"))
        await asyncio.sleep(0.8)
        # Each entry once as it arrived, then retry rounds that stop at a failed page.
        assert 40 <= attempts < 40 + 8 * 12, attempts
        assert await pending(client) == 40
        down = False
        await eventually(lambda: len(recorder.seen) == 40)
        assert sorted(recorder.call_ids) == sorted(f"call-{n}" for n in range(40))
        await eventually(lambda: consumer.handled == 40)
        assert await pending(client) == 0
    finally:
        await consumer.stop()


async def test_poison_entries_are_acknowledged_and_skipped(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    await client.xadd(CALL_EVENTS_STREAM, {"hello": "world"})
    await client.xadd(CALL_EVENTS_STREAM, {"tenant": "acme", "event": "{truncated"})
    await client.xadd(CALL_EVENTS_STREAM, {"tenant": "globex", "event": event("x").to_json()})
    await publisher.publish(event("call-fine"))
    recorder = Recorder()
    consumer = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="api-1", **FAST)
    await consumer.start()
    try:
        await eventually(lambda: consumer.handled == 1)
        assert recorder.call_ids == ["call-fine"]
        assert consumer.skipped == 3
        assert await pending(client) == 0
    finally:
        await consumer.stop()


async def test_an_entry_trimmed_away_while_pending_is_dropped(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    """A consumer that died with an entry pending, and the entry trimmed since: the
    survivor acknowledges the gap instead of retrying it for ever."""
    await client.xgroup_create(CALL_EVENTS_STREAM, WEBHOOKS_GROUP, id="0", mkstream=True)
    entry_id = await publisher.publish(event("call-gone"))
    await client.xreadgroup(WEBHOOKS_GROUP, "dead", {CALL_EVENTS_STREAM: ">"}, count=1)
    await client.xdel(CALL_EVENTS_STREAM, entry_id)
    recorder = Recorder()
    consumer = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="pod-2", **FAST)
    await consumer.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not await pending(client):
                break
            await asyncio.sleep(0.05)
        assert await pending(client) == 0
        assert recorder.seen == []
    finally:
        await consumer.stop()


# --- stop and Redis trouble ----------------------------------------------------------------


async def test_stop_returns_within_a_second_while_the_read_blocks(
    client: redis.asyncio.Redis,
) -> None:
    consumer = CallEventConsumer(client, WEBHOOKS_GROUP, Recorder(), consumer="api-1")
    await consumer.start()
    await asyncio.sleep(0.3)  # parked in XREADGROUP BLOCK by now
    started = time.monotonic()
    await consumer.stop()
    assert time.monotonic() - started < 1.0
    assert consumer.state is ConsumerState.STOPPED
    await consumer.stop()  # twice is harmless


async def test_stop_lets_the_entry_in_hand_finish_and_ack(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    begun = asyncio.Event()

    async def slowly(_: CallEvent) -> None:
        begun.set()
        await asyncio.sleep(0.3)

    recorder = Recorder("api", slowly)
    consumer = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="api-1", **FAST)
    await consumer.start()
    await publisher.publish(event("call-1"))
    await asyncio.wait_for(begun.wait(), timeout=5)
    await consumer.stop()
    assert recorder.call_ids == ["call-1"]
    assert await pending(client) == 0


async def test_the_consumer_waits_out_a_redis_outage(flushed_redis: str) -> None:
    """Pointed at a port nobody listens on, it keeps retrying and still stops promptly."""
    dead = redis.asyncio.Redis.from_url("redis://127.0.0.1:9/0")
    consumer = CallEventConsumer(dead, WEBHOOKS_GROUP, Recorder(), consumer="api-1", **FAST)
    await consumer.start()
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await consumer.stop()
    assert time.monotonic() - started < 1.0
    await dead.aclose()


async def test_the_group_is_created_again_if_the_stream_vanishes(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    recorder = Recorder()
    consumer = CallEventConsumer(client, WEBHOOKS_GROUP, recorder, consumer="api-1", **FAST)
    await consumer.start()
    try:
        await publisher.publish(event("call-1"))
        await eventually(lambda: recorder.call_ids == ["call-1"])
        await client.delete(CALL_EVENTS_STREAM)
        await asyncio.sleep(0.3)
        await publisher.publish(event("call-2"))
        await eventually(lambda: recorder.call_ids == ["call-1", "call-2"])
    finally:
        await consumer.stop()


# --- trimming ------------------------------------------------------------------------------


async def test_the_stream_is_trimmed_to_about_its_bound(client: redis.asyncio.Redis) -> None:
    publisher = CallEventPublisher(client, max_len=1000)
    for n in range(5000):
        await publisher.publish(event(f"call-{n}"))
    length = await client.xlen(CALL_EVENTS_STREAM)
    # Approximate trimming drops whole macro nodes (100 entries by default).
    assert 1000 <= length < 1200, length
    [(_, newest)] = await client.xrevrange(CALL_EVENTS_STREAM, count=1)
    assert event_from_fields(newest).call_id == "call-4999"


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_len"):
        CallEventPublisher(redis.asyncio.Redis(), max_len=0)


# --- batches ---------------------------------------------------------------------------------


async def test_a_backlog_goes_to_the_batch_handler_in_reads_and_is_acknowledged_together(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    for n in range(10):
        await publisher.publish(event(f"backlog-{n}"))
    batches: list[list[str]] = []
    single = Recorder()

    async def batch(events: Any) -> None:
        batches.append([e.call_id for e in events])

    consumer = CallEventConsumer(
        client, WEBHOOKS_GROUP, single, batch_handler=batch, batch_size=4, consumer="b", **FAST
    )
    await consumer.ensure_group()
    while consumer.handled < 10:
        await consumer.poll_once()
    assert [len(b) for b in batches[:2]] == [4, 4]
    seen = [call_id for b in batches for call_id in b] + single.call_ids
    assert sorted(seen) == sorted(f"backlog-{n}" for n in range(10))
    assert len(seen) == 10
    assert await pending(client) == 0


async def test_a_failing_batch_is_handled_one_by_one_and_only_the_bad_event_stays_pending(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    for n in range(3):
        await publisher.publish(event(f"call-{n}"))

    async def refuse_call_1(e: CallEvent) -> None:
        if e.call_id == "call-1":
            raise RuntimeError("the store refused call-1")

    single = Recorder(behaviour=refuse_call_1)

    async def batch(events: Any) -> None:
        for e in events:
            await refuse_call_1(e)

    consumer = CallEventConsumer(
        client, WEBHOOKS_GROUP, single, batch_handler=batch, batch_size=8, consumer="b", **FAST
    )
    await consumer.ensure_group()
    await consumer.poll_once()
    assert single.call_ids == ["call-0", "call-2"]
    assert consumer.failed == 1
    assert await pending(client) == 1


async def test_linger_gathers_a_trickle_into_one_batch(
    client: redis.asyncio.Redis, publisher: CallEventPublisher
) -> None:
    batches: list[int] = []

    async def batch(events: Any) -> None:
        batches.append(len(events))

    consumer = CallEventConsumer(
        client,
        WEBHOOKS_GROUP,
        Recorder(),
        batch_handler=batch,
        batch_size=16,
        linger_s=0.3,
        consumer="b",
        **FAST,
    )
    await consumer.ensure_group()
    await publisher.publish(event("first"))
    reading = asyncio.create_task(consumer.poll_once())  # reads "first", then lingers
    await asyncio.sleep(0.1)
    for n in range(5):
        await publisher.publish(event(f"trickle-{n}"))
    await reading
    await consumer.poll_once()
    assert batches == [5]  # "first" alone went one by one; the five came in one read
    assert consumer.handled == 6

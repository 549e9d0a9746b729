"""The queue step publishes call.queued / call.dequeued (the live board's queue waits):
a real node, Redis and scripted peers. A call that never queues publishes neither.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as redis
from tests.services.sippeers import NUMBER, Carrier, Phone

from vpbx_common.events import CALL_EVENTS_STREAM, CallEvent, CallEventType, event_from_fields
from vpbx_common.nodeconfig import NodeConfig

DIRECT = "+74950000099"
QUEUE_EVENTS = (CallEventType.QUEUED, CallEventType.DEQUEUED)


def queue_config() -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.test",
            "city": "msk",
            "suspended": False,
            "users": [
                {"extension": "101", "name": "Anna", "city": "msk"},
                {"extension": "102", "name": "Boris", "city": "msk"},
            ],
            "groups": [
                {"name": "support", "members": ["101"], "ring_timeout_s": 30, "member_ring_s": 30}
            ],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": "billboard",
                    "channels": 0,
                    "target": {"type": "route-plan", "name": "main"},
                },
                {
                    "number": DIRECT,
                    "city": "msk",
                    "label": "",
                    "channels": 0,
                    "target": {"type": "user", "extension": "102"},
                },
            ],
            "route_plans": [
                {
                    "name": "main",
                    "steps": [
                        {
                            "type": "queue",
                            "target": {"type": "group", "name": "support"},
                            "max_wait_s": 300,
                        }
                    ],
                }
            ],
        }
    ).with_version()


async def events_until(
    url: str, done: Any, timeout: float = 10.0, after: str = "0"
) -> list[CallEvent]:
    """The stream's events from the start until ``done(events)`` holds."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            entries = await client.xrange(CALL_EVENTS_STREAM, min=after)
            events = [event_from_fields(fields) for _, fields in entries]
            if done(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"not yet: {[(e.type, e.queue) for e in events]}")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def of_type(events: list[CallEvent], *kinds: CallEventType) -> list[CallEvent]:
    return [event for event in events if event.type in kinds]


async def test_a_queued_caller_publishes_its_place_and_the_answer_ends_the_wait(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(queue_config())
    agent = await peers(Phone("101"))  # not registered yet: the callers wait
    first = await peers(Carrier(node.address, caller="+79130000001"))
    first.invite()
    assert (await first.final()).status == 200  # the queue answers: music
    second = await peers(Carrier(node.address, caller="+79130000002"))
    second.invite()
    assert (await second.final()).status == 200

    events = await events_until(
        flushed_redis, lambda found: len(of_type(found, CallEventType.QUEUED)) == 2
    )
    queued = of_type(events, CallEventType.QUEUED)
    assert [(e.caller, e.queue, e.position, e.label) for e in queued] == [
        ("+79130000001", "support", 1, "billboard"),
        ("+79130000002", "support", 2, "billboard"),
    ]
    assert len({e.call_id for e in queued}) == 2

    await node.register(agent)  # free now: the first caller's turn
    agent_ringing = await agent.ringing(timeout=15)
    assert agent_ringing.method == "INVITE"
    agent.answer()
    first_id = queued[0].call_id
    events = await events_until(
        flushed_redis,
        lambda found: (
            {CallEventType.ANSWERED, CallEventType.DEQUEUED}
            <= {e.type for e in found if e.call_id == first_id}
        ),
    )
    mine = [e for e in events if e.call_id == first_id]
    left = of_type(mine, CallEventType.DEQUEUED)
    assert [(e.queue, e.queue_left) for e in left] == [("support", "answered")]

    # The second caller gives up: the wait ends, and says so.
    second.bye()
    second_id = queued[1].call_id
    events = await events_until(
        flushed_redis,
        lambda found: (
            {CallEventType.ENDED, CallEventType.DEQUEUED}
            <= {e.type for e in found if e.call_id == second_id}
        ),
    )
    theirs = [e for e in events if e.call_id == second_id]
    [gone] = of_type(theirs, CallEventType.DEQUEUED)
    assert (gone.queue, gone.queue_left) == ("support", "caller hung up")
    first.bye()


async def test_a_call_that_never_queues_publishes_no_queue_event(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(queue_config())
    boris = await peers(Phone("102"))
    await node.register(boris)
    caller = await peers(
        Carrier(node.address, caller="+79130000003", uri_user=DIRECT, to_user=DIRECT)
    )
    caller.invite()
    await boris.ringing()
    boris.answer()
    assert (await caller.final()).status == 200
    caller.bye()
    events = await events_until(
        flushed_redis, lambda found: any(e.type is CallEventType.ENDED for e in found)
    )
    assert of_type(events, *QUEUE_EVENTS) == []
    assert all("queue" not in e.to_json() for e in events)


async def test_a_wait_the_dispatcher_ends_is_told_too(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    """The dispatcher takes the caller out (the node stops, the group is gone): the
    router hears it without a LeaveQueue of its own, and the board still gets the end."""
    node = await node_factory(queue_config())
    caller = await peers(Carrier(node.address, caller="+79130000004"))
    caller.invite()
    assert (await caller.final()).status == 200
    [joined] = of_type(
        await events_until(flushed_redis, lambda found: bool(of_type(found, *QUEUE_EVENTS))),
        CallEventType.QUEUED,
    )
    await node.service.queues.stop()
    events = await events_until(
        flushed_redis, lambda found: bool(of_type(found, CallEventType.DEQUEUED))
    )
    [left] = of_type(events, CallEventType.DEQUEUED)
    assert (left.call_id, left.queue, left.queue_left) == (
        joined.call_id,
        "support",
        "queue stopped",
    )

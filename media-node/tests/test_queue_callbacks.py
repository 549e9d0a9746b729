"""Queue callbacks in one process: a real node, Redis, and scripted peers.

A caller waiting in a queue presses the callback key and hangs up; their place
waits for them. When the turn comes the agent's phone rings first (showing the
caller's number), then the carrier is asked to call the caller from the number they
dialled. The record says how it went, attempt by attempt; the CDRs say it too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as redis
from tests.services.sippeers import HOST, NUMBER, Carrier, Phone, Trunk, shown_number

from vpbx_common.callbacks import CallbackRecord, CallbackStatus, CallbackStore
from vpbx_common.nodeconfig import NodeConfig

CALLER = "+79130000001"
SECOND_CALLER = "+79130000002"


def callback_config(trunk: Trunk, *, attempts: int = 2, retry_s: int = 1) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.test",
            "city": "msk",
            "suspended": False,
            "users": [{"extension": "101", "name": "Anna", "city": "msk"}],
            "groups": [
                {"name": "support", "members": ["101"], "ring_timeout_s": 30, "member_ring_s": 5}
            ],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": "billboard",
                    "channels": 0,
                    "target": {"type": "route-plan", "name": "main"},
                }
            ],
            "route_plans": [
                {
                    "name": "main",
                    "steps": [
                        {
                            "type": "queue",
                            "target": {"type": "group", "name": "support"},
                            "max_wait_s": 300,
                            "callback_digit": "1",
                            "callback_attempts": attempts,
                            "callback_retry_s": retry_s,
                        }
                    ],
                }
            ],
            "trunks": [
                {"id": "t0", "name": trunk.name, "host": HOST, "port": trunk.port, "priority": 0}
            ],
        }
    ).with_version()


async def queued_caller(peers: Any, node: Any, caller: str) -> Carrier:
    carrier = await peers(Carrier(node.address, caller=caller))
    carrier.invite()
    answered = await carrier.final()
    assert answered.status == 200  # the queue answers: music while waiting
    return carrier


async def press_for_callback(carrier: Carrier) -> None:
    seq = carrier.info("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n")
    assert (await carrier.response_to(seq)).status == 200
    # The confirmation plays, then the node hangs up on the caller.
    await carrier.bye_answered(timeout=70)


async def records_of(url: str) -> list[CallbackRecord]:
    client = redis.Redis.from_url(url)
    try:
        return await CallbackStore(client).all("acme")
    finally:
        await client.aclose()


async def eventually_record(
    url: str, status: CallbackStatus, timeout: float = 10.0
) -> CallbackRecord:
    deadline = time.monotonic() + timeout
    while True:
        records = await records_of(url)
        if records and records[0].status is status:
            return records[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no callback {status.value}: {records}")
        await asyncio.sleep(0.1)


async def test_a_caller_called_back_keeps_their_place_and_talks_to_the_agent(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    trunk = await peers(Trunk("carrier"))
    node = await node_factory(callback_config(trunk))
    agent = await peers(Phone("101"))  # not registered yet: nobody can take calls

    first = await queued_caller(peers, node, CALLER)
    second = await queued_caller(peers, node, SECOND_CALLER)
    await press_for_callback(first)
    booked = await eventually_record(flushed_redis, CallbackStatus.WAITING)
    assert (booked.caller, booked.dialled, booked.label, booked.position) == (
        CALLER,
        NUMBER,
        "billboard",
        1,
    )

    await node.register(agent)  # the agent is free now: the first place is the callback's
    ringing = await agent.ringing(timeout=15)
    assert shown_number(ringing, "From") == CALLER  # the agent sees whom they call back
    assert trunk.invites == []  # nobody is dialled before the agent is on the line
    agent.answer()
    invite = await trunk.invite()
    assert invite.uri.user == CALLER
    assert shown_number(invite, "P-Asserted-Identity") == NUMBER  # the number they called
    trunk.answer(invite)
    talking = await eventually_record(flushed_redis, CallbackStatus.CALLING)
    assert [(a.agent, a.outcome) for a in talking.attempts] == [("101", "calling")]

    trunk.hang_up(invite)
    await agent.bye_answered()
    done = await eventually_record(flushed_redis, CallbackStatus.CONNECTED)
    assert [(a.agent, a.outcome) for a in done.attempts] == [("101", "answered")]
    second.bye()
    records = await node.records(3, timeout=10)
    by_reason = {record.end_reason: record for record in records}
    booking = by_reason["callback"]
    assert (booking.caller, booking.answered_by) == (CALLER, "")
    attempt = next(record for record in records if record.direction == "outbound")
    assert (attempt.caller, attempt.dialled, attempt.end_reason) == ("101", CALLER, "completed")
    assert attempt.label == "billboard"  # the ad channel the caller came through
    assert attempt.route[0].subject == "queue-callback"
    assert f"callback {done.id}" in attempt.route[0].detail
    assert "attempt 1 of 2" in attempt.route[0].detail


async def test_a_busy_caller_is_tried_again_and_the_attempts_are_on_the_record(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    trunk = await peers(Trunk("carrier"))
    node = await node_factory(callback_config(trunk, attempts=2, retry_s=1))
    agent = await peers(Phone("101"))

    caller = await queued_caller(peers, node, CALLER)
    await press_for_callback(caller)
    await eventually_record(flushed_redis, CallbackStatus.WAITING)
    await node.register(agent)

    await agent.ringing(timeout=15)
    agent.answer()
    busy = await trunk.invite()
    trunk.reply(busy, 486)
    await agent.bye_answered()  # the agent is let go
    waiting = await eventually_record(flushed_redis, CallbackStatus.WAITING)
    assert [a.outcome for a in waiting.attempts] == ["busy"]
    assert waiting.next_attempt_at is not None

    await agent.ringing(timeout=15)  # after retry_s, back at its place and offered again
    agent.answer()
    second = await trunk.invite()
    trunk.reply(second, 480)
    await agent.bye_answered()
    failed = await eventually_record(flushed_redis, CallbackStatus.FAILED)
    assert [a.outcome for a in failed.attempts] == ["busy", "unavailable"]
    assert "2 attempts" in failed.detail


async def test_an_agent_not_answering_hands_the_place_back_and_nobody_is_dialled(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    trunk = await peers(Trunk("carrier"))
    node = await node_factory(callback_config(trunk))
    agent = await peers(Phone("101"))

    caller = await queued_caller(peers, node, CALLER)
    await press_for_callback(caller)
    await eventually_record(flushed_redis, CallbackStatus.WAITING)
    await node.register(agent)
    await agent.ringing(timeout=15)
    agent.reply(486)  # the agent declines: the place is still the callback's
    waiting = await eventually_record(flushed_redis, CallbackStatus.WAITING)
    assert waiting.attempts == ()
    assert "101" in waiting.detail
    assert trunk.invites == []


async def test_a_cancelled_callback_leaves_the_queue(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    trunk = await peers(Trunk("carrier"))
    node = await node_factory(callback_config(trunk))
    node.service.callbacks.check_s = 0.2
    caller = await queued_caller(peers, node, CALLER)
    await press_for_callback(caller)
    booked = await eventually_record(flushed_redis, CallbackStatus.WAITING)
    client = redis.Redis.from_url(flushed_redis)
    try:
        await CallbackStore(client).cancel("acme", booked.id, "cancelled by u-1")
    finally:
        await client.aclose()
    queues = node.service.queues
    deadline = time.monotonic() + 5
    waiting = await queues.length("support")
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        waiting = await queues.length("support")
    assert waiting == 0
    [record] = await records_of(flushed_redis)
    assert record.status is CallbackStatus.CANCELLED


async def test_callbacks_are_adopted_only_from_a_process_that_is_gone(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    trunk = await peers(Trunk("carrier"))
    node = await node_factory(callback_config(trunk))
    keeper = node.service.callbacks
    client = redis.Redis.from_url(flushed_redis)
    try:
        store = CallbackStore(client)
        now = time.time()
        record = CallbackRecord(
            id="c" * 32,
            tenant="acme",
            group="support",
            caller=CALLER,
            dialled=NUMBER,
            label="",
            call_id="earlier@carrier",
            node="node-msk",
            booked_at=now - 60,
            joined_at=now - 90,
            position=1,
            max_attempts=2,
            retry_s=60,
            holder="the-other-pod",
        )
        await store.hold("acme", "the-other-pod")  # a rolling update: the old pod still runs
        await store.save(record)
        assert await keeper.adopt() == 0
        await keeper.check()
        assert await node.service.queues.length("support") == 0

        await store.let_go("acme", "the-other-pod")  # it stopped
        assert await keeper.adopt() == 1
        await keeper.check()
        assert await node.service.queues.length("support") == 1  # back at its place
        [adopted] = await store.all("acme")
        assert adopted.holder == keeper.instance
    finally:
        await client.aclose()

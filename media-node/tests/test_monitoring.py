"""A supervisor on a live call, in one process with real RTP on loopback.

The caller, the agent and the supervisor each send their own tone; what each one
receives says who hears whom: listening, nobody hears the supervisor; whispering,
only the agent does; barging, both do. Agents may not monitor. The supervisor joins
by dialling a feature code, or the control API asks the node (a ``MonitorCall``
command) to ring the supervisor's phones.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as redis
from tests.services.sippeers import Carrier, Dialler, Phone, TonePeer, config, with_devices

from vpbx_common.commands import CommandReply, MonitorCall, NodeCommand, ReplyStatus, send_command
from vpbx_common.nodeconfig import NodeConfig

CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 400.0, 1000.0, 2500.0
HEARD, NOT_HEARD = 0.15, 0.01


def node_config() -> NodeConfig:
    document = config({"strategy": "ring-all", "members": ["101"]}).model_dump(mode="json")
    document["users"][2]["role"] = "supervisor"  # 103
    document["users"][1]["role"] = "agent"  # 102
    cfg = NodeConfig.model_validate(document)
    return with_devices(cfg, {"102": "pw-102-secret", "103": "pw-103-secret"})


async def monitored_call(node: Any, peers: Any) -> tuple[Carrier, Phone, TonePeer, TonePeer]:
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))
    caller_media = TonePeer(carrier.port + 1000, CALLER_HZ)
    await caller_media.open()
    carrier.invite()
    invite = await anna.ringing()
    agent_media = TonePeer(anna.port + 1000, AGENT_HZ)
    await agent_media.open()
    anna.answer()
    answered = await carrier.final()
    caller_media.talk_to(answered.body)
    agent_media.talk_to(invite.body)
    return carrier, anna, caller_media, agent_media


@pytest.mark.parametrize(
    ("code", "agent_hears_supervisor", "caller_hears_supervisor"),
    [("*33", False, False), ("*34", True, False), ("*35", True, True)],
)
async def test_a_supervisor_listens_whispers_or_barges(
    node_factory: Any,
    peers: Any,
    code: str,
    agent_hears_supervisor: bool,
    caller_hears_supervisor: bool,
) -> None:
    node = await node_factory(node_config())
    carrier, anna, caller_media, agent_media = await monitored_call(node, peers)
    boss = await peers(Dialler("103", "pw-103-secret", domain="acme.test"))
    boss_media = TonePeer(boss.port + 1000, SUPERVISOR_HZ)
    await boss_media.open()
    try:
        await boss.dial(node.address, f"{code}101")
        joined = await boss.final()
        assert joined.status == 200
        boss_media.talk_to(joined.body)
        await asyncio.sleep(1.2)

        supervisor_hears = boss_media.shares([CALLER_HZ, AGENT_HZ])
        assert supervisor_hears[CALLER_HZ] > HEARD
        assert supervisor_hears[AGENT_HZ] > HEARD
        agent = agent_media.shares([CALLER_HZ, SUPERVISOR_HZ])
        caller = caller_media.shares([AGENT_HZ, SUPERVISOR_HZ])
        assert agent[CALLER_HZ] > HEARD
        assert caller[AGENT_HZ] > HEARD
        assert (agent[SUPERVISOR_HZ] > HEARD) is agent_hears_supervisor, agent
        assert (caller[SUPERVISOR_HZ] > HEARD) is caller_hears_supervisor, caller
        if not caller_hears_supervisor:
            assert caller[SUPERVISOR_HZ] < NOT_HEARD

        boss.bye()  # the supervisor leaves: caller and agent go on, bridged directly
        await asyncio.sleep(0.5)
        after = agent_media.shares([CALLER_HZ, SUPERVISOR_HZ], last_packets=15)
        assert after[SUPERVISOR_HZ] < NOT_HEARD
        assert after[CALLER_HZ] > HEARD
        carrier.bye()
        await anna.bye_answered()
    finally:
        for media in (caller_media, agent_media, boss_media):
            media.close()
    [record] = await node.records(1)
    assert [s.subject for s in record.route if s.member == "103"] == ["transfer", "transfer"]


async def test_agents_may_not_monitor(node_factory: Any, peers: Any) -> None:
    node = await node_factory(node_config())
    carrier, anna, caller_media, agent_media = await monitored_call(node, peers)
    try:
        colleague = await peers(Dialler("102", "pw-102-secret", domain="acme.test"))
        await colleague.dial(node.address, "*33101")
        refused = await colleague.final()
        assert (refused.status, refused.reason) == (403, "Supervisors Only")
        carrier.bye()
        await anna.bye_answered()
    finally:
        caller_media.close()
        agent_media.close()


async def ask(node: Any, redis_url: str, body: MonitorCall) -> CommandReply:
    """Send the node a command as the control API does; its reply."""
    await asyncio.wait_for(node.service.commands.subscribed.wait(), 5)
    client = redis.Redis.from_url(redis_url)
    try:
        reply = await send_command(client, NodeCommand(tenant="acme", by_user="u-9", body=body), 5)
    finally:
        await client.aclose()
    assert reply is not None
    return reply


@pytest.mark.parametrize(
    ("mode", "agent_hears_supervisor", "caller_hears_supervisor"),
    [("listen", False, False), ("whisper", True, False), ("barge", True, True)],
)
async def test_the_api_rings_the_supervisor_who_joins_in_the_mode_asked(
    node_factory: Any,
    peers: Any,
    flushed_redis: str,
    mode: Any,
    agent_hears_supervisor: bool,
    caller_hears_supervisor: bool,
) -> None:
    node = await node_factory(node_config())
    carrier, anna, caller_media, agent_media = await monitored_call(node, peers)
    boss = await peers(Phone("103"))
    await node.register(boss)
    boss_media = TonePeer(boss.port + 1000, SUPERVISOR_HZ)
    await boss_media.open()
    try:
        body = MonitorCall(call_id=carrier.call_id, mode=mode, extension="103")
        reply = await ask(node, flushed_redis, body)
        assert (reply.status, reply.call_id) == (ReplyStatus.ACCEPTED, carrier.call_id)
        invite = await boss.ringing()
        boss.answer()
        boss_media.talk_to(invite.body)
        await asyncio.sleep(1.2)

        supervisor_hears = boss_media.shares([CALLER_HZ, AGENT_HZ])
        assert supervisor_hears[CALLER_HZ] > HEARD
        assert supervisor_hears[AGENT_HZ] > HEARD
        agent = agent_media.shares([CALLER_HZ, SUPERVISOR_HZ])
        caller = caller_media.shares([AGENT_HZ, SUPERVISOR_HZ])
        assert agent[CALLER_HZ] > HEARD
        assert caller[AGENT_HZ] > HEARD
        assert (agent[SUPERVISOR_HZ] > HEARD) is agent_hears_supervisor, agent
        assert (caller[SUPERVISOR_HZ] > HEARD) is caller_hears_supervisor, caller

        boss.request("BYE", seq=30)  # the supervisor leaves: bridged directly again
        await asyncio.sleep(0.5)
        after = agent_media.shares([CALLER_HZ, SUPERVISOR_HZ], last_packets=15)
        assert after[SUPERVISOR_HZ] < NOT_HEARD
        assert after[CALLER_HZ] > HEARD
        carrier.bye()
        await anna.bye_answered()
    finally:
        for media in (caller_media, agent_media, boss_media):
            media.close()
    [record] = await node.records(1)
    assert [s.outcome for s in record.route if s.member == "103"] == [mode, "left"]


async def test_the_api_refuses_agents_unreachable_supervisors_and_unknown_calls(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    carrier, anna, caller_media, agent_media = await monitored_call(node, peers)
    try:
        by_agent = await ask(
            node,
            flushed_redis,
            MonitorCall(call_id=carrier.call_id, mode="listen", extension="102"),
        )
        no_phone = await ask(
            node,
            flushed_redis,
            MonitorCall(call_id=carrier.call_id, mode="listen", extension="103"),
        )
        unknown = await ask(
            node, flushed_redis, MonitorCall(call_id="nope", mode="listen", extension="103")
        )
        assert (by_agent.status, by_agent.detail) == (ReplyStatus.REFUSED, "supervisors only")
        assert no_phone.status is ReplyStatus.REFUSED
        assert "registered phone" in no_phone.detail
        assert unknown.status is ReplyStatus.NOT_FOUND

        agent_now = agent_media.shares([CALLER_HZ])  # the call went on untouched
        assert agent_now[CALLER_HZ] > HEARD
        carrier.bye()
        await anna.bye_answered()
    finally:
        caller_media.close()
        agent_media.close()


async def test_a_supervisor_who_does_not_answer_leaves_the_call_as_it_was(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    carrier, anna, caller_media, agent_media = await monitored_call(node, peers)
    boss = await peers(Phone("103"))
    await node.register(boss)
    try:
        body = MonitorCall(call_id=carrier.call_id, mode="barge", extension="103")
        assert (await ask(node, flushed_redis, body)).status is ReplyStatus.ACCEPTED
        await boss.ringing()
        boss.reply(486)
        await asyncio.sleep(0.5)
        assert agent_media.shares([CALLER_HZ], last_packets=15)[CALLER_HZ] > HEARD
        assert caller_media.shares([AGENT_HZ], last_packets=15)[AGENT_HZ] > HEARD
        carrier.bye()
        await anna.bye_answered()
    finally:
        caller_media.close()
        agent_media.close()
    [record] = await node.records(1)
    assert [s.outcome for s in record.route if s.member == "103"] == ["unanswered"]

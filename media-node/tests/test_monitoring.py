"""A supervisor on a live call, in one process with real RTP on loopback.

The caller, the agent and the supervisor each send their own tone; what each one
receives says who hears whom: listening, nobody hears the supervisor; whispering,
only the agent does; barging, both do. Agents may not monitor.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.services.sippeers import Carrier, Dialler, Phone, TonePeer, config, with_devices

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

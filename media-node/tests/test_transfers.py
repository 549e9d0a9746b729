"""Transfers in one process: a real node, scripted phones and a carrier on loopback.

The agent who answered hands the caller to a colleague (REFER) or the control API
does (a Transfer command); the caller waits with music, the target rings, and once
the target answers the agent is let go. The agent hears how it went in NOTIFYs,
and the call's route keeps who transferred to whom.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis
from tests.services.sippeers import Carrier, Phone, config

from vpbx_common.commands import NodeCommand, ReplyStatus, Transfer, send_command


def sales(members: list[str]) -> Any:
    return config({"strategy": "ring-all", "members": members})


async def connected(node: Any, peers: Any, first: str = "101") -> tuple[Carrier, Phone]:
    agent = await peers(Phone(first))
    await node.register(agent)
    carrier = await peers(Carrier(node.address))
    carrier.invite()
    await agent.ringing()
    agent.answer()
    assert (await carrier.final()).status == 200
    return carrier, agent


async def test_a_blind_transfer_by_refer_hands_the_caller_to_the_colleague(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(sales(["101"]))
    carrier, anna = await connected(node, peers)
    boris = await peers(Phone("102"))
    await node.register(boris)

    anna.request("REFER", "Refer-To: <sip:102@acme.test>\r\n")
    assert (await anna.next_response()).status == 202
    assert "100 Trying" in await anna.notified()
    invite = await boris.ringing()
    assert "+79130000001" in (invite.headers.get("From") or "")  # the caller, not Anna
    assert "180 Ringing" in await anna.notified()
    boris.answer()
    assert "200 OK" in await anna.notified()
    await anna.bye_answered()  # the node lets the transferor go

    carrier.bye()
    await boris.bye_answered()
    [record] = await node.records(1)
    transfers = [(s.outcome, s.member) for s in record.route if s.subject == "transfer"]
    assert transfers == [("entered", "102"), ("answered", "102")]
    assert record.end_reason == "completed"


async def test_a_transfer_nobody_takes_leaves_the_caller_with_the_agent(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(sales(["101"]))
    carrier, anna = await connected(node, peers)
    boris = await peers(Phone("102"))
    await node.register(boris)

    anna.request("REFER", "Refer-To: <sip:102@acme.test>\r\n")
    assert (await anna.next_response()).status == 202
    await anna.notified()  # 100
    await boris.ringing()
    assert "180" in await anna.notified()
    boris.reply(486)
    assert "486" in await anna.notified()

    anna.request("BYE", seq=30)  # still connected to the caller: Anna ends the call
    bye = await carrier.next(method="BYE")
    assert bye is not None
    [record] = await node.records(1)
    transfers = [s.outcome for s in record.route if s.subject == "transfer"]
    assert transfers == ["entered", "failed"]


async def test_a_refer_to_nobody_is_refused_and_the_call_goes_on(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(sales(["101"]))
    carrier, anna = await connected(node, peers)

    anna.request("REFER", "Refer-To: <sip:999@acme.test>\r\n")
    assert (await anna.next_response()).status == 404
    carrier.bye()
    await anna.bye_answered()


async def test_the_api_transfers_a_live_call(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(sales(["101"]))
    carrier, anna = await connected(node, peers)
    boris = await peers(Phone("102"))
    await node.register(boris)
    await asyncio.wait_for(node.service.commands.subscribed.wait(), 5)
    client = redis.Redis.from_url(flushed_redis)
    try:
        command = NodeCommand(
            tenant="acme", by_user="u-7", body=Transfer(call_id=carrier.call_id, target="102")
        )
        reply = await send_command(client, command, 5)
        missing = NodeCommand(tenant="acme", body=Transfer(call_id="nope", target="102"))
        not_found = await send_command(client, missing, 5)
    finally:
        await client.aclose()
    assert reply is not None
    assert reply.status is ReplyStatus.ACCEPTED
    assert not_found is not None
    assert not_found.status is ReplyStatus.NOT_FOUND

    await boris.ringing()
    boris.answer()
    await anna.bye_answered()
    carrier.bye()
    await boris.bye_answered()
    [record] = await node.records(1)
    details = [s.detail for s in record.route if s.subject == "transfer"]
    assert details[0] == "blind transfer by api:u-7"

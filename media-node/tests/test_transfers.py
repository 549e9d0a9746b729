"""Transfers in one process: a real node, scripted phones and a carrier on loopback.

The agent who answered hands the caller to a colleague (REFER) or the control API
does (a Transfer command); the caller waits with music, the target rings, and once
the target answers the agent is let go. The agent hears how it went in NOTIFYs,
and the call's route keeps who transferred to whom.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import redis.asyncio as redis
from tests.services.sippeers import HOST, Carrier, Dialler, Phone, config, sdp, with_devices

from vpbx_common.commands import NodeCommand, ReplyStatus, Transfer, send_command
from vpbx_media.sip.message import SipRequest


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


async def test_holding_the_caller_plays_them_music_instead_of_silence(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(sales(["101"]))
    carrier, anna = await connected(node, peers)
    received: list[bytes] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append(data)

    loop = asyncio.get_running_loop()
    media, _ = await loop.create_datagram_endpoint(Sink, local_addr=(HOST, carrier.port + 1000))
    try:
        hold = sdp(anna.port + 1000).replace(b"a=sendrecv", b"a=sendonly")
        anna.request("INVITE", "Content-Type: application/sdp\r\n", seq=21, body=hold)
        answer = await anna.next_response()
        assert answer.status == 200
        anna.request("ACK", seq=21)
        assert b"a=recvonly" in answer.body
        await asyncio.sleep(0.5)
        assert len(received) >= 15  # music on hold: 50 packets a second
        assert not any(m.method == "INVITE" for m in carrier.seen if isinstance(m, SipRequest))

        anna.request(
            "INVITE", "Content-Type: application/sdp\r\n", seq=22, body=sdp(anna.port + 1000)
        )
        resumed = await anna.next_response()
        while resumed.cseq.seq != 22:  # the hold's 200 again, sent before our ACK arrived
            resumed = await anna.next_response()
        anna.request("ACK", seq=22)
        assert resumed.status == 200
        assert b"a=sendrecv" in resumed.body
    finally:
        media.close()
    carrier.bye()
    await anna.bye_answered()


async def test_an_attended_transfer_joins_the_caller_and_the_consulted_colleague(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(with_devices(sales(["101"]), {"101": "anna-secret-101"}))
    carrier, anna = await connected(node, peers)
    boris = await peers(Phone("102"))
    await node.register(boris)
    consult = await peers(Dialler("101", "anna-secret-101", domain="acme.test"))

    # Anna asks Boris first, on a call of her own.
    await consult.dial(node.address, "102")
    await boris.ringing()
    boris.answer()
    consulted = await consult.final()
    assert consulted.status == 200
    replaces = quote(f"{consult.call_id};to-tag={consulted.to.tag};from-tag=dialler-101")

    anna.request("REFER", f"Refer-To: <sip:102@acme.test?Replaces={replaces}>\r\n")
    assert (await anna.next_response()).status == 202
    assert "100 Trying" in await anna.notified()
    reinvite = await boris.next(method="INVITE")
    assert isinstance(reinvite, SipRequest)
    boris.answer_request(reinvite, 200, sdp(boris.port + 1000))
    assert "200 OK" in await anna.notified()
    await anna.bye_answered()  # Anna leaves the caller's call...
    await consult.bye_answered()  # ...and her consultation call ends

    carrier.bye()  # the caller talked to Boris and hangs up: Boris is told
    await boris.bye_answered()
    records = await node.records(2)
    first = next(r for r in records if r.call_id == carrier.call_id)
    steps = [(s.outcome, s.detail) for s in first.route if s.subject == "transfer"]
    assert steps == [("answered", "attended transfer by 101")]

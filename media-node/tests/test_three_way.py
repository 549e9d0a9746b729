"""Three-way conferences asked through the control API (an ``AddParty`` command), in one
process with real RTP on loopback.

The caller, the agent and the added colleague each send their own tone; what each one
receives says who hears whom. In the mixer everybody hears the other two; when one
hangs up, the other two still hear each other; a target who does not answer leaves
the call as it was; a number the tenant's policy refuses is never rung.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis
from tests.services.sippeers import HOST, NUMBER, Carrier, Phone, TonePeer, Trunk, config, sdp

from vpbx_common.commands import (
    AddParty,
    CommandReply,
    NodeCommand,
    ReplyStatus,
    Transfer,
    TransferStep,
    send_command,
)
from vpbx_common.nodeconfig import NodeConfig
from vpbx_media.sip.headers import NameAddr
from vpbx_media.sip.message import SipRequest
from vpbx_media.sip.uri import SipUri

CALLER_HZ, AGENT_HZ, TARGET_HZ = 400.0, 1000.0, 2500.0
HEARD, NOT_HEARD = 0.15, 0.01


def node_config(trunk: Trunk | None = None) -> Any:
    cfg = config({"strategy": "ring-all", "members": ["101"]})
    if trunk is None:
        return cfg
    document = cfg.model_dump(mode="json")
    document["trunks"] = [
        {"id": "t0", "name": trunk.name, "host": HOST, "port": trunk.port, "priority": 0}
    ]
    return NodeConfig.model_validate(document).with_version()


async def ask(node: Any, redis_url: str, body: AddParty | Transfer | TransferStep) -> CommandReply:
    await asyncio.wait_for(node.service.commands.subscribed.wait(), 5)
    client = redis.Redis.from_url(redis_url)
    try:
        reply = await send_command(client, NodeCommand(tenant="acme", by_user="u-5", body=body), 5)
    finally:
        await client.aclose()
    assert reply is not None
    return reply


class Three:
    """A connected call (caller through the carrier, agent Anna on 101) and Boris (102)
    ready to be added, each with a tone of their own."""

    def __init__(self, node: Any, peers: Any) -> None:
        self.node = node
        self.peers = peers
        self.medias: list[TonePeer] = []

    async def start(self) -> None:
        self.anna = await self.peers(Phone("101"))
        self.boris = await self.peers(Phone("102"))
        await self.node.register(self.anna)
        await self.node.register(self.boris)
        self.carrier = await self.peers(Carrier(self.node.address))
        self.caller_media = await self._media(self.carrier.port + 1000, CALLER_HZ)
        self.agent_media = await self._media(self.anna.port + 1000, AGENT_HZ)
        self.target_media = await self._media(self.boris.port + 1000, TARGET_HZ)
        self.carrier.invite()
        invite = await self.anna.ringing()
        self.anna.answer()
        answered = await self.carrier.final()
        self.caller_media.talk_to(answered.body)
        self.agent_media.talk_to(invite.body)

    async def _media(self, port: int, hz: float) -> TonePeer:
        media = TonePeer(port, hz)
        await media.open()
        self.medias.append(media)
        return media

    async def add_boris(self, redis_url: str) -> None:
        reply = await ask(
            self.node, redis_url, AddParty(call_id=self.carrier.call_id, target="102")
        )
        assert (reply.status, reply.call_id) == (ReplyStatus.ACCEPTED, self.carrier.call_id)
        invite = await self.boris.ringing()
        assert "+79130000001" in (invite.headers.get("From") or "")  # shows the caller
        self.boris.answer()
        self.target_media.talk_to(invite.body)
        await asyncio.sleep(1.2)

    def close(self) -> None:
        for media in self.medias:
            media.close()


def hears(media: TonePeer, hz: float, last_packets: int = 15) -> bool:
    return media.shares([hz], last_packets=last_packets)[hz] > HEARD


async def test_all_three_hear_each_other_and_the_two_go_on_when_the_target_leaves(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        await call.add_boris(flushed_redis)

        assert hears(call.caller_media, AGENT_HZ, 40)
        assert hears(call.caller_media, TARGET_HZ, 40)
        assert hears(call.agent_media, CALLER_HZ, 40)
        assert hears(call.agent_media, TARGET_HZ, 40)
        assert hears(call.target_media, CALLER_HZ, 40)
        assert hears(call.target_media, AGENT_HZ, 40)

        # Nobody is transferred out of the mix.
        call.anna.request("REFER", "Refer-To: <sip:103@acme.test>\r\n", seq=25)
        assert (await call.anna.next_response()).status == 491

        call.boris.request("BYE", seq=30)  # the added party leaves: bridged directly again
        await asyncio.sleep(0.5)
        after = call.agent_media.shares([CALLER_HZ, TARGET_HZ], last_packets=15)
        assert after[TARGET_HZ] < NOT_HEARD
        assert after[CALLER_HZ] > HEARD
        assert hears(call.caller_media, AGENT_HZ)
        call.carrier.bye()
        await call.anna.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    steps = [(s.outcome, s.member, s.detail) for s in record.route if s.subject == "three-way"]
    assert steps == [
        ("ringing", "102", "added by api:u-5"),
        ("joined", "102", "added by api:u-5"),
        ("left", "102", "the added party hung up"),
    ]
    assert record.end_reason == "completed"


async def test_the_caller_and_the_target_go_on_when_the_agent_leaves(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        await call.add_boris(flushed_redis)

        call.anna.request("BYE", seq=30)
        moved = await call.boris.next(method="INVITE")  # onto the call's own relay leg
        assert isinstance(moved, SipRequest)
        call.boris.answer_request(moved, 200, sdp(call.boris.port + 1000))
        call.target_media.talk_to(moved.body)
        await asyncio.sleep(0.8)
        assert hears(call.caller_media, TARGET_HZ)
        assert hears(call.target_media, CALLER_HZ)
        assert call.caller_media.shares([AGENT_HZ], last_packets=15)[AGENT_HZ] < NOT_HEARD

        call.carrier.bye()
        await call.boris.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    steps = [s.outcome for s in record.route if s.subject == "three-way"]
    assert steps == ["ringing", "joined", "answerer-left"]


async def test_the_agent_and_the_target_go_on_when_the_caller_leaves(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        await call.add_boris(flushed_redis)

        call.carrier.bye()
        await asyncio.sleep(0.6)
        assert hears(call.agent_media, TARGET_HZ)
        assert hears(call.target_media, AGENT_HZ)
        assert call.agent_media.shares([CALLER_HZ], last_packets=15)[CALLER_HZ] < NOT_HEARD

        call.anna.request("BYE", seq=30)  # the last two: the target is let go too
        await call.boris.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    steps = [s.outcome for s in record.route if s.subject == "three-way"]
    assert steps == ["ringing", "joined", "caller-left"]


async def test_a_target_who_does_not_answer_leaves_the_call_as_it_was(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        reply = await ask(node, flushed_redis, AddParty(call_id=call.carrier.call_id, target="102"))
        assert reply.status is ReplyStatus.ACCEPTED
        await call.boris.ringing()
        await asyncio.sleep(0.3)
        assert hears(call.agent_media, CALLER_HZ)  # the two talk on while it rings
        call.boris.reply(486)
        await asyncio.sleep(0.4)
        assert hears(call.agent_media, CALLER_HZ)
        assert hears(call.caller_media, AGENT_HZ)
        call.carrier.bye()
        await call.anna.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    steps = [(s.outcome, s.detail) for s in record.route if s.subject == "three-way"]
    assert steps == [
        ("ringing", "added by api:u-5"),
        ("unanswered", "added by api:u-5: 486 from the target"),
    ]


async def test_a_number_the_policy_refuses_is_not_rung(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        abroad = AddParty(call_id=call.carrier.call_id, target="+442079460000")
        refused = await ask(node, flushed_redis, abroad)
        unknown = await ask(node, flushed_redis, AddParty(call_id="nope", target="102"))
        assert (refused.status, refused.detail) == (
            ReplyStatus.REFUSED,
            "International Calls Not Allowed",
        )
        assert unknown.status is ReplyStatus.NOT_FOUND
        await asyncio.sleep(0.3)
        assert hears(call.agent_media, CALLER_HZ)
        call.carrier.bye()
        await call.anna.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    steps = [(s.outcome, s.member) for s in record.route if s.subject == "three-way"]
    assert steps == [("refused", "+442079460000")]


async def test_a_number_is_added_through_the_trunk_showing_the_caller_id_asked(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    trunk = await peers(Trunk("carrier-out"))
    node = await node_factory(node_config(trunk))
    call = Three(node, peers)
    outside = await call._media(trunk.port + 1000, TARGET_HZ)
    try:
        await call.start()
        body = AddParty(call_id=call.carrier.call_id, target="8 916 123-45-67", caller_id=NUMBER)
        reply = await ask(node, flushed_redis, body)
        assert reply.status is ReplyStatus.ACCEPTED
        invite = await trunk.invite()
        assert isinstance(invite.uri, SipUri)
        assert invite.uri.user == "+79161234567"
        shown = NameAddr.parse(invite.headers.get("From") or "").uri
        assert isinstance(shown, SipUri)
        assert shown.user == NUMBER
        trunk.answer(invite)
        outside.talk_to(invite.body)
        await asyncio.sleep(1.2)
        assert hears(call.caller_media, TARGET_HZ, 40)
        assert hears(call.agent_media, TARGET_HZ, 40)
        assert hears(outside, CALLER_HZ, 40)
        assert hears(outside, AGENT_HZ, 40)

        trunk.hang_up(invite)
        await asyncio.sleep(0.5)
        assert hears(call.agent_media, CALLER_HZ)
        call.carrier.bye()
        await call.anna.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    steps = [(s.outcome, s.member) for s in record.route if s.subject == "three-way"]
    assert steps == [
        ("ringing", "+79161234567"),
        ("joined", "+79161234567"),
        ("left", "+79161234567"),
    ]


# --- attended transfers through the API: a consultation, then complete or cancel ---------


def step(call: Three, action: str) -> TransferStep:
    return TransferStep(call_id=call.carrier.call_id, action=action)  # type: ignore[arg-type]


def hears_none_of_the_people(media: TonePeer) -> bool:
    shares = media.shares([CALLER_HZ, AGENT_HZ, TARGET_HZ], last_packets=15)
    return all(share < NOT_HEARD for share in shares.values())


async def consult_boris(call: Three, redis_url: str) -> None:
    reply = await ask(
        call.node, redis_url, Transfer(call_id=call.carrier.call_id, target="102", attended=True)
    )
    assert reply.status is ReplyStatus.ACCEPTED, reply
    invite = await call.boris.ringing()
    await asyncio.sleep(0.5)
    assert hears_none_of_the_people(call.caller_media)  # on hold: music, not Anna
    call.boris.answer()
    call.target_media.talk_to(invite.body)
    await asyncio.sleep(1.0)
    assert hears(call.agent_media, TARGET_HZ)
    assert hears(call.target_media, AGENT_HZ)
    assert hears_none_of_the_people(call.caller_media)  # the consultation is private
    assert call.target_media.shares([CALLER_HZ], last_packets=15)[CALLER_HZ] < NOT_HEARD


async def test_completing_puts_the_caller_through_to_the_consulted_colleague(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        await consult_boris(call, flushed_redis)

        done = await ask(node, flushed_redis, step(call, "complete"))
        assert done.status is ReplyStatus.ACCEPTED, done
        await call.anna.bye_answered()  # Anna is let go
        moved = await call.boris.next(method="INVITE")  # onto the call's own relay leg
        assert isinstance(moved, SipRequest)
        call.boris.answer_request(moved, 200, sdp(call.boris.port + 1000))
        call.target_media.talk_to(moved.body)
        await asyncio.sleep(1.0)
        assert hears(call.caller_media, TARGET_HZ)
        assert hears(call.target_media, CALLER_HZ)

        call.carrier.bye()
        await call.boris.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    transfer = [(s.outcome, s.member) for s in record.route if s.subject == "transfer"]
    assert transfer == [("consulting", "102"), ("transferred", "102")]


async def test_cancelling_brings_the_caller_back_to_the_agent(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        await consult_boris(call, flushed_redis)

        back = await ask(node, flushed_redis, step(call, "cancel"))
        assert back.status is ReplyStatus.ACCEPTED, back
        await call.boris.bye_answered()
        await asyncio.sleep(0.8)
        assert hears(call.caller_media, AGENT_HZ)
        assert hears(call.agent_media, CALLER_HZ)
        again = await ask(node, flushed_redis, step(call, "complete"))
        assert again.status is ReplyStatus.REFUSED  # nothing to complete any more

        call.carrier.bye()
        await call.anna.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    transfer = [s.outcome for s in record.route if s.subject == "transfer"]
    assert transfer == ["consulting", "cancelled"]


async def test_the_agent_hanging_up_while_the_colleague_rings_puts_the_caller_through(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    node = await node_factory(node_config())
    call = Three(node, peers)
    try:
        await call.start()
        reply = await ask(
            node, flushed_redis, Transfer(call_id=call.carrier.call_id, target="102", attended=True)
        )
        assert reply.status is ReplyStatus.ACCEPTED
        invite = await call.boris.ringing()
        early = await ask(node, flushed_redis, step(call, "complete"))
        assert (early.status, early.detail) == (
            ReplyStatus.REFUSED,
            "Consulted Party Not Answered Yet",
        )
        call.anna.request("BYE", seq=30)
        await asyncio.sleep(0.3)
        call.boris.answer()
        call.target_media.talk_to(invite.body)
        moved = await call.boris.next(method="INVITE")
        assert isinstance(moved, SipRequest)
        call.boris.answer_request(moved, 200, sdp(call.boris.port + 1000))
        call.target_media.talk_to(moved.body)
        await asyncio.sleep(1.0)
        assert hears(call.caller_media, TARGET_HZ)
        assert hears(call.target_media, CALLER_HZ)
        call.carrier.bye()
        await call.boris.bye_answered()
    finally:
        call.close()
    [record] = await node.records(1)
    outcomes = [s.outcome for s in record.route if s.subject == "transfer"]
    assert outcomes == ["consulting", "put-through", "transferred"]

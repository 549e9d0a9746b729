"""Call logic in one process: a real node (SIP stack, relay, routing engine, Redis) and
scripted SIP peers on loopback standing in for phones and carriers.

The peers answer, ring, refuse or stay silent exactly when a test says, so the
races a call must decide in one place (two devices answering at once, a CANCEL
crossing a 200, an answer crossing the end of a member's turn) are reproduced
on purpose instead of by luck, in well under a second each.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from tests.services.ports import free_port_block

from vpbx_common.cdr import CallRecord
from vpbx_common.nodeconfig import NodeConfig
from vpbx_media.cdr.spool import CdrSpool
from vpbx_media.node.bindings import Binding, BindingStore
from vpbx_media.node.configsource import ConfigHolder
from vpbx_media.node.registrar import Authenticator
from vpbx_media.node.service import NodeIdentity, NodeService
from vpbx_media.rtp.ports import PortAllocator
from vpbx_media.sip.digest import DigestAuthenticator, NonceService
from vpbx_media.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from vpbx_media.sip.transaction import Timers, TransactionLayer
from vpbx_media.sip.transport import SipTransport

HOST = "127.0.0.1"
NUMBER = "+74950000001"
_ids = itertools.count(1)


def config(group: dict[str, Any]) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.test",
            "city": "msk",
            "suspended": False,
            "users": [
                {"extension": ext, "name": ext, "city": "msk"} for ext in ("101", "102", "103")
            ],
            "groups": [{"name": "sales", "ring_timeout_s": 3, **group}],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": None,
                    "channels": 0,
                    "target": {"type": "group", "name": "sales"},
                }
            ],
        }
    ).with_version()


def sdp(port: int) -> bytes:
    return (
        f"v=0\r\no=peer 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


class Peer(asyncio.DatagramProtocol):
    """One UDP SIP endpoint whose every message lands in an inbox."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.seen: list[SipMessage] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.last_from: tuple[str, int] = (HOST, 0)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        self.last_from = addr
        self.seen.append(message)
        self.inbox.put_nowait(message)

    def send(self, message: SipMessage | str, to: tuple[str, int]) -> None:
        assert self.transport is not None
        data = message.encode() if isinstance(message, str) else bytes(message)
        self.transport.sendto(data, to)

    async def next(self, *, method: str | None = None, timeout: float = 5.0) -> SipMessage:
        """The next message (of ``method`` if given, for requests), skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if method is None or (isinstance(message, SipRequest) and message.method == method):
                    return message

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Phone(Peer):
    """A registered device: rings on INVITE and does what the test tells it."""

    def __init__(self, extension: str) -> None:
        super().__init__(extension)
        self.extension = extension
        self.invite: SipRequest | None = None
        self.node: tuple[str, int] = (HOST, 0)
        self.tag = f"tag-{extension}-{next(_ids)}"

    @property
    def contact(self) -> str:
        return f"sip:{self.extension}@{HOST}:{self.port}"

    async def ringing(self) -> SipRequest:
        invite = await self.next(method="INVITE")
        assert isinstance(invite, SipRequest)
        self.invite = invite
        self.node = self.last_from
        self.reply(180)
        return invite

    def reply(self, status: int, *, body: bytes = b"") -> None:
        assert self.invite is not None
        extra = f"Contact: <{self.contact}>\r\n" if status < 300 else ""
        self.send(response_text(self.invite, status, self.tag, extra, body), self.node)

    def answer(self) -> None:
        self.reply(200, body=sdp(self.port + 1000))

    async def answers_cancel(self) -> None:
        cancel = await self.next(method="CANCEL")
        assert isinstance(cancel, SipRequest)
        self.send(response_text(cancel, 200, self.tag), self.node)
        self.reply(487)

    async def bye_answered(self) -> None:
        bye = await self.next(method="BYE")
        assert isinstance(bye, SipRequest)
        self.send(response_text(bye, 200, self.tag), self.node)


def response_text(
    request: SipRequest, status: int, tag: str, extra: str = "", body: bytes = b""
) -> str:
    reasons = {180: "Ringing", 200: "OK", 486: "Busy Here", 487: "Request Terminated"}
    vias = "".join(f"Via: {via}\r\n" for via in request.headers.values("Via"))
    to = request.headers.get("To") or ""
    if ";tag=" not in to:
        to += f";tag={tag}"
    content = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"SIP/2.0 {status} {reasons.get(status, 'Whatever')}\r\n{vias}"
        f"From: {request.headers.get('From')}\r\nTo: {to}\r\n"
        f"Call-ID: {request.call_id}\r\nCSeq: {request.headers.get('CSeq')}\r\n"
        f"{extra}{content}Content-Length: {len(body)}\r\n\r\n"
    ) + body.decode()


class Carrier(Peer):
    """The caller: INVITEs the node's number, ACKs, CANCELs and hangs up."""

    def __init__(self, node: tuple[str, int]) -> None:
        super().__init__("carrier")
        self.node = node
        self.call_id = f"carrier-{next(_ids)}@{HOST}"
        self.branch = f"z9hG4bK-carrier-{next(_ids)}"
        self.to_tag: str | None = None

    def _head(self, method: str, seq: int, branch: str, to_tag: str | None = None) -> str:
        to = f"<sip:{NUMBER}@{HOST}>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"{method} sip:{NUMBER}@{HOST} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:+79130000001@{HOST}>;tag=carrier\r\nTo: {to}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {seq} {method}\r\n"
            f"Contact: <sip:carrier@{HOST}:{self.port}>\r\n"
        )

    def invite(self) -> None:
        body = sdp(self.port + 1000)
        head = self._head("INVITE", 1, self.branch)
        self.send(
            head
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
            + body.decode(),
            self.node,
        )

    def cancel(self) -> None:
        self.send(self._head("CANCEL", 1, self.branch) + "Content-Length: 0\r\n\r\n", self.node)

    async def final(self, timeout: float = 10.0) -> SipResponse:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if (
                    isinstance(message, SipResponse)
                    and message.cseq.method == "INVITE"
                    and message.status >= 200
                ):
                    self.to_tag = message.to.tag
                    ack_branch = self.branch if message.status >= 300 else f"z9hG4bK-{next(_ids)}"
                    ack = self._head("ACK", 1, ack_branch, self.to_tag)
                    self.send(ack + "Content-Length: 0\r\n\r\n", self.node)
                    return message

    def bye(self) -> None:
        head = self._head("BYE", 2, f"z9hG4bK-{next(_ids)}", self.to_tag)
        self.send(head + "Content-Length: 0\r\n\r\n", self.node)

    def info(self, content_type: str, body: str) -> int:
        """Send an in-dialog INFO; its CSeq number, to wait for the answer."""
        seq = 10 + next(_ids)
        head = self._head("INFO", seq, f"z9hG4bK-{next(_ids)}", self.to_tag)
        length = len(body.encode())
        self.send(
            head + f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n{body}",
            self.node,
        )
        return seq

    async def response_to(self, seq: int, timeout: float = 5.0) -> SipResponse:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if isinstance(message, SipResponse) and message.cseq.seq == seq:
                    return message


class Node:
    def __init__(self, service: NodeService, transport: SipTransport, spool: CdrSpool) -> None:
        self.service = service
        self.transport = transport
        self.spool = spool

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.transport.local_address.port)

    async def register(self, phone: Phone) -> None:
        await self.service.bindings.put(
            Binding(
                tenant="acme",
                extension=phone.extension,
                contact=phone.contact,
                path=(),
                expires_at=time.time() + 3600,
                call_id=f"reg-{phone.extension}",
                cseq=1,
            )
        )

    async def records(self, count: int, timeout: float = 5.0) -> list[CallRecord]:
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0.05)
                records = self.spool.pending(100).records
                if len(records) >= count:
                    return list(records)


@pytest.fixture
async def node_factory(flushed_redis: str, tmp_path: Path) -> AsyncIterator[Any]:
    started: list[tuple[NodeService, SipTransport, CdrSpool, redis.Redis]] = []

    async def start(cfg: NodeConfig) -> Node:
        client = redis.Redis.from_url(flushed_redis)
        holder = ConfigHolder(cfg)
        transport = SipTransport(HOST, free_port_block(1))
        timers = Timers(t1=0.05)
        authenticator = Authenticator(
            DigestAuthenticator(NonceService(b"k" * 16), cfg.sip_domain), holder, ()
        )
        low = free_port_block(20)
        spool = CdrSpool(tmp_path / f"spool-{len(started)}")
        service = NodeService(
            NodeIdentity("acme", "msk", "node-msk", transport.local_address, HOST),
            holder,
            lambda user: TransactionLayer(transport, user, timers),
            BindingStore(client),
            authenticator,
            PortAllocator(low, low + 19),
            spool,
            client,
        )
        await transport.start()
        service.start()
        started.append((service, transport, spool, client))
        return Node(service, transport, spool)

    yield start
    for service, transport, spool, client in started:
        await service.stop()
        await transport.stop()
        spool.close()
        await client.aclose()


@pytest.fixture
async def peers() -> AsyncIterator[Any]:
    opened: list[Peer] = []

    async def make(peer: Peer) -> Any:
        await peer.open()
        opened.append(peer)
        return peer

    yield make
    for peer in opened:
        peer.close()


async def test_two_devices_answering_at_once_give_one_call_and_the_other_a_bye(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101", "102"]}))
    anna, boris = await peers(Phone("101")), await peers(Phone("102"))
    for phone in (anna, boris):
        await node.register(phone)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    await asyncio.gather(anna.ringing(), boris.ringing())
    anna.answer()
    boris.answer()  # in the same instant: both 200s reach the node
    final = await carrier.final()

    assert final.status == 200
    # Exactly one of them keeps the call; the other is hung up.
    loser = await asyncio.wait_for(_first_bye(anna, boris), 5)
    await loser.bye_answered()
    carrier.bye()
    winner = boris if loser is anna else anna
    await winner.bye_answered()
    [record] = await node.records(1)
    assert record.answered_by == winner.extension
    assert record.end_reason == "completed"


async def _first_bye(*phones: Phone) -> Phone:
    async with asyncio.timeout(5):
        while True:
            for phone in phones:
                if any(isinstance(m, SipRequest) and m.method == "BYE" for m in phone.seen):
                    return phone
            await asyncio.sleep(0.02)


async def test_a_cancel_crossing_the_answer_leaves_no_half_call(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101"]}))
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    await anna.ringing()
    anna.answer()
    carrier.cancel()  # crosses the 200 on the wire
    final = await carrier.final()

    if final.status == 200:
        # The answer won: a normal call that the caller ends at once.
        carrier.bye()
        await anna.bye_answered()
        [record] = await node.records(1)
        assert (record.answered_by, record.end_reason) == ("101", "completed")
    else:
        # The CANCEL won: the caller hears 487 and the device that answered is hung up.
        assert final.status == 487
        await anna.bye_answered()
        [record] = await node.records(1)
        assert (record.answered_by, record.end_reason) == ("", "cancelled")


async def test_an_answer_after_the_members_turn_ended_is_hung_up_and_the_next_one_rings(
    node_factory: Any, peers: Any
) -> None:
    group = {"strategy": "sequential", "members": ["101", "102"], "member_ring_s": 1}
    node = await node_factory(config(group))
    slow, quick = await peers(Phone("101")), await peers(Phone("102"))
    for phone in (slow, quick):
        await node.register(phone)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    await slow.ringing()
    await slow.answers_cancel()  # its turn is over after 1 s
    await quick.ringing()
    slow.answer()  # too late: 101 answers its (already cancelled) INVITE anyway
    quick.answer()
    final = await carrier.final()

    assert final.status == 200
    carrier.bye()
    await quick.bye_answered()
    [record] = await node.records(1)
    assert record.answered_by == "102"
    assert [step.outcome for step in record.route if step.member == "101"] == [
        "ringing",
        "no-answer",
    ]


async def test_every_member_busy_gives_the_caller_busy_at_once(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101", "102"]}))
    anna, boris = await peers(Phone("101")), await peers(Phone("102"))
    for phone in (anna, boris):
        await node.register(phone)
    carrier = await peers(Carrier(node.address))
    loop = asyncio.get_running_loop()

    started = loop.time()
    carrier.invite()
    await asyncio.gather(anna.ringing(), boris.ringing())
    anna.reply(486)
    boris.reply(486)
    final = await carrier.final()

    assert final.status == 486
    assert loop.time() - started < 2  # not after the group's 3 s
    [record] = await node.records(1)
    assert record.end_reason == "busy"


async def test_a_dtmf_info_that_is_not_a_key_gets_400_and_a_good_one_chooses(
    node_factory: Any, peers: Any
) -> None:
    cfg = config({"strategy": "ring-all", "members": ["101"]})
    cfg = NodeConfig.model_validate(
        {
            **cfg.model_dump(mode="json"),
            "ivr_menus": [
                {
                    "name": "main",
                    "prompt": {"kind": "tone", "frequency_hz": 600, "duration_ms": 200},
                    "options": {"1": {"type": "user", "extension": "101"}},
                    "timeout_s": 10,
                }
            ],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": None,
                    "channels": 0,
                    "target": {"type": "ivr", "name": "main"},
                }
            ],
        }
    ).with_version()
    node = await node_factory(cfg)
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    assert (await carrier.final()).status == 200  # the menu answers
    bad = carrier.info("application/dtmf-relay", "Signal=x\r\nDuration=160\r\n")
    assert (await carrier.response_to(bad)).status == 400
    good = carrier.info("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n")
    assert (await carrier.response_to(good)).status == 200
    await anna.ringing()

"""Scripted SIP peers on loopback and an in-process media node, for call-logic tests.

A real node (SIP stack, relay, routing engine, Redis) runs in the test's event loop;
the peers stand in for phones, carriers and trunks and answer, ring, refuse or stay
silent exactly when a test says. Fixtures: ``node_factory`` (start a node from a
NodeConfig) and ``peers`` (open peers, closed after the test).
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
from vpbx_common.outbound import OutboundPolicy
from vpbx_media.cdr.spool import CdrSpool
from vpbx_media.edge.relayproof import RelayProofs
from vpbx_media.node.bindings import Binding, BindingStore
from vpbx_media.node.configsource import ConfigHolder
from vpbx_media.node.registrar import Authenticator
from vpbx_media.node.service import NodeIdentity, NodeService
from vpbx_media.rtp.ports import PortAllocator
from vpbx_media.sip.digest import (
    DigestAuthenticator,
    DigestChallenge,
    NonceService,
    build_credentials,
    preferred_challenge,
)
from vpbx_media.sip.headers import Via
from vpbx_media.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from vpbx_media.sip.transaction import Timers, TransactionLayer
from vpbx_media.sip.transport import SipTransport

HOST = "127.0.0.1"
NUMBER = "+74950000001"
# The edge secret of the harness: a Carrier "behind the edge" signs its INVITEs' Via as
# the edge would (vpbx_media.edge.relayproof), and the node checks it.
EDGE_SECRET = b"test-edge-secret"
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

    async def next_response(self, timeout: float = 5.0) -> SipResponse:
        """The next response, skipping requests."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if isinstance(message, SipResponse):
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

    def request(self, method: str, extra: str = "", seq: int = 20) -> None:
        """A request of this phone inside the dialog it answered (REFER, BYE...)."""
        assert self.invite is not None
        contact = (self.invite.headers.get("Contact") or "").strip("<>")
        to = self.invite.headers.get("From") or ""
        own = (self.invite.headers.get("To") or "") + f";tag={self.tag}"
        self.send(
            f"{method} {contact} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK-p-{next(_ids)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {own}\r\nTo: {to}\r\n"
            f"Call-ID: {self.invite.call_id}\r\nCSeq: {seq} {method}\r\n"
            f"Contact: <{self.contact}>\r\n{extra}Content-Length: 0\r\n\r\n",
            self.node,
        )

    async def notified(self) -> str:
        """The next NOTIFY's body (acknowledged with 200)."""
        notify = await self.next(method="NOTIFY")
        assert isinstance(notify, SipRequest)
        self.send(response_text(notify, 200, self.tag), self.node)
        return notify.body.decode()


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
    """The caller: INVITEs the node's number, ACKs, CANCELs and hangs up.

    By default it stands for a carrier behind the edge: its INVITE's top Via carries
    the edge's signed proof (``via_edge``). Without it, it is a trunk sending straight
    to the node (or a stranger). ``uri_user``/``to_user``: the Request-URI's and To's
    user (the number by default); ``caller``: From's; ``extra``: more header lines of
    the INVITE (P-Asserted-Identity, Privacy...).
    """

    def __init__(
        self,
        node: tuple[str, int],
        *,
        via_edge: bool = True,
        uri_user: str = NUMBER,
        to_user: str = NUMBER,
        caller: str = "+79130000001",
        extra: str = "",
        host: str = HOST,
    ) -> None:
        super().__init__("carrier")
        self.node = node
        self.via_edge = via_edge
        self.uri_user = uri_user
        self.to_user = to_user
        self.caller = caller
        self.extra = extra
        self.host = host
        self.call_id = f"carrier-{next(_ids)}@{HOST}"
        self.branch = f"z9hG4bK-carrier-{next(_ids)}"
        self.to_tag: str | None = None
        # The route set of the dialog: the 2xx's Record-Route reversed (an edge in the path).
        self.route: list[str] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def _via(self, branch: str, *, signed: bool = False) -> str:
        via = Via.parse(f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport")
        if signed:
            via = RelayProofs(EDGE_SECRET).sign(via, self.call_id)
        return str(via)

    def _head(
        self, method: str, seq: int, branch: str, to_tag: str | None = None, *, signed: bool = False
    ) -> str:
        to = f"<sip:{self.to_user}@{HOST}>" + (f";tag={to_tag}" if to_tag else "")
        routes = "".join(f"Route: {entry}\r\n" for entry in self.route) if to_tag else ""
        return (
            f"{method} sip:{self.uri_user}@{HOST} SIP/2.0\r\n"
            f"Via: {self._via(branch, signed=signed)}\r\n{routes}"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.caller}@{HOST}>;tag=carrier\r\nTo: {to}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {seq} {method}\r\n"
            f"Contact: <sip:carrier@{self.host}:{self.port}>\r\n"
        )

    def invite(self) -> None:
        body = sdp(self.port + 1000)
        head = self._head("INVITE", 1, self.branch, signed=self.via_edge)
        self.send(
            head
            + self.extra
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
                    if message.status < 300:
                        self.route = list(reversed(message.headers.values("Record-Route")))
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
            url_policy=OutboundPolicy(allow_private=True),  # peers on loopback, as in local mode
            relay_proofs=RelayProofs(EDGE_SECRET),
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


class Dialler(Peer):
    """A tenant phone placing a call: INVITE to the tenant's domain, answering the
    node's digest challenge with its password."""

    def __init__(self, extension: str, password: str, domain: str = "acme.test") -> None:
        super().__init__(f"dialler-{extension}")
        self.extension = extension
        self.password = password
        self.domain = domain
        self.call_id = f"dial-{next(_ids)}@{HOST}"
        self.to_tag: str | None = None
        self.seq = 1
        self.target = ""
        self.node: tuple[str, int] = (HOST, 0)
        self.extra = ""

    def _head(self, method: str, seq: int, branch: str, to_tag: str | None = None) -> str:
        to = f"<sip:{self.target}@{self.domain}>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"{method} sip:{self.target}@{self.domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.extension}@{self.domain}>;tag=dialler-{self.extension}\r\n"
            f"To: {to}\r\nCall-ID: {self.call_id}\r\nCSeq: {seq} {method}\r\n"
            f"Contact: <sip:{self.extension}@{HOST}:{self.port}>\r\n"
        )

    def _invite(self, authorization: str = "") -> None:
        body = sdp(self.port + 1000)
        head = self._head("INVITE", self.seq, f"z9hG4bK-d-{next(_ids)}")
        self.send(
            head
            + authorization
            + self.extra
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
            + body.decode(),
            self.node,
        )

    async def dial(self, node: tuple[str, int], target: str, *, extra: str = "") -> None:
        """INVITE ``target``; answers the 407 with credentials (the call then goes on)."""
        self.node, self.target, self.extra = node, target, extra
        self._invite()
        response = await self.final(ack=True)
        assert response.status == 407, f"expected a challenge, got {response.status}"
        challenges = [
            DigestChallenge.parse(value) for value in response.headers.values("Proxy-Authenticate")
        ]
        credentials = build_credentials(
            preferred_challenge(challenges),
            self.extension,
            self.password,
            "INVITE",
            f"sip:{target}@{self.domain}",
        )
        self.seq += 1
        self._invite(f"Proxy-Authorization: {credentials}\r\n")

    async def final(self, timeout: float = 10.0, *, ack: bool = True) -> SipResponse:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if (
                    isinstance(message, SipResponse)
                    and message.cseq.method == "INVITE"
                    and message.status >= 200
                ):
                    if ack:
                        self.to_tag = message.to.tag
                        branch = f"z9hG4bK-ack-{next(_ids)}"
                        if message.status >= 300:
                            via = message.headers.values("Via")[0]
                            branch = via.split("branch=", 1)[1].split(";", 1)[0]
                        ack_head = self._head("ACK", message.cseq.seq, branch, self.to_tag)
                        self.send(ack_head + "Content-Length: 0\r\n\r\n", self.node)
                    return message

    def bye(self) -> None:
        self.seq += 1
        head = self._head("BYE", self.seq, f"z9hG4bK-{next(_ids)}", self.to_tag)
        self.send(head + "Content-Length: 0\r\n\r\n", self.node)


class Trunk(Peer):
    """A carrier's SIP trunk: takes the node's INVITEs and answers as a test says."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.invites: list[SipRequest] = []
        self.tag = f"trunk-{name}-{next(_ids)}"

    async def invite(self, timeout: float = 5.0) -> SipRequest:
        invite = await self.next(method="INVITE", timeout=timeout)
        assert isinstance(invite, SipRequest)
        self.invites.append(invite)
        return invite

    def reply(self, invite: SipRequest, status: int, *, extra: str = "", body: bytes = b"") -> None:
        contact = f"Contact: <sip:callee@{HOST}:{self.port}>\r\n" if status < 300 else ""
        self.send(response_text(invite, status, self.tag, contact + extra, body), self.last_from)

    def answer(self, invite: SipRequest) -> None:
        self.reply(invite, 200, body=sdp(self.port + 1000))

    async def bye_answered(self) -> None:
        bye = await self.next(method="BYE")
        assert isinstance(bye, SipRequest)
        self.send(response_text(bye, 200, self.tag), self.last_from)

    def hang_up(self, invite: SipRequest) -> None:
        """BYE on the dialog this trunk answered (the callee hangs up)."""
        to = invite.headers.get("To") or ""
        head = (
            f"BYE {(invite.headers.get('Contact') or '').strip('<>') or invite.uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK-t-{next(_ids)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {to};tag={self.tag}\r\nTo: {invite.headers.get('From')}\r\n"
            f"Call-ID: {invite.call_id}\r\nCSeq: 50 BYE\r\nContent-Length: 0\r\n\r\n"
        )
        self.send(head, self.last_from)

"""Scripted SIP peers on loopback and an in-process media node, for call-logic tests.

A real node (SIP stack, relay, routing engine, Redis) runs in the test's event loop;
the peers stand in for phones, carriers and trunks and answer, ring, refuse or stay
silent exactly when a test says. Fixtures: ``node_factory`` (start a node from a
NodeConfig) and ``peers`` (open peers, closed after the test).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as redis

from tests.services.ports import free_port_block
from vpbx_common.cdr import CallRecord
from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.outbound import OutboundPolicy
from vpbx_media.cdr.spool import CdrSpool
from vpbx_media.edge.relayproof import RelayProofs
from vpbx_media.media.dtmf import TelephoneEvent
from vpbx_media.media.g711 import Codec
from vpbx_media.node.bindings import Binding, BindingStore
from vpbx_media.node.configsource import ConfigHolder
from vpbx_media.node.registrar import Authenticator
from vpbx_media.node.service import NodeIdentity, NodeService
from vpbx_media.rtp.packet import RtpPacket
from vpbx_media.rtp.ports import PortAllocator
from vpbx_media.sdp import SessionDescription, media_endpoint
from vpbx_media.sip.digest import (
    DigestAuthenticator,
    DigestChallenge,
    NonceService,
    build_credentials,
    preferred_challenge,
)
from vpbx_media.sip.headers import NameAddr, Via
from vpbx_media.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from vpbx_media.sip.transaction import Timers, TransactionLayer
from vpbx_media.sip.transport import SipTransport
from vpbx_media.sip.uri import SipUri

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


def sdp(port: int, codec: str = "PCMU") -> bytes:
    payload_type = {"PCMU": 0, "PCMA": 8}[codec]
    return (
        f"v=0\r\no=peer 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {payload_type} 101\r\na=rtpmap:{payload_type} {codec}/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


def with_devices(cfg: NodeConfig, passwords: dict[str, str]) -> NodeConfig:
    """``cfg`` with a SIP device per extension (username = extension) and its password."""
    document = cfg.model_dump(mode="json")
    realm = cfg.sip_domain
    document["devices"] = [
        {
            "username": extension,
            "extension": extension,
            "ha1_md5": hashlib.md5(f"{extension}:{realm}:{password}".encode()).hexdigest(),
            "ha1_sha256": hashlib.sha256(f"{extension}:{realm}:{password}".encode()).hexdigest(),
        }
        for extension, password in passwords.items()
    ]
    return NodeConfig.model_validate(document).with_version()


class RtpMedia(asyncio.DatagramProtocol):
    """A phone's RTP socket: keeps what it receives (with the loop time), sends RTP of one
    stream of its own (audio in ``codec``, RFC 4733 keys as payload type 101)."""

    EVENT_PAYLOAD_TYPE = 101

    def __init__(self, codec: Codec = Codec.PCMU) -> None:
        self.codec = codec
        self.received: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((asyncio.get_running_loop().time(), data))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, to: tuple[str, int], payload_type: int, payload: bytes, marker: bool) -> None:
        assert self.transport is not None
        packet = RtpPacket(
            payload_type, self._seq, self._timestamp, self.ssrc, payload, marker=marker
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self.transport.sendto(bytes(packet), to)

    def send_frame(self, to: tuple[str, int], payload: bytes, *, marker: bool = False) -> None:
        """One frame of audio; the stream's clock moves on by its length."""
        self._send(to, self.codec.payload_type, payload, marker)
        self._timestamp = (self._timestamp + len(payload)) & 0xFFFFFFFF

    async def send_key(self, to: tuple[str, int], digit: str) -> None:
        """One key as RFC 4733 events (start, one update, the end three times), paced."""
        packets = [
            TelephoneEvent.for_digit(digit, duration=160),
            TelephoneEvent.for_digit(digit, duration=320),
            *[TelephoneEvent.for_digit(digit, end=True, duration=480)] * 3,
        ]
        for index, event in enumerate(packets):
            self._send(to, self.EVENT_PAYLOAD_TYPE, bytes(event), index == 0)
            await asyncio.sleep(0.02)
        self._timestamp = (self._timestamp + 480) & 0xFFFFFFFF

    def packets(self, since: float = 0.0) -> list[RtpPacket]:
        return [RtpPacket.parse(data) for at, data in self.received if at >= since]


def tone_frames(hz: float, frames: int, codec: Codec, amplitude: float = 6000.0) -> list[bytes]:
    """``frames`` 20 ms payloads of a continuous sine in ``codec``."""
    n = np.arange(frames * 160)
    pcm = np.round(amplitude * np.sin(2 * np.pi * hz * n / 8000)).astype(np.int16)
    codes = codec.encode(pcm.tobytes())
    return [codes[i * 160 : (i + 1) * 160] for i in range(frames)]


def band_shares(packets: list[RtpPacket], frequencies: list[float]) -> dict[float, float]:
    """Each frequency's share (+-15 Hz) of the energy of the audio in ``packets`` (one
    stream, in sequence order; Hann window)."""
    codec = Codec.from_payload_type(packets[0].payload_type)
    first = packets[0].sequence_number
    ordered = sorted(packets, key=lambda p: (p.sequence_number - first) & 0xFFFF)
    codes = b"".join(packet.payload for packet in ordered)
    pcm = np.frombuffer(codec.decode(codes).tobytes(), dtype=np.int16).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    bins = np.fft.rfftfreq(len(pcm), 1 / 8000)
    total = float(spectrum.sum())
    assert total > 0, "nothing but digital silence received"
    return {
        hz: float(spectrum[(bins > hz - 15) & (bins < hz + 15)].sum()) / total for hz in frequencies
    }


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
        """The next final response, skipping requests and provisional answers."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if isinstance(message, SipResponse) and message.status >= 200:
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

    async def ringing(self, timeout: float = 5.0) -> SipRequest:
        invite = await self.next(method="INVITE", timeout=timeout)
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

    def request(self, method: str, extra: str = "", seq: int = 20, body: bytes = b"") -> None:
        """A request of this phone inside the dialog it answered (REFER, BYE, re-INVITE)."""
        assert self.invite is not None
        contact = (self.invite.headers.get("Contact") or "").strip("<>")
        to = self.invite.headers.get("From") or ""
        own = (self.invite.headers.get("To") or "") + f";tag={self.tag}"
        self.send(
            f"{method} {contact} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK-p-{next(_ids)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {own}\r\nTo: {to}\r\n"
            f"Call-ID: {self.invite.call_id}\r\nCSeq: {seq} {method}\r\n"
            f"Contact: <{self.contact}>\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
            + body.decode(),
            self.node,
        )

    def answer_request(self, request: SipRequest, status: int = 200, body: bytes = b"") -> None:
        """Answer an in-dialog request from the node (a re-INVITE, a NOTIFY)."""
        extra = f"Contact: <{self.contact}>\r\n" if request.method == "INVITE" else ""
        self.send(response_text(request, status, self.tag, extra, body), self.node)

    async def notified(self) -> str:
        """The next NOTIFY's body (acknowledged with 200)."""
        notify = await self.next(method="NOTIFY")
        assert isinstance(notify, SipRequest)
        self.send(response_text(notify, 200, self.tag), self.node)
        return notify.body.decode()


class WebSocketPhone(Phone):
    """The SIP side of a browser: a device whose Contact says ;transport=ws, as JsSIP
    registers through the edge's WebSocket transport; its SIP rides UDP here (straight
    to a node, or through the edge), its media is a `Browser`."""

    domain = "acme.test"
    _seq = 0

    # Straight to a node (no edge), the phone is its own edge: a `transport=ws` Contact is
    # only reachable through a Path (the node has no WebSocket; vpbx_media.sip.transport.
    # flow_to), so it registers a Path naming its own UDP address.
    own_path = False

    @property
    def contact(self) -> str:
        return f"sip:{self.extension}@{HOST}:{self.port};transport=ws"

    @property
    def path(self) -> tuple[str, ...]:
        return (f"<sip:{HOST}:{self.port};lr>",) if self.own_path else ()

    def reply(self, status: int, *, body: bytes = b"") -> None:
        """As Phone.reply, with the INVITE's Record-Route copied into the answer (RFC
        3261 12.1.1): behind the edge, the node's ACK and BYE then come through it."""
        assert self.invite is not None
        extra = f"Contact: <{self.contact}>\r\n" if status < 300 else ""
        if 100 < status < 300:
            # Its own edge (own_path): in-dialog requests come back through it too.
            routes = [*self.path, *self.invite.headers.values("Record-Route")]
            extra += "".join(f"Record-Route: {route}\r\n" for route in routes)
        self.send(response_text(self.invite, status, self.tag, extra, body), self.node)

    def _register(
        self, node: tuple[str, int], seq: int, authorization: str = "", expires: int = 600
    ) -> None:
        domain = self.domain
        paths = "".join(f"Path: {entry}\r\n" for entry in self.path)
        self.send(
            f"REGISTER sip:{domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK-r{seq}-{self.port};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.extension}@{domain}>;tag=reg-{self.port}\r\n"
            f"To: <sip:{self.extension}@{domain}>\r\n"
            f"Call-ID: reg-{self.port}@{HOST}\r\nCSeq: {seq} REGISTER\r\n"
            f"Contact: <{self.contact}>;expires={expires}\r\n"
            f"{paths}"
            f"{authorization}User-Agent: JsSIP 3.10.1\r\nContent-Length: 0\r\n\r\n",
            node,
        )

    async def register(
        self, node: tuple[str, int], password: str, domain: str, expires: int = 600
    ) -> None:
        """REGISTER with digest, as JsSIP does (its Contact says ;transport=ws);
        ``expires=0`` unregisters."""
        self.domain = domain
        self._seq += 1
        self._register(node, self._seq, expires=expires)
        challenged = await self.next_response(timeout=15.0)
        assert challenged.status == 401
        challenge = preferred_challenge(
            [DigestChallenge.parse(v) for v in challenged.headers.values("WWW-Authenticate")]
        )
        credentials = build_credentials(
            challenge, self.extension, password, "REGISTER", f"sip:{domain}"
        )
        self._seq += 1
        self._register(node, self._seq, f"Authorization: {credentials}\r\n", expires)
        registered = await self.next_response(timeout=15.0)
        assert registered.status == 200


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


def shown_number(message: SipRequest, header: str) -> str | None:
    """The number in a From, To or P-Asserted-Identity header (a SIP URI's user)."""
    value = message.headers.get(header)
    if value is None:
        return None
    uri = NameAddr.parse(value).uri
    return uri.user if isinstance(uri, SipUri) else None


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

    async def bye_answered(self, timeout: float = 10.0) -> SipRequest:
        """The node hangs up on the caller: its BYE, answered 200."""
        bye = await self.next(method="BYE", timeout=timeout)
        assert isinstance(bye, SipRequest)
        self.send(response_text(bye, 200, "carrier"), self.node)
        return bye

    def bye(self, seq: int = 2) -> None:
        """BYE; ``seq`` above any CSeq sent in the dialog before (an INFO's)."""
        head = self._head("BYE", seq, f"z9hG4bK-{next(_ids)}", self.to_tag)
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
                path=getattr(phone, "path", ()),
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

    async def start(cfg: NodeConfig, **services: Any) -> Node:
        """A node on ``cfg``; ``services``: more of NodeService's keyword arguments (a CRM
        lookup client, an event publisher...)."""
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
            **services,
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
    opened: list[Peer | RtpMedia] = []

    async def make(peer: Peer | RtpMedia) -> Any:
        await peer.open()
        opened.append(peer)
        return peer

    yield make
    for peer in opened:
        peer.close()


class Dialler(Peer):
    """A tenant phone placing a call: INVITE to the tenant's domain, answering the
    node's digest challenge with its password."""

    def __init__(
        self,
        extension: str,
        password: str,
        domain: str = "acme.test",
        *,
        media: RtpMedia | None = None,
    ) -> None:
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
        # With a media socket the SDP offers its port (and its codec): the phone talks.
        self.media = media
        self.answer_body = b""  # the SDP of the 200 OK (or 183) the node sent

    @property
    def node_media(self) -> tuple[str, int]:
        """Where the node wants this phone's RTP (from its answer)."""
        endpoint = media_endpoint(SessionDescription.parse(self.answer_body))
        return endpoint.ip, endpoint.rtp_port

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
        if self.media is not None:
            body = sdp(self.media.port, self.media.codec.value)
        else:
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
                if isinstance(message, SipResponse) and message.body:
                    self.answer_body = message.body
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

    async def bye_answered(self) -> None:
        bye = await self.next(method="BYE")
        assert isinstance(bye, SipRequest)
        self.send(response_text(bye, 200, f"dialler-{self.extension}"), self.node)

    def bye(self) -> None:
        self.seq += 1
        head = self._head("BYE", self.seq, f"z9hG4bK-{next(_ids)}", self.to_tag)
        self.send(head + "Content-Length: 0\r\n\r\n", self.node)

    def info(self, digit: str) -> int:
        """A key as an in-dialog INFO (application/dtmf-relay); its CSeq number."""
        self.seq += 1
        body = f"Signal={digit}\r\nDuration=160\r\n"
        head = self._head("INFO", self.seq, f"z9hG4bK-{next(_ids)}", self.to_tag)
        self.send(
            head
            + f"Content-Type: application/dtmf-relay\r\nContent-Length: {len(body)}\r\n\r\n"
            + body,
            self.node,
        )
        return self.seq

    async def response_to(self, seq: int, timeout: float = 5.0) -> SipResponse:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if isinstance(message, SipResponse) and message.cseq.seq == seq:
                    return message


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


class TonePeer(asyncio.DatagramProtocol):
    """A phone's media: sends a PCMU tone in paced 20 ms RTP packets to where its call's
    SDP says, and keeps the payloads it receives (to tell which tones it hears)."""

    def __init__(self, port: int, hz: float) -> None:
        self.port = port
        self.hz = hz
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(HOST, self.port)
        )
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[1] & 0x7F in (0, 8):
            self.received.append(data[12:] if data[1] & 0x7F == 0 else b"")

    def talk_to(self, sdp_body: bytes) -> None:
        """Start sending the tone to the audio address of ``sdp_body``."""
        text = sdp_body.decode()
        address = text.split("c=IN IP4 ", 1)[1].split()[0]
        port = int(text.split("m=audio ", 1)[1].split()[0])
        self._task = asyncio.get_running_loop().create_task(self._send((address, port)))

    async def _send(self, target: tuple[str, int]) -> None:
        samples = np.arange(160 * 500)
        pcm = np.round(6000 * np.sin(2 * np.pi * self.hz * samples / 8000)).astype(np.int16)
        codes = Codec.PCMU.encode(pcm.tobytes())
        loop = asyncio.get_running_loop()
        start = loop.time()
        for frame in range(500):
            header = bytes([0x80, 0, (frame >> 8) & 0xFF, frame & 0xFF])
            header += (frame * 160).to_bytes(4, "big") + (0x1234 + self.port).to_bytes(4, "big")
            assert self.transport is not None
            self.transport.sendto(header + codes[frame * 160 : (frame + 1) * 160], target)
            await asyncio.sleep(max(0.0, start + (frame + 1) * 0.02 - loop.time()))

    def shares(self, frequencies: list[float], last_packets: int = 40) -> dict[float, float]:
        """Each frequency's share of the energy of the last packets received."""
        payload = b"".join(p for p in self.received[-last_packets:] if p)
        assert payload, "nothing received"
        pcm = np.frombuffer(Codec.PCMU.decode(payload).tobytes(), dtype=np.int16).astype(float)
        spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
        bins = np.fft.rfftfreq(len(pcm), 1 / 8000)
        total = float(spectrum.sum()) or 1.0
        return {
            hz: float(spectrum[(bins > hz - 15) & (bins < hz + 15)].sum()) / total
            for hz in frequencies
        }

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()

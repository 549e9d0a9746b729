"""SIP over WebSocket (RFC 7118) at the edge: the listener, its flows and their tokens.

Real sockets on loopback throughout: an aiohttp WebSocket client (what a browser's
JsSIP does, tests/services/sipws.py) against the edge's listener; for the edge, a
scripted UDP peer stands in for the tenant node and sees what the node would.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from tests.services.ports import free_port_pair
from tests.services.sippeers import HOST, Peer, response_text
from tests.services.sipws import SipWsClient

from vpbx_common.routing import DomainRoute, NumberRoute
from vpbx_media.edge.flowtoken import EdgeToken, EdgeTokens
from vpbx_media.edge.proxy import EDGE_ROUTE_PARAM, EdgeProxy
from vpbx_media.runtime import sip_stack
from vpbx_media.settings import EdgeSettings
from vpbx_media.sip.headers import NameAddr, Via
from vpbx_media.sip.message import SipMessage, SipRequest, SipResponse, make_response
from vpbx_media.sip.transport import (
    Address,
    Flow,
    SipTransport,
    TransportError,
    TransportKind,
    flow_to,
)
from vpbx_media.sip.uri import SipUri
from vpbx_media.sip.websocket import WebSocketListener, ssl_context_from

WAIT = 5.0
SECRET = b"test-ws-secret"


def options(host: str = "x1.invalid", *, length: bool = True) -> str:
    text = (
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/WS {host};branch=z9hG4bKws1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@acme.test>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
        "Call-ID: ws-options-1\r\nCSeq: 1 OPTIONS\r\n"
    )
    return text + ("Content-Length: 0\r\n\r\n" if length else "\r\n")


class QueueSink:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[SipMessage, Flow]] = asyncio.Queue()

    def on_message(self, message: SipMessage, flow: Flow) -> None:
        self.messages.put_nowait((message, flow))

    async def next(self) -> tuple[SipMessage, Flow]:
        return await asyncio.wait_for(self.messages.get(), WAIT)


# --- flow tokens ------------------------------------------------------------


def test_a_websocket_token_names_its_connection() -> None:
    tokens = EdgeTokens(SECRET)
    node = Address("10.0.0.5", 5070)
    flow = Flow(TransportKind.WS, Address("127.0.0.1", 40000), 123456789)
    decoded = tokens.decode(tokens.encode(EdgeToken(flow, node)))
    assert decoded == EdgeToken(flow, node)
    # The next connection from the same address and port gets another token.
    later = Flow(TransportKind.WS, Address("127.0.0.1", 40000), 987654321)
    assert tokens.encode(EdgeToken(later, node)) != tokens.encode(EdgeToken(flow, node))
    # TCP tokens stay as they were: the address only.
    tcp = Flow(TransportKind.TCP, Address("127.0.0.1", 40000), 7)
    assert tokens.decode(tokens.encode(EdgeToken(tcp, node))) == EdgeToken(
        Flow(TransportKind.TCP, tcp.remote), node
    )


def test_a_forged_websocket_token_is_refused() -> None:
    tokens = EdgeTokens(SECRET)
    flow = Flow(TransportKind.WSS, Address("127.0.0.1", 40000), 42)
    text = tokens.encode(EdgeToken(flow, Address("10.0.0.5", 5070)))
    assert EdgeTokens(b"another-secret").decode(text) is None
    assert tokens.decode(text[:-2] + ("aa" if text[-2:] != "aa" else "bb")) is None


def test_a_ws_contact_is_no_udp_target() -> None:
    """A browser's Contact is reachable through the edge only: never UDP to `.invalid`."""
    flow = flow_to(SipUri.parse("sip:abc@df7jal23ls0d.invalid;transport=ws"))
    assert flow.transport is TransportKind.WS
    assert flow.connection_id is None


# --- the listener -----------------------------------------------------------


ListenerFactory = Callable[..., Awaitable[tuple[SipTransport, WebSocketListener, QueueSink]]]


@pytest.fixture
async def listener_factory() -> AsyncIterator[ListenerFactory]:
    started: list[tuple[SipTransport, WebSocketListener]] = []

    async def start(**options: object) -> tuple[SipTransport, WebSocketListener, QueueSink]:
        sink = QueueSink()
        transport = SipTransport(HOST, 0, sink)
        await transport.start()
        listener = WebSocketListener(transport, HOST, 0, **options)  # type: ignore[arg-type]
        await listener.start()
        started.append((transport, listener))
        return transport, listener, sink

    yield start
    for transport, listener in started:
        await listener.stop()
        await transport.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def url(listener: WebSocketListener) -> str:
    return f"ws://{HOST}:{listener.port}/"


async def received_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    frame = await ws.receive(timeout=WAIT)
    assert frame.type is aiohttp.WSMsgType.TEXT, frame
    return str(frame.data)


async def test_a_message_arrives_on_its_connection_and_the_answer_goes_back(
    listener_factory: ListenerFactory, session: aiohttp.ClientSession
) -> None:
    transport, listener, sink = await listener_factory()
    async with session.ws_connect(url(listener), protocols=("sip",)) as ws:
        assert ws.protocol == "sip"
        await ws.send_str(options())
        message, flow = await sink.next()
        assert isinstance(message, SipRequest)
        assert flow.transport is TransportKind.WS
        assert flow.connection_id is not None
        local = ws.get_extra_info("sockname")
        assert flow.remote == Address(local[0], local[1])
        # The Via names a made-up host: the answer goes over the connection regardless.
        transport.send_bytes(bytes(make_response(message, 200)), flow)
        assert (await received_text(ws)).startswith("SIP/2.0 200 ")
        # Binary frames and frames without Content-Length are messages too.
        await ws.send_bytes(options(length=False).encode())
        message, again = await sink.next()
        assert isinstance(message, SipRequest)
        assert again == flow
    await _until(lambda: not transport.has_flow(flow))
    with pytest.raises(TransportError):
        transport.send_bytes(b"SIP/2.0 200 OK\r\n\r\n", flow)


async def _until(condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_a_handshake_without_the_sip_subprotocol_is_refused(
    listener_factory: ListenerFactory, session: aiohttp.ClientSession
) -> None:
    _, listener, _ = await listener_factory()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(url(listener))
    assert refused.value.status == 400
    with pytest.raises(aiohttp.WSServerHandshakeError) as other:
        await session.ws_connect(url(listener), protocols=("chat",))
    assert other.value.status == 400
    async with session.get(url(listener)) as plain:
        assert plain.status == 426
    assert listener.refused == 3


async def test_bad_frames_do_not_take_the_listener_down(
    listener_factory: ListenerFactory, session: aiohttp.ClientSession
) -> None:
    transport, listener, sink = await listener_factory(max_message_size=4096)
    async with (
        session.ws_connect(url(listener), protocols=("sip",)) as bystander,
        session.ws_connect(url(listener), protocols=("sip",)) as attacker,
    ):
        await attacker.send_str("hello, not SIP")
        await attacker.send_bytes(b"\xff\xfe\x00garbage")
        # The essential headers are readable: a 400 comes back (RFC 3261 8.2).
        await attacker.send_str(options().replace("SIP/2.0\r\n", "SIP/2.0\r\nCSeq: x\r\n", 1))
        assert (await received_text(attacker)).startswith("SIP/2.0 400 ")
        assert transport.malformed_count == 3
        # Still connected and served.
        await attacker.send_str(options())
        message, _ = await sink.next()
        assert isinstance(message, SipRequest)
        # A frame over the limit closes that connection (1009), not the others.
        await attacker.send_str(options() + "x" * 5000)
        closing = await attacker.receive(timeout=WAIT)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await bystander.send_str(options())
        message, flow = await sink.next()
        transport.send_bytes(bytes(make_response(message, 200)), flow)
        assert (await received_text(bystander)).startswith("SIP/2.0 200 ")


async def test_connections_per_source_are_capped(
    listener_factory: ListenerFactory, session: aiohttp.ClientSession
) -> None:
    admitted: list[str] = []

    def admit(host: str) -> bool:
        admitted.append(host)
        return True

    _, listener, _ = await listener_factory(max_per_source=2, admit=admit)
    async with (
        session.ws_connect(url(listener), protocols=("sip",)),
        session.ws_connect(url(listener), protocols=("sip",)),
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url(listener), protocols=("sip",))
        assert refused.value.status == 503
    assert admitted == [HOST, HOST]
    # Once closed, the address may connect again.
    await _until(lambda: listener.connections_from(HOST) == 0)
    async with session.ws_connect(url(listener), protocols=("sip",)) as ws:
        assert ws.protocol == "sip"

    def flooded(host: str) -> bool:
        return False

    listener.admit = flooded
    with pytest.raises(aiohttp.WSServerHandshakeError) as flood:
        await session.ws_connect(url(listener), protocols=("sip",))
    assert flood.value.status == 503


async def test_stopping_closes_the_connections_as_going_away(
    listener_factory: ListenerFactory, session: aiohttp.ClientSession
) -> None:
    transport, listener, _ = await listener_factory()
    async with session.ws_connect(url(listener), protocols=("sip",)) as ws:
        await _until(lambda: transport.accepted_count() == 1)
        await listener.stop()
        closing = await ws.receive(timeout=WAIT)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.GOING_AWAY
    assert transport.accepted_count() == 0


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_with_a_certificate_the_listener_speaks_wss(
    listener_factory: ListenerFactory,
    session: aiohttp.ClientSession,
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_context = ssl_context_from(str(cert), str(key))
    transport, listener, sink = await listener_factory(ssl_context=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    wss = f"wss://{HOST}:{listener.port}/"
    async with session.ws_connect(wss, protocols=("sip",), ssl=client_context) as ws:
        await ws.send_str(options())
        message, flow = await sink.next()
        assert flow.transport is TransportKind.WSS
        transport.send_bytes(bytes(make_response(message, 200)), flow)
        assert (await received_text(ws)).startswith("SIP/2.0 200 ")
    assert listener.scheme == "wss"
    with pytest.raises(ValueError, match="both"):
        ssl_context_from(str(cert), None)
    assert ssl_context_from(None, None) is None


# --- the edge ---------------------------------------------------------------


class Routes:
    """acme.test's users live on one node; no numbers."""

    def __init__(self, node: tuple[str, int]) -> None:
        self.route = DomainRoute(
            domain="acme.test",
            tenant="acme",
            nodes={"msk": f"{node[0]}:{node[1]}"},
            default_city="msk",
        )

    async def lookup_number_from(self, e164: str, source: str) -> tuple[NumberRoute | None, bool]:
        return None, False

    async def lookup_domain_user(
        self, domain: str, username: str | None
    ) -> tuple[DomainRoute | None, str | None]:
        return (self.route if domain == "acme.test" else None), None


class Edge:
    def __init__(self, proxy: EdgeProxy, listener: WebSocketListener) -> None:
        self.proxy = proxy
        self.listener = listener

    @property
    def sip(self) -> tuple[str, int]:
        return HOST, self.proxy.transport.port

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.listener.port}/"


@pytest.fixture
async def edge_with_node() -> AsyncIterator[tuple[Edge, Peer]]:
    node = Peer("node")
    await node.open()
    settings = EdgeSettings(sip_host=HOST, sip_port=free_port_pair(), sip_t1=0.05)
    transport, layer_factory = sip_stack(settings)
    proxy = EdgeProxy(transport, layer_factory, Routes((HOST, node.port)), EdgeTokens(SECRET))
    await transport.start()
    listener = WebSocketListener(transport, HOST, 0)
    await listener.start()
    try:
        yield Edge(proxy, listener), node
    finally:
        await listener.stop()
        await proxy.stop()
        await transport.stop()
        node.close()


def node_invite(node: Peer, register: SipRequest, call: str) -> str:
    """What the node sends to a binding: Request-URI the Contact, Route the Path."""
    contact = NameAddr.parse(register.headers.values("Contact")[0]).uri
    routes = "".join(f"Route: {path}\r\n" for path in register.headers.values("Path"))
    body = "v=0\r\n"
    return (
        f"INVITE {contact} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{node.port};branch=z9hG4bK-{call};rport\r\n"
        f"{routes}Max-Forwards: 70\r\n"
        f"From: <sip:+79130000001@acme.test>;tag=n-{call}\r\nTo: <sip:101@acme.test>\r\n"
        f"Call-ID: {call}@node\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:node@{HOST}:{node.port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


async def test_a_browser_registers_and_is_called_over_its_websocket(
    edge_with_node: tuple[Edge, Peer],
) -> None:
    edge, node = edge_with_node
    browser = SipWsClient(edge.ws_url, "101", "secret", "acme.test")
    await browser.connect()
    try:
        registering = asyncio.create_task(browser.register())
        register = await node.next(method="REGISTER")
        assert isinstance(register, SipRequest)
        # The node sees the browser's own Contact, transport=ws and all.
        assert register.headers.values("Contact")[0].startswith(f"<{browser.contact}>")
        assert Via.parse(register.headers.values("Via")[0]).transport == "UDP"
        (path,) = register.headers.values("Path")
        path_uri = NameAddr.parse(path).uri
        assert isinstance(path_uri, SipUri)
        assert path_uri.port == edge.proxy.transport.port
        token = EdgeTokens(SECRET).decode(path_uri.param(EDGE_ROUTE_PARAM) or "")
        assert token is not None
        assert token.outside.transport is TransportKind.WS
        assert token.outside.connection_id is not None
        node.send(response_text(register, 200, "reg"), node.last_from)
        assert (await asyncio.wait_for(registering, WAIT)).status == 200

        node.send(node_invite(node, register, "call1"), edge.sip)
        invite = await browser.wait_invite(timeout=WAIT)
        # Double Record-Route: the browser's entry names the WebSocket, the node's UDP.
        outward, inward = (NameAddr.parse(v).uri for v in invite.headers.values("Record-Route"))
        assert isinstance(outward, SipUri)
        assert isinstance(inward, SipUri)
        assert (outward.transport, outward.port) == ("ws", edge.listener.port)
        assert (inward.transport, inward.port) == ("udp", edge.proxy.transport.port)
        await browser.answer(invite, rtp_port=40000)
        answered = await node.next_response()
        assert answered.status == 200
        assert answered.headers.values("Record-Route") == invite.headers.values("Record-Route")

        # The browser hangs up through its route set; the node gets the BYE.
        bye_done = asyncio.create_task(browser.bye())
        bye = await node.next(method="BYE")
        assert isinstance(bye, SipRequest)
        node.send(response_text(bye, 200, "n-call1"), node.last_from)
        assert (await asyncio.wait_for(bye_done, WAIT)).status == 200
    finally:
        await browser.close()

    # The connection is gone: the node calling the binding learns at once.
    await _until(lambda: edge.proxy.transport.accepted_count() == 0)
    node.send(node_invite(node, register, "call2"), edge.sip)
    gone = await node.next_response()
    assert isinstance(gone, SipResponse)
    assert gone.status == 480


async def test_a_stray_2xx_reaches_the_browser_by_its_token(
    edge_with_node: tuple[Edge, Peer],
) -> None:
    """The node retransmits its 200 for the browser's INVITE until the ACK: the copies
    the edge's transaction no longer takes go over the WebSocket, not to `.invalid`."""
    edge, node = edge_with_node
    browser = SipWsClient(edge.ws_url, "101", "secret", "acme.test")
    await browser.connect()
    try:
        calling = asyncio.create_task(browser.invite("sip:102@acme.test", rtp_port=40002))
        invite = await node.next(method="INVITE")
        assert isinstance(invite, SipRequest)
        assert Via.parse(invite.headers.values("Via")[1]).transport == "WS"
        ok = response_text(
            invite,
            200,
            "n-out",
            extra="".join(f"Record-Route: {rr}\r\n" for rr in invite.headers.values("Record-Route"))
            + f"Contact: <sip:node@{HOST}:{node.port}>\r\n",
        )
        node.send(ok, node.last_from)
        final = await asyncio.wait_for(calling, WAIT)
        assert final.status == 200
        ack = await node.next(method="ACK")
        assert isinstance(ack, SipRequest)
        node.send(ok, node.last_from)  # a retransmission: no transaction wants it
        again = await browser.next(cseq_method="INVITE", timeout=WAIT)
        assert isinstance(again, SipResponse)
        assert again.status == 200
    finally:
        await browser.close()


async def test_a_browser_cannot_reach_another_through_its_route(
    edge_with_node: tuple[Edge, Peer],
) -> None:
    edge, node = edge_with_node
    victim = SipWsClient(edge.ws_url, "101", "secret", "acme.test")
    thief = SipWsClient(edge.ws_url, "102", "secret", "acme.test")
    await victim.connect()
    await thief.connect()
    try:
        registering = asyncio.create_task(victim.register())
        register = await node.next(method="REGISTER")
        assert isinstance(register, SipRequest)
        node.send(response_text(register, 200, "reg"), node.last_from)
        assert (await asyncio.wait_for(registering, WAIT)).status == 200
        # The victim's Path, copied into a Route by another browser.
        await thief.send(node_invite(node, register, "stolen"))
        refused = await thief.final_response("INVITE", timeout=WAIT)
        assert refused.status == 403
        assert not [m for m in victim.received if isinstance(m, SipRequest)]
    finally:
        await victim.close()
        await thief.close()


async def test_with_several_replicas_the_path_names_this_edge_pod(
    edge_with_node: tuple[Edge, Peer],
) -> None:
    """Behind one Service, a node reaching the browser's Path must land on the replica
    holding its WebSocket: the Path names the pod's own address."""
    edge, node = edge_with_node
    edge.proxy.pod_host = "10.1.2.3"
    browser = SipWsClient(edge.ws_url, "101", "secret", "acme.test")
    await browser.connect()
    try:
        registering = asyncio.create_task(browser.register())
        register = await node.next(method="REGISTER")
        assert isinstance(register, SipRequest)
        (path,) = register.headers.values("Path")
        path_uri = NameAddr.parse(path).uri
        assert isinstance(path_uri, SipUri)
        assert (path_uri.host, path_uri.port) == ("10.1.2.3", edge.proxy.transport.port)
        node.send(response_text(register, 200, "reg"), node.last_from)
        assert (await asyncio.wait_for(registering, WAIT)).status == 200
    finally:
        await browser.close()

"""SIP transports on real loopback sockets: UDP/TCP delivery, stream framing, bad input."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from vpbx_media.sip.headers import Via
from vpbx_media.sip.message import SipMessage, SipRequest, SipResponse, make_response, parse_message
from vpbx_media.sip.transport import (
    Address,
    Flow,
    SipTransport,
    TransportError,
    TransportKind,
    response_destination,
    stamp_received,
)

WAIT = 2.0


class QueueSink:
    """Collects what a transport delivers, so tests can await it."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[SipMessage, Flow]] = asyncio.Queue()

    def on_message(self, message: SipMessage, flow: Flow) -> None:
        self.messages.put_nowait((message, flow))

    async def next(self, timeout: float = WAIT) -> tuple[SipMessage, Flow]:
        return await asyncio.wait_for(self.messages.get(), timeout)


class RawUdp(asyncio.DatagramProtocol):
    """A bare UDP socket standing in for a remote phone."""

    def __init__(self) -> None:
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.put_nowait(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def send(self, data: bytes, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (to.host, to.port))

    async def next(self, timeout: float = WAIT) -> bytes:
        return await asyncio.wait_for(self.datagrams.get(), timeout)


@pytest.fixture
async def server() -> AsyncIterator[tuple[SipTransport, QueueSink]]:
    sink = QueueSink()
    transport = SipTransport("127.0.0.1", 0, sink, max_message_size=4000)
    await transport.start()
    yield transport, sink
    await transport.stop()


@pytest.fixture
async def client() -> AsyncIterator[tuple[SipTransport, QueueSink]]:
    sink = QueueSink()
    transport = SipTransport("127.0.0.1", 0, sink)
    await transport.start()
    yield transport, sink
    await transport.stop()


@pytest.fixture
async def raw_udp() -> AsyncIterator[RawUdp]:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(RawUdp, local_addr=("127.0.0.1", 0))
    yield protocol
    assert protocol.transport is not None
    protocol.transport.close()


def options_bytes(
    *,
    via: str = "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-opt1;rport",
    call_id: str = "call-1@test",
    extra: str = "",
    body: bytes = b"",
    content_length: int | None = None,
) -> bytes:
    length = len(body) if content_length is None else content_length
    head = (
        "OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@test>;tag=from1\r\n"
        "To: <sip:edge@test>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 7 OPTIONS\r\n"
        f"{extra}"
        f"Content-Length: {length}\r\n\r\n"
    )
    return head.encode() + body


def options_request(**kwargs: str) -> SipRequest:
    request = parse_message(options_bytes(**kwargs))  # type: ignore[arg-type]
    assert isinstance(request, SipRequest)
    return request


def closed_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def read_stream_message(reader: asyncio.StreamReader) -> SipMessage:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), WAIT)
    return parse_message(head + body)


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# --- UDP ---------------------------------------------------------------------------------


async def test_udp_request_and_response_round_trip(
    server: tuple[SipTransport, QueueSink], client: tuple[SipTransport, QueueSink]
) -> None:
    server_transport, server_sink = server
    client_transport, client_sink = client
    via = f"SIP/2.0/UDP 127.0.0.1:{client_transport.port};branch=z9hG4bK-udp1;rport"
    request = options_request(via=via)

    used = await client_transport.send(
        request, Flow(TransportKind.UDP, server_transport.local_address)
    )
    assert used.transport is TransportKind.UDP

    received, flow = await server_sink.next()
    assert isinstance(received, SipRequest)
    assert received.method == "OPTIONS"
    assert received.call_id == request.call_id
    assert flow == Flow(TransportKind.UDP, Address("127.0.0.1", client_transport.port))
    # rport is filled with the source port (RFC 3581) even when the host matches.
    top = received.top_via
    assert top.param("rport") == str(client_transport.port)
    assert top.param("received") == "127.0.0.1"

    server_transport.send_bytes(bytes(make_response(received, 200, to_tag="t1")), flow)
    response, response_flow = await client_sink.next()
    assert isinstance(response, SipResponse)
    assert response.status == 200
    assert response.to.tag == "t1"
    assert response_flow.remote == server_transport.local_address
    # Responses are not stamped: only requests carry a server's received/rport.
    assert response.top_via.param("rport") == str(client_transport.port)


async def test_udp_via_from_another_host_gets_received_but_no_rport_unless_asked(
    server: tuple[SipTransport, QueueSink], raw_udp: RawUdp
) -> None:
    server_transport, sink = server
    raw_udp.send(
        options_bytes(via="SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-nat1"),
        server_transport.local_address,
    )
    received, _ = await sink.next()
    top = received.top_via
    assert top.param("received") == "127.0.0.1"
    assert top.param("rport") is None
    # Without rport the answer goes to received + the sent-by port.
    assert response_destination(top, TransportKind.UDP) == Address("127.0.0.1", 5070)

    raw_udp.send(
        options_bytes(via="SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-nat2;rport"),
        server_transport.local_address,
    )
    received, _ = await sink.next()
    top = received.top_via
    assert top.param("received") == "127.0.0.1"
    assert top.param("rport") == str(raw_udp.port)
    assert response_destination(top, TransportKind.UDP) == Address("127.0.0.1", raw_udp.port)


def test_stamp_received_leaves_matching_via_alone_and_keeps_lower_vias() -> None:
    plain = options_request(via="SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-a")
    assert stamp_received(plain, Address("127.0.0.1", 5999)) == plain

    two = options_request(
        via="SIP/2.0/UDP [::1]:5999;branch=z9hG4bK-b;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-c"
    )
    stamped = stamp_received(two, Address("::1", 40000))
    vias = stamped.vias
    assert vias[0].param("rport") == "40000"
    assert vias[0].param("received") == "[::1]"
    assert response_destination(vias[0], TransportKind.UDP) == Address("::1", 40000)
    assert vias[1] == Via.parse("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-c")


def test_tcp_fallback_destination_uses_sent_by_port_not_rport() -> None:
    via = Via.parse("SIP/2.0/TCP 192.0.2.7:5080;branch=z9hG4bK-t;rport=40123;received=10.1.1.1")
    assert response_destination(via, TransportKind.TCP) == Address("10.1.1.1", 5080)
    assert response_destination(via, TransportKind.UDP) == Address("10.1.1.1", 40123)


async def test_malformed_udp_request_with_readable_headers_gets_400(
    server: tuple[SipTransport, QueueSink], raw_udp: RawUdp
) -> None:
    server_transport, sink = server
    via = f"SIP/2.0/UDP 127.0.0.1:{raw_udp.port};branch=z9hG4bK-bad1"
    raw_udp.send(
        options_bytes(via=via, call_id="bad-1@test", extra="Expires: soon\r\n"),
        server_transport.local_address,
    )
    reply = parse_message(await raw_udp.next())
    assert isinstance(reply, SipResponse)
    assert reply.status == 400
    assert reply.call_id == "bad-1@test"
    assert str(reply.cseq) == "7 OPTIONS"
    assert reply.top_via.branch == "z9hG4bK-bad1"
    assert reply.from_.tag == "from1"
    assert "Expires" in (reply.header("Warning") or "")
    assert sink.messages.empty()
    assert server_transport.malformed_count == 1


async def test_unsalvageable_input_gets_no_answer_and_transport_keeps_working(
    server: tuple[SipTransport, QueueSink], raw_udp: RawUdp
) -> None:
    server_transport, sink = server
    no_call_id = options_bytes(extra="Expires: soon\r\n").replace(b"Call-ID: call-1@test\r\n", b"")
    bad_response = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-x\r\n"
        b"From: <sip:a@test>;tag=1\r\nTo: <sip:b@test>\r\nCall-ID: x\r\nCSeq: nope\r\n\r\n"
    )
    for garbage in (b"\x00\xff\xfe not sip at all", no_call_id, bad_response, b"\r\n\r\n"):
        raw_udp.send(garbage, server_transport.local_address)
    # A valid request sent after the junk still arrives, and is the only delivery.
    raw_udp.send(options_bytes(call_id="good@test"), server_transport.local_address)
    received, _ = await sink.next()
    assert received.call_id == "good@test"
    assert sink.messages.empty()
    assert raw_udp.datagrams.empty()
    # The CRLF keep-alive is not counted as malformed; the other three are.
    assert server_transport.malformed_count == 3


async def test_oversize_udp_request_is_refused_with_513(
    server: tuple[SipTransport, QueueSink], raw_udp: RawUdp
) -> None:
    server_transport, sink = server
    via = f"SIP/2.0/UDP 127.0.0.1:{raw_udp.port};branch=z9hG4bK-big"
    big = options_bytes(via=via, call_id="big@test", body=b"x" * 5000)
    raw_udp.send(big, server_transport.local_address)
    reply = parse_message(await raw_udp.next())
    assert isinstance(reply, SipResponse)
    assert reply.status == 513
    assert reply.reason == "Message Too Large"
    assert reply.call_id == "big@test"
    assert sink.messages.empty()


async def test_sink_exception_does_not_stop_the_transport(raw_udp: RawUdp) -> None:
    class FlakySink(QueueSink):
        def on_message(self, message: SipMessage, flow: Flow) -> None:
            if message.call_id == "boom@test":
                raise RuntimeError("handler bug")
            super().on_message(message, flow)

    sink = FlakySink()
    transport = SipTransport("127.0.0.1", 0, sink)
    await transport.start()
    try:
        raw_udp.send(options_bytes(call_id="boom@test"), transport.local_address)
        raw_udp.send(options_bytes(call_id="after@test"), transport.local_address)
        received, _ = await sink.next()
        assert received.call_id == "after@test"
    finally:
        await transport.stop()


# --- TCP ---------------------------------------------------------------------------------


async def test_tcp_request_and_response_reuse_one_connection(
    server: tuple[SipTransport, QueueSink], client: tuple[SipTransport, QueueSink]
) -> None:
    server_transport, server_sink = server
    client_transport, client_sink = client
    target = Flow(TransportKind.TCP, server_transport.local_address)
    via = f"SIP/2.0/TCP 127.0.0.1:{client_transport.port};branch=z9hG4bK-tcp1;rport"

    used = await client_transport.send(options_request(via=via, call_id="tcp-1@test"), target)
    assert used.transport is TransportKind.TCP
    assert used.connection_id is not None

    received, flow = await server_sink.next()
    assert received.call_id == "tcp-1@test"
    assert flow.transport is TransportKind.TCP
    assert flow.connection_id is not None
    # The client's ephemeral source port, not its listening port, is the remote.
    assert flow.remote.port != client_transport.port
    assert received.top_via.param("rport") == str(flow.remote.port)

    assert isinstance(received, SipRequest)
    await server_transport.send(make_response(received, 200, to_tag="x"), flow)
    response, response_flow = await client_sink.next()
    assert isinstance(response, SipResponse)
    assert response.status == 200
    assert response_flow.connection_id == used.connection_id

    # A second request to the same peer goes over the same connection.
    again = await client_transport.send(options_request(via=via, call_id="tcp-2@test"), target)
    assert again.connection_id == used.connection_id
    received, second_flow = await server_sink.next()
    assert received.call_id == "tcp-2@test"
    assert second_flow.connection_id == flow.connection_id


async def test_tcp_framing_across_partial_writes_and_several_messages_per_segment(
    server: tuple[SipTransport, QueueSink],
) -> None:
    server_transport, sink = server
    reader, writer = await asyncio.open_connection("127.0.0.1", server_transport.port)
    try:
        # The body contains an empty line: only Content-Length can tell where it ends.
        body = b"v=0\r\n\r\nrest"
        first = options_bytes(call_id="frag@test", body=body, extra="Content-Type: x/y\r\n")
        cut_in_head, cut_in_body = 25, len(first) - 3
        writer.write(first[:cut_in_head])
        await writer.drain()
        writer.write(first[cut_in_head:cut_in_body])
        await writer.drain()
        await asyncio.sleep(0.05)
        assert sink.messages.empty(), "a message was delivered before its body was complete"
        writer.write(first[cut_in_body:])
        await writer.drain()
        received, flow = await sink.next()
        assert received.call_id == "frag@test"
        assert received.body == body

        # Two messages and a CRLF keep-alive in one segment, then a byte-by-byte message.
        batch = (
            options_bytes(call_id="one@test", body=b"abc")
            + b"\r\n\r\n"
            + options_bytes(call_id="two@test")
        )
        writer.write(batch)
        await writer.drain()
        one, _ = await sink.next()
        two, _ = await sink.next()
        assert (one.call_id, one.body) == ("one@test", b"abc")
        assert two.call_id == "two@test"

        for byte in options_bytes(call_id="slow@test", body=b"zz"):
            writer.write(bytes([byte]))
        await writer.drain()
        slow, slow_flow = await sink.next()
        assert (slow.call_id, slow.body) == ("slow@test", b"zz")
        assert slow_flow.connection_id == flow.connection_id

        # The server answers over the same connection.
        assert isinstance(slow, SipRequest)
        server_transport.send_bytes(bytes(make_response(slow, 200, to_tag="s")), flow)
        reply = await read_stream_message(reader)
        assert isinstance(reply, SipResponse)
        assert reply.call_id == "slow@test"
    finally:
        writer.close()


async def test_tcp_malformed_request_gets_400_on_its_connection(
    server: tuple[SipTransport, QueueSink],
) -> None:
    server_transport, sink = server
    reader, writer = await asyncio.open_connection("127.0.0.1", server_transport.port)
    try:
        writer.write(options_bytes(call_id="tcp-bad@test", extra="Max-Forwards: lots\r\n"))
        await writer.drain()
        reply = await read_stream_message(reader)
        assert isinstance(reply, SipResponse)
        assert reply.status == 400
        assert reply.call_id == "tcp-bad@test"
        # The stream stays usable: framing was intact, only the content was bad.
        writer.write(options_bytes(call_id="tcp-good@test"))
        await writer.drain()
        received, _ = await sink.next()
        assert received.call_id == "tcp-good@test"
    finally:
        writer.close()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"OPTIONS sip:x SIP/2.0\r\nX-Pad: " + b"a" * 5000, id="endless-head"),
        pytest.param(options_bytes(content_length=100_000), id="huge-content-length"),
        pytest.param(options_bytes().replace(b"Content-Length: 0\r\n", b""), id="no-length"),
    ],
)
async def test_tcp_stream_that_cannot_be_framed_is_closed(
    server: tuple[SipTransport, QueueSink], payload: bytes
) -> None:
    server_transport, sink = server
    reader, writer = await asyncio.open_connection("127.0.0.1", server_transport.port)
    try:
        writer.write(payload)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        assert sink.messages.empty()
    finally:
        writer.close()


async def test_sending_to_a_closed_tcp_port_raises_transport_error(
    client: tuple[SipTransport, QueueSink],
) -> None:
    client_transport, _ = client
    flow = Flow(TransportKind.TCP, Address("127.0.0.1", closed_tcp_port()))
    with pytest.raises(TransportError):
        await client_transport.send(options_request(), flow)
    with pytest.raises(TransportError):
        client_transport.send_bytes(b"x", flow)


async def test_stop_releases_both_ports(client: tuple[SipTransport, QueueSink]) -> None:
    client_transport, _ = client
    transport = SipTransport("127.0.0.1", 0)
    await transport.start()
    port = transport.port
    # An open inbound and outbound connection must not keep the port busy.
    await client_transport.send(
        options_request(), Flow(TransportKind.TCP, Address("127.0.0.1", port))
    )
    await transport.stop()

    again = SipTransport("127.0.0.1", port)
    await again.start()
    await again.stop()


def test_udp_and_tcp_work_on_uvloop() -> None:
    """The services run on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")

    async def round_trip() -> list[str]:
        sink = QueueSink()
        server_transport = SipTransport("127.0.0.1", 0, sink)
        client_transport = SipTransport("127.0.0.1", 0, QueueSink())
        await server_transport.start()
        await client_transport.start()
        try:
            seen: list[str] = []
            for kind in (TransportKind.UDP, TransportKind.TCP):
                call_id = f"uvloop-{kind.value}@test"
                flow = Flow(kind, server_transport.local_address)
                await client_transport.send(options_request(call_id=call_id), flow)
                received, received_flow = await sink.next()
                assert received_flow.transport is kind
                seen.append(received.call_id)
            return seen
        finally:
            await client_transport.stop()
            await server_transport.stop()

    assert uvloop.run(round_trip()) == ["uvloop-UDP@test", "uvloop-TCP@test"]

"""UDP and TCP transports (RFC 3261 section 18, RFC 3581 rport), and the
connections a WebSocket listener (websocket.py, RFC 7118) hands in.

A transport turns bytes into messages and back. Every received message is
handed to one `MessageSink` together with the `Flow` it arrived on, so a
response or a later request can be sent back over the same flow (the same
TCP connection, or from the same UDP socket to the observed source address,
which is what keeps phones behind NAT reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast

from .errors import SipParseError
from .headers import Via
from .message import (
    MAX_MESSAGE_SIZE,
    SipMessage,
    SipRequest,
    StreamFramer,
    parse_message,
    reason_phrase,
)
from .uri import SipUri, set_param

logger = logging.getLogger(__name__)


class TransportKind(StrEnum):
    UDP = "UDP"
    TCP = "TCP"
    # SIP over WebSocket (RFC 7118), plain and over TLS. Only ever accepted: a
    # WebSocket peer (a browser) cannot be connected to, so a flow of these kinds
    # names one live connection and dies with it.
    WS = "WS"
    WSS = "WSS"

    @property
    def is_websocket(self) -> bool:
        return self in (TransportKind.WS, TransportKind.WSS)


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int = 5060) -> Address:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            return cls(text, default_port)
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a message came from / goes to: transport, peer and (for TCP) connection."""

    transport: TransportKind
    remote: Address
    connection_id: int | None = None


def flow_to(uri: SipUri) -> Flow:
    """The flow a request to `uri` takes (RFC 3263 without DNS: host, port, transport).

    A `transport=ws`/`wss` URI gives a WebSocket flow without a connection, which
    no send can take (a browser's `.invalid` host is no address): such a target is
    only reachable through a Route to the edge holding its connection.
    """
    kind = _URI_TRANSPORTS.get(uri.transport, TransportKind.UDP)
    return Flow(kind, Address(uri.host.strip("[]"), uri.port or 5060))


_URI_TRANSPORTS = {
    "tcp": TransportKind.TCP,
    "ws": TransportKind.WS,
    "wss": TransportKind.WSS,
}


class MessageSink(Protocol):
    def on_message(self, message: SipMessage, flow: Flow) -> None: ...


class AcceptedConnection(Protocol):
    """A connection some listener accepted (a WebSocket): the transport only sends on it."""

    @property
    def kind(self) -> TransportKind: ...

    @property
    def connection_id(self) -> int: ...

    @property
    def remote(self) -> Address: ...

    def send(self, data: bytes) -> None:
        """Queue one whole message; TransportError when the connection is gone."""
        ...


class TransportError(Exception):
    """A message could not be sent (connection refused, no route...)."""


def stamp_received(request: SipRequest, source: Address) -> SipRequest:
    """Add received/rport to the top Via as a server must (RFC 3261 18.2.1, RFC 3581)."""
    values = request.headers.values("Via")
    if not values:
        return request
    top = Via.parse(values[0])
    params = top.params
    changed = False
    # An IPv6 sent-by keeps its brackets; the socket address has none. The
    # received value is bracketed too: headers.Via only re-parses an IPv6
    # parameter value as a reference, and the Via must survive a re-parse.
    same_host = top.host.strip("[]") == source.host
    received = f"[{source.host}]" if ":" in source.host else source.host
    if not same_host:
        params = set_param(params, "received", received)
        changed = True
    rport = top.param("rport")
    if rport is not None and rport == "":
        params = set_param(params, "rport", str(source.port))
        if same_host:
            params = set_param(params, "received", received)
        changed = True
    if not changed:
        return request
    top = Via(top.transport, top.host, top.port, params, top.protocol)
    return request.with_headers(request.headers.replace_values("Via", [str(top), *values[1:]]))


def response_destination(via: Via, flow_transport: TransportKind) -> Address:
    """Where to send a response: received/rport override sent-by (RFC 3581).

    On TCP this is only used once the request's connection is gone, and then
    RFC 3261 18.2.2 opens a new one to the sent-by port: the rport of a TCP
    request is the client's ephemeral source port, which nothing listens on.
    """
    host = (via.param("received") or via.host).strip("[]")
    rport = via.param("rport")
    if rport and rport.isdigit() and flow_transport is TransportKind.UDP:
        return Address(host, int(rport))
    return Address(host, via.port or 5060)


_HEADER_LINE = re.compile(rb"^([A-Za-z\-]+)\s*:\s*(.*)$")
_ESSENTIAL = {
    b"via": "Via",
    b"v": "Via",
    b"from": "From",
    b"f": "From",
    b"to": "To",
    b"t": "To",
    b"call-id": "Call-ID",
    b"i": "Call-ID",
    b"cseq": "CSeq",
}


def error_response_for(data: bytes, error: SipParseError) -> bytes | None:
    """A best-effort 400/505/513 for an unparseable request, or None if impossible.

    RFC 3261 section 8.2 wants a response whenever the essential headers can
    be read; the parser is strict, so this salvages them line by line.
    """
    first, _, rest = data.partition(b"\r\n")
    if first.startswith(b"SIP/") or b" SIP/" not in first:
        return None
    found: dict[str, list[bytes]] = {}
    for raw in rest.split(b"\r\n"):
        if not raw:
            break
        match = _HEADER_LINE.match(raw)
        if match is None:
            continue
        name = _ESSENTIAL.get(match.group(1).lower())
        if name is not None:
            found.setdefault(name, []).append(match.group(2).strip())
    if any(name not in found for name in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    reason = error.reason.replace("\r", " ").replace("\n", " ")[:120]
    status = error.status_code
    lines = [f"SIP/2.0 {status} {reason_phrase(status)}".encode()]
    lines.extend(b"Via: " + via for via in found["Via"])
    for name in ("From", "To", "Call-ID", "CSeq"):
        lines.append(name.encode() + b": " + found[name][0])
    lines.append(b"Warning: 399 vpbx " + b'"' + reason.replace('"', "'").encode() + b'"')
    lines.append(b"Content-Length: 0")
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(
        self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]
    ) -> None:
        self.owner.deliver(data, Flow(TransportKind.UDP, Address(addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable etc.: the transaction layer's timers handle it.
        logger.debug("UDP error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport, connection_id: int) -> None:
        self.owner = owner
        self.connection_id = connection_id
        self.framer = StreamFramer(owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.remote: Address | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCPTransport does not
        # subclass asyncio.Transport, and uvloop is what the services run on.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = Address(peer[0], peer[1])
        self.owner.register_connection(self)

    def data_received(self, data: bytes) -> None:
        assert self.remote is not None
        try:
            frames = self.framer.feed(data)
        except SipParseError as exc:
            logger.warning("closing TCP connection from %s: %s", self.remote, exc.reason)
            if self.transport is not None:
                self.transport.close()
            return
        flow = Flow(TransportKind.TCP, self.remote, self.connection_id)
        for frame in frames:
            self.owner.deliver(frame, flow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.unregister_connection(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError(f"TCP connection to {self.remote} is closed")
        self.transport.write(data)


class SipTransport:
    """One UDP socket and one TCP listener on the same address, plus outgoing TCP connections."""

    def __init__(
        self,
        host: str,
        port: int,
        sink: MessageSink | None = None,
        *,
        advertised_host: str | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.host = host
        self.port = port
        self.advertised_host = advertised_host or host
        self.sink: MessageSink | None = sink
        self.max_message_size = max_message_size
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._connections: dict[int, _TcpConnection] = {}
        self._by_remote: dict[Address, _TcpConnection] = {}
        self._ids = itertools.count(1)
        # WebSocket connections by id; the ids are random (websocket.py) because the
        # edge writes them into flow tokens, which must never name a later connection.
        self._accepted: dict[int, AcceptedConnection] = {}
        # Set by a WebSocket listener once bound: the edge names this port in the
        # Record-Route entries a WebSocket client sees.
        self.websocket_port: int | None = None
        self.websocket_kind: TransportKind | None = None
        self.malformed_count = 0

    @property
    def local_address(self) -> Address:
        return Address(self.advertised_host, self.port)

    async def start(self) -> None:
        # With port 0 the UDP socket picks the port and TCP must follow; another TCP
        # socket may already hold that number, so a few fresh picks are allowed.
        attempts = 5 if self.port == 0 else 1
        for attempt in range(attempts):
            try:
                await self._bind(self.port if attempts == 1 else 0)
                return
            except OSError:
                if attempt == attempts - 1:
                    raise

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, port)
        )
        bound: int = udp.get_extra_info("sockname")[1]
        try:
            self._tcp_server = await loop.create_server(
                lambda: _TcpConnection(self, next(self._ids)), self.host, bound
            )
        except OSError:
            # Do not leave the UDP socket bound when the transport cannot start.
            udp.close()
            raise
        self._udp = udp
        self.port = bound

    async def stop(self) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()
        connections = list(self._connections.values())
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        if self._udp is not None:
            self._udp.close()
        waits = [asyncio.shield(connection.closed) for connection in connections]
        if self._tcp_server is not None:
            waits.append(asyncio.ensure_future(self._tcp_server.wait_closed()))
        if waits:
            # Sockets are only released once connection_lost has run.
            _, pending = await asyncio.wait(waits, timeout=2)
            for waiter in pending:
                waiter.cancel()

    def register_connection(self, connection: _TcpConnection) -> None:
        self._connections[connection.connection_id] = connection
        if connection.remote is not None:
            self._by_remote[connection.remote] = connection

    def unregister_connection(self, connection: _TcpConnection) -> None:
        self._connections.pop(connection.connection_id, None)
        if connection.remote is not None and self._by_remote.get(connection.remote) is connection:
            del self._by_remote[connection.remote]

    def add_accepted(self, connection: AcceptedConnection) -> Flow:
        """Route sends on the connection's flow to it from now on; that flow."""
        self._accepted[connection.connection_id] = connection
        return Flow(connection.kind, connection.remote, connection.connection_id)

    def remove_accepted(self, connection: AcceptedConnection) -> None:
        if self._accepted.get(connection.connection_id) is connection:
            del self._accepted[connection.connection_id]

    def is_id_free(self, connection_id: int) -> bool:
        return connection_id not in self._accepted

    def accepted_count(self) -> int:
        return len(self._accepted)

    def _accepted_for(self, flow: Flow) -> AcceptedConnection:
        connection = None
        if flow.connection_id is not None:
            connection = self._accepted.get(flow.connection_id)
        # The id alone could be a guess; the peer and kind must match too.
        if (
            connection is None
            or connection.remote != flow.remote
            or connection.kind is not flow.transport
        ):
            raise TransportError(f"no {flow.transport} connection from {flow.remote}")
        return connection

    def has_flow(self, flow: Flow) -> bool:
        """Whether a send on `flow` can work: always for UDP and TCP (a TCP
        connection may be opened), for a WebSocket only while its connection lives."""
        if not flow.transport.is_websocket:
            return True
        try:
            self._accepted_for(flow)
        except TransportError:
            return False
        return True

    def deliver(self, data: bytes, flow: Flow) -> None:
        if not data.strip(b"\r\n"):
            # CRLF keep-alive datagrams (RFC 5626 style, sent by many phones
            # over UDP too) are not malformed messages.
            return
        try:
            message = parse_message(data, max_size=self.max_message_size)
        except SipParseError as exc:
            self.malformed_count += 1
            logger.info("malformed SIP from %s/%s: %s", flow.transport, flow.remote, exc.reason)
            reply = error_response_for(data, exc)
            if reply is not None:
                with contextlib.suppress(TransportError):
                    self.send_bytes(reply, flow)
            return
        if isinstance(message, SipRequest):
            try:
                message = stamp_received(message, flow.remote)
            except SipParseError as exc:
                logger.info("bad Via from %s: %s", flow.remote, exc.reason)
                return
        if self.sink is None:
            return
        try:
            self.sink.on_message(message, flow)
        except Exception:
            # One bad message must never take the node down.
            logger.exception("error handling SIP message from %s", flow.remote)

    def send_bytes(self, data: bytes, flow: Flow) -> None:
        if flow.transport is TransportKind.UDP:
            if self._udp is None:
                raise TransportError("UDP transport not started")
            self._udp.sendto(data, (flow.remote.host, flow.remote.port))
            return
        if flow.transport.is_websocket:
            self._accepted_for(flow).send(data)
            return
        connection = None
        if flow.connection_id is not None:
            connection = self._connections.get(flow.connection_id)
        if connection is None:
            connection = self._by_remote.get(flow.remote)
        if connection is None:
            raise TransportError(f"no TCP connection to {flow.remote}")
        connection.send(data)

    async def connect(self, remote: Address) -> Flow:
        existing = self._by_remote.get(remote)
        if existing is not None:
            return Flow(TransportKind.TCP, remote, existing.connection_id)
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _TcpConnection(self, next(self._ids)), remote.host, remote.port
                ),
                5,
            )
        except (TimeoutError, OSError) as exc:
            raise TransportError(f"cannot connect to {remote}: {exc}") from exc
        return Flow(TransportKind.TCP, remote, protocol.connection_id)

    async def send(self, message: SipMessage, flow: Flow) -> Flow:
        """Send, opening a TCP connection when needed; returns the flow actually used."""
        if flow.transport is TransportKind.TCP and flow.connection_id not in self._connections:
            # Name the connection in the returned flow, so later sends (ACK,
            # CANCEL, retransmissions) stay on it even if another one to the
            # same peer shows up.
            flow = await self.connect(flow.remote)
        self.send_bytes(bytes(message), flow)
        return flow

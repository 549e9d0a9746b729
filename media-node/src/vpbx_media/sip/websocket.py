"""SIP over WebSocket (RFC 7118): a listener whose connections become flows of a SipTransport.

Browsers (JsSIP in the agent workspace) cannot speak UDP or TCP; they open a
WebSocket with the subprotocol ``sip`` and send one SIP message per frame. Each
accepted connection is a `Flow` of kind WS (WSS behind TLS) carrying a random
connection id, so everything above the transport (transactions, the edge's flow
tokens) treats it like a TCP connection that can only be answered, never opened.

The listener runs on the caller's event loop (aiohttp's low-level server, no
application or router). What it refuses before any SIP is read:

- a handshake without the ``sip`` subprotocol (RFC 7118 section 4.1: the server
  must not accept it) is answered 400, a plain HTTP request 426;
- a source over its connection budget (``max_per_source`` open at once, or the
  ``admit`` hook, the edge's per-source token bucket, saying no) is answered 503;
- a frame over ``max_message_size`` closes that connection (1009, aiohttp);
- a peer that stops reading, with ``max_queued`` messages waiting for it, is closed.

A frame that is no SIP message is counted and answered like a malformed
datagram (SipTransport.deliver); the connection and every other one go on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Callable

from aiohttp import WSMsgType, web

from .transport import Address, Flow, SipTransport, TransportError, TransportKind

logger = logging.getLogger(__name__)

SUBPROTOCOL = "sip"
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024


class _Connection:
    """One accepted WebSocket: sends are queued and written in order by one task."""

    def __init__(
        self,
        socket: web.WebSocketResponse,
        kind: TransportKind,
        remote: Address,
        connection_id: int,
        max_queued: int,
        raw: asyncio.BaseTransport | None,
    ) -> None:
        self.socket = socket
        self.raw = raw
        self._kind = kind
        self._remote = remote
        self._connection_id = connection_id
        # aiohttp's send is a coroutine while SipTransport.send_bytes is not; a queue
        # keeps the messages in the order the transaction layer sent them.
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(max_queued)
        self.writer: asyncio.Task[None] | None = None

    @property
    def kind(self) -> TransportKind:
        return self._kind

    @property
    def connection_id(self) -> int:
        return self._connection_id

    @property
    def remote(self) -> Address:
        return self._remote

    def send(self, data: bytes) -> None:
        if self.socket.closed or self.writer is None or self.writer.done():
            raise TransportError(f"WebSocket connection from {self.remote} is closed")
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull as exc:
            logger.info("closing WebSocket from %s: it does not read its messages", self.remote)
            self.writer.cancel()
            raise TransportError(f"WebSocket connection from {self.remote} is stuck") from exc

    async def write_all(self) -> None:
        try:
            while True:
                data = await self.queue.get()
                try:
                    # Text frames where the message is UTF-8 (what browsers' SIP stacks
                    # expect); a binary body (RFC 7118 section 5) goes as a binary frame.
                    text = data.decode()
                except UnicodeDecodeError:
                    await self.socket.send_bytes(data)
                else:
                    await self.socket.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            logger.info("WebSocket to %s failed: %s", self.remote, exc)
        finally:
            # Nothing more can be sent (peer gone, not reading, or the reader ended):
            # drop the TCP connection so the reader, waiting on it, ends too.
            if self.raw is not None and not self.socket.closed:
                self.raw.close()


class WebSocketListener:
    """Accepts SIP over WebSocket on host:port and delivers its frames to `transport`."""

    def __init__(
        self,
        transport: SipTransport,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_per_source: int = 256,
        admit: Callable[[str], bool] | None = None,
        max_queued: int = 256,
        heartbeat: float | None = 30.0,
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.kind = TransportKind.WSS if ssl_context is not None else TransportKind.WS
        self.max_message_size = max_message_size
        self.max_per_source = max_per_source
        self.admit = admit
        self.max_queued = max_queued
        # Pings every `heartbeat` seconds: ingresses and NATs drop idle connections
        # (nginx after 60 s), and a browser registering every 10 minutes sends nothing
        # in between. A peer that does not answer one is closed.
        self.heartbeat = heartbeat
        self._server: web.Server | None = None
        self._listener: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._per_source: dict[str, int] = {}
        # Handshakes refused (no subprotocol, over budget): a test and the logs read it.
        self.refused = 0

    @property
    def scheme(self) -> str:
        return "wss" if self.kind is TransportKind.WSS else "ws"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = web.Server(self._handle, access_log=None)
        self._listener = await loop.create_server(
            self._server, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        self.transport.websocket_port = self.port
        self.transport.websocket_kind = self.kind

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for connection in list(self._connections):
            try:
                await asyncio.wait_for(connection.socket.close(code=1001), 1)
            except (TimeoutError, OSError, RuntimeError) as exc:
                # The browser vanished or stopped reading: its connection ends with the
                # listener anyway; the others still get their close.
                logger.debug("WebSocket close at stop failed: %s", type(exc).__name__)
        if self._server is not None:
            await self._server.shutdown(2)
        if self._listener is not None:
            await self._listener.wait_closed()

    def connections_from(self, host: str) -> int:
        return self._per_source.get(host, 0)

    def _refuse(self, remote: Address, status: int, text: str) -> web.Response:
        self.refused += 1
        logger.info("WebSocket from %s refused: %d %s", remote, status, text)
        headers = {"Upgrade": "websocket"} if status == 426 else {}
        if status == 503:
            headers["Retry-After"] = "5"
        return web.Response(status=status, text=text + "\n", headers=headers)

    def _new_id(self) -> int:
        while True:
            # Random, not counted: an id written into a flow token by an earlier edge
            # process (or for a closed connection) must not name a new connection.
            candidate = secrets.randbits(48) or 1
            if self.transport.is_id_free(candidate):
                return candidate

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if not peer:
            return web.Response(status=400)
        remote = Address(peer[0], peer[1])
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._refuse(remote, 426, "SIP over WebSocket only (RFC 7118)")
        offered = {
            value.strip()
            for value in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if value.strip()
        }
        if SUBPROTOCOL not in offered:
            return self._refuse(remote, 400, "the WebSocket subprotocol 'sip' is required")
        if self.connections_from(remote.host) >= self.max_per_source:
            return self._refuse(remote, 503, "too many connections from this address")
        if self.admit is not None and not self.admit(remote.host):
            return self._refuse(remote, 503, "too many requests from this address")
        socket = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            max_msg_size=self.max_message_size,
            autoping=True,
            heartbeat=self.heartbeat,
        )
        # Counted before the handshake's await: connections racing in cannot overshoot.
        self._per_source[remote.host] = self._per_source.get(remote.host, 0) + 1
        connection: _Connection | None = None
        try:
            await socket.prepare(request)
            connection = _Connection(
                socket,
                self.kind,
                remote,
                self._new_id(),
                max_queued=self.max_queued,
                raw=request.transport,
            )
            connection.writer = asyncio.get_running_loop().create_task(connection.write_all())
            self._connections.add(connection)
            flow = self.transport.add_accepted(connection)
            logger.debug("WebSocket from %s open (connection %d)", remote, flow.connection_id)
            await self._read(socket, connection, flow)
        finally:
            left = self._per_source.get(remote.host, 1) - 1
            if left > 0:
                self._per_source[remote.host] = left
            else:
                self._per_source.pop(remote.host, None)
            if connection is not None:
                self.transport.remove_accepted(connection)
                self._connections.discard(connection)
                if connection.writer is not None:
                    connection.writer.cancel()
        return socket

    async def _read(
        self, socket: web.WebSocketResponse, connection: _Connection, flow: Flow
    ) -> None:
        while True:
            message = await socket.receive()
            if message.type is WSMsgType.TEXT:
                self.transport.deliver(message.data.encode(), flow)
            elif message.type is WSMsgType.BINARY:
                self.transport.deliver(message.data, flow)
            elif message.type is WSMsgType.ERROR:
                # Over max_message_size, or a protocol error: aiohttp has closed it.
                logger.info("WebSocket from %s closed: %s", connection.remote, socket.exception())
                return
            elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return


def ssl_context_from(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """A server TLS context when both files are given (wss directly), else None (ws)."""
    if not cert_file and not key_file:
        return None
    if not cert_file or not key_file:
        raise ValueError("a WebSocket certificate needs both the certificate and the key file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context

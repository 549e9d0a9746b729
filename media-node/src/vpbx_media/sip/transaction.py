"""RFC 3261 section 17 transactions, with the RFC 6026 Accepted states.

Client transactions yield the responses to one request (an `async for` over
`transaction`), retransmitting on unreliable transports (timers A, E) and
synthesising a 408 when timer B/F fires or a 503 when the transport fails.
Server transactions absorb request retransmissions by resending the last
response, retransmit final INVITE responses until the ACK (timers G, H) and
linger to absorb stragglers (timers I, J, L). The transaction layer routes
every received message to its transaction or, when none matches, to the
transaction user (TU): the UA core, the B2BUA or the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from .headers import CSeq, Via
from .message import Headers, SipMessage, SipRequest, SipResponse, make_response
from .transport import (
    Flow,
    SipTransport,
    TransportError,
    TransportKind,
    response_destination,
)

logger = logging.getLogger(__name__)

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 timer values in seconds (defaults are the RFC's)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    # Timer D: how long an INVITE client transaction absorbs retransmitted
    # non-2xx finals on UDP. RFC 3261 fixes it at "at least 32 s" rather than
    # deriving it from T1, so it is a separate knob (tests shorten it).
    d: float = 32.0
    # Timer C (RFC 3261 16.6): how long an INVITE may sit in Proceeding before
    # it is CANCELled. Timer B stops at the first provisional, so without this
    # an INVITE whose callee went silent after 180 would never end.
    c: float = 180.0

    @property
    def b(self) -> float:  # also F, H, J, L, M
        return 64 * self.t1


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


class ClientState(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class ServerState(Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TransactionUser(Protocol):
    def on_request(
        self, request: SipRequest, flow: Flow, transaction: ServerTransaction | None
    ) -> None:
        """A new request; `transaction` is None only for ACKs to 2xx (no transaction)."""

    def on_cancel(self, transaction: ServerTransaction, cancel: SipRequest) -> None:
        """The INVITE of `transaction` was CANCELled (the 200 to CANCEL is already sent)."""

    def on_stray_response(self, response: SipResponse, flow: Flow) -> None:
        """A response no client transaction wants (e.g. a retransmitted 2xx)."""


def _server_key(request: SipRequest) -> tuple[str, ...]:
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return (branch, f"{via.host}:{via.port or 5060}", method)
    # RFC 2543 peers: fall back to dialog identifiers (RFC 3261 17.2.3).
    cseq = request.cseq
    return (
        "2543",
        request.call_id,
        str(cseq.seq),
        request.from_.tag or "",
        request.header("Via") or "",
        method,
    )


def _ack_key(message: SipMessage) -> tuple[str, int, str, str]:
    """What ties an ACK to the 2xx it acknowledges: its branch differs (RFC 3261 17.2.3),
    so the dialog (Call-ID, tags) and CSeq number do; the tags keep the 2xx of two
    forks of one INVITE apart."""
    return (message.call_id, message.cseq.seq, message.from_.tag or "", message.to.tag or "")


def _client_key(message: SipMessage) -> tuple[str, str]:
    via = message.top_via
    return (via.branch or "", message.cseq.method)


class ClientTransaction:
    def __init__(
        self, layer: TransactionLayer, request: SipRequest, flow: Flow, timers: Timers
    ) -> None:
        self.layer = layer
        self.request = request
        self.flow = flow
        self.timers = timers
        self.is_invite = request.method == "INVITE"
        self.state = ClientState.CALLING if self.is_invite else ClientState.TRYING
        self.key = _client_key(request)
        self._queue: asyncio.Queue[SipResponse | None] = asyncio.Queue()
        self._retransmit: asyncio.TimerHandle | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._interval = timers.t1
        self.last_response: SipResponse | None = None
        self.final: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._cancel_wanted = False
        self.cancel_transaction: ClientTransaction | None = None

    @property
    def reliable(self) -> bool:
        return self.flow.transport is not TransportKind.UDP

    def _set_state(self, state: ClientState) -> None:
        logger.debug(
            "client tx %s %s: %s -> %s", self.key[1], self.key[0], self.state.name, state.name
        )
        self.state = state

    async def start(self) -> None:
        try:
            self.flow = await self.layer.transport.send(self.request, self.flow)
        except TransportError as exc:
            logger.info("cannot send %s to %s: %s", self.request.method, self.flow.remote, exc)
            self._finish_with(503, "Service Unavailable")
            return
        loop = asyncio.get_running_loop()
        if not self.reliable:
            self._retransmit = loop.call_later(self._interval, self._on_retransmit)
        self._timeout = loop.call_later(self.timers.b, self._on_timeout)

    def _on_retransmit(self) -> None:
        if self.state not in (ClientState.CALLING, ClientState.TRYING, ClientState.PROCEEDING):
            return
        if self.is_invite and self.state is ClientState.PROCEEDING:
            return
        self._send_quietly(self.request)
        if self.is_invite:
            self._interval *= 2
        elif self.state is ClientState.PROCEEDING:
            self._interval = self.timers.t2
        else:
            self._interval = min(self._interval * 2, self.timers.t2)
        self._retransmit = asyncio.get_running_loop().call_later(
            self._interval, self._on_retransmit
        )

    def _send_quietly(self, message: SipMessage) -> None:
        try:
            self.layer.transport.send_bytes(bytes(message), self.flow)
        except TransportError as exc:
            logger.info("retransmission to %s failed: %s", self.flow.remote, exc)

    def _on_timeout(self) -> None:
        if self.state in (ClientState.CALLING, ClientState.TRYING, ClientState.PROCEEDING):
            self._finish_with(408, "Request Timeout")

    def _restart_timer_c(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
        self._timeout = asyncio.get_running_loop().call_later(self.timers.c, self._on_timer_c)

    def _on_timer_c(self) -> None:
        if self.state is not ClientState.PROCEEDING:
            return
        logger.info("timer C: no final response to INVITE %s, cancelling", self.request.call_id)
        self._cancel_wanted = True
        if self.cancel_transaction is None:
            self._send_cancel()

    def _finish_with(self, status: int, reason: str) -> None:
        response = make_response(self.request, status, reason)
        self._deliver(response)
        self._terminate()

    def _deliver(self, response: SipResponse | None) -> None:
        self._queue.put_nowait(response)
        if response is not None and response.status >= 200 and not self.final.done():
            self.final.set_result(response)
            self._queue.put_nowait(None)

    def _cancel_timers(self) -> None:
        for handle in (self._retransmit, self._timeout):
            if handle is not None:
                handle.cancel()
        self._retransmit = self._timeout = None

    def _terminate(self) -> None:
        self._cancel_timers()
        if self._linger is not None:
            self._linger.cancel()
        self._set_state(ClientState.TERMINATED)
        self.layer.forget_client(self)
        if not self.final.done():
            self.final.set_result(make_response(self.request, 408, "Request Timeout"))
            self._queue.put_nowait(None)

    def _linger_then_terminate(self, delay: float) -> None:
        if delay <= 0:
            self._terminate()
            return
        self._linger = asyncio.get_running_loop().call_later(delay, self._terminate)

    def on_response(self, response: SipResponse) -> None:
        status = response.status
        if self.state is ClientState.TERMINATED:
            return
        if status < 200:
            if self.state in (ClientState.CALLING, ClientState.TRYING, ClientState.PROCEEDING):
                if self.state is not ClientState.PROCEEDING:
                    self._set_state(ClientState.PROCEEDING)
                    if self.is_invite:
                        # Timers A and B only run in Calling (RFC 3261 17.1.1.2);
                        # non-INVITE keeps timer E running and caps it at T2 when
                        # it next fires (17.1.2.2).
                        if self._retransmit is not None:
                            self._retransmit.cancel()
                            self._retransmit = None
                        if self.cancel_transaction is None:
                            self._restart_timer_c()
                elif self.is_invite and status > 100 and self.cancel_transaction is None:
                    self._restart_timer_c()
                self.last_response = response
                self._deliver(response)
                if self._cancel_wanted and self.cancel_transaction is None:
                    self._send_cancel()
            return
        if self.state in (ClientState.COMPLETED, ClientState.ACCEPTED):
            if self.is_invite and status >= 300 and self.state is ClientState.COMPLETED:
                self._send_quietly(self._ack_for(response))
            elif self.state is ClientState.ACCEPTED and 200 <= status < 300:
                self.layer.user.on_stray_response(response, self.flow)
            return
        self._cancel_timers()
        self.last_response = response
        if self.is_invite:
            if status < 300:
                self._set_state(ClientState.ACCEPTED)
                self._deliver(response)
                self._linger_then_terminate(self.timers.b)
            else:
                self._set_state(ClientState.COMPLETED)
                self._send_quietly(self._ack_for(response))
                self._deliver(response)
                self._linger_then_terminate(0 if self.reliable else self.timers.d)
        else:
            self._set_state(ClientState.COMPLETED)
            self._deliver(response)
            self._linger_then_terminate(0 if self.reliable else self.timers.t4)

    def _same_hop_request(self, method: str, to_value: str) -> SipRequest:
        """ACK or CANCEL for this INVITE: same branch, route and CSeq number (RFC 3261 9.1)."""
        request = self.request
        headers = Headers()
        headers = headers.add("Via", request.headers.values("Via")[0])
        for route in request.headers.values("Route"):
            headers = headers.add("Route", route)
        headers = headers.add("Max-Forwards", "70")
        headers = headers.add("From", request.headers.get("From") or "")
        headers = headers.add("To", to_value)
        headers = headers.add("Call-ID", request.call_id)
        headers = headers.add("CSeq", str(CSeq(request.cseq.seq, method)))
        return SipRequest(method=method, uri=request.uri, headers=headers)

    def _ack_for(self, response: SipResponse) -> SipRequest:
        """ACK for a non-2xx final response: part of this transaction (RFC 3261 17.1.1.3)."""
        return self._same_hop_request("ACK", response.headers.get("To") or "")

    def cancel(self) -> None:
        """CANCEL this INVITE: now if a provisional came, else as soon as one does."""
        if not self.is_invite or self._cancel_wanted:
            return
        self._cancel_wanted = True
        if self.state is ClientState.PROCEEDING:
            self._send_cancel()
        elif self.state is ClientState.CALLING:
            # RFC 3261 9.1: wait for a provisional; if none ever comes, timer B ends it.
            pass

    def _send_cancel(self) -> None:
        cancel = self._same_hop_request("CANCEL", self.request.headers.get("To") or "")
        self.cancel_transaction = self.layer.send_request(cancel, self.flow)
        # RFC 3261 9.1: if no final response follows the CANCEL within 64*T1,
        # the INVITE is considered cancelled and its transaction destroyed.
        if self._timeout is not None:
            self._timeout.cancel()
        self._timeout = asyncio.get_running_loop().call_later(self.timers.b, self._on_timeout)

    def __aiter__(self) -> AsyncIterator[SipResponse]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[SipResponse]:
        while True:
            item = await self._queue.get()
            if item is None:
                # Leave the end marker for any later iteration, which would
                # otherwise wait forever on an exhausted transaction.
                self._queue.put_nowait(None)
                return
            yield item


class ServerTransaction:
    def __init__(
        self, layer: TransactionLayer, request: SipRequest, flow: Flow, timers: Timers
    ) -> None:
        self.layer = layer
        self.request = request
        self.flow = flow
        self.timers = timers
        self.is_invite = request.method == "INVITE"
        self.state = ServerState.PROCEEDING if self.is_invite else ServerState.TRYING
        self.key = _server_key(request)
        self.last_response: SipResponse | None = None
        self.cancelled = False
        self._retransmit: asyncio.TimerHandle | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._interval = timers.t1
        self.confirmed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @property
    def reliable(self) -> bool:
        return self.flow.transport is not TransportKind.UDP

    @property
    def is_final(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def _set_state(self, state: ServerState) -> None:
        logger.debug(
            "server tx %s %s: %s -> %s", self.key[-1], self.key[0], self.state.name, state.name
        )
        self.state = state

    def _destination(self) -> Flow:
        if self.flow.transport is not TransportKind.UDP:
            return self.flow
        via = self.request.top_via
        return Flow(TransportKind.UDP, response_destination(via, TransportKind.UDP))

    def _send(self, response: SipResponse) -> None:
        try:
            self.layer.transport.send_bytes(bytes(response), self._destination())
        except TransportError as exc:
            # RFC 3261 18.2.2: a TCP response whose connection is gone goes to sent-by.
            if self.flow.transport is TransportKind.TCP:
                via = self.request.top_via
                fallback = Flow(TransportKind.TCP, response_destination(via, TransportKind.TCP))
                task = asyncio.get_running_loop().create_task(
                    self.layer.send_stateless(response, fallback)
                )
                self.layer.track(task)
            else:
                logger.info("cannot send response to %s: %s", self.flow.remote, exc)

    def respond(self, response: SipResponse) -> None:
        if self.state in (ServerState.TERMINATED, ServerState.CONFIRMED, ServerState.ACCEPTED):
            return
        if self.state is ServerState.COMPLETED:
            return
        self.last_response = response
        self._send(response)
        status = response.status
        loop = asyncio.get_running_loop()
        if status < 200:
            if self.state is ServerState.TRYING:
                self._set_state(ServerState.PROCEEDING)
            return
        if self.is_invite:
            if status < 300:
                self._set_state(ServerState.ACCEPTED)
                self.layer.expect_ack(self)
                self._interval = self.timers.t1
                if not self.reliable:
                    self._retransmit = loop.call_later(self._interval, self._on_retransmit)
                self._timeout = loop.call_later(self.timers.b, self._on_ack_timeout)
            else:
                self._set_state(ServerState.COMPLETED)
                if not self.reliable:
                    self._retransmit = loop.call_later(self._interval, self._on_retransmit)
                self._timeout = loop.call_later(self.timers.b, self._on_ack_timeout)
        else:
            self._set_state(ServerState.COMPLETED)
            self._linger_then_terminate(0 if self.reliable else self.timers.b)

    def _on_retransmit(self) -> None:
        if (
            self.state not in (ServerState.COMPLETED, ServerState.ACCEPTED)
            or self.last_response is None
        ):
            return
        self._send(self.last_response)
        self._interval = min(self._interval * 2, self.timers.t2)
        self._retransmit = asyncio.get_running_loop().call_later(
            self._interval, self._on_retransmit
        )

    def _on_ack_timeout(self) -> None:
        logger.info("no ACK for %s %s", self.request.method, self.request.call_id)
        if not self.confirmed.done():
            self.confirmed.set_result(False)
        self._terminate()

    def on_retransmission(self, request: SipRequest) -> None:
        if request.method == "ACK":
            if self.state is ServerState.COMPLETED:
                self._cancel_timers()
                self._set_state(ServerState.CONFIRMED)
                if not self.confirmed.done():
                    self.confirmed.set_result(True)
                self._linger_then_terminate(0 if self.reliable else self.timers.t4)
            return
        if self.last_response is not None and self.state in (
            ServerState.PROCEEDING,
            ServerState.TRYING,
            ServerState.COMPLETED,
        ):
            self._send(self.last_response)

    def on_ack_for_2xx(self) -> None:
        self._cancel_timers()
        if not self.confirmed.done():
            self.confirmed.set_result(True)
        # Stay to absorb INVITE retransmissions (RFC 6026 timer L).
        self._linger_then_terminate(self.timers.b if not self.reliable else 0)

    def _cancel_timers(self) -> None:
        for handle in (self._retransmit, self._timeout):
            if handle is not None:
                handle.cancel()
        self._retransmit = self._timeout = None

    def _linger_then_terminate(self, delay: float) -> None:
        if delay <= 0:
            self._terminate()
            return
        self._linger = asyncio.get_running_loop().call_later(delay, self._terminate)

    def _terminate(self) -> None:
        self._cancel_timers()
        if self._linger is not None:
            self._linger.cancel()
        if self.is_invite and not self.confirmed.done():
            self.confirmed.set_result(False)
        self._set_state(ServerState.TERMINATED)
        self.layer.forget_server(self)


class TransactionLayer:
    """Matches messages to transactions (RFC 3261 17.1.3, 17.2.3) and owns them."""

    def __init__(
        self, transport: SipTransport, user: TransactionUser, timers: Timers | None = None
    ) -> None:
        self.transport = transport
        transport.sink = self
        self.user = user
        self.timers = timers or Timers()
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[str, ...], ServerTransaction] = {}
        self._awaiting_ack: dict[tuple[str, int, str, str], ServerTransaction] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def active_transactions(self) -> int:
        return len(self._clients) + len(self._servers)

    def on_message(self, message: SipMessage, flow: Flow) -> None:
        if isinstance(message, SipResponse):
            self._on_response(message, flow)
        else:
            self._on_request(message, flow)

    def _on_response(self, response: SipResponse, flow: Flow) -> None:
        client = self._clients.get(_client_key(response))
        if client is None:
            self.user.on_stray_response(response, flow)
            return
        client.on_response(response)

    def _on_request(self, request: SipRequest, flow: Flow) -> None:
        key = _server_key(request)
        if request.method == "ACK":
            existing = self._servers.get(key)
            if existing is not None and existing.state is not ServerState.ACCEPTED:
                existing.on_retransmission(request)
                return
            accepted = self._awaiting_ack.pop(_ack_key(request), None)
            if accepted is not None:
                accepted.on_ack_for_2xx()
            self.user.on_request(request, flow, None)
            return
        existing = self._servers.get(key)
        if existing is not None:
            existing.on_retransmission(request)
            return
        if request.method == "CANCEL":
            self._on_cancel(request, flow)
            return
        transaction = ServerTransaction(self, request, flow, self.timers)
        self._servers[key] = transaction
        if transaction.is_invite:
            transaction.respond(make_response(request, 100))
        self.user.on_request(request, flow, transaction)

    def _on_cancel(self, cancel: SipRequest, flow: Flow) -> None:
        cancel_tx = ServerTransaction(self, cancel, flow, self.timers)
        self._servers[cancel_tx.key] = cancel_tx
        invite_key = (*_server_key(cancel)[:-1], "INVITE")
        invite_tx = self._servers.get(invite_key)
        if invite_tx is None:
            cancel_tx.respond(make_response(cancel, 481))
            return
        # RFC 3261 9.2: a CANCEL that matches a transaction gets 200 even when
        # the INVITE already has its final response; it just has no effect then.
        cancel_tx.respond(make_response(cancel, 200))
        if invite_tx.is_final:
            return
        invite_tx.cancelled = True
        self.user.on_cancel(invite_tx, cancel)

    def expect_ack(self, transaction: ServerTransaction) -> None:
        if transaction.last_response is not None:
            self._awaiting_ack[_ack_key(transaction.last_response)] = transaction

    def send_request(self, request: SipRequest, flow: Flow) -> ClientTransaction:
        """Start a client transaction; the request must carry its own top Via with a branch."""
        transaction = ClientTransaction(self, request, flow, self.timers)
        self._clients[transaction.key] = transaction
        task = asyncio.get_running_loop().create_task(transaction.start())
        self.track(task)
        return transaction

    async def send_stateless(self, message: SipMessage, flow: Flow) -> None:
        try:
            await self.transport.send(message, flow)
        except TransportError as exc:
            logger.info("stateless send to %s failed: %s", flow.remote, exc)

    def forget_client(self, transaction: ClientTransaction) -> None:
        if self._clients.get(transaction.key) is transaction:
            del self._clients[transaction.key]

    def forget_server(self, transaction: ServerTransaction) -> None:
        if self._servers.get(transaction.key) is transaction:
            del self._servers[transaction.key]
        if transaction.last_response is not None:
            ack_key = _ack_key(transaction.last_response)
            if self._awaiting_ack.get(ack_key) is transaction:
                del self._awaiting_ack[ack_key]

    async def stop(self) -> None:
        for client in list(self._clients.values()):
            client._terminate()
        for server in list(self._servers.values()):
            server._terminate()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def via_for(self, transport: TransportKind) -> Via:
        """A fresh top Via for a request this element sends."""
        local = self.transport.local_address
        return Via(
            transport=transport.value,
            host=local.host,
            port=local.port,
            params=(("branch", new_branch()), ("rport", None)),
        )

"""RFC 3261 section 17 transactions (with RFC 6026) against a raw UDP/TCP peer on loopback.

Timers are shrunk (T1 = 20 ms, so 64*T1 = 1.28 s) and the raw peer records
when each datagram arrives, so retransmission schedules can be checked.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from vpbx_media.sip.message import SipMessage, SipRequest, SipResponse, make_response, parse_message
from vpbx_media.sip.transaction import (
    ClientState,
    ClientTransaction,
    ServerState,
    ServerTransaction,
    Timers,
    TransactionLayer,
)
from vpbx_media.sip.transport import Address, Flow, SipTransport, TransportKind

# Tests that measure retransmission intervals use T1 = 20 ms; the others only
# wait timers out and use T1 = 10 ms (64*T1 = 0.64 s) to stay quick.
TIMED = Timers(t1=0.02, t2=0.16, t4=0.2, d=0.3)
QUICK = Timers(t1=0.01, t2=0.08, t4=0.1, d=0.15)
WAIT = 2.0
# Loopback delivery and loop scheduling add a little to every interval.
SLACK = 0.07
# Lets a datagram already sent reach the peer before a "no more copies" count.
SETTLE = 0.03

_ids = itertools.count(1)


class RecordingUser:
    """A transaction user that records every upcall."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[SipRequest, Flow, ServerTransaction | None]] = (
            asyncio.Queue()
        )
        self.cancels: asyncio.Queue[tuple[ServerTransaction, SipRequest]] = asyncio.Queue()
        self.strays: asyncio.Queue[SipResponse] = asyncio.Queue()

    def on_request(
        self, request: SipRequest, flow: Flow, transaction: ServerTransaction | None
    ) -> None:
        self.requests.put_nowait((request, flow, transaction))

    def on_cancel(self, transaction: ServerTransaction, cancel: SipRequest) -> None:
        self.cancels.put_nowait((transaction, cancel))

    def on_stray_response(self, response: SipResponse, flow: Flow) -> None:
        self.strays.put_nowait(response)

    async def next_request(self) -> tuple[SipRequest, Flow, ServerTransaction | None]:
        return await asyncio.wait_for(self.requests.get(), WAIT)


class UdpPeer(asyncio.DatagramProtocol):
    """A raw UDP endpoint standing in for the remote UA; logs arrival times."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.log: list[tuple[float, SipMessage]] = []
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        self.log.append((asyncio.get_running_loop().time(), message))
        self.inbox.put_nowait(message)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return Address(host, port)

    @property
    def flow(self) -> Flow:
        return Flow(TransportKind.UDP, self.address)

    def send(self, message: SipMessage, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(message), (to.host, to.port))

    async def next_where(
        self, predicate: Callable[[SipMessage], bool], timeout: float = WAIT
    ) -> SipMessage:
        """The next received message matching `predicate`; others are skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError("expected message did not arrive")
            message = await asyncio.wait_for(self.inbox.get(), remaining)
            if predicate(message):
                return message

    async def next_request(self, method: str, timeout: float = WAIT) -> SipRequest:
        message = await self.next_where(
            lambda m: isinstance(m, SipRequest) and m.method == method, timeout
        )
        assert isinstance(message, SipRequest)
        return message

    async def next_response(self, status: int, timeout: float = WAIT) -> SipResponse:
        message = await self.next_where(
            lambda m: isinstance(m, SipResponse) and m.status == status, timeout
        )
        assert isinstance(message, SipResponse)
        return message

    def times(self, predicate: Callable[[SipMessage], bool]) -> list[float]:
        return [at for at, message in self.log if predicate(message)]

    def count(self, predicate: Callable[[SipMessage], bool]) -> int:
        return len(self.times(predicate))


def is_request(method: str) -> Callable[[SipMessage], bool]:
    return lambda m: isinstance(m, SipRequest) and m.method == method


def is_response(status: int) -> Callable[[SipMessage], bool]:
    return lambda m: isinstance(m, SipResponse) and m.status == status


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def statuses_of(transaction: ClientTransaction) -> list[int]:
    """Every response status the transaction yields, within a bounded time."""

    async def collect() -> list[int]:
        return [response.status async for response in transaction]

    return await asyncio.wait_for(collect(), WAIT)


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def make_stack(
    timers: Timers = QUICK,
) -> tuple[SipTransport, TransactionLayer, RecordingUser]:
    user = RecordingUser()
    transport = SipTransport("127.0.0.1", 0)
    layer = TransactionLayer(transport, user, timers)
    await transport.start()
    return transport, layer, user


@pytest.fixture
async def stack() -> AsyncIterator[tuple[TransactionLayer, RecordingUser]]:
    transport, layer, user = await make_stack(QUICK)
    yield layer, user
    await layer.stop()
    await transport.stop()


@pytest.fixture
async def timed_stack() -> AsyncIterator[tuple[TransactionLayer, RecordingUser]]:
    transport, layer, user = await make_stack(TIMED)
    yield layer, user
    await layer.stop()
    await transport.stop()


@pytest.fixture
async def peer() -> AsyncIterator[UdpPeer]:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    yield protocol
    assert protocol.transport is not None
    protocol.transport.close()


def build_request(
    method: str,
    via: str,
    *,
    call_id: str | None = None,
    seq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    extra: str = "",
) -> SipRequest:
    call_id = call_id or f"call-{next(_ids)}@test"
    to = "<sip:bob@test>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "From: <sip:alice@test>;tag=alice-1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {seq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@127.0.0.1>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    request = parse_message(text.encode())
    assert isinstance(request, SipRequest)
    return request


def outgoing(layer: TransactionLayer, method: str, *, seq: int = 1, extra: str = "") -> SipRequest:
    """A request the layer sends: its own Via with a fresh branch."""
    return build_request(method, str(layer.via_for(TransportKind.UDP)), seq=seq, extra=extra)


def incoming(
    peer: UdpPeer,
    method: str,
    branch: str | None = None,
    *,
    call_id: str | None = None,
    seq: int = 1,
    to_tag: str | None = None,
) -> SipRequest:
    """A request the raw peer sends to the layer."""
    branch = branch or f"z9hG4bK-peer{next(_ids)}"
    via = f"SIP/2.0/UDP 127.0.0.1:{peer.address.port};branch={branch};rport"
    return build_request(method, via, call_id=call_id, seq=seq, to_tag=to_tag)


def layer_address(layer: TransactionLayer) -> Address:
    return layer.transport.local_address


# --- client, non-INVITE ------------------------------------------------------------------


async def test_client_non_invite_retransmits_per_timer_e_and_ends_with_408_at_timer_f(
    timed_stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, _ = timed_stack
    loop = asyncio.get_running_loop()
    started = loop.time()
    transaction = layer.send_request(outgoing(layer, "OPTIONS"), peer.flow)
    final = await asyncio.wait_for(transaction.final, layer.timers.b + WAIT)
    assert final.status == 408
    assert loop.time() - started >= layer.timers.b * 0.95

    await asyncio.sleep(SETTLE)
    sent = peer.times(is_request("OPTIONS"))
    intervals = gaps(sent)
    # 0, .02, .06, .14, .30, then every T2 until 1.28 s: 11 copies in all.
    assert 9 <= len(sent) <= 11, intervals
    for interval, expected in zip(intervals[:3], (0.02, 0.04, 0.08), strict=True):
        assert expected * 0.8 <= interval <= expected + SLACK, intervals
    for interval in intervals[3:]:
        assert layer.timers.t2 * 0.8 <= interval <= layer.timers.t2 + SLACK, intervals

    await wait_until(lambda: layer.active_transactions == 0)
    await asyncio.sleep(2 * layer.timers.t2)
    assert peer.count(is_request("OPTIONS")) == len(sent), "retransmitted after timer F"


async def test_client_non_invite_final_response_stops_retransmission_and_absorbs_copies(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    transaction = layer.send_request(outgoing(layer, "OPTIONS"), peer.flow)
    request = await peer.next_request("OPTIONS")
    # A provisional moves it to Proceeding, where it keeps retransmitting at T2.
    peer.send(make_response(request, 100), layer_address(layer))
    await peer.next_request("OPTIONS", timeout=layer.timers.t2 + SLACK + 0.05)
    assert transaction.state is ClientState.PROCEEDING
    ok = make_response(request, 200, to_tag="bob-1")
    peer.send(ok, layer_address(layer))

    statuses = await statuses_of(transaction)
    assert statuses == [100, 200]
    await asyncio.sleep(SETTLE)
    assert (await transaction.final).status == 200
    # Iterating a finished transaction again ends at once instead of hanging.
    assert await statuses_of(transaction) == []

    copies = peer.count(is_request("OPTIONS"))
    peer.send(ok, layer_address(layer))  # a retransmitted 200 lands in Completed
    await wait_until(lambda: layer.active_transactions == 0, layer.timers.t4 + WAIT)
    assert user.strays.empty()
    await asyncio.sleep(2 * layer.timers.t2)
    assert peer.count(is_request("OPTIONS")) == copies


async def test_client_over_tcp_to_a_closed_port_yields_503(
    stack: tuple[TransactionLayer, RecordingUser],
) -> None:
    layer, _ = stack
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    request = build_request("INVITE", str(layer.via_for(TransportKind.TCP)))
    transaction = layer.send_request(
        request, Flow(TransportKind.TCP, Address("127.0.0.1", closed_port))
    )
    final = await asyncio.wait_for(transaction.final, WAIT)
    assert final.status == 503
    assert final.call_id == request.call_id
    assert await statuses_of(transaction) == [503]
    assert layer.active_transactions == 0


# --- client, INVITE ----------------------------------------------------------------------


async def test_client_invite_retransmits_per_timer_a_without_cap_and_times_out_at_timer_b(
    timed_stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, _ = timed_stack
    transaction = layer.send_request(outgoing(layer, "INVITE"), peer.flow)
    final = await asyncio.wait_for(transaction.final, layer.timers.b + WAIT)
    assert final.status == 408
    intervals = gaps(peer.times(is_request("INVITE")))
    # 0, .02, .06, .14, .30, .62, 1.26: timer A doubles past T2 (unlike timer E).
    assert 5 <= len(intervals) <= 6, intervals
    for interval, expected in zip(intervals, (0.02, 0.04, 0.08, 0.16, 0.32, 0.64), strict=False):
        assert expected * 0.8 <= interval <= expected + SLACK, intervals
    await wait_until(lambda: layer.active_transactions == 0)


async def test_client_invite_stops_retransmitting_on_provisional_and_has_no_timer_b_then(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, _ = stack
    transaction = layer.send_request(outgoing(layer, "INVITE"), peer.flow)
    invite = await peer.next_request("INVITE")
    await peer.next_request("INVITE")  # one retransmission (timer A) ...
    peer.send(make_response(invite, 180, to_tag="bob-1"), layer_address(layer))
    responses = aiter(transaction)
    assert (await asyncio.wait_for(anext(responses), WAIT)).status == 180
    await asyncio.sleep(SETTLE)
    copies = peer.count(is_request("INVITE"))
    assert copies >= 2

    # ... and none after the 180; ringing also outlives 64*T1 (timer B is for Calling only).
    await asyncio.sleep(layer.timers.b + 0.2)
    assert peer.count(is_request("INVITE")) == copies
    assert not transaction.final.done()
    assert transaction.state is ClientState.PROCEEDING

    peer.send(make_response(invite, 486, to_tag="bob-1"), layer_address(layer))
    assert (await asyncio.wait_for(anext(responses), WAIT)).status == 486
    await peer.next_request("ACK")


async def test_client_invite_acks_non_2xx_in_the_transaction_and_reacks_retransmissions(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    request = outgoing(layer, "INVITE", seq=5, extra="Route: <sip:proxy.test;lr>\r\n")
    transaction = layer.send_request(request, peer.flow)
    invite = await peer.next_request("INVITE")
    busy = make_response(invite, 486, to_tag="bob-9")
    peer.send(busy, layer_address(layer))

    assert (await asyncio.wait_for(transaction.final, WAIT)).status == 486
    ack = await peer.next_request("ACK")
    # RFC 3261 17.1.1.3: same branch, Request-URI and Route; To with the response's tag.
    assert ack.top_via.branch == request.top_via.branch
    assert ack.uri == request.uri
    assert str(ack.cseq) == "5 ACK"
    assert ack.call_id == request.call_id
    assert ack.from_ == request.from_
    assert ack.to.tag == "bob-9"
    assert ack.headers.values("Route") == ["<sip:proxy.test;lr>"]

    peer.send(busy, layer_address(layer))
    await peer.next_request("ACK")
    assert transaction.state is ClientState.COMPLETED
    # Timer D (shrunk to 0.3 s here) then removes it; nothing reached the TU.
    await wait_until(lambda: layer.active_transactions == 0, layer.timers.d + WAIT)
    assert user.strays.empty()
    assert peer.count(is_request("ACK")) == 2


async def test_client_invite_2xx_goes_to_tu_and_retransmitted_2xx_are_strays(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    transaction = layer.send_request(outgoing(layer, "INVITE"), peer.flow)
    invite = await peer.next_request("INVITE")
    peer.send(make_response(invite, 100), layer_address(layer))
    peer.send(make_response(invite, 180, to_tag="bob-2"), layer_address(layer))
    ok = make_response(invite, 200, to_tag="bob-2")
    peer.send(ok, layer_address(layer))

    assert await statuses_of(transaction) == [100, 180, 200]
    assert transaction.state is ClientState.ACCEPTED
    peer.send(ok, layer_address(layer))
    stray = await asyncio.wait_for(user.strays.get(), WAIT)
    assert stray.status == 200
    assert stray.to.tag == "bob-2"
    # The ACK for a 2xx belongs to the TU (dialog), never the transaction.
    assert peer.count(is_request("ACK")) == 0
    # Timer M ends the Accepted state after 64*T1.
    await wait_until(lambda: layer.active_transactions == 0, layer.timers.b + WAIT)
    assert peer.count(is_request("ACK")) == 0


async def test_cancel_waits_for_a_provisional_then_uses_the_invite_branch(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, _ = stack
    request = outgoing(layer, "INVITE", seq=3)
    transaction = layer.send_request(request, peer.flow)
    transaction.cancel()
    invite = await peer.next_request("INVITE")
    await peer.next_request("INVITE")
    await peer.next_request("INVITE")  # three INVITEs seen (~60 ms), still no CANCEL
    assert peer.count(is_request("CANCEL")) == 0

    peer.send(make_response(invite, 180, to_tag="bob-3"), layer_address(layer))
    cancel = await peer.next_request("CANCEL")
    assert cancel.top_via.branch == request.top_via.branch
    assert cancel.uri == request.uri
    assert str(cancel.cseq) == "3 CANCEL"
    assert cancel.to.tag is None
    assert cancel.call_id == request.call_id

    peer.send(make_response(cancel, 200), layer_address(layer))
    peer.send(make_response(invite, 487, to_tag="bob-3"), layer_address(layer))
    assert (await asyncio.wait_for(transaction.final, WAIT)).status == 487
    assert transaction.cancel_transaction is not None
    assert (await asyncio.wait_for(transaction.cancel_transaction.final, WAIT)).status == 200
    await peer.next_request("ACK")


async def test_timer_c_cancels_an_invite_stuck_in_proceeding(peer: UdpPeer) -> None:
    transport, layer, _ = await make_stack(
        Timers(t1=QUICK.t1, t2=QUICK.t2, t4=QUICK.t4, d=QUICK.d, c=0.3)
    )
    try:
        transaction = layer.send_request(outgoing(layer, "INVITE"), peer.flow)
        invite = await peer.next_request("INVITE")
        peer.send(make_response(invite, 180, to_tag="bob-4"), layer_address(layer))
        cancel = await peer.next_request("CANCEL", timeout=0.3 + WAIT)
        assert cancel.top_via.branch == invite.top_via.branch
        peer.send(make_response(cancel, 200), layer_address(layer))
        peer.send(make_response(invite, 487, to_tag="bob-4"), layer_address(layer))
        assert (await asyncio.wait_for(transaction.final, WAIT)).status == 487
    finally:
        await layer.stop()
        await transport.stop()


async def test_cancelled_invite_without_final_ends_64_t1_after_the_cancel(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, _ = stack
    transaction = layer.send_request(outgoing(layer, "INVITE"), peer.flow)
    invite = await peer.next_request("INVITE")
    peer.send(make_response(invite, 180, to_tag="bob-5"), layer_address(layer))
    await wait_until(lambda: transaction.state is ClientState.PROCEEDING)
    transaction.cancel()
    cancel = await peer.next_request("CANCEL")
    peer.send(make_response(cancel, 200), layer_address(layer))
    # The callee never sends 487: RFC 3261 9.1 gives up 64*T1 after the CANCEL.
    final = await asyncio.wait_for(transaction.final, layer.timers.b + WAIT)
    assert final.status == 408
    await wait_until(lambda: layer.active_transactions == 0, layer.timers.b + WAIT)


# --- server, non-INVITE ------------------------------------------------------------------


async def test_server_non_invite_absorbs_retransmissions_and_resends_last_response(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    request = incoming(peer, "OPTIONS")
    peer.send(request, layer_address(layer))
    received, flow, transaction = await user.next_request()
    assert transaction is not None
    assert transaction.state.name == ServerState.TRYING.name
    assert flow.remote == peer.address

    # Retransmitted before any response: absorbed, nothing sent back.
    peer.send(request, layer_address(layer))
    await asyncio.sleep(0.05)
    assert user.requests.empty()
    assert peer.log == []

    transaction.respond(make_response(received, 200, to_tag="srv-1"))
    first = await peer.next_response(200)
    peer.send(request, layer_address(layer))
    second = await peer.next_response(200)
    assert second == first
    assert user.requests.empty()
    assert transaction.state is ServerState.COMPLETED
    assert layer.active_transactions == 1
    # Timer J (64*T1 on UDP) then removes it.
    await wait_until(lambda: layer.active_transactions == 0, layer.timers.b + WAIT)


# --- server, INVITE ----------------------------------------------------------------------


async def test_server_invite_sends_100_at_once_and_resends_it_for_retransmissions(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    request = incoming(peer, "INVITE")
    peer.send(request, layer_address(layer))
    trying = await peer.next_response(100)
    assert trying.to.tag is None
    assert trying.call_id == request.call_id
    _, _, transaction = await user.next_request()
    assert transaction is not None
    assert transaction.is_invite
    assert not transaction.is_final

    peer.send(request, layer_address(layer))
    await peer.next_response(100)
    assert user.requests.empty()


async def test_server_invite_non_2xx_retransmitted_per_timer_g_until_ack(
    timed_stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = timed_stack
    branch = "z9hG4bK-g1"
    request = incoming(peer, "INVITE", branch=branch, seq=4)
    peer.send(request, layer_address(layer))
    received, _, transaction = await user.next_request()
    assert transaction is not None
    transaction.respond(make_response(received, 486, to_tag="srv-2"))
    assert transaction.is_final
    for _ in range(4):
        await peer.next_response(486)
    intervals = gaps(peer.times(is_response(486)))
    for interval, expected in zip(intervals, (0.02, 0.04, 0.08), strict=True):
        assert expected * 0.8 <= interval <= expected + SLACK, intervals

    ack = incoming(peer, "ACK", branch=branch, call_id=request.call_id, seq=4, to_tag="srv-2")
    peer.send(ack, layer_address(layer))
    assert await asyncio.wait_for(transaction.confirmed, WAIT) is True
    await asyncio.sleep(SETTLE)
    copies = peer.count(is_response(486))
    await asyncio.sleep(3 * layer.timers.t2)
    assert peer.count(is_response(486)) == copies, "486 retransmitted after the ACK"
    # The ACK of a non-2xx belongs to the transaction and is not passed up.
    assert user.requests.empty()
    # Timer I (T4) then ends the Confirmed state.
    await wait_until(lambda: layer.active_transactions == 0, layer.timers.t4 + WAIT)


async def test_server_invite_non_2xx_without_ack_ends_at_timer_h(
    timed_stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = timed_stack
    peer.send(incoming(peer, "INVITE"), layer_address(layer))
    received, _, transaction = await user.next_request()
    assert transaction is not None
    transaction.respond(make_response(received, 603, to_tag="srv-3"))
    assert await asyncio.wait_for(transaction.confirmed, layer.timers.b + WAIT) is False
    assert transaction.state is ServerState.TERMINATED
    assert layer.active_transactions == 0

    await asyncio.sleep(SETTLE)
    intervals = gaps(peer.times(is_response(603)))
    assert 8 <= len(intervals) <= 10, intervals
    for interval in intervals[3:]:
        assert layer.timers.t2 * 0.8 <= interval <= layer.timers.t2 + SLACK, intervals
    copies = peer.count(is_response(603))
    await asyncio.sleep(2 * layer.timers.t2)
    assert peer.count(is_response(603)) == copies


async def test_server_invite_2xx_retransmitted_until_the_ack_with_its_own_branch(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    request = incoming(peer, "INVITE", seq=8)
    peer.send(request, layer_address(layer))
    received, _, transaction = await user.next_request()
    assert transaction is not None
    transaction.respond(make_response(received, 200, to_tag="srv-4"))
    for _ in range(3):
        await peer.next_response(200)

    # An ACK for another fork's 2xx (other To tag) does not confirm this one.
    other_fork = incoming(peer, "ACK", call_id=request.call_id, seq=8, to_tag="elsewhere")
    peer.send(other_fork, layer_address(layer))
    assert (await user.next_request())[2] is None
    await peer.next_response(200)
    assert not transaction.confirmed.done()

    ack = incoming(peer, "ACK", call_id=request.call_id, seq=8, to_tag="srv-4")
    assert ack.top_via.branch != request.top_via.branch
    peer.send(ack, layer_address(layer))
    passed_up, _, no_transaction = await user.next_request()
    assert passed_up.method == "ACK"
    assert no_transaction is None
    assert await asyncio.wait_for(transaction.confirmed, WAIT) is True
    await asyncio.sleep(SETTLE)
    copies = peer.count(is_response(200))
    await asyncio.sleep(3 * layer.timers.t2)
    assert peer.count(is_response(200)) == copies, "2xx retransmitted after the ACK"
    # Timer L keeps absorbing INVITE retransmissions, then it goes away.
    await wait_until(lambda: layer.active_transactions == 0, layer.timers.b + WAIT)


async def test_server_invite_over_tcp_is_not_retransmitted_and_ends_on_ack() -> None:
    transport, layer, user = await make_stack()
    reader, writer = await asyncio.open_connection("127.0.0.1", transport.port)
    try:
        via = "SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-tcp1"
        request = build_request("INVITE", via, seq=2)
        writer.write(bytes(request))
        await writer.drain()
        assert (await read_stream_response(reader)).status == 100
        received, flow, transaction = await user.next_request()
        assert flow.transport is TransportKind.TCP
        assert transaction is not None
        transaction.respond(make_response(received, 480, to_tag="srv-5"))
        assert (await read_stream_response(reader)).status == 480
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 3 * layer.timers.t1)
        ack = build_request("ACK", via, call_id=request.call_id, seq=2, to_tag="srv-5")
        writer.write(bytes(ack))
        await writer.drain()
        assert await asyncio.wait_for(transaction.confirmed, WAIT) is True
        # Timer I is zero on a reliable transport.
        await wait_until(lambda: layer.active_transactions == 0, 0.5)
    finally:
        writer.close()
        await layer.stop()
        await transport.stop()


async def read_stream_response(reader: asyncio.StreamReader) -> SipResponse:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    response = parse_message(head)
    assert isinstance(response, SipResponse)
    assert response.body == b""
    return response


# --- server, CANCEL ----------------------------------------------------------------------


async def test_cancel_matching_an_invite_gets_200_and_reaches_the_tu(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    branch = "z9hG4bK-c1"
    invite = incoming(peer, "INVITE", branch=branch, seq=6)
    peer.send(invite, layer_address(layer))
    received, _, transaction = await user.next_request()
    assert transaction is not None
    await peer.next_response(100)

    cancel = incoming(peer, "CANCEL", branch=branch, call_id=invite.call_id, seq=6)
    peer.send(cancel, layer_address(layer))
    ok = await peer.next_response(200)
    assert ok.cseq.method == "CANCEL"
    cancelled, cancel_request = await asyncio.wait_for(user.cancels.get(), WAIT)
    assert cancelled is transaction
    assert cancelled.cancelled
    assert cancel_request.method == "CANCEL"
    # A retransmitted CANCEL is answered again without a second upcall.
    peer.send(cancel, layer_address(layer))
    await peer.next_response(200)
    assert user.cancels.empty()

    transaction.respond(make_response(received, 487, to_tag="srv-6"))
    terminated = await peer.next_response(487)
    assert terminated.cseq.method == "INVITE"
    peer.send(
        incoming(peer, "ACK", branch=branch, call_id=invite.call_id, seq=6, to_tag="srv-6"),
        layer_address(layer),
    )
    assert await asyncio.wait_for(transaction.confirmed, WAIT) is True


async def test_cancel_without_matching_invite_gets_481(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    peer.send(incoming(peer, "CANCEL", seq=1), layer_address(layer))
    response = await peer.next_response(481)
    assert response.cseq.method == "CANCEL"
    assert user.cancels.empty()
    assert user.requests.empty()


async def test_cancel_after_the_final_response_gets_200_but_changes_nothing(
    stack: tuple[TransactionLayer, RecordingUser], peer: UdpPeer
) -> None:
    layer, user = stack
    branch = "z9hG4bK-c2"
    invite = incoming(peer, "INVITE", branch=branch, seq=2)
    peer.send(invite, layer_address(layer))
    received, _, transaction = await user.next_request()
    assert transaction is not None
    transaction.respond(make_response(received, 200, to_tag="srv-7"))
    await peer.next_response(200)

    peer.send(
        incoming(peer, "CANCEL", branch=branch, call_id=invite.call_id, seq=2),
        layer_address(layer),
    )
    ok = await peer.next_where(lambda m: isinstance(m, SipResponse) and m.cseq.method == "CANCEL")
    assert isinstance(ok, SipResponse)
    assert ok.status == 200  # RFC 3261 9.2: matched, so 200, though it has no effect
    assert user.cancels.empty()
    assert not transaction.cancelled

"""The media relay with real UDP sockets on loopback: phones are plain sockets in the test."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import uvloop

from vpbx_media.media.rtpout import RtpStream
from vpbx_media.rtp.packet import ReceiverReport, ReportBlock, RtcpPacket, RtpPacket
from vpbx_media.rtp.ports import PortAllocator, PortsExhaustedError
from vpbx_media.rtp.relay import Leg, MediaRelay, RelayState

LOOPBACK = "127.0.0.1"
WAIT_SECONDS = 3.0


@dataclass
class FakePhone(asyncio.DatagramProtocol):
    """A UDP socket standing in for a phone's RTP or RTCP port: records what arrives."""

    received: list[tuple[bytes, tuple[Any, ...]]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.append((data, addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (LOOPBACK, port))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_phone() -> FakePhone:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        FakePhone, local_addr=(LOOPBACK, 0)
    )
    return protocol


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    for _ in range(int(WAIT_SECONDS / 0.005) + 1):
        if condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def rtp(seq: int, ssrc: int, payload_type: int = 0, timestamp: int | None = None) -> bytes:
    ts = (seq * 160) & 0xFFFFFFFF if timestamp is None else timestamp
    payload = seq.to_bytes(4, "big") + b"\xff" * 156
    return bytes(RtpPacket(payload_type, seq & 0xFFFF, ts, ssrc, payload))


async def send_stream(
    phone: FakePhone, port: int, sequence: Iterable[int], ssrc: int, *, burst: int = 20
) -> int:
    """Send RTP in small bursts so loopback socket buffers never overflow."""
    sent = 0
    for seq in sequence:
        phone.send(rtp(seq, ssrc), port)
        sent += 1
        if sent % burst == 0:
            await asyncio.sleep(0.002)
    return sent


def free_range() -> PortAllocator:
    # Other test runs share the machine; the relay skips ports it cannot bind anyway.
    base = random.randrange(30_000, 60_000, 2)
    return PortAllocator(base, base + 63)


@pytest.fixture
def ports() -> PortAllocator:
    return free_range()


@pytest.fixture
async def relay(ports: PortAllocator) -> AsyncIterator[MediaRelay]:
    relay = MediaRelay(LOOPBACK, ports, call_id="test-call", rtcp_interval=None)
    await relay.start()
    yield relay
    await relay.stop()


@pytest.fixture
async def phones() -> AsyncIterator[tuple[FakePhone, FakePhone]]:
    phone_a, phone_b = await open_phone(), await open_phone()
    yield phone_a, phone_b
    phone_a.close()
    phone_b.close()


async def exchange_200_each_way(relay: MediaRelay, phone_a: FakePhone, phone_b: FakePhone) -> None:
    relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    relay_a, relay_b = relay.local_endpoint(Leg.A), relay.local_endpoint(Leg.B)

    await send_stream(phone_a, relay_a.rtp_port, range(1000, 1200), ssrc=0xA)
    await send_stream(phone_b, relay_b.rtp_port, range(5000, 5200), ssrc=0xB)
    await wait_until(lambda: len(phone_b.received) == 200, "200 packets at B")
    await wait_until(lambda: len(phone_a.received) == 200, "200 packets at A")

    # B hears A's packets unchanged, in order, from the relay's B port (symmetric RTP).
    assert [data for data, _ in phone_b.received] == [rtp(s, 0xA) for s in range(1000, 1200)]
    assert {addr[1] for _, addr in phone_b.received} == {relay_b.rtp_port}
    assert [data for data, _ in phone_a.received] == [rtp(s, 0xB) for s in range(5000, 5200)]
    assert {addr[1] for _, addr in phone_a.received} == {relay_a.rtp_port}

    stats = relay.stats()
    size = len(rtp(0, 0))
    for leg in (stats.a, stats.b):
        assert (leg.packets_in, leg.packets_out) == (200, 200)
        assert (leg.bytes_in, leg.bytes_out) == (200 * size, 200 * size)
        assert (leg.expected, leg.received, leg.lost) == (200, 200, 0)
        assert (leg.rejected, leg.dropped, leg.malformed) == (0, 0, 0)
    assert stats.a.ssrc == 0xA
    assert stats.b.ssrc == 0xB


async def test_rtp_flows_both_ways_and_counters_match(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    await exchange_200_each_way(relay, *phones)


def test_relay_works_on_uvloop() -> None:
    async def scenario() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        relay = MediaRelay(LOOPBACK, free_range(), call_id="uvloop-call", rtcp_interval=None)
        await relay.start()
        phone_a, phone_b = await open_phone(), await open_phone()
        try:
            await exchange_200_each_way(relay, phone_a, phone_b)
        finally:
            phone_a.close()
            phone_b.close()
            await relay.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), 10))


async def test_loss_is_counted_from_sequence_gaps_across_wraparound(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    # 200 sequence numbers crossing 65535 -> 0; the "network" loses 7 of them.
    sequence = [(65_450 + offset) & 0xFFFF for offset in range(200)]
    lost = {sequence[i] for i in (5, 60, 85, 86, 87, 150, 199 - 1)}
    sent = await send_stream(
        phone_a, relay.local_endpoint(Leg.A).rtp_port, [s for s in sequence if s not in lost], 7
    )
    await wait_until(lambda: len(phone_b.received) == sent, "the surviving packets at B")

    stats = relay.stats().a
    assert stats.expected == 200
    assert stats.received == 193
    assert stats.lost == 7
    assert stats.loss_ratio == pytest.approx(7 / 200)


async def test_latches_to_the_real_source_behind_nat(relay: MediaRelay) -> None:
    """SDP names one port (the phone's private view); packets come from another (its NAT)."""
    sdp_port_socket, nat_socket, phone_b = (
        await open_phone(),
        await open_phone(),
        await open_phone(),
    )
    try:
        relay.set_remote(Leg.A, LOOPBACK, sdp_port_socket.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
        relay_a, relay_b = relay.local_endpoint(Leg.A), relay.local_endpoint(Leg.B)

        # Before A sends anything, B's media can only go where A's SDP said.
        phone_b.send(rtp(1, 0xB), relay_b.rtp_port)
        await wait_until(lambda: len(sdp_port_socket.received) == 1, "pre-latch packet")

        await send_stream(nat_socket, relay_a.rtp_port, range(10), ssrc=0xA)
        await wait_until(lambda: len(phone_b.received) == 10, "A's packets at B")
        await send_stream(phone_b, relay_b.rtp_port, range(2, 12), ssrc=0xB)
        await wait_until(lambda: len(nat_socket.received) == 10, "B's packets at the NAT port")

        assert len(sdp_port_socket.received) == 1
        stats = relay.stats().a
        assert stats.latched
        assert stats.remote == (LOOPBACK, nat_socket.port)
    finally:
        for phone in (sdp_port_socket, nat_socket, phone_b):
            phone.close()


async def test_injected_rtp_is_not_latched_mid_stream(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    attacker = await open_phone()
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
        relay_a, relay_b = relay.local_endpoint(Leg.A), relay.local_endpoint(Leg.B)

        await send_stream(phone_a, relay_a.rtp_port, range(30), ssrc=0xA)
        await wait_until(lambda: len(phone_b.received) == 30, "A's stream at B")
        # The attacker interleaves its own stream with A's ongoing one.
        for seq in range(20):
            attacker.send(rtp(seq, 0xBAD), relay_a.rtp_port)
            phone_a.send(rtp(30 + seq, 0xA), relay_a.rtp_port)
            await asyncio.sleep(0.002)
        await wait_until(lambda: len(phone_b.received) == 50, "A's stream at B")
        await wait_until(lambda: relay.stats().a.rejected == 20, "20 rejected packets")
        await send_stream(phone_b, relay_b.rtp_port, range(10), ssrc=0xB)
        await wait_until(lambda: len(phone_a.received) == 10, "B's stream at A")

        assert all(RtpPacket.parse(data).ssrc == 0xA for data, _ in phone_b.received)
        assert attacker.received == []
        stats = relay.stats().a
        assert stats.remote == (LOOPBACK, phone_a.port)
        assert stats.packets_in == 50
    finally:
        attacker.close()


async def test_new_sender_takes_over_after_the_old_one_fell_silent(
    ports: PortAllocator, phones: tuple[FakePhone, FakePhone]
) -> None:
    """A transfer done behind an SBC: same SDP, a new source with a new SSRC."""
    phone_a, phone_b = phones
    relay = MediaRelay(LOOPBACK, ports, rtcp_interval=None, relatch_silence=0.05)
    await relay.start()
    transferred = await open_phone()
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
        relay_a = relay.local_endpoint(Leg.A)
        await send_stream(phone_a, relay_a.rtp_port, range(20), ssrc=0xA)
        await wait_until(lambda: len(phone_b.received) == 20, "A's stream at B")
        # A stops; the new party's stream keeps coming until the relay trusts it.
        for seq in range(100):
            transferred.send(rtp(40_000 + seq, 0xC), relay_a.rtp_port)
            await asyncio.sleep(0.005)
            if relay.stats().a.remote == (LOOPBACK, transferred.port):
                break
        assert relay.stats().a.remote == (LOOPBACK, transferred.port)
        forwarded = [RtpPacket.parse(data) for data, _ in phone_b.received]
        # B hears the new sender's audio, continuing the stream it already knows.
        assert int.from_bytes(forwarded[-1].payload[:4], "big") >= 40_000
        assert {packet.ssrc for packet in forwarded} == {0xA}
        assert [packet.sequence_number for packet in forwarded] == list(range(len(forwarded)))
        assert relay.stats().b.source_changes == 1
    finally:
        transferred.close()
        await relay.stop()


async def test_new_sdp_address_reopens_the_latch(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    new_phone = await open_phone()
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
        relay_a = relay.local_endpoint(Leg.A)
        await send_stream(phone_a, relay_a.rtp_port, range(30), ssrc=0xA)
        await wait_until(lambda: len(phone_b.received) == 30, "A's stream at B")
        # re-INVITE after a transfer: the SDP now names the new phone
        relay.set_remote(Leg.A, LOOPBACK, new_phone.port)
        await send_stream(new_phone, relay_a.rtp_port, range(5), ssrc=0xD)
        await wait_until(lambda: len(phone_b.received) == 35, "the new phone's stream at B")
        assert relay.stats().a.remote == (LOOPBACK, new_phone.port)
    finally:
        new_phone.close()


async def test_rtcp_passes_both_ways(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    rtcp_a, rtcp_b = await open_phone(), await open_phone()
    phone_a, phone_b = phones
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port, rtcp_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port, rtcp_b.port)
        relay_a, relay_b = relay.local_endpoint(Leg.A), relay.local_endpoint(Leg.B)
        report_a = bytes(ReceiverReport(0xA, (ReportBlock(0xB, 0, 0, 5000, 3),)))
        report_b = bytes(ReceiverReport(0xB, (ReportBlock(0xA, 0, 0, 1000, 4),)))
        rtcp_a.send(report_a, relay_a.rtcp_port)
        rtcp_b.send(report_b, relay_b.rtcp_port)
        await wait_until(lambda: bool(rtcp_a.received and rtcp_b.received), "RTCP both ways")

        assert rtcp_b.received == [(report_a, (LOOPBACK, relay_b.rtcp_port))]
        assert rtcp_a.received == [(report_b, (LOOPBACK, relay_a.rtcp_port))]
        assert phone_a.received == []  # RTCP never leaks onto the RTP ports
        stats = relay.stats()
        assert (stats.a.rtcp_packets_in, stats.a.rtcp_packets_out) == (1, 1)
        assert (stats.b.rtcp_packets_in, stats.b.rtcp_packets_out) == (1, 1)
    finally:
        rtcp_a.close()
        rtcp_b.close()


async def test_rtcp_multiplexed_on_the_rtp_port_goes_to_the_rtcp_port(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    rtcp_b = await open_phone()
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port, rtcp_b.port)
        report = bytes(ReceiverReport(0xA, (ReportBlock(0xB, 0, 0, 5000, 3),)))
        phone_a.send(report, relay.local_endpoint(Leg.A).rtp_port)
        await wait_until(lambda: bool(rtcp_b.received), "RTCP at B's RTCP port")
        assert rtcp_b.received[0][0] == report
        assert phone_b.received == []
        assert relay.stats().a.packets_in == 0  # not mistaken for an RTP packet
    finally:
        rtcp_b.close()


async def test_relay_reports_reception_to_a_peer_whose_counterpart_sends_no_rtcp(
    ports: PortAllocator, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    rtcp_a = await open_phone()
    relay = MediaRelay(LOOPBACK, ports, rtcp_interval=0.05)
    await relay.start()
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port, rtcp_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
        kept = [seq for seq in range(100) if seq % 10 != 3]  # 10 lost
        await send_stream(phone_a, relay.local_endpoint(Leg.A).rtp_port, kept, ssrc=0xA)
        await wait_until(lambda: bool(rtcp_a.received), "a generated receiver report")

        report = RtcpPacket.parse(rtcp_a.received[0][0]).packets[0]
        assert isinstance(report, ReceiverReport)
        (block,) = report.reports
        assert block.ssrc == 0xA
        assert block.highest_sequence == 99
        assert block.cumulative_lost == 10
        assert block.fraction_lost == (10 << 8) // 100
        assert relay.stats().a.rtcp_generated >= 1
    finally:
        rtcp_a.close()
        await relay.stop()


async def test_hold_address_stops_media_towards_the_leg(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
    relay.set_remote(Leg.B, "0.0.0.0", 4000)  # B put the call on hold, RFC 2543 style
    await send_stream(phone_a, relay.local_endpoint(Leg.A).rtp_port, range(10), ssrc=0xA)
    await wait_until(lambda: relay.stats().b.dropped == 10, "10 packets held back")
    assert phone_b.received == []
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)  # resume
    await send_stream(phone_a, relay.local_endpoint(Leg.A).rtp_port, range(10, 15), ssrc=0xA)
    await wait_until(lambda: len(phone_b.received) == 5, "media after resume")


async def test_served_legs_go_to_the_node_and_back_to_the_relay(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    port_a, port_b = (relay.local_endpoint(leg).rtp_port for leg in Leg)
    to_node: dict[Leg, list[bytes]] = {Leg.A: [], Leg.B: []}
    # The node serves A (a prompt): A's RTP comes to it, B's reaches nobody.
    relay.serve(Leg.A, to_node[Leg.A].append)
    phone_a.send(rtp(1, 0xA), port_a)
    phone_b.send(rtp(1, 0xB), port_b)
    await wait_until(lambda: len(to_node[Leg.A]) == 1, "A's packet at the node")
    await wait_until(lambda: relay.stats().b.packets_in == 1, "B's packet in")
    # Both legs served (a conference): each to its own consumer, nothing forwarded.
    relay.serve(Leg.B, to_node[Leg.B].append)
    phone_a.send(rtp(2, 0xA), port_a)
    phone_b.send(rtp(2, 0xB), port_b)
    await wait_until(lambda: len(to_node[Leg.B]) == 1, "B's packet at the node")
    await wait_until(lambda: len(to_node[Leg.A]) == 2, "A's second packet at the node")
    # A handed back while B is still served: A's RTP must not reach B's peer.
    relay.serve(Leg.A, None)
    phone_a.send(rtp(3, 0xA), port_a)
    await wait_until(lambda: relay.stats().a.packets_in == 3, "A's third packet in")
    relay.serve(Leg.B, None)  # both back: bridged again
    phone_a.send(rtp(4, 0xA), port_a)
    phone_b.send(rtp(4, 0xB), port_b)
    await wait_until(lambda: len(phone_b.received) == 1, "A's packet at B")
    await wait_until(lambda: len(phone_a.received) == 1, "B's packet at A")
    assert [data for data, _ in phone_b.received] == [rtp(4, 0xA)]
    assert [data for data, _ in phone_a.received] == [rtp(4, 0xB)]
    assert to_node == {Leg.A: [rtp(1, 0xA), rtp(2, 0xA)], Leg.B: [rtp(2, 0xB)]}


async def test_stop_closes_sockets_and_releases_ports(ports: PortAllocator) -> None:
    relay = MediaRelay(LOOPBACK, ports, rtcp_interval=0.05)
    await relay.start()
    used = [relay.local_endpoint(leg) for leg in Leg]
    assert ports.in_use == 2
    await relay.stop()
    await relay.stop()  # idempotent: a second stop must not release twice
    assert relay.state is RelayState.STOPPED
    assert ports.in_use == 0
    for endpoint in used:
        for port in (endpoint.rtp_port, endpoint.rtcp_port):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((LOOPBACK, port))  # fails if the relay still holds it


async def test_start_fails_cleanly_when_the_range_is_exhausted() -> None:
    base = random.randrange(30_000, 60_000, 2)
    ports = PortAllocator(base, base + 1)  # room for one leg, a call needs two
    relay = MediaRelay(LOOPBACK, ports, rtcp_interval=None)
    with pytest.raises(PortsExhaustedError, match=f"{base}-{base + 1}"):
        await relay.start()
    assert ports.in_use == 0


async def test_malformed_datagrams_are_counted_not_forwarded(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    port = relay.local_endpoint(Leg.A).rtp_port
    phone_a.send(b"\x00" * 20, port)  # version 0
    phone_a.send(b"\x80\x00", port)  # too short
    phone_a.send(rtp(1, 0xA), port)
    await wait_until(lambda: len(phone_b.received) == 1, "the valid packet")
    assert relay.stats().a.malformed == 2


def test_port_allocator_hands_out_even_ports_and_reuses_them_last() -> None:
    allocator = PortAllocator(10_001, 10_010)  # odd start is rounded up
    first = [allocator.allocate() for _ in range(4)]
    assert first == [10_002, 10_004, 10_006, 10_008]
    assert allocator.available == 0
    with pytest.raises(PortsExhaustedError, match="all 4 RTP port pairs in 10001-10010"):
        allocator.allocate()
    allocator.release(10_004)
    allocator.release(10_002)
    assert allocator.allocate() == 10_004
    with pytest.raises(ValueError, match="not allocated"):
        allocator.release(10_002)


@pytest.mark.parametrize(("start", "end"), [(10_000, 10_000), (20_000, 10_000), (0, 100)])
def test_port_allocator_refuses_unusable_ranges(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="port range"):
        PortAllocator(start, end)


# -- a leg's outgoing RTP is one stream, whatever its source ------------------------------


def heard(phone: FakePhone) -> list[RtpPacket]:
    return [RtpPacket.parse(data) for data, _ in phone.received]


def assert_one_stream(packets: list[RtpPacket]) -> None:
    """One SSRC, sequence numbers +1 each, timestamps never going back."""
    assert len({packet.ssrc for packet in packets}) == 1
    for before, after in itertools.pairwise(packets):
        assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF
        assert 0 <= (after.timestamp - before.timestamp) & 0xFFFFFFFF < 0x80000000


async def test_playback_then_the_peer_is_one_stream_with_a_marker_at_the_switch(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    """Ringback or music on hold, then the person: the phone must not see the sequence
    numbers go back (baresip and some phones drop the new stream as "late")."""
    phone_a, phone_b = phones
    relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    port_b = relay.local_endpoint(Leg.B).rtp_port
    # The node serves A: its own stream, numbered well ahead of what B will send.
    relay.serve(Leg.A, lambda packet: None)
    playback = RtpStream(0, ssrc=0x1111, sequence=65_530, timestamp=4_000_000_000)
    send = relay.sender(Leg.A)
    for _ in range(10):  # crosses the sequence wrap, as a real stream does sometimes
        send(playback.packet(b"\xff" * 160))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # a moment of silence between ringback and the answer
    relay.serve(Leg.A, None)
    await send_stream(phone_b, port_b, range(1000, 1020), ssrc=0xB)
    await wait_until(lambda: len(phone_a.received) == 30, "ringback and B's audio at A")

    packets = heard(phone_a)
    assert_one_stream(packets)
    assert packets[0].ssrc == 0x1111
    assert [packet.marker for packet in packets] == [True] + [False] * 9 + [True] + [False] * 19
    # The timestamp moved on by the gap between the streams (about 120 ms at 8 kHz).
    gap = (packets[10].timestamp - packets[9].timestamp) & 0xFFFFFFFF
    assert 160 <= gap <= 8000
    # Within B's stream the spacing is B's own.
    assert {
        (after.timestamp - before.timestamp) & 0xFFFFFFFF
        for before, after in itertools.pairwise(packets[10:])
    } == {160}
    assert [int.from_bytes(p.payload[:4], "big") for p in packets[10:]] == list(range(1000, 1020))
    stats = relay.stats().a
    assert (stats.out_ssrc, stats.source_changes) == (0x1111, 1)


async def test_back_to_the_playback_and_again_to_the_peer_keeps_the_stream(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    """A call on hold and back: peer, music on hold, peer: still one stream."""
    phone_a, phone_b = phones
    relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    port_b = relay.local_endpoint(Leg.B).rtp_port
    await send_stream(phone_b, port_b, range(40_000, 40_010), ssrc=0xB)
    await wait_until(lambda: len(phone_a.received) == 10, "B at A")
    # Forwarded untouched while B is the only source.
    assert [data for data, _ in phone_a.received] == [rtp(s, 0xB) for s in range(40_000, 40_010)]
    relay.serve(Leg.A, lambda packet: None)
    music = RtpStream(0, ssrc=0x2222, sequence=3, timestamp=7)
    send = relay.sender(Leg.A)
    for _ in range(5):
        send(music.packet(b"\xff" * 160))
    relay.serve(Leg.A, None)
    await send_stream(phone_b, port_b, range(40_010, 40_015), ssrc=0xB)
    await wait_until(lambda: len(phone_a.received) == 20, "B, music, B at A")

    packets = heard(phone_a)
    assert_one_stream(packets)
    assert packets[0].ssrc == 0xB
    assert [i for i, packet in enumerate(packets) if packet.marker] == [10, 15]
    assert relay.stats().a.source_changes == 2


async def test_telephone_events_keep_one_timestamp_per_event_after_a_switch(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    port_b = relay.local_endpoint(Leg.B).rtp_port
    relay.serve(Leg.A, lambda packet: None)
    prompt = RtpStream(0, ssrc=0x3333, sequence=60_000)
    send = relay.sender(Leg.A)
    for _ in range(3):
        send(prompt.packet(b"\xff" * 160))
    relay.serve(Leg.A, None)
    # B: audio, then the key 5 (RFC 4733: every packet of the event carries its start
    # timestamp, the marker on the first, the end bit on the last three), then audio.
    sent = [rtp(10, 0xB)]
    start = 11 * 160
    for index, duration in enumerate((160, 320, 480, 640, 640, 640)):
        end = 0x80 if index >= 3 else 0
        payload = bytes((5, end | 10)) + duration.to_bytes(2, "big")
        sent.append(bytes(RtpPacket(101, 11 + index, start, 0xB, payload, marker=index == 0)))
    sent.append(rtp(17, 0xB, timestamp=15 * 160))
    for packet in sent:
        phone_b.send(packet, port_b)
    await wait_until(lambda: len(phone_a.received) == 11, "prompt and B's key at A")

    packets = heard(phone_a)
    assert_one_stream(packets)
    events = [packet for packet in packets if packet.payload_type == 101]
    assert len(events) == 6
    assert len({packet.timestamp for packet in events}) == 1
    assert [packet.marker for packet in events] == [True] + [False] * 5
    # The event keeps its place on B's clock: one frame after B's audio before it,
    # four frames before B's audio after it.
    before, after = packets[3], packets[-1]
    assert (events[0].timestamp - before.timestamp) & 0xFFFFFFFF == 160
    assert (after.timestamp - events[0].timestamp) & 0xFFFFFFFF == 4 * 160


async def test_a_sender_restarting_its_numbering_does_not_make_the_stream_jump(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
    relay.set_remote(Leg.B, LOOPBACK, phone_b.port)
    port_a = relay.local_endpoint(Leg.A).rtp_port
    await send_stream(phone_a, port_a, range(30_000, 30_010), ssrc=0xA)
    await send_stream(phone_a, port_a, range(5, 15), ssrc=0xA)  # same SSRC, new numbering
    await wait_until(lambda: len(phone_b.received) == 20, "A's packets at B")
    packets = heard(phone_b)
    assert_one_stream(packets)
    assert packets[10].marker


async def test_relayed_rtcp_gives_way_to_the_relays_own_once_a_stream_is_rewritten(
    ports: PortAllocator, phones: tuple[FakePhone, FakePhone]
) -> None:
    """A relayed SR or RR would name SSRCs and sequence numbers that the phone on the
    other side never saw; the relay reports itself, under the SSRC the phone hears."""
    phone_a, phone_b = phones
    rtcp_a, rtcp_b = await open_phone(), await open_phone()
    relay = MediaRelay(LOOPBACK, ports, rtcp_interval=0.05)
    await relay.start()
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port, rtcp_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port, rtcp_b.port)
        relay_a, relay_b = relay.local_endpoint(Leg.A), relay.local_endpoint(Leg.B)
        await send_stream(phone_a, relay_a.rtp_port, range(10), ssrc=0xA)
        await send_stream(phone_b, relay_b.rtp_port, range(10), ssrc=0xB)
        await wait_until(lambda: len(phone_b.received) == 10, "A's audio at B")
        await wait_until(lambda: len(phone_a.received) == 10, "B's audio at A")
        report_b = bytes(ReceiverReport(0xB, (ReportBlock(0xA, 0, 0, 9, 0),)))
        rtcp_b.send(report_b, relay_b.rtcp_port)
        await wait_until(lambda: bool(rtcp_a.received), "B's report relayed to A")
        assert rtcp_a.received == [(report_b, (LOOPBACK, relay_a.rtcp_port))]
        # The node's music to B: B's stream is rewritten from then on.
        relay.sender(Leg.B)(RtpStream(0, ssrc=0x4444).packet(b"\xff" * 160))
        await wait_until(lambda: len(phone_b.received) == 11, "the music at B")
        assert relay.stats().b.source_changes == 1
        rtcp_a.received.clear()
        rtcp_b.send(report_b, relay_b.rtcp_port)
        await wait_until(lambda: relay.stats().a.rtcp_dropped == 1, "B's report dropped")
        await send_stream(phone_a, relay_a.rtp_port, range(10, 20), ssrc=0xA)
        await wait_until(lambda: bool(rtcp_a.received), "the relay's own report to A")
        assert all(data != report_b for data, _ in rtcp_a.received)
        report = RtcpPacket.parse(rtcp_a.received[-1][0]).packets[0]
        assert isinstance(report, ReceiverReport)
        assert report.ssrc == 0xB  # who A hears in RTP
        assert report.reports[0].ssrc == 0xA
    finally:
        rtcp_a.close()
        rtcp_b.close()
        await relay.stop()


async def test_multiplexed_rtcp_is_held_back_too_once_a_stream_is_rewritten(
    relay: MediaRelay, phones: tuple[FakePhone, FakePhone]
) -> None:
    phone_a, phone_b = phones
    rtcp_b = await open_phone()
    try:
        relay.set_remote(Leg.A, LOOPBACK, phone_a.port)
        relay.set_remote(Leg.B, LOOPBACK, phone_b.port, rtcp_b.port)
        port_a = relay.local_endpoint(Leg.A).rtp_port
        await send_stream(phone_a, port_a, range(5), ssrc=0xA)
        await wait_until(lambda: len(phone_b.received) == 5, "A's audio at B")
        relay.sender(Leg.B)(RtpStream(0, ssrc=0x5555).packet(b"\xff" * 160))
        await wait_until(lambda: len(phone_b.received) == 6, "the node's audio at B")
        phone_a.send(bytes(ReceiverReport(0xA, (ReportBlock(0xB, 0, 0, 9, 0),))), port_a)
        await wait_until(lambda: relay.stats().b.rtcp_dropped == 1, "A's report held back")
        assert rtcp_b.received == []
        assert relay.stats().a.packets_in == 5  # still not mistaken for RTP
    finally:
        rtcp_b.close()

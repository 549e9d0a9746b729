"""The streams-per-core benchmark's arithmetic (`loadtest.media_streams.analyse`)."""

from __future__ import annotations

import struct

import pytest
from loadtest.media_streams import FRAME_NS, analyse

HEADER = struct.Struct("!BBHII")
STAMP = struct.Struct("@qq")
START = 1_000 * 1_000_000_000


def record(packets: list[tuple[int, int, int, int]]) -> tuple[bytes, bytes]:
    """(ssrc, sequence, frame index, arrival ns) -> the receiver's two buffers."""
    headers = bytearray()
    stamps = bytearray()
    for ssrc, seq, frame, arrival in sorted(packets, key=lambda packet: packet[3]):
        headers += HEADER.pack(0x80, 0, seq & 0xFFFF, (1_000 + 160 * frame) & 0xFFFFFFFF, ssrc)
        stamps += STAMP.pack(*divmod(arrival, 1_000_000_000))
    return bytes(headers), bytes(stamps)


def stream(ssrc: int, count: int, offset_ns: int, seq0: int = 65_530) -> list[tuple[int, ...]]:
    return [(ssrc, seq0 + k, k, START + offset_ns + k * FRAME_NS) for k in range(count)]


def test_on_time_streams_have_no_lateness_and_no_loss() -> None:
    # Two streams, the second always 3 ms after the first (its place in the tick), and
    # sequence numbers wrapping: nothing is late, nothing lost.
    packets = stream(1, 100, 0) + stream(2, 100, 3_000_000)
    result = analyse(*record(packets), START, START + 100 * FRAME_NS)
    assert result["packets"] == 200
    assert result["streams_heard"] == 2
    assert result["gap_lost"] == 0
    assert result["late"] == 0
    assert result["max_lateness_ms"] == 0.0
    assert result["tick_spread_ms"] == pytest.approx(3.0)


def test_late_packets_are_measured_against_the_most_on_time_one() -> None:
    packets = stream(1, 50, 0)
    # The first packet 15 ms late: it must not make the others look early.
    packets[0] = (1, packets[0][1], 0, packets[0][3] + 15_000_000)
    # Packet 20 12 ms late, packet 30 only 5 ms.
    packets[20] = (1, packets[20][1], 20, packets[20][3] + 12_000_000)
    packets[30] = (1, packets[30][1], 30, packets[30][3] + 5_000_000)
    result = analyse(*record(packets), START, START + 50 * FRAME_NS)
    assert result["late"] == 2
    assert result["late_ratio"] == pytest.approx(2 / 50)
    assert result["max_lateness_ms"] == pytest.approx(15.0)
    assert result["streams_with_late"] == 1


def test_sequence_gaps_are_lost_and_dropped_ticks_are_one_gap_not_lateness() -> None:
    packets = stream(1, 40, 0)
    del packets[10:12]  # two packets lost on the way: sequence gap
    # A tick dropped by the scheduler: frame 30's time passes without a packet, the
    # sequence goes on, the timestamp jumps; later packets are on time again.
    packets = [
        (ssrc, seq - 1 if frame > 30 else seq, frame, arrival)
        for ssrc, seq, frame, arrival in packets
        if frame != 30
    ]
    result = analyse(*record(packets), START, START + 40 * FRAME_NS)
    assert result["gap_lost"] == 2
    assert result["late"] == 0


def test_only_packets_inside_the_window_count() -> None:
    packets = stream(1, 100, 0)
    result = analyse(*record(packets), START + 10 * FRAME_NS, START + 19 * FRAME_NS)
    assert result["packets"] == 10
    empty = analyse(b"", b"", START, START + FRAME_NS)
    assert empty["packets"] == 0

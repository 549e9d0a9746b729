"""The outgoing RTP stream: header fields, wrap-around, talkspurts and silence gaps."""

from __future__ import annotations

import pytest

from vpbx_media.media.rtpout import RtpStream
from vpbx_media.rtp.packet import RtpPacket

PAYLOAD = b"\xff" * 160


def test_packets_carry_the_stream_fields() -> None:
    stream = RtpStream(8, ssrc=0xCAFEBABE, sequence=100, timestamp=5000)
    first = RtpPacket.parse(stream.packet(PAYLOAD))
    second = RtpPacket.parse(stream.packet(b"\xd5" * 160))
    assert first == RtpPacket(8, 100, 5000, 0xCAFEBABE, PAYLOAD, marker=True)
    assert second == RtpPacket(8, 101, 5160, 0xCAFEBABE, b"\xd5" * 160, marker=False)
    assert (stream.packets, stream.octets) == (2, 320)
    assert (stream.sequence, stream.timestamp) == (102, 5320)


def test_the_exact_header_octets() -> None:
    stream = RtpStream(0, ssrc=1, sequence=0x1234, timestamp=0xDEADBEEF)
    assert stream.packet(PAYLOAD)[:12] == bytes.fromhex("8080 1234 deadbeef 00000001")
    assert stream.packet(PAYLOAD)[:12] == bytes.fromhex("8000 1235 deadbf8f 00000001")


def test_sequence_and_timestamp_wrap() -> None:
    stream = RtpStream(0, ssrc=7, sequence=0xFFFF, timestamp=0xFFFFFFFF - 159)
    packets = [RtpPacket.parse(stream.packet(PAYLOAD)) for _ in range(3)]
    assert [p.sequence_number for p in packets] == [0xFFFF, 0, 1]
    assert [p.timestamp for p in packets] == [0xFFFFFFFF - 159, 0, 160]


def test_silence_gap_moves_the_timestamp_and_marks_a_talkspurt() -> None:
    stream = RtpStream(0, ssrc=7, sequence=10, timestamp=1000)
    stream.packet(PAYLOAD)
    stream.skip(3)
    assert stream.marker_pending
    after = RtpPacket.parse(stream.packet(PAYLOAD))
    assert after.marker
    assert after.sequence_number == 11  # no packets were sent, so no numbers skipped
    assert after.timestamp == 1000 + 4 * 160
    assert not RtpPacket.parse(stream.packet(PAYLOAD)).marker


def test_mark_starts_a_talkspurt_without_moving_the_clock() -> None:
    stream = RtpStream(0, ssrc=7, sequence=10, timestamp=1000)
    stream.packet(PAYLOAD)
    stream.mark()
    packet = RtpPacket.parse(stream.packet(PAYLOAD))
    assert packet.marker
    assert packet.timestamp == 1160


def test_returned_packets_do_not_change_afterwards() -> None:
    stream = RtpStream(0)
    first = stream.packet(PAYLOAD)
    copy = bytes(first)
    stream.packet(b"\x00" * 160)
    stream.packet(b"\x01" * 20)
    assert first == copy
    assert isinstance(first, bytes)


def test_payload_sizes_may_change() -> None:
    stream = RtpStream(0, ssrc=1, sequence=0, timestamp=0)
    sizes = [len(stream.packet(b"\xff" * n)) for n in (160, 80, 240, 160)]
    assert sizes == [172, 92, 252, 172]
    assert RtpPacket.parse(stream.packet(PAYLOAD)).payload == PAYLOAD


def test_event_packets_keep_their_timestamp_and_take_sequence_numbers() -> None:
    stream = RtpStream(0, ssrc=1, sequence=0, timestamp=8000)
    stream.packet(PAYLOAD)
    start = RtpPacket.parse(stream.event_packet(b"\x05\x0a\x00\xa0", 101, 8160, True))
    update = RtpPacket.parse(stream.event_packet(b"\x05\x0a\x01\x40", 101, 8160, False))
    assert (start.payload_type, start.marker, start.timestamp, start.sequence_number) == (
        101,
        True,
        8160,
        1,
    )
    assert (update.marker, update.timestamp, update.sequence_number) == (False, 8160, 2)
    # The audio clock is the caller's to move across the event (skip()).
    assert stream.timestamp == 8160


def test_random_start_values() -> None:
    streams = [RtpStream(0) for _ in range(8)]
    assert len({s.ssrc for s in streams}) == 8
    assert len({(s.sequence, s.timestamp) for s in streams}) == 8
    assert all(0 <= s.sequence <= 0xFFFF and 0 <= s.timestamp <= 0xFFFFFFFF for s in streams)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, "payload type 128 does not fit 7 bits"),
        ({"payload_type": 0, "sequence": 65536}, "sequence number 65536 does not fit"),
        ({"payload_type": 0, "ssrc": 2**32}, "SSRC and timestamp must fit 32 bits"),
        ({"payload_type": 0, "samples_per_frame": 0}, "must be positive"),
    ],
)
def test_bad_settings(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpStream(**kwargs)

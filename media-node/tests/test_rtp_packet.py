"""RTP and RTCP packets: wire round trips, the exact bytes of known packets, bad input."""

from __future__ import annotations

import pytest

from vpbx_media.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtpHeaderExtension,
    RtpPacket,
    RtpParseError,
    SdesChunk,
    SdesItem,
    SdesItemType,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    is_rtcp,
)

# A PCMU packet as a phone sends it: V=2, M=1, PT=0, seq 0x1234, ts 0xDEADBEEF, ssrc 1.
PCMU_HEADER = bytes.fromhex("8080 1234 deadbeef 00000001")


def test_known_rtp_bytes_parse_to_their_fields() -> None:
    packet = RtpPacket.parse(PCMU_HEADER + b"\xff" * 160)
    assert packet.marker
    assert packet.payload_type == 0
    assert packet.sequence_number == 0x1234
    assert packet.timestamp == 0xDEADBEEF
    assert packet.ssrc == 1
    assert packet.payload == b"\xff" * 160
    assert not packet.has_padding
    assert not packet.has_extension


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(payload_type=8, sequence_number=0, timestamp=0, ssrc=0, payload=b"\xd5" * 160),
        RtpPacket(
            payload_type=101,
            sequence_number=65535,
            timestamp=2**32 - 1,
            ssrc=0xCAFEBABE,
            payload=bytes.fromhex("0a8a0320"),
            marker=True,
            csrc=(1, 2, 3),
            header_extension=RtpHeaderExtension(0xBEDE, bytes.fromhex("10ff0000")),
            padding=b"\x00\x00\x00\x04",
        ),
        RtpPacket(payload_type=0, sequence_number=7, timestamp=160, ssrc=9, padding=b"\x01"),
    ],
    ids=["pcma", "dtmf-with-everything", "padding-only"],
)
def test_rtp_round_trip(packet: RtpPacket) -> None:
    wire = bytes(packet)
    assert RtpPacket.parse(wire) == packet
    assert bytes(RtpPacket.parse(wire)) == wire


def test_rtp_header_bits_on_the_wire() -> None:
    packet = RtpPacket(
        payload_type=101,
        sequence_number=1,
        timestamp=2,
        ssrc=3,
        marker=True,
        csrc=(5,),
        header_extension=RtpHeaderExtension(0x1000),
        padding=b"\x02\x02",
    )
    wire = bytes(packet)
    # V=2 P=1 X=1 CC=1 -> 0b10_1_1_0001; M=1 PT=101 -> 0x80 | 0x65
    assert wire[:2] == bytes((0xB1, 0xE5))
    assert len(wire) == 12 + 4 + 4 + 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "shorter than its header"),
        (bytes.fromhex("4000 0001 00000000 00000000"), "RTP version 1, expected 2"),
        (bytes.fromhex("8200 0001 00000000 00000000") + b"\x00\x00\x00\x01", "2 CSRCs"),
        (bytes.fromhex("9000 0001 00000000 00000000 bede0002 00000000"), "overruns"),
        (bytes.fromhex("a000 0001 00000000 00000000 aa05"), "padding count 5"),
        (bytes.fromhex("a000 0001 00000000 00000000"), "no padding"),
    ],
    ids=["short", "version", "csrc", "extension", "padding-count", "padding-missing"],
)
def test_rtp_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=message):
        RtpPacket.parse(data)


def test_rtp_fields_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="payload type 128"):
        RtpPacket(payload_type=128, sequence_number=0, timestamp=0, ssrc=0)
    with pytest.raises(ValueError, match="sequence number 65536"):
        RtpPacket(payload_type=0, sequence_number=65536, timestamp=0, ssrc=0)
    with pytest.raises(ValueError, match="must end with 3"):
        RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=0, padding=b"\x00\x00\x01")


def compound() -> RtcpPacket:
    block = ReportBlock(
        ssrc=0x11111111,
        fraction_lost=25,
        cumulative_lost=-3,
        highest_sequence=0x0001_0010,
        jitter=17,
        last_sr=0x12345678,
        delay_since_last_sr=655,
    )
    return RtcpPacket(
        (
            SenderReport(
                ssrc=0x22222222,
                ntp_timestamp=0xE9A1_0000_8000_0000,
                rtp_timestamp=160_000,
                packet_count=1000,
                octet_count=160_000,
                reports=(block,),
            ),
            SourceDescription(
                (
                    SdesChunk(
                        0x22222222,
                        (
                            SdesItem(SdesItemType.CNAME, b"alice@192.0.2.1"),
                            SdesItem(SdesItemType.TOOL, b"baresip"),
                        ),
                    ),
                )
            ),
            Bye((0x22222222,), b"call ended"),
        )
    )


def test_rtcp_compound_round_trip() -> None:
    packet = compound()
    wire = bytes(packet)
    assert len(wire) % 4 == 0
    assert RtcpPacket.parse(wire) == packet
    assert bytes(RtcpPacket.parse(wire)) == wire
    assert is_rtcp(wire)


def test_receiver_report_has_the_rfc_3550_layout() -> None:
    report = ReceiverReport(
        ssrc=0xAABBCCDD,
        reports=(
            ReportBlock(1, fraction_lost=128, cumulative_lost=5, highest_sequence=9, jitter=0),
        ),
    )
    wire = bytes(report)
    # V=2 RC=1, PT=201, length 7 words (32 octets - 1 word)
    assert wire[:4] == bytes.fromhex("81c9 0007")
    assert wire[4:8] == bytes.fromhex("aabbccdd")
    assert wire[12:16] == bytes.fromhex("80000005")
    assert RtcpPacket.parse(wire).packets == (report,)


def test_unknown_rtcp_types_are_kept_raw() -> None:
    # An RTPFB generic NACK (RFC 4585): not modelled, must survive untouched.
    nack = bytes.fromhex("81cd0003 00000001 00000002 00100000")
    rr = bytes(ReceiverReport(ssrc=7))
    parsed = RtcpPacket.parse(rr + nack)
    assert parsed.packets[1] == UnknownRtcp(205, 1, bytes.fromhex("00000001 00000002 00100000"))
    assert bytes(parsed) == rr + nack


def test_rtcp_with_padding_round_trips() -> None:
    bye = Bye((5,), padding=b"\x00\x00\x00\x04")
    wire = bytes(bye)
    assert wire[0] & 0x20
    assert RtcpPacket.parse(wire).packets == (bye,)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x81\xc9", "shorter than its header"),
        (bytes.fromhex("41c90001 00000001"), "RTCP version 1"),
        (bytes.fromhex("81c90007 00000001"), "claims 32 octets, 8 left"),
        (bytes.fromhex("81c90001 00000001"), "too short for its 1 report blocks"),
        (bytes.fromhex("80c80001 00000001"), "too short for its sender info"),
        (bytes.fromhex("81ca0002 00000001 01090000"), "overruns"),
        (bytes.fromhex("80c90001 00000001 00"), "trailing octets"),
    ],
    ids=["short", "version", "length", "rr-blocks", "sr-info", "sdes-item", "trailing"],
)
def test_rtcp_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=message):
        RtcpPacket.parse(data)


@pytest.mark.parametrize(
    ("second_octet", "expected"),
    [
        (200, True),
        (201, True),
        (205, True),
        (192, True),
        (223, True),
        (0, False),
        (0x80, False),
        (101, False),
        (0xE5, False),
        (224, False),
    ],
)
def test_rtcp_demultiplexing_by_packet_type(second_octet: int, expected: bool) -> None:
    datagram = bytes((0x80, second_octet)) + bytes(10)
    assert is_rtcp(datagram) is expected


def test_short_datagrams_are_not_rtcp() -> None:
    assert not is_rtcp(b"\x80\xc9\x00")

"""RTP and RTCP packets (RFC 3550) as immutable values that round-trip through bytes.

These are for tests, statistics and the RTCP the relay generates itself. The relay's
per-packet path never builds them: it reads the two or three header fields it needs
straight from the datagram.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
RTCP_HEADER_SIZE = 4

# RFC 5761 4: with RTP and RTCP on one port, the second octet decides. RTCP packet types
# 192-223 collide only with RTP payload types 64-95 with the marker bit set, which is why
# those payload types must not be used on a multiplexed port.
RTCP_PT_MIN = 192
RTCP_PT_MAX = 223

_RTP_FIXED = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
_SENDER_INFO = struct.Struct("!QIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")


class RtpParseError(ValueError):
    """Bytes that are not a valid RTP or RTCP packet."""


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram is RTCP rather than RTP (RFC 5761 4 demultiplexing)."""
    return len(data) >= RTCP_HEADER_SIZE + 4 and RTCP_PT_MIN <= data[1] <= RTCP_PT_MAX


def _check_padding(padding: bytes) -> None:
    # The last padding octet counts the padding, itself included (RFC 3550 5.1).
    if padding and padding[-1] != len(padding):
        raise ValueError(f"padding of {len(padding)} octets must end with {len(padding)}")


def _split_padding(body: bytes, has_padding: bool, what: str) -> tuple[bytes, bytes]:
    if not has_padding:
        return body, b""
    if not body:
        raise RtpParseError(f"{what} has the padding bit set but no padding")
    count = body[-1]
    if count == 0 or count > len(body):
        raise RtpParseError(f"{what} padding count {count} does not fit {len(body)} octets")
    return body[:-count], body[-count:]


@dataclass(frozen=True, slots=True)
class RtpHeaderExtension:
    """The one header extension an RTP packet may carry (RFC 3550 5.3.1)."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise ValueError(f"extension profile {self.profile} does not fit 16 bits")
        if len(self.data) % 4 or len(self.data) > 0xFFFF * 4:
            raise ValueError(f"extension data of {len(self.data)} octets is not 32-bit words")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    header_extension: RtpHeaderExtension | None = None
    # The raw padding octets (count octet last); empty when the P bit is clear.
    padding: bytes = b""
    version: int = RTP_VERSION

    def __post_init__(self) -> None:
        if self.version != RTP_VERSION:
            raise ValueError(f"RTP version must be {RTP_VERSION}, not {self.version}")
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} does not fit 7 bits")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise ValueError(f"sequence number {self.sequence_number} does not fit 16 bits")
        for name, value in (("timestamp", self.timestamp), ("ssrc", self.ssrc)):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name} {value} does not fit 32 bits")
        if len(self.csrc) > 15 or any(not 0 <= source <= 0xFFFFFFFF for source in self.csrc):
            raise ValueError("at most 15 CSRCs of 32 bits each")
        _check_padding(self.padding)

    @property
    def has_padding(self) -> bool:
        return bool(self.padding)

    @property
    def has_extension(self) -> bool:
        return self.header_extension is not None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER_SIZE:
            raise RtpParseError(f"RTP packet of {len(data)} octets is shorter than its header")
        first, second, sequence, timestamp, ssrc = _RTP_FIXED.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpParseError(f"RTP version {version}, expected {RTP_VERSION}")
        csrc_count = first & 0x0F
        offset = RTP_HEADER_SIZE + 4 * csrc_count
        if len(data) < offset:
            raise RtpParseError(f"RTP packet too short for its {csrc_count} CSRCs")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_SIZE)
        extension: RtpHeaderExtension | None = None
        if first & 0x10:
            if len(data) < offset + 4:
                raise RtpParseError("RTP packet too short for its header extension")
            profile, words = struct.unpack_from("!HH", data, offset)
            end = offset + 4 + 4 * words
            if len(data) < end:
                raise RtpParseError(f"RTP header extension of {words} words overruns the packet")
            extension = RtpHeaderExtension(profile, bytes(data[offset + 4 : end]))
            offset = end
        payload, padding = _split_padding(bytes(data[offset:]), bool(first & 0x20), "RTP packet")
        return cls(
            payload_type=second & 0x7F,
            sequence_number=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=payload,
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            header_extension=extension,
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        first = (
            (self.version << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if self.header_extension is not None else 0)
            | len(self.csrc)
        )
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            _RTP_FIXED.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.header_extension is not None:
            ext = self.header_extension
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4) + ext.data)
        parts.append(self.payload)
        parts.append(self.padding)
        return b"".join(parts)


# --- RTCP ---------------------------------------------------------------------------------


class RtcpType(enum.IntEnum):
    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204


class SdesItemType(enum.IntEnum):
    END = 0
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception statistics about one source (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int
    # Signed: duplicates can make it negative (RFC 3550 6.4.1).
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int = 0
    delay_since_last_sr: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"fraction lost {self.fraction_lost} does not fit 8 bits")
        if not -(2**23) <= self.cumulative_lost < 2**23:
            raise ValueError(f"cumulative lost {self.cumulative_lost} does not fit 24 bits")

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost_word = (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF)
        return _REPORT_BLOCK.pack(
            self.ssrc,
            lost_word,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


def _pack_rtcp(packet_type: int, count: int, body: bytes, padding: bytes) -> bytes:
    _check_padding(padding)
    size = RTCP_HEADER_SIZE + len(body) + len(padding)
    if size % 4:
        raise ValueError(f"RTCP packet of {size} octets is not a whole number of 32-bit words")
    first = (RTP_VERSION << 6) | (0x20 if padding else 0) | count
    return _RTCP_HEADER.pack(first, packet_type, size // 4 - 1) + body + padding


def _parse_reports(body: bytes, offset: int, count: int, what: str) -> tuple[ReportBlock, ...]:
    if len(body) < offset + count * _REPORT_BLOCK.size:
        raise RtpParseError(f"{what} too short for its {count} report blocks")
    return tuple(
        ReportBlock.parse(body, offset + index * _REPORT_BLOCK.size) for index in range(count)
    )


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    padding: bytes = b""

    @classmethod
    def from_body(cls, count: int, body: bytes, padding: bytes) -> SenderReport:
        if len(body) < 4 + _SENDER_INFO.size:
            raise RtpParseError("RTCP SR too short for its sender info")
        (ssrc,) = struct.unpack_from("!I", body)
        ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body, 4)
        start = 4 + _SENDER_INFO.size
        reports = _parse_reports(body, start, count, "RTCP SR")
        extension = body[start + count * _REPORT_BLOCK.size :]
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, extension, padding)

    def __bytes__(self) -> bytes:
        body = (
            struct.pack("!I", self.ssrc)
            + _SENDER_INFO.pack(
                self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
            )
            + b"".join(bytes(report) for report in self.reports)
            + self.extension
        )
        return _pack_rtcp(RtcpType.SR, len(self.reports), body, self.padding)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    padding: bytes = b""

    @classmethod
    def from_body(cls, count: int, body: bytes, padding: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtpParseError("RTCP RR too short for its SSRC")
        (ssrc,) = struct.unpack_from("!I", body)
        reports = _parse_reports(body, 4, count, "RTCP RR")
        return cls(ssrc, reports, body[4 + count * _REPORT_BLOCK.size :], padding)

    def __bytes__(self) -> bytes:
        body = (
            struct.pack("!I", self.ssrc)
            + b"".join(bytes(report) for report in self.reports)
            + self.extension
        )
        return _pack_rtcp(RtcpType.RR, len(self.reports), body, self.padding)


@dataclass(frozen=True, slots=True)
class SdesItem:
    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.type <= 255:
            raise ValueError(f"SDES item type {self.type} is not 1-255")
        if len(self.value) > 255:
            raise ValueError(f"SDES item of {len(self.value)} octets exceeds 255")


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[SdesItem, ...] = ()

    def __bytes__(self) -> bytes:
        encoded = struct.pack("!I", self.ssrc) + b"".join(
            bytes((item.type, len(item.value))) + item.value for item in self.items
        )
        # The item list ends with at least one null octet, then pads to a word boundary.
        return encoded + b"\x00" * (4 - len(encoded) % 4)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...] = ()
    padding: bytes = b""

    @classmethod
    def from_body(cls, count: int, body: bytes, padding: bytes) -> SourceDescription:
        chunks: list[SdesChunk] = []
        offset = 0
        for _ in range(count):
            if len(body) < offset + 4:
                raise RtpParseError("RTCP SDES too short for its chunks")
            (ssrc,) = struct.unpack_from("!I", body, offset)
            offset += 4
            items: list[SdesItem] = []
            while True:
                if offset >= len(body):
                    raise RtpParseError("RTCP SDES chunk has no terminating null item")
                item_type = body[offset]
                if item_type == SdesItemType.END:
                    break
                if offset + 2 > len(body):
                    raise RtpParseError("RTCP SDES item header overruns the packet")
                length = body[offset + 1]
                end = offset + 2 + length
                if end > len(body):
                    raise RtpParseError("RTCP SDES item overruns the packet")
                items.append(SdesItem(item_type, body[offset + 2 : end]))
                offset = end
            # Skip the null terminator and pad to the next 32-bit boundary.
            offset += 4 - offset % 4
            if offset > len(body):
                raise RtpParseError("RTCP SDES chunk is not padded to a 32-bit boundary")
            chunks.append(SdesChunk(ssrc, tuple(items)))
        if offset != len(body):
            raise RtpParseError(f"RTCP SDES has {len(body) - offset} octets after its chunks")
        return cls(tuple(chunks), padding)

    def __bytes__(self) -> bytes:
        body = b"".join(bytes(chunk) for chunk in self.chunks)
        return _pack_rtcp(RtcpType.SDES, len(self.chunks), body, self.padding)


@dataclass(frozen=True, slots=True)
class Bye:
    sources: tuple[int, ...] = ()
    reason: bytes | None = None
    padding: bytes = b""

    @classmethod
    def from_body(cls, count: int, body: bytes, padding: bytes) -> Bye:
        end = 4 * count
        if len(body) < end:
            raise RtpParseError(f"RTCP BYE too short for its {count} sources")
        sources = struct.unpack_from(f"!{count}I", body)
        reason: bytes | None = None
        if len(body) > end:
            length = body[end]
            if end + 1 + length > len(body):
                raise RtpParseError("RTCP BYE reason overruns the packet")
            reason = body[end + 1 : end + 1 + length]
        return cls(tuple(sources), reason, padding)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason is not None:
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + b"\x00" * (-len(reason) % 4)
        return _pack_rtcp(RtcpType.BYE, len(self.sources), body, self.padding)


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """An RTCP packet type this module does not model (APP, XR, feedback...), kept as-is."""

    packet_type: int
    count: int
    body: bytes
    padding: bytes = b""

    def __bytes__(self) -> bytes:
        return _pack_rtcp(self.packet_type, self.count, self.body, self.padding)


RtcpItem = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def _parse_item(packet_type: int, count: int, body: bytes, padding: bytes) -> RtcpItem:
    if packet_type == RtcpType.SR:
        return SenderReport.from_body(count, body, padding)
    if packet_type == RtcpType.RR:
        return ReceiverReport.from_body(count, body, padding)
    if packet_type == RtcpType.SDES:
        return SourceDescription.from_body(count, body, padding)
    if packet_type == RtcpType.BYE:
        return Bye.from_body(count, body, padding)
    return UnknownRtcp(packet_type, count, body, padding)


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """A compound RTCP packet: the RTCP packets one datagram carries (RFC 3550 6.1)."""

    packets: tuple[RtcpItem, ...]

    @classmethod
    def parse(cls, data: bytes) -> RtcpPacket:
        data = bytes(data)
        if len(data) < RTCP_HEADER_SIZE:
            raise RtpParseError(f"RTCP packet of {len(data)} octets is shorter than its header")
        items: list[RtcpItem] = []
        offset = 0
        while offset < len(data):
            if len(data) - offset < RTCP_HEADER_SIZE:
                raise RtpParseError(f"{len(data) - offset} trailing octets after RTCP packets")
            first, packet_type, length = _RTCP_HEADER.unpack_from(data, offset)
            if first >> 6 != RTP_VERSION:
                raise RtpParseError(f"RTCP version {first >> 6}, expected {RTP_VERSION}")
            end = offset + 4 * (length + 1)
            if end > len(data):
                raise RtpParseError(
                    f"RTCP packet type {packet_type} claims {4 * (length + 1)} octets, "
                    f"{len(data) - offset} left"
                )
            body, padding = _split_padding(
                data[offset + RTCP_HEADER_SIZE : end], bool(first & 0x20), "RTCP packet"
            )
            items.append(_parse_item(packet_type, first & 0x1F, body, padding))
            offset = end
        return cls(tuple(items))

    def __bytes__(self) -> bytes:
        return b"".join(bytes(packet) for packet in self.packets)


_EXTENSION_WORDS = struct.Struct("!H")


def payload_bounds(packet: bytes) -> tuple[int, int]:
    """(start, end) of the payload of a received RTP packet, past the CSRCs and any header
    extension (RFC 3550 5.3.1), before any padding; end <= start: no payload. For the
    node's per-packet consumers (DTMF, recording), which must not build a packet object."""
    first = packet[0]
    start = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(packet) < start + 4:
            return start, start
        (words,) = _EXTENSION_WORDS.unpack_from(packet, start + 2)
        start += 4 + 4 * words
    end = len(packet)
    if first & 0x20:  # padding: the last octet says how much
        end -= packet[-1]
    return start, end

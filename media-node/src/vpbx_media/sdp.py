"""SDP (RFC 8866) session descriptions and the offer/answer rules the node needs (RFC 3264).

`SessionDescription.parse` accepts the SDP that real phones, softphones and carrier SBCs
send (CRLF or bare LF line ends, trailing blank lines) and raises `SdpError` for anything
else. `str()` writes CRLF lines in the RFC order; for input already in that order
`str(SessionDescription.parse(text)) == text`, and `parse(str(sd)) == sd` always holds.
Lines the model has no field for (i=, u=, e=, p=, b=, z=, k=, r= and unknown letters) are
kept in `extra_lines` at the level they appeared.

Media is anchored in the node and never transcoded, so the node only ever answers with
codecs both legs can pass through unchanged: PCMU, PCMA and telephone-event.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import random
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

logger = logging.getLogger(__name__)

# Bodies larger than this are not SDP a phone would send; refusing early bounds parse work.
MAX_SDP_SIZE = 65_535

_LINE_RE = re.compile(r"([a-z])=(.*)")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_UNSPECIFIED_ADDRESSES = frozenset({"0.0.0.0", "::"})

# Where a line type sits in a description (RFC 8866 section 5); letters not listed are
# unknown types, written just before the attributes. t= and r= are modelled by `Timing`.
_SESSION_ORDER = {"v": 0, "o": 1, "s": 2, "i": 3, "u": 4, "e": 5, "p": 6, "c": 7, "b": 8}
_SESSION_AFTER_TIMING = {"z": 10, "k": 11}
_MEDIA_ORDER = {"i": 1, "c": 2, "b": 3, "k": 4}
_UNKNOWN_RANK = 50
_TIMING_RANK = 9


def _session_rank(line_type: str) -> int:
    if line_type in _SESSION_ORDER:
        return _SESSION_ORDER[line_type]
    return _SESSION_AFTER_TIMING.get(line_type, _UNKNOWN_RANK)


# Attributes that describe transport features the relay does not offer (ICE, DTLS,
# SDES-SRTP, RTCP multiplexing). Passing them to the other leg would make that peer
# expect something the node will not do.
_RELAY_DROPPED_ATTRIBUTES = frozenset(
    {
        "candidate",
        "end-of-candidates",
        "remote-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "crypto",
        "fingerprint",
        "setup",
        "rtcp-mux",
        "rtcp-rsize",
    }
)
# Attributes whose value starts with the payload type they describe.
_PER_FORMAT_ATTRIBUTES = frozenset({"rtpmap", "fmtp", "rtcp-fb"})

# Profiles whose RTP the relay can carry as-is: plain RTP, with or without feedback.
RELAYABLE_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})

SUPPORTED_AUDIO_CODECS = ("PCMU", "PCMA")
TELEPHONE_EVENT = "telephone-event"


class SdpError(ValueError):
    """The body is not SDP this node can read; `reason` says what and where."""

    status_code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAcceptableError(SdpError):
    """Valid SDP that offers nothing the node can relay; the B2BUA answers 488."""

    status_code = 488


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


_DIRECTION_NAMES = frozenset(direction.value for direction in Direction)


def _split_fields(value: str, count: int, what: str) -> list[str]:
    fields = value.split(" ")
    if len(fields) != count or any(not part for part in fields):
        raise SdpError(f"{what} needs {count} space-separated fields, got {value!r}")
    return fields


def _parse_int(text: str, what: str, maximum: int) -> int:
    if not text.isascii() or not text.isdigit():
        raise SdpError(f"{what} is not a number: {text!r}")
    number = int(text)
    if number > maximum:
        raise SdpError(f"{what} {number} is out of range (max {maximum})")
    return number


def _address_type(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        # A host name is legal in c=/o=; RFC 8866 leaves its family to the resolver.
        return "IP4"
    return "IP6" if parsed.version == 6 else "IP4"


@dataclass(frozen=True, slots=True)
class SdpLine:
    """A line the model keeps verbatim: its type letter and everything after `=`."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}={self.value}"


@dataclass(frozen=True, slots=True)
class Origin:
    """o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>"""

    username: str
    session_id: int
    session_version: int
    address: str
    net_type: str = "IN"
    address_type: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Origin:
        username, session_id, version, net_type, address_type, address = _split_fields(
            value, 6, "o= line"
        )
        # Session ids are NTP-format numbers in practice; 64 bits holds every one seen.
        max_id = 2**64 - 1
        return cls(
            username=username,
            session_id=_parse_int(session_id, "o= session id", max_id),
            session_version=_parse_int(version, "o= session version", max_id),
            address=address,
            net_type=net_type,
            address_type=address_type,
        )

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.net_type} {self.address_type} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """c=<nettype> <addrtype> <connection-address> (multicast /ttl kept inside `address`)."""

    address: str
    net_type: str = "IN"
    address_type: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Connection:
        net_type, address_type, address = _split_fields(value, 3, "c= line")
        return cls(address=address, net_type=net_type, address_type=address_type)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address=address, address_type=_address_type(address))

    @property
    def host(self) -> str:
        """The address without a multicast /ttl or /count suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold_address(self) -> bool:
        """c=0.0.0.0: the RFC 2543 way of putting a call on hold, still sent by old phones."""
        return self.host in _UNSPECIFIED_ADDRESSES

    def __str__(self) -> str:
        return f"{self.net_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """a=<name>[:<value>]; `value` is None for property attributes such as a=sendrecv."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, colon, value = text.partition(":")
        if not _TOKEN_RE.fullmatch(name):
            raise SdpError(f"attribute name {name!r} is not a token (a={text!r})")
        return cls(name=name, value=value if colon else None)

    @property
    def format(self) -> str | None:
        """For rtpmap/fmtp/rtcp-fb: the payload type (or `*`) the attribute is about."""
        if self.name not in _PER_FORMAT_ATTRIBUTES or self.value is None:
            return None
        return self.value.split(" ", 1)[0]

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Timing:
    """t=<start> <stop> plus the r= lines that belong to it (kept verbatim)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Timing:
        start, stop = _split_fields(value, 2, "t= line")
        max_time = 2**64 - 1
        return cls(
            start=_parse_int(start, "t= start time", max_time),
            stop=_parse_int(stop, "t= stop time", max_time),
        )

    def lines(self) -> list[str]:
        return [f"t={self.start} {self.stop}", *(f"r={repeat}" for repeat in self.repeats)]


@dataclass(frozen=True, slots=True)
class RtpMap:
    """a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]"""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        payload_type, _, encoding_text = value.partition(" ")
        parts = encoding_text.strip().split("/")
        if len(parts) not in (2, 3) or not parts[0]:
            raise SdpError(f"a=rtpmap needs <pt> <name>/<rate>[/<channels>], got {value!r}")
        return cls(
            payload_type=_parse_int(payload_type, "a=rtpmap payload type", 127),
            encoding=parts[0],
            clock_rate=_parse_int(parts[1], "a=rtpmap clock rate", 2**32 - 1),
            channels=_parse_int(parts[2], "a=rtpmap channels", 255) if len(parts) == 3 else None,
        )

    def __str__(self) -> str:
        suffix = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{suffix}"


# RFC 3551 table 4: static payload types a phone may offer without an a=rtpmap line.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    0: RtpMap(0, "PCMU", 8000),
    3: RtpMap(3, "GSM", 8000),
    4: RtpMap(4, "G723", 8000),
    8: RtpMap(8, "PCMA", 8000),
    9: RtpMap(9, "G722", 8000),
    18: RtpMap(18, "G729", 8000),
}


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m= section: m=<media> <port>[/<count>] <proto> <fmt> ... and its lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    extra_lines: tuple[SdpLine, ...] = ()

    @classmethod
    def parse_media_line(cls, value: str) -> MediaDescription:
        fields = value.split(" ")
        if len(fields) < 4 or any(not part for part in fields):
            raise SdpError(f"m= line needs <media> <port> <proto> <fmt>..., got {value!r}")
        media, port_text, proto, *formats = fields
        port_part, slash, count_part = port_text.partition("/")
        return cls(
            media=media,
            port=_parse_int(port_part, "m= port", 65_535),
            proto=proto,
            formats=tuple(formats),
            port_count=_parse_int(count_part, "m= port count", 65_535) if slash else None,
        )

    def media_line(self) -> str:
        count = "" if self.port_count is None else f"/{self.port_count}"
        return f"{self.media} {self.port}{count} {self.proto} {' '.join(self.formats)}"

    def lines(self) -> list[str]:
        ranked: list[tuple[int, str]] = [
            (_MEDIA_ORDER.get(line.type, _UNKNOWN_RANK), str(line)) for line in self.extra_lines
        ]
        if self.connection is not None:
            ranked.append((_MEDIA_ORDER["c"], f"c={self.connection}"))
        ranked.sort(key=lambda item: item[0])  # stable: equal ranks keep their input order
        return [
            f"m={self.media_line()}",
            *(text for _, text in ranked),
            *(f"a={attribute}" for attribute in self.attributes),
        ]

    def attribute(self, name: str) -> Attribute | None:
        return next((attr for attr in self.attributes if attr.name == name), None)

    def attribute_values(self, name: str) -> list[str]:
        return [attr.value for attr in self.attributes if attr.name == name and attr.value]

    @property
    def direction(self) -> Direction | None:
        """The direction attribute of this stream, None when it states none."""
        for attr in self.attributes:
            if attr.value is None and attr.name in _DIRECTION_NAMES:
                return Direction(attr.name)
        return None

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        if value is None or value.value is None:
            return None
        # Some phones write a=ptime:20.0; the packet time is whole milliseconds anyway.
        text = value.value.strip().split(".", 1)[0]
        return _parse_int(text, "a=ptime", 10_000)

    @property
    def rtcp(self) -> tuple[int, Connection | None] | None:
        """a=rtcp (RFC 3605): the RTCP port and, optionally, address the peer uses."""
        value = self.attribute("rtcp")
        if value is None or value.value is None:
            return None
        port_text, _, rest = value.value.strip().partition(" ")
        port = _parse_int(port_text, "a=rtcp port", 65_535)
        return port, Connection.parse(rest) if rest else None

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The encoding of a payload type: its a=rtpmap, else the RFC 3551 static one."""
        for value in self.attribute_values("rtpmap"):
            mapping = RtpMap.parse(value)
            if mapping.payload_type == payload_type:
                return mapping
        return STATIC_PAYLOAD_TYPES.get(payload_type)

    def fmtp(self, payload_type: int) -> str | None:
        prefix = f"{payload_type} "
        for value in self.attribute_values("fmtp"):
            if value.startswith(prefix):
                return value[len(prefix) :].strip()
        return None

    def codecs(self) -> list[Codec]:
        """Formats in offer order that name an RTP payload type we can resolve."""
        found: list[Codec] = []
        for fmt in self.formats:
            if not fmt.isascii() or not fmt.isdigit() or int(fmt) > 127:
                continue
            mapping = self.rtpmap(int(fmt))
            if mapping is not None:
                found.append(
                    Codec(
                        payload_type=mapping.payload_type,
                        name=mapping.encoding,
                        clock_rate=mapping.clock_rate,
                        channels=mapping.channels,
                        fmtp=self.fmtp(mapping.payload_type),
                    )
                )
        return found


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    version: int = 0
    connection: Connection | None = None
    timings: tuple[Timing, ...] = (Timing(),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    extra_lines: tuple[SdpLine, ...] = ()

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        if isinstance(text, bytes):
            if len(text) > MAX_SDP_SIZE:
                raise SdpError(f"SDP body of {len(text)} bytes exceeds {MAX_SDP_SIZE}")
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError(f"SDP is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
        elif len(text) > MAX_SDP_SIZE:
            raise SdpError(f"SDP body of {len(text)} characters exceeds {MAX_SDP_SIZE}")
        return _Parser(text).parse()

    def __str__(self) -> str:
        ranked: list[tuple[int, str]] = [
            (_session_rank(line.type), str(line)) for line in self.extra_lines
        ]
        ranked.append((_SESSION_ORDER["v"], f"v={self.version}"))
        ranked.append((_SESSION_ORDER["o"], f"o={self.origin}"))
        ranked.append((_SESSION_ORDER["s"], f"s={self.session_name}"))
        if self.connection is not None:
            ranked.append((_SESSION_ORDER["c"], f"c={self.connection}"))
        for timing in self.timings:
            ranked.extend((_TIMING_RANK, line) for line in timing.lines())
        ranked.sort(key=lambda item: item[0])
        lines = [text for _, text in ranked]
        lines.extend(f"a={attribute}" for attribute in self.attributes)
        for media in self.media:
            lines.extend(media.lines())
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    def attribute(self, name: str) -> Attribute | None:
        return next((attr for attr in self.attributes if attr.name == name), None)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The c= that applies to a stream: its own, else the session-level one."""
        return media.connection if media.connection is not None else self.connection

    def direction_of(self, media: MediaDescription) -> Direction:
        """A stream's direction: its own attribute, else the session's, else sendrecv."""
        if media.direction is not None:
            return media.direction
        for attr in self.attributes:
            if attr.value is None and attr.name in _DIRECTION_NAMES:
                return Direction(attr.name)
        return Direction.SENDRECV

    def is_on_hold(self, media: MediaDescription) -> bool:
        """The sender of this SDP will not receive media on this stream."""
        connection = self.connection_for(media)
        return (
            media.port == 0
            or (connection is not None and connection.is_hold_address)
            or self.direction_of(media) in (Direction.SENDONLY, Direction.INACTIVE)
        )

    def audio_index(self) -> int | None:
        """Index of the first audio stream the relay could carry (active RTP/AVP(F))."""
        for index, media in enumerate(self.media):
            if media.media == "audio" and media.port != 0 and media.proto in RELAYABLE_PROTOS:
                return index
        return None


class _Parser:
    """Walks the lines once; each m= line opens a media section that collects what follows."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")

    def parse(self) -> SessionDescription:
        lines = [line[:-1] if line.endswith("\r") else line for line in self._lines]
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            raise SdpError("SDP body is empty")
        parsed: list[tuple[int, str, str]] = []
        for number, line in enumerate(lines, start=1):
            if not line:
                # A blank line inside the body is a framing mistake some stacks make; it
                # carries nothing, so skipping it is safer than rejecting the call.
                continue
            match = _LINE_RE.fullmatch(line)
            if match is None:
                raise SdpError(f"line {number} is not <type>=<value>: {line[:80]!r}")
            parsed.append((number, match.group(1), match.group(2)))

        if parsed[0][1] != "v":
            raise SdpError("SDP must start with a v= line")
        version = _parse_int(parsed[0][2], "v= version", 0)

        origin: Origin | None = None
        session_name: str | None = None
        connection: Connection | None = None
        timings: list[Timing] = []
        attributes: list[Attribute] = []
        extra: list[SdpLine] = []
        media: list[_MediaBuilder] = []

        for number, kind, value in parsed[1:]:
            if kind == "m":
                try:
                    description = MediaDescription.parse_media_line(value)
                except SdpError as exc:
                    raise SdpError(f"line {number}: {exc.reason}") from exc
                media.append(_MediaBuilder(description, number))
                continue
            if media:
                media[-1].add(number, kind, value)
                continue
            try:
                if kind == "o":
                    if origin is not None:
                        raise SdpError("more than one o= line")
                    origin = Origin.parse(value)
                elif kind == "s":
                    if session_name is not None:
                        raise SdpError("more than one s= line")
                    session_name = value
                elif kind == "c":
                    if connection is not None:
                        raise SdpError("more than one session-level c= line")
                    connection = Connection.parse(value)
                elif kind == "t":
                    timings.append(Timing.parse(value))
                elif kind == "r":
                    if not timings:
                        raise SdpError("r= line before any t= line")
                    last = timings[-1]
                    timings[-1] = replace(last, repeats=(*last.repeats, value))
                elif kind == "a":
                    attributes.append(Attribute.parse(value))
                elif kind == "v":
                    raise SdpError("more than one v= line")
                else:
                    extra.append(SdpLine(kind, value))
            except SdpError as exc:
                raise SdpError(f"line {number}: {exc.reason}") from exc

        if origin is None:
            raise SdpError("SDP has no o= line")
        if session_name is None:
            raise SdpError("SDP has no s= line")
        if not timings:
            raise SdpError("SDP has no t= line")
        descriptions = tuple(builder.build() for builder in media)
        for index, description in enumerate(descriptions):
            if description.port != 0 and description.connection is None and connection is None:
                raise SdpError(
                    f"m= line {index + 1} ({description.media}) has no c= line and the "
                    "session has none either"
                )
        return SessionDescription(
            origin=origin,
            session_name=session_name,
            version=version,
            connection=connection,
            timings=tuple(timings),
            attributes=tuple(attributes),
            media=descriptions,
            extra_lines=tuple(extra),
        )


@dataclass(slots=True)
class _MediaBuilder:
    media: MediaDescription
    line_number: int
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[SdpLine] = field(default_factory=list)

    def add(self, number: int, kind: str, value: str) -> None:
        try:
            if kind == "c":
                if self.connection is not None:
                    # Several c= lines only make sense for layered multicast; no phone does it.
                    raise SdpError("more than one c= line in a media section")
                self.connection = Connection.parse(value)
            elif kind == "a":
                self.attributes.append(Attribute.parse(value))
            elif kind in ("v", "o", "s", "t", "r", "u", "e", "p", "z"):
                raise SdpError(f"{kind}= line is only allowed at session level")
            else:
                self.extra.append(SdpLine(kind, value))
        except SdpError as exc:
            raise SdpError(f"line {number}: {exc.reason}") from exc

    def build(self) -> MediaDescription:
        return replace(
            self.media,
            connection=self.connection,
            attributes=tuple(self.attributes),
            extra_lines=tuple(self.extra),
        )


# --- offer/answer ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Codec:
    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None

    def is_named(self, name: str) -> bool:
        # Encoding names are case-insensitive (RFC 4855); phones send "pcmu" and "PCMU".
        return self.name.lower() == name.lower()


class MediaEndpoint(NamedTuple):
    """Where a peer asked to receive a stream's RTP and RTCP."""

    ip: str
    rtp_port: int
    rtcp_port: int


@dataclass(frozen=True, slots=True)
class Negotiation:
    """The outcome of reading an offer: what the relay carries for the chosen stream."""

    media_index: int
    codec: Codec
    telephone_event: Codec | None
    direction: Direction
    ptime: int | None
    endpoint: MediaEndpoint
    on_hold: bool

    @property
    def codec_names(self) -> tuple[str, ...]:
        """The encodings to keep when rewriting SDP for the other leg."""
        if self.telephone_event is None:
            return (self.codec.name,)
        return (self.codec.name, self.telephone_event.name)


def negotiate(
    offer: SessionDescription, *, audio_codecs: Iterable[str] = SUPPORTED_AUDIO_CODECS
) -> Negotiation:
    """Pick the first offered audio codec we support and the matching telephone-event.

    The offerer's order is its preference (RFC 3264 6.1), so the first supported
    format wins. telephone-event is only taken at the chosen codec's clock rate, since
    DTMF events are timed in the audio stream's RTP clock (RFC 4733 2.1).
    Raises `NotAcceptableError` (answer 488) when no stream has a codec in common.
    """
    wanted = [name.lower() for name in audio_codecs]
    offered_audio = [
        (index, media)
        for index, media in enumerate(offer.media)
        if media.media == "audio" and media.port != 0
    ]
    if not offered_audio:
        raise NotAcceptableError("the offer has no active audio stream")
    seen: list[str] = []
    for index, media in offered_audio:
        if media.proto not in RELAYABLE_PROTOS:
            seen.append(f"{media.proto} (not plain RTP)")
            continue
        codecs = media.codecs()
        chosen = next((codec for codec in codecs if codec.name.lower() in wanted), None)
        if chosen is None:
            seen.extend(codec.name for codec in codecs)
            continue
        event = next(
            (
                codec
                for codec in codecs
                if codec.is_named(TELEPHONE_EVENT) and codec.clock_rate == chosen.clock_rate
            ),
            None,
        )
        return Negotiation(
            media_index=index,
            codec=chosen,
            telephone_event=event,
            direction=offer.direction_of(media),
            ptime=media.ptime,
            endpoint=_endpoint(offer, media),
            on_hold=offer.is_on_hold(media),
        )
    offered = ", ".join(seen) or "nothing"
    raise NotAcceptableError(
        f"no common audio codec: offered {offered}; supported {', '.join(audio_codecs)}"
    )


def _endpoint(sdp: SessionDescription, media: MediaDescription) -> MediaEndpoint:
    connection = sdp.connection_for(media)
    if connection is None:
        raise SdpError(f"{media.media} stream has no c= line")
    rtcp = media.rtcp
    # Without a=rtcp, RTCP goes to the next higher port (RFC 3550 11); with rtcp-mux it
    # could share the RTP port, but the relay never accepts mux, so the peer will not mux.
    # An address in a=rtcp differing from c= is ignored: the relay latches RTCP anyway.
    rtcp_port = rtcp[0] if rtcp is not None else media.port + 1
    return MediaEndpoint(ip=connection.host, rtp_port=media.port, rtcp_port=rtcp_port)


def media_endpoint(sdp: SessionDescription, media_index: int | None = None) -> MediaEndpoint:
    """The address the SDP's sender wants RTP/RTCP for its audio stream sent to."""
    index = sdp.audio_index() if media_index is None else media_index
    if index is None or not 0 <= index < len(sdp.media):
        raise SdpError("the SDP has no active RTP audio stream")
    return _endpoint(sdp, sdp.media[index])


class SdpOriginator:
    """The node's own o= identity towards one peer (RFC 3264 5 and 8).

    Every SDP the node sends on a dialog carries the same session id; the version goes up
    by one whenever the body differs from the previous one sent, and stays put for an
    unchanged re-offer (a session refresh must not look like a media change).
    """

    def __init__(
        self, address: str, *, username: str = "vpbx", session_id: int | None = None
    ) -> None:
        self.address = address
        self.username = username
        # NTP-timestamp-sized random ids are what RFC 8866 suggests; they never collide
        # between calls in practice and reveal nothing about the node's clock.
        self.session_id = session_id if session_id is not None else random.getrandbits(62)
        self.session_version = self.session_id
        self._last_body: str | None = None

    def stamp(self, sdp: SessionDescription) -> SessionDescription:
        """`sdp` with the node's o= line, versioned against what was sent before."""
        # Compare bodies under a fixed origin so only media changes count as changes.
        body = str(replace(sdp, origin=self._origin(0)))
        if self._last_body is not None and body != self._last_body:
            self.session_version += 1
        self._last_body = body
        return replace(sdp, origin=self._origin(self.session_version))

    def _origin(self, version: int) -> Origin:
        return Origin(
            username=self.username,
            session_id=self.session_id,
            session_version=version,
            address=self.address,
            address_type=_address_type(self.address),
        )


def _keep_attribute(attr: Attribute, kept_formats: Collection[str]) -> bool:
    if attr.name in _RELAY_DROPPED_ATTRIBUTES:
        return False
    fmt = attr.format
    return fmt is None or fmt == "*" or fmt in kept_formats


def rewrite_for_relay(
    sdp: SessionDescription,
    address: str,
    port: int,
    *,
    origin: SdpOriginator,
    keep_codecs: Iterable[str] = (*SUPPORTED_AUDIO_CODECS, TELEPHONE_EVENT),
    rtcp_port: int | None = None,
    media_index: int | None = None,
) -> SessionDescription:
    """The SDP the node sends to the other leg so that media flows through its relay.

    The chosen audio stream (`media_index`, default the first relayable one) gets the
    relay's address and port, loses codecs outside `keep_codecs` (names, any case) and the
    transport attributes the relay does not implement; its direction is kept, so hold
    passes through. A c=0.0.0.0 hold address stays 0.0.0.0. Every other stream is
    rejected with port 0, as RFC 3264 6 requires of streams the answerer will not carry.
    Raises `NotAcceptableError` when the stream has no codec left.
    """
    index = sdp.audio_index() if media_index is None else media_index
    if index is None or not 0 <= index < len(sdp.media):
        raise NotAcceptableError("the SDP has no active RTP audio stream to relay")
    keep = {name.lower() for name in keep_codecs}
    relay_connection = Connection.for_address(address)
    hold_connection = Connection(address="0.0.0.0")  # the RFC 2543 hold marker

    source = sdp.media[index]
    offered = [codec for codec in source.codecs() if codec.name.lower() in keep]
    audio = [codec for codec in offered if not codec.is_named(TELEPHONE_EVENT)]
    if not audio:
        raise NotAcceptableError(
            "none of the offered codecs "
            f"({', '.join(codec.name for codec in source.codecs()) or 'none known'}) "
            f"is in {', '.join(sorted(keep))}"
        )
    # DTMF events only make sense in the clock of an audio codec that stays (RFC 4733 2.1).
    audio_rates = {codec.clock_rate for codec in audio}
    kept_formats = [
        str(codec.payload_type)
        for codec in offered
        if not codec.is_named(TELEPHONE_EVENT) or codec.clock_rate in audio_rates
    ]
    connection = sdp.connection_for(source)
    on_hold_address = connection is not None and connection.is_hold_address
    attributes = [attr for attr in source.attributes if _keep_attribute(attr, kept_formats)]
    attributes = [attr for attr in attributes if attr.name != "rtcp"]
    if rtcp_port is not None and rtcp_port != port + 1:
        attributes.append(Attribute("rtcp", f"{rtcp_port} {relay_connection}"))
    relayed = replace(
        source,
        port=port,
        port_count=None,
        proto=source.proto,
        formats=tuple(kept_formats),
        connection=None,
        attributes=tuple(attributes),
    )
    media: list[MediaDescription] = []
    for position, description in enumerate(sdp.media):
        if position == index:
            media.append(relayed)
        else:
            media.append(
                replace(
                    description,
                    port=0,
                    port_count=None,
                    connection=None,
                    attributes=tuple(
                        attr for attr in description.attributes if attr.name in _DIRECTION_NAMES
                    ),
                    extra_lines=(),
                )
            )
    rewritten = replace(
        sdp,
        connection=hold_connection if on_hold_address else relay_connection,
        attributes=tuple(
            attr for attr in sdp.attributes if attr.name not in _RELAY_DROPPED_ATTRIBUTES
        ),
        media=tuple(media),
        extra_lines=tuple(line for line in sdp.extra_lines if line.type != "c"),
    )
    return origin.stamp(rewritten)

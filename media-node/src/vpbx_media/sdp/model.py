"""SDP (RFC 8866) session descriptions: the wire model, its parser and its writer.

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
import re
from dataclasses import dataclass, field, replace

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


DIRECTION_NAMES = frozenset(direction.value for direction in Direction)


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


def address_type(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        # A host name is legal in c=/o=; RFC 8866 leaves its family to the resolver.
        return "IP4"
    return "IP6" if parsed.version == 6 else "IP4"


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
        return cls(address=address, address_type=address_type(address))

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
            if attr.value is None and attr.name in DIRECTION_NAMES:
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
            if attr.value is None and attr.name in DIRECTION_NAMES:
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

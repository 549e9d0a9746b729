"""SIP requests and responses: parse from bytes, serialise back, edit by copy.

`parse_message` is a pure function: for any input it returns a message or
raises `SipParseError` (with the status a server should answer), never
anything else. Messages are immutable; proxies build edited copies.

Content-Length is framing, not content: parsing uses it to cut the body and
then drops it from `headers`; serialising always writes the real body length
as the last header. So `parse_message(bytes(m)) == m` for every parsed `m`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from .errors import MessageTooLarge, SipParseError
from .headers import (
    LIST_HEADERS,
    SINGLE_HEADERS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    is_token,
    split_list,
)
from .uri import SipUri, Uri, is_ascii_digits, parse_uri

MAX_MESSAGE_SIZE = 65_535
SIP_VERSION = "SIP/2.0"

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


def _name_key(name: str) -> str:
    # Header names are case-insensitive (RFC 3261 section 7.3.5); canonical_name
    # keeps the spelling of unknown names, so comparisons also fold case. Stored
    # names are canonical already, so only the name looked up needs this.
    return canonical_name(name).lower()


@dataclass(frozen=True, slots=True)
class Headers:
    """Ordered header lines; lookups are case-insensitive and know compact forms."""

    items: tuple[Header, ...] = ()

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        return cls(tuple(Header(canonical_name(name), value) for name, value in pairs))

    def __iter__(self) -> Iterator[Header]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, name: str) -> str | None:
        key = _name_key(name)
        for header in self.items:
            if header.name.lower() == key:
                return header.value
        return None

    def lines(self, name: str) -> list[str]:
        key = _name_key(name)
        return [header.value for header in self.items if header.name.lower() == key]

    def values(self, name: str) -> list[str]:
        """Every value of a header; list headers are split on their commas."""
        wanted = canonical_name(name)
        out: list[str] = []
        for value in self.lines(wanted):
            if wanted in LIST_HEADERS:
                out.extend(split_list(value))
            else:
                out.append(value)
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def add(self, name: str, value: str) -> Headers:
        return Headers((*self.items, Header(canonical_name(name), value)))

    def prepend(self, name: str, value: str) -> Headers:
        """Insert before the first header of that name (or first of all)."""
        wanted = canonical_name(name)
        key = _name_key(name)
        items = list(self.items)
        for index, header in enumerate(items):
            if header.name.lower() == key:
                items.insert(index, Header(wanted, value))
                return Headers(tuple(items))
        return Headers((Header(wanted, value), *items))

    def remove(self, name: str) -> Headers:
        key = _name_key(name)
        return Headers(tuple(h for h in self.items if h.name.lower() != key))

    def set(self, name: str, value: str) -> Headers:
        """Replace every line of the header with one line, keeping its position."""
        wanted = canonical_name(name)
        key = _name_key(name)
        items: list[Header] = []
        placed = False
        for header in self.items:
            if header.name.lower() == key:
                if not placed:
                    items.append(Header(wanted, value))
                    placed = True
            else:
                items.append(header)
        if not placed:
            items.append(Header(wanted, value))
        return Headers(tuple(items))

    def replace_values(self, name: str, values: list[str]) -> Headers:
        """Rewrite a list header as one value per line, at its first position."""
        wanted = canonical_name(name)
        key = _name_key(name)
        items: list[Header] = []
        placed = False
        for header in self.items:
            if header.name.lower() == key:
                if not placed:
                    items.extend(Header(wanted, v) for v in values)
                    placed = True
            else:
                items.append(header)
        if not placed:
            items.extend(Header(wanted, v) for v in values)
        return Headers(tuple(items))

    def pop_first_value(self, name: str) -> tuple[str | None, Headers]:
        """Remove the first element of a list header (e.g. the top Via)."""
        values = self.values(name)
        if not values:
            return None, self
        return values[0], self.replace_values(name, values[1:])


class _MessageFields:
    """Typed accessors shared by requests and responses."""

    __slots__ = ()

    headers: Headers
    body: bytes

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.values("Via")]

    @property
    def top_via(self) -> Via:
        vias = self.headers.values("Via")
        if not vias:
            raise SipParseError("missing Via")
        return Via.parse(vias[0])

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(_required(self.headers, "From"))

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(_required(self.headers, "To"))

    @property
    def call_id(self) -> str:
        return _required(self.headers, "Call-ID").strip()

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(_required(self.headers, "CSeq"))

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.values("Contact") if v.strip() != "*"]

    @property
    def routes(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.values("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.values("Record-Route")]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";")[0].strip().lower()

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def _serialise(self, start_line: str) -> bytes:
        lines = [start_line]
        lines.extend(
            f"{h.name}: {h.value}"
            for h in self.headers.items
            if h.name.lower() != _CONTENT_LENGTH_KEY
        )
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body


@dataclass(frozen=True, slots=True)
class SipRequest(_MessageFields):
    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} {SIP_VERSION}")

    def with_headers(self, headers: Headers) -> SipRequest:
        return replace(self, headers=headers)

    def with_body(self, body: bytes, content_type: str | None = None) -> SipRequest:
        headers = (
            self.headers if content_type is None else self.headers.set("Content-Type", content_type)
        )
        return replace(self, body=body, headers=headers)

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise SipParseError(f"Request-URI {self.uri} is not a SIP URI", 416)
        return self.uri

    @property
    def max_forwards(self) -> int:
        value = self.headers.get("Max-Forwards")
        return 70 if value is None else int(value)


@dataclass(frozen=True, slots=True)
class SipResponse(_MessageFields):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return self._serialise(f"{SIP_VERSION} {self.status} {self.reason}")

    def with_headers(self, headers: Headers) -> SipResponse:
        return replace(self, headers=headers)

    def with_body(self, body: bytes, content_type: str | None = None) -> SipResponse:
        headers = (
            self.headers if content_type is None else self.headers.set("Content-Type", content_type)
        )
        return replace(self, body=body, headers=headers)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


SipMessage = SipRequest | SipResponse


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"missing {name}")
    return value


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status, "Unknown")


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to `request` per RFC 3261 section 8.2.6 (copies Via/From/To/Call-ID/CSeq)."""
    headers = Headers()
    for via in request.headers.lines("Via"):
        headers = headers.add("Via", via)
    headers = headers.add("From", _required(request.headers, "From"))
    to_value = _required(request.headers, "To")
    if to_tag is not None and status > 100:
        to_addr = NameAddr.parse(to_value)
        if to_addr.tag is None:
            to_value = str(to_addr.with_tag(to_tag))
    headers = headers.add("To", to_value)
    headers = headers.add("Call-ID", _required(request.headers, "Call-ID"))
    headers = headers.add("CSeq", _required(request.headers, "CSeq"))
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:
        headers = headers.add("Timestamp", timestamp)
    for name, value in extra:
        headers = headers.add(name, value)
    if content_type is not None:
        headers = headers.set("Content-Type", content_type)
    return SipResponse(
        status=status, reason=reason or reason_phrase(status), headers=headers, body=body
    )


_CONTENT_LENGTH_KEY = "content-length"
_REQUEST_LINE = re.compile(r"^([^\s]+) ([^\s]+) (SIP/[0-9]+\.[0-9]+)\Z")
_STATUS_LINE = re.compile(r"^(SIP/[0-9]+\.[0-9]+) ([0-9]{3}) (.*)\Z", re.S)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(r"\r?\n")
# RFC 3261 section 25.1 SIP-date (rfc1123-date): the only zone allowed is GMT.
_SIP_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
    re.IGNORECASE,
)


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    # The first empty line ends the head, whichever of CRLF or bare LF the
    # sender used; searching for "\r\n\r\n" first would skip an earlier "\n\n".
    match = _HEAD_END.search(data)
    if match is None:
        raise SipParseError("no empty line after the headers")
    return data[: match.start()], data[match.end() :]


def _unfold(head: str) -> list[str]:
    """Header lines with RFC 3261 line folding (CRLF + whitespace) joined."""
    # Pieces are collected per line and joined once, so thousands of
    # continuation lines cost linear, not quadratic, time.
    lines: list[list[str]] = []
    for raw in _LINE_BREAK.split(head):
        if raw[:1] in (" ", "\t"):
            if not lines:
                raise SipParseError("continuation line before the start line")
            current = lines[-1]
            current[-1] = current[-1].rstrip()
            current.append(" ")
            current.append(raw.strip())
        else:
            lines.append([raw])
    return ["".join(parts) for parts in lines]


def _parse_headers(lines: list[str]) -> Headers:
    items: list[Header] = []
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep or not name or not is_token(name):
            raise SipParseError(f"malformed header line {line[:80]!r}")
        items.append(Header(canonical_name(name), value.strip(" \t")))
    return Headers(tuple(items))


def _validate(headers: Headers, *, method: str | None) -> CSeq:
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if not headers.lines(name):
            raise SipParseError(f"missing {name}")
    for name in SINGLE_HEADERS:
        if len(headers.lines(name)) > 1:
            raise SipParseError(f"more than one {name} header")
    for name in ("From", "To", "Call-ID"):
        if not _required(headers, name).strip():
            raise SipParseError(f"empty {name}")
    cseq = CSeq.parse(_required(headers, "CSeq"))
    for via in headers.values("Via"):
        Via.parse(via)
    NameAddr.parse(_required(headers, "From"))
    NameAddr.parse(_required(headers, "To"))
    if method is not None:
        if cseq.method != method:
            # RFC 4475 mismatch02 prefers 501 for an unknown method, but which
            # methods are implemented is the application's call; 400 is allowed.
            raise SipParseError(f"CSeq method {cseq.method} does not match {method}")
        max_forwards = headers.get("Max-Forwards")
        if max_forwards is not None and (
            not is_ascii_digits(max_forwards) or int(max_forwards) > 255
        ):
            raise SipParseError(f"invalid Max-Forwards {max_forwards!r}")
    expires = headers.get("Expires")
    if expires is not None and method is not None and not is_ascii_digits(expires.strip()):
        raise SipParseError(f"invalid Expires {expires!r}")
    date = headers.get("Date")
    if date is not None and not _SIP_DATE.fullmatch(date):
        raise SipParseError(f"invalid Date {date!r} (RFC 1123 format in GMT required)")
    for contact in headers.values("Contact"):
        if contact.strip() != "*":
            NameAddr.parse(contact)
    for name in ("Route", "Record-Route"):
        for value in headers.values(name):
            NameAddr.parse(value)
    return cseq


def _content_length(headers: Headers) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    if not is_ascii_digits(value) or len(value) > 9:
        raise SipParseError(f"invalid Content-Length {value!r}")
    return int(value)


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> SipMessage:
    """Parse one whole message (a datagram or a framed stream message).

    Bytes after the Content-Length of body are ignored (RFC 3261 section
    18.3; RFC 4475 dblreq). Without Content-Length the body is the rest of
    the data, as RFC 2543 senders expect on UDP (RFC 4475 inv2543).
    """
    if len(data) > max_size:
        raise MessageTooLarge(len(data), max_size)
    try:
        return _parse(data)
    except SipParseError:
        raise
    except (ValueError, IndexError, UnicodeError) as exc:  # defensive: never leak others
        raise SipParseError(f"malformed message: {exc}") from exc


def _parse(data: bytes) -> SipMessage:
    data = data.lstrip(b"\r\n")
    head_bytes, body = _split_head(data)
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("header section is not UTF-8") from exc
    lines = _unfold(head)
    start_line, header_lines = lines[0], lines[1:]
    headers = _parse_headers(header_lines)
    if len(headers.lines("Content-Length")) > 1:
        # RFC 4475 mcl01: with two lengths the body cannot be framed at all.
        raise SipParseError("more than one Content-Length header")
    length = _content_length(headers)
    if length is not None:
        if length > len(body):
            raise SipParseError(f"Content-Length {length} exceeds the {len(body)}-byte body")
        body = body[:length]
        headers = headers.remove("Content-Length")
    status_match = _STATUS_LINE.match(start_line)
    if status_match:
        version, code, reason = status_match.groups()
        if version != SIP_VERSION:
            raise SipParseError(f"unsupported version {version}", 505)
        status = int(code)
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} out of range")
        _validate(headers, method=None)
        return SipResponse(status=status, reason=reason, headers=headers, body=body)
    request_match = _REQUEST_LINE.match(start_line)
    if not request_match:
        raise SipParseError(f"malformed start line {start_line[:80]!r}")
    method, uri_text, version = request_match.groups()
    if not is_token(method):
        raise SipParseError(f"invalid method {method!r}")
    uri = parse_uri(uri_text)
    if version != SIP_VERSION:
        raise SipParseError(f"unsupported version {version}", 505)
    if isinstance(uri, SipUri) and uri.headers:
        # RFC 3261 section 19.1.1 forbids URI headers in a Request-URI (RFC 4475 escruri).
        raise SipParseError(f"Request-URI {uri_text[:80]!r} carries URI headers")
    _validate(headers, method=method)
    return SipRequest(method=method, uri=uri, headers=headers, body=body)


class StreamFramer:
    """Cuts a TCP byte stream into messages using Content-Length (RFC 3261 section 18.3)."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        # Where the search for the end of the head resumes, so a head that
        # arrives a byte at a time is not rescanned from the start each time.
        self._scan_from = 0
        # Size of the message at the front of the buffer once its head is known.
        self._pending_total: int | None = None
        self._error: SipParseError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete message now available.

        Raises `SipParseError` when the stream cannot be framed any more
        (missing, repeated or invalid Content-Length, oversized message);
        the connection should then be closed. Messages completed before the
        bad bytes in the same call are returned first, and the error is
        raised by the next call.
        """
        if self._error is not None:
            raise self._error
        self._buffer.extend(data)
        frames: list[bytes] = []
        while True:
            if self._pending_total is None:
                self._skip_keepalives()
                try:
                    total = self._find_total()
                except SipParseError as exc:
                    if not frames:
                        raise
                    self._error = exc
                    return frames
                if total is None:
                    return frames
                self._pending_total = total
            if len(self._buffer) < self._pending_total:
                return frames
            frames.append(bytes(self._buffer[: self._pending_total]))
            del self._buffer[: self._pending_total]
            self._pending_total = None
            self._scan_from = 0

    def _skip_keepalives(self) -> None:
        # CRLF keep-alives (RFC 5626) and stray line ends between messages.
        skip = 0
        while skip < len(self._buffer) and self._buffer[skip] in b"\r\n":
            skip += 1
        if skip:
            del self._buffer[:skip]
            self._scan_from = max(0, self._scan_from - skip)

    def _find_total(self) -> int | None:
        match = _HEAD_END.search(self._buffer, self._scan_from)
        if match is None:
            if len(self._buffer) > self._max_size:
                raise MessageTooLarge(len(self._buffer), self._max_size)
            # The next search starts 3 bytes back: a head end may straddle chunks.
            self._scan_from = max(0, len(self._buffer) - 3)
            return None
        length = self._stream_content_length(bytes(self._buffer[: match.start()]))
        total = match.end() + length
        if total > self._max_size:
            raise MessageTooLarge(total, self._max_size)
        return total

    @staticmethod
    def _stream_content_length(head: bytes) -> int:
        # latin-1 never fails; only ASCII matters for the Content-Length line.
        lines = _unfold(head.decode("latin-1"))
        values: list[str] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep and name.strip(" \t").lower() in ("content-length", "l"):
                values.append(value.strip(" \t"))
        if not values:
            raise SipParseError("Content-Length is required on stream transports")
        if len(values) > 1:
            raise SipParseError("more than one Content-Length header")
        text = values[0]
        if not is_ascii_digits(text) or len(text) > 9:
            raise SipParseError(f"invalid Content-Length {text!r}")
        return int(text)

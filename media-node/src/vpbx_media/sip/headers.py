"""Header names and the structured header values SIP routing depends on.

Each structured value (`NameAddr`, `Via`, `CSeq`) parses from and serialises
to the header-value text, so `str(Via.parse(text))` is a canonical form of text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

from .errors import SipParseError
from .uri import (
    Params,
    Uri,
    format_params,
    get_param,
    is_ascii_digits,
    parse_host_port,
    parse_uri,
    set_param,
)

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "Path",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        *COMPACT_FORMS.values(),
    )
}

# Headers whose grammar is a comma-separated list (RFC 3261 section 7.3.1):
# several values may share one header line and mean the same as several lines.
LIST_HEADERS = frozenset(
    {
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow",
        "Allow-Events",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "In-Reply-To",
        "Path",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    }
)

# Headers that may appear at most once; two of them make a message malformed.
SINGLE_HEADERS = frozenset(
    {"Call-ID", "Content-Length", "Content-Type", "CSeq", "From", "Max-Forwards", "To", "Expires"}
)

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+\Z")


def canonical_name(name: str) -> str:
    """Long, conventionally capitalised form of a header name (compact forms expanded)."""
    lowered = name.lower()
    if len(lowered) == 1 and lowered in COMPACT_FORMS:
        return COMPACT_FORMS[lowered]
    known = _CANONICAL.get(lowered)
    if known is not None:
        return known
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def is_token(text: str) -> bool:
    return bool(_TOKEN.match(text))


# The characters split_list cares about; everything between them is copied as is.
_LIST_SPECIALS = re.compile(r'[\\",<>]')


def split_list(value: str) -> list[str]:
    """Split a list-header value on commas outside quoted strings and <...>.

    Walks only the special characters (a regex finds them), not every character:
    this runs for every Via, Contact and Authorization of every message.
    """
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    skip_to = -1  # a backslash inside quotes escapes the character after it
    for match in _LIST_SPECIALS.finditer(value):
        at = match.start()
        if at < skip_to:
            continue
        ch = value[at]
        if in_quotes:
            if ch == "\\":
                skip_to = at + 2
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append(value[start:at].strip())
            start = at + 1
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {value!r}")
    if in_angle:
        raise SipParseError(f"unterminated <...> in {value!r}")
    parts.append(value[start:].strip())
    if any(not part for part in parts):
        raise SipParseError(f"empty element in list {value!r}")
    return parts


_PARAM_NAME = re.compile(r"[^\s;=]+")
_PARAM_VALUE = re.compile(r"[^\s;,]+")
_LWS = re.compile(r"\s*")


def _parse_header_params(text: str, *, where: str) -> Params:
    """Parameters after a header value: `;name=value` with tokens or quoted strings."""
    # Walks an index instead of re-slicing the rest, so a value made of tens of
    # thousands of ';' stays linear rather than quadratic.
    params: list[tuple[str, str | None]] = []
    end = len(text)

    def skip_lws(at: int) -> int:
        match = _LWS.match(text, at)
        return at if match is None else match.end()

    pos = skip_lws(0)
    while pos < end:
        if text[pos] != ";":
            raise SipParseError(f"unexpected {text[pos : pos + 80]!r} in {where}")
        pos = skip_lws(pos + 1)
        name_match = _PARAM_NAME.match(text, pos)
        if not name_match or not is_token(name_match.group()):
            raise SipParseError(f"invalid parameter name in {where}: {text[pos : pos + 80]!r}")
        name = name_match.group()
        pos = skip_lws(name_match.end())
        if pos < end and text[pos] == "=":
            pos = skip_lws(pos + 1)
            if pos < end and text[pos] == '"':
                close = _quoted_end(text, pos)
                value = text[pos : close + 1]
                pos = close + 1
            else:
                value_match = _PARAM_VALUE.match(text, pos)
                if not value_match:
                    raise SipParseError(f"missing value for parameter {name!r} in {where}")
                value = value_match.group()
                if not (is_token(value) or parse_host_like(value)):
                    raise SipParseError(f"invalid value {value!r} for {name!r} in {where}")
                pos = value_match.end()
            pos = skip_lws(pos)
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def parse_host_like(value: str) -> bool:
    """True for a host or IPv6 reference, which may appear as a parameter value."""
    try:
        parse_host_port(value)
    except SipParseError:
        return False
    return True


def _quoted_end(text: str, start: int = 0) -> int:
    """Index of the closing quote of the quoted string starting at text[start]."""
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise SipParseError(f"unterminated quoted string in {text[start : start + 80]!r}")


def unquote_string(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, Route, Record-Route, Path values: display name, URI, params."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse a header value (memoised: a proxy reads the same value several times)."""
        return _parse_nameaddr_cached(text)

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("empty address")
        display: str | None = None
        rest: str
        if text.startswith('"'):
            end = _quoted_end(text)
            display = unquote_string(text[: end + 1])
            rest = text[end + 1 :].lstrip()
            if not rest.startswith("<"):
                raise SipParseError(f"quoted display name without <uri> in {text!r}")
        elif "<" in text:
            lt = text.index("<")
            shown = text[:lt].strip()
            if shown:
                if not all(is_token(word) for word in shown.split()):
                    raise SipParseError(f"invalid display name {shown!r}")
                display = " ".join(shown.split())
            rest = text[lt:]
        else:
            rest = text
        if rest.startswith("<"):
            end = rest.find(">")
            if end < 0:
                raise SipParseError(f"missing '>' in {text!r}")
            # RFC 3261 LAQUOT/RAQUOT allow no whitespace inside the brackets
            # (RFC 4475 badaspec), so the URI is not stripped.
            uri_text = rest[1:end]
            if not uri_text or any(ch.isspace() for ch in uri_text):
                raise SipParseError(f"whitespace inside URI {uri_text!r}")
            uri = parse_uri(uri_text)
            params = _parse_header_params(rest[end + 1 :], where="address")
        else:
            # addr-spec form: parameters after ';' belong to the header, not the URI.
            uri_text, sep, param_text = rest.partition(";")
            uri_text = uri_text.strip()
            if "?" in uri_text or any(ch.isspace() for ch in uri_text):
                raise SipParseError(f"invalid address {text!r}")
            uri = parse_uri(uri_text)
            params = _parse_header_params(";" + param_text, where="address") if sep else ()
        return cls(uri=uri, display_name=display, params=params)

    def __str__(self) -> str:
        shown = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{shown}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def with_tag(self, tag: str) -> NameAddr:
        return replace(self, params=set_param(self.params, "tag", tag))

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse a header value (memoised: a proxy reads the same value several times)."""
        return _parse_via_cached(text)

    @classmethod
    def _parse(cls, text: str) -> Via:
        match = re.match(r"\s*([^\s/]+)\s*/\s*([^\s/]+)\s*/\s*([^\s/]+)\s+(.*)$", text, re.S)
        if not match:
            raise SipParseError(f"malformed Via {text!r}")
        name, version, transport, rest = match.groups()
        if not (is_token(name) and is_token(version) and is_token(transport)):
            raise SipParseError(f"malformed Via protocol in {text!r}")
        sent_by_match = re.match(r"(\[[^\]]*\]|[^\s;:]+)(\s*:\s*([^\s;]+))?\s*", rest)
        if not sent_by_match:
            raise SipParseError(f"malformed Via sent-by in {text!r}")
        host_text = sent_by_match.group(1)
        port_text = sent_by_match.group(3)
        host, port = parse_host_port(host_text + (f":{port_text}" if port_text else ""))
        params = _parse_header_params(rest[sent_by_match.end() :], where="Via")
        return cls(
            transport=transport.upper(),
            host=host,
            port=port,
            params=params,
            protocol=f"{name.upper()}/{version}",
        )

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_params(self, **values: str | None) -> Via:
        params = self.params
        for name, value in values.items():
            params = set_param(params, name, value)
        return replace(self, params=params)


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a header value (memoised: a proxy reads the same value several times)."""
        return _parse_cseq_cached(text)

    @classmethod
    def _parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not is_ascii_digits(parts[0]) or not is_token(parts[1]):
            raise SipParseError(f"malformed CSeq {text!r}")
        seq = int(parts[0])
        if seq >= 2**31:
            raise SipParseError(f"CSeq number {parts[0]} out of range")
        return cls(seq=seq, method=parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


# A message's Via, From, To and CSeq are parsed when it arrives (validation) and again
# each time a layer looks at them (transaction keys, routing, responses); the values are
# immutable, so the parses are memoised per text. Errors are not cached.
_PARSE_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse_nameaddr_cached(text: str) -> NameAddr:
    return NameAddr._parse(text)


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse_via_cached(text: str) -> Via:
    return Via._parse(text)


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse_cseq_cached(text: str) -> CSeq:
    return CSeq._parse(text)

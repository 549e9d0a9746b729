"""SIP and other URIs (RFC 3261 section 19.1, RFC 3986 for non-SIP schemes)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote

from .errors import SipParseError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*\Z")
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?\Z")
# [0-9], not \d: str patterns would also accept non-ASCII digits such as "١٢".
_IPV4 = re.compile(r"^[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")
_ASCII_DIGITS = re.compile(r"^[0-9]+\Z")
_IPV6_REFERENCE = re.compile(r"^\[[0-9A-Fa-f:.]+\]\Z")
# Characters allowed (besides %HH escapes) in the user part and in parameter
# names/values; anything else, such as raw spaces or quotes, is malformed.
_USER_CHARS = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+\Z")
_PASSWORD_CHARS = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*\Z")
_PARAM_CHARS = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+\Z")
_HEADER_CHARS = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$@=,;]|%[0-9A-Fa-f]{2})*\Z")

Params = tuple[tuple[str, str | None], ...]


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9 (`str.isdigit` also accepts other scripts' digits)."""
    return bool(_ASCII_DIGITS.match(text))


def get_param(params: Params, name: str) -> str | None:
    """Value of a parameter (case-insensitive name); '' for a flag parameter."""
    lowered = name.lower()
    for key, value in params:
        if key.lower() == lowered:
            return "" if value is None else value
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    lowered = name.lower()
    kept = tuple((k, v) for k, v in params if k.lower() != lowered)
    return (*kept, (name, value))


def drop_param(params: Params, name: str) -> Params:
    lowered = name.lower()
    return tuple((k, v) for k, v in params if k.lower() != lowered)


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def parse_host_port(text: str) -> tuple[str, int | None]:
    """Split `host[:port]` and validate both; IPv6 references keep their brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if not _IPV6_REFERENCE.match(host):
            raise SipParseError(f"invalid IPv6 reference {host!r}")
        if rest and not rest.startswith(":"):
            raise SipParseError(f"unexpected text after host in {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        if _IPV4.match(host):
            if any(int(octet) > 255 for octet in host.split(".")):
                raise SipParseError(f"invalid IPv4 address {host!r}")
        elif not _HOSTNAME.match(host):
            raise SipParseError(f"invalid host {host!r}")
    port: int | None = None
    if port_text is not None:
        if not is_ascii_digits(port_text) or len(port_text) > 5 or int(port_text) > 65535:
            raise SipParseError(f"invalid port {port_text!r}")
        port = int(port_text)
    return host, port


def _parse_params(text: str, *, where: str) -> Params:
    params: list[tuple[str, str | None]] = []
    if not text:
        return ()
    for chunk in text.split(";"):
        name, sep, value = chunk.partition("=")
        if not name or not _PARAM_CHARS.match(name):
            raise SipParseError(f"invalid {where} parameter {chunk!r}")
        if sep:
            if not value or not _PARAM_CHARS.match(value):
                raise SipParseError(f"invalid value in {where} parameter {chunk!r}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A `sip:` or `sips:` URI. The user part is kept escaped, as on the wire."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: str = ""
    scheme: str = "sip"

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, sep, rest = text.partition(":")
        if not sep or scheme.lower() not in ("sip", "sips"):
            raise SipParseError(f"not a SIP URI: {text!r}")
        if not rest or any(ch.isspace() for ch in rest):
            raise SipParseError(f"malformed SIP URI {text!r}")
        user: str | None = None
        password: str | None = None
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user_text, psep, password_text = userinfo.partition(":")
            if not user_text or not _USER_CHARS.match(user_text):
                raise SipParseError(f"invalid user part in {text!r}")
            if psep:
                if not _PASSWORD_CHARS.match(password_text):
                    raise SipParseError(f"invalid password in {text!r}")
                password = password_text
            user = user_text
        rest, qsep, headers = rest.partition("?")
        if qsep and not _HEADER_CHARS.match(headers):
            raise SipParseError(f"invalid URI headers in {text!r}")
        hostport, _, param_text = rest.partition(";")
        host, port = parse_host_port(hostport)
        params = _parse_params(param_text, where="URI") if ";" in rest else ()
        return cls(
            host=host,
            user=user,
            password=password,
            port=port,
            params=params,
            headers=headers,
            scheme=scheme.lower(),
        )

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unquote(self.user)

    @property
    def transport(self) -> str:
        value = get_param(self.params, "transport")
        return (value or "udp").lower()

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_params(self, **values: str | None) -> SipUri:
        params = self.params
        for name, value in values.items():
            params = set_param(params, name, value)
        return replace(self, params=params)

    def without_param(self, name: str) -> SipUri:
        return replace(self, params=drop_param(self.params, name))


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any non-SIP URI (tel:, urn:, http: ...), kept verbatim."""

    scheme: str
    raw: str

    @classmethod
    def parse(cls, text: str) -> AbsoluteUri:
        scheme, sep, rest = text.partition(":")
        if not sep or not _SCHEME.match(scheme) or not rest:
            raise SipParseError(f"malformed URI {text!r}")
        if any(ch.isspace() or ch in '<>"' for ch in rest):
            raise SipParseError(f"malformed URI {text!r}")
        return cls(scheme=scheme.lower(), raw=text)

    def __str__(self) -> str:
        return self.raw


Uri = SipUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    scheme = text.partition(":")[0].lower()
    if scheme in ("sip", "sips"):
        return SipUri.parse(text)
    return AbsoluteUri.parse(text)

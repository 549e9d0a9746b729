"""Which URLs the platform may call on a tenant's behalf (webhooks, HTTP decisions, trunks).

A tenant chooses these URLs, but the platform's own machines make the requests,
from inside the cluster. Without a rule a tenant could point them at the
cluster's internal services (server-side request forgery). Outside local mode
a URL must therefore name a host on the Internet: no internal names, no
private, loopback, link-local or otherwise non-global address, also not one
embedded in an IPv6 address (IPv4-mapped, NAT64, 6to4, Teredo) or written as a
legacy number (``2130706433``, ``127.1``, ``0x7f.1``). At the moment of sending
the name is resolved, every address checked, and the request goes to the
checked address itself, so a DNS answer that changes between the check and the
connection cannot redirect it. Local mode allows internal hosts: there the
tenant's CRM usually runs on the same machine.

The same checks apply to a bare host that is not in a URL (a tenant's SIP trunk,
``sip:HOST:PORT``): ``host_problem`` judges its text, ``public_addresses``
resolves it and checks every address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_INTERNAL_NAMES = ("localhost",)
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".svc", ".cluster.local", ".lan")
_NAT64_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# What a tenant reads in the delivery log; the resolved addresses go to the server log only.
_NOT_ON_THE_INTERNET = "the host does not resolve to an address on the Internet"


class OutboundRefusedError(Exception):
    """The destination is not on the Internet and the policy wants it to be."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, for the forms that route to it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in prefix for prefix in _NAT64_PREFIXES) or (
        address in _IPV4_COMPATIBLE and int(address) > 1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_address(text: str) -> IpAddress | None:
    """An IP address written in a host, legacy IPv4 forms included; None for a name."""
    text = text.strip("[]").split("%", 1)[0]
    with contextlib.suppress(ValueError):  # not the standard notation: try the legacy ones
        return ipaddress.ip_address(text)
    if text and all(part for part in text.split(".")):
        try:
            # inet_aton accepts what resolvers accept: 127.1, 2130706433, 0x7f.0.0.1, 0177.1
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def is_internal(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not embedded.is_global:
            return True
    return not address.is_global


@dataclass(frozen=True)
class Destination:
    """Where to connect for a URL whose host was checked: the host and the address."""

    host: str
    address: IpAddress | None  # None: connect by name (local mode)


class OutboundPolicy:
    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def problem(self, url: str) -> str | None:
        """Why the URL may not be used, judged from its text alone; None when fine."""
        parts = urlsplit(url)
        if parts.username or parts.password:
            return "put no credentials in the URL; the request is signed instead"
        return self.host_problem(parts.hostname or "", "the URL")

    def host_problem(self, host: str, subject: str = "the host") -> str | None:
        """Why ``host`` (a name or an address) may not be called, judged from its text
        alone; None when fine. ``subject`` names it in the message ("the URL")."""
        if self.allow_private:
            return None
        host = host.strip("[]").lower().rstrip(".")
        address = parse_address(host)
        if address is not None:
            if is_internal(address):
                return f"{subject} must be reachable on the Internet, not a private address"
            return None
        if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
            return f"{subject} must be reachable on the Internet, not an internal name"
        try:
            host.encode("idna")
        except UnicodeError:
            return f"{subject} does not name a valid host"
        return None

    async def public_addresses(
        self, host: str, port: int, *, kind: socket.SocketKind = socket.SOCK_STREAM
    ) -> list[IpAddress]:
        """Every address ``host`` resolves to, each checked; raises OutboundRefusedError
        (with a message fit for the tenant's eyes) when one of them is not on the Internet
        or the name does not resolve. Call it after ``host_problem`` found nothing."""
        literal = parse_address(host)
        if literal is not None:
            if not self.allow_private and is_internal(literal):
                raise OutboundRefusedError(_NOT_ON_THE_INTERNET)
            return [literal]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=kind)
        except (OSError, UnicodeError, ValueError) as exc:
            raise OutboundRefusedError(f"the host {host} could not be resolved") from exc
        addresses = [address for info in infos if (address := parse_address(str(info[4][0])))]
        internal = [address for address in addresses if is_internal(address)]
        if not addresses or (internal and not self.allow_private):
            logger.warning("outbound request to %s refused: it resolves to %s", host, addresses)
            raise OutboundRefusedError(_NOT_ON_THE_INTERNET)
        return addresses

    async def destination(self, url: str) -> Destination:
        """The checked address to connect to for ``url``, right before a request.

        Raises OutboundRefusedError with a message fit for the tenant's eyes.
        """
        problem = self.problem(url)
        if problem is not None:
            raise OutboundRefusedError(problem)
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        if self.allow_private:
            return Destination(host, None)
        literal = parse_address(host)
        if literal is not None:
            return Destination(host, literal)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await self.public_addresses(host, port)
        return Destination(host, addresses[0])


@dataclass(frozen=True)
class PinnedRequest:
    """A URL rewritten to connect to a checked address, with what keeps it the same request."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, str]


def pin(url: str, destination: Destination) -> PinnedRequest:
    """Connect to the checked address while the server still sees the original host.

    The Host header keeps virtual hosting working and the TLS server name keeps
    SNI and certificate verification bound to the host name, not the address.
    """
    if destination.address is None or parse_address(destination.host) is not None:
        return PinnedRequest(url, {}, {})
    parts = urlsplit(url)
    address = destination.address
    literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": destination.host} if parts.scheme == "https" else {}
    return PinnedRequest(parts._replace(netloc=netloc).geturl(), {"Host": host_header}, extensions)

"""Which URLs the platform may call on a tenant's behalf (webhooks, HTTP decisions).

A tenant chooses these URLs, but the platform's own machines make the requests,
from inside the cluster. Without a rule a tenant could point them at the
cluster's internal services (server-side request forgery). Outside local mode
a URL must therefore name a host on the Internet: no internal names, no
private, loopback or link-local addresses, neither written in the URL nor
behind its DNS name at the moment of sending. Local mode allows them: there the
tenant's CRM usually runs on the same machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

_INTERNAL_NAMES = ("localhost",)
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".svc", ".cluster.local", ".lan")


class OutboundRefusedError(Exception):
    """The destination is not on the Internet and the policy wants it to be."""


def _internal_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return None if address.is_global else address


class OutboundPolicy:
    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def problem(self, url: str) -> str | None:
        """Why the URL may not be used, judged from its text alone; None when fine."""
        parts = urlsplit(url)
        if parts.username or parts.password:
            return "put no credentials in the URL; the request is signed instead"
        if self.allow_private:
            return None
        host = (parts.hostname or "").lower().rstrip(".")
        if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
            return "the URL must be reachable on the Internet, not an internal name"
        if _internal_address(host) is not None:
            return "the URL must be reachable on the Internet, not a private address"
        return None

    async def check_destination(self, url: str) -> None:
        """Refuse a URL whose host resolves, now, to an address not on the Internet.

        Checked right before each request, so a DNS name that pointed outside
        when the URL was saved cannot be moved onto an internal address later.
        """
        problem = self.problem(url)
        if problem is not None:
            raise OutboundRefusedError(problem)
        if self.allow_private:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            return  # unresolvable: the request itself fails and says so
        for info in infos:
            address = _internal_address(str(info[4][0]))
            if address is not None:
                raise OutboundRefusedError(
                    f"{host} resolves to {address}, which is not on the Internet"
                )

"""Where a trunk's requests go: its host resolved to one address, at send time.

A tenant's own trunk (``scope="tenant"``) is a tenant-chosen destination, so it passes
the platform's one outbound policy (``vpbx_common.outbound``) exactly like a webhook
URL: outside local mode its host must resolve to addresses on the Internet only, and
the request goes to the checked address. A platform trunk is the operator's carrier
(possibly on a private interconnect) and is only resolved.

The transport sends UDP datagrams to an address, never to a name, so the name is
resolved here in every case; a trunk given as an IP address needs no lookup.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from vpbx_common.nodeconfig.model import TrunkEntry
from vpbx_common.outbound import OutboundPolicy, OutboundRefusedError, parse_address
from vpbx_common.trunks import TrunkTransport

from ...sip.transport import Address, Flow, TransportKind

logger = logging.getLogger(__name__)


class TrunkUnreachableError(Exception):
    """The trunk's host cannot be used now; the message is fit for the trunk's status."""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _resolve(host: str, port: int) -> str:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise TrunkUnreachableError(f"cannot resolve {host}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise TrunkUnreachableError(f"cannot resolve {host}")
    # The node's SIP socket is usually IPv4: prefer an IPv4 answer.
    for address in addresses:
        if ":" not in address:
            return address
    return addresses[0]


async def trunk_destination(trunk: TrunkEntry, outbound: OutboundPolicy) -> Flow:
    """The flow a request to ``trunk`` takes now (raises TrunkUnreachableError)."""
    kind = TransportKind.TCP if trunk.transport is TrunkTransport.TCP else TransportKind.UDP
    host = trunk.host.strip("[]")
    address: str | None = None
    if trunk.scope == "tenant":
        try:
            destination = await outbound.destination(f"sip://{_url_host(host)}:{trunk.port}")
        except OutboundRefusedError as exc:
            raise TrunkUnreachableError(f"refused by outbound policy: {exc}") from exc
        if destination.address is not None:
            address = str(destination.address)
    if address is None:
        literal = parse_address(host)
        address = str(literal) if literal is not None else await _resolve(host, trunk.port)
    return Flow(kind, Address(address, trunk.port))

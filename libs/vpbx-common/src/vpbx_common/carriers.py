"""Where carriers' calls may come from: the networks of carrier trunks.

A trunk's calls come from its ``allowed_addresses`` (CIDRs). A trunk without any
comes from the addresses its host resolves to (one /32 or /128 each; a host given
as an IP address is that address). The SIP edge takes a call to a number (a DID)
only from the networks of the platform's trunks or of the number's tenant's own
trunks; a media node takes a call sent straight to it (a registered trunk sends
its calls to the node's Contact) only from its tenant's trunks.

A host name is resolved when the networks are computed and written (the routing
table in Redis, vpbx_common.routing) or loaded (a node's trunk config): a changed
DNS answer reaches the edge with the next rewrite. The writers rewrite
periodically (the local launcher and the operator on their sync loops, the
control API on its periodic pass), so a carrier that moves keeps working after
at most one period; one given by allowedAddresses never depends on DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .manifests import Trunk
from .outbound import parse_address
from .trunks import TrunkUriError, parse_networks, parse_trunk_uri

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOLVE_TIMEOUT_S = 5.0
# Source addresses remembered per network set (their verdicts); cleared when full.
_VERDICTS_KEPT = 4096


def host_networks(addresses: Iterable[str]) -> list[Network]:
    """One-address networks (/32, /128) of resolved addresses."""
    networks: list[Network] = []
    for text in addresses:
        address = parse_address(text)
        if address is not None:
            networks.append(ipaddress.ip_network(address))
    return networks


async def resolve_host(host: str, *, timeout: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """The addresses ``host`` resolves to now; [] (logged) when it does not resolve."""
    literal = parse_address(host)
    if literal is not None:
        return [str(literal)]
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM), timeout
        )
    except (OSError, UnicodeError, TimeoutError) as exc:
        logger.warning(
            "carrier host %s does not resolve (%s): its calls are not accepted", host, exc
        )
        return []
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


async def trunk_networks(
    host: str, allowed_addresses: Sequence[str], *, timeout: float = RESOLVE_TIMEOUT_S
) -> list[Network]:
    """Where a trunk's calls come from: its CIDRs, else its host's addresses."""
    if allowed_addresses:
        return parse_networks(list(allowed_addresses))
    return host_networks(await resolve_host(host, timeout=timeout))


async def uri_networks(uri: str, allowed_addresses: Sequence[str]) -> list[Network]:
    """``trunk_networks`` of a trunk given by its URI (``sip:HOST[:PORT]...``)."""
    if allowed_addresses:
        return parse_networks(list(allowed_addresses))
    try:
        host = parse_trunk_uri(uri).host
    except TrunkUriError as exc:
        logger.warning("trunk URI %r unusable, no calls accepted from it: %s", uri, exc)
        return []
    return await trunk_networks(host, ())


async def networks_of(trunks: Iterable[tuple[str, Sequence[str]]]) -> list[str]:
    """The networks of trunks given as (URI, allowed addresses), as sorted CIDR text."""
    pairs = list(trunks)
    found = await asyncio.gather(*(uri_networks(uri, allowed) for uri, allowed in pairs))
    return sorted({str(network) for networks in found for network in networks})


async def platform_networks(trunks: Iterable[Trunk]) -> list[str]:
    """The networks of the platform's trunks (Trunk manifests), as sorted CIDR text."""
    return await networks_of((t.spec.uri, t.spec.allowed_addresses) for t in trunks)


def encode_networks(cidrs: Iterable[str]) -> str:
    """The routing table's form of a network list (JSON array of CIDRs)."""
    return json.dumps(sorted(set(cidrs)), separators=(",", ":"))


@dataclass(slots=True)
class CarrierNetworks:
    """A set of networks a source address is checked against (memoised per address)."""

    networks: tuple[Network, ...] = ()
    _verdicts: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> CarrierNetworks:
        """From CIDR text; an entry that is no network is skipped (and logged)."""
        networks: list[Network] = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
            except ValueError:
                logger.warning("carrier network %r is no network; ignored", cidr)
        return cls(tuple(networks))

    @classmethod
    def decode(cls, raw: bytes | str | None) -> CarrierNetworks:
        """From the routing table's JSON; None (no key) or unreadable JSON: no networks."""
        if raw is None:
            return cls()
        try:
            value = json.loads(raw)
        except ValueError:
            logger.warning("carrier networks unreadable in the routing table: %r", raw[:200])
            return cls()
        if not isinstance(value, list):
            logger.warning("carrier networks in the routing table are not a list: %r", raw[:200])
            return cls()
        return cls.parse(str(item) for item in value)

    def contains(self, host: str) -> bool:
        """Whether the address ``host`` (as a socket reports it) is inside one of the networks."""
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._check(host)
            if len(self._verdicts) >= _VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def _check(self, host: str) -> bool:
        if not self.networks:
            return False
        try:
            address: IpAddress = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

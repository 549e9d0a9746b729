"""Carrier trunks: how a trunk is addressed, and where its registration state is kept.

A trunk is a SIP peer that carries calls to and from the telephone network: the
operator's carriers (platform trunks, from the platform file or the Helm values)
or a tenant's own (``/v1/trunks``). It is given as ``sip:HOST[:PORT][;transport=udp|tcp]``.

A trunk with ``register`` on is registered by the tenant's nodes (one binding per
city); each node writes what became of its registration into Redis, where the
control API reads it for ``GET /v1/trunks/{id}`` and its metrics.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import re
from dataclasses import dataclass

import redis.asyncio as redis
from pydantic import BaseModel

logger = logging.getLogger(__name__)

_TRUNK_URI = re.compile(
    r"^sips?:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?P<params>(?:;[A-Za-z0-9_-]+(?:=[A-Za-z0-9_.-]+)?)*)$"
)


class TrunkTransport(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"


class TrunkUriError(ValueError):
    """Text that is not a trunk URI; the message says why."""


@dataclass(frozen=True, slots=True)
class TrunkAddress:
    host: str
    port: int
    transport: TrunkTransport

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"sip:{host}:{self.port};transport={self.transport}"


def parse_trunk_uri(text: str) -> TrunkAddress:
    """``sip:HOST[:PORT][;transport=udp|tcp]`` (port 5060 and UDP by default)."""
    match = _TRUNK_URI.fullmatch(text.strip())
    if match is None:
        raise TrunkUriError("expected sip:HOST[:PORT][;transport=udp|tcp]")
    if text.strip().lower().startswith("sips:"):
        raise TrunkUriError("sips: (TLS) trunks are not supported yet; use transport=tcp or udp")
    port = int(match["port"] or 5060)
    if not 1 <= port <= 65535:
        raise TrunkUriError(f"port {port} is out of range")
    transport = TrunkTransport.UDP
    for parameter in filter(None, (match["params"] or "").split(";")):
        name, _, value = parameter.partition("=")
        if name.lower() != "transport":
            raise TrunkUriError(f"unknown URI parameter {name!r} (only transport is allowed)")
        try:
            transport = TrunkTransport(value.lower())
        except ValueError as error:
            raise TrunkUriError(f"transport must be udp or tcp, not {value!r}") from error
    return TrunkAddress(match["host"].strip("[]").lower(), port, transport)


def parse_networks(cidrs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """CIDRs (``192.0.2.0/24``, or one address) as networks; ValueError names a bad one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as error:
            raise ValueError(f"{cidr!r} is not an IP address or CIDR network") from error
    return networks


class RegistrationState(enum.StrEnum):
    """What a node's registration of a trunk is doing (``not-registering``: register off)."""

    NOT_REGISTERING = "not-registering"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # refused or unanswered; retried with backoff, ``reason`` says why


class TrunkRegistrationStatus(BaseModel):
    state: RegistrationState
    reason: str = ""  # the carrier's last refusal ("403 Forbidden", "no answer") when failed
    expires_at_ms: int = 0  # when the current binding lapses (registered)
    updated_at_ms: int = 0
    name: str = ""  # the trunk's name, for people reading metrics (ids are opaque)

    def registered_at(self, now_ms: int) -> bool:
        """Registered, with a binding that has not lapsed (a node may have died)."""
        return self.state is RegistrationState.REGISTERED and self.expires_at_ms > now_ms


@dataclass(frozen=True, slots=True)
class ReportedStatus:
    tenant: str
    trunk_id: str
    city: str
    status: TrunkRegistrationStatus


# One hash per trunk; field = city, value = TrunkRegistrationStatus JSON. Entries of a
# node that stopped lapse by their expires_at_ms; the hash itself by TTL.
_STATUS_KEY = "vpbx:trunk-status:{tenant}:{trunk}"
_STATUS_TTL_S = 24 * 3600


class TrunkStatusStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def put(
        self, tenant: str, trunk_id: str, city: str, status: TrunkRegistrationStatus
    ) -> None:
        key = _STATUS_KEY.format(tenant=tenant, trunk=trunk_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(key, city, status.model_dump_json())
            pipe.expire(key, _STATUS_TTL_S)
            await pipe.execute()

    async def get(self, tenant: str, trunk_id: str) -> dict[str, TrunkRegistrationStatus]:
        """City -> its node's registration status (empty: no node reported yet)."""
        raw = await self.client.hgetall(_STATUS_KEY.format(tenant=tenant, trunk=trunk_id))
        statuses: dict[str, TrunkRegistrationStatus] = {}
        for city, value in raw.items():
            city_text = city.decode() if isinstance(city, bytes) else str(city)
            try:
                statuses[city_text] = TrunkRegistrationStatus.model_validate(json.loads(value))
            except ValueError as error:
                # Written by a newer node with a state this reader does not know.
                logger.warning(
                    "tenant=%s trunk=%s status of %s unreadable: %s",
                    tenant,
                    trunk_id,
                    city_text,
                    error,
                )
        return statuses

    async def every(self) -> list[ReportedStatus]:
        """Every status any node reported, of every tenant (metrics; SCAN, not KEYS)."""
        found: list[ReportedStatus] = []
        async for key in self.client.scan_iter(match=_STATUS_KEY.format(tenant="*", trunk="*")):
            text = key.decode() if isinstance(key, bytes) else str(key)
            _, _, tenant, trunk_id = text.split(":", 3)
            for city, status in (await self.get(tenant, trunk_id)).items():
                found.append(ReportedStatus(tenant, trunk_id, city, status))
        return found

    async def forget(self, tenant: str, trunk_id: str) -> None:
        await self.client.delete(_STATUS_KEY.format(tenant=tenant, trunk=trunk_id))

"""The edge routing table: which tenant node takes a dialled number or a SIP domain.

The operator (or the local launcher) computes a ``RoutingSnapshot`` from the
platform manifests and writes it to Redis with ``RoutingTable.replace``; every
SIP edge reads single entries with ``lookup_number`` / ``lookup_domain``.

Redis layout (``prefix`` defaults to ``vpbx:route``)::

    <prefix>:number:<e164>      JSON NumberRoute
    <prefix>:domain:<domain>    JSON DomainRoute (domain lowercased)
    <prefix>:index:numbers      set of the e164 keys written by the last replace
    <prefix>:index:domains      set of the domains written by the last replace
    <prefix>:home:<tenant>      hash SIP username -> home city (the control API's
                                home directory; REGISTERs go to the home city's node)
    <prefix>:carriers           JSON array of CIDRs: where the platform's carriers (platform
                                trunks) send calls from; written by every replace
                                (absent: the platform has no carrier)
    <prefix>:carriers:<tenant>  JSON array of CIDRs: where the tenant's own trunks send
                                calls from (the control API; absent: no own trunks)

The edge takes a call to a number only from a carrier: a source inside the platform
carriers' networks or the number's tenant's (``lookup_number_from``; see
vpbx_common.carriers for how a trunk's networks are found).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from pydantic import Field, ValidationError, model_validator
from redis.asyncio.client import Pipeline

from vpbx_common.carriers import CarrierNetworks, encode_networks
from vpbx_common.models import StrictModel

logger = logging.getLogger(__name__)

_REPLACE_ATTEMPTS = 5

# Local mode: the control API's store of Tenants and Numbers changed; `vpbx up` starts and
# stops node processes to match and rewrites the routes.
PLATFORM_CHANGED_CHANNEL = "vpbx:platform:changed"


class NumberRoute(StrictModel):
    """Where calls to one dialled number go."""

    number: str
    tenant: str
    city: str
    node: str
    address: str = Field(description="host:port of the node's SIP listener")
    label: str | None = None
    entry: str
    channels: int = 0
    suspended: bool = False


class DomainRoute(StrictModel):
    """Where requests for one tenant SIP domain go (REGISTER, calls between users)."""

    domain: str
    tenant: str
    suspended: bool = False
    nodes: dict[str, str] = Field(description="city -> host:port")
    extensions: dict[str, str] = Field(default_factory=dict, description="extension -> home city")
    default_city: str

    @model_validator(mode="after")
    def _default_city_has_node(self) -> DomainRoute:
        if self.default_city not in self.nodes:
            raise ValueError(f"default city {self.default_city!r} has no node")
        return self

    def address_for(self, extension: str | None = None, home_city: str | None = None) -> str:
        """The node of the user's home city, else of the tenant's first city.

        ``home_city`` comes from the tenant's home directory (kept by the control
        API) and wins over ``extensions`` (from the platform file's users).
        """
        city = home_city or self.extensions.get(extension or "", self.default_city)
        return self.nodes.get(city) or self.nodes[self.default_city]


class RejectionReason(enum.StrEnum):
    TENANT_NOT_FOUND = "TenantNotFound"
    CITY_NOT_SERVED = "CityNotServed"
    DUPLICATE_NUMBER = "DuplicateNumber"


class RejectedNumber(StrictModel):
    """A Number resource that got no route, and why (for its status conditions)."""

    name: str
    number: str
    reason: RejectionReason
    message: str


class RoutingSnapshot(StrictModel):
    numbers: dict[str, NumberRoute] = Field(default_factory=dict)
    domains: dict[str, DomainRoute] = Field(default_factory=dict)
    carriers: list[str] = Field(
        default_factory=list, description="CIDRs the platform's carriers call from"
    )
    # Not written to Redis: the operator turns these into status conditions.
    rejected: list[RejectedNumber] = Field(default_factory=list)


class RoutingTableError(RuntimeError):
    """Redis holds an entry this code cannot read."""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def normalize_domain(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


# KEYS[1]: a domain route. ARGV[1]: the home directory key prefix, ARGV[2]: a SIP
# username, ARGV[3]/ARGV[4]: SHA-1 and tenant of the copy of the route the caller holds
# ("" for none). Returns {route JSON, or nil when absent or when the caller's copy is
# current; home city or nil; the route's SHA-1 or nil when absent}. A tenant's route
# holds its whole extension map (tens of KB for thousands of users): the caller keeps
# it parsed and only a changed route crosses the wire. The home directory key depends
# on the route's tenant, so it cannot be declared in KEYS: fine on one Redis, not on a
# cluster.
_DOMAIN_AND_HOME_SCRIPT = """
local route = redis.call('GET', KEYS[1])
if not route then
  return {false, false, false}
end
local sha = redis.sha1hex(route)
local tenant = false
if sha == ARGV[3] then
  tenant = ARGV[4]
  route = false
else
  local ok, decoded = pcall(cjson.decode, route)
  if ok and type(decoded) == 'table' and type(decoded.tenant) == 'string' then
    tenant = decoded.tenant
  end
end
local home = false
if tenant and ARGV[2] ~= '' then
  home = redis.call('HGET', ARGV[1] .. tenant, ARGV[2])
end
return {route, home, sha}
"""


# KEYS[1]: a number route, KEYS[2]: the platform carriers' networks. ARGV[1]: the tenant
# carriers key prefix, ARGV[2]: "1" to read KEYS[2] too. Returns {route JSON or nil,
# platform networks or nil, the networks of the route's tenant or nil}. The tenant's key
# depends on the route, so it cannot be declared in KEYS: fine on one Redis, not on a
# cluster (as the domain script above).
_NUMBER_AND_CARRIERS_SCRIPT = """
local route = redis.call('GET', KEYS[1])
local platform = false
if ARGV[2] == '1' then
  platform = redis.call('GET', KEYS[2])
end
local own = false
if route then
  local ok, decoded = pcall(cjson.decode, route)
  if ok and type(decoded) == 'table' and type(decoded.tenant) == 'string' then
    own = redis.call('GET', ARGV[1] .. decoded.tenant)
  end
end
return {route, platform, own}
"""

# Parsed tenant network lists kept by their JSON (cleared when this many are held).
_TENANT_NETWORKS_KEPT = 1024


class RoutingTable:
    def __init__(
        self,
        redis_client: redis.asyncio.Redis,
        prefix: str = "vpbx:route",
        *,
        carriers_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._domain_and_home = redis_client.register_script(_DOMAIN_AND_HOME_SCRIPT)
        self._number_and_carriers = redis_client.register_script(_NUMBER_AND_CARRIERS_SCRIPT)
        # The platform carriers' networks, read at most every carriers_ttl_s seconds: a
        # changed list reaches the edge that much later.
        self._carriers_ttl_s = carriers_ttl_s
        self._clock = clock
        self._platform: CarrierNetworks | None = None
        self._platform_read_at = 0.0
        self._tenant_networks: dict[bytes | str, CarrierNetworks] = {}
        # Domain key -> (SHA-1 of its JSON, parsed route), for lookup_domain_user.
        self._domains: dict[str, tuple[str, DomainRoute]] = {}
        self._number_index = f"{prefix}:index:numbers"
        self._domain_index = f"{prefix}:index:domains"

    def _number_key(self, e164: str) -> str:
        return f"{self._prefix}:number:{e164}"

    def _domain_key(self, domain: str) -> str:
        return f"{self._prefix}:domain:{normalize_domain(domain)}"

    @property
    def carriers_key(self) -> str:
        """The platform carriers' networks."""
        return f"{self._prefix}:carriers"

    def tenant_carriers_key(self, tenant: str) -> str:
        """The networks of the tenant's own trunks."""
        return f"{self._prefix}:carriers:{tenant}"

    async def replace(self, snapshot: RoutingSnapshot) -> None:
        """Make Redis hold exactly the snapshot's routes.

        One MULTI/EXEC writes the new entries and deletes the stale ones, so a
        lookup never sees a half-written table. The indexes are WATCHed: if two
        writers race, the loser re-reads them and tries again.
        """
        numbers = {number: route.model_dump_json() for number, route in snapshot.numbers.items()}
        domains = {
            normalize_domain(domain): route.model_dump_json()
            for domain, route in snapshot.domains.items()
        }
        carriers = encode_networks(snapshot.carriers)
        for attempt in range(1, _REPLACE_ATTEMPTS + 1):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(self._number_index, self._domain_index)
                    old_numbers = {_text(m) for m in await pipe.smembers(self._number_index)}
                    old_domains = {_text(m) for m in await pipe.smembers(self._domain_index)}
                    stale_keys = [self._number_key(n) for n in old_numbers - numbers.keys()]
                    stale_keys += [self._domain_key(d) for d in old_domains - domains.keys()]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if stale_keys:
                        pipe.delete(*stale_keys)
                    pipe.delete(self._number_index, self._domain_index)
                    if numbers:
                        pipe.mset({self._number_key(n): value for n, value in numbers.items()})
                        pipe.sadd(self._number_index, *numbers)
                    if domains:
                        pipe.mset({self._domain_key(d): value for d, value in domains.items()})
                        pipe.sadd(self._domain_index, *domains)
                    if snapshot.carriers:
                        pipe.set(self.carriers_key, carriers)
                    else:
                        pipe.delete(self.carriers_key)
                    await pipe.execute()
                except redis.exceptions.WatchError:
                    logger.warning(
                        "routing table changed while replacing it (attempt %d), retrying", attempt
                    )
                    continue
            logger.info(
                "routing table replaced: %d numbers, %d domains, %d platform carrier "
                "networks, %d stale entries removed",
                len(numbers),
                len(domains),
                len(snapshot.carriers),
                len(stale_keys),
            )
            return
        raise RoutingTableError(
            f"routing table kept changing under {_REPLACE_ATTEMPTS} replace attempts"
        )

    async def lookup_number(self, e164: str) -> NumberRoute | None:
        """The route of an E.164 number; normalise the dialled text first."""
        raw = await self._redis.get(self._number_key(e164))
        if raw is None:
            return None
        try:
            return NumberRoute.model_validate_json(raw)
        except ValidationError as error:
            raise RoutingTableError(f"unreadable route for number {e164}: {error}") from error

    async def lookup_number_from(self, e164: str, source: str) -> tuple[NumberRoute | None, bool]:
        """The number's route, and whether ``source`` (an IP address) is one of its carriers.

        A carrier sends from the networks of a platform trunk or of one of the number's
        tenant's own trunks. The edge's hot path (every call from outside): one round
        trip. The platform networks are kept for ``carriers_ttl_s``; a source inside them
        costs a plain GET, any other source one script that reads the route and the
        tenant's networks together (and the platform's, when the copy held is old).
        Without a route the answer says whether ``source`` is a platform carrier.
        """
        platform = self._platform
        fresh = (
            platform is not None and self._clock() - self._platform_read_at < self._carriers_ttl_s
        )
        if fresh and platform is not None and platform.contains(source):
            return await self.lookup_number(e164), True
        raw, raw_platform, raw_own = await self._number_and_carriers(
            keys=[self._number_key(e164), self.carriers_key],
            args=[self.tenant_carriers_key(""), "0" if fresh else "1"],
        )
        if not fresh or platform is None:
            platform = CarrierNetworks.decode(raw_platform)
            self._platform, self._platform_read_at = platform, self._clock()
        route = None
        if raw is not None:
            try:
                route = NumberRoute.model_validate_json(raw)
            except ValidationError as error:
                raise RoutingTableError(f"unreadable route for number {e164}: {error}") from error
        if platform.contains(source):
            return route, True
        return route, raw_own is not None and self._own_networks(raw_own).contains(source)

    def _own_networks(self, raw: bytes | str) -> CarrierNetworks:
        networks = self._tenant_networks.get(raw)
        if networks is None:
            if len(self._tenant_networks) >= _TENANT_NETWORKS_KEPT:
                self._tenant_networks.clear()
            networks = self._tenant_networks[raw] = CarrierNetworks.decode(raw)
        return networks

    async def platform_carriers(self) -> list[str]:
        """The platform carriers' networks as written (for diagnostics and tests)."""
        return [
            str(n)
            for n in CarrierNetworks.decode(await self._redis.get(self.carriers_key)).networks
        ]

    async def tenant_carriers(self, tenant: str) -> list[str]:
        """The networks of the tenant's own trunks as written."""
        raw = await self._redis.get(self.tenant_carriers_key(tenant))
        return [str(n) for n in CarrierNetworks.decode(raw).networks]

    def replace_tenant_carriers(self, pipe: Pipeline, tenant: str, cidrs: Sequence[str]) -> None:
        """Queue, on a MULTI pipeline, the replacement of the tenant's carrier networks
        (deleted when it has none)."""
        key = self.tenant_carriers_key(tenant)
        if cidrs:
            pipe.set(key, encode_networks(cidrs))
        else:
            pipe.delete(key)

    async def lookup_domain(self, domain: str) -> DomainRoute | None:
        """The route of a tenant SIP domain, compared case-insensitively."""
        raw = await self._redis.get(self._domain_key(domain))
        if raw is None:
            return None
        try:
            return DomainRoute.model_validate_json(raw)
        except ValidationError as error:
            raise RoutingTableError(f"unreadable route for domain {domain}: {error}") from error

    async def lookup_domain_user(
        self, domain: str, username: str | None
    ) -> tuple[DomainRoute | None, str | None]:
        """The domain's route and the user's home city, in one round trip.

        What ``lookup_domain`` and then ``home_city`` answer, for the edge's hot path
        (every REGISTER and every call from a phone). The route is parsed again only
        when its JSON in Redis changed (compared by SHA-1 inside the script).
        """
        key = self._domain_key(domain)
        held = self._domains.get(key)
        raw, home, sha = await self._domain_and_home(
            keys=[key],
            args=[
                self.home_key(""),
                username or "",
                held[0] if held else "",
                held[1].tenant if held else "",
            ],
        )
        if sha is None:
            self._domains.pop(key, None)
            return None, None
        if raw is None and held is not None:
            route = held[1]
        else:
            try:
                route = DomainRoute.model_validate_json(raw)
            except ValidationError as error:
                raise RoutingTableError(f"unreadable route for domain {domain}: {error}") from error
            self._domains[key] = (_text(sha), route)
        return route, None if home is None else _text(home)

    def home_key(self, tenant: str) -> str:
        """The tenant's home directory: SIP username (extension or device) -> home city."""
        return f"{self._prefix}:home:{tenant}"

    def replace_homes(self, pipe: Pipeline, tenant: str, homes: Mapping[str, str]) -> None:
        """Queue, on a MULTI pipeline, the replacement of the tenant's home directory."""
        key = self.home_key(tenant)
        pipe.delete(key)
        if homes:
            values: dict[Any, Any] = dict(homes)  # redis-py's key type is invariant
            pipe.hset(key, mapping=values)

    async def home_city(self, tenant: str, username: str) -> str | None:
        """Where the user behind a SIP username works; None when the directory has no entry."""
        raw = await self._redis.hget(self.home_key(tenant), username)
        return None if raw is None else _text(raw)

    async def numbers(self) -> set[str]:
        """The numbers written by the last replace (for diagnostics and the CLI)."""
        return {_text(member) for member in await self._redis.smembers(self._number_index)}

    async def domains(self) -> set[str]:
        return {_text(member) for member in await self._redis.smembers(self._domain_index)}

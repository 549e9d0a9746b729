"""Desired state of the platform, computed from manifests by pure functions.

The kopf handlers and the local launcher both call these and only apply the
result: which media nodes must exist (one per tenant per city) and what the edge
routing table must hold. No I/O and no kopf here, so all of it is unit-testable.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vpbx_common.manifests import Number, ObjectMeta, PbxConfig, Tenant
from vpbx_common.nodeconfig import NodeConfig, compile_node_config, manifest_source
from vpbx_common.routing import (
    DomainRoute,
    NumberRoute,
    RejectedNumber,
    RejectionReason,
    RoutingSnapshot,
)

logger = logging.getLogger(__name__)

NODE_NAME_PREFIX = "vpbx-node-"
# Service names must be DNS-1035 labels: at most 63 characters.
MAX_NODE_NAME_LENGTH = 63
_NAME_HASH_LENGTH = 10
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NO_TIMESTAMP = datetime.min.replace(tzinfo=UTC)

NodeAddress = Callable[[str, str], str]
"""(tenant, city) -> "host:port" of that node's SIP listener."""

__all__ = [
    "NodeAddress",
    "NodePlan",
    "RejectedNumber",
    "RejectionReason",
    "accept_numbers",
    "desired_nodes",
    "desired_routes",
    "node_name",
    "placed_routes",
]


def node_name(tenant: str, city: str) -> str:
    """``vpbx-node-<tenant>-<city>``, made DNS-safe.

    A name that is too long or has characters DNS does not allow is cut and
    given a hash of the full name, so different tenant/city pairs keep different
    names.
    """
    full = f"{NODE_NAME_PREFIX}{tenant}-{city}"
    if len(full) <= MAX_NODE_NAME_LENGTH and _DNS_1035_LABEL.fullmatch(full):
        return full
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:_NAME_HASH_LENGTH]
    safe = _NOT_DNS.sub("-", full.lower())
    head = safe[: MAX_NODE_NAME_LENGTH - _NAME_HASH_LENGTH - 1].rstrip("-")
    return f"{head}-{digest}"


@dataclass(frozen=True)
class NodePlan:
    """One media node that must exist: a Deployment + Service + ConfigMap in a cluster."""

    name: str
    tenant: str
    city: str
    replicas: int
    resources: Mapping[str, Any] | None
    config: NodeConfig


def _age_order(metadata: ObjectMeta) -> tuple[int, datetime, str]:
    # Objects without a timestamp (hand-written local files) come after every
    # API object and are ordered by name among themselves. ObjectMeta makes
    # timestamps timezone-aware, so they compare.
    created = metadata.creation_timestamp
    if created is None:
        return (1, _NO_TIMESTAMP, metadata.name)
    return (0, created, metadata.name)


def _tenants_by_name(tenants: Iterable[Tenant]) -> dict[str, Tenant]:
    by_name: dict[str, Tenant] = {}
    for tenant in tenants:
        if tenant.name in by_name:
            logger.warning("tenant %s is given twice; the first one is used", tenant.name)
            continue
        by_name[tenant.name] = tenant
    return by_name


def _configs_by_tenant(configs: Iterable[PbxConfig]) -> dict[str, PbxConfig]:
    by_tenant: dict[str, PbxConfig] = {}
    for config in configs:
        if config.tenant in by_tenant:
            logger.warning("PbxConfig %s is given twice; the first one is used", config.tenant)
            continue
        by_tenant[config.tenant] = config
    return by_tenant


def accept_numbers(
    tenants: Iterable[Tenant], numbers: Iterable[Number]
) -> tuple[list[Number], list[RejectedNumber]]:
    """Split Numbers into those that get a route and those that do not, with why.

    A Number needs an existing tenant that serves its city. Among Numbers that
    pass those checks and claim the same E.164 number, the oldest (by
    creationTimestamp, then name) keeps it; a broken older Number does not block
    a good newer one.
    """
    by_name = _tenants_by_name(tenants)
    rejected: list[RejectedNumber] = []
    candidates: list[Number] = []
    for number in numbers:
        spec = number.spec
        tenant = by_name.get(spec.tenant)
        if tenant is None:
            rejected.append(
                RejectedNumber(
                    name=number.name,
                    number=spec.number,
                    reason=RejectionReason.TENANT_NOT_FOUND,
                    message=f"tenant {spec.tenant!r} does not exist",
                )
            )
        elif spec.city not in tenant.spec.city_names:
            served = ", ".join(tenant.spec.city_names)
            rejected.append(
                RejectedNumber(
                    name=number.name,
                    number=spec.number,
                    reason=RejectionReason.CITY_NOT_SERVED,
                    message=f"tenant {tenant.name!r} serves {served}, not {spec.city!r}",
                )
            )
        else:
            candidates.append(number)

    holders: dict[str, Number] = {}
    for number in sorted(candidates, key=lambda number: _age_order(number.metadata)):
        holder = holders.get(number.spec.number)
        if holder is None:
            holders[number.spec.number] = number
            continue
        rejected.append(
            RejectedNumber(
                name=number.name,
                number=number.spec.number,
                reason=RejectionReason.DUPLICATE_NUMBER,
                message=f"{number.spec.number} already belongs to Number {holder.name!r}",
            )
        )
    accepted = sorted(holders.values(), key=lambda number: number.spec.number)
    rejected.sort(key=lambda rejection: rejection.name)
    return accepted, rejected


def desired_nodes(
    tenants: Sequence[Tenant], numbers: Sequence[Number], configs: Sequence[PbxConfig]
) -> list[NodePlan]:
    """One node per tenant per city, ordered by tenant name then city order.

    Suspended tenants keep their nodes: suspension must never lose settings or
    registrations; the node itself refuses calls.
    """
    accepted, _ = accept_numbers(tenants, numbers)
    config_of = _configs_by_tenant(configs)
    plans: list[NodePlan] = []
    for name, tenant in sorted(_tenants_by_name(tenants).items()):
        for placement in tenant.spec.cities:
            plans.append(
                NodePlan(
                    name=node_name(name, placement.name),
                    tenant=name,
                    city=placement.name,
                    replicas=placement.replicas,
                    resources=placement.resources,
                    config=compile_node_config(
                        manifest_source(tenant, accepted, config_of.get(name)), placement.name
                    ),
                )
            )
    return plans


def _domain_routes(
    tenants: Iterable[Tenant], configs: Sequence[PbxConfig], node_address: NodeAddress
) -> dict[str, DomainRoute]:
    config_of = _configs_by_tenant(configs)
    routes: dict[str, DomainRoute] = {}
    for tenant in sorted(tenants, key=lambda tenant: _age_order(tenant.metadata)):
        domain = tenant.spec.sip_domain
        if domain in routes:
            logger.warning(
                "tenant %s: sipDomain %s already belongs to tenant %s; no domain route",
                tenant.name,
                domain,
                routes[domain].tenant,
            )
            continue
        cities = tenant.spec.city_names
        config = config_of.get(tenant.name)
        users = config.spec.users if config is not None else []
        routes[domain] = DomainRoute(
            domain=domain,
            tenant=tenant.name,
            suspended=tenant.spec.suspended,
            nodes={city: node_address(tenant.name, city) for city in cities},
            # A user whose city the tenant does not serve registers in the default city.
            extensions={user.extension: user.city for user in users if user.city in cities},
            default_city=cities[0],
        )
    return routes


def desired_routes(
    tenants: Sequence[Tenant],
    numbers: Sequence[Number],
    node_address: NodeAddress,
    configs: Sequence[PbxConfig] = (),
    *,
    carriers: Sequence[str] = (),
) -> RoutingSnapshot:
    """The edge routing table: number routes, domain routes and rejected Numbers.

    ``carriers``: the networks the platform's carriers call from (CIDRs, resolved by
    the caller: vpbx_common.carriers.platform_networks); the edge takes calls to
    numbers from these and from the networks of the number's tenant's own trunks.

    ``configs`` gives each user's home city so REGISTERs reach it; without a
    tenant's config its users register in the tenant's first city. Suspended
    tenants keep their routes, marked suspended, so the edge can answer them
    with a clear refusal instead of "not found".
    """
    by_name = _tenants_by_name(tenants)
    accepted, rejected = accept_numbers(tenants, numbers)
    number_routes: dict[str, NumberRoute] = {}
    for number in accepted:
        spec = number.spec
        tenant = by_name[spec.tenant]
        number_routes[spec.number] = NumberRoute(
            number=spec.number,
            tenant=tenant.name,
            city=spec.city,
            node=node_name(tenant.name, spec.city),
            address=node_address(tenant.name, spec.city),
            label=spec.label,
            entry=spec.entry,
            channels=spec.channels,
            suspended=tenant.spec.suspended,
        )
    return RoutingSnapshot(
        numbers=number_routes,
        domains=_domain_routes(by_name.values(), configs, node_address),
        carriers=sorted(set(carriers)),
        rejected=rejected,
    )


def placed_routes(
    snapshot: RoutingSnapshot, tenants: Iterable[Tenant], node_address: NodeAddress
) -> RoutingSnapshot:
    """The routes of the tenants every city of which has a node address (not "").

    A tenant whose nodes are not all placed yet (no Service address in a cluster,
    no free port locally) gets no route at all rather than a route to nowhere.
    """
    placed = {
        tenant.name
        for tenant in tenants
        if all(node_address(tenant.name, city) for city in tenant.spec.city_names)
    }
    return RoutingSnapshot(
        numbers={key: route for key, route in snapshot.numbers.items() if route.tenant in placed},
        domains={key: route for key, route in snapshot.domains.items() if route.tenant in placed},
        carriers=snapshot.carriers,
        rejected=snapshot.rejected,
    )

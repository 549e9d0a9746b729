"""Pure computation of Tenant and Number status (conditions, per-city state).

Conditions follow the metav1.Condition shape. A condition keeps its
lastTransitionTime while its status stays the same, so status patches are
quiet when nothing really changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vpbx_common.manifests import UNROUTED_ENTRY
from vpbx_common.routing import RejectedNumber, RoutingSnapshot

Condition = dict[str, Any]


@dataclass(frozen=True)
class CityObservation:
    name: str
    node: str
    desired_replicas: int
    ready_replicas: int
    service_address: str | None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    previous: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> Condition:
    text = "True" if status else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    transition = now
    if before is not None and before.get("status") == text and before.get("lastTransitionTime"):
        transition = str(before["lastTransitionTime"])
    return {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }


def tenant_status(
    *,
    generation: int,
    suspended: bool,
    cities: Sequence[CityObservation],
    numbers: int,
    previous: Sequence[Mapping[str, Any]],
    invalid: str | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    now = now or now_rfc3339()
    ready_cities = [c for c in cities if c.ready_replicas >= max(1, c.desired_replicas)]
    missing = [c.name for c in cities if c not in ready_cities]
    if invalid is not None:
        ready = (False, "InvalidSpec", invalid)
        degraded = (True, "InvalidSpec", invalid)
    elif suspended:
        ready = (
            False,
            "Suspended",
            "the tenant is suspended: its calls are refused, its settings kept",
        )
        degraded = (False, "Suspended", "no service is expected while suspended")
    elif not missing:
        ready = (True, "NodesReady", f"media nodes ready in {len(cities)} city(ies)")
        degraded = (False, "NodesReady", "every city is served")
    else:
        waiting = ", ".join(missing)
        ready = (False, "NodesNotReady", f"waiting for media nodes in: {waiting}")
        partial = bool(ready_cities)
        degraded = (
            partial,
            "SomeCitiesNotReady" if partial else "NoCityReady",
            f"ready: {', '.join(c.name for c in ready_cities) or 'none'}; not ready: {waiting}",
        )
    suspended_condition = (
        (True, "SuspendedBySpec", "spec.suspended is true")
        if suspended
        else (False, "Active", "the tenant is active")
    )
    return {
        "observedGeneration": generation,
        "numbers": numbers,
        # A printer column shows one value of a list: the Cities column reads this.
        "cityNames": ",".join(c.name for c in cities),
        "cities": [
            {
                "name": c.name,
                "node": c.node,
                "replicas": c.desired_replicas,
                "readyReplicas": c.ready_replicas,
                **({"serviceAddress": c.service_address} if c.service_address else {}),
            }
            for c in cities
        ],
        "conditions": [
            condition(previous, "Ready", *ready, generation, now),
            condition(previous, "Degraded", *degraded, generation, now),
            condition(previous, "Suspended", *suspended_condition, generation, now),
        ],
    }


def number_status(
    *,
    name: str,
    number: str,
    generation: int,
    snapshot: RoutingSnapshot,
    previous: Sequence[Mapping[str, Any]],
    invalid: str | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    now = now or now_rfc3339()
    rejected: RejectedNumber | None = next((r for r in snapshot.rejected if r.name == name), None)
    route = snapshot.numbers.get(number) if rejected is None else None
    status: dict[str, Any] = {"observedGeneration": generation}
    if invalid is not None:
        ready = (False, "InvalidSpec", invalid)
    elif rejected is not None:
        ready = (False, str(rejected.reason), rejected.message)
    elif route is None or not route.address:
        ready = (False, "NotRouted", "waiting for the tenant's media node in this city")
    elif route.suspended:
        ready = (False, "TenantSuspended", f"tenant {route.tenant} is suspended; calls are refused")
        status.update(node=route.node, nodeAddress=route.address)
    elif route.entry == UNROUTED_ENTRY:
        ready = (False, "NoEntry", "the number has no entry route yet; its calls get 480")
        status.update(node=route.node, nodeAddress=route.address)
    else:
        ready = (True, "Routed", f"routed to {route.node} at {route.address}")
        status.update(node=route.node, nodeAddress=route.address)
    status["conditions"] = [condition(previous, "Ready", *ready, generation, now)]
    return status


def same_status(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Whether patching `wanted` would change nothing (ignores unknown extra keys)."""
    if current is None:
        return False
    return all(current.get(key) == value for key, value in wanted.items())

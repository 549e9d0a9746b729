"""The operator's reconcile loop: make the cluster and Redis equal to the CRs.

kopf handlers only record Tenant/Number bodies here and mark the state dirty;
one loop recomputes the whole desired state with the pure functions
(desired.py, render.py, conditions.py) and applies the difference. A
periodic pass repairs drift (a Redis restart, a child deleted by hand).
Children are applied with server-side apply, so a pass that changes nothing
writes nothing but is still cheap to repeat.

The routing table also holds where the platform's carriers call from (``carriers``:
the networks of the platform trunks, host names resolved on every pass, so a
changed DNS answer reaches the edges within one resync interval).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from vpbx_common.manifests import ManifestError, Number, Tenant, parse_manifest
from vpbx_common.routing import RoutingSnapshot

from .conditions import CityObservation, number_status, same_status, tenant_status
from .desired import desired_nodes, desired_routes, placed_routes
from .render import (
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    SIP_PORT,
    NodeTemplate,
    render_node,
    tenant_owner_reference,
)

logger = logging.getLogger(__name__)

RECONCILES = Counter("vpbx_operator_reconciles_total", "Reconcile passes")
RECONCILE_ERRORS = Counter("vpbx_operator_reconcile_errors_total", "Failed reconcile passes")
RECONCILE_SECONDS = Histogram("vpbx_operator_reconcile_duration_seconds", "Reconcile pass duration")
MANAGED = Gauge("vpbx_operator_managed_objects", "Objects under management", ["kind"])

API_CONCURRENCY = 8
CHILD_KINDS = ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget")


class Cluster(Protocol):
    """What the loop needs from the Kubernetes API (a test can stand in for it)."""

    def apply(self, manifest: Mapping[str, Any]) -> None: ...

    def list_children(self, namespace: str, kind: str, selector: str) -> list[dict[str, Any]]: ...

    def delete(self, namespace: str, kind: str, name: str) -> None: ...

    def patch_status(self, plural: str, name: str, status: Mapping[str, Any]) -> None: ...


class RoutingWriter(Protocol):
    async def replace(self, snapshot: RoutingSnapshot) -> None: ...


CarrierNetworksSource = Callable[[], Awaitable[Sequence[str]]]
"""The platform carriers' networks now (CIDRs): vpbx_common.carriers.platform_networks
of the platform trunks."""


async def _no_carriers() -> Sequence[str]:
    return ()


@dataclass
class Observed:
    """The CRs as last seen by the watches."""

    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _fingerprint(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


class Reconciler:
    def __init__(
        self,
        cluster: Cluster,
        routing: RoutingWriter | None,
        *,
        namespace: str,
        template: NodeTemplate,
        resync_interval: float = 30.0,
        debounce: float = 0.2,
        carriers: CarrierNetworksSource = _no_carriers,
    ) -> None:
        self.cluster = cluster
        self.routing = routing
        self.carriers = carriers
        self.namespace = namespace
        self.template = template
        self.resync_interval = resync_interval
        self.debounce = debounce
        self.observed = Observed()
        self._dirty = asyncio.Event()
        self._applied: dict[tuple[str, str], str] = {}
        self._statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self.passes = 0

    # --- fed by the kopf handlers ---------------------------------------------

    def observe(self, plural: str, body: Mapping[str, Any], deleted: bool) -> None:
        store = self.observed.tenants if plural == "tenants" else self.observed.numbers
        name = str(body.get("metadata", {}).get("name", ""))
        if deleted:
            store.pop(name, None)
            self._statuses.pop((plural, name), None)
        else:
            store[name] = dict(body)
        self._dirty.set()

    # --- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), self.resync_interval)
                await asyncio.sleep(self.debounce)  # coalesce bursts of events
            except TimeoutError:
                self._applied.clear()  # the periodic pass re-applies everything
            self._dirty.clear()
            await self.reconcile_once()

    async def reconcile_once(self) -> None:
        RECONCILES.inc()
        started = time.monotonic()
        try:
            await self._reconcile()
        except Exception:
            RECONCILE_ERRORS.inc()
            logger.exception("reconcile failed; retrying")
            await asyncio.sleep(1.0)
            self._dirty.set()
        finally:
            RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.passes += 1

    def _parse(
        self, observed: Observed
    ) -> tuple[list[Tenant], list[Number], dict[tuple[str, str], str]]:
        tenants: list[Tenant] = []
        numbers: list[Number] = []
        invalid: dict[tuple[str, str], str] = {}
        for plural, store in (("tenants", observed.tenants), ("numbers", observed.numbers)):
            for name, body in store.items():
                try:
                    parsed = parse_manifest(_without_status(body))
                except (ManifestError, ValidationError, ValueError) as exc:
                    invalid[(plural, name)] = str(exc)[:500]
                    continue
                if isinstance(parsed, Tenant):
                    tenants.append(parsed)
                elif isinstance(parsed, Number):
                    numbers.append(parsed)
        return tenants, numbers, invalid

    async def _reconcile(self) -> None:
        # The watches keep updating `observed` while this pass awaits the API: work on
        # a copy so one pass sees one consistent picture.
        observed = Observed(dict(self.observed.tenants), dict(self.observed.numbers))
        tenants, numbers, invalid = self._parse(observed)
        plans = desired_nodes(tenants, numbers, [])
        bodies = observed.tenants
        wanted: dict[str, set[str]] = {kind: set() for kind in CHILD_KINDS}
        to_apply: list[tuple[tuple[str, str], str, dict[str, Any]]] = []
        for plan in plans:
            uid = str(bodies[plan.tenant]["metadata"].get("uid", ""))
            owner = tenant_owner_reference(plan.tenant, uid)
            for manifest in render_node(plan, self.namespace, owner, self.template).all():
                kind = manifest["kind"]
                wanted[kind].add(plan.name)
                key = (kind, plan.name)
                fingerprint = _fingerprint(manifest)
                if self._applied.get(key) != fingerprint:
                    to_apply.append((key, fingerprint, manifest))
        await self._in_chunks(
            [self._apply(key, fingerprint, manifest) for key, fingerprint, manifest in to_apply]
        )
        selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}=media-node"
        observed_children: dict[str, list[dict[str, Any]]] = {}
        for kind in CHILD_KINDS:
            children = await asyncio.to_thread(
                self.cluster.list_children, self.namespace, kind, selector
            )
            observed_children[kind] = children
            for child in children:
                name = child["metadata"]["name"]
                if name not in wanted[kind]:
                    logger.info("deleting %s %s/%s: no longer desired", kind, self.namespace, name)
                    await asyncio.to_thread(self.cluster.delete, self.namespace, kind, name)
                    self._applied.pop((kind, name), None)
            MANAGED.labels(kind=kind).set(len(wanted[kind]))
        service_ips = {
            s["metadata"]["name"]: s.get("spec", {}).get("clusterIP")
            for s in observed_children["Service"]
        }
        ready = {
            d["metadata"]["name"]: int((d.get("status") or {}).get("readyReplicas") or 0)
            for d in observed_children["Deployment"]
        }
        addresses = {
            (plan.tenant, plan.city): f"{service_ips[plan.name]}:{SIP_PORT}"
            for plan in plans
            if service_ips.get(plan.name) not in (None, "", "None")
        }

        def node_address(tenant: str, city: str) -> str:
            return addresses.get((tenant, city), "")

        full = desired_routes(tenants, numbers, node_address)
        # Redis gets a tenant's routes once every city of it has a Service address.
        snapshot = placed_routes(full, tenants, node_address)
        if self.routing is not None:
            carriers = sorted(set(await self.carriers()))
            await self.routing.replace(snapshot.model_copy(update={"carriers": carriers}))
        await self._write_statuses(
            observed, tenants, numbers, plans, ready, addresses, full, invalid
        )

    async def _write_statuses(
        self,
        observed: Observed,
        tenants: list[Tenant],
        numbers: list[Number],
        plans: list[Any],
        ready: Mapping[str, int],
        addresses: Mapping[tuple[str, str], str],
        snapshot: RoutingSnapshot,
        invalid: Mapping[tuple[str, str], str],
    ) -> None:
        by_tenant: dict[str, list[CityObservation]] = {}
        for plan in plans:
            by_tenant.setdefault(plan.tenant, []).append(
                CityObservation(
                    name=plan.city,
                    node=plan.name,
                    desired_replicas=plan.replicas,
                    ready_replicas=ready.get(plan.name, 0),
                    service_address=addresses.get((plan.tenant, plan.city)),
                )
            )
        counts = collections.Counter(route.tenant for route in snapshot.numbers.values())
        tenant_by_name = {t.name: t for t in tenants}
        number_by_name = {n.name: n for n in numbers}
        patches: list[tuple[str, str, Mapping[str, Any], dict[str, Any]]] = []
        for name, body in observed.tenants.items():
            tenant = tenant_by_name.get(name)
            status = tenant_status(
                generation=int(body["metadata"].get("generation", 0)),
                suspended=bool(tenant.spec.suspended) if tenant else False,
                cities=by_tenant.get(name, []),
                numbers=counts.get(name, 0),
                previous=_conditions(body),
                invalid=invalid.get(("tenants", name)),
            )
            patches.append(("tenants", name, body, status))
        for name, body in observed.numbers.items():
            number = number_by_name.get(name)
            status = number_status(
                name=name,
                number=number.spec.number if number else "",
                generation=int(body["metadata"].get("generation", 0)),
                snapshot=snapshot,
                previous=_conditions(body),
                invalid=invalid.get(("numbers", name)),
            )
            patches.append(("numbers", name, body, status))
        await self._in_chunks([self._patch_status(*patch) for patch in patches])

    @staticmethod
    async def _in_chunks(calls: list[Coroutine[Any, Any, None]]) -> None:
        """A few API calls in flight at once: a bulk import means thousands of them."""
        for start in range(0, len(calls), API_CONCURRENCY):
            await asyncio.gather(*calls[start : start + API_CONCURRENCY])

    async def _apply(
        self, key: tuple[str, str], fingerprint: str, manifest: dict[str, Any]
    ) -> None:
        await asyncio.to_thread(self.cluster.apply, manifest)
        self._applied[key] = fingerprint

    async def _patch_status(
        self, plural: str, name: str, body: Mapping[str, Any], status: dict[str, Any]
    ) -> None:
        key = (plural, name)
        if self._statuses.get(key) != status and not same_status(body.get("status"), status):
            await asyncio.to_thread(self.cluster.patch_status, plural, name, status)
        self._statuses[key] = status


def _without_status(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "status"}


def _conditions(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    return [c for c in conditions if isinstance(c, Mapping)]

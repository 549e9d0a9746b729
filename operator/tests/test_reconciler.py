"""The reconcile loop against an in-memory cluster and a real Redis routing table."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import redis.asyncio as redis

from vpbx_common.carriers import platform_networks
from vpbx_common.manifests import Tenant, parse_manifest
from vpbx_common.platformtrunks import PlatformTrunks
from vpbx_common.routing import RoutingTable
from vpbx_operator.desired import NodePlan, desired_nodes
from vpbx_operator.reconciler import Reconciler
from vpbx_operator.render import LABEL_TENANT, NodeTemplate, render_node

NAMESPACE = "vpbx"


class MemoryCluster:
    """Stands in for the API server: objects by (kind, name), statuses by (plural, name)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self.applies = 0
        self._ip = 10

    def apply(self, manifest: Mapping[str, Any]) -> None:
        self.applies += 1
        key = (manifest["kind"], manifest["metadata"]["name"])
        current = self.objects.get(key, {})
        obj = copy.deepcopy(dict(manifest))
        if manifest["kind"] == "Service":
            self._ip += 1
            ip = current.get("spec", {}).get("clusterIP") or f"10.96.0.{self._ip}"
            obj["spec"]["clusterIP"] = ip
        if "status" in current:
            obj["status"] = current["status"]
        self.objects[key] = obj

    def list_children(self, namespace: str, kind: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    def delete(self, namespace: str, kind: str, name: str) -> None:
        self.objects.pop((kind, name), None)

    def patch_status(self, plural: str, name: str, status: Mapping[str, Any]) -> None:
        self.statuses[(plural, name)] = dict(status)

    def set_ready(self, name: str, ready: int) -> None:
        self.objects[("Deployment", name)]["status"] = {"readyReplicas": ready}

    def names(self, kind: str) -> set[str]:
        return {name for (k, name) in self.objects if k == kind}


def tenant(
    name: str, cities: list[str], *, suspended: bool = False, generation: int = 1
) -> dict[str, Any]:
    return {
        "apiVersion": "vpbx.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": generation},
        "spec": {
            "displayName": name.title(),
            "sipDomain": f"{name}.vpbx.local",
            "cities": [{"name": city} for city in cities],
            "suspended": suspended,
        },
    }


def number(
    name: str, e164: str, tenant_name: str, city: str, created: str, entry: str = "101"
) -> dict[str, Any]:
    return {
        "apiVersion": "vpbx.io/v1alpha1",
        "kind": "Number",
        "metadata": {"name": name, "generation": 1, "creationTimestamp": created},
        "spec": {"number": e164, "tenant": tenant_name, "city": city, "entry": entry},
    }


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


@pytest.fixture
async def routing(flushed_redis: str) -> Any:
    client = redis.Redis.from_url(flushed_redis)
    yield RoutingTable(client)
    await client.aclose()


async def test_tenant_with_two_cities_gets_two_nodes_and_becomes_ready(routing: Any) -> None:
    cluster = MemoryCluster()
    reconciler = Reconciler(cluster, routing, namespace=NAMESPACE, template=NodeTemplate())
    reconciler.observe("tenants", tenant("acme", ["msk", "ekb"]), deleted=False)
    reconciler.observe(
        "numbers", number("acme-main", "+74950000001", "acme", "msk", "2026-01-01T00:00:00Z"), False
    )

    await reconciler.reconcile_once()

    nodes = {"vpbx-node-acme-msk", "vpbx-node-acme-ekb"}
    for kind in ("Deployment", "Service", "ConfigMap"):
        assert cluster.names(kind) == nodes
    owner = cluster.objects[("Deployment", "vpbx-node-acme-msk")]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Tenant", "acme", "uid-acme")
    status = cluster.statuses[("tenants", "acme")]
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Ready")["reason"] == "NodesNotReady"

    cluster.set_ready("vpbx-node-acme-msk", 1)
    await reconciler.reconcile_once()
    status = cluster.statuses[("tenants", "acme")]
    assert condition(status, "Degraded")["status"] == "True"
    cluster.set_ready("vpbx-node-acme-ekb", 1)
    await reconciler.reconcile_once()
    status = cluster.statuses[("tenants", "acme")]
    assert condition(status, "Ready")["status"] == "True"
    assert status["numbers"] == 1
    route = await routing.lookup_number("+74950000001")
    assert route is not None
    assert route.address.endswith(":5060")
    assert cluster.statuses[("numbers", "acme-main")]["node"] == "vpbx-node-acme-msk"


async def test_a_number_without_an_entry_is_routed_but_not_ready(routing: Any) -> None:
    cluster = MemoryCluster()
    reconciler = Reconciler(cluster, routing, namespace=NAMESPACE, template=NodeTemplate())
    reconciler.observe("tenants", tenant("acme", ["msk"]), deleted=False)
    created = "2026-01-01T00:00:00Z"
    spare = number("acme-spare", "+74950000005", "acme", "msk", created, entry="unrouted")
    reconciler.observe("numbers", spare, False)
    await reconciler.reconcile_once()
    cluster.set_ready("vpbx-node-acme-msk", 1)
    await reconciler.reconcile_once()

    ready = condition(cluster.statuses[("numbers", "acme-spare")], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoEntry")
    assert await routing.lookup_number("+74950000005") is not None  # callers get a 480 + CDR


async def test_removing_a_city_deletes_its_children_and_deleting_the_tenant_all(
    routing: Any,
) -> None:
    cluster = MemoryCluster()
    reconciler = Reconciler(cluster, routing, namespace=NAMESPACE, template=NodeTemplate())
    reconciler.observe("tenants", tenant("acme", ["msk", "ekb"]), deleted=False)
    await reconciler.reconcile_once()

    reconciler.observe("tenants", tenant("acme", ["msk"], generation=2), deleted=False)
    await reconciler.reconcile_once()
    assert cluster.names("Deployment") == {"vpbx-node-acme-msk"}
    assert cluster.names("ConfigMap") == {"vpbx-node-acme-msk"}

    reconciler.observe("tenants", tenant("acme", ["msk"], generation=2), deleted=True)
    await reconciler.reconcile_once()
    assert not cluster.objects
    assert await routing.lookup_domain("acme.vpbx.local") is None


async def test_duplicate_number_and_suspension(routing: Any) -> None:
    cluster = MemoryCluster()
    reconciler = Reconciler(cluster, routing, namespace=NAMESPACE, template=NodeTemplate())
    reconciler.observe("tenants", tenant("acme", ["msk"]), deleted=False)
    reconciler.observe("tenants", tenant("globex", ["msk"]), deleted=False)
    older = number("acme-main", "+74950000001", "acme", "msk", "2026-01-01T00:00:00Z")
    newer = number("globex-grab", "+74950000001", "globex", "msk", "2026-02-01T00:00:00Z")
    reconciler.observe("numbers", older, deleted=False)
    reconciler.observe("numbers", newer, deleted=False)
    await reconciler.reconcile_once()

    assert (
        condition(cluster.statuses[("numbers", "globex-grab")], "Ready")["reason"]
        == "DuplicateNumber"
    )
    assert condition(cluster.statuses[("numbers", "acme-main")], "Ready")["status"] == "True"

    reconciler.observe(
        "tenants", tenant("acme", ["msk"], suspended=True, generation=2), deleted=False
    )
    await reconciler.reconcile_once()
    tenant_status = cluster.statuses[("tenants", "acme")]
    assert condition(tenant_status, "Suspended")["status"] == "True"
    assert (
        condition(cluster.statuses[("numbers", "acme-main")], "Ready")["reason"]
        == "TenantSuspended"
    )
    assert cluster.names("Deployment") == {"vpbx-node-acme-msk", "vpbx-node-globex-msk"}
    route = await routing.lookup_number("+74950000001")
    assert route is not None
    assert route.suspended

    reconciler.observe("tenants", tenant("acme", ["msk"], generation=3), deleted=False)
    await reconciler.reconcile_once()
    route = await routing.lookup_number("+74950000001")
    assert route is not None
    assert not route.suspended
    assert condition(cluster.statuses[("tenants", "acme")], "Suspended")["status"] == "False"


async def test_periodic_pass_repairs_a_flushed_routing_table(
    routing: Any, flushed_redis: str
) -> None:
    cluster = MemoryCluster()
    reconciler = Reconciler(cluster, routing, namespace=NAMESPACE, template=NodeTemplate())
    reconciler.observe("tenants", tenant("acme", ["msk"]), deleted=False)
    reconciler.observe(
        "numbers", number("acme-main", "+74950000001", "acme", "msk", "2026-01-01T00:00:00Z"), False
    )
    await reconciler.reconcile_once()
    applies = cluster.applies
    client = redis.Redis.from_url(flushed_redis)
    await client.flushall()
    await client.aclose()

    await reconciler.reconcile_once()

    assert await routing.lookup_number("+74950000001") is not None
    assert cluster.applies == applies, "unchanged children are not re-applied"
    labels = cluster.objects[("Deployment", "vpbx-node-acme-msk")]["metadata"]["labels"]
    assert labels[LABEL_TENANT] == "acme"


async def test_every_pass_writes_where_the_platform_carriers_call_from(
    routing: Any, tmp_path: Any
) -> None:
    """The networks of the platform trunks (the file the control API reads too), read again
    when the file changes and resolved again on every pass (the periodic one included)."""
    path = tmp_path / "trunks.yaml"
    path.write_text(
        "apiVersion: config.vpbx.io/v1alpha1\nkind: Trunk\nmetadata: {name: main}\n"
        "spec: {uri: 'sip:carrier.example', allowedAddresses: [198.51.100.0/24]}\n---\n"
        "apiVersion: config.vpbx.io/v1alpha1\nkind: Trunk\nmetadata: {name: backup}\n"
        "spec: {uri: 'sip:203.0.113.5:5060'}\n"
    )
    trunks = PlatformTrunks(path)
    passes = 0

    async def carriers() -> list[str]:
        nonlocal passes
        passes += 1
        return await platform_networks(trunks.current())

    reconciler = Reconciler(
        MemoryCluster(), routing, namespace=NAMESPACE, template=NodeTemplate(), carriers=carriers
    )
    reconciler.observe("tenants", tenant("acme", ["msk"]), deleted=False)
    await reconciler.reconcile_once()
    assert await routing.platform_carriers() == ["198.51.100.0/24", "203.0.113.5/32"]
    found, from_carrier = await routing.lookup_number_from("+74950000001", "203.0.113.5")
    assert (found, from_carrier) == (None, True)

    path.write_text(path.read_text().replace("203.0.113.5", "203.0.113.6"))
    await reconciler.reconcile_once()
    assert await routing.platform_carriers() == ["198.51.100.0/24", "203.0.113.6/32"]
    assert passes == 2


def test_media_nodes_get_the_edge_secret_to_check_what_the_edge_relayed() -> None:
    plan = desired_nodes_for("acme", "msk")
    template = NodeTemplate(nonce_secret="signing", edge_secret="signing")
    env = render_node(plan, NAMESPACE, {}, template).deployment["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in env
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert refs["VPBX_EDGE_SECRET"] == {"name": "signing", "key": "secret"}
    assert "VPBX_EDGE_SECRET" not in {
        e["name"]
        for e in render_node(plan, NAMESPACE, {}, NodeTemplate()).deployment["spec"]["template"][
            "spec"
        ]["containers"][0]["env"]
    }


def desired_nodes_for(name: str, city: str) -> NodePlan:
    parsed = parse_manifest(tenant(name, [city]))
    assert isinstance(parsed, Tenant)
    (plan,) = desired_nodes([parsed], [], [])
    return plan

"""`vpbx up` plays the operator: node processes and edge routes follow the local store.

The store is the control API's (Tenant and Number resources in one file, each change
announced on Redis); the node processes here are stand-ins, the routes real Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis

from vpbx_cli.layout import LocalLayout, plan_node_changes
from vpbx_cli.local import (
    LocalPlatform,
    PlatformSync,
    Supervised,
    SupervisedNodes,
    plan_platform,
)
from vpbx_common.manifests import Number, Tenant, load_platform_file, parse_manifest
from vpbx_common.routing import DomainRoute, NumberRoute, RoutingTable
from vpbx_control.numbers.local import LocalNumberStore
from vpbx_operator.desired import NodePlan, desired_nodes

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
T = TypeVar("T")


def number(name: str, e164: str, tenant: str = "acme", city: str = "ekb") -> Number:
    manifest = parse_manifest(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Number",
            "metadata": {"name": name},
            "spec": {"number": e164, "tenant": tenant, "city": city, "entry": "unrouted"},
        }
    )
    assert isinstance(manifest, Number)
    return manifest


def tenant(name: str, cities: list[str], *, suspended: bool = False) -> Tenant:
    manifest = parse_manifest(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {
                "displayName": name.title(),
                "sipDomain": f"{name}.vpbx.local",
                "cities": [{"name": city} for city in cities],
                "suspended": suspended,
            },
        }
    )
    assert isinstance(manifest, Tenant)
    return manifest


def plans(*tenants: Tenant) -> list[NodePlan]:
    return desired_nodes(list(tenants), [], [])


# --- slots: which node runs where (pure) --------------------------------------------

LAYOUT = LocalLayout(node_port_base=5070, rtp_port_base=20000, rtp_ports_per_node=4000)


def started(changes: Any) -> dict[str, int]:
    return {start.plan.name: start.slot for start in changes.start}


def test_at_start_the_nodes_take_slots_in_plan_order() -> None:
    changes = plan_node_changes(
        plans(tenant("acme", ["msk", "ekb"]), tenant("globex", ["msk"])), {}, (), LAYOUT
    )
    assert started(changes) == {
        "vpbx-node-acme-msk": 0,
        "vpbx-node-acme-ekb": 1,
        "vpbx-node-globex-msk": 2,
    }
    assert (changes.stop, changes.unplaced) == ((), ())


def test_a_new_tenant_takes_a_free_slot_and_never_moves_a_running_node() -> None:
    """beta sorts between acme and globex: by plan order it would take globex's port."""
    running = {"vpbx-node-acme-msk": 0, "vpbx-node-globex-msk": 1}
    wanted = plans(tenant("acme", ["msk"]), tenant("beta", ["spb"]), tenant("globex", ["msk"]))
    changes = plan_node_changes(wanted, running, (), LAYOUT)
    assert started(changes) == {"vpbx-node-beta-spb": 2}
    assert changes.stop == ()
    assert not plan_node_changes(wanted, {**running, "vpbx-node-beta-spb": 2}, (), LAYOUT)


def test_a_stopped_nodes_ports_are_reused_only_once_it_has_exited() -> None:
    running = {"vpbx-node-acme-msk": 0, "vpbx-node-acme-ekb": 1, "vpbx-node-globex-msk": 2}
    # acme gives up ekb and globex opens spb in the same change.
    wanted = plans(tenant("acme", ["msk"]), tenant("globex", ["msk", "spb"]))
    changes = plan_node_changes(wanted, running, (), LAYOUT)
    assert changes.stop == ("vpbx-node-acme-ekb",)
    assert started(changes) == {"vpbx-node-globex-spb": 3}  # slot 1 is still draining

    after = {"vpbx-node-acme-msk": 0, "vpbx-node-globex-msk": 2}
    more = plans(tenant("acme", ["msk", "kzn"]), tenant("globex", ["msk"]))
    assert started(plan_node_changes(more, after, {1}, LAYOUT)) == {"vpbx-node-acme-kzn": 3}
    assert started(plan_node_changes(more, after, (), LAYOUT)) == {"vpbx-node-acme-kzn": 1}


def test_busy_ports_and_the_services_ports_are_skipped() -> None:
    layout = LocalLayout(node_port_base=5070, sip_port=5071, control_port=8000)
    busy = {5072}
    changes = plan_node_changes(
        plans(tenant("acme", ["msk", "ekb"])), {}, (), layout, lambda port: port not in busy
    )
    assert {start.plan.name: layout.node_port(start.slot) for start in changes.start} == {
        "vpbx-node-acme-msk": 5070,
        "vpbx-node-acme-ekb": 5073,
    }


def test_the_edge_websocket_port_is_no_node_port() -> None:
    layout = LocalLayout(node_port_base=5070, sip_port=5060, sip_ws_port=5071)
    changes = plan_node_changes(plans(tenant("acme", ["msk", "ekb"])), {}, (), layout)
    assert {layout.node_port(start.slot) for start in changes.start} == {5070, 5072}
    assert layout.sip_ws_url == "ws://127.0.0.1:5071"
    assert LocalLayout(sip_ws_port=0).sip_ws_url is None


def test_a_node_past_the_last_rtp_port_is_left_unplaced_with_why() -> None:
    layout = LocalLayout(rtp_port_base=60000, rtp_ports_per_node=2000)  # room for 2 nodes
    changes = plan_node_changes(plans(tenant("acme", ["msk", "ekb", "spb"])), {}, (), layout)
    assert started(changes) == {"vpbx-node-acme-msk": 0, "vpbx-node-acme-ekb": 1}
    (unplaced,) = changes.unplaced
    assert unplaced.plan.name == "vpbx-node-acme-spb"
    assert "go past 65535" in unplaced.reason


# --- the sync against the store and Redis -------------------------------------------


@dataclass
class FakeNodes:
    """Node processes that start and stop at once, except when told to keep draining."""

    running: dict[str, int] = field(default_factory=dict)
    draining: dict[str, int] = field(default_factory=dict)

    def start(self, plan: NodePlan, slot: int) -> None:
        assert plan.name not in self.running
        self.running[plan.name] = slot

    def stop(self, name: str, slot: int) -> None:
        assert self.running.pop(name) == slot
        self.draining[name] = slot

    def held_slots(self) -> set[int]:
        return set(self.draining.values())

    def exit_all(self) -> None:
        self.draining.clear()


@dataclass
class Harness:
    local: LocalPlatform
    nodes: FakeNodes
    sync: PlatformSync
    redis_url: str

    def run(self, action: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """Run one async action on a fresh connection (the launcher's loop is synchronous)."""

        async def run() -> T:
            client = redis.Redis.from_url(self.redis_url)
            try:
                return await action(client)
            finally:
                await client.aclose()

        return asyncio.run(run())

    def store(self, action: Callable[[LocalNumberStore], Awaitable[T]]) -> T:
        """Change the store as the control API does (writes the file, announces it)."""
        path = self.local.layout.numbers_file
        return self.run(lambda client: action(LocalNumberStore(path, client)))

    def routed(self) -> set[str]:
        return self.run(lambda client: RoutingTable(client).numbers())

    def domains(self) -> set[str]:
        return self.run(lambda client: RoutingTable(client).domains())

    def number_route(self, e164: str) -> NumberRoute | None:
        return self.run(lambda client: RoutingTable(client).lookup_number(e164))

    def domain_route(self, domain: str) -> DomainRoute | None:
        return self.run(lambda client: RoutingTable(client).lookup_domain(domain))


def start_harness(layout: LocalLayout, redis_url: str, *, numbers: bool = True) -> Harness:
    """The demo's tenants (and numbers) in the store, as the control API seeds them."""
    local = plan_platform(DEMO, layout)
    local.redis_url = redis_url
    nodes = FakeNodes()
    harness = Harness(local, nodes, PlatformSync(local, nodes, lambda _port: True), redis_url)
    layout.numbers_file.parent.mkdir(parents=True)
    demo = load_platform_file(DEMO)

    async def seed(store: LocalNumberStore) -> None:
        for manifest in demo.tenants:
            await store.apply_tenant(manifest)
        for manifest in demo.numbers if numbers else []:
            await store.create_number(manifest)

    harness.store(seed)
    return harness


@pytest.fixture
def harness(tmp_path: Path, flushed_redis: str) -> Iterator[Harness]:
    layout = LocalLayout(var_dir=tmp_path / "var", node_port_base=5170)
    started = start_harness(layout, flushed_redis)
    try:
        yield started
    finally:
        started.sync.close()


DEMO_NODES = {"vpbx-node-acme-msk": 0, "vpbx-node-acme-ekb": 1, "vpbx-node-globex-msk": 2}
DEMO_NUMBERS = {"+74950000001", "+73430000001", "+74950000002", "+74950000009"}


def test_routes_follow_numbers_the_api_provisions_and_releases(harness: Harness) -> None:
    harness.sync.wait(0)  # start: subscribe, then apply what the store holds
    assert harness.nodes.running == DEMO_NODES
    assert harness.routed() == DEMO_NUMBERS
    found = harness.number_route("+73430000001")
    assert found is not None
    assert (found.tenant, found.city, found.address) == ("acme", "ekb", "127.0.0.1:5171")

    harness.store(lambda store: store.create_number(number("acme-ekb-sales", "+73430000002")))
    harness.sync.wait(2)
    assert harness.routed() == {*DEMO_NUMBERS, "+73430000002"}

    harness.store(lambda store: store.delete_number("acme-ekb-main"))
    harness.sync.wait(2)
    assert harness.routed() == {*DEMO_NUMBERS - {"+73430000001"}, "+73430000002"}
    assert harness.number_route("+73430000001") is None
    # Numbers never start or stop nodes; the domains stay routed throughout.
    assert harness.nodes.running == DEMO_NODES
    assert harness.domains() == {"acme.vpbx.local", "globex.vpbx.local"}


def test_a_tenant_created_suspended_moved_and_deleted_through_the_store(
    harness: Harness,
) -> None:
    harness.sync.wait(0)
    assert harness.domain_route("initech.vpbx.local") is None

    # Created with one city, then given a number there: its node and both routes.
    harness.store(lambda store: store.apply_tenant(tenant("initech", ["spb"])))
    changes = harness.sync.wait(2)
    assert changes is not None
    assert [(s.plan.name, s.slot) for s in changes.start] == [("vpbx-node-initech-spb", 3)]
    assert harness.nodes.running == {**DEMO_NODES, "vpbx-node-initech-spb": 3}
    route = harness.domain_route("initech.vpbx.local")
    assert route is not None
    assert (route.nodes, route.suspended) == ({"spb": "127.0.0.1:5173"}, False)
    harness.store(
        lambda s: s.create_number(number("initech-spb", "+78120000001", "initech", "spb"))
    )
    harness.sync.wait(2)
    found = harness.number_route("+78120000001")
    assert found is not None
    assert (found.address, found.suspended) == ("127.0.0.1:5173", False)

    # Suspended: the node stays (settings, registrations), the routes say suspended.
    harness.store(lambda store: store.apply_tenant(tenant("initech", ["spb"], suspended=True)))
    assert not harness.sync.wait(2)  # no node started or stopped
    assert harness.nodes.running["vpbx-node-initech-spb"] == 3
    suspended = harness.number_route("+78120000001")
    domain = harness.domain_route("initech.vpbx.local")
    assert suspended is not None
    assert domain is not None
    assert (suspended.suspended, domain.suspended) == (True, True)
    assert suspended.address == "127.0.0.1:5173"
    harness.store(lambda store: store.apply_tenant(tenant("initech", ["spb"])))
    harness.sync.wait(2)
    restored = harness.number_route("+78120000001")
    assert restored is not None
    assert not restored.suspended

    # A second city: a second node; the first keeps its port.
    harness.store(lambda store: store.apply_tenant(tenant("initech", ["spb", "kzn"])))
    harness.sync.wait(2)
    assert harness.nodes.running["vpbx-node-initech-kzn"] == 4
    route = harness.domain_route("initech.vpbx.local")
    assert route is not None
    assert route.nodes == {"spb": "127.0.0.1:5173", "kzn": "127.0.0.1:5174"}

    # The city given up: its node drains; its slot is free once it has exited.
    harness.store(lambda store: store.apply_tenant(tenant("initech", ["spb"])))
    changes = harness.sync.wait(2)
    assert changes is not None
    assert changes.stop == ("vpbx-node-initech-kzn",)
    assert harness.nodes.draining == {"vpbx-node-initech-kzn": 4}
    route = harness.domain_route("initech.vpbx.local")
    assert route is not None
    assert route.nodes == {"spb": "127.0.0.1:5173"}

    # Deleted (its number released first, as the API insists): no node, no route.
    harness.store(lambda store: store.delete_number("initech-spb"))
    harness.store(lambda store: store.delete_tenant("initech"))
    harness.sync.wait(2)
    assert harness.nodes.running == DEMO_NODES
    assert "vpbx-node-initech-spb" in harness.nodes.draining
    assert harness.domains() == {"acme.vpbx.local", "globex.vpbx.local"}
    assert harness.routed() == DEMO_NUMBERS
    assert harness.local.slots == DEMO_NODES


def test_a_tenant_whose_node_cannot_be_placed_gets_no_route(
    tmp_path: Path, flushed_redis: str
) -> None:
    """Out of RTP ports: the tenant's node is not started and nothing routes to nowhere."""
    layout = LocalLayout(
        var_dir=tmp_path / "var", node_port_base=5170, rtp_port_base=60000, rtp_ports_per_node=2000
    )
    harness = start_harness(layout, flushed_redis, numbers=False)
    try:
        changes = harness.sync.wait(0)
        assert changes is not None
        assert [u.plan.name for u in changes.unplaced] == ["vpbx-node-globex-msk"]
        assert harness.nodes.running == {"vpbx-node-acme-msk": 0, "vpbx-node-acme-ekb": 1}
        assert harness.domains() == {"acme.vpbx.local"}
    finally:
        harness.sync.close()


def test_an_unreadable_store_keeps_nodes_and_routes(harness: Harness) -> None:
    harness.sync.wait(0)
    harness.local.layout.numbers_file.write_text("kind: [unclosed\n", encoding="utf-8")
    assert harness.sync.wait(0) is None
    assert harness.nodes.running == DEMO_NODES
    assert harness.routed() == DEMO_NUMBERS


def test_the_platform_carriers_networks_are_written_and_kept_current(
    tmp_path: Path, flushed_redis: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The platform file's Trunks say where calls to numbers may come from; the launcher
    reads them again on every sync and at least every refresh_s (host names resolved
    again), without printing a summary when nothing else changed."""
    platform_file = tmp_path / "platform.yaml"
    platform_file.write_text(DEMO.read_text())
    layout = LocalLayout(var_dir=tmp_path / "var", node_port_base=5170)
    harness = start_harness(layout, flushed_redis)
    harness.local.path = platform_file
    try:
        harness.sync.wait(0)
        carriers = harness.run(lambda client: RoutingTable(client).platform_carriers())
        assert carriers == ["127.0.0.0/8"]  # the demo's local-carrier
        allowed = harness.run(
            lambda client: RoutingTable(client).lookup_number_from("+74950000001", "127.0.0.5")
        )
        assert allowed[0] is not None
        assert allowed[1] is True

        platform_file.write_text(
            DEMO.read_text().replace('allowedAddresses: ["127.0.0.0/8"]', "allowedAddresses: []")
        )
        capsys.readouterr()
        harness.sync.refresh_s = 0.0  # the periodic pass is due at once
        assert harness.sync.wait(0) is not None
        # No allowedAddresses: the host's own address (sip:127.0.0.1:5090).
        carriers = harness.run(lambda client: RoutingTable(client).platform_carriers())
        assert carriers == ["127.0.0.1/32"]
        assert "edge routes:" not in capsys.readouterr().out

        platform_file.write_text("kind: [unclosed\n")  # broken: the last trunks are kept
        assert harness.sync.wait(0) is not None
        carriers = harness.run(lambda client: RoutingTable(client).platform_carriers())
        assert carriers == ["127.0.0.1/32"]
    finally:
        harness.sync.close()


# --- stopping real processes ----------------------------------------------------------


def test_a_stopped_node_holds_its_slot_until_it_exits_and_is_killed_past_its_deadline(
    tmp_path: Path,
) -> None:
    local = plan_platform(DEMO, LocalLayout(var_dir=tmp_path / "var"))
    nodes = SupervisedNodes(local, stop_timeout=0.5)
    polite = Supervised("vpbx-node-acme-msk", ["sleep", "30"], {})
    # Ignores SIGTERM, as a node stuck draining would.
    stubborn = Supervised("vpbx-node-acme-ekb", ["sh", "-c", "trap '' TERM; exec sleep 30"], {})
    for slot, child in enumerate((polite, stubborn)):
        local.children[child.name] = child
        local.slots[child.name] = slot
        child.start()
    time.sleep(0.2)  # the shell has set its trap
    try:
        nodes.stop(polite.name, local.slots.pop(polite.name))
        nodes.stop(stubborn.name, local.slots.pop(stubborn.name))
        assert local.children == {}
        deadline = time.monotonic() + 5
        while nodes.held_slots() != {1}:
            assert time.monotonic() < deadline, nodes.held_slots()
            time.sleep(0.05)
        assert polite.exited()
        assert not stubborn.exited()
        time.sleep(0.5)
        assert nodes.held_slots() == set()
        assert stubborn.exited()
    finally:
        for child in (polite, stubborn):
            if child.process is not None and child.process.poll() is None:
                child.process.kill()
                child.process.wait()

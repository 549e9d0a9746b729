"""The operator against a real kube-apiserver (built from the Kubernetes modules) and Redis.

There is no controller-manager: Deployment status is "simulated" by patching
the status subresource, and owned children are removed by the operator itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from tests.services.ports import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (AssertionError, KeyError, subprocess.CalledProcessError) as exc:
            last = exc
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def tenant_yaml(name: str, cities: list[str], *, suspended: bool = False) -> str:
    city_lines = "".join(f"    - name: {city}\n" for city in cities)
    return (
        "apiVersion: vpbx.io/v1alpha1\nkind: Tenant\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  displayName: {name.title()}\n  sipDomain: {name}.vpbx.test\n"
        f"  suspended: {str(suspended).lower()}\n  cities:\n{city_lines}"
    )


def number_yaml(name: str, e164: str, tenant: str, city: str) -> str:
    return (
        "apiVersion: vpbx.io/v1alpha1\nkind: Number\n"
        f"metadata:\n  name: {name}\n"
        f'spec:\n  number: "{e164}"\n  tenant: {tenant}\n  city: {city}\n  entry: "101"\n'
    )


class Operator:
    def __init__(self, kube: Any, namespace: str, redis_url: str, workdir: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.metrics_port = free_port()
        # The platform trunks, as the chart mounts them from their Secret.
        trunks = workdir / "trunks.yaml"
        trunks.write_text(
            "apiVersion: config.vpbx.io/v1alpha1\nkind: Trunk\nmetadata: {name: main}\n"
            "spec: {uri: 'sip:198.51.100.20', allowedAddresses: [198.51.100.0/24]}\n"
        )
        env = dict(os.environ)
        env.update(
            VPBX_PLATFORM_TRUNKS_FILE=str(trunks),
            KUBECONFIG=str(kube.kubeconfig),
            VPBX_NAMESPACE=namespace,
            VPBX_REDIS_URL=redis_url,
            VPBX_RESYNC_INTERVAL="1",
            VPBX_METRICS_PORT=str(self.metrics_port),
            VPBX_MODE="cluster",
        )
        self.log = workdir / "operator.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vpbx_cli.main", "operator"],
            env=env,
            cwd=REPO,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def get(self, *args: str) -> Any:
        result = self.kube.kubectl("get", *args, "-o", "json")
        return json.loads(result.stdout)

    def children(self, kind: str) -> dict[str, Any]:
        items = self.get(
            kind, "-n", self.namespace, "-l", "app.kubernetes.io/managed-by=vpbx-operator"
        )
        return {item["metadata"]["name"]: item for item in items["items"]}

    def condition(self, plural: str, name: str, type_: str) -> dict[str, Any]:
        body = self.get(plural, name)
        return next(c for c in body["status"]["conditions"] if c["type"] == type_)


@pytest.fixture
def operator(
    kube_api: Any, kube_namespace: str, flushed_redis: str, tmp_path: Path
) -> Iterator[Operator]:
    kube_api.kubectl("apply", "-f", str(REPO / "crds"))
    kube_api.kubectl(
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/tenants.vpbx.io",
        "crd/numbers.vpbx.io",
    )
    running = Operator(kube_api, kube_namespace, flushed_redis, tmp_path)
    try:
        yield running
    finally:
        running.stop()
        for plural in ("numbers", "tenants"):
            kube_api.kubectl("delete", plural, "--all", "--wait=false", check=False)


def test_operator_turns_a_tenant_into_nodes_routes_and_honest_status(
    operator: Operator, kube_api: Any, flushed_redis: str
) -> None:
    routes = redis.Redis.from_url(flushed_redis)
    kube_api.kubectl("apply", "-f", "-", input=tenant_yaml("acme", ["msk", "ekb"]))
    kube_api.kubectl(
        "apply", "-f", "-", input=number_yaml("acme-main", "+74950000001", "acme", "msk")
    )

    nodes = {"vpbx-node-acme-msk", "vpbx-node-acme-ekb"}
    for kind in ("deployments", "services", "configmaps"):
        eventually(lambda kind=kind: set(operator.children(kind)) == nodes, what=f"{kind} of acme")
    tenant_uid = operator.get("tenant", "acme")["metadata"]["uid"]
    for child in operator.children("deployments").values():
        [owner] = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Tenant", "acme", tenant_uid)
    ready = eventually(
        lambda: operator.condition("tenants", "acme", "Ready"), what="Ready condition"
    )
    assert ready["status"] == "False"
    assert ready["reason"] == "NodesNotReady"

    for name in nodes:  # what a controller-manager and kubelet would report
        kube_api.kubectl(
            "patch",
            "deployment",
            name,
            "-n",
            operator.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1}}',
        )
    eventually(
        lambda: operator.condition("tenants", "acme", "Ready")["status"] == "True", what="Ready"
    )
    number = eventually(
        lambda: operator.get("number", "acme-main")["status"].get("node"), what="route"
    )
    assert number == "vpbx-node-acme-msk"
    assert eventually(lambda: routes.exists("vpbx:route:number:+74950000001"), what="Redis route")
    # Where the platform's carriers call from: the edges take calls to numbers from there.
    assert routes.get("vpbx:route:carriers") == b'["198.51.100.0/24"]'

    # A city taken out of the Tenant takes its children with it.
    kube_api.kubectl("apply", "-f", "-", input=tenant_yaml("acme", ["msk"]))
    eventually(
        lambda: set(operator.children("deployments")) == {"vpbx-node-acme-msk"}, what="ekb gone"
    )
    eventually(
        lambda: set(operator.children("configmaps")) == {"vpbx-node-acme-msk"},
        what="ekb config gone",
    )

    # Redis loses everything: the periodic pass puts the routing table back.
    routes.flushall()
    assert eventually(
        lambda: routes.exists("vpbx:route:number:+74950000001"), what="repaired route"
    )
    assert eventually(lambda: routes.exists("vpbx:route:carriers"), what="repaired carriers")

    # Deleting the Tenant removes its children and its routes.
    kube_api.kubectl("delete", "number", "acme-main")
    kube_api.kubectl("delete", "tenant", "acme")
    eventually(lambda: not operator.children("deployments"), what="children deleted")
    eventually(lambda: not routes.exists("vpbx:route:number:+74950000001"), what="route deleted")

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics").read()
    assert b"vpbx_operator_reconciles_total" in metrics
    routes.close()


def test_duplicate_numbers_and_suspension(
    operator: Operator, kube_api: Any, flushed_redis: str
) -> None:
    routes = redis.Redis.from_url(flushed_redis)
    kube_api.kubectl("apply", "-f", "-", input=tenant_yaml("acme", ["msk"]))
    kube_api.kubectl("apply", "-f", "-", input=tenant_yaml("globex", ["msk"]))
    kube_api.kubectl(
        "apply", "-f", "-", input=number_yaml("acme-main", "+74950000001", "acme", "msk")
    )
    eventually(
        lambda: operator.get("number", "acme-main")["status"].get("node"),
        what="first number routed",
    )
    time.sleep(1.1)  # creation timestamps have one-second resolution
    kube_api.kubectl(
        "apply", "-f", "-", input=number_yaml("globex-grab", "+74950000001", "globex", "msk")
    )

    duplicate = eventually(
        lambda: operator.condition("numbers", "globex-grab", "Ready"), what="duplicate status"
    )
    assert duplicate["status"] == "False"
    assert duplicate["reason"] == "DuplicateNumber"
    assert operator.condition("numbers", "acme-main", "Ready")["reason"] == "Routed"

    kube_api.kubectl("apply", "-f", "-", input=tenant_yaml("acme", ["msk"], suspended=True))
    eventually(
        lambda: operator.condition("tenants", "acme", "Suspended")["status"] == "True",
        what="suspended",
    )
    eventually(
        lambda: operator.condition("numbers", "acme-main", "Ready")["reason"] == "TenantSuspended",
        what="number shows suspension",
    )
    route = json.loads(routes.get("vpbx:route:number:+74950000001") or b"{}")
    assert route.get("suspended") is True
    assert "vpbx-node-acme-msk" in operator.children("deployments"), "suspension keeps the node"

    kube_api.kubectl("apply", "-f", "-", input=tenant_yaml("acme", ["msk"]))
    eventually(
        lambda: operator.condition("tenants", "acme", "Suspended")["status"] == "False",
        what="resumed",
    )
    eventually(
        lambda: (
            json.loads(routes.get("vpbx:route:number:+74950000001") or b"{}").get("suspended")
            is False
        ),
        what="route active again",
    )
    routes.close()

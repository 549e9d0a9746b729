"""Numbers and tenants through the app with the Kubernetes number store, against a real
kube-apiserver with the vpbx CRDs installed (tests/services/kube.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from tests.services.control_api import ApiHarness, control_settings
from tests.services.kube import KubeAPI
from tests.services.ports import free_port

from vpbx_common.manifests import Number
from vpbx_control.app import create_app
from vpbx_control.groups.models import GroupRow
from vpbx_control.numbers.backends import open_number_store
from vpbx_control.numbers.kube import KubeNumberStore
from vpbx_control.numbers.store import (
    NumberExistsError,
    NumberStoreError,
    NumberVersionConflictError,
)
from vpbx_control.settings import NumberStoreKind

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> KubeAPI:
    """The test API with the vpbx CRDs installed."""
    kube_api.kubectl("apply", "-f", str(REPO / "crds"))
    kube_api.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/tenants.vpbx.io",
        "crd/numbers.vpbx.io",
    )
    return kube_api


@pytest.fixture
def tenant_name(kube: KubeAPI, kube_namespace: str) -> Iterator[str]:
    """A tenant name no other test uses (Tenants and Numbers are cluster-scoped);
    whatever the test leaves of it in the cluster is removed afterwards."""
    yield kube_namespace
    kube.kubectl("delete", "numbers", "-l", f"vpbx.io/tenant={kube_namespace}", "--wait=false")
    kube.kubectl("delete", "tenant", kube_namespace, "--ignore-not-found", "--wait=false")


@pytest.fixture
async def kube_app(
    kube: KubeAPI, postgres_url: str, flushed_redis: str
) -> AsyncIterator[ApiHarness]:
    """The control API on PostgreSQL and Redis, keeping Numbers and Tenants in Kubernetes."""
    settings = control_settings(
        database_url=postgres_url,
        redis_url=flushed_redis,
        number_store=NumberStoreKind.KUBERNETES,
        kubeconfig=kube.kubeconfig,
    )
    store = open_number_store(settings, None)
    assert isinstance(store, KubeNumberStore)
    app = create_app(settings, number_store=store, migrate=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
            yield ApiHarness(app=app, client=client, settings=settings)


def resource(kube: KubeAPI, plural: str, name: str) -> dict[str, Any] | None:
    result = kube.kubectl("get", f"{plural}.vpbx.io", name, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    body: dict[str, Any] = json.loads(result.stdout)
    return body


async def test_provisioning_flow_through_the_kubernetes_api(
    kube_app: ApiHarness, kube: KubeAPI, tenant_name: str
) -> None:
    api = kube_app
    created = await api.client.post(
        "/v1/platform/tenants",
        json={
            "id": tenant_name,
            "display_name": "Kube Tenant",
            "sip_domain": f"{tenant_name}.vpbx.test",
            "cities": ["msk"],
            "plan": {"numbers": 5},
            "outbound": {"international": True, "max_minutes_per_day": 600},
            "admin": {"email": f"admin@{tenant_name}.example", "password": "kube-admin-secret"},
        },
        headers=api.platform,
    )
    assert created.status_code == 201, created.text
    tenant = resource(kube, "tenants", tenant_name)
    assert tenant is not None
    assert tenant["spec"]["displayName"] == "Kube Tenant"
    assert tenant["spec"]["plan"]["numbers"] == 5
    assert tenant["spec"]["cities"] == [{"name": "msk", "replicas": 1}]
    # The outbound policy, as the CRD's schema takes it (its defaults filled in).
    assert tenant["spec"]["outbound"] == {
        "country": "RU",
        "international": True,
        "premium": False,
        "maxConcurrent": 0,
        "maxMinutesPerDay": 600,
    }

    # Someone scales the city's node with kubectl; a later API change keeps that.
    kube.kubectl(
        "patch", "tenant", tenant_name, "--type=merge",
        "-p", json.dumps({"spec": {"cities": [{"name": "msk", "replicas": 2}]}}),
    )  # fmt: skip
    suspended = await api.client.patch(
        f"/v1/platform/tenants/{tenant_name}",
        json={"suspended": True, "plan": {"seats": 7}},
        headers=api.platform,
    )
    assert suspended.status_code == 200, suspended.text
    tenant = resource(kube, "tenants", tenant_name)
    assert tenant is not None
    assert tenant["spec"]["suspended"] is True
    assert tenant["spec"]["plan"]["seats"] == 7
    assert tenant["spec"]["cities"] == [{"name": "msk", "replicas": 2}]

    pooled = await api.client.post(
        "/v1/platform/pool",
        json={"numbers": ["+74950000001", "+74950000002"], "city": "msk"},
        headers=api.platform,
    )
    assert pooled.status_code == 201, pooled.text
    admin = await api.login(f"admin@{tenant_name}.example", "kube-admin-secret")
    group = GroupRow(
        id=uuid.uuid4(), tenant_id=tenant_name, name="sales", strategy="ring-all", revision=1
    )
    async with api.context.database.session() as session:
        session.add(group)
        await session.commit()

    provisioned = await api.client.post(
        "/v1/numbers",
        json={
            "city": "msk",
            "pattern": "+7495*",
            "entry": {"type": "group", "group_id": str(group.id)},
            "label": "yandex-direct",
        },
        headers=admin,
    )
    assert provisioned.status_code == 201, provisioned.text
    number_id = provisioned.json()["id"]
    assert number_id == f"{tenant_name}-74950000001"
    number = resource(kube, "numbers", number_id)
    assert number is not None
    assert number["spec"] == {
        "number": "+74950000001",
        "tenant": tenant_name,
        "city": "msk",
        "channels": 0,
        "label": "yandex-direct",
        "entry": f"group:{group.id}",
    }
    assert number["metadata"]["labels"]["vpbx.io/tenant"] == tenant_name
    assert provisioned.headers["ETag"] == f'"{number["metadata"]["resourceVersion"]}"'

    changed = await api.client.patch(
        f"/v1/numbers/{number_id}",
        json={"label": "google-ads", "channels": 3},
        headers={**admin, "If-Match": provisioned.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.text
    number = resource(kube, "numbers", number_id)
    assert number is not None
    assert (number["spec"]["label"], number["spec"]["channels"]) == ("google-ads", 3)
    assert number["spec"]["entry"] == f"group:{group.id}"
    stale = await api.client.patch(
        f"/v1/numbers/{number_id}",
        json={"label": "lost-update"},
        headers={**admin, "If-Match": provisioned.headers["ETag"]},
    )
    assert stale.status_code == 412

    # The operator reports on the number; the API shows it.
    kube.kubectl(
        "patch", "number", number_id, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"node": f"vpbx-node-{tenant_name}-msk", "conditions": [{
            "type": "Ready", "status": "True", "reason": "Routed", "message": "routed",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]}}),
    )  # fmt: skip
    read = await api.client.get(f"/v1/numbers/{number_id}", headers=admin)
    assert read.json()["status"]["ready"] is True
    assert read.json()["status"]["node"] == f"vpbx-node-{tenant_name}-msk"
    assert read.json()["status"]["conditions"][0]["reason"] == "Routed"
    listed = await api.client.get("/v1/numbers", headers=admin)
    assert [n["id"] for n in listed.json()["items"]] == [number_id]

    has_numbers = await api.client.delete(
        f"/v1/platform/tenants/{tenant_name}", headers=api.platform
    )
    assert has_numbers.status_code == 409
    released = await api.client.delete(f"/v1/numbers/{number_id}", headers=admin)
    assert released.status_code == 204
    assert resource(kube, "numbers", number_id) is None
    pool = await api.client.get(
        "/v1/platform/pool", params={"available": True}, headers=api.platform
    )
    assert [n["number"] for n in pool.json()["items"]] == ["+74950000001", "+74950000002"]

    deleted = await api.client.delete(f"/v1/platform/tenants/{tenant_name}", headers=api.platform)
    assert deleted.status_code == 204
    assert resource(kube, "tenants", tenant_name) is None


def _number(tenant: str, suffix: str = "1") -> Number:
    return Number.model_validate(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Number",
            "metadata": {"name": f"{tenant}-main", "labels": {"vpbx.io/tenant": tenant}},
            "spec": {"number": f"+7495000000{suffix}", "tenant": tenant, "city": "msk",
                     "entry": "unrouted"},
        }
    )  # fmt: skip


async def test_store_refuses_stale_and_duplicate_writes(kube: KubeAPI, tenant_name: str) -> None:
    store = KubeNumberStore(kubeconfig=kube.kubeconfig)
    await store.start()
    try:
        created = await store.create_number(_number(tenant_name))
        assert created.metadata.resource_version
        with pytest.raises(NumberExistsError, match="already exists"):
            await store.create_number(_number(tenant_name))

        first = await store.get_number(created.name)
        assert first is not None
        relabelled = first.model_copy(
            update={"spec": first.spec.model_copy(update={"label": "first"})}
        )
        await store.replace_number(relabelled)
        with pytest.raises(NumberVersionConflictError):
            await store.replace_number(relabelled)  # made from the same, now stale, read
        assert [n.name for n in await store.list_numbers(tenant_name)] == [created.name]
        assert await store.list_numbers("no-such-tenant") == []

        await store.delete_number(created.name)
        await store.delete_number(created.name)  # already gone: nothing to do
        assert await store.get_number(created.name) is None
    finally:
        await store.stop()


async def test_an_unreachable_api_is_a_store_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "gone", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "gone",
            }
        )
    )
    store = KubeNumberStore(kubeconfig=kubeconfig, timeout_s=2)
    await store.start()
    try:
        with pytest.raises(NumberStoreError, match="unreachable"):
            await store.get_number("anything")
    finally:
        await store.stop()
    with pytest.raises(NumberStoreError, match="no Kubernetes API configuration"):
        await KubeNumberStore(kubeconfig=tmp_path / "missing").start()

"""The test Kubernetes API behaves like a cluster's API: kubectl, the Python client, CRDs."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, config

from tests.services.kube import KubeAPI, KubectlError

pytestmark = pytest.mark.integration

# A CRD of this test's own (not vpbx's), so the check does not depend on crds/.
WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.kubetest.example.com
spec:
  group: kubetest.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1, maximum: 10}
                colour: {type: string, enum: [red, green]}
              x-kubernetes-validations:
                - rule: "self.size < 5 || self.colour == 'red'"
                  message: "widgets of size 5 or more must be red"
"""


def widget(name: str, spec: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": "kubetest.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.fixture(scope="module")
def widget_crd(kube_api: KubeAPI) -> str:
    kube_api.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    kube_api.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/widgets.kubetest.example.com",
    )
    return "widgets.kubetest.example.com"


def test_kubectl_reaches_the_server_at_the_built_version(kube_api: KubeAPI) -> None:
    version = json.loads(kube_api.kubectl("version", "--output=json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert version["clientVersion"]["gitVersion"] == version["serverVersion"]["gitVersion"]
    namespaces = kube_api.kubectl("get", "namespaces", "--output=name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(namespaces)


def test_configmap_from_kubectl_is_read_by_the_python_client(
    kube_api: KubeAPI, kube_namespace: str
) -> None:
    kube_api.kubectl(
        "create",
        "configmap",
        "greeting",
        f"--namespace={kube_namespace}",
        "--from-literal=text=hello from kubectl",
    )
    with kube_api.client() as api_client:
        configmap = client.CoreV1Api(api_client).read_namespaced_config_map(
            "greeting", kube_namespace
        )
    assert configmap.data == {"text": "hello from kubectl"}


def test_crd_is_served_with_its_short_name(
    kube_api: KubeAPI, widget_crd: str, kube_namespace: str
) -> None:
    kube_api.kubectl(
        "apply", f"--namespace={kube_namespace}", "-f", "-", input=widget("small", {"size": 2})
    )
    listed = kube_api.kubectl("get", "wdg", f"--namespace={kube_namespace}", "--output=name")
    assert listed.stdout.split() == ["widget.kubetest.example.com/small"]
    with kube_api.client() as api_client:
        stored = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "kubetest.example.com", "v1", kube_namespace, "widgets", "small"
        )
    assert isinstance(stored, dict)
    assert stored["spec"] == {"size": 2}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"size": 11}, "spec.size"),
        ({"size": 2, "colour": "blue"}, "spec.colour"),
        ({"colour": "red"}, "spec.size"),
        ({"size": 7, "colour": "green"}, "widgets of size 5 or more must be red"),
    ],
    ids=["above-maximum", "not-in-enum", "missing-required", "cel-rule"],
)
def test_invalid_custom_object_is_rejected_naming_the_field(
    kube_api: KubeAPI, widget_crd: str, kube_namespace: str, spec: dict[str, object], expected: str
) -> None:
    with pytest.raises(KubectlError) as rejected:
        kube_api.kubectl(
            "apply", f"--namespace={kube_namespace}", "-f", "-", input=widget("bad", spec)
        )
    assert "is invalid" in rejected.value.stderr
    assert expected in rejected.value.stderr
    missing = kube_api.kubectl("get", "widget", "bad", f"--namespace={kube_namespace}", check=False)
    assert missing.returncode != 0


def test_owner_reference_cascades_on_delete(kube_api: KubeAPI, kube_namespace: str) -> None:
    with kube_api.client() as api_client:
        core = client.CoreV1Api(api_client)
        owner = core.create_namespaced_config_map(
            kube_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        assert owner.metadata is not None
        reference = client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
        core.create_namespaced_config_map(
            kube_namespace,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="child", owner_references=[reference])
            ),
        )
        core.delete_namespaced_config_map("owner", kube_namespace)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            remaining = core.list_namespaced_config_map(
                kube_namespace, field_selector="metadata.name=child"
            )
            if not remaining.items:
                return
            time.sleep(0.2)
    pytest.fail("the garbage collector did not delete the owned ConfigMap within 30s")


def test_admin_token_is_required(kube_api: KubeAPI) -> None:
    anonymous = kube_api.kubectl("get", "namespaces", "--token=wrong", check=False)
    assert anonymous.returncode != 0
    assert "Unauthorized" in anonymous.stderr or "must be logged in" in anonymous.stderr


def test_deleted_namespace_goes_away_with_its_contents(kube_api: KubeAPI) -> None:
    kube_api.kubectl("create", "namespace", "doomed")
    kube_api.kubectl("create", "configmap", "left-behind", "--namespace=doomed")
    kube_api.kubectl("delete", "namespace", "doomed", "--wait=true", "--timeout=60s")
    gone = kube_api.kubectl("get", "namespace", "doomed", check=False)
    assert "NotFound" in gone.stderr


def test_kubeconfig_loads_in_the_python_client(kube_api: KubeAPI, kube_namespace: str) -> None:
    """kopf logs in through the same kubeconfig loader."""
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig))  # type: ignore[no-untyped-call]
    with api_client:
        namespace = client.CoreV1Api(api_client).read_namespace(kube_namespace)
    assert namespace.metadata is not None
    assert namespace.metadata.name == kube_namespace

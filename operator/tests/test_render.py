"""Rendering media-node children: built-in defaults and the Helm chart's template."""

from __future__ import annotations

from pathlib import Path

from vpbx_common.manifests import load_platform_file
from vpbx_operator.desired import NodePlan, desired_nodes
from vpbx_operator.render import NodeTemplate, render_node, tenant_owner_reference

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def acme_msk() -> NodePlan:
    platform = load_platform_file(DEMO)
    plans = desired_nodes(platform.tenants, platform.numbers, platform.configs)
    return next(p for p in plans if p.name == "vpbx-node-acme-msk")


def test_default_render_is_secure_probed_and_carries_no_plaintext_password() -> None:
    plan = acme_msk()
    objects = render_node(plan, "vpbx", tenant_owner_reference("acme", "u1"), NodeTemplate())

    pod = objects.deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]
    assert container["livenessProbe"]
    assert pod["terminationGracePeriodSeconds"] == 120
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VPBX_TENANT"] == "acme"
    assert env["VPBX_CITY"] == "msk"
    config = objects.config_map["data"]["node-config.json"]
    assert "acme-101-secret" not in config
    assert objects.disruption_budget is None
    assert {o["metadata"]["ownerReferences"][0]["uid"] for o in objects.all()} == {"u1"}


def test_chart_template_supplies_pod_and_container_the_node_adds_its_identity() -> None:
    chart = {
        "cityLabel": "topology.vpbx.io/city",
        "labels": {"app.kubernetes.io/part-of": "vpbx"},
        "podAnnotations": {"checksum/config": "abc"},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        "pod": {"hostNetwork": True, "terminationGracePeriodSeconds": 300, "volumes": []},
        "container": {
            "name": "media-node",
            "image": "registry.example/vpbx/media-node:1.2.3",
            "command": ["python", "-m", "vpbx_media.node"],
            "env": [
                {"name": "VPBX_RTP_PORT_MIN", "value": "30000"},
                {"name": "VPBX_TENANT", "value": "x"},
            ],
            "volumeMounts": [],
        },
    }
    template = NodeTemplate.from_chart(chart, NodeTemplate())
    objects = render_node(acme_msk(), "vpbx", tenant_owner_reference("acme", "u1"), template)

    pod_template = objects.deployment["spec"]["template"]
    pod = pod_template["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.example/vpbx/media-node:1.2.3"
    assert pod["hostNetwork"] is True
    assert pod["terminationGracePeriodSeconds"] == 300
    assert pod["nodeSelector"] == {"topology.vpbx.io/city": "msk"}
    assert pod_template["metadata"]["annotations"] == {"checksum/config": "abc"}
    assert pod_template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vpbx"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VPBX_TENANT"] == "acme", "the node's identity wins over the template"
    assert env["VPBX_RTP_PORT_MIN"] == "30000"
    assert {"name": "config", "configMap": {"name": "vpbx-node-acme-msk"}} in pod["volumes"]
    assert objects.disruption_budget is not None
    assert objects.disruption_budget["spec"]["maxUnavailable"] == 1

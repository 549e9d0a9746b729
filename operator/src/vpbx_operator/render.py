"""Pure rendering of the Kubernetes objects that run one media node.

Per NodePlan (one tenant in one city): a ConfigMap with the compiled node
config, a Deployment running `vpbx node`, and a Service in front of it. All
are labelled predictably and owned by the Tenant, so listing a tenant's
children is one label query and garbage collection follows the Tenant.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from typing import Any

from .desired import NodePlan

API_GROUP = "vpbx.io"
API_VERSION = "v1alpha1"
MANAGED_BY = "vpbx-operator"
CONFIG_FILE = "node-config.json"
SIP_PORT = 5060

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_TENANT = "vpbx.io/tenant"
LABEL_CITY = "vpbx.io/city"
ANNOTATION_CONFIG_VERSION = "vpbx.io/config-version"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class NodeTemplate:
    """Cluster-wide settings of media-node pods (from the Helm values)."""

    image: str = "vpbx/media-node:latest"
    image_pull_policy: str = "IfNotPresent"
    termination_grace_period_s: int = 120
    pre_stop_sleep_s: int = 5
    drain_timeout_s: int = 110
    redis_secret: str | None = None  # Secret with key `url`; else redis_url is used
    redis_url: str | None = None
    clickhouse_secret: str | None = None  # Secret with key `url`
    nonce_secret: str | None = None  # Secret with key `secret`
    edge_secret: str | None = None  # Secret with key `secret` (the edges' VPBX_EDGE_SECRET)
    host_network: bool = False
    # From the Helm chart's media-node.json: ready-made pod and container fields,
    # extra labels and annotations, the node label naming a city, the PDB policy.
    pod: dict[str, Any] | None = None
    container: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    city_label: str | None = None
    pod_disruption_budget: dict[str, Any] | None = None
    default_resources: dict[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        }
    )

    @classmethod
    def from_chart(cls, data: dict[str, Any], base: NodeTemplate) -> NodeTemplate:
        """Merge the chart's media-node.json over `base` (see charts/vpbx).

        The chart's pod and container fields override the built-in ones when rendering,
        so image, grace period and hostNetwork need no copies here.
        """
        return replace(
            base,
            pod=dict(data.get("pod") or {}),
            container=dict(data.get("container") or {}),
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            pod_annotations={str(k): str(v) for k, v in (data.get("podAnnotations") or {}).items()},
            city_label=data.get("cityLabel") or None,
            pod_disruption_budget=data.get("podDisruptionBudget") or None,
        )


@dataclass(frozen=True)
class NodeObjects:
    config_map: Manifest
    deployment: Manifest
    service: Manifest
    disruption_budget: Manifest | None = None

    def all(self) -> list[Manifest]:
        objects = [self.config_map, self.deployment, self.service]
        if self.disruption_budget is not None:
            objects.append(self.disruption_budget)
        return objects


def tenant_owner_reference(tenant_name: str, tenant_uid: str) -> Manifest:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Tenant",
        "name": tenant_name,
        "uid": tenant_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def node_labels(plan: NodePlan) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vpbx",
        LABEL_COMPONENT: "media-node",
        LABEL_INSTANCE: plan.name,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TENANT: plan.tenant,
        LABEL_CITY: plan.city,
    }


def _secret_env(name: str, secret: str, key: str) -> Manifest:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _environment(plan: NodePlan, template: NodeTemplate) -> list[Manifest]:
    env: list[Manifest] = [
        {"name": "VPBX_MODE", "value": "cluster"},
        {"name": "VPBX_NODE_NAME", "value": plan.name},
        {"name": "VPBX_TENANT", "value": plan.tenant},
        {"name": "VPBX_CITY", "value": plan.city},
        {"name": "VPBX_NODE_CONFIG", "value": f"/etc/vpbx/{CONFIG_FILE}"},
        {"name": "VPBX_SIP_HOST", "value": "0.0.0.0"},
        {"name": "VPBX_SIP_PORT", "value": str(SIP_PORT)},
        {"name": "VPBX_SPOOL_DIR", "value": "/var/spool/vpbx"},
        {"name": "VPBX_DRAIN_TIMEOUT", "value": str(template.drain_timeout_s)},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "VPBX_ADVERTISED_HOST", "value": "$(POD_IP)"},
        {"name": "VPBX_MEDIA_HOST", "value": "0.0.0.0"},
        {"name": "VPBX_ADVERTISED_MEDIA_HOST", "value": "$(POD_IP)"},
    ]
    if template.redis_secret:
        env.append(_secret_env("VPBX_REDIS_URL", template.redis_secret, "url"))
    elif template.redis_url:
        env.append({"name": "VPBX_REDIS_URL", "value": template.redis_url})
    if template.clickhouse_secret:
        env.append(_secret_env("VPBX_CLICKHOUSE_URL", template.clickhouse_secret, "url"))
    if template.nonce_secret:
        env.append(_secret_env("VPBX_NONCE_SECRET", template.nonce_secret, "secret"))
    if template.edge_secret:
        env.append(_secret_env("VPBX_EDGE_SECRET", template.edge_secret, "secret"))
    return env


def render_node(
    plan: NodePlan, namespace: str, owner: Manifest, template: NodeTemplate
) -> NodeObjects:
    labels = node_labels(plan)
    config_json = plan.config.to_json()
    version = plan.config.version or plan.config.content_version()
    metadata = {
        "name": plan.name,
        "namespace": namespace,
        "labels": labels,
        "ownerReferences": [owner],
    }
    config_map: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**metadata, "annotations": {ANNOTATION_CONFIG_VERSION: version}},
        "data": {CONFIG_FILE: config_json},
    }
    resources = plan.resources if plan.resources else template.default_resources
    container: Manifest = {
        "name": "media-node",
        "image": template.image,
        "imagePullPolicy": template.image_pull_policy,
        "args": ["node"],
        "env": _environment(plan, template),
        "ports": [
            {"name": "sip-udp", "containerPort": SIP_PORT, "protocol": "UDP"},
            {"name": "sip-tcp", "containerPort": SIP_PORT, "protocol": "TCP"},
        ],
        "resources": json.loads(json.dumps(resources)),
        "readinessProbe": {"tcpSocket": {"port": SIP_PORT}, "periodSeconds": 5},
        "livenessProbe": {
            "tcpSocket": {"port": SIP_PORT},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        # The node drains on SIGTERM; the sleep lets endpoints and routes move first.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(template.pre_stop_sleep_s)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/vpbx", "readOnly": True},
            {"name": "spool", "mountPath": "/var/spool/vpbx"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
        ],
    }
    pod_spec: Manifest = {
        "terminationGracePeriodSeconds": template.termination_grace_period_s,
        "hostNetwork": template.host_network,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        "volumes": [
            # emptyDir survives container restarts: a crashed node's successor
            # finds the open-call journal and writes node-lost CDRs.
            {"name": "spool", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if template.container is not None:
        container = _merge_container(copy.deepcopy(template.container), container, plan)
    if template.pod is not None:
        pod_spec.update(
            copy.deepcopy({k: v for k, v in template.pod.items() if v not in (None, {}, [])})
        )
    pod_spec["volumes"] = [
        *[v for v in pod_spec.get("volumes", []) if v.get("name") != "config"],
        {"name": "config", "configMap": {"name": plan.name}},
    ]
    if template.city_label:
        pod_spec["nodeSelector"] = {
            **pod_spec.get("nodeSelector", {}),
            template.city_label: plan.city,
        }
    pod_spec["containers"] = [container]
    pod_labels = {**template.labels, **labels}
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": copy.deepcopy(metadata),
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": {LABEL_INSTANCE: plan.name, LABEL_MANAGED_BY: MANAGED_BY}},
            # Never two pods of a node answering the same calls' dialogs at once.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": dict(template.pod_annotations)},
                "spec": pod_spec,
            },
        },
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": copy.deepcopy(metadata),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_INSTANCE: plan.name, LABEL_MANAGED_BY: MANAGED_BY},
            # Named target ports: the chart's container template may listen elsewhere
            # (mediaNode.sipPort); the Service, and so the routing table, stays on 5060.
            "ports": [
                {"name": "sip-udp", "port": SIP_PORT, "targetPort": "sip-udp", "protocol": "UDP"},
                {"name": "sip-tcp", "port": SIP_PORT, "targetPort": "sip-tcp", "protocol": "TCP"},
            ],
        },
    }
    budget = None
    if template.pod_disruption_budget and template.pod_disruption_budget.get("enabled", True):
        policy = {
            k: v
            for k, v in template.pod_disruption_budget.items()
            if k in ("minAvailable", "maxUnavailable")
        } or {"maxUnavailable": 1}
        budget = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": copy.deepcopy(metadata),
            "spec": {
                **policy,
                "selector": {
                    "matchLabels": {LABEL_INSTANCE: plan.name, LABEL_MANAGED_BY: MANAGED_BY}
                },
            },
        }
    return NodeObjects(
        config_map=config_map, deployment=deployment, service=service, disruption_budget=budget
    )


def _merge_container(base: Manifest, generated: Manifest, plan: NodePlan) -> Manifest:
    """The chart's container with this node's identity, config mount and resources."""
    ours = {e["name"]: e for e in generated["env"] if e["name"] in _NODE_ENV}
    env = [e for e in base.get("env", []) if e.get("name") not in ours]
    base["env"] = [*env, *ours.values()]
    mounts = [m for m in base.get("volumeMounts", []) if m.get("name") != "config"]
    base["volumeMounts"] = [*mounts, {"name": "config", "mountPath": "/etc/vpbx", "readOnly": True}]
    if plan.resources:
        base["resources"] = copy.deepcopy(dict(plan.resources))
    base.setdefault("name", "media-node")
    return base


_NODE_ENV = frozenset(
    {"VPBX_MODE", "VPBX_NODE_NAME", "VPBX_TENANT", "VPBX_CITY", "VPBX_NODE_CONFIG"}
)

"""The Kubernetes API as the reconcile loop sees it (official client, sync calls)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .render import API_GROUP, API_VERSION, MANAGED_BY

_PATHS = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
}


class KubeCluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        # The REST client serialises JSON bodies itself but sends YAML ones verbatim;
        # JSON text is valid YAML, which is what server-side apply reads.
        payload = json.dumps(body) if body is not None and "yaml" in content_type else body
        method, url, headers, _, _ = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, header_params=headers, body=payload)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason, body=data)
        return json.loads(data) if data else {}

    def apply(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply: create or patch, owning exactly the fields we render."""
        prefix, plural = _PATHS[str(manifest["kind"])]
        metadata = manifest["metadata"]
        path = f"{prefix}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}"
        self._call(
            "PATCH",
            path,
            body=dict(manifest),
            query=[("fieldManager", MANAGED_BY), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def list_children(self, namespace: str, kind: str, selector: str) -> list[dict[str, Any]]:
        prefix, plural = _PATHS[kind]
        result = self._call(
            "GET", f"{prefix}/namespaces/{namespace}/{plural}", query=[("labelSelector", selector)]
        )
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    def delete(self, namespace: str, kind: str, name: str) -> None:
        prefix, plural = _PATHS[kind]
        try:
            self._call("DELETE", f"{prefix}/namespaces/{namespace}/{plural}/{name}")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_status(self, plural: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            self._call(
                "PATCH",
                f"/apis/{API_GROUP}/{API_VERSION}/{plural}/{name}/status",
                body={"status": dict(status)},
                content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise

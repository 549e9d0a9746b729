"""The cluster-mode number store: Number and Tenant custom resources in the Kubernetes API.

Both CRDs (crds/) are cluster-scoped, so no namespace is involved. The
official client is blocking; every call runs in a worker thread. Numbers are
created and replaced with the resourceVersion the caller read (a stale write
is a NumberVersionConflictError); Tenants are written with server-side apply under
the field manager ``vpbx-control-api``, so fields other managers own (a
city's replicas set with kubectl, say) are left alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vpbx_common.manifests import (
    PLATFORM_API_VERSION,
    ManifestError,
    Number,
    Tenant,
    parse_manifest,
)

from ..settings import ControlSettings
from .local import manifest_document
from .store import MANAGED_BY, NumberExistsError, NumberStoreError, NumberVersionConflictError

logger = logging.getLogger(__name__)

GROUP, VERSION = PLATFORM_API_VERSION.split("/")
NUMBERS = "numbers"
TENANTS = "tenants"
_KINDS = {NUMBERS: "Number", TENANTS: "Tenant"}

ResultT = TypeVar("ResultT")


def _status_message(error: ApiException) -> str:
    """The API server's own words from a Status body, else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"HTTP {error.status} {error.reason or ''}".strip()


def _missing_type(error: ApiException) -> bool:
    """A 404 for the resource type itself (the CRD is not installed), not for one object."""
    return "could not find the requested resource" in _status_message(error)


class KubeNumberStore:
    """NumberStore on the Kubernetes API.

    Pass an ``ApiClient`` (the store does not close it), or a kubeconfig path,
    or neither for the in-cluster service account (the store owns that client).
    """

    def __init__(
        self,
        api: client.ApiClient | None = None,
        *,
        kubeconfig: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._api = api
        self._owns_api = api is None
        self._kubeconfig = kubeconfig
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> KubeNumberStore:
        return cls(kubeconfig=settings.kubeconfig)

    # --- lifecycle -----------------------------------------------------------------

    def _connect(self) -> client.ApiClient:
        try:
            if self._kubeconfig is not None:
                return cast(
                    client.ApiClient,
                    config.new_client_from_config(  # type: ignore[no-untyped-call]
                        config_file=str(self._kubeconfig), persist_config=False
                    ),
                )
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        except (config.ConfigException, OSError) as exc:
            where = self._kubeconfig or "the in-cluster service account"
            raise NumberStoreError(f"no Kubernetes API configuration from {where}: {exc}") from exc

    async def start(self) -> None:
        if self._api is None:
            self._api = await asyncio.to_thread(self._connect)

    async def stop(self) -> None:
        if self._api is not None and self._owns_api:
            api, self._api = self._api, None
            await asyncio.to_thread(api.close)

    @property
    def _objects(self) -> client.CustomObjectsApi:
        if self._api is None:
            raise NumberStoreError("the Kubernetes number store is not started")
        return client.CustomObjectsApi(self._api)

    async def _call(self, plural: str, what: str, call: Callable[[], ResultT]) -> ResultT:
        """Run one blocking API call in a thread; transport failures become NumberStoreError."""
        try:
            return await asyncio.to_thread(call)
        except ApiException as exc:
            if exc.status == 404 and _missing_type(exc):
                raise NumberStoreError(
                    f"the {_KINDS[plural]} CRD ({plural}.{GROUP}) is not installed in the cluster"
                ) from exc
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise NumberStoreError(f"Kubernetes API unreachable while {what}: {exc}") from exc

    def _failed(self, exc: ApiException, what: str) -> NumberStoreError:
        message = f"Kubernetes API refused {what}: {_status_message(exc)}"
        if exc.status == 409:
            kind = NumberVersionConflictError if "modified" in message else NumberExistsError
            return kind(message)
        return NumberStoreError(message)

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        objects = self._objects
        try:
            body = await self._call(
                plural,
                f"reading {plural}/{name}",
                lambda: objects.get_cluster_custom_object(
                    GROUP, VERSION, plural, name, _request_timeout=self._timeout_s
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._failed(exc, f"reading {plural}/{name}") from exc
        return cast(dict[str, Any], body)

    async def _list(self, plural: str) -> list[dict[str, Any]]:
        objects = self._objects
        try:
            body = await self._call(
                plural,
                f"listing {plural}",
                lambda: objects.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=self._timeout_s
                ),
            )
        except ApiException as exc:
            raise self._failed(exc, f"listing {plural}") from exc
        items = cast(dict[str, Any], body).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    # --- numbers ---------------------------------------------------------------

    @staticmethod
    def _number(body: dict[str, Any]) -> Number | None:
        body = {"apiVersion": PLATFORM_API_VERSION, "kind": "Number", **body}
        try:
            manifest = parse_manifest(body)
        except ManifestError as exc:
            # Written by hand with kubectl and somehow past the CRD schema: skip, say so.
            logger.warning("ignoring a Number the control API cannot read: %s", exc)
            return None
        return manifest if isinstance(manifest, Number) else None

    async def list_numbers(self, tenant: str | None = None) -> list[Number]:
        numbers = [self._number(item) for item in await self._list(NUMBERS)]
        return sorted(
            (n for n in numbers if n is not None and (tenant is None or n.spec.tenant == tenant)),
            key=lambda n: n.name,
        )

    async def get_number(self, name: str) -> Number | None:
        body = await self._get(NUMBERS, name)
        return None if body is None else self._number(body)

    async def create_number(self, number: Number) -> Number:
        objects = self._objects
        document = manifest_document(number)
        what = f"creating Number {number.name}"
        try:
            body = await self._call(
                NUMBERS,
                what,
                lambda: objects.create_cluster_custom_object(
                    GROUP,
                    VERSION,
                    NUMBERS,
                    document,
                    field_manager=MANAGED_BY,
                    _request_timeout=self._timeout_s,
                ),
            )
        except ApiException as exc:
            raise self._failed(exc, what) from exc
        created = self._number(cast(dict[str, Any], body))
        if created is None:
            raise NumberStoreError(f"the API server returned an unreadable Number {number.name}")
        return created

    async def replace_number(self, number: Number) -> Number:
        objects = self._objects
        what = f"replacing Number {number.name}"
        version = number.metadata.resource_version
        if version is None:
            current = await self._get(NUMBERS, number.name)
            if current is None:
                raise NumberStoreError(f"Number {number.name} does not exist")
            version = str(current["metadata"]["resourceVersion"])
        document = manifest_document(number)
        document["metadata"] = {
            **cast(dict[str, Any], document["metadata"]),
            "resourceVersion": version,
        }
        try:
            body = await self._call(
                NUMBERS,
                what,
                lambda: objects.replace_cluster_custom_object(
                    GROUP,
                    VERSION,
                    NUMBERS,
                    number.name,
                    document,
                    field_manager=MANAGED_BY,
                    _request_timeout=self._timeout_s,
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NumberStoreError(f"Number {number.name} does not exist") from exc
            raise self._failed(exc, what) from exc
        replaced = self._number(cast(dict[str, Any], body))
        if replaced is None:
            raise NumberStoreError(f"the API server returned an unreadable Number {number.name}")
        return replaced

    async def _delete(self, plural: str, name: str) -> None:
        objects = self._objects
        what = f"deleting {plural}/{name}"
        try:
            await self._call(
                plural,
                what,
                lambda: objects.delete_cluster_custom_object(
                    GROUP, VERSION, plural, name, _request_timeout=self._timeout_s
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise self._failed(exc, what) from exc

    async def delete_number(self, name: str) -> None:
        await self._delete(NUMBERS, name)

    # --- tenants ---------------------------------------------------------------

    async def get_tenant(self, name: str) -> Tenant | None:
        body = await self._get(TENANTS, name)
        if body is None:
            return None
        try:
            manifest = parse_manifest(
                {"apiVersion": PLATFORM_API_VERSION, "kind": "Tenant", **body}
            )
        except ManifestError as exc:
            raise NumberStoreError(f"Tenant {name} in the cluster is not readable: {exc}") from exc
        return manifest if isinstance(manifest, Tenant) else None

    async def apply_tenant(self, tenant: Tenant) -> Tenant:
        """Server-side apply: creates the Tenant or updates the fields this API manages."""
        objects = self._objects
        document = manifest_document(tenant)
        what = f"applying Tenant {tenant.name}"
        try:
            body = await self._call(
                TENANTS,
                what,
                lambda: objects.patch_cluster_custom_object(
                    GROUP,
                    VERSION,
                    TENANTS,
                    tenant.name,
                    document,
                    field_manager=MANAGED_BY,
                    force=True,
                    _content_type="application/apply-patch+yaml",
                    _request_timeout=self._timeout_s,
                ),
            )
        except ApiException as exc:
            raise self._failed(exc, what) from exc
        if not isinstance(body, dict):
            # The client decodes only a 200 answer; an apply that created the object
            # answers 201, so read the object back.
            body = await self._get(TENANTS, tenant.name)
        try:
            applied = parse_manifest(cast(dict[str, Any], body))
        except ManifestError as exc:
            raise NumberStoreError(f"the API server returned an unreadable Tenant: {exc}") from exc
        if not isinstance(applied, Tenant):
            raise NumberStoreError(f"the API server returned no Tenant for {tenant.name}")
        return applied

    async def delete_tenant(self, name: str) -> None:
        await self._delete(TENANTS, name)

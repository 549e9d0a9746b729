"""The local-mode number store: Tenant and Number manifests in one YAML file.

`vpbx up` plays the operator in local mode: when the store announces a change
on Redis (``vpbx:platform:changed``) it reads this file, starts and stops media
node processes to match its Tenants, and rewrites the edge routing table.

A resource's version is a hash of its manifest, so a write made from a stale
read is refused just as the Kubernetes API refuses a stale resourceVersion.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TypeVar

import redis.asyncio as redis
import yaml
from redis.exceptions import RedisError

from vpbx_common.manifests import ManifestError, Number, Tenant, parse_platform_yaml
from vpbx_common.routing import PLATFORM_CHANGED_CHANNEL

from .store import NumberExistsError, NumberStoreError, NumberVersionConflictError

logger = logging.getLogger(__name__)

ResourceT = TypeVar("ResourceT", Number, Tenant)


def manifest_document(resource: Number | Tenant) -> dict[str, object]:
    """The desired state as a user would write it: no status, no server-set metadata."""
    document: dict[str, object] = resource.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"status"}
    )
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        document["metadata"] = {
            key: value
            for key, value in metadata.items()
            if key in ("name", "labels", "annotations") and value != {}
        }
    return document


def content_version(resource: Number | Tenant) -> str:
    """The local store's resourceVersion: a hash of the manifest."""
    text = json.dumps(manifest_document(resource), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamped(resource: ResourceT) -> ResourceT:
    metadata = resource.metadata.model_copy(update={"resource_version": content_version(resource)})
    return resource.model_copy(update={"metadata": metadata})


class LocalNumberStore:
    def __init__(self, path: Path, client: redis.Redis | None = None) -> None:
        self.path = path
        self._redis = client
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    def _read(self) -> tuple[dict[str, Tenant], dict[str, Number]]:
        if not self.path.exists():
            return {}, {}
        try:
            platform = parse_platform_yaml(self.path.read_text(encoding="utf-8"))
        except ManifestError as exc:
            raise NumberStoreError(f"{self.path}: {exc}") from exc
        except OSError as exc:
            raise NumberStoreError(f"{self.path}: cannot read: {exc}") from exc
        return (
            {tenant.name: tenant for tenant in platform.tenants},
            {number.name: number for number in platform.numbers},
        )

    def _write(self, tenants: dict[str, Tenant], numbers: dict[str, Number]) -> None:
        documents = [manifest_document(t) for _, t in sorted(tenants.items())]
        documents += [manifest_document(n) for _, n in sorted(numbers.items())]
        text = "# Written by the vpbx control API (local number store).\n" + yaml.safe_dump_all(
            documents, sort_keys=False, explicit_start=True
        )
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            raise NumberStoreError(f"{self.path}: cannot write: {exc}") from exc

    async def _announce(self) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(PLATFORM_CHANGED_CHANNEL, str(self.path))
        except RedisError as exc:
            logger.warning("platform change not announced: %s", exc)

    # --- numbers ---------------------------------------------------------------

    async def list_numbers(self, tenant: str | None = None) -> list[Number]:
        _, numbers = self._read()
        return [
            _stamped(n)
            for _, n in sorted(numbers.items())
            if tenant is None or n.spec.tenant == tenant
        ]

    async def get_number(self, name: str) -> Number | None:
        number = self._read()[1].get(name)
        return None if number is None else _stamped(number)

    async def create_number(self, number: Number) -> Number:
        async with self._lock:
            tenants, numbers = self._read()
            if number.name in numbers:
                raise NumberExistsError(f"Number {number.name} already exists")
            numbers[number.name] = number
            self._write(tenants, numbers)
        await self._announce()
        return _stamped(number)

    async def replace_number(self, number: Number) -> Number:
        async with self._lock:
            tenants, numbers = self._read()
            current = numbers.get(number.name)
            if current is None:
                raise NumberStoreError(f"Number {number.name} does not exist")
            expected = number.metadata.resource_version
            if expected is not None and expected != content_version(current):
                raise NumberVersionConflictError(f"Number {number.name} changed since it was read")
            numbers[number.name] = number
            self._write(tenants, numbers)
        await self._announce()
        return _stamped(number)

    async def delete_number(self, name: str) -> None:
        async with self._lock:
            tenants, numbers = self._read()
            if numbers.pop(name, None) is None:
                return
            self._write(tenants, numbers)
        await self._announce()

    # --- tenants ---------------------------------------------------------------

    async def get_tenant(self, name: str) -> Tenant | None:
        tenant = self._read()[0].get(name)
        return None if tenant is None else _stamped(tenant)

    async def apply_tenant(self, tenant: Tenant) -> Tenant:
        async with self._lock:
            tenants, numbers = self._read()
            tenants[tenant.name] = tenant
            self._write(tenants, numbers)
        await self._announce()
        return _stamped(tenant)

    async def delete_tenant(self, name: str) -> None:
        async with self._lock:
            tenants, numbers = self._read()
            if tenants.pop(name, None) is None:
                return
            self._write(tenants, numbers)
        await self._announce()

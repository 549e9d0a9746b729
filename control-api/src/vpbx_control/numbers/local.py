"""The local-mode number store: Tenant and Number manifests in one YAML file.

`vpbx up` plays the operator in local mode: it reads this file beside the
platform file and rewrites the edge routing table when the store announces a
change on Redis (``vpbx:platform:changed``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import redis.asyncio as redis
import yaml
from redis.exceptions import RedisError

from vpbx_common.manifests import ManifestError, Number, Tenant, parse_platform_yaml

from .store import NumberStoreError

logger = logging.getLogger(__name__)

PLATFORM_CHANGED_CHANNEL = "vpbx:platform:changed"


def manifest_document(resource: Number | Tenant) -> dict[str, object]:
    document: dict[str, object] = resource.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"status"}
    )
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        document["metadata"] = {
            key: value
            for key, value in metadata.items()
            if key in ("name", "labels", "annotations")
        }
    return document


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
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.path)

    async def _announce(self) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(PLATFORM_CHANGED_CHANNEL, str(self.path))
        except RedisError as exc:
            logger.warning("platform change not announced: %s", exc)

    async def list_numbers(self, tenant: str | None = None) -> list[Number]:
        _, numbers = self._read()
        return [n for _, n in sorted(numbers.items()) if tenant is None or n.spec.tenant == tenant]

    async def get_number(self, name: str) -> Number | None:
        return self._read()[1].get(name)

    async def create_number(self, number: Number) -> Number:
        async with self._lock:
            tenants, numbers = self._read()
            if number.name in numbers:
                raise NumberStoreError(f"Number {number.name} already exists")
            numbers[number.name] = number
            self._write(tenants, numbers)
        await self._announce()
        return number

    async def replace_number(self, number: Number) -> Number:
        async with self._lock:
            tenants, numbers = self._read()
            if number.name not in numbers:
                raise NumberStoreError(f"Number {number.name} does not exist")
            numbers[number.name] = number
            self._write(tenants, numbers)
        await self._announce()
        return number

    async def delete_number(self, name: str) -> None:
        async with self._lock:
            tenants, numbers = self._read()
            if numbers.pop(name, None) is None:
                return
            self._write(tenants, numbers)
        await self._announce()

    async def apply_tenant(self, tenant: Tenant) -> Tenant:
        async with self._lock:
            tenants, numbers = self._read()
            tenants[tenant.name] = tenant
            self._write(tenants, numbers)
        await self._announce()
        return tenant

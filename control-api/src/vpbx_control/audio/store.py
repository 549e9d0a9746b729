"""The control API's handle on the object store where recordings and voice messages live.

The API only reads (and deletes voice messages); the media nodes write. The store is one
``vpbx_common.storage.ObjectStore`` held by the app's context for its lifetime.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from vpbx_common.storage import ObjectInfo, ObjectStore, StorageError
from vpbx_common.storage.settings import open_object_store

from ..settings import ControlSettings

logger = logging.getLogger(__name__)


class UnconfiguredObjectStore:
    """A cluster without object storage (the chart's ``recordings.backend: none``): every
    operation fails as a store that does not answer (503 ``object-store-unavailable``),
    never as "no such object"."""

    _REASON = "no object store is configured (VPBX_STORAGE_URL)"

    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        raise StorageError(self._REASON)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        raise StorageError(self._REASON)

    async def stat(self, key: str) -> ObjectInfo:
        raise StorageError(self._REASON)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        raise StorageError(self._REASON)

    async def stream(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        raise StorageError(self._REASON)
        yield b""  # an async generator, as the Protocol's stream() is used

    async def delete(self, key: str) -> None:
        raise StorageError(self._REASON)

    async def close(self) -> None:
        return None


def open_objects(settings: ControlSettings) -> ObjectStore:
    """The object store of ``settings`` (VPBX_STORAGE_URL; nothing connects here).

    A cluster installed without object storage still runs: the nodes then record nothing
    and take no voice messages, and the audio routes answer 503."""
    if not settings.storage_url and not settings.is_local:
        logger.warning("no VPBX_STORAGE_URL: recordings and voice messages cannot be served")
        return UnconfiguredObjectStore()
    return open_object_store(settings)


def belongs_to(key: str, prefix: str, tenant: str) -> bool:
    """Whether ``key`` lies under ``<prefix>/<tenant>/`` (vpbx_common.storage key helpers).

    Keys come from the media nodes through CDRs and events; a key outside the tenant's
    prefix is never served, whatever wrote it.
    """
    parts = key.split("/")
    return (
        len(parts) > 2
        and parts[0] == prefix
        and parts[1] == tenant
        and all(part not in ("", ".", "..") for part in parts)
    )

"""Where call recordings and voice messages live: one interface, two backends.

Media nodes put what they recorded; the control API (and later the CRM) read it
back, whole or by byte range (HTTP Range for players). Local mode keeps objects
in a directory (``LocalObjectStore``); a cluster uses an S3-compatible bucket
(``S3ObjectStore``; SeaweedFS's S3 gateway in the tests). Keys are
``/``-separated relative paths made by the helpers below, so that one tenant's
objects share a prefix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """The store failed an operation (unreachable, refused, corrupt)."""


class ObjectNotFoundError(StorageError):
    """No object under that key."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str


class ObjectStore(Protocol):
    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        """Store the file at ``path`` under ``key`` (replacing any object there)."""
        ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo: ...

    async def stat(self, key: str) -> ObjectInfo:
        """Raises ObjectNotFoundError when there is no such object."""
        ...

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``start`` up to, not including, ``end`` (None: to the end of the object)."""
        ...

    def stream(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """The same bytes as ``read``, in chunks (for HTTP responses of big objects)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""
        ...

    async def close(self) -> None: ...


# S3's own limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024


def check_key(key: str) -> str:
    """``key`` if both backends can store it under that exact name; StorageError if not.

    A key is ``/``-separated segments, none empty, none starting with ``.`` (so no
    ``.`` or ``..``, and the local store's temporary and metadata files, which start
    with a dot, can never collide with an object), no backslash or control
    characters, and at most 1024 bytes in UTF-8.
    """
    if not isinstance(key, str) or not key:
        raise StorageError("object key is empty")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise StorageError(f"object key is longer than {MAX_KEY_BYTES} bytes: {key[:64]!r}...")
    if "\\" in key or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise StorageError(f"object key has a backslash or a control character: {key!r}")
    for segment in key.split("/"):
        if not segment:
            raise StorageError(f"object key is absolute or has an empty segment: {key!r}")
        if segment.startswith("."):
            raise StorageError(f"object key has a segment starting with '.': {key!r}")
    return key


RECORDING_CONTENT_TYPE = "audio/ogg"  # Opus in Ogg (RFC 7845)


def recording_key(tenant: str, call_id: str, started: dt.datetime) -> str:
    """Where a call's recording is stored: by tenant and UTC day, named by the call."""
    day = started.astimezone(dt.UTC)
    return f"recordings/{tenant}/{day:%Y/%m/%d}/{_safe(call_id)}.ogg"


def voicemail_key(tenant: str, box: str, call_id: str, started: dt.datetime) -> str:
    """Where a voice message is stored: by tenant and box ('general' for the tenant's box)."""
    day = started.astimezone(dt.UTC)
    return f"voicemail/{tenant}/{box or 'general'}/{day:%Y/%m/%d}/{_safe(call_id)}.ogg"


def _safe(name: str) -> str:
    """A SIP Call-ID as one path segment: anything but [A-Za-z0-9._-] becomes '_'."""
    cleaned = "".join(c if (c.isalnum() and c.isascii()) or c in "._-" else "_" for c in name)
    return cleaned.strip(".") or "_"

"""Which object store a component uses: VPBX_STORAGE_URL and the S3 settings.

``VPBX_STORAGE_URL``
    ``file:///absolute/dir`` – objects as files in that directory;
    ``s3://bucket`` – the bucket on the S3-compatible server at ``VPBX_S3_ENDPOINT``
    (``http://host:port``; path-style requests), authenticated with
    ``VPBX_S3_ACCESS_KEY`` / ``VPBX_S3_SECRET_KEY`` and signed for ``VPBX_S3_REGION``
    (default ``us-east-1``, which SeaweedFS and MinIO accept whatever they are set to).
    Unset: ``var/storage`` under the working directory in local mode; an error
    otherwise, since a pod's own disk would lose recordings on every restart.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from pydantic import SecretStr

from ..settings import CommonSettings, require_real_secret
from . import ObjectStore, StorageError
from .local import LocalObjectStore
from .s3 import S3ObjectStore

LOCAL_DEFAULT_DIR = Path("var") / "storage"


class StorageConfigError(ValueError):
    """The object storage settings are missing or inconsistent."""


class StorageSettings(CommonSettings):
    """Mix into a component's settings class (alongside its other CommonSettings bases)."""

    storage_url: str | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"


def open_object_store(settings: StorageSettings) -> ObjectStore:
    """The store the settings name. Opens no connection; an S3 bucket that may not
    exist yet is created with ``await store.ensure_bucket()`` (S3ObjectStore only)."""
    url = settings.storage_url
    if not url:
        if not settings.is_local:
            raise StorageConfigError(
                "VPBX_STORAGE_URL is not set: outside local mode recordings and voice messages"
                " need durable storage (s3://bucket with VPBX_S3_ENDPOINT, or file:///dir on a"
                " persistent volume)"
            )
        return LocalObjectStore(Path.cwd() / LOCAL_DEFAULT_DIR)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        if parsed.netloc not in {"", "localhost"}:
            raise StorageConfigError(
                f"VPBX_STORAGE_URL {url!r}: a file URL names a local directory,"
                " file:///absolute/path (three slashes)"
            )
        path = Path(urllib.parse.unquote(parsed.path))
        if not path.is_absolute():
            raise StorageConfigError(f"VPBX_STORAGE_URL {url!r}: the directory must be absolute")
        return LocalObjectStore(path)
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not bucket or parsed.path.strip("/"):
            raise StorageConfigError(
                f"VPBX_STORAGE_URL {url!r}: expected s3://bucket (no path after the bucket)"
            )
        if not settings.s3_endpoint:
            raise StorageConfigError(
                "VPBX_STORAGE_URL is an s3:// URL but VPBX_S3_ENDPOINT is not set"
                " (e.g. http://seaweedfs-s3:8333)"
            )
        if not settings.s3_access_key:
            raise StorageConfigError(
                "VPBX_STORAGE_URL is an s3:// URL but VPBX_S3_ACCESS_KEY is not set"
            )
        require_real_secret("VPBX_S3_SECRET_KEY", settings.s3_secret_key, local=settings.is_local)
        try:
            return S3ObjectStore(
                endpoint=settings.s3_endpoint,
                bucket=bucket,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key.get_secret_value(),
                region=settings.s3_region,
            )
        except StorageError as exc:
            raise StorageConfigError(f"VPBX_S3_ENDPOINT / VPBX_STORAGE_URL: {exc}") from exc
    raise StorageConfigError(
        f"VPBX_STORAGE_URL {url!r}: unsupported scheme; use file:///absolute/dir or s3://bucket"
    )


__all__ = ["LOCAL_DEFAULT_DIR", "StorageConfigError", "StorageSettings", "open_object_store"]

"""Objects as files in a local directory (local mode, single-machine installs).

Layout: the object ``a/b/c.ogg`` is the file ``<root>/a/b/c.ogg`` holding exactly
the object's bytes (so byte ranges are plain seeks), and its content type is the
text of the sidecar file ``<root>/a/b/.c.ogg.content-type``. Keys never have a
segment starting with a dot (``check_key``), so sidecars and the temporary files
of writes in progress (``.c.ogg.<random>.tmp``) cannot collide with objects. An
object written without a sidecar (copied in by hand) reads as
``application/octet-stream``.

Every write goes to a temporary file in the target's directory, is fsynced and
then renamed over the target, so readers see the old object or the new one, never
a mix. The sidecar is replaced before the data; two concurrent writers of one key
can leave one's content type with the other's bytes, which is acceptable for
recordings (each call writes its own key). Directories emptied by deletes are
left in place: removing them would race with a concurrent put into them.

File I/O runs in worker threads (``asyncio.to_thread``) so that a slow disk never
stalls the event loop that also carries SIP and RTP.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

from . import ObjectInfo, ObjectNotFoundError, StorageError, check_key

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_SIDECAR_SUFFIX = ".content-type"


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        path = self.root.joinpath(*key.split("/"))
        # check_key already rules out '..'; this guards against a symlink inside root
        # pointing elsewhere being used to write outside it.
        resolved = path.parent.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise StorageError(f"object key {key!r} leads outside the store's root")
        return path

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}{_SIDECAR_SUFFIX}")

    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        target = self._path(key)

        def copy(temporary: IO[bytes]) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, temporary, 1024 * 1024)

        return await asyncio.to_thread(self._write, key, target, copy, content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        target = self._path(key)
        return await asyncio.to_thread(
            self._write, key, target, lambda f: f.write(data), content_type
        )

    def _write(
        self, key: str, target: Path, fill: Callable[[IO[bytes]], object], content_type: str
    ) -> ObjectInfo:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _replace_atomically(self._sidecar(target), lambda f: f.write(content_type.encode()))
            size = _replace_atomically(target, fill)
        except OSError as exc:
            raise StorageError(f"cannot write object {key!r} under {self.root}: {exc}") from exc
        return ObjectInfo(key=key, size=size, content_type=content_type)

    async def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        return await asyncio.to_thread(self._stat, key, path)

    def _stat(self, key: str, path: Path) -> ObjectInfo:
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise ObjectNotFoundError(f"no object {key!r}")
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"no object {key!r}") from exc
        except OSError as exc:
            raise StorageError(f"cannot stat object {key!r} under {self.root}: {exc}") from exc
        try:
            content_type = self._sidecar(path).read_text().strip() or DEFAULT_CONTENT_TYPE
        except FileNotFoundError:
            content_type = DEFAULT_CONTENT_TYPE
        except OSError as exc:
            raise StorageError(f"cannot read the content type of {key!r}: {exc}") from exc
        return ObjectInfo(key=key, size=size, content_type=content_type)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        _check_range(start, end)
        path = self._path(key)
        return await asyncio.to_thread(self._read, key, path, start, end)

    def _read(self, key: str, path: Path, start: int, end: int | None) -> bytes:
        with self._open(key, path) as file:
            file.seek(start)
            try:
                return file.read() if end is None else file.read(max(0, end - start))
            except OSError as exc:
                raise StorageError(f"cannot read object {key!r}: {exc}") from exc

    async def stream(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        _check_range(start, end)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        path = self._path(key)
        file = await asyncio.to_thread(self._open, key, path)
        try:
            await asyncio.to_thread(file.seek, start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                try:
                    chunk = await asyncio.to_thread(file.read, size)
                except OSError as exc:
                    raise StorageError(f"cannot read object {key!r}: {exc}") from exc
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(file.close)

    def _open(self, key: str, path: Path) -> IO[bytes]:
        try:
            return path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(f"no object {key!r}") from exc
        except OSError as exc:
            raise StorageError(f"cannot open object {key!r} under {self.root}: {exc}") from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(self._delete, key, path)

    def _delete(self, key: str, path: Path) -> None:
        # The data first: once it is gone the object is gone, whatever happens to the sidecar.
        if not path.parent.is_dir():
            return  # a parent is missing or a file: there is no such object to delete
        if path.is_dir():
            # A key naming a directory of other objects is no object of its own.
            raise ObjectNotFoundError(f"no object {key!r}")
        for victim in (path, self._sidecar(path)):
            try:
                victim.unlink(missing_ok=True)  # gone already is what delete promises
            except OSError as exc:
                raise StorageError(f"cannot delete object {key!r}: {exc}") from exc

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range {start}..{end}")


def _replace_atomically(target: Path, fill: Callable[[IO[bytes]], object]) -> int:
    """Write through ``fill`` into a temporary sibling, then rename it over ``target``; its size."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with temporary.open("xb") as file:
            fill(file)
            file.flush()
            # Without it a crash soon after the rename can leave an empty or torn file.
            os.fsync(file.fileno())
            size = file.tell()
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return size


__all__ = ["DEFAULT_CONTENT_TYPE", "LocalObjectStore"]

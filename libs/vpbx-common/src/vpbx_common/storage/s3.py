"""Objects in an S3-compatible bucket (SeaweedFS, MinIO, AWS S3), over httpx.

Only what the ObjectStore contract needs: PUT, HEAD, GET (with Range) and DELETE of
objects, plus HEAD/PUT of the bucket for ``ensure_bucket``. Requests use
path-style URLs (``<endpoint>/<bucket>/<key>``), which every S3-compatible server
accepts without wildcard DNS, and are signed with SigV4 (``sigv4.py``).

Payloads: ``put_bytes`` signs the SHA-256 of the body, so the server checks it;
``put_file`` streams the file from disk with ``UNSIGNED-PAYLOAD`` (the body
cannot be hashed before it is read, and reading it twice doubles the disk work).

Errors: a missing object is ObjectNotFoundError; anything else (unreachable,
timeout, refused credentials, missing bucket) is StorageError with the
operation, bucket, key, HTTP status and the S3 error code. The secret key only
ever enters the HMAC; it is in no message, log line or repr.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from . import ObjectInfo, ObjectNotFoundError, StorageError, check_key, sigv4

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Connecting should be quick (the store is in the same cluster); a read may wait
# for a slow volume server, but a wrong endpoint must fail rather than hang.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_FILE_CHUNK = 256 * 1024
_ERROR_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")


class S3ObjectStore:
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            url = httpx.URL(endpoint)
        except httpx.InvalidURL as exc:
            raise StorageError(f"invalid S3 endpoint {endpoint!r}: {exc}") from exc
        if url.scheme not in {"http", "https"} or not url.host:
            raise StorageError(f"S3 endpoint must be an http(s) URL, not {endpoint!r}")
        if not bucket or "/" in bucket:
            raise StorageError(f"invalid S3 bucket name {bucket!r}")
        self.endpoint = str(url).rstrip("/")
        self.bucket = bucket
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        # The Host header is signed, so it is set explicitly to exactly what is signed.
        self._host = url.host if url.port is None else f"{url.host}:{url.port}"
        self._base_path = url.path.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    # -- the ObjectStore contract ------------------------------------------------

    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        check_key(key)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except OSError as exc:
            raise StorageError(f"cannot read {path} to store as {key!r}: {exc}") from exc
        response = await self._send(
            "PUT",
            key,
            headers={"content-type": content_type, "content-length": str(size)},
            content=_file_chunks(path, size),
            payload_sha256=sigv4.UNSIGNED_PAYLOAD,
        )
        self._check(response, "PUT", key)
        return ObjectInfo(key=key, size=size, content_type=content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        check_key(key)
        response = await self._send(
            "PUT",
            key,
            headers={"content-type": content_type},
            content=data,
            payload_sha256=hashlib.sha256(data).hexdigest(),
        )
        self._check(response, "PUT", key)
        return ObjectInfo(key=key, size=len(data), content_type=content_type)

    async def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        response = await self._send("HEAD", key)
        # A HEAD response has no body, so a missing bucket looks like a missing
        # object here; put/read name NoSuchBucket explicitly.
        self._check(response, "HEAD", key)
        try:
            size = int(response.headers["content-length"])
        except (KeyError, ValueError) as exc:
            raise StorageError(
                f"S3 HEAD {self.bucket}/{key}: no valid Content-Length in the response"
            ) from exc
        content_type = response.headers.get("content-type") or DEFAULT_CONTENT_TYPE
        return ObjectInfo(key=key, size=size, content_type=content_type)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return b"".join([chunk async for chunk in self.stream(key, start, end, 1024 * 1024)])

    async def stream(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        check_key(key)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range {start}..{end}")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if end == start:
            # An empty range has no HTTP form; still say whether the object exists.
            await self.stat(key)
            return
        headers: dict[str, str] = {}
        if start or end is not None:
            headers["range"] = f"bytes={start}-{'' if end is None else end - 1}"
        async with self._streaming("GET", key, headers) as response:
            if response.status_code == 416:
                # The range starts at or past the end: like slicing, nothing.
                await response.aread()
                return
            if response.status_code >= 300:
                await response.aread()
                self._check(response, "GET", key)
            # A server that ignores Range answers 200 with the whole object.
            skip = start if headers and response.status_code == 200 else 0
            remaining = None if end is None else end - start
            async for chunk in response.aiter_bytes(chunk_size):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk = chunk[dropped:]
                    skip -= dropped
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                if chunk:
                    yield chunk
                if remaining == 0:
                    break

    async def delete(self, key: str) -> None:
        check_key(key)
        response = await self._send("DELETE", key)
        if response.status_code == 404 and _error_code(response) != "NoSuchBucket":
            return
        self._check(response, "DELETE", key)

    async def close(self) -> None:
        await self._client.aclose()

    # -- the bucket ------------------------------------------------------------------

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (or another client just created it)."""
        response = await self._send("HEAD", None)
        if response.status_code == 200:
            return
        if response.status_code != 404:
            self._check(response, "HEAD", None)
        body = b""
        if self.region != "us-east-1":
            # Outside us-east-1 AWS wants the region restated in the body.
            body = (
                "<CreateBucketConfiguration xmlns="
                '"http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{html.escape(self.region)}</LocationConstraint>"
                "</CreateBucketConfiguration>"
            ).encode()
        response = await self._send(
            "PUT", None, content=body, payload_sha256=hashlib.sha256(body).hexdigest()
        )
        if response.status_code == 409 and _error_code(response) == "BucketAlreadyOwnedByYou":
            return
        self._check(response, "PUT", None)

    # -- requests --------------------------------------------------------------------

    def _request(
        self,
        method: str,
        key: str | None,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        payload_sha256: str = sigv4.EMPTY_PAYLOAD_SHA256,
    ) -> httpx.Request:
        path = f"{self._base_path}/{self.bucket}" + ("" if key is None else f"/{key}")
        encoded_path = sigv4.uri_encode_path(path)
        now = dt.datetime.now(dt.UTC)
        signed = {
            "host": self._host,
            "x-amz-date": sigv4.amz_date(now),
            "x-amz-content-sha256": payload_sha256,
            **{name.lower(): value for name, value in (headers or {}).items()},
        }
        authorization = sigv4.authorization(
            method=method,
            path=encoded_path,
            headers=signed,
            payload_sha256=payload_sha256,
            access_key=self._access_key,
            secret_key=self._secret_key,
            region=self.region,
            when=now,
        )
        # Built from raw parts so httpx sends the path byte for byte as it was signed.
        url = httpx.URL(self.endpoint).copy_with(raw_path=encoded_path.encode("ascii"))
        return self._client.build_request(
            method,
            url,
            headers={**signed, "authorization": authorization},
            content=content,
        )

    async def _send(
        self,
        method: str,
        key: str | None,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        payload_sha256: str = sigv4.EMPTY_PAYLOAD_SHA256,
    ) -> httpx.Response:
        request = self._request(method, key, headers, content, payload_sha256)
        try:
            return await self._client.send(request)
        except httpx.HTTPError as exc:
            raise self._transport_error(method, key, exc) from exc
        except OSError as exc:
            # Reading the file being uploaded failed.
            raise StorageError(f"S3 {method} {self._name(key)}: {exc}") from exc

    @asynccontextmanager
    async def _streaming(
        self, method: str, key: str, headers: Mapping[str, str]
    ) -> AsyncIterator[httpx.Response]:
        request = self._request(method, key, headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(method, key, exc) from exc
        try:
            yield response
        except httpx.HTTPError as exc:
            raise self._transport_error(method, key, exc) from exc
        finally:
            await response.aclose()

    def _name(self, key: str | None) -> str:
        return self.bucket if key is None else f"{self.bucket}/{key}"

    def _transport_error(self, method: str, key: str | None, exc: httpx.HTTPError) -> StorageError:
        return StorageError(
            f"S3 {method} {self._name(key)} at {self.endpoint} failed:"
            f" {type(exc).__name__}: {exc or 'no detail'}"
        )

    def _check(self, response: httpx.Response, method: str, key: str | None) -> None:
        if response.status_code < 300:
            return
        code = _error_code(response)
        if key is not None and (
            code == "NoSuchKey" or (response.status_code == 404 and code is None)
        ):
            raise ObjectNotFoundError(f"no object {key!r} in bucket {self.bucket!r}")
        message = _error_message(response)
        detail = " ".join(part for part in (code, message) if part)
        raise StorageError(
            f"S3 {method} {self._name(key)} at {self.endpoint}: HTTP {response.status_code}"
            + (f" {detail}" if detail else "")
        )


def _error_fields(response: httpx.Response) -> dict[str, str]:
    """Code and Message of an S3 XML error body (a regex: the body is small and flat)."""
    try:
        text = response.text
    except httpx.ResponseNotRead:
        return {}
    return {name: html.unescape(value) for name, value in _ERROR_FIELD.findall(text[:4096])}


def _error_code(response: httpx.Response) -> str | None:
    return _error_fields(response).get("Code")


def _error_message(response: httpx.Response) -> str | None:
    return _error_fields(response).get("Message")


async def _file_chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    """The first ``size`` bytes of the file, read in a worker thread chunk by chunk.

    Stops at ``size`` even if the file grew meanwhile, so the body matches the
    Content-Length sent; a file that shrank ends the body early, which the HTTP
    layer reports as an error rather than storing a truncated object.
    """
    file = await asyncio.to_thread(path.open, "rb")
    try:
        remaining = size
        while remaining > 0:
            chunk = await asyncio.to_thread(file.read, min(_FILE_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(file.close)


__all__ = ["DEFAULT_CONTENT_TYPE", "S3ObjectStore"]

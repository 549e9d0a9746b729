"""Object storage: both backends against the same expectations, plus SigV4 and the settings.

The S3 backend runs against a real SeaweedFS (tests/services/seaweedfs.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from tests.services.seaweedfs import SeaweedS3

from vpbx_common.settings import InsecureDefaultSecretError
from vpbx_common.storage import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
    check_key,
    recording_key,
    sigv4,
)
from vpbx_common.storage.local import LocalObjectStore
from vpbx_common.storage.s3 import S3ObjectStore
from vpbx_common.storage.settings import (
    StorageConfigError,
    StorageSettings,
    open_object_store,
)

# 200 KB: several stream chunks and more than one read of the S3 response.
PAYLOAD = os.urandom(200_000)
OGG = "audio/ogg"


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    backend: ObjectStore
    if request.param == "local":
        backend = LocalObjectStore(tmp_path / "objects")
    else:
        server: SeaweedS3 = request.getfixturevalue("seaweedfs_s3")
        backend = S3ObjectStore(
            server.endpoint, server.bucket, server.access_key, server.secret_key, server.region
        )
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def prefix() -> str:
    """Keys of one test under their own prefix: the S3 bucket is shared by the session."""
    return f"t-{secrets.token_hex(6)}"


async def test_put_bytes_then_stat_and_read(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/recordings/call.ogg"
    info = await store.put_bytes(key, PAYLOAD, OGG)
    assert info == ObjectInfo(key=key, size=len(PAYLOAD), content_type=OGG)
    assert await store.stat(key) == info
    assert await store.read(key) == PAYLOAD


async def test_put_file(store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    source = tmp_path / "recording.ogg"
    source.write_bytes(PAYLOAD)
    key = f"{prefix}/from-file.ogg"
    info = await store.put_file(key, source, OGG)
    assert info == ObjectInfo(key=key, size=len(PAYLOAD), content_type=OGG)
    assert await store.stat(key) == info
    assert await store.read(key) == PAYLOAD
    assert source.read_bytes() == PAYLOAD, "the source file is left alone"


async def test_empty_object(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/empty"
    await store.put_bytes(key, b"", "text/plain")
    assert (await store.stat(key)).size == 0
    assert await store.read(key) == b""
    assert await store.read(key, 0, 10) == b""
    assert [chunk async for chunk in store.stream(key)] == []


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 10),
        (10, 20),
        (1000, None),  # open-ended
        (len(PAYLOAD) - 7, None),  # the last bytes
        (len(PAYLOAD) - 7, len(PAYLOAD)),
        (5, 5),  # empty range
        (len(PAYLOAD) - 3, len(PAYLOAD) + 100),  # past the end: clipped
        (len(PAYLOAD), None),  # starts at the end
        (len(PAYLOAD) + 10, None),  # starts past the end
    ],
)
async def test_read_ranges(store: ObjectStore, prefix: str, start: int, end: int | None) -> None:
    key = f"{prefix}/ranges.ogg"
    await store.put_bytes(key, PAYLOAD, OGG)
    assert await store.read(key, start, end) == PAYLOAD[start:end]


async def test_stream_in_chunks_equals_read(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/stream.ogg"
    await store.put_bytes(key, PAYLOAD, OGG)
    chunks = [chunk async for chunk in store.stream(key, chunk_size=16384)]
    assert b"".join(chunks) == await store.read(key)
    assert all(len(chunk) <= 16384 for chunk in chunks)
    assert len(chunks) >= len(PAYLOAD) // 16384
    ranged = [chunk async for chunk in store.stream(key, 100, 50_100, chunk_size=4096)]
    assert b"".join(ranged) == PAYLOAD[100:50_100]
    tail = [chunk async for chunk in store.stream(key, len(PAYLOAD) - 5)]
    assert b"".join(tail) == PAYLOAD[-5:]


async def test_stream_stopped_early(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/partial.ogg"
    await store.put_bytes(key, PAYLOAD, OGG)
    stream = store.stream(key, chunk_size=1000)
    first = await anext(stream)
    assert first == PAYLOAD[:1000]
    await stream.aclose()  # type: ignore[attr-defined]
    assert await store.read(key, 0, 3) == PAYLOAD[:3]


async def test_overwrite(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/voicemail/msg.ogg"
    await store.put_bytes(key, PAYLOAD, OGG)
    info = await store.put_bytes(key, b"shorter", "text/plain")
    assert info.size == 7
    assert await store.stat(key) == ObjectInfo(key=key, size=7, content_type="text/plain")
    assert await store.read(key) == b"shorter"


async def test_delete_is_idempotent(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/gone.ogg"
    await store.put_bytes(key, b"x", OGG)
    await store.delete(key)
    with pytest.raises(ObjectNotFoundError):
        await store.stat(key)
    await store.delete(key)
    await store.delete(f"{prefix}/never-existed.ogg")


async def test_missing_key(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/missing.ogg"
    with pytest.raises(ObjectNotFoundError):
        await store.stat(key)
    with pytest.raises(ObjectNotFoundError):
        await store.read(key)
    with pytest.raises(ObjectNotFoundError):
        await store.read(key, 10, 20)
    with pytest.raises(ObjectNotFoundError):
        await store.read(key, 3, 3)
    with pytest.raises(ObjectNotFoundError):
        _ = [chunk async for chunk in store.stream(key)]


async def test_a_prefix_is_no_object(store: ObjectStore, prefix: str) -> None:
    await store.put_bytes(f"{prefix}/dir/file.ogg", b"x", OGG)
    with pytest.raises(ObjectNotFoundError):
        await store.stat(f"{prefix}/dir")
    with pytest.raises(ObjectNotFoundError):
        await store.read(f"{prefix}/dir")


async def test_keys_from_the_helpers_round_trip(store: ObjectStore, prefix: str) -> None:
    started = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    key = recording_key(f"{prefix}-acme", "a84b4c76e66710@pc33.example.com", started)
    await store.put_bytes(key, b"ogg", OGG)
    assert await store.read(key) == b"ogg"


async def test_unusual_characters_in_keys(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/with space/ü+%&=;@,$!'()*.ogg"
    await store.put_bytes(key, b"odd", OGG)
    assert (await store.stat(key)).size == 3
    assert await store.read(key, 1) == b"dd"


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "a/../../outside",
    "a/./b",
    "a//b",
    "trailing/",
    ".hidden",
    "a/.b.content-type",
    "back\\slash",
    "nul\x00byte",
    "x" * 1025,
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_refused(store: ObjectStore, key: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        check_key(key)
    with pytest.raises(StorageError):
        await store.put_bytes(key, b"x", OGG)
    source = tmp_path / "source"
    source.write_bytes(b"x")
    with pytest.raises(StorageError):
        await store.put_file(key, source, OGG)
    with pytest.raises(StorageError):
        await store.stat(key)
    with pytest.raises(StorageError):
        await store.read(key)
    with pytest.raises(StorageError):
        await store.delete(key)
    assert not (tmp_path.parent / "outside").exists()


async def test_invalid_ranges_are_refused(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/r.ogg"
    await store.put_bytes(key, b"abc", OGG)
    with pytest.raises(ValueError, match="invalid byte range"):
        await store.read(key, -1)
    with pytest.raises(ValueError, match="invalid byte range"):
        await store.read(key, 5, 2)


# -- local store specifics --------------------------------------------------------------


async def test_local_layout_and_no_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    await store.put_bytes("a/b/c.ogg", b"data", OGG)
    await store.put_bytes("a/b/c.ogg", b"data2", OGG)
    assert (root / "a" / "b" / "c.ogg").read_bytes() == b"data2"
    names = sorted(path.name for path in (root / "a" / "b").iterdir())
    assert names == [".c.ogg.content-type", "c.ogg"], "no temporary files are left behind"
    await store.delete("a/b/c.ogg")
    assert list((root / "a" / "b").iterdir()) == []


async def test_local_file_without_sidecar(tmp_path: Path) -> None:
    (tmp_path / "copied.ogg").write_bytes(b"by hand")
    store = LocalObjectStore(tmp_path)
    assert await store.stat("copied.ogg") == ObjectInfo(
        key="copied.ogg", size=7, content_type="application/octet-stream"
    )


async def test_local_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    store = LocalObjectStore(root)
    with pytest.raises(StorageError):
        await store.put_bytes("link/x.ogg", b"x", OGG)
    assert list((tmp_path / "elsewhere").iterdir()) == []


async def test_local_failed_source_leaves_the_old_object(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put_bytes("k.ogg", b"old", OGG)
    with pytest.raises(StorageError):
        await store.put_file("k.ogg", tmp_path / "no-such-file", OGG)
    assert await store.read("k.ogg") == b"old"
    leftovers = [p.name for p in (tmp_path / "objects").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


# -- S3 store specifics -----------------------------------------------------------------


async def test_s3_wrong_credentials_fail_fast(seaweedfs_s3: SeaweedS3, prefix: str) -> None:
    wrong = S3ObjectStore(
        seaweedfs_s3.endpoint, seaweedfs_s3.bucket, seaweedfs_s3.access_key, "not-the-secret"
    )
    unknown = S3ObjectStore(
        seaweedfs_s3.endpoint, seaweedfs_s3.bucket, "nobody", seaweedfs_s3.secret_key
    )
    try:
        for store in (wrong, unknown):
            started = time.monotonic()
            with pytest.raises(StorageError) as put_error:
                await store.put_bytes(f"{prefix}/x.ogg", b"x", OGG)
            assert not isinstance(put_error.value, ObjectNotFoundError)
            assert "403" in str(put_error.value)
            with pytest.raises(StorageError) as read_error:
                await store.read(f"{prefix}/x.ogg")
            assert not isinstance(read_error.value, ObjectNotFoundError)
            with pytest.raises(StorageError):
                await store.stat(f"{prefix}/x.ogg")
            assert time.monotonic() - started < 5
        assert "not-the-secret" not in str(put_error.value)
    finally:
        await wrong.close()
        await unknown.close()


async def test_s3_secret_is_not_in_repr_or_errors(seaweedfs_s3: SeaweedS3) -> None:
    store = S3ObjectStore(
        seaweedfs_s3.endpoint, "no-such-bucket-here", seaweedfs_s3.access_key, "s3cr3t-value"
    )
    try:
        assert "s3cr3t-value" not in repr(store)
        with pytest.raises(StorageError) as error:
            await store.put_bytes("k.ogg", b"x", OGG)
        assert "s3cr3t-value" not in str(error.value)
    finally:
        await store.close()


async def test_s3_unreachable_endpoint_is_a_storage_error() -> None:
    from tests.services.ports import free_port

    store = S3ObjectStore(f"http://127.0.0.1:{free_port()}", "bucket", "key", "secret")
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as error:
            await store.stat("k.ogg")
        assert not isinstance(error.value, ObjectNotFoundError)
        assert "ConnectError" in str(error.value)
        assert time.monotonic() - started < 5
    finally:
        await store.close()


async def test_s3_missing_bucket_is_not_a_missing_object(seaweedfs_s3: SeaweedS3) -> None:
    store = S3ObjectStore(
        seaweedfs_s3.endpoint,
        f"absent-{secrets.token_hex(4)}",
        seaweedfs_s3.access_key,
        seaweedfs_s3.secret_key,
    )
    try:
        with pytest.raises(StorageError) as error:
            await store.read("k.ogg")
        assert not isinstance(error.value, ObjectNotFoundError)
        assert "NoSuchBucket" in str(error.value)
    finally:
        await store.close()


async def test_s3_ensure_bucket_creates_once(seaweedfs_s3: SeaweedS3) -> None:
    bucket = f"fresh-{secrets.token_hex(4)}"
    store = S3ObjectStore(
        seaweedfs_s3.endpoint, bucket, seaweedfs_s3.access_key, seaweedfs_s3.secret_key
    )
    try:
        await store.ensure_bucket()
        await store.ensure_bucket()
        await store.put_bytes("k.ogg", b"in a new bucket", OGG)
        assert await store.read("k.ogg", 3, 6) == b"a n"
    finally:
        await store.close()


async def test_s3_server_ignoring_range_is_sliced() -> None:
    """Some S3 implementations answer a ranged GET with the whole object (200)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=2-4"
        return httpx.Response(200, content=b"0123456789")

    store = S3ObjectStore("http://s3.test", "b", "k", "s", transport=httpx.MockTransport(handler))
    try:
        assert await store.read("key", 2, 5) == b"234"
    finally:
        await store.close()


async def test_s3_requests_are_signed_as_sent() -> None:
    """The signature covers the exact path and headers on the wire (encoded once)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    store = S3ObjectStore(
        "http://127.0.0.1:8333", "b", "AKID", "secret", transport=httpx.MockTransport(handler)
    )
    try:
        await store.put_bytes("a b/ü.ogg", b"data", OGG)
    finally:
        await store.close()
    (request,) = seen
    assert request.url.raw_path == b"/b/a%20b/%C3%BC.ogg"
    headers = {name: request.headers[name] for name in ("host", "x-amz-date", "content-type")}
    headers["x-amz-content-sha256"] = request.headers["x-amz-content-sha256"]
    when = dt.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    expected = sigv4.authorization(
        method="PUT",
        path="/b/a%20b/%C3%BC.ogg",
        headers=headers,
        payload_sha256=headers["x-amz-content-sha256"],
        access_key="AKID",
        secret_key="secret",
        region="us-east-1",
        when=when,
    )
    assert request.headers["authorization"] == expected
    assert headers["host"] == "127.0.0.1:8333"


# -- SigV4 against AWS's published example ------------------------------------------------


def test_sigv4_get_object_example_from_the_aws_documentation() -> None:
    """ "Example: GET Object" in AWS's "Signature Calculations for the Authorization
    Header: Transferring Payload in a Single Chunk (AWS Signature Version 4)"."""
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": sigv4.EMPTY_PAYLOAD_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    canonical, signed_headers = sigv4.canonical_request(
        "GET", "/test.txt", (), headers, sigv4.EMPTY_PAYLOAD_SHA256
    )
    assert canonical == (
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert signed_headers == "host;range;x-amz-content-sha256;x-amz-date"
    assert sigv4.authorization(
        method="GET",
        path="/test.txt",
        headers=headers,
        payload_sha256=sigv4.EMPTY_PAYLOAD_SHA256,
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        when=dt.datetime(2013, 5, 24, tzinfo=dt.UTC),
    ) == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_sigv4_query_is_sorted_and_encoded() -> None:
    assert sigv4.canonical_query([("prefix", "a b/c"), ("list-type", "2")]) == (
        "list-type=2&prefix=a%20b%2Fc"
    )


# -- settings -------------------------------------------------------------------------------


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> StorageSettings:
    for name in list(os.environ):
        if name.startswith(("VPBX_STORAGE", "VPBX_S3", "VPBX_MODE")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return StorageSettings()


async def test_settings_local_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_object_store(_settings(monkeypatch))
    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "var" / "storage").resolve()


def test_settings_unset_outside_local_mode_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StorageConfigError, match="VPBX_STORAGE_URL"):
        open_object_store(_settings(monkeypatch, VPBX_MODE="cluster"))


def test_settings_file_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = open_object_store(_settings(monkeypatch, VPBX_STORAGE_URL=f"file://{tmp_path}/rec"))
    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "rec").resolve()
    for bad in ("file://relative/dir", "ftp://x/y"):
        with pytest.raises(StorageConfigError):
            open_object_store(_settings(monkeypatch, VPBX_STORAGE_URL=bad))


async def test_settings_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "VPBX_STORAGE_URL": "s3://recordings",
        "VPBX_S3_ENDPOINT": "http://127.0.0.1:8333",
        "VPBX_S3_ACCESS_KEY": "vpbx",
        "VPBX_S3_SECRET_KEY": "a-real-secret",
        "VPBX_S3_REGION": "eu-central-1",
    }
    store = open_object_store(_settings(monkeypatch, VPBX_MODE="cluster", **env))
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.region, store.endpoint) == (
        "recordings",
        "eu-central-1",
        "http://127.0.0.1:8333",
    )
    assert isinstance(StorageSettings().s3_secret_key, SecretStr)
    await store.close()

    with pytest.raises(InsecureDefaultSecretError, match="VPBX_S3_SECRET_KEY"):
        open_object_store(
            _settings(monkeypatch, VPBX_MODE="cluster", **{**env, "VPBX_S3_SECRET_KEY": ""})
        )
    for missing in ("VPBX_S3_ENDPOINT", "VPBX_S3_ACCESS_KEY"):
        partial = {name: value for name, value in env.items() if name != missing}
        with pytest.raises(StorageConfigError, match=missing):
            open_object_store(_settings(monkeypatch, **partial))
    with pytest.raises(StorageConfigError):
        open_object_store(_settings(monkeypatch, **{**env, "VPBX_STORAGE_URL": "s3://b/sub"}))


def test_settings_s3_empty_secret_allowed_in_local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch,
        VPBX_STORAGE_URL="s3://b",
        VPBX_S3_ENDPOINT="http://127.0.0.1:8333",
        VPBX_S3_ACCESS_KEY="vpbx",
    )
    store = open_object_store(settings)
    assert isinstance(store, S3ObjectStore)
    asyncio.run(store.close())

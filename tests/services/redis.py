"""A private redis-server (Debian package) on loopback for the whole test session."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.services.ports import free_port, wait_for_tcp


class RedisMissingError(RuntimeError):
    """redis-server is not installed (run `make deps` or `make test`)."""


@contextmanager
def running_redis(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisMissingError("redis-server is not installed; run `make deps`")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_tcp("127.0.0.1", port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with running_redis(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RedisMissingError as exc:
        pytest.fail(f"{exc} (run the tests through `make test`)")


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the module's own, for a platform its tests share: the session's
    is emptied under it whenever one of the module's tests starts a platform of its own."""
    try:
        with running_redis(tmp_path_factory.mktemp("module-redis")) as url:
            yield url
    except RedisMissingError as exc:
        pytest.fail(f"{exc} (run the tests through `make test`)")


def _flush(redis_url: str) -> str:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    return redis_url


@pytest.fixture
def flushed_redis(redis_url: str) -> str:
    """The session Redis, emptied before the test."""
    return _flush(redis_url)


@pytest.fixture(scope="module")
def module_flushed_redis(redis_url: str) -> str:
    """The session Redis, emptied before the module's first test (and not between its tests)."""
    return _flush(redis_url)

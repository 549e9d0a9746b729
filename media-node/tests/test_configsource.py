"""The node's config source: fetch at start, live reload on Redis invalidations and by polling.

The control API side is a small real HTTP server speaking the node-config
protocol (ETag / If-None-Match / 304); Redis is the real one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as redis
from tests.services.ports import free_port

from vpbx_common.nodeconfig import GroupTarget, NodeConfig, config_channel
from vpbx_common.sipauth import DigestAlgorithm, ha1
from vpbx_media.node.configsource import (
    ConfigClient,
    ConfigFetchError,
    ConfigHolder,
    ConfigWatcher,
    read_config_file,
)

TOKEN = "node-service-token"


def config(users: tuple[str, ...] = ("101",), tenant: str = "acme") -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": tenant,
            "display_name": tenant.title(),
            "sip_domain": f"{tenant}.vpbx.test",
            "city": "msk",
            "suspended": False,
            "users": [{"extension": u, "name": f"User {u}", "city": "msk"} for u in users],
            "groups": [],
            "numbers": [],
        }
    ).with_version()


@dataclass
class FakeControlApi:
    """Serves one config at /internal/v1/node-config/acme/msk, as the control API does."""

    port: int
    current: NodeConfig | None = None
    status: int = 200  # anything else: answered instead of the config
    body_override: bytes | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                headers["path"] = lines[0].split(" ")[1]
                self.requests.append(headers)
                status, body, extra = self._answer(headers)
                self.answered.append(status)
                reason = {200: "OK", 304: "Not Modified", 403: "Forbidden"}.get(status, "Error")
                response = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                response += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(response.encode() + b"\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the node closed its connection: the normal end of a keep-alive session
        finally:
            writer.close()

    def _answer(self, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, b'{"error_id":"not-authenticated"}', {}
        if self.status != 200 or self.current is None:
            return self.status, b'{"error_id":"forbidden"}', {}
        etag = f'"{self.current.version}"'
        if headers.get("if-none-match") == etag:
            return 304, b"", {"ETag": etag}
        body = self.body_override or self.current.model_dump_json().encode()
        return 200, body, {"ETag": etag, "Content-Type": "application/json"}


@pytest.fixture
async def control_api() -> AsyncIterator[FakeControlApi]:
    api = FakeControlApi(port=free_port())
    server = await asyncio.start_server(api.handle, "127.0.0.1", api.port)
    async with server:
        yield api


def client_for(api: FakeControlApi, token: str = TOKEN) -> ConfigClient:
    return ConfigClient(f"http://127.0.0.1:{api.port}/", token, "acme", "msk", timeout=2)


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until ``predicate()`` holds (checked every 20 ms), else fail the test."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def redis_client(flushed_redis: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(flushed_redis)
    yield client
    await client.aclose()


async def test_a_node_waits_for_its_config_before_anything_else() -> None:
    port = free_port()
    api = FakeControlApi(port=port, current=config())
    client = ConfigClient(f"http://127.0.0.1:{port}", TOKEN, "acme", "msk", timeout=1)
    fetching = asyncio.create_task(client.fetch_initial(first_delay=0.05, max_delay=0.2))
    await asyncio.sleep(0.5)
    assert not fetching.done()  # nothing listens yet: no config, so no node
    server = await asyncio.start_server(api.handle, "127.0.0.1", port)
    async with server:
        fetched = await asyncio.wait_for(fetching, 5)
    await client.aclose()
    assert fetched == api.current
    assert api.requests[-1]["path"] == "/internal/v1/node-config/acme/msk"
    assert "if-none-match" not in api.requests[-1]


async def test_refused_or_foreign_configs_are_errors(control_api: FakeControlApi) -> None:
    control_api.current = config()
    wrong_token = client_for(control_api, token="guess")
    with pytest.raises(ConfigFetchError, match="401"):
        await wrong_token.fetch()
    await wrong_token.aclose()

    client = client_for(control_api)
    control_api.status = 403
    with pytest.raises(ConfigFetchError, match="403"):
        await client.fetch()
    control_api.status = 200
    control_api.current = config(tenant="globex")
    with pytest.raises(ConfigFetchError, match="globex/msk, not acme/msk"):
        await client.fetch()
    control_api.body_override = b'{"tenant": "acme"}'
    with pytest.raises(ConfigFetchError, match="unreadable"):
        await client.fetch()
    await client.aclose()


async def test_an_invalidation_swaps_the_config_and_old_holders_keep_theirs(
    control_api: FakeControlApi, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    first = config(("101",))
    control_api.current = first
    holder = ConfigHolder(first)
    watcher = ConfigWatcher(client_for(control_api), holder, redis_client, poll_interval=60)
    watcher.start()
    try:
        await asyncio.wait_for(watcher.subscribed.wait(), 5)
        await eventually(lambda: 304 in control_api.answered)  # the look after subscribing
        in_progress = holder()  # what a call that started now holds

        second = config(("101", "102"))
        control_api.current = second
        with caplog.at_level(logging.INFO, logger="vpbx_media.node.configsource"):
            await redis_client.publish(config_channel("acme"), "acme")
            await eventually(lambda: holder.current.version == second.version)

        assert holder() == second
        assert [u.extension for u in in_progress.users] == ["101"]  # untouched
        last = control_api.requests[-1]
        assert last["if-none-match"] == f'"{first.version}"'
        assert f"tenant=acme city=msk config version {first.version} -> {second.version}" in (
            caplog.text
        )
        # Another tenant's invalidation is not ours.
        fetches = watcher.fetches
        await redis_client.publish(config_channel("globex"), "globex")
        await asyncio.sleep(0.3)
        assert watcher.fetches == fetches
    finally:
        await watcher.stop()
        await watcher.client.aclose()


async def test_polling_catches_changes_without_an_invalidation(
    control_api: FakeControlApi, redis_client: redis.Redis
) -> None:
    first = config(("101",))
    control_api.current = first
    holder = ConfigHolder(first)
    watcher = ConfigWatcher(client_for(control_api), holder, redis_client, poll_interval=0.2)
    watcher.start()
    try:
        await eventually(lambda: control_api.answered.count(304) >= 3)
        assert holder.current is first  # unchanged: 304s, no swap

        second = config(("101", "201"))
        control_api.current = second
        await eventually(lambda: holder.current.version == second.version)
    finally:
        await watcher.stop()
        await watcher.client.aclose()


async def test_a_failed_refresh_is_retried_and_the_old_config_stays(
    control_api: FakeControlApi, redis_client: redis.Redis
) -> None:
    first = config(("101",))
    control_api.current = first
    holder = ConfigHolder(first)
    watcher = ConfigWatcher(
        client_for(control_api), holder, redis_client, poll_interval=60, retry_delay=0.05
    )
    watcher.start()
    try:
        await asyncio.wait_for(watcher.subscribed.wait(), 5)
        control_api.status = 503
        await redis_client.publish(config_channel("acme"), "acme")
        await eventually(lambda: control_api.answered.count(503) >= 2)
        assert holder.current is first  # still serving on what it had
        second = config(("101", "301"))
        control_api.current = second
        control_api.status = 200
        await eventually(lambda: holder.current.version == second.version)
    finally:
        await watcher.stop()
        await watcher.client.aclose()


def test_an_old_format_config_file_still_loads(tmp_path: Path) -> None:
    """A file from before devices existed: the user entries carry the HA1s."""
    realm = "acme.vpbx.local"
    old = {
        "tenant": "acme",
        "display_name": "Acme",
        "sip_domain": realm,
        "city": "msk",
        "suspended": False,
        "recording_policy": "off",
        "concurrent_calls": 0,
        "users": [
            {
                "extension": "101",
                "name": "Ivan",
                "city": "msk",
                "ha1_md5": ha1("101", realm, "secret-101", DigestAlgorithm.MD5),
                "ha1_sha256": ha1("101", realm, "secret-101", DigestAlgorithm.SHA256),
                "email": None,
            }
        ],
        "groups": [
            {"name": "sales", "strategy": "ring-all", "members": ["101"], "ring_timeout_s": 30}
        ],
        "numbers": [
            {
                "number": "+74950000001",
                "city": "msk",
                "label": None,
                "entry": "sales",
                "channels": 0,
            }
        ],
        "version": "sha256:old",
    }
    path = tmp_path / "node-config.json"
    path.write_text(json.dumps(old))

    loaded = read_config_file(path)

    credentials = loaded.credentials("101")
    assert credentials is not None
    assert credentials.ha1_md5 == ha1("101", realm, "secret-101", DigestAlgorithm.MD5)
    assert loaded.extension_for("101") == "101"
    assert loaded.extension_for("102") is None
    assert loaded.devices == []
    assert loaded.version == "sha256:old"
    # Its numbers named their entry as text; the node still knows where they go.
    number = loaded.number("+74950000001")
    assert number is not None
    assert number.target == GroupTarget(name="sales")

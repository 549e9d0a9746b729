"""`vpbx up` as the tests see it: the real platform in a subprocess on free loopback ports."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.services.ports import free_port, free_port_block, free_port_pair

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo.yaml"


def sip_options(host: str, port: int, timeout: float = 0.5, uri: str | None = None) -> int | None:
    """Send one OPTIONS over UDP to host:port; the status code of the answer, or None.

    ``uri`` is the Request-URI (and To), by default ``sip:host:port``: through the
    edge, ``sip:<number>@host`` or ``sip:<tenant domain>`` is routed like a call."""
    target = uri or f"sip:{host}:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local_port = sock.getsockname()[1]
        sock.settimeout(timeout)
        branch = "z9hG4bK" + secrets.token_hex(6)
        message = (
            f"OPTIONS {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local_port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <{target}>\r\nCall-ID: {secrets.token_hex(8)}@probe\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(message, (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except OSError:
            return None
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@dataclass
class RunningPlatform:
    host: str
    sip_port: int
    node_ports: list[int]
    var_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    control_port: int = 8000
    crm_port: int = 8001
    extra: dict[str, Any] = field(default_factory=dict)
    # calls() shows the calls started from this moment (epoch ms) on: on a platform several
    # tests share, each test sees the CDRs of its own calls (see for_one_test()).
    calls_since_ms: int = 0
    # The edge's SIP over WebSocket port (browsers); 0 when started without it.
    sip_ws_port: int = 0

    @property
    def sip_ws_url(self) -> str:
        """ws://127.0.0.1:<port>/: where a browser (tests/services/sipws.py) connects."""
        return f"ws://{self.host}:{self.sip_ws_port}/"

    def for_one_test(self) -> RunningPlatform:
        """This platform as one of the tests sharing it sees it: calls() from now on."""
        return dataclasses.replace(self, calls_since_ms=int(time.time() * 1000))

    @property
    def control_url(self) -> str:
        """The control API of this platform (http://127.0.0.1:<port>)."""
        return f"http://{self.host}:{self.control_port}"

    @property
    def crm_url(self) -> str:
        """The CRM of this platform (API under /v1, the workspace at /)."""
        return f"http://{self.host}:{self.crm_port}"

    def crm(self, headers: dict[str, str] | None = None, timeout: float = 10) -> httpx.Client:
        """An HTTP client for the CRM (close it, or use it in a `with`)."""
        return httpx.Client(base_url=self.crm_url, headers=headers or {}, timeout=timeout)

    @property
    def service_token(self) -> str:
        """The media nodes' token for /internal/v1/node-config."""
        return self.env["VPBX_SERVICE_TOKEN"]

    def api(self, headers: dict[str, str] | None = None, timeout: float = 10) -> httpx.Client:
        """An HTTP client for the control API (close it, or use it in a `with`)."""
        return httpx.Client(base_url=self.control_url, headers=headers or {}, timeout=timeout)

    def login(self, email: str, password: str) -> dict[str, str]:
        """Authorization headers of a user logged in through POST /v1/auth/login."""
        with self.api() as client:
            response = client.post("/v1/auth/login", json={"email": email, "password": password})
        if response.status_code != 200:
            raise AssertionError(f"login of {email} failed: {response.status_code} {response.text}")
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vpbx_cli.main", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def calls(
        self, last: int = 1, *, wait_for: int | None = None, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """`vpbx calls --last N --json` (newest first) of the calls started since
        `calls_since_ms`, retried until `wait_for` records exist."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.cli(
                "calls", "--last", str(last), "--json", "--var-dir", str(self.var_dir)
            )
            if result.returncode != 0:
                raise AssertionError(f"vpbx calls failed: {result.stderr}")
            records: list[dict[str, Any]] = [
                record
                for record in json.loads(result.stdout)
                if int(record["start_ms"]) >= self.calls_since_ms
            ]
            if wait_for is None or len(records) >= wait_for or time.monotonic() > deadline:
                return records
            time.sleep(0.5)

    def pid_of(self, name: str) -> int:
        """Process id of the latest start of a child (a node name or "edge")."""
        pids = [
            int(line.rsplit("pid ", 1)[1].rstrip(")"))
            for line in self.log().splitlines()
            if line.strip().startswith(f"started {name} (pid ")
        ]
        if not pids:
            raise AssertionError(f"{name} was never started:\n{self.log()[-2000:]}")
        return pids[-1]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_idle(self, timeout: float = 10) -> None:
        """Until no device is registered and no call is counted as in progress: how a test
        on a shared platform finds it. The tests before stopped their phones (which
        unregister) and ended their calls, but the nodes may take a moment to hear of it;
        what is still there after ``timeout`` (left by a test that failed half-way) is
        removed, with a warning, so that it cannot fail the tests after it too."""
        client = redis.Redis.from_url(self.env["VPBX_REDIS_URL"])
        try:
            deadline = time.monotonic() + timeout
            while found := leftovers(client):
                if time.monotonic() > deadline:
                    warnings.warn(
                        f"removed what an earlier test left on the platform: {found}",
                        stacklevel=2,
                    )
                    client.delete(*found)
                    return
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def leftovers(client: redis.Redis) -> dict[str, list[str]]:
    """What the nodes keep in Redis of devices registered and calls in progress (keys of
    vpbx_media.node.bindings, vpbx_common.agents and vpbx_media.node.calllimit), by key:
    the contacts bound, the calls of agents talking, the calls taking a line of the plan."""
    now = time.time()
    found: dict[str, list[str]] = {}
    for key in client.scan_iter("vpbx:reg:*"):
        contacts = [
            binding["contact"]
            for binding in map(json.loads, client.hvals(key))
            if float(binding["expires_at"]) > now
        ]
        if contacts:
            found[key.decode()] = contacts
    for pattern in ("vpbx:agents:*:talking", "vpbx:calls:active:*"):
        for key in client.scan_iter(pattern):
            calls = [member.decode() for member in client.zrangebyscore(key, now, "+inf")]
            if calls:
                found[key.decode()] = calls
    return found


def start_platform(
    tmp: Path,
    redis_url: str,
    *,
    clickhouse_url: str | None = None,
    file: Path = DEMO,
    sip_t1: float = 0.5,
    rtp_ports_per_node: int | None = None,
    extra_env: dict[str, str] | None = None,
    crm: bool = False,
) -> RunningPlatform:
    host = "127.0.0.1"
    sip_port = free_port_pair()
    sip_ws_port = free_port()
    node_base = free_port_block(8)
    # RTP is UDP only and bound per call; a busy port there is skipped by the node, but
    # a test counting on a tiny range needs all of it (up to four nodes) free.
    # An even base: RTP takes the even port of each pair, so an odd start wastes one.
    rtp_base = free_port_block(4 * (rtp_ports_per_node or 0) + 1, 40000, 50000)
    rtp_base += rtp_base % 2
    control_port = free_port()
    crm_port = free_port()
    var_dir = tmp / "var"
    env = dict(os.environ)
    env["VPBX_REDIS_URL"] = redis_url
    env["VPBX_SERVICE_TOKEN"] = "test-service-" + secrets.token_hex(16)
    env["VPBX_LOG_LEVEL"] = "DEBUG"
    env.pop("VPBX_CLICKHOUSE_URL", None)
    if clickhouse_url:
        env["VPBX_CLICKHOUSE_URL"] = clickhouse_url
    env.pop("VPBX_STORAGE_URL", None)
    env.update(extra_env or {})
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "platform.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vpbx_cli.main",
            "up",
            "-f",
            str(file),
            "--host",
            host,
            "--sip-port",
            str(sip_port),
            "--sip-ws-port",
            str(sip_ws_port),
            "--node-port-base",
            str(node_base),
            "--rtp-port-base",
            str(rtp_base),
            "--var-dir",
            str(var_dir),
            "--sip-t1",
            str(sip_t1),
            "--control-port",
            str(control_port),
            "--crm-port",
            str(crm_port),
            # Tests of the PBX alone save the CRM's start.
            "--crm" if crm else "--no-crm",
            *(
                ["--rtp-ports-per-node", str(rtp_ports_per_node)]
                if rtp_ports_per_node is not None
                else []
            ),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    platform = RunningPlatform(
        host,
        sip_port,
        [],
        var_dir,
        env,
        process,
        log_path,
        control_port=control_port,
        crm_port=crm_port,
        sip_ws_port=sip_ws_port,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vpbx up exited with {process.returncode}:\n{platform.log()}")
        text = platform.log()
        if "vpbx is up" in text:
            platform.node_ports = [
                int(line.rsplit(":", 1)[1])
                for line in text.splitlines()
                if line.strip().startswith("node ")
            ]
            targets = [sip_port, *platform.node_ports]
            if all(sip_options(host, port) is not None for port in targets):
                return platform
        time.sleep(0.2)
    platform.stop()
    raise RuntimeError(f"vpbx up did not become ready:\n{platform.log()}")


@pytest.fixture(scope="module")
def shared_platform(
    tmp_path_factory: pytest.TempPathFactory, module_redis: str
) -> Iterator[RunningPlatform]:
    """One `vpbx up` of the demo for the tests of a module that can share it, on a Redis of
    its own (platform_factory empties the session's for each test that starts a platform).
    The module's tests see it through a fixture that sets up what each test relies on."""
    platform = start_platform(tmp_path_factory.mktemp("shared-platform"), module_redis)
    try:
        yield platform
    finally:
        platform.stop()


@pytest.fixture
def platform_factory(tmp_path: Path, flushed_redis: str) -> Iterator[Any]:
    """Start `vpbx up` (chdb or a ClickHouse server); stopped at the end of the test."""
    started: list[RunningPlatform] = []

    def factory(clickhouse_url: str | None = None, **kwargs: Any) -> RunningPlatform:
        platform = start_platform(
            tmp_path / f"p{len(started)}", flushed_redis, clickhouse_url=clickhouse_url, **kwargs
        )
        started.append(platform)
        return platform

    yield factory
    for platform in started:
        platform.stop()


@pytest.fixture(scope="session")
def crm_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """One `vpbx up` with its CRM for the CRM's end-to-end and browser modules, on a Redis
    of its own. Their tests make the people, contacts and routes they use under names of
    their own and set each route they rely on, so they can share it: one start instead of
    one per module."""
    from tests.services.redis import running_redis

    workdir = tmp_path_factory.mktemp("crm-platform")
    with running_redis(workdir / "redis") as url:
        platform = start_platform(workdir / "pbx", url, crm=True)
        try:
            yield platform
        finally:
            platform.stop()

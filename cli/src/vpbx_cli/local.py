"""Local mode (`vpbx up`): the whole platform on one machine from a platform file.

The control API starts first (SQLite in the var directory, seeded from the
platform file once), then the media nodes, which fetch their config from it and
reload it live, and the SIP edge.

Which node processes run is decided by the operator's pure desired-state
functions, exactly as in a cluster: one per tenant and city of the platform
file. `vpbx up` also plays the operator for numbers: the control API's local
number store (a manifest file) announces every change on Redis, and the edge
routing table is rewritten from the platform file's tenants and the store's
numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.asyncio as aioredis

from vpbx_common.cdr.store import CdrStore, open_cdr_store
from vpbx_common.manifests import (
    ManifestError,
    Number,
    PlatformFile,
    load_platform_file,
    parse_platform_yaml,
    validate_platform,
)
from vpbx_common.routing import PLATFORM_CHANGED_CHANNEL, RoutingTable
from vpbx_common.settings import CommonSettings
from vpbx_operator.desired import NodePlan, desired_nodes, desired_routes

logger = logging.getLogger(__name__)

# A call through a node takes 4 ports (2 legs x RTP+RTCP): 4000 ports carry 1000
# concurrent calls per node (VPBX_RTP_PORT_MIN/MAX; see docs/architecture.md).
RTP_PORTS_PER_NODE = 4000
CONTROL_API = "control-api"


class LaunchError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalLayout:
    host: str = "127.0.0.1"
    sip_port: int = 5060
    node_port_base: int = 5070
    rtp_port_base: int = 20000
    rtp_ports_per_node: int = RTP_PORTS_PER_NODE
    redis_port: int = 6390
    var_dir: Path = Path("var")
    sip_t1: float = 0.5
    control_port: int = 8000

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    @property
    def numbers_file(self) -> Path:
        """The control API's local number store."""
        return self.var_dir.resolve() / "numbers.yaml"

    def node_port(self, index: int) -> int:
        return self.node_port_base + index

    def rtp_range(self, index: int) -> tuple[int, int]:
        """The RTP ports of the node at `index`: rtp_ports_per_node from the base on."""
        if self.rtp_ports_per_node < 2:
            raise LaunchError("a node needs at least 2 RTP ports (one RTP/RTCP pair)")
        start = self.rtp_port_base + index * self.rtp_ports_per_node
        end = start + self.rtp_ports_per_node - 1
        if end > 65_535:
            raise LaunchError(
                f"RTP ports {start}-{end} of node {index + 1} go past 65535: lower "
                "--rtp-port-base or --rtp-ports-per-node"
            )
        return start, end


@dataclass
class Supervised:
    """A child process and how to start it again, as Kubernetes restarts a crashed pod."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env)
        print(f"  started {self.name} (pid {self.process.pid})", flush=True)

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def crash_looping(self, now: float, window: float = 60.0, limit: int = 5) -> bool:
        self.restarts = [t for t in self.restarts if now - t < window]
        return len(self.restarts) >= limit


@dataclass
class LocalPlatform:
    platform: PlatformFile
    layout: LocalLayout
    path: Path = Path("examples/demo.yaml")
    plans: list[NodePlan] = field(default_factory=list)
    children: dict[str, Supervised] = field(default_factory=dict)
    redis_url: str = ""
    # What the nodes show the control API. Generated per run unless VPBX_SERVICE_TOKEN
    # is set: the local default would be the platform admin token's default too.
    service_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def node_address(self, tenant: str, city: str) -> str:
        for index, plan in enumerate(self.plans):
            if plan.tenant == tenant and plan.city == city:
                return f"{self.layout.host}:{self.layout.node_port(index)}"
        raise LaunchError(f"no node planned for tenant {tenant} in {city}")


def plan_platform(path: Path, layout: LocalLayout) -> LocalPlatform:
    platform = load_platform_file(path)
    problems = validate_platform(platform)
    if problems:
        raise LaunchError("the platform file has problems:\n  " + "\n  ".join(problems))
    local = LocalPlatform(platform=platform, layout=layout, path=path.resolve())
    local.plans = desired_nodes(platform.tenants, platform.numbers, platform.configs)
    return local


def _start_private_redis(layout: LocalLayout) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LaunchError("redis-server is not installed (run `make up`, or set VPBX_REDIS_URL)")
    data = layout.var_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(layout.redis_port),
            "--bind",
            layout.host,
            "--dir",
            str(data.resolve()),
            "--save",
            "60 1",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    return process, f"redis://{layout.host}:{layout.redis_port}/0"


async def _wait_redis(url: str, timeout: float = 15.0) -> None:
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                await client.ping()
                return
            except (aioredis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise LaunchError(f"Redis at {url} does not answer") from None
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()


def stored_numbers(local: LocalPlatform) -> list[Number]:
    """The numbers in the control API's local store (the file's, seeded, plus the API's)."""
    path = local.layout.numbers_file
    if not path.exists():
        return []
    return parse_platform_yaml(path.read_text(encoding="utf-8")).numbers


async def publish_routes(local: LocalPlatform, numbers: list[Number] | None = None) -> int:
    """Write the edge routing table; the number of numbers routed."""
    if numbers is None:
        numbers = stored_numbers(local)
    snapshot = desired_routes(
        local.platform.tenants, numbers, local.node_address, local.platform.configs
    )
    for rejected in snapshot.rejected:
        logger.warning(
            "Number %s not routed: %s (%s)", rejected.name, rejected.reason, rejected.message
        )
    client = aioredis.Redis.from_url(local.redis_url)
    try:
        await RoutingTable(client).replace(snapshot)
    finally:
        await client.aclose()
    return len(snapshot.numbers)


class RouteSync:
    """Rewrites the edge routing table when the local number store changes.

    The store announces each change on Redis; the file's modification time is
    checked as well, so a change whose announcement was lost still arrives.
    """

    def __init__(self, local: LocalPlatform) -> None:
        self.local = local
        self.client = redis.Redis.from_url(local.redis_url)
        self.pubsub: redis.client.PubSub | None = None
        self.mtime: float | None = None
        self.routed = 0

    def _subscribe(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(PLATFORM_CHANGED_CHANNEL)
        self.pubsub = pubsub

    def _file_changed(self) -> bool:
        try:
            mtime = self.local.layout.numbers_file.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        changed = mtime != self.mtime
        self.mtime = mtime
        return changed

    def sync(self) -> None:
        """Publish the routes now (keeps the old table if the store is unreadable)."""
        try:
            numbers = stored_numbers(self.local)
        except ManifestError as exc:
            logger.error("number store unreadable, routes kept: %s", exc)
            return
        self.routed = asyncio.run(publish_routes(self.local, numbers))
        print(f"  edge routes: {self.routed} number(s)", flush=True)

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a change; publish the routes when one came."""
        changed = False
        try:
            if self.pubsub is None:
                self._subscribe()
                changed = True  # announcements missed while unsubscribed
            assert self.pubsub is not None
            message = self.pubsub.get_message(timeout=timeout)
            while message is not None:
                changed = True
                message = self.pubsub.get_message(timeout=0)
        except (redis.RedisError, OSError) as exc:
            logger.warning("platform change announcements unavailable: %s", exc)
            self.close_pubsub()
            time.sleep(timeout)
        if self._file_changed() or changed:
            try:
                self.sync()
            except (aioredis.RedisError, OSError) as exc:
                logger.warning("routes not written (will retry): %s", exc)
                self.mtime = None

    def close_pubsub(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self.pubsub.close()
            self.pubsub = None

    def close(self) -> None:
        self.close_pubsub()
        self.client.close()


def _child_env(local: LocalPlatform, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "VPBX_MODE": env.get("VPBX_MODE", "local"),
            "VPBX_REDIS_URL": local.redis_url,
            "VPBX_SIP_T1": str(local.layout.sip_t1),
            "VPBX_SERVICE_TOKEN": env.get("VPBX_SERVICE_TOKEN") or local.service_token,
            # Shorter than the launcher's stop timeout, so a drain ends before a kill.
            "VPBX_DRAIN_TIMEOUT": env.get("VPBX_DRAIN_TIMEOUT", "10"),
            # Recordings and voice messages: the nodes write, the control API reads.
            "VPBX_STORAGE_URL": env.get("VPBX_STORAGE_URL")
            or (local.layout.var_dir.resolve() / "storage").as_uri(),
        }
    )
    env.update(extra)
    return env


def start_control_api(local: LocalPlatform) -> Supervised:
    layout = local.layout
    var = layout.var_dir.resolve()
    env = _child_env(
        local,
        {
            "VPBX_HTTP_HOST": layout.host,
            "VPBX_HTTP_PORT": str(layout.control_port),
            "VPBX_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'control.db'}",
            "VPBX_NUMBER_STORE": "local",
            "VPBX_LOCAL_NUMBERS_FILE": str(layout.numbers_file),
            "VPBX_SEED_FILE": str(local.path),
            # /v1/calls reads the CDRs the nodes ship (VPBX_CLICKHOUSE_URL, if set, wins).
            "VPBX_CHDB_PATH": str(var / "chdb"),
            "VPBX_SPEECH_CACHE_DIR": str(var / "speech"),
        },
    )
    child = Supervised(CONTROL_API, [sys.executable, "-m", "vpbx_control.main", "serve"], env)
    local.children[CONTROL_API] = child
    child.start()
    return child


def wait_until_ready(
    child: Supervised, url: str, stopped: Callable[[], bool], timeout: float = 90.0
) -> bool:
    """Poll ``url`` (/readyz) until it answers 200; False if a stop was requested."""
    deadline = time.monotonic() + timeout
    last_answer = "no answer yet"
    while not stopped():
        if child.exited():
            code = child.process.returncode if child.process is not None else None
            raise LaunchError(f"{child.name} exited with {code} while starting (see above)")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http URL
                if response.status == 200:
                    return True
                last_answer = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            # Expected while it starts (connection refused, 503); kept for the timeout message.
            last_answer = str(exc)
        if time.monotonic() > deadline:
            raise LaunchError(
                f"{child.name} did not become ready at {url} in {timeout:.0f}s: {last_answer}"
            )
        time.sleep(0.1)
    return False


def start_processes(local: LocalPlatform) -> None:
    """The media nodes (config from the control API) and the SIP edge."""
    layout = local.layout
    var = layout.var_dir.resolve()
    for index, plan in enumerate(local.plans):
        rtp_min, rtp_max = layout.rtp_range(index)
        env = _child_env(
            local,
            {
                "VPBX_NODE_NAME": plan.name,
                "VPBX_TENANT": plan.tenant,
                "VPBX_CITY": plan.city,
                "VPBX_CONFIG_URL": layout.control_url,
                "VPBX_SIP_HOST": layout.host,
                "VPBX_SIP_PORT": str(layout.node_port(index)),
                "VPBX_MEDIA_HOST": layout.host,
                "VPBX_RTP_PORT_MIN": str(rtp_min),
                "VPBX_RTP_PORT_MAX": str(rtp_max),
                "VPBX_SPOOL_DIR": str(var / "spool" / plan.name),
                "VPBX_CHDB_PATH": str(var / "chdb"),
            },
        )
        local.children[plan.name] = Supervised(
            plan.name, [sys.executable, "-m", "vpbx_media.node"], env
        )
    edge_env = _child_env(
        local, {"VPBX_SIP_HOST": layout.host, "VPBX_SIP_PORT": str(layout.sip_port)}
    )
    local.children["edge"] = Supervised("edge", [sys.executable, "-m", "vpbx_media.edge"], edge_env)
    for name, child in local.children.items():
        if name != CONTROL_API:
            child.start()


def supervise(local: LocalPlatform) -> str | None:
    """Restart children that died; the name of one that keeps dying, else None."""
    now = time.monotonic()
    for child in local.children.values():
        if not child.exited():
            continue
        code = child.process.returncode if child.process is not None else None
        if child.crash_looping(now):
            return child.name
        print(f"{child.name} exited with {code}; restarting it", file=sys.stderr, flush=True)
        child.restarts.append(now)
        child.start()
    return None


def stop_processes(local: LocalPlatform, timeout: float = 20.0) -> None:
    """SIGTERM every child (nodes drain their calls) and wait for them, the control API last."""
    ordered = sorted(local.children.items(), key=lambda item: item[0] == CONTROL_API)
    running = [child.process for _, child in ordered if child.process is not None]
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("pid %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()


def open_local_cdr_store(var_dir: Path) -> CdrStore:
    """The CDR store the platform uses: VPBX_CLICKHOUSE_URL, else chdb in `var_dir`."""
    return open_cdr_store(CommonSettings().clickhouse_url, var_dir.resolve() / "chdb")


def migrate_cdr_store(var_dir: Path) -> None:
    store = open_local_cdr_store(var_dir)
    try:
        store.migrate()
    finally:
        store.close()


def run_local(path: Path, layout: LocalLayout) -> int:
    """Run in the foreground until SIGINT/SIGTERM or until a process dies."""
    local = plan_platform(path, layout)
    layout.var_dir.mkdir(parents=True, exist_ok=True)
    redis_process: subprocess.Popen[bytes] | None = None
    external = CommonSettings().redis_url
    if external:
        local.redis_url = external
    else:
        redis_process, local.redis_url = _start_private_redis(layout)
    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    routes: RouteSync | None = None
    try:
        asyncio.run(_wait_redis(local.redis_url))
        migrate_cdr_store(layout.var_dir)
        control = start_control_api(local)
        if not wait_until_ready(control, f"{layout.control_url}/readyz", lambda: stop_requested):
            return 0
        routes = RouteSync(local)
        routes.wait(0)  # subscribe, then write the routes of the (seeded) store
        start_processes(local)
        print(
            f"vpbx is up: SIP edge {layout.host}:{layout.sip_port} (UDP+TCP), "
            f"{len(local.plans)} media node(s), {routes.routed} number(s) routed, "
            f"Redis {local.redis_url}",
            flush=True,
        )
        print(f"  control API: {layout.control_url} (docs at /docs)", flush=True)
        for index, plan in enumerate(local.plans):
            print(f"  node {plan.name}: {layout.host}:{layout.node_port(index)}", flush=True)
        while not stop_requested:
            looping = supervise(local)
            if looping is not None:
                print(f"{looping} keeps exiting; stopping", file=sys.stderr, flush=True)
                return 1
            routes.wait(0.2)
        return 0
    finally:
        if routes is not None:
            routes.close()
        stop_processes(local)
        if redis_process is not None:
            redis_process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                redis_process.wait(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("vpbx stopped", flush=True)

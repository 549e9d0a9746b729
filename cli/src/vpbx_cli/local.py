"""Local mode (`vpbx up`): the whole platform on one machine from a platform file.

Which node processes run is decided by the operator's pure desired-state
functions, exactly as in a cluster; here each NodePlan becomes a process and
its ConfigMap content becomes a JSON file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as redis

from vpbx_common.cdr.store import CdrStore, open_cdr_store
from vpbx_common.manifests import PlatformFile, load_platform_file, validate_platform
from vpbx_common.routing import RoutingTable
from vpbx_common.settings import CommonSettings
from vpbx_operator.desired import NodePlan, desired_nodes, desired_routes

logger = logging.getLogger(__name__)

RTP_PORTS_PER_NODE = 1000


class LaunchError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalLayout:
    host: str = "127.0.0.1"
    sip_port: int = 5060
    node_port_base: int = 5070
    rtp_port_base: int = 20000
    redis_port: int = 6390
    var_dir: Path = Path("var")
    sip_t1: float = 0.5

    def node_port(self, index: int) -> int:
        return self.node_port_base + index

    def rtp_range(self, index: int) -> tuple[int, int]:
        start = self.rtp_port_base + index * RTP_PORTS_PER_NODE
        return start, start + RTP_PORTS_PER_NODE - 1


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
    plans: list[NodePlan] = field(default_factory=list)
    children: dict[str, Supervised] = field(default_factory=dict)
    redis_url: str = ""

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
    local = LocalPlatform(platform=platform, layout=layout)
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
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                await client.ping()
                return
            except (redis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise LaunchError(f"Redis at {url} does not answer") from None
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def publish_routes(local: LocalPlatform) -> int:
    snapshot = desired_routes(
        local.platform.tenants, local.platform.numbers, local.node_address, local.platform.configs
    )
    for rejected in snapshot.rejected:
        logger.warning(
            "Number %s not routed: %s (%s)", rejected.name, rejected.reason, rejected.message
        )
    client = redis.Redis.from_url(local.redis_url)
    try:
        await RoutingTable(client).replace(snapshot)
    finally:
        await client.aclose()
    return len(snapshot.numbers)


def _child_env(local: LocalPlatform, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "VPBX_MODE": env.get("VPBX_MODE", "local"),
            "VPBX_REDIS_URL": local.redis_url,
            "VPBX_SIP_T1": str(local.layout.sip_t1),
            # Shorter than the launcher's stop timeout, so a drain ends before a kill.
            "VPBX_DRAIN_TIMEOUT": env.get("VPBX_DRAIN_TIMEOUT", "10"),
        }
    )
    env.update(extra)
    return env


def start_processes(local: LocalPlatform) -> None:
    layout = local.layout
    var = layout.var_dir.resolve()
    nodes_dir = var / "nodes"
    nodes_dir.mkdir(parents=True, exist_ok=True)
    for index, plan in enumerate(local.plans):
        config_path = nodes_dir / f"{plan.name}.json"
        config_path.write_text(plan.config.to_json())
        rtp_min, rtp_max = layout.rtp_range(index)
        env = _child_env(
            local,
            {
                "VPBX_NODE_NAME": plan.name,
                "VPBX_TENANT": plan.tenant,
                "VPBX_CITY": plan.city,
                "VPBX_NODE_CONFIG": str(config_path),
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
    for child in local.children.values():
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
    running = [c.process for c in local.children.values() if c.process is not None]
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
    try:
        asyncio.run(_wait_redis(local.redis_url))
        migrate_cdr_store(layout.var_dir)
        routed = asyncio.run(publish_routes(local))
        start_processes(local)
        print(
            f"vpbx is up: SIP edge {layout.host}:{layout.sip_port} (UDP+TCP), "
            f"{len(local.plans)} media node(s), {routed} number(s) routed, Redis {local.redis_url}",
            flush=True,
        )
        for index, plan in enumerate(local.plans):
            print(f"  node {plan.name}: {layout.host}:{layout.node_port(index)}", flush=True)
        while not stop_requested:
            looping = supervise(local)
            if looping is not None:
                print(f"{looping} keeps exiting; stopping", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        stop_processes(local)
        if redis_process is not None:
            redis_process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                redis_process.wait(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("vpbx stopped", flush=True)

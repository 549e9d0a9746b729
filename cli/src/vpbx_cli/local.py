"""Local mode (`vpbx up`): the whole platform on one machine from a platform file.

The control API starts first (SQLite in the var directory, seeded from the
platform file once), then the media nodes, which fetch their config from it and
reload it live, and the SIP edge.

`vpbx up` plays the operator: the control API keeps the Tenant and Number
resources in its local store (a manifest file, seeded from the platform file,
then written by the platform and numbers APIs) and announces every change on
Redis. On each change the launcher asks the operator's pure desired-state
functions which nodes must run (one per tenant and city) and what the edge
routing table holds, starts and stops node processes to match, and rewrites the
table: a tenant created, suspended, given a new city or deleted through the API
gets its nodes and routes as it would in a cluster.

The routing table also says where the platform's carriers call from (the networks
of the platform file's Trunks, vpbx_common.carriers): the launcher writes them with
the routes, reading the file's Trunks again and resolving their host names on every
sync and at least every ``CARRIERS_REFRESH_S`` seconds, so a changed DNS answer
reaches the edge within that time.
"""

from __future__ import annotations

import asyncio
import json
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
from typing import Protocol

import redis
import redis.asyncio as aioredis

from vpbx_common.carriers import platform_networks
from vpbx_common.cdr.store import CdrStore, open_cdr_store
from vpbx_common.manifests import (
    ManifestError,
    Number,
    PlatformFile,
    Tenant,
    Trunk,
    load_platform_file,
    parse_platform_yaml,
    validate_platform,
)
from vpbx_common.routing import (
    PLATFORM_CHANGED_CHANNEL,
    RoutingSnapshot,
    RoutingTable,
    RoutingTableError,
)
from vpbx_common.settings import CommonSettings
from vpbx_operator.desired import (
    NodePlan,
    desired_nodes,
    desired_routes,
    node_name,
    placed_routes,
)

from .layout import (
    LaunchError,
    LocalLayout,
    NodeChanges,
    PortFree,
    plan_node_changes,
    sip_port_free,
)

logger = logging.getLogger(__name__)

CONTROL_API = "control-api"
CRM = "crm"
EDGE = "edge"
# How long a node no longer planned may drain before it is killed (its drain
# timeout, VPBX_DRAIN_TIMEOUT, defaults to 10 s).
NODE_STOP_TIMEOUT = 20.0
# The routes (with the platform carriers' networks, host names resolved again) are
# rewritten at least this often even when nothing changed.
CARRIERS_REFRESH_S = 60.0


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

    def terminate(self) -> None:
        """SIGTERM: a node drains its calls, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def crash_looping(self, now: float, window: float = 60.0, limit: int = 5) -> bool:
        self.restarts = [t for t in self.restarts if now - t < window]
        return len(self.restarts) >= limit


@dataclass
class Retiring:
    """A node no longer planned: stopping, its slot held until it has exited."""

    child: Supervised
    slot: int
    deadline: float


@dataclass
class LocalPlatform:
    platform: PlatformFile
    layout: LocalLayout
    path: Path = Path("examples/demo.yaml")
    # The nodes the store asks for now, and the slot of each running node.
    plans: list[NodePlan] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)
    children: dict[str, Supervised] = field(default_factory=dict)
    retiring: list[Retiring] = field(default_factory=list)
    redis_url: str = ""
    # What the nodes show the control API. Generated per run unless VPBX_SERVICE_TOKEN
    # is set: the local default would be the platform admin token's default too.
    service_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # The platform file's Trunks as last read (platform_trunks); None: not read again yet.
    trunks: list[Trunk] | None = None

    def node_address(self, tenant: str, city: str) -> str:
        """host:port of the running node of a tenant's city; "" when none runs."""
        slot = self.slots.get(node_name(tenant, city))
        return "" if slot is None else self.layout.node_address(slot)


def plan_platform(path: Path, layout: LocalLayout) -> LocalPlatform:
    """Read and check the platform file (the control API seeds its store from it)."""
    platform = load_platform_file(path)
    problems = validate_platform(platform)
    if problems:
        raise LaunchError("the platform file has problems:\n  " + "\n  ".join(problems))
    return LocalPlatform(platform=platform, layout=layout, path=path.resolve())


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


def stored_platform(local: LocalPlatform) -> PlatformFile:
    """The Tenants and Numbers in the control API's local store (seeded from the
    platform file, then written by the API)."""
    path = local.layout.numbers_file
    if not path.exists():
        return PlatformFile()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from exc
    return parse_platform_yaml(text)


def platform_trunks(local: LocalPlatform) -> list[Trunk]:
    """The platform file's Trunks as the file holds them now (the control API reads them
    again too); the ones read last when the file cannot be read."""
    try:
        trunks = load_platform_file(local.path).trunks
    except ManifestError as exc:
        logger.error("platform trunks not read again, the last ones kept: %s", exc)
        return local.trunks if local.trunks is not None else local.platform.trunks
    local.trunks = trunks
    return trunks


async def publish_routes(
    local: LocalPlatform, tenants: list[Tenant], numbers: list[Number]
) -> RoutingSnapshot:
    """Write the edge routing table of the tenants whose nodes run; what was written."""
    snapshot = desired_routes(
        tenants,
        numbers,
        local.node_address,
        local.platform.configs,
        carriers=await platform_networks(platform_trunks(local)),
    )
    for rejected in snapshot.rejected:
        logger.warning(
            "Number %s not routed: %s (%s)", rejected.name, rejected.reason, rejected.message
        )
    placed = placed_routes(snapshot, tenants, local.node_address)
    client = aioredis.Redis.from_url(local.redis_url)
    try:
        await RoutingTable(client).replace(placed)
    finally:
        await client.aclose()
    return placed


class NodeProcesses(Protocol):
    """The node processes as the sync drives them (a test stands in for real ones)."""

    def start(self, plan: NodePlan, slot: int) -> None: ...

    def stop(self, name: str, slot: int) -> None: ...

    def held_slots(self) -> set[int]:
        """The slots of nodes that were stopped but have not exited yet."""
        ...


class PlatformSync:
    """Makes the node processes and the edge routing table follow the local store.

    The store announces each change on Redis; the file's modification time is
    checked as well, so a change whose announcement was lost still arrives. A
    sync starts the nodes of new tenants and cities first, then writes the routes
    (only tenants all of whose nodes run are routed; suspended ones marked so),
    then stops the nodes no tenant needs any more, once the edge no longer sends
    them anything.
    """

    def __init__(
        self, local: LocalPlatform, nodes: NodeProcesses, port_free: PortFree | None = None
    ) -> None:
        self.local = local
        self.nodes = nodes
        self.port_free = port_free or sip_port_free(local.layout.host)
        self.client = redis.Redis.from_url(local.redis_url)
        self.pubsub: redis.client.PubSub | None = None
        self.mtime: float | None = None
        self.routed = RoutingSnapshot()
        self.synced_at: float | None = None
        self.refresh_s = CARRIERS_REFRESH_S

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

    def sync(self, *, quiet: bool = False) -> NodeChanges | None:
        """Apply the store now; None (nodes and routes kept) if it is unreadable.

        ``quiet``: a periodic pass (nothing announced): the summary is printed only if
        nodes started or stopped."""
        try:
            stored = stored_platform(self.local)
        except ManifestError as exc:
            logger.error("platform store unreadable, nodes and routes kept: %s", exc)
            return None
        local = self.local
        # Which nodes exist depends on the tenants alone. The nodes fetch their configs
        # from the control API, so the plans' configs are not used here; compiling the
        # API's numbers (entries naming users the manifests do not hold) would only warn.
        plans = desired_nodes(stored.tenants, [], [])
        changes = plan_node_changes(
            plans, local.slots, self.nodes.held_slots(), local.layout, self.port_free
        )
        for unplaced in changes.unplaced:
            print(f"  cannot start node {unplaced.plan.name}: {unplaced.reason}", flush=True)
        for start in changes.start:
            self.nodes.start(start.plan, start.slot)
            local.slots[start.plan.name] = start.slot
        local.plans = plans
        self.routed = asyncio.run(publish_routes(local, stored.tenants, stored.numbers))
        for name in changes.stop:
            self.nodes.stop(name, local.slots.pop(name))
        self.synced_at = time.monotonic()
        if quiet and not (changes.start or changes.stop):
            return changes
        print(
            f"  edge routes: {len(self.routed.numbers)} number(s), "
            f"{len(self.routed.domains)} domain(s); {len(local.slots)} media node(s)",
            flush=True,
        )
        return changes

    def wait(self, timeout: float) -> NodeChanges | None:
        """Wait up to ``timeout`` s for a change; sync when one came (what changed)."""
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
        changed = self._file_changed() or changed
        due = self.synced_at is not None and time.monotonic() - self.synced_at >= self.refresh_s
        if changed or due:
            try:
                return self.sync(quiet=not changed)
            except (redis.RedisError, RoutingTableError, OSError) as exc:
                logger.warning("platform not synced, nodes or routes (will retry): %s", exc)
                self.mtime = None
        return None

    def close_pubsub(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except (redis.RedisError, OSError) as exc:
                logger.debug("closing the announcement subscription: %s", exc)
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
            # The CRM's workspace logs people in here and plays recordings from here.
            "VPBX_CORS_ORIGINS": os.environ.get("VPBX_CORS_ORIGINS")
            or json.dumps(layout.crm_origins if layout.crm else []),
        },
    )
    child = Supervised(CONTROL_API, [sys.executable, "-m", "vpbx_control.main", "serve"], env)
    local.children[CONTROL_API] = child
    child.start()
    return child


def start_crm(local: LocalPlatform) -> Supervised:
    """The CRM: its own SQLite database; people log in through the control API."""
    layout = local.layout
    env = _child_env(
        local,
        {
            "VPBX_HTTP_HOST": layout.host,
            "VPBX_HTTP_PORT": str(layout.crm_port),
            "VPBX_DATABASE_URL": f"sqlite+aiosqlite:///{layout.var_dir.resolve() / 'crm.db'}",
            "VPBX_CONTROL_URL": layout.control_url,
            # Deal events go to the store the nodes' CDRs are in, for the channels and
            # managers reports (VPBX_CLICKHOUSE_URL, if set, wins).
            "VPBX_CHDB_PATH": str(layout.var_dir.resolve() / "chdb"),
            # The browser softphone registers at the edge's SIP over WebSocket (none with
            # --sip-ws-port 0: the workspace hides the softphone). A VPBX_SIP_WS_URL of the
            # caller's environment wins (a wss:// address behind a TLS proxy).
            "VPBX_SIP_WS_URL": os.environ.get("VPBX_SIP_WS_URL") or layout.sip_ws_url or "",
        },
    )
    child = Supervised(CRM, [sys.executable, "-m", "vpbx_crm.main", "serve"], env)
    local.children[CRM] = child
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


def node_child(local: LocalPlatform, plan: NodePlan, slot: int) -> Supervised:
    """A media node process in ``slot`` (its config comes from the control API)."""
    layout = local.layout
    var = layout.var_dir.resolve()
    rtp_min, rtp_max = layout.rtp_range(slot)
    env = _child_env(
        local,
        {
            "VPBX_NODE_NAME": plan.name,
            "VPBX_TENANT": plan.tenant,
            "VPBX_CITY": plan.city,
            "VPBX_CONFIG_URL": layout.control_url,
            "VPBX_SIP_HOST": layout.host,
            "VPBX_SIP_PORT": str(layout.node_port(slot)),
            "VPBX_MEDIA_HOST": layout.host,
            "VPBX_RTP_PORT_MIN": str(rtp_min),
            "VPBX_RTP_PORT_MAX": str(rtp_max),
            "VPBX_SPOOL_DIR": str(var / "spool" / plan.name),
            "VPBX_CHDB_PATH": str(var / "chdb"),
            # One WebRTC gateway worker per node unless asked for more: locally every
            # tenant and city is a node, and each worker is a process of ~70 MB.
            "VPBX_WEBRTC_WORKERS": os.environ.get("VPBX_WEBRTC_WORKERS", "1"),
            # The route plans' crm-lookup steps ask the CRM who is calling.
            **({"VPBX_CRM_URL": layout.crm_url} if layout.crm else {}),
        },
    )
    return Supervised(plan.name, [sys.executable, "-m", "vpbx_media.node"], env)


def reap_retired(local: LocalPlatform, now: float | None = None) -> None:
    """Forget the stopped nodes that have exited; kill those past their deadline."""
    now = time.monotonic() if now is None else now
    for retiring in list(local.retiring):
        child = retiring.child
        if not child.exited() and now > retiring.deadline and child.process is not None:
            logger.warning("node %s did not drain in time; killing it", child.name)
            child.process.kill()
            child.process.wait()
        if child.exited():
            local.retiring.remove(retiring)
            print(f"  stopped {child.name}", flush=True)


class SupervisedNodes:
    """Node processes as children of the launcher, restarted by ``supervise``."""

    def __init__(self, local: LocalPlatform, stop_timeout: float = NODE_STOP_TIMEOUT) -> None:
        self.local = local
        self.stop_timeout = stop_timeout

    def start(self, plan: NodePlan, slot: int) -> None:
        child = node_child(self.local, plan, slot)
        self.local.children[plan.name] = child
        child.start()
        print(f"  node {plan.name}: {self.local.layout.node_address(slot)}", flush=True)

    def stop(self, name: str, slot: int) -> None:
        child = self.local.children.pop(name, None)
        if child is None:
            return
        print(f"  stopping {name}: no tenant city needs it any more", flush=True)
        child.terminate()
        deadline = time.monotonic() + self.stop_timeout
        self.local.retiring.append(Retiring(child, slot, deadline))

    def held_slots(self) -> set[int]:
        reap_retired(self.local)
        return {retiring.slot for retiring in self.local.retiring}


def start_edge(local: LocalPlatform) -> Supervised:
    layout = local.layout
    env = _child_env(
        local,
        {
            "VPBX_SIP_HOST": layout.host,
            "VPBX_SIP_PORT": str(layout.sip_port),
            "VPBX_EDGE_WS_PORT": str(layout.sip_ws_port),
        },
    )
    child = Supervised(EDGE, [sys.executable, "-m", "vpbx_media.edge"], env)
    local.children[EDGE] = child
    child.start()
    return child


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
    children = [retiring.child for retiring in local.retiring] + [child for _, child in ordered]
    running = [child.process for child in children if child.process is not None]
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
    sync: PlatformSync | None = None
    try:
        asyncio.run(_wait_redis(local.redis_url))
        # Each child spends seconds importing: the control API, the CRM (it asks the control
        # API only when people call it), the edge (it needs only the routes in Redis,
        # published below) and the CDR migration overlap.
        control = start_control_api(local)
        crm = start_crm(local) if layout.crm else None
        start_edge(local)
        migrate_cdr_store(layout.var_dir)
        if not wait_until_ready(control, f"{layout.control_url}/readyz", lambda: stop_requested):
            return 0
        if crm is not None and not wait_until_ready(
            crm, f"{layout.crm_url}/readyz", lambda: stop_requested
        ):
            return 0
        sync = PlatformSync(local, SupervisedNodes(local))
        # Subscribe, then start the nodes and write the routes of the (seeded) store.
        sync.wait(0)
        print(
            f"vpbx is up: SIP edge {layout.host}:{layout.sip_port} (UDP+TCP), "
            f"{len(local.slots)} media node(s), {len(sync.routed.numbers)} number(s) routed, "
            f"Redis {local.redis_url}",
            flush=True,
        )
        if layout.sip_ws_url is not None:
            print(f"  SIP over WebSocket: {layout.sip_ws_url} (browsers)", flush=True)
        print(f"  control API: {layout.control_url} (docs at /docs)", flush=True)
        if crm is not None:
            print(f"  CRM: {layout.crm_url} (API docs at /docs)", flush=True)
        while not stop_requested:
            looping = supervise(local)
            if looping is not None:
                print(f"{looping} keeps exiting; stopping", file=sys.stderr, flush=True)
                return 1
            reap_retired(local)
            sync.wait(0.2)
        return 0
    finally:
        if sync is not None:
            sync.close()
        stop_processes(local)
        if redis_process is not None:
            redis_process.terminate()
            try:
                redis_process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.warning("the private Redis did not stop in 10 s; killing it")
                redis_process.kill()
                redis_process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("vpbx stopped", flush=True)

"""`make bench-api`: latency and throughput of the control API on PostgreSQL.

Starts a private PostgreSQL (migrated with the control API's Alembic revisions), a
private Redis and the app in uvicorn (one worker, uvloop, no access log) in its own
process on loopback; seeds one tenant (a tenant admin in the database, then users,
ring groups and schedules through the API); then drives typical requests with an
httpx.AsyncClient at rising concurrency (closed loop: each of N workers sends its
next request when the previous one answered). Every step is bounded in time and in
requests. Printed per step: requests/s, p50 and p99 latency, errors, and the CPU the
API process, PostgreSQL and this load driver used (100% = one core). Login (argon2id
verification) is measured separately. Everything stops by itself and is cleaned up;
the figures also go to var/bench-api/<UTC time>/results.json.

Scenarios (each skipped with a note when its route does not exist):
  list users       GET /v1/users?limit=50                       tenant admin
  read group       GET /v1/groups/{id} (20 groups, round robin)  tenant admin
  node config      GET /internal/v1/node-config/{tenant}/{city}  media node token
  node poll        the same with the current ETag in If-None-Match (304), as nodes poll
  schedule write   POST /v1/schedules, then PATCH it with If-Match (2 requests)
  presence         PATCH /v1/users/{id}/presence                 tenant admin
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TENANT = "bench"
CITY = "msk"
ADMIN_EMAIL = "admin@bench.vpbx.test"
ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway account
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def bench_app() -> Any:
    """The uvicorn factory run in the server process: settings from VPBX_* variables."""
    from vpbx_control.app import create_app
    from vpbx_control.settings import ControlSettings

    return create_app(ControlSettings(), migrate=False)


# --- machine and CPU accounting (Linux /proc) ----------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of a process and its descendants, the exited ones included.

    Live processes count their own time (utime, stime) plus that of the children they
    reaped (cutime, cstime): PostgreSQL backends come and go with pooled connections.
    """
    children = _children()
    total = 0.0
    pending = [root]
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of /proc/PID/stat (1-based).
        total += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the system under test -------------------------------------------------------------


@dataclass
class Server:
    base_url: str
    database_url: str
    process: subprocess.Popen[bytes]
    postgres_pid: int
    service_token: str


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_ready(
    process: subprocess.Popen[bytes], base_url: str, log: Path, what: str, timeout: float = 60
) -> None:
    """Until the server at ``base_url`` answers /readyz with 200 (raises if it exits)."""
    deadline = time.monotonic() + timeout
    last_answer = "no answer yet"
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} exited at start:\n{tail}")
        try:
            ready = httpx.get(f"{base_url}/readyz", timeout=2)
            if ready.status_code == 200:
                return
            last_answer = f"HTTP {ready.status_code}"
        except httpx.HTTPError as exc:
            # Expected while it starts (connection refused); kept for the timeout message.
            last_answer = repr(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready within {timeout:.0f} s: {last_answer}")
        time.sleep(0.2)


@contextmanager
def running_system(workdir: Path) -> Iterator[Server]:
    from tests.services.ports import free_port
    from tests.services.postgres import running_postgres
    from tests.services.redis import running_redis

    from vpbx_control.db.migrate import upgrade_sync

    # The server runs as the postgres account: its directory must not sit under a
    # directory private to root, hence a directory of its own in /tmp.
    postgres_root = Path(tempfile.mkdtemp(prefix="bench-api-postgres-"))
    with ExitStack() as stack:
        postgres = stack.enter_context(running_postgres(postgres_root))
        redis_url = stack.enter_context(running_redis(workdir / "redis"))
        database_url = postgres.create_database("vpbx_bench")
        upgrade_sync(database_url)
        port = free_port()
        service_token = secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "VPBX_MODE": "bench",
            "VPBX_DATABASE_URL": database_url,
            "VPBX_REDIS_URL": redis_url,
            "VPBX_PLATFORM_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "VPBX_SERVICE_TOKEN": service_token,
            "VPBX_TOKEN_SECRET": secrets.token_urlsafe(32),
            "VPBX_ACCESS_TOKEN_TTL_S": "3600",
            "VPBX_LOCAL_NUMBERS_FILE": str(workdir / "numbers.yaml"),
            "VPBX_LOG_LEVEL": "WARNING",
        }
        log = stack.enter_context((workdir / "control-api.log").open("wb"))
        command = [
            sys.executable,
            *("-m", "uvicorn", "--factory", "loadtest.bench_api:bench_app"),
            *("--host", HOST, "--port", str(port), "--workers", "1"),
            *("--loop", "uvloop", "--no-access-log", "--log-level", "warning"),
        ]
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, process)
        base_url = f"http://{HOST}:{port}"
        wait_ready(process, base_url, workdir / "control-api.log", "the control API")
        postgres_pid = postgres.process.pid if postgres.process else 0
        yield Server(base_url, database_url, process, postgres_pid, service_token)


# --- seeding ---------------------------------------------------------------------------


@dataclass
class Seed:
    admin: dict[str, str]
    node: dict[str, str]
    users: list[str]
    groups: list[str]
    schedules: list[str]
    paths: set[str]


async def _seed_database(database_url: str) -> None:
    """The tenant and its first admin: what the platform (operator) provides."""
    from vpbx_control.auth.passwords import Passwords
    from vpbx_control.auth.principal import Role
    from vpbx_control.db.session import Database
    from vpbx_control.tenants.models import TenantRow
    from vpbx_control.users.models import UserRow

    database = Database(database_url)
    try:
        async with database.session() as session:
            session.add(
                TenantRow(
                    id=TENANT,
                    display_name="Bench",
                    sip_domain=f"{TENANT}.vpbx.test",
                    cities=[CITY],
                    seats=0,
                    numbers=0,
                    concurrent_calls=0,
                    suspended=False,
                    revision=1,
                )
            )
            await session.flush()
            session.add(
                UserRow(
                    id=uuid.uuid4(),
                    tenant_id=TENANT,
                    email=ADMIN_EMAIL,
                    name="Bench Admin",
                    password_hash=Passwords().hash(ADMIN_PASSWORD),
                    role=Role.TENANT_ADMIN,
                    extension=None,
                    city=CITY,
                    rank=0,
                    skills=[],
                    settings={},
                    revision=1,
                    token_generation=1,
                )
            )
            await session.commit()
    finally:
        await database.dispose()


def _created(response: httpx.Response) -> str:
    if response.status_code != 201:
        raise RuntimeError(
            f"seeding failed: {response.request.url} {response.status_code} {response.text}"
        )
    identifier: str = response.json()["id"]
    return identifier


async def seed(server: Server, users: int, groups: int, schedules: int) -> Seed:
    await _seed_database(server.database_url)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        paths = set((await client.get("/openapi.json")).json()["paths"])
        login = await client.post(
            "/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        user_ids = []
        for n in range(users):
            body = {
                "email": f"user{n:03d}@{TENANT}.vpbx.test",
                "name": f"Bench User {n:03d}",
                "role": "agent",
                "extension": str(200 + n),
                "city": CITY,
                "rank": n % 100,
                "skills": ["english"] if n % 2 else ["sales"],
            }
            user_ids.append(_created(await client.post("/v1/users", json=body, headers=admin)))
        group_ids = []
        for n in range(groups):
            members = [
                {"user_id": user_ids[(n * 5 + k) % len(user_ids)], "weight": 1 + k}
                for k in range(min(5, len(user_ids)))
            ]
            body = {
                "name": f"group-{n:02d}",
                "strategy": ["ring-all", "sequential", "round-robin"][n % 3],
                "members": members,
            }
            group_ids.append(_created(await client.post("/v1/groups", json=body, headers=admin)))
        schedule_ids = []
        for n in range(schedules):
            schedule_ids.append(
                _created(
                    await client.post("/v1/schedules", json=_schedule(f"hours {n}"), headers=admin)
                )
            )
    return Seed(
        admin=admin,
        node={"Authorization": f"Bearer {server.service_token}"},
        users=user_ids,
        groups=group_ids,
        schedules=schedule_ids,
        paths=paths,
    )


def _schedule(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "time_zone": "Europe/Moscow",
        "weekly": [
            {"day": day, "start": "09:00", "end": "18:00"}
            for day in ("mon", "tue", "wed", "thu", "fri")
        ],
        "special_days": [{"date": "2027-01-01", "name": "New Year", "hours": []}],
    }


# --- load driver -----------------------------------------------------------------------


@dataclass
class Recorder:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_statuses: Counter[str] = field(default_factory=Counter)

    async def request(
        self, client: httpx.AsyncClient, method: str, url: str, expect: int, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.errors += 1
            self.error_statuses[type(exc).__name__] += 1
            return None
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != expect:
            self.errors += 1
            self.error_statuses[str(response.status_code)] += 1
            return None
        return response


Operation = Callable[[httpx.AsyncClient, Recorder, int, int], Awaitable[None]]


@dataclass
class Scenario:
    name: str
    path: str  # the route template, to skip scenarios whose route does not exist
    operation: Operation


def scenarios(seed: Seed, run_id: str) -> list[Scenario]:
    async def list_users(client: httpx.AsyncClient, rec: Recorder, worker: int, i: int) -> None:
        await rec.request(client, "GET", "/v1/users", 200, params={"limit": 50}, headers=seed.admin)

    async def read_group(client: httpx.AsyncClient, rec: Recorder, worker: int, i: int) -> None:
        group = seed.groups[(worker + i) % len(seed.groups)]
        await rec.request(client, "GET", f"/v1/groups/{group}", 200, headers=seed.admin)

    async def node_config(client: httpx.AsyncClient, rec: Recorder, worker: int, i: int) -> None:
        url = f"/internal/v1/node-config/{TENANT}/{CITY}"
        await rec.request(client, "GET", url, 200, headers=seed.node)

    current_etag: list[str] = []

    async def node_poll(client: httpx.AsyncClient, rec: Recorder, worker: int, i: int) -> None:
        """A node's steady-state poll: it holds the current config, so the answer is a 304."""
        url = f"/internal/v1/node-config/{TENANT}/{CITY}"
        if not current_etag:
            first = await client.get(url, headers=seed.node)
            current_etag.append(first.headers["ETag"])
        headers = {**seed.node, "If-None-Match": current_etag[0]}
        await rec.request(client, "GET", url, 304, headers=headers)

    names = itertools.count()

    async def schedule_write(client: httpx.AsyncClient, rec: Recorder, worker: int, i: int) -> None:
        name = f"bench {run_id} {next(names)}"  # unique within the tenant
        created = await rec.request(
            client, "POST", "/v1/schedules", 201, json=_schedule(name), headers=seed.admin
        )
        if created is None:
            return
        change = {"weekly": [{"day": "sat", "start": "10:00", "end": "14:00"}]}
        await rec.request(
            client,
            "PATCH",
            f"/v1/schedules/{created.json()['id']}",
            200,
            json=change,
            headers={**seed.admin, "If-Match": created.headers["ETag"]},
        )

    async def presence(client: httpx.AsyncClient, rec: Recorder, worker: int, i: int) -> None:
        user = seed.users[(worker * 7 + i) % len(seed.users)]
        body = {"presence": "away" if i % 2 else "available"}
        await rec.request(
            client, "PATCH", f"/v1/users/{user}/presence", 200, json=body, headers=seed.admin
        )

    return [
        Scenario("list users  GET /v1/users?limit=50", "/v1/users", list_users),
        Scenario("read group  GET /v1/groups/{id}", "/v1/groups/{group_id}", read_group),
        Scenario(
            "node config GET /internal/v1/node-config/…",
            "/internal/v1/node-config/{tenant}/{city}",
            node_config,
        ),
        Scenario(
            "node poll   GET node-config, If-None-Match → 304",
            "/internal/v1/node-config/{tenant}/{city}",
            node_poll,
        ),
        Scenario(
            "schedule    POST+PATCH /v1/schedules", "/v1/schedules/{schedule_id}", schedule_write
        ),
        Scenario(
            "presence    PATCH /v1/users/{id}/presence",
            "/v1/users/{user_id}/presence",
            presence,
        ),
    ]


@dataclass
class Step:
    scenario: str
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_statuses: dict[str, int]
    api_cpu: float
    postgres_cpu: float
    driver_cpu: float


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run_step(
    base_url: str,
    name: str,
    operation: Operation,
    concurrency: int,
    seconds: float,
    max_requests: int,
    server: Server,
) -> Step:
    # One client (one keep-alive connection) per worker: a shared httpx pool costs the
    # driver more CPU per request the more connections it holds.
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    timeout=30,
                )
            )
            for _ in range(concurrency)
        ]
        # Open the connections first: the step measures requests, not TCP handshakes.
        await asyncio.gather(*(client.get("/healthz") for client in clients))
        rec = Recorder()
        deadline = time.monotonic() + seconds

        async def worker(number: int) -> None:
            i = 0
            while time.monotonic() < deadline and len(rec.latencies_ms) < max_requests:
                await operation(clients[number], rec, number, i)
                i += 1

        cpu_api, cpu_pg, cpu_own = (
            tree_cpu_seconds(server.process.pid),
            tree_cpu_seconds(server.postgres_pid),
            own_cpu_seconds(),
        )
        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
        cpu_api = tree_cpu_seconds(server.process.pid) - cpu_api
        cpu_pg = tree_cpu_seconds(server.postgres_pid) - cpu_pg
        cpu_own = own_cpu_seconds() - cpu_own
    ordered = sorted(rec.latencies_ms)
    return Step(
        scenario=name,
        concurrency=concurrency,
        requests=len(ordered),
        seconds=round(elapsed, 2),
        rps=round(len(ordered) / elapsed, 1) if elapsed else 0.0,
        p50_ms=round(_percentile(ordered, 50), 2),
        p99_ms=round(_percentile(ordered, 99), 2),
        max_ms=round(ordered[-1], 2) if ordered else float("nan"),
        errors=rec.errors,
        error_statuses=dict(rec.error_statuses),
        api_cpu=round(cpu_api / elapsed, 2) if elapsed else 0.0,
        postgres_cpu=round(cpu_pg / elapsed, 2) if elapsed else 0.0,
        driver_cpu=round(cpu_own / elapsed, 2) if elapsed else 0.0,
    )


HEADER = (
    f"{'scenario':<44} {'conc':>4} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'errors':>6} {'API CPU':>8} {'PG CPU':>7} {'driver':>7}"
)


def _row(step: Step) -> str:
    return (
        f"{step.scenario:<44} {step.concurrency:>4} {step.requests:>8} {step.rps:>8.1f} "
        f"{step.p50_ms:>8.2f} {step.p99_ms:>8.2f} {step.errors:>6} {step.api_cpu:>8.0%} "
        f"{step.postgres_cpu:>7.0%} {step.driver_cpu:>7.0%}"
    )


async def bench(args: argparse.Namespace, server: Server, results: dict[str, Any]) -> None:
    seed_started = time.monotonic()
    seeded = await seed(server, args.users, args.groups, args.schedules)
    print(
        f"seeded tenant {TENANT!r}: {len(seeded.users)} users, {len(seeded.groups)} groups, "
        f"{len(seeded.schedules)} schedules through the API in "
        f"{time.monotonic() - seed_started:.1f} s",
        flush=True,
    )
    levels = [int(level) for level in args.concurrency.split(",")]
    print(
        f"\nclosed loop, {args.step_seconds:g} s or {args.max_requests} requests per step "
        f"(CPU: 100% = one core)\n{HEADER}",
        flush=True,
    )
    steps: list[Step] = []
    run_id = secrets.token_hex(3)
    for scenario in scenarios(seeded, run_id):
        if scenario.path not in seeded.paths:
            print(f"{scenario.name:<44} skipped: {scenario.path} is not in the API", flush=True)
            continue
        # A short warm-up (not recorded): code paths, statement caches, pools.
        await run_step(server.base_url, scenario.name, scenario.operation, 1, 1.0, 200, server)
        for level in levels:
            step = await run_step(
                server.base_url,
                scenario.name,
                scenario.operation,
                level,
                args.step_seconds,
                args.max_requests,
                server,
            )
            steps.append(step)
            print(_row(step), flush=True)
            if step.error_statuses:
                print(f"{'':<44}      errors by kind: {step.error_statuses}", flush=True)
    results["steps"] = [asdict(step) for step in steps]

    async def login(client: httpx.AsyncClient, rec: Recorder, worker: int, i: int) -> None:
        body = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        await rec.request(client, "POST", "/v1/auth/login", 200, json=body)

    print(
        f"\nlogin (argon2id verify, m=19 MiB t=2 p=1), {args.login_seconds:g} s per step\n{HEADER}",
        flush=True,
    )
    logins = []
    for level in (1, 4):
        step = await run_step(
            server.base_url,
            "login       POST /v1/auth/login",
            login,
            level,
            args.login_seconds,
            args.max_requests,
            server,
        )
        logins.append(step)
        print(_row(step), flush=True)
    results["login"] = [asdict(step) for step in logins]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated levels")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=20000, help="per step")
    parser.add_argument("--login-seconds", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--schedules", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or REPO / "var" / "bench-api" / stamp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(
        f"bench-api: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
        f"Python {info['python']}, load average {info['load_average']}; files in {workdir}",
        flush=True,
    )
    results: dict[str, Any] = {
        "machine": info,
        "started": stamp,
        "args": vars(args) | {"workdir": str(workdir)},
    }
    started = time.monotonic()
    try:
        # The driver on uvloop too, so the client's own overhead is as small as it gets.
        with (
            running_system(workdir) as server,
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        ):
            runner.run(bench(args, server, results))
    finally:
        results["seconds"] = round(time.monotonic() - started, 1)
        (workdir / "results.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nbench-api finished in {results['seconds']:.0f} s; results in {workdir / 'results.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

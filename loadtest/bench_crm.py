"""`make bench-crm`: the CRM's routing lookup with a million contacts in one tenant.

What the media node's crm-lookup step costs per call: `GET /internal/v1/lookup/{tenant}`
(phone -> contact, owner, category) against PostgreSQL holding ``--contacts`` contacts in
the measured tenant (1,000,000 by default; each with one or two phones) next to a second
tenant holding the same phones (so the tenant column is part of every probe).

Starts a private PostgreSQL (the CRM's migrations), bulk-loads the contacts with COPY, runs
the CRM in uvicorn (one worker, uvloop, no access log) on loopback, then drives lookups of
random phones (three in four known, one in four unknown) with the media node's own lookup
client (aiohttp, as in the node):
closed loop at each concurrency level, bounded in time and requests. Printed per step:
lookups/s, p50/p95/p99 latency, errors, and the CPU the CRM process and PostgreSQL used
per lookup. The bare SQL probe (asyncpg, no HTTP) is measured too, so the HTTP share is
visible. Goal: p99 under 5 ms. Figures also go to var/bench-crm/<UTC time>/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from loadtest.bench_api import (
    _percentile,
    _stop,
    machine,
    own_cpu_seconds,
    tree_cpu_seconds,
    wait_ready,
)
from vpbx_media.node.crmlookup import CrmLookupClient, CrmLookupError

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TENANT = "bench"
NEIGHBOUR = "neighbour"
CATEGORIES = ("client", "client", "client", "supplier", "partner")


def bench_app() -> Any:
    """The uvicorn factory run in the server process: settings from VPBX_* variables."""
    from vpbx_crm.app import create_app
    from vpbx_crm.settings import CrmSettings

    return create_app(CrmSettings(), migrate=False)


def phone_of(index: int) -> str:
    """The index-th phone of the data set: Moscow mobiles +7 9xx, unique per index."""
    return f"+79{index:09d}"


@dataclass
class Server:
    base_url: str
    dsn: str
    process: subprocess.Popen[bytes]
    postgres_pid: int
    service_token: str


async def load_contacts(dsn: str, tenant: str, count: int, batch: int = 100_000) -> None:
    """``count`` contacts, a third of them with a second phone, by COPY in batches."""
    connection = await asyncpg.connect(dsn)
    try:
        owners = [uuid.uuid4() for _ in range(50)]
        rng = random.Random(tenant)
        for start in range(0, count, batch):
            contacts = []
            phones = []
            for index in range(start, min(count, start + batch)):
                contact_id = uuid.uuid4()
                contacts.append(
                    (
                        contact_id,
                        tenant,
                        f"Contact {index}",
                        "[]",
                        rng.choice(CATEGORIES),
                        "RU-MOW",
                        "Moscow",
                        rng.choice(owners) if index % 4 else None,
                        index % 50 == 0,
                        "",
                        "{}",
                        1,
                    )
                )
                phones.append((tenant, phone_of(index), contact_id, 0))
                if index % 3 == 0:
                    phones.append((tenant, phone_of(count + index), contact_id, 1))
            await connection.copy_records_to_table(
                "crm_contacts",
                records=contacts,
                columns=[
                    "id",
                    "tenant_id",
                    "name",
                    "emails",
                    "category",
                    "region",
                    "region_name",
                    "owner_user_id",
                    "vip",
                    "source_label",
                    "custom",
                    "revision",
                ],
            )
            await connection.copy_records_to_table(
                "crm_contact_phones",
                records=phones,
                columns=["tenant_id", "phone", "contact_id", "position"],
            )
        await connection.execute("ANALYZE crm_contacts; ANALYZE crm_contact_phones")
    finally:
        await connection.close()


@contextmanager
def running_crm(workdir: Path, contacts: int) -> Iterator[Server]:
    from tests.services.ports import free_port
    from tests.services.postgres import running_postgres

    from vpbx_crm.db.migrate import upgrade_sync

    postgres_root = Path(tempfile.mkdtemp(prefix="bench-crm-postgres-"))
    with ExitStack() as stack:
        postgres = stack.enter_context(running_postgres(postgres_root))
        database_url = postgres.create_database("vpbx_crm_bench")
        upgrade_sync(database_url)
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        started = time.monotonic()
        asyncio.run(load_contacts(dsn, TENANT, contacts))
        asyncio.run(load_contacts(dsn, NEIGHBOUR, min(contacts, 100_000)))
        print(f"  loaded {contacts:,} contacts in {time.monotonic() - started:.0f} s", flush=True)
        port = free_port()
        service_token = secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "VPBX_MODE": "bench",
            "VPBX_DATABASE_URL": database_url,
            "VPBX_SERVICE_TOKEN": service_token,
            "VPBX_LOG_LEVEL": "WARNING",
        }
        env.pop("VPBX_REDIS_URL", None)
        log = stack.enter_context((workdir / "crm.log").open("wb"))
        command = [
            sys.executable,
            *("-m", "uvicorn", "--factory", "loadtest.bench_crm:bench_app"),
            *("--host", HOST, "--port", str(port), "--workers", "1"),
            *("--loop", "uvloop", "--no-access-log", "--log-level", "warning"),
        ]
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, process)
        base_url = f"http://{HOST}:{port}"
        wait_ready(process, base_url, workdir / "crm.log", "the CRM")
        postgres_pid = postgres.process.pid if postgres.process else 0
        yield Server(base_url, dsn, process, postgres_pid, service_token)


def random_phone(rng: random.Random, contacts: int) -> str:
    """Three in four a phone some contact has, one in four nobody's."""
    if rng.random() < 0.75:
        return phone_of(rng.randrange(contacts))
    return phone_of(2 * contacts + rng.randrange(contacts))


async def sql_probe(server: Server, contacts: int, count: int) -> dict[str, float]:
    """The lookup's query alone (asyncpg, prepared), one at a time."""
    connection = await asyncpg.connect(server.dsn)
    try:
        statement = await connection.prepare(
            "SELECT c.id, c.name, c.category, c.owner_user_id, c.vip FROM crm_contacts c "
            "JOIN crm_contact_phones p ON p.contact_id = c.id "
            "WHERE p.tenant_id = $1 AND p.phone = $2"
        )
        rng = random.Random(7)
        latencies = []
        for _ in range(count):
            phone = random_phone(rng, contacts)
            started = time.perf_counter()
            await statement.fetchrow(TENANT, phone)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await connection.close()
    return {
        "p50_ms": round(_percentile(latencies, 50), 3),
        "p99_ms": round(_percentile(latencies, 99), 3),
    }


async def lookup_step(
    server: Server, contacts: int, concurrency: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    # The driver is the media node's own client (aiohttp, kept-alive connections): what a
    # node waits for is what is measured, and the driver's CPU stays small beside the CRM's.
    client = CrmLookupClient(server.base_url, server.service_token, timeout_ms=1000)
    await client.start()
    latencies: list[float] = []
    errors = 0
    found = 0
    deadline = time.monotonic() + seconds
    try:

        async def worker(seed: int) -> None:
            nonlocal errors, found
            rng = random.Random(seed)
            while time.monotonic() < deadline and len(latencies) + errors < max_requests:
                phone = random_phone(rng, contacts)
                started = time.perf_counter()
                try:
                    contact = await client.lookup(TENANT, phone)
                except CrmLookupError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                if contact is not None:
                    found += 1

        crm_cpu = tree_cpu_seconds(server.process.pid)
        pg_cpu = tree_cpu_seconds(server.postgres_pid)
        own_cpu = own_cpu_seconds()
        started = time.monotonic()
        await asyncio.gather(*(worker(seed) for seed in range(concurrency)))
        elapsed = time.monotonic() - started
        crm_cpu = tree_cpu_seconds(server.process.pid) - crm_cpu
        pg_cpu = tree_cpu_seconds(server.postgres_pid) - pg_cpu
        own_cpu = own_cpu_seconds() - own_cpu
    finally:
        await client.stop()
    done = max(1, len(latencies))
    return {
        "concurrency": concurrency,
        "lookups": len(latencies),
        "found": found,
        "errors": errors,
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 50), 2),
        "p95_ms": round(_percentile(latencies, 95), 2),
        "p99_ms": round(_percentile(latencies, 99), 2),
        "crm_cpu_ms_per_lookup": round(crm_cpu * 1000 / done, 3),
        "postgres_cpu_ms_per_lookup": round(pg_cpu * 1000 / done, 3),
        "driver_cpu_ms_per_lookup": round(own_cpu * 1000 / done, 3),
    }


async def bench(args: argparse.Namespace, server: Server, results: dict[str, Any]) -> None:
    probe = await sql_probe(server, args.contacts, 5000)
    results["sql_probe"] = probe
    print(f"  SQL probe alone: p50 {probe['p50_ms']} ms, p99 {probe['p99_ms']} ms", flush=True)
    # Warm the CRM (connection pool, code paths) before measuring.
    await lookup_step(server, args.contacts, 4, 2.0, 2000)
    steps = []
    print(
        f"  {'conc':>4} {'lookups/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'CRM CPU ms':>10} {'PG CPU ms':>9}",
        flush=True,
    )
    for concurrency in (int(level) for level in args.concurrency.split(",")):
        step = await lookup_step(
            server, args.contacts, concurrency, args.step_seconds, args.max_requests
        )
        steps.append(step)
        print(
            f"  {concurrency:>4} {step['per_s']:>10} {step['p50_ms']:>7} {step['p95_ms']:>7} "
            f"{step['p99_ms']:>7} {step['errors']:>6} {step['crm_cpu_ms_per_lookup']:>10} "
            f"{step['postgres_cpu_ms_per_lookup']:>9}",
            flush=True,
        )
    results["steps"] = steps


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=50_000, help="per step")
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or REPO / "var" / "bench-crm" / stamp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(
        f"bench-crm: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
        f"load average {info['load_average']}; {args.contacts:,} contacts; files in {workdir}",
        flush=True,
    )
    results: dict[str, Any] = {"machine": info, "started": stamp, "args": vars(args) | {}}
    results["args"]["workdir"] = str(workdir)
    started = time.monotonic()
    try:
        with (
            running_crm(workdir, args.contacts) as server,
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        ):
            runner.run(bench(args, server, results))
    finally:
        results["seconds"] = round(time.monotonic() - started, 1)
        (workdir / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nbench-crm finished in {results['seconds']:.0f} s; results in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

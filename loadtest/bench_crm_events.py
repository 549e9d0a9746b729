"""`make bench-crm-events`: what the CRM's reader of the nodes' call events costs per call.

Every call a node handles becomes 3-5 entries on the durable stream (`call.offered`,
`call.ringing`, `call.answered`, `call.ended`, ...); the CRM reads them in its consumer
group and turns them into the call's timeline row, new contacts and missed-call tasks.
A busy tenant's calls must not need a CRM core of their own.

Starts a private PostgreSQL (the CRM's migrations, ``--contacts`` known clients) and a
private Redis, XADDs the entries of ``--calls`` calls as nodes would (a mix: answered
calls from known clients, missed calls from known clients, missed calls from unknown
numbers, which create contacts), then runs the CRM's reader (``CallEventConsumer`` +
``CrmEventHandler``, in this process, on uvloop) until every entry is acknowledged.
``--rate`` offers the calls as a steady stream instead, read as they come (the reader's
``linger_s`` decides how many it writes at once). Printed: calls and entries per second,
the CPU this process (the reader) and PostgreSQL used per call, and a check that the
rows are there (one timeline row per call, one task per missed call, one contact per
unknown caller). The directory the reader would ask the
control API for is a fixed one (its cost is a cached read every 10 s). Figures also go to
var/bench-crm-events/<UTC time>/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as redis
import uvloop
from sqlalchemy import func, select

from loadtest.bench_api import machine, own_cpu_seconds, tree_cpu_seconds
from loadtest.bench_crm import load_contacts, phone_of
from vpbx_common.cdr import EndReason
from vpbx_common.events import (
    CALL_EVENTS_STREAM,
    CRM_GROUP,
    CallEvent,
    CallEventConsumer,
    CallEventType,
    stream_fields,
)
from vpbx_control.auth.principal import Role
from vpbx_control.db.session import Database
from vpbx_control.identity.schemas import (
    Directory,
    DirectoryGroup,
    DirectoryNumber,
    DirectoryUser,
)

REPO = Path(__file__).resolve().parents[1]
TENANT = "bench"
NUMBER = "+74950000001"
AGENTS = 20


def fixed_directory() -> Any:
    from vpbx_crm.identity import TenantDirectory

    users = [
        DirectoryUser(
            id=str(uuid.UUID(int=index + 1)),
            name=f"Agent {index}",
            email=f"agent{index}@bench.example",
            role=Role.AGENT,
            extension=str(101 + index),
            city="msk",
            presence="available",
        )
        for index in range(AGENTS)
    ]
    return TenantDirectory(
        Directory(
            tenant_id=TENANT,
            users=users,
            groups=[
                DirectoryGroup(id="sales", name="Sales", member_user_ids=[u.id for u in users])
            ],
            numbers=[DirectoryNumber(number=NUMBER, label="yandex-direct")],
        )
    )


class FixedDirectory:
    def __init__(self) -> None:
        self.value = fixed_directory()

    async def directory(self, tenant: str, *, fresh: bool = False) -> Any:
        return self.value


def call_events(index: int, rng: random.Random, contacts: int, start_ms: int) -> list[CallEvent]:
    """One call's entries. Half answered by a known client's call, a quarter missed from a
    known client, a quarter missed from an unknown number."""
    kind = index % 4
    caller = phone_of(rng.randrange(contacts)) if kind < 3 else f"+7999{index:07d}"
    extension = str(101 + rng.randrange(AGENTS))
    at = start_ms + index * 10
    base = {
        "call_id": f"bench-{index}-{uuid.uuid4().hex}@node",
        "tenant": TENANT,
        "city": "msk",
        "node": "node-1",
        "number": NUMBER,
        "caller": caller,
        "label": "yandex-direct",
        "direction": "inbound",
    }
    events = [
        CallEvent(type=CallEventType.OFFERED, callee="", at_ms=at, offered=(extension,), **base),
        CallEvent(type=CallEventType.RINGING, callee=extension, at_ms=at + 5, **base),
    ]
    if kind < 2:
        events += [
            CallEvent(type=CallEventType.ANSWERED, callee=extension, at_ms=at + 4000, **base),
            CallEvent(
                type=CallEventType.ENDED,
                callee=extension,
                at_ms=at + 60000,
                end_reason=EndReason.COMPLETED,
                **base,
            ),
        ]
    else:
        events.append(
            CallEvent(
                type=CallEventType.ENDED,
                callee=extension,
                at_ms=at + 20000,
                end_reason=EndReason.NO_ANSWER,
                **base,
            )
        )
    return events


@contextmanager
def running_stores(workdir: Path, contacts: int) -> Iterator[tuple[str, str, int]]:
    from tests.services.postgres import running_postgres
    from tests.services.redis import running_redis

    from vpbx_crm.db.migrate import upgrade_sync

    with ExitStack() as stack:
        postgres = stack.enter_context(
            running_postgres(Path(tempfile.mkdtemp(prefix="bench-crm-events-postgres-")))
        )
        database_url = postgres.create_database("vpbx_crm_events_bench")
        upgrade_sync(database_url)
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        asyncio.run(load_contacts(dsn, TENANT, contacts))
        redis_url = stack.enter_context(running_redis(workdir / "redis"))
        yield database_url, redis_url, postgres.process.pid if postgres.process else 0


async def bench(
    args: argparse.Namespace, database_url: str, redis_url: str, pg_pid: int
) -> dict[str, Any]:
    from vpbx_crm.calls.models import CallRow
    from vpbx_crm.contacts.models import ContactRow
    from vpbx_crm.events.handler import CrmEventHandler
    from vpbx_crm.tasks.models import TaskRow

    client = redis.Redis.from_url(redis_url)
    rng = random.Random(7)
    start_ms = int(time.time() * 1000)
    calls = [call_events(index, rng, args.contacts, start_ms) for index in range(args.calls)]
    entries = sum(len(events) for events in calls)

    async def produce() -> None:
        """All at once (a backlog), or ``--rate`` calls a second (a steady stream)."""
        pipe = client.pipeline(transaction=False)
        began = time.monotonic()
        for index, events in enumerate(calls):
            for event in events:
                pipe.xadd(CALL_EVENTS_STREAM, stream_fields(event))  # type: ignore[arg-type]
            if args.rate:
                await pipe.execute()
                await asyncio.sleep(max(0.0, began + (index + 1) / args.rate - time.monotonic()))
            elif index % 500 == 499:
                await pipe.execute()
        await pipe.execute()

    if not args.rate:
        await produce()
    database = Database(database_url)
    handler = CrmEventHandler(database, FixedDirectory())
    consumer = CallEventConsumer(
        client,
        CRM_GROUP,
        handler.handle,
        batch_handler=None if args.one_by_one else handler.handle_many,
        batch_size=args.batch,
        linger_s=args.linger,
        block_s=0.1,
    )
    await consumer.ensure_group()
    producer = asyncio.create_task(produce()) if args.rate else None
    cpu, pg_cpu, started = own_cpu_seconds(), tree_cpu_seconds(pg_pid), time.monotonic()
    while consumer.handled + consumer.skipped < entries:
        if time.monotonic() - started > args.max_seconds:
            break
        await consumer.poll_once()
    seconds = time.monotonic() - started
    cpu, pg_cpu = own_cpu_seconds() - cpu, tree_cpu_seconds(pg_pid) - pg_cpu
    if producer is not None:
        await producer
    async with database.session() as session:
        calls = await session.scalar(select(func.count()).select_from(CallRow))
        tasks = await session.scalar(select(func.count()).select_from(TaskRow))
        contacts = await session.scalar(select(func.count()).select_from(ContactRow))
    await database.dispose()
    await client.aclose()
    done_calls = args.calls * (consumer.handled / entries)
    return {
        "calls": args.calls,
        "entries": entries,
        "handled": consumer.handled,
        "failed": consumer.failed,
        "seconds": round(seconds, 2),
        "mode": f"{args.rate} calls/s" if args.rate else "backlog",
        "calls_per_s": round(done_calls / seconds, 1),
        "entries_per_s": round(consumer.handled / seconds, 1),
        "reader_cpu_ms_per_call": round(cpu * 1000 / max(done_calls, 1), 2),
        "postgres_cpu_ms_per_call": round(pg_cpu * 1000 / max(done_calls, 1), 2),
        "timeline_rows": calls,
        "tasks": tasks,
        "new_contacts": (contacts or 0) - args.contacts,
        "expected": {
            "timeline_rows": args.calls,
            "tasks": args.calls // 2,
            "new_contacts": args.calls // 4,
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=64, help="entries per XREADGROUP")
    parser.add_argument(
        "--one-by-one", action="store_true", help="one transaction per entry (no batch handler)"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="calls/s offered while reading (0: backlog)"
    )
    parser.add_argument("--linger", type=float, default=0.1, help="the reader's linger_s")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or REPO / "var" / "bench-crm-events" / stamp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(
        f"bench-crm-events: {info['nproc']} CPUs ({info['cpu']}), load average "
        f"{info['load_average']}; {args.calls:,} calls, {args.contacts:,} contacts; "
        f"files in {workdir}",
        flush=True,
    )
    with (
        running_stores(workdir, args.contacts) as (database_url, redis_url, pg_pid),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        figures = runner.run(bench(args, database_url, redis_url, pg_pid))
    for key, value in figures.items():
        print(f"  {key:<26} {value}")
    results = {"machine": info, "started": stamp, "args": vars(args), "figures": figures}
    results["args"]["workdir"] = str(workdir)
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

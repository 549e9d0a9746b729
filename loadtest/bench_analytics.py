"""`make bench-analytics`: CDR ingest through the spool shipper and the analytics reports' latency.

Builds ``--cdrs`` synthetic calls (default 10 million) of ``--tenants`` tenants (default 1000)
over the 365 days before ``DATA_END``, with a Zipf skew (tenant rank r gets a share
proportional to 1/r: a few big call centres, many small offices). Each call is one of the
routes the media node writes: a group that answers or is abandoned while ringing, a queue
(answered or abandoned), an IVR choice (or the caller leaving in it), voicemail, no answer,
outbound calls through a trunk (some of them callbacks of missed callers), internal calls;
dialled numbers carry ad-channel labels, callers are known CRM contacts (with a category,
some VIP) or unknown, and repeat.

For each engine (``--engines``: embedded chdb on a data dir and Debian's ClickHouse server,
started here on loopback from tests/services/clickhouse.py):

1. Ingest: ``--ship-cdrs`` of the calls are appended to a real ``CdrSpool`` and shipped by a
   real ``CdrShipper`` (``--batch-size``); rows/s is measured from the shipper's start to the
   spool being empty. The stages of one batch (spool read, derive, rows, engine insert) are
   then timed apart, so the figure says where the time goes.
2. Fill: the rest up to ``--cdrs`` is made inside the engine by copying the shipped calls
   (and their legs) under new call ids, each copy moved by whole days inside the window
   (hour of day, tenant, caller, route and outcome kept). Shipping 10 million rows through
   the Python shipper would take longer than the bench may run (see the ingest figure).
3. Reports: every report in ``vpbx_common.analytics.REPORTS`` (defaults) for the biggest
   tenant and the median one, over the last 30 and 365 days, ``--repeats`` runs each
   (bounded by ``--max-seconds-per-case``) through ``CdrStore.read`` as the control API runs
   them (chdb: a session is opened for each read, as ChdbCdrStore does); p50/p95 printed.

Timings are printed, never asserted. Data dirs are temporary and removed at the end (the
figures go to var/bench-analytics/<UTC time>/results.json).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from loadtest.bench_api import machine
from vpbx_common.analytics import REPORTS, ReportPeriod, TenantScope
from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, RouteStep
from vpbx_common.cdr.derived import derive_call
from vpbx_common.cdr.migrations import (
    ANALYTICS_COLUMNS,
    CDR_TABLE,
    DEAL_EVENTS_TABLE,
    LEG_COLUMNS,
    LEGS_TABLE,
    RECORD_COLUMNS,
    VERSION_COLUMN,
)
from vpbx_common.cdr.store import (
    INSERT_LEGS_SQL,
    INSERT_SQL,
    CdrQuery,
    CdrStore,
    ChdbCdrStore,
    ClickHouseCdrStore,
    leg_rows,
    record_row,
)
from vpbx_media.cdr.shipper import CdrShipper
from vpbx_media.cdr.spool import CdrSpool

DATA_END = date(2026, 12, 1)  # the window is the 365 days before this (UTC midnight)
DAY_MS = 86_400_000
WINDOW_DAYS = 365
REPORT_TZ = "Europe/Moscow"
ENGINES = ("chdb", "server")

LABELS = ("google", "yandex", "vk", "radio", "billboard", "")
GROUPS = ("sales", "support", "billing")
CATEGORIES = ("client", "partner", "lead", "supplier")
# Inbound outcomes and their weights (percent of inbound calls).
INBOUND_MIX = (
    ("group-answered", 42),
    ("queue-answered", 15),
    ("queue-abandoned", 6),
    ("ivr-answered", 10),
    ("ivr-abandoned", 3),
    ("ring-abandoned", 12),
    ("voicemail", 6),
    ("no-answer", 3),
    ("busy", 3),
)
DIRECTION_MIX = ((Direction.INBOUND, 65), (Direction.OUTBOUND, 30), (Direction.INTERNAL, 5))


# --- the synthetic tenants and calls ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    rank: int  # 1 = the biggest
    expected_calls: int
    numbers: tuple[tuple[str, str], ...]  # (dialled number, its ad-channel label)
    extensions: tuple[str, ...]
    groups: tuple[str, ...]
    callers: int  # size of the pool of outside numbers that call (and are called)


def tenant_name(rank: int) -> str:
    return f"bench-t{rank:04d}"


def plan_tenants(cdrs: int, tenants: int) -> list[Tenant]:
    """Tenant rank r gets cdrs * (1/r) / H(tenants) calls (Zipf, s = 1)."""
    if tenants < 1 or cdrs < 1:
        raise ValueError("--cdrs and --tenants must be at least 1")
    harmonic = sum(1 / r for r in range(1, tenants + 1))
    plans = []
    for rank in range(1, tenants + 1):
        expected = max(1, round(cdrs / rank / harmonic))
        size = max(2, min(60, expected // 2_000 + 2))
        numbers = tuple(
            (f"+7495{rank:04d}{n:03d}", LABELS[(rank + n) % len(LABELS)])
            for n in range(1 + min(4, expected // 5_000))
        )
        plans.append(
            Tenant(
                name=tenant_name(rank),
                rank=rank,
                expected_calls=expected,
                numbers=numbers,
                extensions=tuple(str(100 + e) for e in range(1, size + 1)),
                groups=GROUPS[: 1 + min(2, size // 10)],
                callers=max(10, expected // 4),
            )
        )
    return plans


def _step(
    after_ms: int, subject: str, outcome: str, member: str | None = None, detail: str = ""
) -> RouteStep:
    return RouteStep(after_ms / 1000, subject, outcome, member, detail)


def _weighted(mix: Sequence[tuple[Any, int]]) -> tuple[list[Any], list[int]]:
    values = [value for value, _ in mix]
    return values, list(itertools.accumulate(weight for _, weight in mix))


_INBOUND_VALUES, _INBOUND_CUM = _weighted(INBOUND_MIX)
_DIRECTION_VALUES, _DIRECTION_CUM = _weighted(DIRECTION_MIX)
# Calls by local hour: office hours, a little in the evening, almost nothing at night.
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 4, 10, 16, 18, 18, 15, 16, 17, 16, 14, 11, 7, 4, 3, 2, 1, 1)
_HOURS_CUM = list(itertools.accumulate(_HOUR_WEIGHTS))


class CallMaker:
    """Deterministic synthetic calls (seeded), in the shapes the media node's router writes."""

    def __init__(self, tenants: Sequence[Tenant], seed: int) -> None:
        self.tenants = list(tenants)
        self._cum = list(itertools.accumulate(t.expected_calls for t in self.tenants))
        self._rng = random.Random(seed)
        self._seq = 0
        self.window_start_ms = window_start_ms()

    def pick(self, cum: list[int]) -> int:
        return bisect.bisect_right(cum, self._rng.random() * cum[-1])

    def __iter__(self) -> Iterator[CallRecord]:
        while True:
            yield self.next()

    def next(self) -> CallRecord:
        rng = self._rng
        tenant = self.tenants[self.pick(self._cum)]
        self._seq += 1
        day = rng.randrange(WINDOW_DAYS)
        # Moscow office hours: UTC+3, so local hour h is UTC hour h - 3.
        hour = (self.pick(_HOURS_CUM) - 3) % 24
        start_ms = self.window_start_ms + day * DAY_MS + hour * 3_600_000 + rng.randrange(3_600_000)
        call_id = f"{self._seq:x}.{rng.getrandbits(48):012x}@bench"
        direction = _DIRECTION_VALUES[self.pick(_DIRECTION_CUM)]
        if direction is Direction.INBOUND:
            return self._inbound(tenant, call_id, start_ms)
        if direction is Direction.OUTBOUND:
            return self._outbound(tenant, call_id, start_ms)
        return self._internal(tenant, call_id, start_ms)

    def _caller(self, tenant: Tenant) -> tuple[str, dict[str, Any]]:
        # A few callers call often (repeat callers): square the uniform draw.
        index = int(tenant.callers * self._rng.random() ** 2)
        number = f"+7{tenant.rank:04d}{index:07d}"
        contact: dict[str, Any] = {}
        if index % 10 < 4:  # 40% of the pool is known to the CRM
            contact = {
                "contact_id": f"c-{tenant.rank}-{index}",
                "contact_category": CATEGORIES[index % len(CATEGORIES)],
                "contact_vip": index % 25 == 0,
                "contact_owner_user_id": f"u-{tenant.extensions[index % len(tenant.extensions)]}",
            }
        return number, contact

    def _inbound(self, tenant: Tenant, call_id: str, start_ms: int) -> CallRecord:
        rng = self._rng
        caller, contact = self._caller(tenant)
        dialled, label = tenant.numbers[rng.randrange(len(tenant.numbers))]
        ext = tenant.extensions[rng.randrange(len(tenant.extensions))]
        group = tenant.groups[rng.randrange(len(tenant.groups))]
        kind = _INBOUND_VALUES[self.pick(_INBOUND_CUM)]
        ring = rng.randrange(2_000, 30_000)
        talk = rng.randrange(20_000, 600_000)
        subject = f"group:{group}"
        plan = "plan:main step 1 (queue)"
        answered = kind in ("group-answered", "queue-answered", "ivr-answered")
        reason, status, hangup = EndReason.COMPLETED, 200, HangupBy.CALLER
        route: list[RouteStep]
        end = ring + talk
        if kind == "group-answered":
            route = [
                _step(0, subject, "entered", None, "entry"),
                _step(0, subject, "ringing", ext),
                _step(ring, subject, "answered", ext),
            ]
        elif kind == "queue-answered":
            offer = rng.randrange(0, ring)
            route = [
                _step(0, plan, "entered", None, f"queue of group:{group}"),
                _step(0, plan, "queued", None, "joined"),
                _step(offer, plan, "queued", ext, "offered"),
                _step(offer, plan, "ringing", ext),
                _step(ring, plan, "answered", ext),
            ]
        elif kind == "queue-abandoned":
            route = [
                _step(0, plan, "entered", None, f"queue of group:{group}"),
                _step(0, plan, "queued", None, "joined"),
                _step(ring // 2, plan, "queued", ext, "offered"),
                _step(ring // 2, plan, "ringing", ext),
                _step(ring // 2 + 900, plan, "no-answer", ext, "declined"),
                _step(ring // 2 + 900, plan, "queued", ext, "back at its place: declined"),
                _step(ring * 3, "call", "caller-left", None, "while queued"),
            ]
            end, reason, status = ring * 3, EndReason.CANCELLED, 487
        elif kind == "ivr-answered":
            chose = rng.randrange(3_000, 12_000)
            digit = str(1 + rng.randrange(3))
            route = [
                _step(0, "ivr:main", "entered", None, "entry"),
                _step(0, "ivr:main", "prompted"),
                _step(chose, "ivr:main", "decided", None, f"digit {digit}"),
                _step(chose, subject, "entered", None, f"ivr:main: digit {digit}"),
                _step(chose, subject, "ringing", ext),
                _step(chose + ring, subject, "answered", ext),
            ]
            ring += chose
            end = ring + talk
        elif kind == "ivr-abandoned":
            route = [
                _step(0, "ivr:main", "entered", None, "entry"),
                _step(0, "ivr:main", "prompted"),
                _step(ring, "call", "caller-left", None, "while ivr"),
            ]
            end, reason, status = ring, EndReason.CANCELLED, 487
        elif kind == "ring-abandoned":
            route = [
                _step(0, subject, "entered", None, "entry"),
                _step(0, subject, "ringing", ext),
                _step(ring, subject, "no-answer", ext, "caller hung up"),
                _step(ring, "call", "caller-left", None, "while ringing"),
            ]
            end, reason, status = ring, EndReason.CANCELLED, 487
        elif kind == "voicemail":
            route = [
                _step(0, subject, "entered", None, "entry"),
                _step(0, subject, "ringing", ext),
                _step(20_000, subject, "no-answer", None, "nobody answered in time"),
                _step(20_000, "voicemail", "entered", None, f"group:{group}: overflow"),
                _step(45_000, "voicemail", "recorded"),
            ]
            end, reason = 45_000, EndReason.VOICEMAIL
        elif kind == "no-answer":
            route = [
                _step(0, subject, "entered", None, "entry"),
                _step(0, subject, "ringing", ext),
                _step(30_000, subject, "no-answer", None, "nobody answered in time"),
                _step(30_000, "call", "hung-up", None, "480 no-answer, no overflow"),
            ]
            end, reason, status, hangup = 30_000, EndReason.NO_ANSWER, 480, HangupBy.SYSTEM
        else:  # busy: every member on a call
            route = [
                _step(0, subject, "entered", None, "entry"),
                _step(0, subject, "busy", None, "all members busy"),
            ]
            end, reason, status, hangup = 0, EndReason.BUSY, 486, HangupBy.SYSTEM
        return CallRecord.build(
            call_id=call_id,
            tenant=tenant.name,
            city="msk",
            node="node-a",
            direction=Direction.INBOUND,
            caller=caller,
            dialled=dialled,
            label=label,
            answered_by=ext if answered else "",
            start_ms=start_ms,
            answer_ms=start_ms + ring if answered else None,
            end_ms=start_ms + end,
            end_reason=reason,
            sip_status=status,
            hangup_by=hangup,
            route=route,
            **contact,
        )

    def _outbound(self, tenant: Tenant, call_id: str, start_ms: int) -> CallRecord:
        rng = self._rng
        number, contact = self._caller(tenant)
        ext = tenant.extensions[rng.randrange(len(tenant.extensions))]
        answered = rng.random() < 0.7
        ring = rng.randrange(3_000, 25_000)
        end = ring + rng.randrange(15_000, 400_000) if answered else ring
        return CallRecord.build(
            call_id=call_id,
            tenant=tenant.name,
            city="msk",
            node="node-a",
            direction=Direction.OUTBOUND,
            caller=ext,
            dialled=number,
            start_ms=start_ms,
            answer_ms=start_ms + ring if answered else None,
            end_ms=start_ms + end,
            end_reason=EndReason.COMPLETED if answered else EndReason.NO_ANSWER,
            sip_status=200 if answered else 480,
            hangup_by=HangupBy.CALLEE if answered else HangupBy.SYSTEM,
            route=[_step(0, "trunk:main", "answered" if answered else "failed", number)],
            **contact,
        )

    def _internal(self, tenant: Tenant, call_id: str, start_ms: int) -> CallRecord:
        rng = self._rng
        caller = tenant.extensions[rng.randrange(len(tenant.extensions))]
        callee = tenant.extensions[rng.randrange(len(tenant.extensions))]
        ring = rng.randrange(1_000, 10_000)
        target = f"user:{callee}"
        return CallRecord.build(
            call_id=call_id,
            tenant=tenant.name,
            city="msk",
            node="node-a",
            direction=Direction.INTERNAL,
            caller=caller,
            dialled=callee,
            answered_by=callee,
            start_ms=start_ms,
            answer_ms=start_ms + ring,
            end_ms=start_ms + ring + rng.randrange(10_000, 200_000),
            end_reason=EndReason.COMPLETED,
            sip_status=200,
            hangup_by=HangupBy.CALLER,
            route=[
                _step(0, target, "entered", None, "entry"),
                _step(0, target, "ringing", callee),
                _step(ring, target, "answered", callee),
            ],
        )


def window_start_ms() -> int:
    end = datetime.combine(DATA_END, datetime.min.time(), tzinfo=UTC)
    return int(end.timestamp()) * 1000 - WINDOW_DAYS * DAY_MS


# --- the engines ----------------------------------------------------------------------------


@dataclass
class Engine:
    name: str
    factory: Callable[[], CdrStore]
    describe: str
    server: Any = None  # tests.services.clickhouse.ClickHouseServer for "server"


@contextmanager
def running_engine(name: str, root: Path) -> Iterator[Engine]:
    if name == "chdb":
        path = root / "chdb"
        yield Engine("chdb", lambda: ChdbCdrStore(path, busy_timeout=60.0), f"chdb on {path}")
        return
    from tests.services.clickhouse import ClickHouseServer

    server = ClickHouseServer(root / "clickhouse")
    # The tests' 1 GB per query is too little for copying millions of rows with their routes.
    # Queries are logged (system.query_log) so the slowest can be shown with what they read.
    users = server.root / "users.xml"
    users.write_text(
        users.read_text().replace(
            "<max_memory_usage>1000000000</max_memory_usage>",
            "<max_memory_usage>8000000000</max_memory_usage><log_queries>1</log_queries>",
        )
    )
    server.config.write_text(
        server.config.read_text().replace(
            "</yandex>",
            "<query_log><database>system</database><table>query_log</table>"
            "<flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>"
            "</yandex>",
        )
    )
    server.start()
    try:
        url = server.url + "?send_receive_timeout=600"
        yield Engine("server", lambda: ClickHouseCdrStore(url), "clickhouse-server 18.16", server)
    finally:
        server.stop()


def execute(store: CdrStore, *statements: str) -> list[list[Any]]:
    """Statements the bench itself runs (fill, counts): through the store's one read path."""
    return store.read(*(CdrQuery(sql) for sql in statements))


# --- 1. ingest through the spool and the shipper --------------------------------------------


@dataclass
class IngestResult:
    records: int
    spool_write_s: float
    ship_s: float
    rows_per_s: float
    legs: int
    batch_size: int
    stages_ms_per_1000: dict[str, float] = field(default_factory=dict)


def write_spool(spool_dir: Path, records: Sequence[CallRecord]) -> float:
    started = time.perf_counter()
    with CdrSpool(spool_dir, segment_max_bytes=8 << 20) as spool:
        for record in records:
            spool.append(record)
    return time.perf_counter() - started


async def _ship(
    spool_dir: Path, factory: Callable[[], CdrStore], batch_size: int, total: int
) -> float:
    with CdrSpool(spool_dir) as spool:
        shipper = CdrShipper(spool, factory, batch_size=batch_size, interval=0.05, stop_timeout=600)
        # Migrations run on the first batch; run them first so they are not in the figure.
        store = factory()
        store.migrate()
        store.close()
        started = time.perf_counter()
        await shipper.start()
        while shipper.shipped < total:  # noqa: ASYNC110 - the shipper has no "done" event
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        await shipper.stop()
    return elapsed


def ingest(
    engine: Engine, records: Sequence[CallRecord], batch_size: int, spool_root: Path
) -> IngestResult:
    spool_dir = spool_root / f"spool-{engine.name}"
    write_s = write_spool(spool_dir, records)
    ship_s = asyncio.run(_ship(spool_dir, engine.factory, batch_size, len(records)))
    store = engine.factory()
    try:
        legs = int(execute(store, f"SELECT count() FROM {LEGS_TABLE}")[0][0][0])  # noqa: S608
    finally:
        store.close()
    shutil.rmtree(spool_dir, ignore_errors=True)
    return IngestResult(
        records=len(records),
        spool_write_s=write_s,
        ship_s=ship_s,
        rows_per_s=len(records) / ship_s,
        legs=legs,
        batch_size=batch_size,
    )


def stage_profile(
    engine: Engine, records: Sequence[CallRecord], spool_root: Path
) -> dict[str, float]:
    """One batch's path through the shipper, stage by stage (ms per 1000 calls).

    The same work as CdrShipper._ship_one_batch + CdrStore.insert, cut apart: reading the
    spool (JSON + CallRecord validation), derive_call, building the rows, and the engine's
    inserts (driver or VALUES text + the engine). Into a scratch table pair, so the data
    measured later is not touched."""
    spool_dir = spool_root / f"profile-{engine.name}"
    write_spool(spool_dir, records)
    n = len(records)
    times: dict[str, float] = {}
    with CdrSpool(spool_dir) as spool:
        started = time.perf_counter()
        batch = spool.pending(n)
        times["spool read (JSON + validation)"] = time.perf_counter() - started
    started = time.perf_counter()
    derived = [derive_call(record) for record in batch.records]
    times["derive_call"] = time.perf_counter() - started
    started = time.perf_counter()
    legs = [row for r, d in zip(batch.records, derived, strict=True) for row in leg_rows(r, d)]
    rows = [record_row(r, d) for r, d in zip(batch.records, derived, strict=True)]
    times["record_row + leg_rows"] = time.perf_counter() - started
    store = engine.factory()
    try:
        execute(
            store,
            f"CREATE TABLE IF NOT EXISTS bench_cdr AS {CDR_TABLE}",
            f"CREATE TABLE IF NOT EXISTS bench_legs AS {LEGS_TABLE}",
        )
        insert_rows = INSERT_SQL.replace(f"INTO {CDR_TABLE} ", "INTO bench_cdr ")
        insert_legs = INSERT_LEGS_SQL.replace(f"INTO {LEGS_TABLE} ", "INTO bench_legs ")
        # The store's own connection: the bench times exactly the insert the shipper makes.
        with store._connect() as conn:
            started = time.perf_counter()
            conn.insert(insert_legs, legs)
            times["engine insert: legs"] = time.perf_counter() - started
            started = time.perf_counter()
            conn.insert(insert_rows, rows)
            times["engine insert: calls"] = time.perf_counter() - started
        execute(store, "DROP TABLE IF EXISTS bench_cdr", "DROP TABLE IF EXISTS bench_legs")
    finally:
        store.close()
    shutil.rmtree(spool_dir, ignore_errors=True)
    return {stage: round(seconds * 1000 * 1000 / n, 1) for stage, seconds in times.items()}


# --- 2. fill to --cdrs by copying the shipped calls inside the engine ----------------------


# Copies made by one INSERT ... SELECT (ARRAY JOIN of copy numbers): about a million rows
# a statement keeps the number of parts (one per month per statement) and the memory low.
_ROWS_PER_FILL_STATEMENT = 1_000_000


def _moved_start() -> str:
    """start_ms of copy `copy_n` of a call: moved by whole days (from a hash of the new call
    id) and wrapped into the window, so the hour of day stays and the copy stays inside."""
    start = window_start_ms()
    length = WINDOW_DAYS * DAY_MS
    return (
        f"toUInt64({start} + ((start_ms - {start}) + "
        f"(cityHash64(concat(call_id, '~', toString(copy_n))) % {WINDOW_DAYS}) * {DAY_MS})"
        f" % {length})"
    )


def fill_statements(first: int, last: int) -> list[str]:
    """INSERT ... SELECT of copies first..last of the shipped calls (call ids without '~') and
    of their legs. Same text on 18.16 and chdb."""
    moved = _moved_start()
    shift = f"(toInt64({moved}) - toInt64(start_ms))"
    cdr_columns = (*RECORD_COLUMNS, VERSION_COLUMN, *ANALYTICS_COLUMNS)
    shifted = {
        "call_id": "concat(call_id, '~', toString(copy_n))",
        "start_ms": moved,
        "answer_ms": f"if(isNull(answer_ms), NULL, toUInt64(assumeNotNull(answer_ms) + {shift}))",
        "end_ms": f"toUInt64(end_ms + {shift})",
        "at_ms": f"toUInt64(at_ms + {shift})",
    }
    cdr_select = ", ".join(shifted.get(column, column) for column in cdr_columns)
    leg_columns = (*LEG_COLUMNS, VERSION_COLUMN)
    legs_select = ", ".join(shifted.get(column, column) for column in leg_columns)
    # 18.16's range() takes only the count.
    numbers = f"arrayMap(n -> n + {first}, range({last - first + 1}))"
    copies = f"ARRAY JOIN {numbers} AS copy_n WHERE position(call_id, '~') = 0"
    return [
        f"INSERT INTO {LEGS_TABLE} ({', '.join(leg_columns)}) "  # noqa: S608
        f"SELECT {legs_select} FROM {LEGS_TABLE} {copies}",
        f"INSERT INTO {CDR_TABLE} ({', '.join(cdr_columns)}) "  # noqa: S608
        f"SELECT {cdr_select} FROM {CDR_TABLE} {copies}",
    ]


def fill(engine: Engine, shipped: int, target: int) -> tuple[int, float]:
    """Copies of the shipped calls until the table holds about `target` calls."""
    copies = max(0, -(-target // shipped) - 1)
    per_statement = max(1, _ROWS_PER_FILL_STATEMENT // shipped)
    started = time.perf_counter()
    store = engine.factory()
    try:
        for first in range(1, copies + 1, per_statement):
            execute(store, *fill_statements(first, min(copies, first + per_statement - 1)))
    finally:
        store.close()
    return copies, time.perf_counter() - started


DEAL_EVENT_COLUMNS = (
    "tenant, event_id, deal_id, contact_id, label, kind, stage, pipeline, amount, currency,"
    " user_id, owner_user_id, at_ms, version"
)


def deal_statements() -> list[str]:
    """Deal events for the channels and managers reports, made from the stored calls: one
    inbound call of a known client in 25 opens a deal after the call (by the extension that
    answered, owned by the client's manager), one in 75 is won three days later."""
    deal = "concat('d-', call_id)"
    opened = (
        f"SELECT tenant, concat(call_id, '-c'), {deal}, contact_id, label, 'created', 'new',"  # noqa: S608
        " 'sales', NULL, 'RUB', if(answered_by != '', concat('u-', answered_by), ''),"
        " contact_owner_user_id, end_ms, 1"
        f" FROM {CDR_TABLE} WHERE direction = 'inbound' AND contact_id != ''"
        " AND cityHash64(call_id) % 25 = 0"
    )
    won = (
        f"SELECT tenant, concat(call_id, '-w'), {deal}, contact_id, label, 'won', 'won',"  # noqa: S608
        " 'sales', toInt64(10000 + cityHash64(call_id) % 490000), 'RUB',"
        " contact_owner_user_id, contact_owner_user_id, end_ms + 3 * 86400000, 1"
        f" FROM {CDR_TABLE} WHERE direction = 'inbound' AND contact_id != ''"
        " AND cityHash64(call_id) % 75 = 0"
    )
    return [
        f"INSERT INTO {DEAL_EVENTS_TABLE} ({DEAL_EVENT_COLUMNS}) {select}"
        for select in (opened, won)
    ]


def fill_deals(engine: Engine) -> int:
    store = engine.factory()
    try:
        execute(store, *deal_statements())
        return int(execute(store, f"SELECT count() FROM {DEAL_EVENTS_TABLE}")[0][0][0])  # noqa: S608
    finally:
        store.close()


def optimize(engine: Engine) -> float:
    """Merge each month's parts into one (OPTIMIZE ... FINAL): the steady state of past
    months, where FINAL has nothing left to collapse across parts."""
    started = time.perf_counter()
    store = engine.factory()
    try:
        for table in (CDR_TABLE, LEGS_TABLE, DEAL_EVENTS_TABLE):
            partitions = execute(
                store,
                "SELECT DISTINCT partition FROM system.parts WHERE active"  # noqa: S608
                f" AND database = currentDatabase() AND table = '{table}'",
            )[0]
            for (partition,) in partitions:
                execute(store, f"OPTIMIZE TABLE {table} PARTITION {int(partition)} FINAL")
    finally:
        store.close()
    return time.perf_counter() - started


def table_figures(engine: Engine) -> dict[str, Any]:
    store = engine.factory()
    try:
        rows = execute(
            store,
            f"SELECT count() FROM {CDR_TABLE}",  # noqa: S608
            f"SELECT count() FROM {LEGS_TABLE}",  # noqa: S608
            "SELECT table, count(), sum(rows), sum(bytes_on_disk) FROM system.parts"
            " WHERE active AND database = currentDatabase() GROUP BY table ORDER BY table",
        )
    finally:
        store.close()
    return {
        "calls": int(rows[0][0][0]),
        "legs": int(rows[1][0][0]),
        "parts": {
            str(t): {"parts": int(p), "rows": int(r), "bytes": int(b)} for t, p, r, b in rows[2]
        },
    }


def tenant_calls(engine: Engine, tenants: Sequence[str]) -> dict[str, int]:
    store = engine.factory()
    try:
        names = ", ".join(f"'{name}'" for name in tenants)
        rows = execute(
            store,
            f"SELECT tenant, count() FROM {CDR_TABLE} WHERE tenant IN ({names}) GROUP BY tenant",  # noqa: S608
        )[0]
    finally:
        store.close()
    return {str(tenant): int(count) for tenant, count in rows}


# --- 3. report latency ------------------------------------------------------------------------


@dataclass
class Case:
    engine: str
    tenant: str
    tenant_calls: int
    days: int
    report: str
    runs: int
    first_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    # chdb only: the same queries in one session held open (no session start per read).
    held_p50_ms: float | None = None
    held_p95_ms: float | None = None

    def line(self) -> str:
        held = (
            ""
            if self.held_p50_ms is None
            else f"  (session held: p50 {self.held_p50_ms:.1f} p95 {self.held_p95_ms:.1f} ms)"
        )
        return (
            f"report {self.engine:6} {self.report:9} tenant {self.tenant} "
            f"({self.tenant_calls} calls/year) {self.days:3}d: "
            f"p50 {self.p50_ms:8.1f} ms  p95 {self.p95_ms:8.1f} ms  "
            f"first {self.first_ms:8.1f} ms  runs {self.runs}{held}"
        )


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def periods() -> dict[int, ReportPeriod]:
    last = DATA_END - timedelta(days=1)
    return {
        days: ReportPeriod.from_dates(last - timedelta(days=days - 1), last, REPORT_TZ)
        for days in (30, 365)
    }


def _held_session_ms(store: CdrStore, queries: Sequence[CdrQuery], runs: int) -> list[float]:
    """The report's queries `runs` times in one chdb session: the engine's own time, without
    the session start that ChdbCdrStore.read pays on every call."""
    statements = [query.render() for query in queries]
    timings = []
    with store._connect() as conn:
        for _ in range(max(1, runs)):
            started = time.perf_counter()
            for sql in statements:
                conn.execute(sql)
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def time_reports(
    engine: Engine,
    tenants: dict[str, int],
    repeats: int,
    max_seconds: float,
    only: Sequence[str] | None = None,
) -> list[Case]:
    cases: list[Case] = []
    held_too = engine.name == "chdb"
    store = engine.factory()
    try:
        for tenant, calls in tenants.items():
            for days, period in periods().items():
                for name, report_class in sorted(REPORTS.items()):
                    if only and name not in only:
                        continue
                    report = report_class(TenantScope(tenant), period)
                    queries = report.queries()
                    timings: list[float] = []
                    first = 0.0
                    deadline = time.monotonic() + max_seconds
                    for run in range(repeats + 1):
                        started = time.perf_counter()
                        rows = store.read(*queries)
                        elapsed = (time.perf_counter() - started) * 1000
                        report.parse(rows)  # the figures are usable, not just fetched
                        if run == 0:
                            first = elapsed  # cold caches; reported apart
                        else:
                            timings.append(elapsed)
                        # Bounded in time: a case slower than the budget gets one timed run
                        # after the cold one (its p50 = p95 = that run; "runs" says so).
                        if run >= 1 and time.monotonic() > deadline:
                            break
                    held = _held_session_ms(store, queries, len(timings)) if held_too else []
                    case = Case(
                        engine=engine.name,
                        tenant=tenant,
                        tenant_calls=calls,
                        days=days,
                        report=name,
                        runs=len(timings),
                        first_ms=round(first, 1),
                        p50_ms=round(statistics.median(timings), 1),
                        p95_ms=round(percentile(timings, 0.95), 1),
                        max_ms=round(max(timings), 1),
                        held_p50_ms=round(statistics.median(held), 1) if held else None,
                        held_p95_ms=round(percentile(held, 0.95), 1) if held else None,
                    )
                    print(case.line(), flush=True)
                    cases.append(case)
        # What a read costs before any report SQL: chdb opens a session per read.
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            store.read(CdrQuery("SELECT 1"))
            timings.append((time.perf_counter() - started) * 1000)
        print(f"empty read ({engine.name}, SELECT 1): p50 {statistics.median(timings):.1f} ms")
    finally:
        store.close()
    return cases


def server_query_log(engine: Engine) -> list[dict[str, Any]]:
    """The slowest report queries as the server saw them (read rows and bytes, memory)."""
    if engine.server is None:
        return []
    engine.server.query("SYSTEM FLUSH LOGS")
    rows = engine.server.query(
        "SELECT query_duration_ms, read_rows, read_bytes, memory_usage, substring(query, 1, 120)"
        " FROM system.query_log WHERE type = 2 AND query LIKE '%FINAL%'"
        " AND query NOT LIKE '%system.%'"
        " ORDER BY query_duration_ms DESC LIMIT 8"
    )
    return [
        {
            "ms": int(ms),
            "read_rows": int(rr),
            "read_bytes": int(rb),
            "memory": int(mem),
            "query": str(q),
        }
        for ms, rr, rb, mem, q in rows
    ]


# --- the run --------------------------------------------------------------------------------


def load_average() -> str:
    """The load average, and how much of the last 10 s some task waited for a CPU (PSI):
    the machine is shared, and these figures say how much of it the bench had."""
    text = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        pressure = Path("/proc/pressure/cpu").read_text().split("\n")[0].split()[1]
    except (OSError, IndexError):
        return text
    return f"{text} (cpu pressure {pressure.removeprefix('avg10=')}% waiting)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", type=int, default=10_000_000, help="calls in the store")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument(
        "--ship-cdrs",
        type=int,
        default=200_000,
        help="calls that go through the spool and the shipper (the rest are copies of them)",
    )
    parser.add_argument("--batch-size", type=int, default=5_000, help="the shipper's batch size")
    parser.add_argument("--engines", default=",".join(ENGINES), help="chdb,server")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of each report")
    parser.add_argument(
        "--max-seconds-per-case",
        type=float,
        default=15.0,
        help="stop repeating a report after this (at least one timed run after the cold one)",
    )
    parser.add_argument("--reports", default="", help="only these reports (comma-separated)")
    parser.add_argument("--profile-cdrs", type=int, default=5_000, help="0: no stage profile")
    parser.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="merge each month's parts (OPTIMIZE FINAL) before timing the reports",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or not engines:
        parser.error(f"--engines: choose from {', '.join(ENGINES)}")
    if args.ship_cdrs < 1 or args.cdrs < 1:
        parser.error("--cdrs and --ship-cdrs must be at least 1")
    ship = min(args.ship_cdrs, args.cdrs)
    only = [name.strip() for name in args.reports.split(",") if name.strip()] or None

    started_at = datetime.now(UTC)
    print(f"machine: {machine()}; load average at start: {load_average()}", flush=True)
    tenants = plan_tenants(args.cdrs, args.tenants)
    big, median = tenants[0], tenants[len(tenants) // 2]
    print(
        f"{args.cdrs} calls, {args.tenants} tenants over {WINDOW_DAYS} days to {DATA_END}; "
        f"biggest {big.name} ~{big.expected_calls}, median {median.name} ~{median.expected_calls}; "
        f"{ship} shipped, the rest copies",
        flush=True,
    )
    started = time.perf_counter()
    maker = CallMaker(tenants, args.seed)
    records = [maker.next() for _ in range(ship)]
    print(f"generated {ship} calls in {time.perf_counter() - started:.1f} s", flush=True)
    profile_records = [maker.next() for _ in range(min(args.profile_cdrs, ship))]

    results: dict[str, Any] = {
        "started": started_at.isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": load_average(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "engines": {},
    }
    with ExitStack() as stack:
        if args.work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-analytics-")))
        else:
            work = args.work_dir
            work.mkdir(parents=True, exist_ok=True)
            stack.callback(shutil.rmtree, work, True)
        # The spool fsyncs every append; on tmpfs that is free, so the figure is the
        # shipper's, not this machine's disk (a node's spool is on its own volume).
        shm = Path("/dev/shm")  # noqa: S108 - a private TemporaryDirectory inside it
        spool_root = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(
                    prefix="bench-analytics-spool-", dir=shm if shm.is_dir() else None
                )
            )
        )
        for name in engines:
            figures: dict[str, Any] = {}
            results["engines"][name] = figures
            with running_engine(name, work / name) as engine:
                print(f"== {engine.describe}; load average {load_average()}", flush=True)
                result = ingest(engine, records, args.batch_size, spool_root)
                figures["ingest"] = vars(result)
                print(
                    f"ingest {name}: {result.records} calls ({result.legs} legs) through the "
                    f"shipper (batch {result.batch_size}) in {result.ship_s:.1f} s = "
                    f"{result.rows_per_s:.0f} calls/s; spool append (tmp dir) "
                    f"{result.records / result.spool_write_s:.0f} calls/s",
                    flush=True,
                )
                if profile_records:
                    stages = stage_profile(engine, profile_records, spool_root)
                    figures["stages_ms_per_1000"] = stages
                    total = sum(stages.values())
                    print(
                        f"shipper stages {name}, ms per 1000 calls (sum {total:.0f} ms = "
                        f"{1_000_000 / total:.0f} calls/s on one core): "
                        + ", ".join(f"{stage} {ms}" for stage, ms in stages.items()),
                        flush=True,
                    )
                copies, fill_s = fill(engine, ship, args.cdrs)
                deals = fill_deals(engine)
                table = table_figures(engine)
                figures["fill"] = {
                    "copies": copies,
                    "seconds": round(fill_s, 1),
                    "deal_events": deals,
                    **table,
                }
                print(
                    f"fill {name}: {copies} copies in {fill_s:.1f} s -> {table['calls']} calls, "
                    f"{table['legs']} legs, {deals} deal events; parts {table['parts']}",
                    flush=True,
                )
                if args.optimize:
                    optimize_s = optimize(engine)
                    merged = table_figures(engine)["parts"]
                    figures["optimize"] = {"seconds": round(optimize_s, 1), "parts": merged}
                    print(f"optimize {name}: {optimize_s:.1f} s -> parts {merged}", flush=True)
                counts = tenant_calls(engine, [big.name, median.name])
                chosen = {t: counts.get(t, 0) for t in (big.name, median.name)}
                print(f"reports on {name}; load average {load_average()}", flush=True)
                cases = time_reports(engine, chosen, args.repeats, args.max_seconds_per_case, only)
                figures["reports"] = [vars(case) for case in cases]
                figures["slowest_queries"] = server_query_log(engine)
                for entry in figures["slowest_queries"]:
                    print(f"  server query_log: {entry}", flush=True)
        results["load_average_end"] = load_average()
        print(f"load average at end: {results['load_average_end']}", flush=True)
    out = (
        args.results
        or Path("var/bench-analytics") / started_at.strftime("%Y%m%dT%H%M%SZ") / "results.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

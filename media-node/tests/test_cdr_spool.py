"""The CDR spool, the open-call journal and the shipper, against real files and real stores."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.services.clickhouse import ClickHouseServer
from tests.services.metrics import scraped
from tests.services.ports import free_port

from vpbx_common.cdr import (
    CallRecord,
    CdrStore,
    Direction,
    EndReason,
    HangupBy,
    OpenCall,
    RouteStep,
    open_cdr_store,
)
from vpbx_media.cdr.shipper import CdrShipper, ShipperState
from vpbx_media.cdr.spool import CdrSpool, SpoolBusyError
from vpbx_media.metrics import NodeMetrics
from vpbx_media.node.calls.facts import CallFacts, NodeRef
from vpbx_media.node.routing.trace import Outcome, RouteEntry

BASE_MS = 1_763_800_000_000


# A route as the routing engine writes it: a member skipped, a group timing out, an HTTP decision.
ROUTE = (
    RouteStep(0.0, "plan:main step 1 (group)", "entered"),
    RouteStep(0.002, "group:sales", "skipped", "102", "on a call"),
    RouteStep(0.003, "group:sales", "ringing", "101"),
    RouteStep(3.0, "group:sales", "answered", "101"),
)


def make_record(
    call_id: str, start_ms: int = BASE_MS, route: tuple[RouteStep, ...] = ()
) -> CallRecord:
    return CallRecord.build(
        call_id=call_id,
        tenant="acme",
        city="novosibirsk",
        node="acme-nsk-0",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+73832000000",
        label="2gis",
        answered_by="101",
        start_ms=start_ms,
        answer_ms=start_ms + 3_000,
        end_ms=start_ms + 63_000,
        end_reason=EndReason.COMPLETED,
        sip_status=200,
        hangup_by=HangupBy.CALLEE,
        route=route,
    )


def voicemail_record(call_id: str, start_ms: int = BASE_MS) -> CallRecord:
    return CallRecord.build(
        call_id=call_id,
        tenant="acme",
        city="novosibirsk",
        node="acme-nsk-0",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+73832000000",
        start_ms=start_ms,
        answer_ms=None,
        end_ms=start_ms + 52_000,
        end_reason=EndReason.VOICEMAIL,
        sip_status=200,
        hangup_by=HangupBy.CALLER,
        route=(
            RouteStep(0.0, "group:sales", "no-answer", None, "nobody answered in 20 s"),
            RouteStep(20.004, "plan:main step 2 (http decision)", "decided", None, 'reply {"a":1}'),
            RouteStep(20.01, "voicemail:sales", "recorded", None, "message of 31 s\n«ok»"),
        ),
    )


def drain(spool: CdrSpool, batch_size: int) -> list[CallRecord]:
    """Everything pending, shipping in batches of batch_size (at most 1000 batches)."""
    shipped: list[CallRecord] = []
    for _ in range(1000):
        batch = spool.pending(batch_size)
        if not batch.has_progress:
            return shipped
        shipped.extend(batch.records)
        spool.acknowledge(batch)
    raise AssertionError("spool never drained")


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def spool(spool_dir: Path) -> Iterator[CdrSpool]:
    with CdrSpool(spool_dir) as opened:
        yield opened


# -- spool -----------------------------------------------------------------------------------


def test_appended_records_survive_a_restart_until_acknowledged(spool_dir: Path) -> None:
    records = [make_record(f"c-{i}", BASE_MS + i) for i in range(3)]
    with CdrSpool(spool_dir) as first:
        for record in records:
            first.append(record)
        unshipped = first.pending(10)  # read but never acknowledged: e.g. the insert failed
        assert list(unshipped.records) == records
    with CdrSpool(spool_dir) as second:
        assert list(second.pending(10).records) == records
        assert drain(second, 2) == records
    with CdrSpool(spool_dir) as third:
        assert not third.pending(10).has_progress
        assert list((spool_dir / "segments").iterdir()) == []


def test_batches_across_rotated_segments_deliver_each_record_once(spool_dir: Path) -> None:
    records = [make_record(f"r-{i}", BASE_MS + i) for i in range(23)]
    with CdrSpool(spool_dir, segment_max_bytes=1_500) as spool:
        for record in records[:10]:
            spool.append(record)
        first = spool.pending(4)
        spool.acknowledge(first)
        for record in records[10:]:
            spool.append(record)
        assert len(list((spool_dir / "segments").glob("*.jsonl"))) > 2
        rest = drain(spool, 4)
    assert list(first.records) + rest == records
    with CdrSpool(spool_dir) as reopened:
        assert drain(reopened, 100) == []


def test_acknowledging_twice_is_harmless(spool: CdrSpool) -> None:
    spool.append(make_record("once"))
    batch = spool.pending(10)
    spool.acknowledge(batch)
    spool.acknowledge(batch)
    spool.append(make_record("twice"))
    assert [r.call_id for r in spool.pending(10).records] == ["twice"]


def test_torn_last_line_is_skipped_and_the_rest_still_ships(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = [make_record("good-1"), make_record("good-2")]
    with CdrSpool(spool_dir) as spool:
        for record in good:
            spool.append(record)
    (segment,) = (spool_dir / "segments").glob("*.jsonl")
    torn = make_record("torn").dumps().encode()[:57]  # the process died mid-write
    with segment.open("ab") as handle:
        handle.write(torn)
    with CdrSpool(spool_dir) as spool, caplog.at_level(logging.WARNING):
        later = make_record("after-restart")
        spool.append(later)
        assert drain(spool, 10) == [*good, later]
    assert "torn last line" in caplog.text


def test_garbage_line_in_the_middle_does_not_block_later_records(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CdrSpool(spool_dir) as spool:
        spool.append(make_record("before"))
    (segment,) = (spool_dir / "segments").glob("*.jsonl")
    with segment.open("ab") as handle:
        handle.write(
            b'{"call_id": "half"}\n\xff\xfe not json\n'
            + make_record("after").dumps().encode()
            + b"\n"
        )
    with CdrSpool(spool_dir) as spool, caplog.at_level(logging.WARNING):
        assert [r.call_id for r in drain(spool, 10)] == ["before", "after"]
    assert "skipping unreadable CDR" in caplog.text


def test_second_owner_of_a_spool_dir_is_refused(spool: CdrSpool, spool_dir: Path) -> None:
    with pytest.raises(SpoolBusyError):
        CdrSpool(spool_dir)


# -- open-call journal -----------------------------------------------------------------------

_CRASHING_NODE = """
import dataclasses, sys, time
from pathlib import Path
from vpbx_common.cdr import Direction, OpenCall, RouteStep
from vpbx_media.cdr.spool import CdrSpool

spool = CdrSpool(Path(sys.argv[1]))
start = int(sys.argv[2])
call = OpenCall(call_id="doomed@10.0.0.1", tenant="acme", city="nsk", node="acme-nsk-0",
                direction=Direction.INBOUND, caller="+79130000001", dialled="+73832000000",
                label="2gis", start_ms=start)
spool.begin_call(call)
spool.begin_call(OpenCall(call_id="ringing", tenant="acme", city="nsk", node="acme-nsk-0",
                          direction=Direction.INTERNAL, caller="101", dialled="102",
                          start_ms=start))
spool.update_call(dataclasses.replace(
    call, answer_ms=start + 2000, answered_by="101", sip_status=200,
    route=(RouteStep(0.0, "group:sales", "ringing", "101"),
           RouteStep(2.0, "group:sales", "answered", "101")),
))
time.sleep(0.3)
spool.touch_open_calls()
print("in call", flush=True)
time.sleep(60)
"""


def test_node_killed_mid_call_still_yields_a_cdr(spool_dir: Path) -> None:
    start_ms = time.time_ns() // 1_000_000 - 10_000  # rang 2 s, then talked 8 s so far
    node = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_NODE, str(spool_dir), str(start_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert node.stdout is not None
        assert node.stdout.readline() == b"in call\n", node.stderr.read() if node.stderr else ""
        touched_ms = time.time_ns() // 1_000_000
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=10)
    now_ms = touched_ms + 30_000
    with CdrSpool(spool_dir) as restarted:
        recovered = {r.call_id: r for r in restarted.recover_open_calls(now_ms)}
        assert set(recovered) == {"doomed@10.0.0.1", "ringing"}
        answered = recovered["doomed@10.0.0.1"]
        assert answered.end_reason is EndReason.NODE_LOST
        assert answered.hangup_by is HangupBy.SYSTEM
        assert answered.answer_ms == start_ms + 2_000
        assert answered.answered_by == "101"
        assert answered.label == "2gis"
        assert [(step.outcome, step.member) for step in answered.route] == [
            ("ringing", "101"),
            ("answered", "101"),
        ]
        # Ends at the heartbeat, not at "now" and not at the answer.
        assert start_ms + 2_000 < answered.end_ms <= touched_ms + 1_000
        assert recovered["ringing"].answer_ms is None
        assert {r.call_id for r in drain(restarted, 10)} == set(recovered)
        assert restarted.recover_open_calls(now_ms) == []


def test_finished_calls_are_not_recovered(spool_dir: Path) -> None:
    call = OpenCall(
        call_id="fine",
        tenant="acme",
        city="nsk",
        node="n",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+73832000000",
        start_ms=BASE_MS,
    )
    with CdrSpool(spool_dir) as spool:
        spool.begin_call(call)
        assert spool.open_calls() == [call]
        spool.finish_call(make_record("fine"))
        assert spool.open_calls() == []
    with CdrSpool(spool_dir) as restarted:
        assert restarted.recover_open_calls(BASE_MS + 100_000) == []
        assert [r.call_id for r in drain(restarted, 10)] == ["fine"]


def test_routes_survive_the_spool_and_the_journal(spool_dir: Path) -> None:
    routed = make_record("routed", BASE_MS, ROUTE)
    voicemail = voicemail_record("vm", BASE_MS + 1)
    ringing = OpenCall(
        call_id="ringing@nsk",
        tenant="acme",
        city="nsk",
        node="n",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+73832000000",
        start_ms=BASE_MS + 2,
        route=ROUTE[:3],
    )
    with CdrSpool(spool_dir) as spool:
        spool.append(routed)
        spool.append(voicemail)
        spool.begin_call(ringing)
        assert spool.open_calls() == [ringing]
    with CdrSpool(spool_dir) as restarted:
        (lost,) = restarted.recover_open_calls(BASE_MS + 30_000)
        assert lost.end_reason is EndReason.NODE_LOST
        assert lost.route == ROUTE[:3]
        assert drain(restarted, 10) == [routed, voicemail, lost]


def test_spool_lines_and_journal_entries_from_before_routes_still_load(spool_dir: Path) -> None:
    old_line = make_record("old-line").to_json()
    del old_line["route"]
    old_entry = {
        "call_id": "old-entry",
        "tenant": "acme",
        "city": "nsk",
        "node": "n",
        "direction": "inbound",
        "caller": "+79130000001",
        "dialled": "+73832000000",
        "start_ms": BASE_MS,
        "label": "",
        "answer_ms": None,
        "answered_by": "",
        "sip_status": 0,
        "touched_ms": BASE_MS + 5_000,
    }
    (spool_dir / "segments").mkdir(parents=True)
    (spool_dir / "open-calls").mkdir(parents=True)
    (spool_dir / "segments" / "segment-00000000000000000001.jsonl").write_text(
        json.dumps(old_line) + "\n"
    )
    (spool_dir / "open-calls" / "old.json").write_text(json.dumps(old_entry))
    with CdrSpool(spool_dir) as spool:
        (lost,) = spool.recover_open_calls(BASE_MS + 60_000)
        assert lost.call_id == "old-entry"
        assert lost.route == ()
        assert drain(spool, 10) == [make_record("old-line"), lost]


def test_call_facts_put_the_routing_engines_trace_into_cdr_and_journal() -> None:
    trace = [
        RouteEntry(0.0, "plan:main step 1 (group)", Outcome.ENTERED),
        RouteEntry(0.0021, "group:sales", Outcome.SKIPPED, "102", "on a call"),
        RouteEntry(20.00049, "group:sales", Outcome.NO_ANSWER, None, "nobody answered in 20 s"),
        RouteEntry(20.01, "voicemail:sales", Outcome.RECORDED),
    ]
    facts = CallFacts(
        call_id="facts-1",
        node=NodeRef("acme", "nsk", "acme-nsk-0"),
        direction=Direction.INBOUND,
        number="+73832000000",
        label="2gis",
        caller="+79130000001",
        start_ms=BASE_MS,
    )
    assert facts.record().route == ()
    facts.route = tuple(RouteStep.from_json(entry.as_dict()) for entry in trace)
    assert facts.open_call().route == facts.route
    facts.end_reason = EndReason.VOICEMAIL
    facts.sip_status = 200
    facts.hangup_by = HangupBy.CALLER
    facts.end_ms = BASE_MS + 52_000
    record = facts.record()
    assert record.answer_ms is None
    assert [step.to_json() for step in record.route] == [entry.as_dict() for entry in trace]
    assert [str(step) for step in record.route] == [str(entry) for entry in trace]


# -- shipper ---------------------------------------------------------------------------------


async def wait_until(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {within}s")


async def test_shipper_moves_spooled_cdrs_into_chdb(spool: CdrSpool, chdb_path: Path) -> None:
    reader = open_cdr_store(None, chdb_path)
    reader.migrate()
    shipper = CdrShipper(
        spool, lambda: open_cdr_store(None, chdb_path), batch_size=3, interval=0.05
    )
    records = [make_record(f"s-{i}", BASE_MS + i) for i in range(7)]
    await shipper.start()
    try:
        for record in records:
            await asyncio.to_thread(spool.append, record)
        shipper.notify()
        await wait_until(lambda: reader.count() == len(records))
    finally:
        await shipper.stop()
    assert reader.last(10) == records[::-1]
    assert not spool.pending(10).has_progress


@pytest.mark.parametrize("backend", ["clickhouse-18.16", "chdb"])
async def test_routes_ship_intact_to_both_stores(
    spool: CdrSpool, chdb_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url: str | None = None
    if backend == "clickhouse-18.16":
        url = request.getfixturevalue("clickhouse_database_url")
    reader = open_cdr_store(url, chdb_path)
    reader.migrate()
    shipper = CdrShipper(spool, lambda: open_cdr_store(url, chdb_path), interval=0.05)
    records = [
        make_record("ship-routed", BASE_MS, ROUTE),
        voicemail_record("ship-vm", BASE_MS + 1),
        make_record("ship-plain", BASE_MS + 2),
    ]
    await shipper.start()
    try:
        for record in records:
            await asyncio.to_thread(spool.append, record)
        shipper.notify()
        await wait_until(lambda: reader.count() == len(records))
    finally:
        await shipper.stop()
        reader.close()
    with open_cdr_store(url, chdb_path) as check:
        assert check.last(10) == records[::-1]


async def test_clickhouse_outage_delays_but_never_drops(
    spool: CdrSpool, clickhouse_server: ClickHouseServer, clickhouse_database_url: str
) -> None:
    def store_factory() -> CdrStore:
        return open_cdr_store(clickhouse_database_url, Path("/nonexistent"))

    metrics = NodeMetrics("acme", "msk")
    metrics.watch_spool(spool)
    shipper = CdrShipper(
        spool,
        store_factory,
        batch_size=4,
        interval=0.05,
        max_backoff=0.3,
        on_shipped=metrics.cdrs_shipped,
        on_store=metrics.cdr_store_reachable,
    )
    before = make_record("before-outage", BASE_MS)
    during = [make_record(f"outage-{i}", BASE_MS + 1 + i) for i in range(10)]
    checker = store_factory()
    checker.migrate()
    await shipper.start()
    try:
        await asyncio.to_thread(spool.append, before)
        await wait_until(lambda: checker.count() == 1)
        await asyncio.to_thread(clickhouse_server.crash)
        try:
            for record in during:
                await asyncio.to_thread(spool.append, record)
            await wait_until(lambda: shipper.state is ShipperState.OUTAGE)
            await asyncio.sleep(0.5)  # several failed retries
            assert spool.pending_count() == len(during)
            # What the operator's dashboard and alerts see during the outage.
            assert scraped(metrics.registry, "vpbx_cdr_store_up") == 0
            assert scraped(metrics.registry, "vpbx_cdr_spool_backlog") == len(during)
            assert scraped(metrics.registry, "vpbx_cdr_shipped_total") == 1
        finally:
            await asyncio.to_thread(clickhouse_server.start)
        await wait_until(lambda: checker.count() == 1 + len(during), within=30)
        await wait_until(lambda: shipper.state is ShipperState.SHIPPING)
    finally:
        await shipper.stop()
    stored = checker.last(100)
    assert sorted(r.call_id for r in stored) == sorted(r.call_id for r in [before, *during])
    assert spool.pending_count() == 0
    assert scraped(metrics.registry, "vpbx_cdr_store_up") == 1
    assert scraped(metrics.registry, "vpbx_cdr_spool_backlog") == 0
    assert scraped(metrics.registry, "vpbx_cdr_shipped_total") == 1 + len(during)
    checker.close()


async def test_stop_returns_promptly_while_the_store_is_down(spool: CdrSpool) -> None:
    dead_url = f"clickhouse://127.0.0.1:{free_port()}/default"
    shipper = CdrShipper(
        spool, lambda: open_cdr_store(dead_url, Path("/nonexistent")), interval=0.05, stop_timeout=3
    )
    spool.append(make_record("stuck"))
    await shipper.start()
    await wait_until(lambda: shipper.state is ShipperState.OUTAGE)
    began = time.monotonic()
    await shipper.stop()
    assert time.monotonic() - began < 4
    assert [r.call_id for r in spool.pending(10).records] == ["stuck"]

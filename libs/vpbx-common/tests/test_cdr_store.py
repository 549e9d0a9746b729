"""CDR record, schema migrations and both store backends (a real ClickHouse 18.16 server, chdb)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpbx_common.cdr import (
    CallRecord,
    CdrStore,
    CdrStoreUnavailableError,
    Direction,
    EndReason,
    HangupBy,
    OpenCall,
    open_cdr_store,
)

BASE_MS = 1_763_800_000_000  # 2025-11-22, a plain modern epoch-ms value


def make_record(
    call_id: str,
    *,
    tenant: str = "acme",
    start_ms: int = BASE_MS,
    answered: bool = True,
    end_reason: EndReason = EndReason.COMPLETED,
    label: str = "",
) -> CallRecord:
    answer_ms = start_ms + 4_250 if answered else None
    return CallRecord.build(
        call_id=call_id,
        tenant=tenant,
        city="novosibirsk",
        node="acme-nsk-0",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+73832000000",
        label=label,
        answered_by="101" if answered else "",
        start_ms=start_ms,
        answer_ms=answer_ms,
        end_ms=start_ms + 65_123,
        end_reason=end_reason,
        sip_status=200 if answered else 487,
        hangup_by=HangupBy.CALLER,
    )


# -- the record ------------------------------------------------------------------------------


def test_build_computes_ring_and_talk_from_the_times() -> None:
    record = make_record("c-1")
    assert (record.ring_ms, record.talk_ms) == (4_250, 60_873)
    unanswered = make_record("c-2", answered=False, end_reason=EndReason.CANCELLED)
    assert (unanswered.ring_ms, unanswered.talk_ms) == (65_123, 0)


def test_json_round_trip_is_exact() -> None:
    record = make_record("a@b/c", label="billboard 'Lenina' \\ 2")
    assert CallRecord.from_json(record.to_json()) == record
    assert CallRecord.loads(record.dumps()) == record


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ring_ms": 1}, "do not match"),
        ({"end_ms": BASE_MS - 1}, "ends before it starts"),
        ({"end_reason": "completed", "answer_ms": None}, "answer time|do not match|answered"),
        ({"direction": "sideways"}, "unknown value"),
        ({"start_ms": True}, "must be int"),
        ({"sip_status": 42}, "out of range"),
    ],
)
def test_inconsistent_records_are_rejected(change: dict[str, object], message: str) -> None:
    data = make_record("c-3").to_json() | change
    with pytest.raises(ValueError, match=message):
        CallRecord.from_json(data)


def test_cancelled_call_cannot_have_an_answer_time() -> None:
    with pytest.raises(ValueError, match="but answered"):
        make_record("c-4", answered=True, end_reason=EndReason.CANCELLED)


def test_lost_open_call_becomes_node_lost_record_within_the_call() -> None:
    call = OpenCall(
        call_id="x",
        tenant="acme",
        city="nsk",
        node="n",
        direction=Direction.OUTBOUND,
        caller="101",
        dialled="+74950000000",
        start_ms=BASE_MS,
        answer_ms=BASE_MS + 1_000,
        answered_by="101",
        sip_status=200,
    )
    record = call.lost(BASE_MS + 500)  # clock said earlier than the answer: clamp, do not fail
    assert record.end_reason is EndReason.NODE_LOST
    assert record.hangup_by is HangupBy.SYSTEM
    assert record.end_ms == BASE_MS + 1_000
    assert OpenCall.from_json(call.to_json()) == call


# -- both backends ---------------------------------------------------------------------------


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def store(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[CdrStore]:
    url: str | None = None
    if request.param == "clickhouse-18.16":
        url = request.getfixturevalue("clickhouse_database_url")
    cdr_store = open_cdr_store(url, chdb_path)
    cdr_store.migrate()
    try:
        yield cdr_store
    finally:
        cdr_store.close()


def test_round_trip_through_the_store(store: CdrStore) -> None:
    answered = make_record("rt-1", label="radio 'Europa+'\n\\ tab\t")
    missed = make_record(
        "rt-2", answered=False, end_reason=EndReason.NO_ANSWER, start_ms=BASE_MS + 1
    )
    store.insert([answered, missed])
    assert store.get("rt-1") == answered
    assert store.get("rt-2") == missed
    assert store.get("nope") is None


def test_every_enum_value_is_storable(store: CdrStore) -> None:
    records = []
    for index, reason in enumerate(EndReason):
        answered = reason in (EndReason.COMPLETED, EndReason.NODE_LOST)
        base = make_record(f"enum-{index}", answered=answered, end_reason=reason)
        args = base.to_json()
        del args["ring_ms"], args["talk_ms"]
        args["direction"] = list(Direction)[index % len(Direction)]
        args["hangup_by"] = list(HangupBy)[index % len(HangupBy)]
        args["end_reason"] = reason
        records.append(CallRecord.build(**args))
    store.insert(records)
    stored = {record.call_id: record for record in store.last(100)}
    assert stored == {record.call_id: record for record in records}


def test_inserting_the_same_call_twice_yields_one_row(store: CdrStore) -> None:
    record = make_record("dup-1")
    store.insert([record, record])
    store.insert([record])
    assert store.last(10) == [record]
    assert store.count() == 1


def test_real_cdr_wins_over_a_node_lost_duplicate(store: CdrStore) -> None:
    real = make_record("race-1")
    lost = OpenCall(
        call_id="race-1",
        tenant=real.tenant,
        city=real.city,
        node=real.node,
        direction=real.direction,
        caller=real.caller,
        dialled=real.dialled,
        start_ms=real.start_ms,
        answer_ms=real.answer_ms,
        answered_by=real.answered_by,
        sip_status=200,
    ).lost(real.end_ms - 10)
    store.insert([real])
    store.insert([lost])  # recovery after a crash between spooling and end_call
    assert store.get("race-1") == real
    assert store.last(5) == [real]


def test_last_is_newest_first_and_tenant_scoped(store: CdrStore) -> None:
    acme = [make_record(f"acme-{i}", start_ms=BASE_MS + i * 1_000) for i in range(5)]
    other = [
        make_record(f"other-{i}", tenant="globex", start_ms=BASE_MS + 500 + i) for i in range(3)
    ]
    store.insert(acme + other)
    assert [r.call_id for r in store.last(3, tenant="acme")] == ["acme-4", "acme-3", "acme-2"]
    assert {r.tenant for r in store.last(100, tenant="globex")} == {"globex"}
    assert len(store.last(100)) == 8
    assert store.last(1)[0].call_id == "acme-4"
    assert store.last(0) == []
    assert store.last(5, tenant="nobody") == []


def test_migrate_is_idempotent(store: CdrStore) -> None:
    # The fixture already migrated once.
    assert store.migrate() == []
    assert store.migrate() == []
    assert store.applied_migrations() == [1]
    store.insert([make_record("after-migrate")])
    assert store.count() == 1


def test_first_migrate_applies_version_one(chdb_path: Path, clickhouse_database_url: str) -> None:
    for url in (clickhouse_database_url, None):
        fresh = open_cdr_store(url, chdb_path)
        try:
            assert fresh.migrate() == [1]
            assert fresh.migrate() == []
        finally:
            fresh.close()


def test_unreachable_clickhouse_is_reported_as_unavailable(tmp_path: Path) -> None:
    from tests.services.ports import free_port

    dead = open_cdr_store(f"clickhouse://127.0.0.1:{free_port()}/default", tmp_path)
    try:
        with pytest.raises(CdrStoreUnavailableError):
            dead.insert([make_record("lost?")])
    finally:
        dead.close()


_WRITER = """
import sys
from pathlib import Path
from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, open_cdr_store

store = open_cdr_store(None, Path(sys.argv[1]))
store.migrate()
for batch in range(int(sys.argv[2])):
    records = [
        CallRecord.build(
            call_id=f"w-{batch}-{i}", tenant="acme", city="nsk", node="n",
            direction=Direction.INBOUND,
            caller="+79130000001", dialled="+73832000000", start_ms=1_763_800_000_000 + batch,
            answer_ms=None, end_ms=1_763_800_001_000 + batch, end_reason=EndReason.NO_ANSWER,
            sip_status=480, hangup_by=HangupBy.SYSTEM,
        )
        for i in range(5)
    ]
    store.insert(records)
print("done", flush=True)
"""


def test_two_processes_share_one_chdb_dir(chdb_path: Path) -> None:
    batches = 25
    reader = open_cdr_store(None, chdb_path)
    reader.migrate()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(chdb_path), str(batches)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    queries = 0
    deadline = time.monotonic() + 60
    try:
        while writer.poll() is None and time.monotonic() < deadline:
            reader.last(10, tenant="acme")
            queries += 1
    finally:
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode(errors="replace")[-2000:]
    assert out.strip() == b"done"
    assert queries > 0
    assert reader.count(tenant="acme") == batches * 5

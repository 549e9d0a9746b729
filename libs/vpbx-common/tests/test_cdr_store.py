"""CDR record, schema migrations and both store backends (a real ClickHouse 18.16 server, chdb)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpbx_common.cdr import (
    MAX_ROUTE_STEPS,
    RECORD_COLUMNS,
    CallRecord,
    CdrQuery,
    CdrStore,
    CdrStoreUnavailableError,
    Direction,
    EndReason,
    HangupBy,
    OpenCall,
    RouteStep,
    bounded_route,
    dumps_route,
    loads_route,
    open_cdr_store,
    record_from_row,
)
from vpbx_common.cdr.migrations import MIGRATIONS, AddColumn
from vpbx_common.cdr.record import (
    MAX_ROUTE_DETAIL_CHARS,
    MAX_ROUTE_SUBJECT_CHARS,
    ROUTE_TRUNCATED,
    UNANSWERED_REASONS,
)
from vpbx_common.cdr.store import Connection, Row, SqlValue, run_migration

BASE_MS = 1_763_800_000_000  # 2025-11-22, a plain modern epoch-ms value


def make_record(
    call_id: str,
    *,
    tenant: str = "acme",
    start_ms: int = BASE_MS,
    answered: bool = True,
    end_reason: EndReason = EndReason.COMPLETED,
    label: str = "",
    route: tuple[RouteStep, ...] = (),
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
        route=route,
    )


# A route as the routing engine writes it (RouteEntry.as_dict() of a real trace): a group that
# skipped one member and timed out, an HTTP decision, then the operator's user answering.
SALES_ROUTE = (
    RouteStep(0.0, "plan:main step 1 (group)", "entered"),
    RouteStep(0.002, "group:sales", "skipped", "102", "on a call"),
    RouteStep(0.003, "group:sales", "ringing", "101"),
    RouteStep(20.004, "group:sales", "no-answer", None, "nobody answered in 20 s"),
    RouteStep(
        20.011,
        "plan:main step 2 (http decision)",
        "decided",
        None,
        'reply 200 {"target": "user:100"} — «оператор» \'quoted\'\n\\ tab\t',
    ),
    RouteStep(20.012, "user:100", "ringing", "100"),
    RouteStep(24.25, "user:100", "answered", "100"),
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


def test_voicemail_is_an_unanswered_end() -> None:
    assert EndReason("voicemail") is EndReason.VOICEMAIL
    assert EndReason.VOICEMAIL in UNANSWERED_REASONS
    left_a_message = make_record("vm-1", answered=False, end_reason=EndReason.VOICEMAIL)
    assert left_a_message.answer_ms is None
    assert CallRecord.loads(left_a_message.dumps()) == left_a_message
    with pytest.raises(ValueError, match="voicemail but answered"):
        make_record("vm-2", answered=True, end_reason=EndReason.VOICEMAIL)
    data = left_a_message.to_json() | {"answer_ms": BASE_MS + 1, "ring_ms": 1, "talk_ms": 65_122}
    with pytest.raises(ValueError, match="voicemail but answered"):
        CallRecord.from_json(data)


# -- the route -------------------------------------------------------------------------------


def test_record_with_a_route_round_trips_through_json() -> None:
    record = make_record("route-1", route=SALES_ROUTE)
    assert record.to_json()["route"][1] == {
        "after_s": 0.002,
        "subject": "group:sales",
        "outcome": "skipped",
        "member": "102",
        "detail": "on a call",
    }
    assert CallRecord.from_json(record.to_json()) == record
    assert CallRecord.loads(record.dumps()) == record
    assert loads_route(dumps_route(SALES_ROUTE)) == SALES_ROUTE
    assert dumps_route(()) == ""
    assert loads_route("") == ()


def test_route_steps_read_what_the_routing_engine_writes() -> None:
    from_engine = {
        "after_s": 1.2344999,
        "subject": "group:sales",
        "outcome": "no-answer",
        "member": None,
        "detail": "",
    }
    step = RouteStep.from_json(from_engine)
    assert step == RouteStep(1.234, "group:sales", "no-answer")
    assert RouteStep.from_json({"after_s": 3, "subject": "user:101", "outcome": "answered"}) == (
        RouteStep(3.0, "user:101", "answered")
    )
    assert str(step) == "+1.2s group:sales no-answer"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"after_s": -0.5, "subject": "s", "outcome": "entered"}, "finite number"),
        ({"after_s": float("nan"), "subject": "s", "outcome": "entered"}, "finite number"),
        ({"after_s": True, "subject": "s", "outcome": "entered"}, "must be a number"),
        ({"after_s": "1", "subject": "s", "outcome": "entered"}, "must be a number"),
        ({"after_s": 1, "subject": "s", "outcome": ""}, "outcome is empty"),
        ({"after_s": 1, "subject": "s"}, "'outcome' is missing"),
        ({"after_s": 1, "subject": 5, "outcome": "entered"}, "'subject' must be str"),
        ({"after_s": 1, "subject": "s", "outcome": "x", "member": 101}, "member must be str"),
        ({"after_s": 1, "subject": "s", "outcome": "x", "detail": None}, "'detail' must be str"),
    ],
)
def test_malformed_route_steps_are_rejected(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RouteStep.from_json(data)
    cdr = make_record("bad-route").to_json() | {"route": [data]}
    with pytest.raises(ValueError, match="'route': route step 0"):
        CallRecord.from_json(cdr)


def test_route_must_be_a_list_of_objects() -> None:
    for bad in ({"after_s": 1}, "[]", [1]):
        with pytest.raises(ValueError, match="'route'"):
            CallRecord.from_json(make_record("r").to_json() | {"route": bad})
    with pytest.raises(ValueError, match="not JSON"):
        loads_route("[{")


def test_old_spool_lines_and_journal_entries_without_a_route_load() -> None:
    old = make_record("old-1").to_json()
    del old["route"]
    assert CallRecord.from_json(old) == make_record("old-1")
    call = OpenCall("o", "acme", "nsk", "n", Direction.INBOUND, "101", "102", BASE_MS)
    entry = call.to_json()
    del entry["route"]
    assert OpenCall.from_json(entry) == call


def test_route_text_is_cut_to_its_bounds() -> None:
    long = RouteStep(1.0, "s" * 1_000, "decided", "m" * 500, "reply " + "x" * 10_000)
    assert len(long.subject) == MAX_ROUTE_SUBJECT_CHARS
    assert len(long.detail) == MAX_ROUTE_DETAIL_CHARS
    assert long.detail.startswith("reply xxx")
    assert long.detail.endswith("\u2026")
    assert long.member == "m" * 63 + "\u2026"
    # Cutting is idempotent, so a cut step survives any number of round trips unchanged.
    assert RouteStep.from_json(long.to_json()) == long


def test_a_looping_route_is_bounded_keeping_its_start_and_its_end() -> None:
    looping = [
        RouteStep(i * 0.5, f"plan:main step {i % 3 + 1}", "fell-through", None, "x" * 1_000)
        for i in range(5_000)
    ]
    record = make_record("loop-1", answered=False, end_reason=EndReason.NO_ANSWER, route=looping)
    route = record.route
    assert len(route) == MAX_ROUTE_STEPS
    assert route[0] == looping[0]
    assert route[-1] == looping[-1]
    (marker,) = [step for step in route if step.outcome == ROUTE_TRUNCATED]
    assert marker.detail == f"{5_000 - MAX_ROUTE_STEPS + 1} steps omitted"
    at = route.index(marker)
    assert route[at - 1].after_s < marker.after_s < route[at + 1].after_s
    assert bounded_route(route) == route
    assert len(record.dumps()) < 100_000  # a bounded row whatever the call did
    assert CallRecord.loads(record.dumps()) == record
    # The constructor refuses an unbounded route; from_json bounds one written elsewhere.
    with pytest.raises(ValueError, match="more than 200"):
        dataclasses.replace(record, route=tuple(looping))
    data = record.to_json() | {"route": [step.to_json() for step in looping]}
    assert CallRecord.from_json(data) == record


def test_lost_open_call_keeps_its_route_so_far() -> None:
    call = OpenCall(
        call_id="y",
        tenant="acme",
        city="nsk",
        node="n",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+73832000000",
        start_ms=BASE_MS,
        route=SALES_ROUTE[:3],
    )
    assert OpenCall.from_json(call.to_json()) == call
    assert call.lost(BASE_MS + 10_000).route == SALES_ROUTE[:3]


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


# -- the CRM contact -------------------------------------------------------------------------

CONTACT_COLUMNS = {
    "contact_id": "ct-7",
    "contact_category": "supplier",
    "contact_vip": True,
    "contact_owner_user_id": "0b5e2c4c-8c1e-4a53-9a7d-3c2f1e0d9b8a",
}


def with_contact(record: CallRecord) -> CallRecord:
    return dataclasses.replace(record, **CONTACT_COLUMNS)


def test_the_contact_round_trips_through_json_and_survives_a_lost_node() -> None:
    record = with_contact(make_record("ct-1"))
    assert {name: record.to_json()[name] for name in CONTACT_COLUMNS} == CONTACT_COLUMNS
    assert CallRecord.loads(record.dumps()) == record
    plain = OpenCall("o", "acme", "nsk", "n", Direction.INBOUND, "+7913", "+7383", BASE_MS)
    call = OpenCall.from_json(plain.to_json() | CONTACT_COLUMNS)
    assert OpenCall.from_json(call.to_json()) == call
    lost = call.lost(BASE_MS + 1_000)
    assert {name: lost.to_json()[name] for name in CONTACT_COLUMNS} == CONTACT_COLUMNS


def test_lines_written_before_contacts_load_without_one() -> None:
    old = make_record("old-ct").to_json()
    for name in CONTACT_COLUMNS:
        del old[name]
    record = CallRecord.from_json(old)
    assert (record.contact_id, record.contact_category) == ("", "")
    assert (record.contact_vip, record.contact_owner_user_id) == (False, "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"contact_vip": 1}, "'contact_vip' must be bool"),
        ({"contact_id": None}, "'contact_id' must be str"),
        ({"contact_id": "", "contact_category": "client"}, "without a contact id"),
    ],
)
def test_malformed_contact_columns_are_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CallRecord.from_json(with_contact(make_record("bad-ct")).to_json() | change)


# -- both backends ---------------------------------------------------------------------------


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def empty_store(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[CdrStore]:
    """A store on a fresh, unmigrated database of either backend."""
    url: str | None = None
    if request.param == "clickhouse-18.16":
        url = request.getfixturevalue("clickhouse_database_url")
    cdr_store = open_cdr_store(url, chdb_path)
    try:
        yield cdr_store
    finally:
        cdr_store.close()


@pytest.fixture
def store(empty_store: CdrStore) -> CdrStore:
    empty_store.migrate()
    return empty_store


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


def test_the_contact_columns_round_trip_through_the_store(store: CdrStore) -> None:
    known = with_contact(make_record("ct-rt-1"))
    unknown = make_record("ct-rt-2", start_ms=BASE_MS + 1)
    plain_client = dataclasses.replace(
        make_record("ct-rt-3", start_ms=BASE_MS + 2), contact_id="ct-9", contact_category="client"
    )
    store.insert([known, unknown, plain_client])
    assert store.get("ct-rt-1") == known
    assert store.get("ct-rt-2") == unknown
    assert store.get("ct-rt-3") == plain_client
    [[vip_calls]] = store.read(
        CdrQuery(
            "SELECT count() FROM cdr FINAL WHERE tenant = {tenant} AND contact_vip = 1"
            " AND contact_category = {category}",
            {"tenant": "acme", "category": "supplier"},
        )
    )
    assert int(vip_calls[0]) == 1


def test_rows_written_before_migration_6_read_back_without_a_contact(
    empty_store: CdrStore,
) -> None:
    assert empty_store.migrate(up_to=5) == [1, 2, 3, 4, 5]
    old = dataclasses.replace(
        make_record("before-v6"), recording="recordings/acme/2026/12/07/before-v6.ogg"
    )
    columns = [c for c in RECORD_COLUMNS if not c.startswith("contact_")]
    fields = old.to_json()
    fields["route"] = dumps_route(old.route)
    row: tuple[SqlValue, ...] = (*(fields[c] for c in columns), old.end_ms + (1 << 56))
    with empty_store._connect() as conn:
        conn.insert(f"INSERT INTO cdr ({', '.join(columns)}, version) VALUES", [row])
    assert empty_store.migrate() == [6, 7, 8]
    assert empty_store.get("before-v6") == old
    with empty_store._connect() as conn:
        run_migration(conn, MIGRATIONS[5])  # a crash before the bookkeeping row: harmless
        types = conn.execute(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase()"
            " AND table = 'cdr' AND name LIKE 'contact_%' ORDER BY name"
        )
    assert [tuple(t) for t in types] == [
        ("contact_category", "String"),
        ("contact_id", "String"),
        ("contact_owner_user_id", "String"),
        ("contact_vip", "UInt8"),
    ]
    newer = with_contact(make_record("after-v6", start_ms=BASE_MS + 1))
    empty_store.insert([newer])
    assert empty_store.last(5) == [newer, old]


def test_migrate_is_idempotent(store: CdrStore) -> None:
    # The fixture already migrated once.
    assert store.migrate() == []
    assert store.migrate() == []
    assert store.applied_migrations() == [1, 2, 3, 4, 5, 6, 7, 8]
    store.insert([make_record("after-migrate")])
    assert store.count() == 1


def test_first_migrate_applies_every_version(chdb_path: Path, clickhouse_database_url: str) -> None:
    for url in (clickhouse_database_url, None):
        fresh = open_cdr_store(url, chdb_path)
        try:
            assert fresh.migrate() == [1, 2, 3, 4, 5, 6, 7, 8]
            assert fresh.migrate() == []
        finally:
            fresh.close()


def test_a_callback_booked_from_the_queue_is_its_own_end_reason(store: CdrStore) -> None:
    booked = make_record("callback-1", answered=False, end_reason=EndReason.CALLBACK)
    store.insert([booked])
    assert store.get("callback-1") == booked


def test_routes_round_trip_through_the_store(store: CdrStore) -> None:
    routed = make_record("route-rt-1", route=SALES_ROUTE)
    voicemail = make_record(
        "route-rt-2",
        answered=False,
        end_reason=EndReason.VOICEMAIL,
        start_ms=BASE_MS + 1,
        route=(
            *SALES_ROUTE[:4],
            RouteStep(20.01, "voicemail:sales", "recorded", None, "message of 31 s"),
        ),
    )
    looping = make_record(
        "route-rt-3",
        answered=False,
        end_reason=EndReason.NO_ANSWER,
        start_ms=BASE_MS + 2,
        route=[
            RouteStep(i * 0.25, "s" * 500, "fell-through", "m" * 100, "d" * 1_000)
            for i in range(1_000)
        ],
    )
    unrouted = make_record("route-rt-4", start_ms=BASE_MS + 3)
    store.insert([routed, voicemail, looping, unrouted])
    assert store.get("route-rt-1") == routed
    assert store.get("route-rt-2") == voicemail
    assert store.get("route-rt-3") == looping
    assert store.get("route-rt-4") == unrouted
    assert [r.call_id for r in store.last(10)] == [f"route-rt-{i}" for i in (4, 3, 2, 1)]
    assert len(looping.route) == MAX_ROUTE_STEPS


_V1_COLUMNS = (
    "call_id, tenant, city, node, direction, caller, dialled, label, answered_by, start_ms,"
    " answer_ms, end_ms, ring_ms, talk_ms, end_reason, sip_status, hangup_by, version"
)


def _insert_v1_row(store: CdrStore, record: CallRecord) -> None:
    """A row as a store from before migration 2 wrote it (no route column)."""
    fields = record.to_json()
    row: tuple[SqlValue, ...] = (
        *(fields[name.strip()] for name in _V1_COLUMNS.split(",")[:-1]),
        record.end_ms + (1 << 56),
    )
    with store._connect() as conn:
        conn.insert(f"INSERT INTO cdr ({_V1_COLUMNS}) VALUES", [row])


def test_rows_written_before_the_route_column_read_back_without_a_route(
    empty_store: CdrStore,
) -> None:
    assert empty_store.migrate(up_to=1) == [1]
    old = make_record("before-v2")
    _insert_v1_row(empty_store, old)
    assert empty_store.migrate() == [2, 3, 4, 5, 6, 7, 8]
    assert empty_store.get("before-v2") == old
    assert empty_store.get("before-v2").route == ()  # type: ignore[union-attr]
    assert empty_store.get("before-v2").recording == ""  # type: ignore[union-attr]
    newer = make_record("after-v2", start_ms=BASE_MS + 1, route=SALES_ROUTE)
    newer = dataclasses.replace(newer, recording="recordings/acme/2026/12/07/after-v2.ogg")
    empty_store.insert([newer])
    assert empty_store.last(5) == [newer, old]


def test_migration_two_applied_twice_is_harmless(empty_store: CdrStore) -> None:
    assert empty_store.migrate(up_to=1) == [1]
    old = make_record("old-row", answered=False, end_reason=EndReason.BUSY)
    _insert_v1_row(empty_store, old)
    # A crash after the ALTERs but before the bookkeeping row: the next migrate runs them again.
    with empty_store._connect() as conn:
        run_migration(conn, MIGRATIONS[1])
        run_migration(conn, MIGRATIONS[1])
    assert empty_store.applied_migrations() == [1]
    assert empty_store.migrate() == [2, 3, 4, 5, 6, 7, 8]
    with empty_store._connect() as conn:
        run_migration(conn, MIGRATIONS[1])
        columns = conn.execute(
            "SELECT name, type FROM system.columns"
            " WHERE database = currentDatabase() AND table = 'cdr' AND name = 'route'"
        )
    assert [tuple(c) for c in columns] == [("route", "String")]
    assert empty_store.migrate() == []
    assert empty_store.get("old-row") == old
    voicemail = make_record(
        "vm", answered=False, end_reason=EndReason.VOICEMAIL, start_ms=BASE_MS + 1
    )
    empty_store.insert([voicemail])
    assert empty_store.last(5) == [voicemail, old]


class _RacingConnection(Connection):
    """Says the column is missing, then fails the ALTER as if another process just added it."""

    def __init__(self, added_meanwhile: bool) -> None:
        self.added_meanwhile = added_meanwhile
        self.statements: list[str] = []
        self.checks = 0

    def execute(self, sql: str) -> list[Row]:
        self.statements.append(sql)
        if sql.startswith("SELECT count() FROM system.columns"):
            self.checks += 1
            return [(1 if self.checks > 1 and self.added_meanwhile else 0,)]
        if " ADD COLUMN " not in sql:
            return []
        raise RuntimeError("Code: 15. Cannot add column `route`: column with this name exists")

    def insert(self, sql: str, rows: object) -> None:
        raise AssertionError("no inserts here")


def test_a_column_added_concurrently_is_not_an_error() -> None:
    step = MIGRATIONS[1].statements[0]
    assert isinstance(step, AddColumn)
    raced = _RacingConnection(added_meanwhile=True)
    run_migration(raced, MIGRATIONS[1])
    assert step.sql in raced.statements
    with pytest.raises(RuntimeError, match="Cannot add column"):
        run_migration(_RacingConnection(added_meanwhile=False), MIGRATIONS[1])


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


# -- bound reads (the control API's queries) ----------------------------------------------------


def test_query_binds_values_as_literals_in_one_pass() -> None:
    query = CdrQuery(
        "SELECT call_id FROM cdr WHERE tenant = {tenant} AND caller = {caller} LIMIT {n}",
        {"tenant": "acme' OR '1'='1", "caller": "{tenant}", "n": 5},
    )
    assert query.render() == (
        "SELECT call_id FROM cdr WHERE tenant = 'acme\\' OR \\'1\\'=\\'1'"
        " AND caller = '{tenant}' LIMIT 5"
    )
    with pytest.raises(ValueError, match="no value for placeholder"):
        CdrQuery("SELECT {missing}").render()
    with pytest.raises(ValueError, match="without a placeholder: extra"):
        CdrQuery("SELECT 1", {"extra": 1}).render()


def test_read_runs_bound_queries_in_one_session(store: CdrStore) -> None:
    hostile = "x' OR '1'='1"
    store.insert([make_record("q-1", label=hostile), make_record("q-2", tenant="globex")])
    columns = ", ".join(RECORD_COLUMNS)
    by_label, counted = store.read(
        CdrQuery(
            f"SELECT {columns} FROM cdr FINAL WHERE tenant = {{tenant}} AND label = {{label}}",  # noqa: S608
            {"tenant": "acme", "label": hostile},
        ),
        CdrQuery("SELECT count() FROM cdr FINAL WHERE tenant = {tenant}", {"tenant": hostile}),
    )
    assert [record_from_row(row) for row in by_label] == [make_record("q-1", label=hostile)]
    assert int(counted[0][0]) == 0

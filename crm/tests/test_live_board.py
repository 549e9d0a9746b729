"""The live board's state machine (pure): calls in progress, queue waits, agent states.

Times are the events' own (a fake clock: milliseconds chosen by the test), so waits and
wrap-ups are exact numbers, never measured.
"""

from __future__ import annotations

from typing import Any

from vpbx_common.crm import CrmContact
from vpbx_common.events import CallEvent, CallEventType
from vpbx_common.queues import Waiting
from vpbx_control.auth.principal import Role
from vpbx_control.identity.schemas import Directory, DirectoryGroup, DirectoryUser
from vpbx_crm.identity import TenantDirectory
from vpbx_crm.live import messages
from vpbx_crm.live.board import (
    ENDED_MEMORY_MS,
    QUEUE_READ_GRACE_MS,
    AgentActivity,
    CallState,
    TenantBoard,
)

T0 = 1_800_000_000_000
CALLER = "+79161234567"
MAIN = "+74950000001"
WRAP_UP_S = {"101": 0, "102": 30}


def wrap_up(extension: str) -> int:
    return WRAP_UP_S.get(extension, 0)


def event(kind: CallEventType, at_ms: int, call_id: str = "c1", **fields: Any) -> CallEvent:
    values: dict[str, Any] = {
        "type": kind,
        "call_id": call_id,
        "tenant": "acme",
        "city": "nsk",
        "node": "vpbx-node-acme-nsk",
        "number": MAIN,
        "caller": CALLER,
        "callee": "",
        "at_ms": at_ms,
        "direction": "inbound",
        "label": "billboard",
    }
    values.update(fields)
    return CallEvent(**values)


def queued(at_ms: int, call_id: str = "c1", queue: str = "support", **more: Any) -> CallEvent:
    return event(CallEventType.QUEUED, at_ms, call_id, queue=queue, position=1, **more)


def offered(at_ms: int, *extensions: str, call_id: str = "c1") -> CallEvent:
    return event(CallEventType.OFFERED, at_ms, call_id, offered=extensions)


def directory() -> TenantDirectory:
    users = [
        DirectoryUser(
            id=f"u-{ext}",
            name=name,
            email=f"{ext}@acme.test",
            role=Role.AGENT,
            extension=ext,
            city="nsk",
            presence="available",
            wrap_up_s=WRAP_UP_S[ext],
        )
        for ext, name in (("101", "Olga"), ("102", "Petr"))
    ]
    return TenantDirectory(
        Directory(
            tenant_id="acme",
            users=users,
            groups=[DirectoryGroup(id="g1", name="support", member_user_ids=["u-101", "u-102"])],
            numbers=[],
        )
    )


def test_a_queued_caller_waits_rings_goes_back_to_its_place_then_talks_and_wraps_up() -> None:
    board = TenantBoard()
    assert board.apply(queued(T0), wrap_up) == set()
    [call] = board.in_progress()
    assert (call.state, call.queue, call.since_ms, call.party) == (
        CallState.QUEUED,
        "support",
        T0,
        CALLER,
    )

    # Offered to 101 after 30 s: the call rings, 101 rings, and it still holds its place.
    assert board.apply(offered(T0 + 30_000, "101"), wrap_up) == {"101"}
    assert (call.state, call.since_ms, call.queue) == (CallState.RINGING, T0 + 30_000, "support")
    assert board.state_of("101", T0 + 31_000).activity is AgentActivity.RINGING

    # 101 does not answer: back at its place, nobody rings; the wait counts from T0.
    assert board.apply(queued(T0 + 45_000), wrap_up) == {"101"}
    assert (call.state, call.since_ms, sorted(call.offered)) == (CallState.QUEUED, T0, [])
    assert board.state_of("101", T0 + 46_000).activity is AgentActivity.IDLE

    board.apply(offered(T0 + 50_000, "102"), wrap_up)
    left = event(CallEventType.DEQUEUED, T0 + 55_000, queue="support", queue_left="answered")
    board.apply(left, wrap_up)
    assert call.state is CallState.RINGING  # the answer is on its way: 102 still rings
    touched = board.apply(event(CallEventType.ANSWERED, T0 + 55_100, callee="102"), wrap_up)
    assert touched == {"102"}
    assert (call.state, call.since_ms, call.queue, call.answered_by) == (
        CallState.TALKING,
        T0 + 55_100,
        "",
        "102",
    )
    assert board.state_of("102", T0 + 60_000).activity is AgentActivity.TALKING

    ended = event(CallEventType.ENDED, T0 + 115_100, callee="102", end_reason="completed")
    assert board.apply(ended, wrap_up) == {"102"}
    assert board.in_progress() == []
    after = board.state_of("102", T0 + 120_000)
    assert (after.activity, after.since_ms, after.until_ms) == (
        AgentActivity.WRAP_UP,
        T0 + 115_100,
        T0 + 145_100,
    )
    assert board.state_of("102", T0 + 145_100).activity is AgentActivity.IDLE


def test_leaving_the_queue_by_a_key_stops_the_offer_and_the_call_routes_on() -> None:
    board = TenantBoard()
    board.apply(queued(T0), wrap_up)
    board.apply(offered(T0 + 5_000, "101"), wrap_up)
    left = event(CallEventType.DEQUEUED, T0 + 6_000, queue="support", queue_left="pressed 0")
    assert board.apply(left, wrap_up) == {"101"}
    [call] = board.in_progress()
    assert (call.state, call.queue, call.since_ms) == (CallState.ROUTING, "", T0)


def test_a_straggling_queue_event_after_the_end_does_not_bring_the_call_back() -> None:
    board = TenantBoard()
    board.apply(queued(T0), wrap_up)
    board.apply(event(CallEventType.ENDED, T0 + 9_000, end_reason="cancelled"), wrap_up)
    late = event(CallEventType.DEQUEUED, T0 + 8_900, queue="support", queue_left="hung up")
    board.apply(late, wrap_up)
    board.apply(queued(T0 + 8_800), wrap_up)
    assert board.in_progress() == []
    assert board.ended("c1")
    # Much later the id is forgotten (another call's events keep the board's clock).
    board.apply(queued(T0 + 9_000 + ENDED_MEMORY_MS + 1, call_id="c2"), wrap_up)
    assert not board.ended("c1")


def test_the_board_orders_calls_and_keeps_what_each_event_said() -> None:
    board = TenantBoard()
    contact = CrmContact(id="ct-1", name="Ivan Petrov", category="client", vip=True)
    board.apply(queued(T0, contact=contact.to_dict()), wrap_up)
    board.apply(
        event(CallEventType.RINGING, T0 - 5_000, "c0", caller="101", callee="+79130000000"),
        wrap_up,
    )
    rows = [messages.call_row(call, directory()) for call in board.in_progress()]
    assert [(row["call_id"], row["state"]) for row in rows] == [
        ("c0", "ringing"),
        ("c1", "queued"),
    ]
    assert rows[1] | {"contact": None} == {
        "call_id": "c1",
        "state": "queued",
        "since_ms": T0,
        "started_ms": T0,
        "direction": "inbound",
        "caller": CALLER,
        "callee": "",
        "contact": None,
        "number": MAIN,
        "label": "billboard",
        "city": "nsk",
        "node": "vpbx-node-acme-nsk",
        "queue": "support",
        "queued_ms": T0,
        "ringing": [],
        "answered_by": "",
        "answered_by_name": "",
        "partial": False,
    }
    assert rows[1]["contact"]["name"] == "Ivan Petrov"
    assert rows[1]["contact"]["vip"] is True
    board.apply(event(CallEventType.ANSWERED, T0 + 1_000, "c1", callee="101"), wrap_up)
    row = messages.call_row(board.calls["c1"], directory())
    assert (row["state"], row["answered_by"], row["answered_by_name"]) == ("talking", "101", "Olga")


def test_redis_completes_the_queues_a_late_replica_never_saw_and_clears_missed_leaves() -> None:
    board = TenantBoard()
    read_ms = T0 + 60_000
    # This replica saw c1 join (long ago) and c3 join just as Redis was read; Redis
    # knows c2 (joined before this replica started) and c3, but c1 left meanwhile.
    board.apply(queued(T0), wrap_up)
    board.apply(queued(read_ms - QUEUE_READ_GRACE_MS + 1, call_id="c3"), wrap_up)
    waiting = [Waiting("c2", "support", T0 + 10_000), Waiting("c3", "support", read_ms - 500)]
    changed, gone = board.complete_queues(waiting, ["support"], read_ms)
    assert (changed, gone) == ({"c1", "c2"}, set())
    c2 = board.calls["c2"]
    assert (c2.state, c2.queue, c2.since_ms, c2.partial) == (
        CallState.QUEUED,
        "support",
        T0 + 10_000,
        True,
    )
    assert board.calls["c1"].state is CallState.ROUTING  # its leave was missed: not waiting
    assert board.calls["c3"].state is CallState.QUEUED  # news fresher than the read

    # c2's own events fill in the rest; a caller gone from Redis that the board knew only
    # from there leaves the board.
    board.apply(offered(read_ms + 1_000, "101", call_id="c2"), wrap_up)
    assert (board.calls["c2"].partial, board.calls["c2"].party) == (False, CALLER)
    waiting = [Waiting("c4", "support", T0 + 20_000)]
    board.complete_queues(waiting, ["support"], read_ms + 2_000)
    changed, gone = board.complete_queues([], ["support"], read_ms + 10_000)
    assert "c4" in gone
    assert "c4" not in board.calls
    assert board.calls["c2"].state is CallState.RINGING  # offered: its own events tell
    # A queue not read (another tenant's group, or none listed) is left as it is.
    board.apply(queued(read_ms, call_id="c5", queue="sales"), wrap_up)
    board.complete_queues([], ["support"], read_ms + 60_000)
    assert board.calls["c5"].queue == "sales"


def test_redis_brings_talks_this_replica_never_saw_and_takes_them_away_when_they_end() -> None:
    board = TenantBoard()
    board.apply(event(CallEventType.ANSWERED, T0, "seen", callee="101"), wrap_up)
    board.apply(event(CallEventType.ENDED, T0 + 1_000, "over", end_reason="completed"), wrap_up)
    talking = [("101", "seen"), ("102", "elsewhere"), ("102", "over")]
    changed, gone = board.complete_talking(talking, T0 + 5_000)
    assert (changed, gone) == ({"elsewhere"}, set())  # an ended call is not brought back
    far = board.calls["elsewhere"]
    assert (far.state, far.answered_by, far.since_ms, far.partial) == (
        CallState.TALKING,
        "102",
        T0 + 5_000,
        True,
    )
    assert board.state_of("102", T0 + 6_000).activity is AgentActivity.TALKING
    changed, gone = board.complete_talking([("101", "seen")], T0 + 9_000)
    assert (changed, gone) == (set(), {"elsewhere"})
    assert set(board.calls) == {"seen"}  # a call whose events it saw goes by its events

"""Route plans step by step, schedules, targets and how the router ends a call."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from vpbx_common.cdr import EndReason
from vpbx_common.nodeconfig import (
    ExternalTarget,
    HangupReason,
    HangupTarget,
    NodeConfig,
    RoutePlanTarget,
    ScheduleEntry,
    Target,
    UnroutedTarget,
)
from vpbx_media.node.routing import (
    MAX_PLAN_JUMPS,
    AgentSnapshot,
    CallContext,
    CallerHungUp,
    CallRouter,
    Done,
    Hangup,
    MemberAnswered,
    MemberFailed,
    MemberFailure,
    Outcome,
    RecordVoicemail,
    Ring,
    RouteResult,
    StopRinging,
    hangup_status,
    schedule_state,
)
from vpbx_media.node.routing.router import FORWARD_RING_S
from vpbx_media.node.routing.simulator import Simulator

MONDAY_0630_UTC = dt.datetime(2025, 3, 3, 6, 30, tzinfo=dt.UTC)  # 09:30 in Moscow
CALL = CallContext(
    call_id="c1", tenant="acme", number="+74950000001", caller="+79160000000", city="msk"
)
SCHEDULE = {
    "name": "office",
    "id": "s-1",
    "time_zone": "Europe/Moscow",
    "weekly": [
        {"day": day, "start": "09:00", "end": "18:00"}
        for day in ("mon", "tue", "wed", "thu", "fri")
    ],
    "special_days": [
        {"date": "2025-03-10", "name": "Holiday", "hours": []},
        {"date": "2025-03-07", "name": "Short day", "hours": [{"start": "09:00", "end": "13:00"}]},
    ],
}


def config(*plans: dict[str, Any], **extra: Any) -> NodeConfig:
    document: dict[str, Any] = {
        "tenant": "acme",
        "display_name": "Acme",
        "sip_domain": "acme.pbx",
        "city": "msk",
        "suspended": False,
        "users": [
            {"extension": ext, "name": ext, "city": "msk", "settings": {"voicemail": False}}
            for ext in ("101", "102", "103")
        ],
        "groups": [
            {"name": "sales", "members": ["101", "102"], "ring_timeout_s": 20},
            {
                "name": "support",
                "members": ["103"],
                "ring_timeout_s": 15,
                "overflow": {"type": "hangup", "reason": "busy"},
            },
        ],
        "numbers": [],
        "schedules": [SCHEDULE],
        "route_plans": list(plans),
    }
    document.update(extra)
    return NodeConfig.model_validate(document)


def plan(name: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "id": f"id-{name}", "steps": list(steps)}


def group_step(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "group", "target": {"type": "group", "name": name}, **fields}


def simulate(
    cfg: NodeConfig, target: Target | None = None, at: dt.datetime = MONDAY_0630_UTC
) -> Simulator:
    router = CallRouter(
        CALL,
        cfg,
        AgentSnapshot(),
        target or RoutePlanTarget(name="main"),
        epoch_offset=at.timestamp(),
    )
    sim = Simulator(router)
    sim.start()
    return sim


def rang(sim: Simulator) -> list[tuple[float, tuple[str, ...]]]:
    return [(t, ring.extensions) for t, ring in sim.of(Ring)]


def ended(sim: Simulator) -> Hangup:
    (_, hangup), *_ = sim.of(Hangup)
    return hangup


def details(sim: Simulator, outcome: Outcome) -> list[str]:
    return [entry.detail for entry in sim.router.route if entry.outcome is outcome]


# --- schedules ------------------------------------------------------------------------


def schedule_plan() -> NodeConfig:
    return config(
        plan(
            "main",
            {
                "type": "schedule",
                "schedule": "office",
                "open": [group_step("sales")],
                "closed": [{"type": "hangup", "reason": "unavailable"}],
            },
        )
    )


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (dt.datetime(2025, 3, 3, 6, 0, tzinfo=dt.UTC), True),  # Mon 09:00 MSK
        (dt.datetime(2025, 3, 3, 5, 59, 59, tzinfo=dt.UTC), False),  # 08:59:59 MSK
        (dt.datetime(2025, 3, 3, 14, 59, tzinfo=dt.UTC), True),  # 17:59 MSK
        (dt.datetime(2025, 3, 3, 15, 0, tzinfo=dt.UTC), False),  # 18:00 MSK: end excluded
        (dt.datetime(2025, 3, 3, 16, 0, tzinfo=dt.UTC), False),  # within 09-18 in UTC
        (dt.datetime(2025, 3, 2, 21, 30, tzinfo=dt.UTC), False),  # Mon 00:30 MSK, Sun in UTC
        (dt.datetime(2025, 3, 8, 7, 0, tzinfo=dt.UTC), False),  # Saturday
        (dt.datetime(2025, 3, 10, 7, 0, tzinfo=dt.UTC), False),  # Monday, but a holiday
        (dt.datetime(2025, 3, 7, 7, 0, tzinfo=dt.UTC), True),  # short day, 10:00 MSK
        (dt.datetime(2025, 3, 7, 11, 0, tzinfo=dt.UTC), False),  # short day, 14:00 MSK
    ],
)
def test_schedule_is_read_in_its_own_time_zone(at: dt.datetime, is_open: bool) -> None:
    assert schedule_state(ScheduleEntry.model_validate(SCHEDULE), at).open is is_open
    sim = simulate(schedule_plan(), at=at)
    if is_open:
        assert rang(sim) == [(0.0, ("101", "102"))]
    else:
        assert ended(sim).status == 480
        assert rang(sim) == []


def test_the_route_says_why_the_schedule_was_closed() -> None:
    sim = simulate(schedule_plan(), at=dt.datetime(2025, 3, 10, 7, 0, tzinfo=dt.UTC))
    (branch,) = details(sim, Outcome.BRANCHED)
    assert branch.startswith("closed: special day Holiday: closed all day")


def test_a_schedule_ending_at_24_00_is_open_until_midnight() -> None:
    schedule = ScheduleEntry(
        name="late", time_zone="UTC", weekly=[{"day": "mon", "start": "20:00", "end": "24:00"}]
    )
    assert schedule_state(schedule, dt.datetime(2025, 3, 3, 23, 59, 59, tzinfo=dt.UTC)).open
    assert not schedule_state(schedule, dt.datetime(2025, 3, 4, 0, 0, tzinfo=dt.UTC)).open


def test_a_deleted_schedule_takes_the_open_branch() -> None:
    cfg = config(
        plan(
            "main",
            {"type": "schedule", "schedule": None, "open": [group_step("sales")], "closed": []},
        )
    )
    sim = simulate(cfg, at=dt.datetime(2025, 3, 8, 23, 0, tzinfo=dt.UTC))  # closed hours
    assert rang(sim) == [(0.0, ("101", "102"))]
    assert details(sim, Outcome.BRANCHED) == ["open: schedule no longer exists: open branch"]


def test_an_empty_branch_goes_on_after_the_schedule_step() -> None:
    cfg = config(
        plan(
            "main",
            {
                "type": "schedule",
                "schedule": "office",
                "open": [],
                "closed": [group_step("support")],
            },
            group_step("sales"),
        )
    )
    assert rang(simulate(cfg)) == [(0.0, ("101", "102"))]  # open: continue
    closed = simulate(cfg, at=dt.datetime(2025, 3, 8, 7, 0, tzinfo=dt.UTC))
    closed.advance(15.0)
    # closed: the branch's group; nobody answers, so the plan goes on after the schedule
    assert rang(closed) == [(0.0, ("103",)), (15.0, ("101", "102"))]


# --- steps that go on with the plan -------------------------------------------------------


def test_crm_lookup_without_a_crm_goes_on_and_forward_rings_the_number_then_the_plan() -> None:
    cfg = config(
        plan(
            "main",
            {"type": "crm-lookup", "categories": {}},
            {"type": "forward", "number": "+74951112233"},
            group_step("sales"),
        )
    )
    sim = simulate(cfg)
    assert details(sim, Outcome.FELL_THROUGH) == ["CRM not configured"]
    assert rang(sim) == [(0.0, ("+74951112233",))]

    sim.send(MemberFailed("+74951112233", MemberFailure.BUSY), at=2.0)

    assert rang(sim) == [(0.0, ("+74951112233",)), (2.0, ("101", "102"))]


def test_an_unanswered_forward_goes_on_after_its_ring_time() -> None:
    cfg = config(plan("main", {"type": "forward", "number": "+74951112233"}, group_step("sales")))
    sim = simulate(cfg)
    sim.advance(FORWARD_RING_S + 0.5)
    assert rang(sim) == [(0.0, ("+74951112233",)), (float(FORWARD_RING_S), ("101", "102"))]


def test_running_off_the_end_of_a_plan_is_480() -> None:
    sim = simulate(config(plan("main", {"type": "crm-lookup"})))
    assert ended(sim) == Hangup(480, EndReason.UNAVAILABLE, "end of route plan", False)
    assert sim.timeline[-1] == (0.0, Done(RouteResult.HUNG_UP))


def test_a_step_whose_object_was_deleted_is_skipped() -> None:
    cfg = config(
        plan(
            "main",
            {"type": "group", "target": {"type": "unrouted", "missing": "group:g-9"}},
            group_step("sales"),
        )
    )
    sim = simulate(cfg)
    assert rang(sim) == [(0.0, ("101", "102"))]
    assert details(sim, Outcome.FELL_THROUGH) == ["group:g-9 no longer exists"]


# --- group and user steps -----------------------------------------------------------------


def test_group_step_no_answer_goes_on_with_the_next_step() -> None:
    cfg = config(
        plan(
            "main",
            group_step("sales", ring_timeout_s=10),
            {"type": "user", "target": {"type": "user", "extension": "103"}, "ring_timeout_s": 5},
            {"type": "voicemail", "target": {"type": "voicemail"}},
        )
    )
    sim = simulate(cfg)
    sim.advance(15.0)
    assert rang(sim) == [(0.0, ("101", "102")), (10.0, ("103",))]
    assert sim.of(RecordVoicemail) == [(15.0, RecordVoicemail(None, 120))]


def test_a_group_as_last_step_overflows() -> None:
    sim = simulate(config(plan("main", group_step("support"))))
    sim.advance(15.0)
    assert ended(sim).status == 486  # support's overflow: hangup busy


def test_a_group_as_last_step_without_overflow_is_480() -> None:
    sim = simulate(config(plan("main", group_step("sales"))))
    sim.advance(20.0)
    assert ended(sim) == Hangup(480, EndReason.NO_ANSWER, "no-answer, end of route plan", False)


def test_a_user_as_last_step_without_answer_is_480() -> None:
    cfg = config(plan("main", {"type": "user", "target": {"type": "user", "extension": "101"}}))
    sim = simulate(cfg)
    sim.advance(30.0)
    assert ended(sim).status == 480


def test_an_answer_in_a_plan_connects_the_call() -> None:
    sim = simulate(config(plan("main", group_step("sales"))))
    sim.send(MemberAnswered("101"), at=3.0)
    assert sim.router.connected_to == "101"
    assert sim.router.result is RouteResult.CONNECTED


# --- route-plan jumps --------------------------------------------------------------------


def test_a_route_plan_step_goes_on_in_the_other_plan() -> None:
    cfg = config(
        plan("main", {"type": "route-plan", "target": {"type": "route-plan", "name": "night"}}),
        plan("night", {"type": "hangup", "reason": "busy"}),
    )
    sim = simulate(cfg)
    assert ended(sim).status == 486
    assert sim.router.route[-1].subject == "plan:night step 1 (hangup)"


def test_route_plans_jumping_in_a_circle_end_at_the_limit() -> None:
    cfg = config(
        plan("main", {"type": "route-plan", "target": {"type": "route-plan", "name": "other"}}),
        plan("other", {"type": "route-plan", "target": {"type": "route-plan", "name": "main"}}),
    )
    sim = simulate(cfg)
    assert ended(sim) == Hangup(
        480,
        EndReason.UNAVAILABLE,
        f"route-plan loop: more than {MAX_PLAN_JUMPS} plans entered",
        False,
    )
    entered = [e for e in sim.router.route if e.outcome is Outcome.ENTERED]
    # the entry target, a jump per step, and the jump that was one too many
    assert len(entered) == MAX_PLAN_JUMPS + 1


# --- targets and hangups --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "status", "end_reason"),
    [
        (HangupReason.BUSY, 486, EndReason.BUSY),
        (HangupReason.UNAVAILABLE, 480, EndReason.UNAVAILABLE),
        (HangupReason.NORMAL, 603, EndReason.REJECTED),
    ],
)
def test_hangup_reasons_map_to_sip_statuses(
    reason: HangupReason, status: int, end_reason: EndReason
) -> None:
    sim = simulate(config(), target=HangupTarget(reason=reason))
    assert ended(sim) == Hangup(status, end_reason, f"hangup:{reason}", False)
    assert hangup_status(reason, answered=False) == status


def test_a_normal_hangup_of_an_answered_caller_is_a_plain_bye() -> None:
    assert hangup_status(HangupReason.NORMAL, answered=True) == 200
    assert hangup_status(HangupReason.BUSY, answered=True) == 486


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (UnroutedTarget(), "no route set"),
        (UnroutedTarget(missing="ivr:x"), "ivr:x no longer exists"),
        (RoutePlanTarget(name="gone"), "no such route plan"),
    ],
)
def test_targets_that_lead_nowhere_are_480_with_the_reason(target: Target, why: str) -> None:
    sim = simulate(config(), target=target)
    assert ended(sim) == Hangup(480, EndReason.UNAVAILABLE, why, False)
    assert details(sim, Outcome.FELL_THROUGH) == [why]


def test_an_external_target_rings_the_number_and_its_busy_ends_the_call() -> None:
    sim = simulate(config(), target=ExternalTarget(number="+74951112233"))
    assert rang(sim) == [(0.0, ("+74951112233",))]
    sim.send(MemberFailed("+74951112233", MemberFailure.BUSY), at=1.0)
    assert ended(sim).status == 486


# --- the caller hanging up -----------------------------------------------------------------


def test_the_caller_hanging_up_stops_the_ringing_and_ends_routing() -> None:
    sim = simulate(config(plan("main", group_step("sales"))))
    actions = sim.send(CallerHungUp(), at=5.0)
    assert actions == [StopRinging(("101", "102")), Done(RouteResult.CALLER_LEFT)]
    assert sim.router.next_deadline is None
    assert sim.send(MemberAnswered("101"), at=5.1) == []
    assert sim.of(Hangup) == []

"""The columns and legs derived from a call's route at insert (vpbx_common.cdr.derived).

The routes below are the media node's traces of real routing scenarios (the router's
simulator printed them; media-node/tests/test_route_analytics.py checks the same derivation
against traces it makes live)."""

from __future__ import annotations

from vpbx_common.analytics import derive_call
from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, RouteStep

START = 1_763_800_000_000


def record(
    route: tuple[RouteStep, ...],
    *,
    answer_s: float | None = None,
    end_s: float = 60.0,
    end_reason: EndReason | None = None,
    answered_by: str = "",
    hangup_by: HangupBy = HangupBy.CALLER,
) -> CallRecord:
    reason = end_reason or (EndReason.COMPLETED if answer_s is not None else EndReason.CANCELLED)
    return CallRecord.build(
        call_id="c1",
        tenant="acme",
        city="msk",
        node="n",
        direction=Direction.INBOUND,
        caller="+74950000001",
        dialled="+79160000000",
        start_ms=START,
        answer_ms=None if answer_s is None else START + round(answer_s * 1000),
        end_ms=START + round(end_s * 1000),
        end_reason=reason,
        sip_status=200 if answer_s is not None else 487,
        hangup_by=hangup_by,
        answered_by=answered_by,
        route=route,
    )


def step(
    after_s: float, subject: str, outcome: str, member: str | None = None, detail: str = ""
) -> RouteStep:
    return RouteStep(after_s, subject, outcome, member, detail)


QUEUE = "plan:main step 1 (queue)"
QUEUE_ENTRY = (
    step(0.0, "route-plan:main", "entered", None, "entry"),
    step(0.0, QUEUE, "entered", None, "queue of group:support"),
    step(0.0, QUEUE, "queued", None, "joined"),
)


def test_a_queue_answer_names_the_queue_its_group_and_the_wait() -> None:
    route = (
        *QUEUE_ENTRY,
        step(12.0, QUEUE, "queued", "102", "offered"),
        step(12.0, QUEUE, "ringing", "102"),
        step(15.0, QUEUE, "answered", "102"),
    )
    derived = derive_call(record(route, answer_s=15.0, answered_by="102"))
    assert (derived.queue, derived.group_name, derived.queue_wait_ms) == (
        "support",
        "support",
        15_000,
    )
    assert (derived.last_rung, derived.abandoned_in) == ("102", "")
    assert [(leg.kind, leg.target) for leg in derived.legs] == [
        ("plan", "route-plan:main"),
        ("queue", "queue:support"),
        ("queue", "queue:support"),
        ("queue", "queue:support"),
        ("queue", "queue:support"),
        ("queue", "queue:support"),
    ]
    assert [leg.seq for leg in derived.legs] == list(range(6))
    assert derived.legs[-1].at_ms == START + 15_000
    assert derived.legs[-1].member == "102"
    assert derived.legs[0].member == ""


def test_a_caller_leaving_the_queue_abandoned_it_after_waiting_until_then() -> None:
    route = (
        *QUEUE_ENTRY,
        step(5.0, QUEUE, "queued", "101", "offered"),
        step(5.0, QUEUE, "ringing", "101"),
        step(20.0, QUEUE, "no-answer", "101", "ring timeout"),
        step(20.0, QUEUE, "no-answer", None, "nobody answered in time"),
        step(20.0, QUEUE, "queued", "101", "back at its place: no-answer"),
        step(30.0, "call", "caller-left", None, "while queued"),
    )
    derived = derive_call(record(route, end_s=30.0))
    assert (derived.abandoned_in, derived.queue, derived.queue_wait_ms) == (
        "queue",
        "support",
        30_000,
    )
    assert derived.last_rung == "101"
    assert derived.legs[-1].kind == "call"


def test_a_queue_wait_that_times_out_ends_where_the_plan_goes_on() -> None:
    route = (
        *QUEUE_ENTRY,
        step(60.0, QUEUE, "queued", None, "left: waited 60 s"),
        step(60.0, "plan:main step 2 (voicemail)", "entered", None, "voicemail:"),
        step(61.0, "plan:main step 2 (voicemail)", "recorded"),
    )
    derived = derive_call(record(route, end_s=90.0, end_reason=EndReason.VOICEMAIL))
    assert (derived.queue_wait_ms, derived.abandoned_in, derived.last_rung) == (60_000, "", "")
    assert [leg.kind for leg in derived.legs[-2:]] == ["voicemail", "voicemail"]
    assert derived.legs[-1].target == "voicemail"


def test_a_wait_the_route_does_not_end_lasts_until_the_call_ends() -> None:
    # A node-lost call, or a route cut to 200 steps: the wait runs to the call's end.
    derived = derive_call(record(QUEUE_ENTRY, end_s=42.5, end_reason=EndReason.NODE_LOST))
    assert derived.queue_wait_ms == 42_500
    assert derived.abandoned_in == ""


def test_two_queue_visits_add_up_and_the_last_queue_is_named() -> None:
    second = "plan:main step 3 (queue)"
    route = (
        *QUEUE_ENTRY,
        step(10.0, QUEUE, "queued", None, "left: waited 10 s"),
        step(10.0, second, "entered", None, "queue of group:sales"),
        step(10.0, second, "queued", None, "joined"),
        step(14.0, second, "queued", "105", "offered"),
        step(14.0, second, "ringing", "105"),
        step(17.5, second, "answered", "105"),
    )
    derived = derive_call(record(route, answer_s=17.5, answered_by="105"))
    assert (derived.queue, derived.group_name, derived.queue_wait_ms) == ("sales", "sales", 17_500)


def test_an_ivr_choice_and_the_group_it_led_to() -> None:
    route = (
        step(0.0, "ivr:main", "entered", None, "entry"),
        step(0.0, "ivr:main", "prompted"),
        step(5.0, "ivr:main", "decided", None, "digit 1"),
        step(5.0, "group:sales", "entered", None, "ivr:main: digit 1"),
        step(5.0, "group:sales", "ringing", "101"),
        step(8.0, "group:sales", "answered", "101"),
    )
    derived = derive_call(record(route, answer_s=8.0, answered_by="101"))
    assert (derived.ivr_menu, derived.ivr_choice, derived.group_name) == ("main", "1", "sales")
    assert [leg.kind for leg in derived.legs] == ["ivr", "ivr", "ivr", "ring", "ring", "ring"]
    assert derived.queue == ""


def test_a_wrong_digit_is_not_a_choice_and_leaving_the_menu_is_abandoning_the_ivr() -> None:
    route = (
        step(0.0, "plan:main step 1 (ivr)", "entered", None, "ivr:main"),
        step(0.0, "plan:main step 1 (ivr)", "prompted"),
        step(3.0, "plan:main step 1 (ivr)", "decided", None, "wrong digit 7"),
        step(3.0, "plan:main step 1 (ivr)", "prompted", None, "replay 1"),
        step(6.0, "call", "caller-left", None, "while ivr"),
    )
    derived = derive_call(record(route, end_s=6.0))
    assert (derived.ivr_menu, derived.ivr_choice, derived.abandoned_in) == ("main", "", "ivr")
    assert derived.legs[0].target == "ivr:main"


def test_a_caller_hanging_up_while_it_rang_abandoned_the_ringing() -> None:
    route = (
        step(0.0, "plan:main step 1 (group)", "entered", None, "group:sales"),
        step(0.0, "plan:main step 1 (group)", "ringing", "101"),
        step(0.0, "plan:main step 1 (group)", "ringing", "103"),
        step(9.0, "plan:main step 1 (group)", "no-answer", "101", "caller hung up"),
        step(9.0, "plan:main step 1 (group)", "no-answer", "103", "caller hung up"),
        step(9.0, "call", "caller-left", None, "while ringing"),
    )
    derived = derive_call(record(route, end_s=9.0))
    assert (derived.abandoned_in, derived.group_name, derived.last_rung) == ("ring", "sales", "103")


def test_abandoned_is_only_for_unanswered_calls_the_caller_ended() -> None:
    no_answer = (
        step(0.0, "group:sales", "entered", None, "entry"),
        step(0.0, "group:sales", "ringing", "101"),
        step(20.0, "group:sales", "no-answer", None, "nobody answered in time"),
        step(20.0, "call", "hung-up", None, "480 no-answer, no overflow"),
    )
    derived = derive_call(
        record(no_answer, end_s=20.0, end_reason=EndReason.NO_ANSWER, hangup_by=HangupBy.SYSTEM)
    )
    assert (derived.abandoned_in, derived.group_name, derived.last_rung) == ("", "sales", "101")
    # Straight to an extension, no router trace: a cancelled call was ringing.
    assert derive_call(record((), end_s=7.0)).abandoned_in == "ring"
    greeting = (step(2.0, "call", "caller-left", None, "while greeting"),)
    assert derive_call(record(greeting, end_s=2.0)).abandoned_in == "other"
    booked = (*QUEUE_ENTRY, step(30.0, QUEUE, "queued", None, "callback booked: +74950000001"))
    callback = derive_call(record(booked, end_s=33.0, end_reason=EndReason.CALLBACK))
    assert (callback.abandoned_in, callback.queue_wait_ms) == ("", 33_000)


def test_crm_escalation_steps_ring_the_manager_and_the_managers_groups() -> None:
    route = (
        step(0.0, "plan:main step 1 (crm-lookup)", "entered"),
        step(0.1, "plan:main step 1 (crm-lookup)", "decided", None, "contact c-1 owner 104"),
        step(0.1, "crm manager user:104", "ringing", "104"),
        step(15.1, "crm manager user:104", "no-answer", "104", "ring timeout"),
        step(15.1, "crm manager's groups group:vip,group:sales", "ringing", "105"),
        step(18.0, "crm manager's groups group:vip,group:sales", "answered", "105"),
    )
    derived = derive_call(record(route, answer_s=18.0, answered_by="105"))
    assert [(leg.kind, leg.target) for leg in derived.legs] == [
        ("crm", "crm-lookup"),
        ("crm", "crm-lookup"),
        ("ring", "user:104"),
        ("ring", "user:104"),
        ("ring", "group:vip"),
        ("ring", "group:vip"),
    ]
    assert derived.group_name == "vip"


def test_steps_around_the_route_keep_their_own_kinds() -> None:
    route = (
        step(0.0, "user:101", "entered", None, "entry"),
        step(0.0, "user:101", "ringing", "101"),
        step(2.0, "user:101", "answered", "101"),
        step(30.0, "transfer", "entered", "102", "blind by 101"),
        step(31.0, "trunk:main", "failed", "+74950000002", "503 Service Unavailable"),
        step(32.0, "route", "truncated", None, "5 steps omitted"),
        step(33.0, "something-new", "odd"),
    )
    derived = derive_call(record(route, answer_s=2.0, answered_by="101"))
    assert [leg.kind for leg in derived.legs] == [
        "ring",
        "ring",
        "ring",
        "transfer",
        "trunk",
        "truncated",
        "something-new",
    ]
    assert derived.group_name == ""


def test_no_route_derives_nothing() -> None:
    derived = derive_call(record((), answer_s=1.0, answered_by="101"))
    assert derived.columns() == ("", "", "", 0, "", "", "")
    assert derived.legs == ()

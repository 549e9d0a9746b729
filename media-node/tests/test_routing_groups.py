"""Ring groups and users through the pure router: strategies, skips, timeouts, overflow."""

from __future__ import annotations

from typing import Any

import pytest

from vpbx_common.cdr import Direction, EndReason
from vpbx_common.nodeconfig import GroupTarget, NodeConfig, UserTarget, VoicemailTarget
from vpbx_common.pbx import Presence
from vpbx_media.node.routing import (
    AgentSnapshot,
    AgentState,
    Answer,
    CallContext,
    CallerHungUp,
    CallRouter,
    Connect,
    Done,
    Hangup,
    MemberAnswered,
    MemberFailed,
    MemberFailure,
    Outcome,
    RecordVoicemail,
    RememberLastMember,
    Ring,
    RouteResult,
    StopRinging,
    VoicemailFinished,
)
from vpbx_media.node.routing.simulator import Simulator

EPOCH = 1_750_000_000.0  # wall time at now == 0
CALL = CallContext(
    call_id="c1", tenant="acme", number="+74950000001", caller="+79160000000", city="msk"
)


def config(
    *groups: dict[str, Any], users: list[dict[str, Any]] | None = None, **extra: Any
) -> NodeConfig:
    default_users = [
        {"extension": ext, "name": f"user {ext}", "city": "msk", "id": f"id-{ext}"}
        for ext in ("101", "102", "103", "104", "105")
    ]
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": users if users is not None else default_users,
            "groups": list(groups),
            "numbers": [],
            **extra,
        }
    )


def group(strategy: str = "ring-all", **fields: Any) -> dict[str, Any]:
    return {
        "name": "sales",
        "strategy": strategy,
        "members": ["101", "102", "103"],
        "ring_timeout_s": 30,
        **fields,
    }


def simulate(
    cfg: NodeConfig,
    target: Any = None,
    agents: AgentSnapshot | None = None,
    call: CallContext = CALL,
) -> Simulator:
    router = CallRouter(
        call,
        cfg,
        agents or AgentSnapshot(),
        target or GroupTarget(name="sales"),
        epoch_offset=EPOCH,
    )
    sim = Simulator(router)
    sim.start()
    return sim


def rings(sim: Simulator) -> list[tuple[float, tuple[str, ...], float]]:
    return [(t, ring.extensions, ring.until) for t, ring in sim.of(Ring)]


def stops(sim: Simulator) -> list[tuple[float, tuple[str, ...]]]:
    return [(t, stop.extensions) for t, stop in sim.of(StopRinging)]


def hangup(sim: Simulator) -> Hangup:
    (_, action), *_ = sim.of(Hangup)
    return action


def skipped(sim: Simulator) -> dict[str, str]:
    return {
        entry.member or "": entry.detail
        for entry in sim.router.route
        if entry.outcome is Outcome.SKIPPED
    }


# --- strategies -------------------------------------------------------------------


def test_ring_all_rings_everyone_until_the_timeout_then_480_without_overflow() -> None:
    sim = simulate(config(group("ring-all")))
    assert rings(sim) == [(0.0, ("101", "102", "103"), 30.0)]
    assert sim.router.next_deadline == 30.0
    sim.run_out()
    assert stops(sim) == [(30.0, ("101", "102", "103"))]
    assert hangup(sim) == Hangup(480, EndReason.NO_ANSWER, hangup(sim).detail, False)
    assert sim.timeline[-1] == (30.0, Done(RouteResult.HUNG_UP))
    assert sim.router.finished
    assert sim.router.next_deadline is None


def test_first_answer_wins_and_the_other_rings_stop() -> None:
    sim = simulate(config(group("ring-all")))
    actions = sim.send(MemberAnswered("102"), at=4.0)
    assert actions == [StopRinging(("101", "103")), Connect("102"), Done(RouteResult.CONNECTED)]
    assert sim.router.connected_to == "102"
    assert sim.send(MemberAnswered("101"), at=4.1) == []  # the executor ends that leg


def test_sequential_gives_each_member_an_equal_share_of_the_ring_timeout() -> None:
    sim = simulate(config(group("sequential")))
    sim.run_out()
    assert rings(sim) == [
        (0.0, ("101",), 10.0),
        (10.0, ("102",), 20.0),
        (20.0, ("103",), 30.0),
    ]
    assert stops(sim) == [(10.0, ("101",)), (20.0, ("102",)), (30.0, ("103",))]
    assert hangup(sim).status == 480


def test_member_ring_s_rings_each_member_that_long_and_goes_round_again() -> None:
    sim = simulate(config(group("sequential", members=["101", "102"], member_ring_s=8)))
    sim.run_out()
    assert rings(sim) == [
        (0.0, ("101",), 8.0),
        (8.0, ("102",), 16.0),
        (16.0, ("101",), 24.0),
        (24.0, ("102",), 30.0),  # the whole group rings at most ring_timeout_s
    ]
    assert sim.done is not None
    assert sim.timeline[-1][0] == 30.0


def test_a_busy_or_declining_member_hands_over_at_once_and_is_not_rung_again() -> None:
    sim = simulate(config(group("sequential", member_ring_s=10)))
    sim.send(MemberFailed("101", MemberFailure.BUSY), at=2.0)
    sim.send(MemberFailed("102", MemberFailure.DECLINED), at=3.5)
    sim.run_out()
    assert rings(sim) == [
        (0.0, ("101",), 10.0),
        (2.0, ("102",), 12.0),
        (3.5, ("103",), 30.0),  # the only one left rings out the time
    ]


def test_equal_share_counts_only_members_that_can_ring() -> None:
    cfg = config(group("sequential", members=["101", "102", "103", "104"]))
    agents = AgentSnapshot({"102": AgentState(presence=Presence.AWAY)})
    sim = simulate(cfg, agents=agents)
    sim.run_out()
    assert rings(sim) == [
        (0.0, ("101",), 10.0),
        (10.0, ("103",), 20.0),
        (20.0, ("104",), 30.0),
    ]


def test_escalating_adds_a_member_every_interval_while_the_others_keep_ringing() -> None:
    sim = simulate(config(group("escalating", escalation_interval_s=10, ring_timeout_s=25)))
    sim.run_out()
    assert rings(sim) == [
        (0.0, ("101",), 25.0),
        (10.0, ("102",), 25.0),
        (20.0, ("103",), 25.0),
    ]
    assert stops(sim) == [(25.0, ("101", "102", "103"))]


def test_escalating_adds_the_next_member_at_once_when_nobody_rings_any_more() -> None:
    sim = simulate(config(group("escalating", escalation_interval_s=10)))
    sim.send(MemberFailed("101", MemberFailure.UNAVAILABLE), at=3.0)
    sim.advance(14.0)
    assert rings(sim) == [(0.0, ("101",), 30.0), (3.0, ("102",), 30.0), (13.0, ("103",), 30.0)]


def test_round_robin_starts_after_the_member_who_rang_last_across_calls() -> None:
    cfg = config(group("round-robin"))
    pointer: dict[str, str] = {}
    first_rung = []
    for call in range(3):
        sim = simulate(cfg, agents=AgentSnapshot(last_member=dict(pointer)))
        (_, first), *_ = sim.of(Ring)
        first_rung.append(first.extensions)
        sim.send(MemberAnswered(first.extensions[0]), at=1.0 + call)
        for _, remember in sim.of(RememberLastMember):  # what the executor writes to Redis
            pointer[remember.group] = remember.extension
    assert first_rung == [("101",), ("102",), ("103",)]
    assert pointer == {"sales": "103"}


def test_round_robin_pointer_follows_every_member_rung() -> None:
    sim = simulate(config(group("round-robin")), agents=AgentSnapshot(last_member={"sales": "102"}))
    sim.run_out()
    assert [r[1] for r in rings(sim)] == [("103",), ("101",), ("102",)]
    assert [a.extension for _, a in sim.of(RememberLastMember)] == ["103", "101", "102"]


def test_least_recently_called_rings_the_never_called_first_then_the_longest_ago() -> None:
    agents = AgentSnapshot(
        {
            "101": AgentState(last_call_end=EPOCH - 100),
            "102": AgentState(),
            "103": AgentState(last_call_end=EPOCH - 3600),
        }
    )
    sim = simulate(config(group("least-recently-called")), agents=agents)
    sim.run_out()
    assert [r[1] for r in rings(sim)] == [("102",), ("103",), ("101",)]


def test_by_rank_rings_the_highest_rank_first_ties_in_list_order() -> None:
    users = [
        {"extension": "101", "name": "a", "city": "msk", "rank": 10},
        {"extension": "102", "name": "b", "city": "msk", "rank": 50},
        {"extension": "103", "name": "c", "city": "msk", "rank": 0},
        {"extension": "104", "name": "d", "city": "msk", "rank": 50},
    ]
    cfg = config(group("by-rank", members=["101", "102", "103", "104"]), users=users)
    sim = simulate(cfg)
    sim.run_out()
    assert [r[1] for r in rings(sim)] == [("102",), ("104",), ("101",), ("103",)]


# --- who may ring --------------------------------------------------------------------


def test_busy_wrap_up_away_dnd_and_unregistered_members_are_skipped_with_the_reason() -> None:
    users = [
        {"extension": "101", "name": "a", "city": "msk"},
        {"extension": "102", "name": "b", "city": "msk", "settings": {"wrap_up_s": 30}},
        {"extension": "103", "name": "c", "city": "msk"},
        {"extension": "104", "name": "d", "city": "msk", "presence": "do-not-disturb"},
        {"extension": "105", "name": "e", "city": "msk"},
        {"extension": "106", "name": "f", "city": "msk"},
    ]
    members = ["101", "102", "103", "104", "105", "106"]
    agents = AgentSnapshot(
        {
            "101": AgentState(on_call=True),
            "102": AgentState(last_call_end=EPOCH - 10),
            "103": AgentState(presence=Presence.AWAY),
            "105": AgentState(devices=0),
        }
    )
    sim = simulate(config(group("ring-all", members=members), users=users), agents=agents)
    assert rings(sim) == [(0.0, ("106",), 30.0)]
    assert skipped(sim) == {
        "101": "on-call",
        "102": "wrap-up",
        "103": "away",
        "104": "do-not-disturb",
        "105": "not-registered",
    }


def test_the_snapshot_presence_wins_over_the_config() -> None:
    users = [{"extension": "101", "name": "a", "city": "msk", "presence": "away"}]
    agents = AgentSnapshot({"101": AgentState(presence=Presence.AVAILABLE)})
    sim = simulate(config(group(members=["101"]), users=users), agents=agents)
    assert rings(sim) == [(0.0, ("101",), 30.0)]


@pytest.mark.parametrize(("ended_ago", "free"), [(30.0, True), (29.999, False), (31.0, True)])
def test_wrap_up_ends_exactly_wrap_up_s_after_the_last_call(ended_ago: float, free: bool) -> None:
    users = [{"extension": "101", "name": "a", "city": "msk", "settings": {"wrap_up_s": 30}}]
    agents = AgentSnapshot({"101": AgentState(last_call_end=EPOCH - ended_ago)})
    sim = simulate(config(group(members=["101"]), users=users), agents=agents)
    assert bool(rings(sim)) is free
    assert skipped(sim) == ({} if free else {"101": "wrap-up"})


def test_a_member_becoming_busy_before_their_turn_is_skipped_then() -> None:
    sim = simulate(config(group("sequential")))
    sim.router.update_agents(AgentSnapshot({"102": AgentState(on_call=True)}))
    sim.run_out()
    assert rings(sim) == [
        (0.0, ("101",), 10.0),
        (10.0, ("103",), 20.0),
        (20.0, ("101",), 30.0),  # the time 102 would have had: round again
    ]
    assert skipped(sim) == {"102": "on-call"}


def test_an_internal_caller_is_not_offered_their_own_call() -> None:
    call = CallContext("c2", "acme", "sales", "102", "msk", direction=Direction.INTERNAL)
    sim = simulate(config(group()), call=call)
    assert rings(sim) == [(0.0, ("101", "103"), 30.0)]
    assert skipped(sim) == {"102": "caller"}


# --- overflow ----------------------------------------------------------------------


def test_no_answer_goes_to_the_overflow_target() -> None:
    cfg = config(group(overflow={"type": "voicemail"}))
    sim = simulate(cfg)
    sim.advance(30.0)
    assert [a for t, a in sim.timeline if t == 30.0] == [
        StopRinging(("101", "102", "103")),
        Answer(),
        RecordVoicemail(None, 120),
    ]
    sim.send(VoicemailFinished(), at=75.0)
    assert hangup(sim) == Hangup(200, EndReason.VOICEMAIL, "voicemail recorded", True)


def test_a_voicemail_with_nothing_said_ends_unavailable_and_the_route_says_so() -> None:
    sim = simulate(config(group(overflow={"type": "voicemail"})))
    sim.advance(30.0)
    sim.send(VoicemailFinished(kept=False), at=40.0)
    assert hangup(sim) == Hangup(200, EndReason.UNAVAILABLE, "no voice message", True)
    assert (Outcome.NO_MESSAGE, "voicemail") in [
        (entry.outcome, entry.subject) for entry in sim.router.route
    ]


def test_a_caller_hanging_up_after_the_message_keeps_it() -> None:
    sim = simulate(config(group(overflow={"type": "voicemail"})))
    sim.advance(30.0)
    sim.send(CallerHungUp(voicemail_kept=True), at=45.0)
    assert sim.router.result is RouteResult.CALLER_LEFT
    assert (Outcome.RECORDED, "voicemail") in [
        (entry.outcome, entry.subject) for entry in sim.router.route
    ]


def test_no_free_member_goes_straight_to_the_overflow() -> None:
    cfg = config(group(overflow={"type": "hangup", "reason": "busy"}))
    agents = AgentSnapshot({ext: AgentState(on_call=True) for ext in ("101", "102", "103")})
    sim = simulate(cfg, agents=agents)
    assert rings(sim) == []
    assert hangup(sim).status == 486
    assert sim.timeline[-1] == (0.0, Done(RouteResult.HUNG_UP))


def test_every_member_failing_ends_the_group_before_its_timeout() -> None:
    sim = simulate(config(group(members=["101", "102"])))
    sim.send(MemberFailed("101", MemberFailure.BUSY), at=1.0)
    sim.send(MemberFailed("102", MemberFailure.UNAVAILABLE), at=2.0)
    assert hangup(sim) == Hangup(486, EndReason.BUSY, hangup(sim).detail, False)  # all busy
    assert sim.timeline[-1] == (2.0, Done(RouteResult.HUNG_UP))


def test_a_group_overflowing_into_itself_ends_at_the_hop_limit() -> None:
    cfg = config(group(overflow={"type": "group", "name": "sales"}))
    agents = AgentSnapshot({ext: AgentState(on_call=True) for ext in ("101", "102", "103")})
    sim = simulate(cfg, agents=agents)
    assert hangup(sim).status == 480
    assert "routing loop" in hangup(sim).detail


# --- one user -----------------------------------------------------------------------


def user_config(**settings: Any) -> NodeConfig:
    users = [{"extension": "101", "name": "a", "city": "msk", "settings": settings}]
    return config(users=users)


def test_a_user_not_answering_gets_their_voicemail() -> None:
    sim = simulate(user_config(), target=UserTarget(extension="101"))
    assert rings(sim) == [(0.0, ("101",), 30.0)]
    sim.advance(30.0)
    assert sim.of(RecordVoicemail) == [(30.0, RecordVoicemail("101", 120))]


@pytest.mark.parametrize(
    ("agent", "failure", "status", "reason"),
    [
        (AgentState(), None, 480, EndReason.NO_ANSWER),
        (AgentState(on_call=True), None, 480, EndReason.NO_ANSWER),  # call waiting rang
        (AgentState(presence=Presence.DO_NOT_DISTURB), None, 480, EndReason.UNAVAILABLE),
        (AgentState(presence=Presence.AWAY), None, 480, EndReason.UNAVAILABLE),
        (AgentState(devices=0), None, 480, EndReason.UNAVAILABLE),
        (AgentState(), MemberFailure.BUSY, 486, EndReason.BUSY),
        (AgentState(), MemberFailure.DECLINED, 603, EndReason.REJECTED),
    ],
)
def test_a_user_without_voicemail_gets_a_status_saying_why(
    agent: AgentState, failure: MemberFailure | None, status: int, reason: EndReason
) -> None:
    sim = simulate(
        user_config(voicemail=False),
        target=UserTarget(extension="101"),
        agents=AgentSnapshot({"101": agent}),
    )
    if failure is not None:
        sim.send(MemberFailed("101", failure), at=2.0)
    sim.run_out()
    rang = bool(rings(sim))
    assert rang is (agent.presence is None and agent.devices is None)
    assert (hangup(sim).status, hangup(sim).end_reason) == (status, reason)


def test_a_user_on_a_call_is_still_rung_directly_and_their_phone_decides() -> None:
    agents = AgentSnapshot({"101": AgentState(on_call=True)})
    sim = simulate(user_config(), target=UserTarget(extension="101"), agents=agents)
    assert rings(sim) == [(0.0, ("101",), 30.0)]  # call waiting
    sim.send(MemberFailed("101", MemberFailure.BUSY), at=1.0)  # the phone says busy
    assert sim.of(RecordVoicemail) == [(1.0, RecordVoicemail("101", 120))]


def test_wrap_up_does_not_keep_a_direct_call_from_ringing() -> None:
    users = [{"extension": "101", "name": "a", "city": "msk", "settings": {"wrap_up_s": 60}}]
    agents = AgentSnapshot({"101": AgentState(last_call_end=EPOCH - 5)})
    sim = simulate(config(users=users), target=UserTarget(extension="101"), agents=agents)
    assert rings(sim) == [(0.0, ("101",), 30.0)]


def test_voicemail_of_an_unknown_box_is_480() -> None:
    sim = simulate(config(), target=VoicemailTarget(extension="999"))
    assert hangup(sim).status == 480


def test_one_member_declining_while_the_others_are_unreachable_is_a_decline() -> None:
    sim = simulate(config(group(members=["101", "102"])))
    sim.send(MemberFailed("102", MemberFailure.UNAVAILABLE), at=0.1)  # nothing registered
    sim.send(MemberFailed("101", MemberFailure.DECLINED), at=1.0)
    assert hangup(sim) == Hangup(603, EndReason.REJECTED, hangup(sim).detail, False)


@pytest.mark.parametrize(
    ("failure", "status", "reason"),
    [
        (None, 480, EndReason.NO_ANSWER),
        (MemberFailure.BUSY, 486, EndReason.BUSY),
        (MemberFailure.DECLINED, 603, EndReason.REJECTED),
    ],
)
def test_without_voicemail_on_the_node_the_caller_hears_why_the_person_did_not_answer(
    failure: MemberFailure | None, status: int, reason: EndReason
) -> None:
    router = CallRouter(
        CALL,
        user_config(),  # the user wants voicemail, but the node cannot take any yet
        AgentSnapshot(),
        UserTarget(extension="101"),
        epoch_offset=EPOCH,
        voicemail=False,
    )
    sim = Simulator(router)
    sim.start()
    if failure is not None:
        sim.send(MemberFailed("101", failure), at=2.0)
    sim.run_out()
    assert sim.of(RecordVoicemail) == []
    assert (hangup(sim).status, hangup(sim).end_reason) == (status, reason)

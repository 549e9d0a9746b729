"""The queue step, the router's side: music, offers, keeping the caller's place, leaving."""

from __future__ import annotations

from typing import Any

from vpbx_common import speech
from vpbx_common.cdr import EndReason
from vpbx_common.nodeconfig import NodeConfig, RoutePlanTarget
from vpbx_media.node.routing import (
    AgentSnapshot,
    AgentState,
    Answer,
    AskQueueStatus,
    BackToQueue,
    BookCallback,
    CallbackBooked,
    CallContext,
    CallerHungUp,
    CallRouter,
    CollectDigits,
    Connect,
    Digit,
    Done,
    Hangup,
    JoinQueue,
    LeaveQueue,
    MemberAnswered,
    MemberFailed,
    MemberFailure,
    Play,
    PromptFinished,
    QueueAnnouncement,
    QueueLeft,
    QueueOffer,
    QueueStatus,
    RecordVoicemail,
    Ring,
    RouteResult,
    Sound,
    StopPlayback,
    StopRinging,
)
from vpbx_media.node.routing.actions import SpokenPhrase
from vpbx_media.node.routing.simulator import Simulator

CALL = CallContext("c1", "acme", "+74950000001", "+79160000000", "msk")


def config(step: dict[str, Any] | None = None, **group: Any) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": [{"extension": e, "name": e, "city": "msk"} for e in ("101", "102")],
            "groups": [
                {"name": "support", "members": ["101", "102"], "ring_timeout_s": 30, **group}
            ],
            "numbers": [],
            "route_plans": [
                {
                    "name": "main",
                    "steps": [
                        {
                            "type": "queue",
                            "target": {"type": "group", "name": "support"},
                            "max_wait_s": 60,
                            **(step or {}),
                        },
                        {"type": "voicemail", "target": {"type": "voicemail"}},
                    ],
                }
            ],
        }
    )


def simulate(cfg: NodeConfig | None = None, agents: AgentSnapshot | None = None) -> Simulator:
    router = CallRouter(
        CALL, cfg or config(), agents or AgentSnapshot(), RoutePlanTarget(name="main")
    )
    sim = Simulator(router)
    sim.start()
    return sim


def test_the_caller_waits_with_music_and_an_answered_offer_connects() -> None:
    sim = simulate()
    assert [a for _, a in sim.timeline] == [
        Answer(),
        Play(Sound.MUSIC_ON_HOLD, loop=True),
        JoinQueue("support", 60),
    ]
    assert sim.send(QueueOffer("102"), at=12.0) == [Ring(("102",), 27.0, "support")]
    assert sim.send(MemberAnswered("102"), at=15.0) == [
        LeaveQueue("support", "answered"),
        StopPlayback(),
        Connect("102"),
        Done(RouteResult.CONNECTED),
    ]


def test_an_unanswered_offer_puts_the_caller_back_at_its_place() -> None:
    sim = simulate(config(member_ring_s=10))
    sim.send(QueueOffer("101"), at=5.0)
    assert sim.advance(15.0) == [
        StopRinging(("101",)),
        BackToQueue("support", "101", "no-answer"),
    ]
    sim.send(QueueOffer("102"), at=20.0)
    assert sim.send(MemberFailed("102", MemberFailure.DECLINED), at=21.0) == [
        BackToQueue("support", "102", "declined")
    ]
    assert sim.router.next_deadline == 60.0  # the caller's wait goes on


def test_an_offer_of_an_agent_who_is_not_free_goes_back_at_once() -> None:
    sim = simulate(agents=AgentSnapshot({"101": AgentState(on_call=True)}))
    assert sim.send(QueueOffer("101"), at=3.0) == [BackToQueue("support", "101", "busy")]


def test_a_second_offer_while_one_rings_is_handed_back() -> None:
    sim = simulate()
    sim.send(QueueOffer("101"), at=3.0)
    assert sim.send(QueueOffer("102"), at=4.0) == [BackToQueue("support", "102", "already offered")]


def test_the_wait_ends_after_max_wait_s_and_the_plan_goes_on() -> None:
    sim = simulate()
    assert sim.advance(60.0) == [
        LeaveQueue("support", "waited 60 s"),
        StopPlayback(),
        RecordVoicemail(None, 120),
    ]


def test_an_offer_ringing_at_max_wait_may_still_be_answered() -> None:
    sim = simulate()
    sim.send(QueueOffer("101"), at=55.0)
    sim.advance(65.0)
    assert sim.of(LeaveQueue) == []
    sim.send(MemberAnswered("101"), at=66.0)
    assert sim.router.connected_to == "101"


def test_an_offer_failing_after_max_wait_leaves_the_queue() -> None:
    sim = simulate()
    sim.send(QueueOffer("101"), at=55.0)
    actions = sim.send(MemberFailed("101", MemberFailure.BUSY), at=62.0)
    assert actions[:2] == [
        BackToQueue("support", "101", "busy"),
        LeaveQueue("support", "waited 60 s"),
    ]
    assert isinstance(actions[-1], RecordVoicemail)


def test_the_dispatcher_taking_the_caller_out_goes_on_with_the_plan() -> None:
    sim = simulate()
    actions = sim.send(QueueLeft("no agent logged in"), at=2.0)
    assert actions == [StopPlayback(), RecordVoicemail(None, 120)]


def test_the_caller_hanging_up_leaves_the_queue_and_stops_the_offer() -> None:
    sim = simulate()
    sim.send(QueueOffer("101"), at=5.0)
    assert sim.send(CallerHungUp(), at=6.0) == [
        StopRinging(("101",)),
        LeaveQueue("support", "caller hung up"),
        Done(RouteResult.CALLER_LEFT),
    ]


# --- queue callback ---------------------------------------------------------------

CALLBACK_STEP = {"callback_digit": "1", "callback_attempts": 2, "callback_retry_s": 60}


def test_the_callback_offer_is_announced_on_joining_even_without_the_place() -> None:
    sim = simulate(config(CALLBACK_STEP))
    assert sim.of(CollectDigits) == [(0.0, CollectDigits(1))]
    assert sim.of(AskQueueStatus) == [(0.0, AskQueueStatus("support"))]
    assert sim.send(QueueStatus(3, 200.0), at=0.1) == [
        Play(QueueAnnouncement("ru-RU", None, 4, "1"))
    ]


def test_the_callback_key_books_a_callback_then_confirms_and_hangs_up() -> None:
    sim = simulate(config(CALLBACK_STEP))
    assert sim.send(Digit("1"), at=8.0) == [StopPlayback(), BookCallback("support", 2, 60)]
    assert sim.send(CallbackBooked(True, "callback x"), at=8.1) == [
        Play(SpokenPhrase("ru-RU", speech.CALLBACK_BOOKED))
    ]
    actions = sim.send(PromptFinished(), at=12.0)
    assert actions == [
        Hangup(200, EndReason.CALLBACK, "callback booked", True),
        Done(RouteResult.HUNG_UP),
    ]
    assert sim.of(LeaveQueue) == []  # the place stays: it is the callback's


def test_the_callback_key_during_an_offer_stops_the_ringing_and_hands_the_agent_back() -> None:
    sim = simulate(config(CALLBACK_STEP))
    sim.send(QueueOffer("101"), at=5.0)
    assert sim.send(Digit("1"), at=6.0) == [
        StopRinging(("101",)),
        BackToQueue("support", "101", "caller asked for a callback"),
        StopPlayback(),
        BookCallback("support", 2, 60),
    ]


def test_a_callback_not_booked_leaves_the_caller_waiting_with_music() -> None:
    sim = simulate(config(CALLBACK_STEP))
    sim.send(Digit("1"), at=8.0)
    assert sim.send(CallbackBooked(False, "Redis unavailable"), at=8.1) == [
        Play(Sound.MUSIC_ON_HOLD, loop=True)
    ]
    assert sim.send(QueueOffer("102"), at=9.0) == [Ring(("102",), 24.0, "support")]


def test_hanging_up_during_the_confirmation_keeps_the_callback() -> None:
    sim = simulate(config(CALLBACK_STEP))
    sim.send(Digit("1"), at=8.0)
    sim.send(CallbackBooked(True, "callback x"), at=8.1)
    assert sim.send(CallerHungUp(), at=9.0) == [Done(RouteResult.CALLER_LEFT)]
    assert sim.of(LeaveQueue) == []


def test_no_callback_is_offered_to_a_caller_without_a_number() -> None:
    anonymous = CallContext("c2", "acme", "+74950000001", "anonymous", "msk")
    router = CallRouter(
        anonymous, config(CALLBACK_STEP), AgentSnapshot(), RoutePlanTarget(name="main")
    )
    sim = Simulator(router)
    sim.start()
    assert sim.of(AskQueueStatus) == []
    assert sim.send(Digit("1"), at=3.0) == []

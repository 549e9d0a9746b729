"""The queue step's announcements, exit digit, length limit and music; a number's greeting."""

from __future__ import annotations

from typing import Any

from vpbx_common.nodeconfig import AudioPrompt, NodeConfig, RoutePlanTarget, TonePrompt, TtsPrompt
from vpbx_media.node.routing import (
    AgentSnapshot,
    Answer,
    AskQueueStatus,
    CallContext,
    CallerHungUp,
    CallRouter,
    CollectDigits,
    Digit,
    JoinQueue,
    LeaveQueue,
    MemberFailed,
    MemberFailure,
    Play,
    PromptFinished,
    QueueAnnouncement,
    QueueLeft,
    QueueOffer,
    QueueStatus,
    Ring,
    Sound,
    StopRinging,
)
from vpbx_media.node.routing.queue import wait_minutes
from vpbx_media.node.routing.simulator import Simulator

NUMBER = "+74950000001"
CALL = CallContext("c1", "acme", NUMBER, "+79160000000", "msk")
MUSIC = Play(Sound.MUSIC_ON_HOLD, loop=True)


def config(
    step: dict[str, Any] | None = None, *, greeting: dict[str, Any] | None = None, **extra: Any
) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": [{"extension": e, "name": e, "city": "msk"} for e in ("101", "102", "200")],
            "groups": [{"name": "support", "members": ["101", "102"], "ring_timeout_s": 30}],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": None,
                    "channels": 0,
                    "target": {"type": "route-plan", "name": "main"},
                    "greeting": greeting,
                }
            ],
            "route_plans": [
                {
                    "name": "main",
                    "steps": [
                        {
                            "type": "queue",
                            "target": {"type": "group", "name": "support"},
                            "max_wait_s": 300,
                            **(step or {}),
                        },
                        {"type": "user", "target": {"type": "user", "extension": "200"}},
                    ],
                }
            ],
            **extra,
        }
    )


def simulate(cfg: NodeConfig) -> Simulator:
    sim = Simulator(CallRouter(CALL, cfg, AgentSnapshot(), RoutePlanTarget(name="main")))
    sim.start()
    return sim


def announced(sim: Simulator) -> list[tuple[float, QueueAnnouncement]]:
    return [(t, a.sound) for t, a in sim.of(Play) if isinstance(a.sound, QueueAnnouncement)]


ANNOUNCING = {"announce_position": True, "announce_every_s": 30}


def test_announces_on_joining_then_music_comes_back() -> None:
    sim = simulate(config(ANNOUNCING))
    assert [a for _, a in sim.timeline] == [
        Answer(),
        MUSIC,
        JoinQueue("support", 300, announce_position=True),
        AskQueueStatus("support"),
    ]
    assert sim.send(QueueStatus(3, 200.0), at=0.1) == [Play(QueueAnnouncement("ru-RU", 3, 4))]
    assert sim.send(PromptFinished(), at=6.0) == [MUSIC]
    assert sim.router.next_deadline == 36.0
    entry = sim.router.route[-1]
    assert entry.detail == "announced place 3, about 4 min"


def test_announces_every_n_seconds_of_waiting() -> None:
    sim = simulate(config(ANNOUNCING))
    sim.send(QueueStatus(3, 200.0), at=0.1)
    sim.send(PromptFinished(), at=6.0)
    assert sim.advance(36.0) == [AskQueueStatus("support")]
    sim.send(QueueStatus(2, 90.0), at=36.1)
    sim.send(PromptFinished(), at=40.0)
    assert sim.advance(70.0) == [AskQueueStatus("support")]
    sim.send(QueueStatus(1, 20.0), at=70.1)
    assert [(t, a.position, a.wait_minutes) for t, a in announced(sim)] == [
        (0.1, 3, 4),
        (36.1, 2, 2),
        (70.1, 1, 0),
    ]


def test_the_tenant_language_is_spoken() -> None:
    sim = simulate(config(ANNOUNCING, language="en-US"))
    sim.send(QueueStatus(1, None), at=0.1)
    assert announced(sim) == [(0.1, QueueAnnouncement("en-US", 1, 0))]


def test_no_announcement_while_an_offer_rings() -> None:
    sim = simulate(config(ANNOUNCING))
    sim.send(QueueStatus(2, 100.0), at=0.1)
    sim.send(PromptFinished(), at=5.0)
    sim.send(QueueOffer("101"), at=30.0)
    # Due at 35 s, but the agent rings until 45 s: nothing is asked or played meanwhile.
    assert sim.advance(44.0) == []
    assert sim.send(MemberFailed("101", MemberFailure.BUSY), at=44.0)[-1] == AskQueueStatus(
        "support"
    )
    assert [t for t, _ in sim.of(AskQueueStatus)] == [0.0, 44.0]


def test_an_offer_cuts_an_announcement_short_and_the_music_returns() -> None:
    sim = simulate(config(ANNOUNCING))
    sim.send(QueueStatus(2, 100.0), at=0.1)
    assert sim.send(QueueOffer("101"), at=2.0) == [MUSIC, Ring(("101",), 17.0, "support")]
    # The end of the cut announcement (if the executor reports it) changes nothing.
    assert sim.send(PromptFinished(), at=3.0) == []
    # A status asked for before the offer and answered during it is not played.
    assert sim.send(QueueStatus(1, 10.0), at=4.0) == []
    assert len(announced(sim)) == 1


def test_a_status_that_never_comes_is_skipped_and_asked_again_later() -> None:
    sim = simulate(config(ANNOUNCING))
    sim.advance(5.0)
    assert sim.router.route[-1].detail == "no queue status"
    assert sim.advance(35.0) == [AskQueueStatus("support")]


def test_a_caller_no_longer_waiting_hears_nothing() -> None:
    sim = simulate(config(ANNOUNCING))
    assert sim.send(QueueStatus(None, None), at=0.1) == []
    assert announced(sim) == []


def test_wait_minutes_round_up_and_stay_speakable() -> None:
    assert [wait_minutes(s) for s in (None, 0, 59.9, 60, 61, 119, 120, 10_000)] == [
        0,
        0,
        0,
        1,
        2,
        2,
        2,
        99,
    ]


def test_without_announce_position_nothing_is_asked() -> None:
    sim = simulate(config())
    sim.advance(200.0)
    assert sim.of(AskQueueStatus) == []


def test_the_exit_digit_leaves_the_queue_for_the_next_step() -> None:
    sim = simulate(config({"exit_digit": "0"}))
    assert sim.timeline[1][1] == CollectDigits(max_digits=1)
    assert sim.send(Digit("5"), at=10.0) == []
    actions = sim.send(Digit("0"), at=12.0)
    assert actions[0] == LeaveQueue("support", "caller pressed 0")
    assert Ring(("200",), 42.0) in actions
    assert any(e.detail == "left: caller pressed 0" for e in sim.router.route)


def test_the_exit_digit_stops_an_offer_ringing() -> None:
    sim = simulate(config({"exit_digit": "#", "announce_position": True}))
    sim.send(QueueOffer("101"), at=5.0)
    actions = sim.send(Digit("#"), at=6.0)
    assert actions[:2] == [StopRinging(("101",)), LeaveQueue("support", "caller pressed #")]
    assert Ring(("200",), 36.0) in actions


def test_digits_are_collected_only_with_an_exit_digit() -> None:
    sim = simulate(config(ANNOUNCING))
    assert sim.of(CollectDigits) == []
    assert sim.send(Digit("0"), at=1.0) == []


def test_a_full_queue_sends_the_caller_on_at_once() -> None:
    sim = simulate(config({"max_length": 2}))
    assert sim.of(JoinQueue)[0][1] == JoinQueue("support", 300, max_length=2)
    actions = sim.send(QueueLeft("queue full (2 callers waiting)"), at=0.0)
    assert Ring(("200",), 30.0) in actions
    assert any("queue full" in e.detail for e in sim.router.route)


GREETING = {"kind": "tts", "text": "Welcome", "prompt_id": "p1"}


def test_the_greeting_plays_to_its_end_then_routing_begins() -> None:
    sim = simulate(config(greeting=GREETING))
    greeting = TtsPrompt(text="Welcome", prompt_id="p1")
    assert [a for _, a in sim.timeline] == [Answer(), Play(greeting)]
    assert sim.send(Digit("1"), at=1.0) == []  # digits are ignored
    actions = sim.send(PromptFinished(), at=3.0)
    assert actions[:2] == [MUSIC, JoinQueue("support", 300)]
    assert Answer() not in actions  # answered once
    subjects = [(e.subject, str(e.outcome)) for e in sim.router.route]
    assert subjects[:2] == [("greeting", "prompted"), ("route-plan:main", "entered")]


def test_the_caller_may_hang_up_during_the_greeting() -> None:
    sim = simulate(config(greeting=GREETING))
    actions = sim.send(CallerHungUp(), at=1.0)
    assert sim.router.finished
    assert sim.of(JoinQueue) == []
    assert actions[-1].__class__.__name__ == "Done"


def test_a_greeting_whose_end_is_never_heard_gives_way() -> None:
    sim = simulate(config(greeting=GREETING))
    sim.advance(300.0)
    assert sim.of(JoinQueue)


# --- the queue's own music ---------------------------------------------------

TENANT_MUSIC = AudioPrompt(prompt_id="2b8e0c6e-7f0e-4d8b-9c43-6f1f5e2a7d10")
TENANT_PLAY = Play(TENANT_MUSIC, loop=True)
MUSIC_STEP = {"music": {"kind": "audio", "prompt_id": TENANT_MUSIC.prompt_id}}
ANNOUNCING_WITH_MUSIC = {**MUSIC_STEP, "announce_position": True, "announce_every_s": 30}


def music_played(sim: Simulator) -> list[object]:
    return [action.sound for _, action in sim.of(Play)]


def test_the_caller_waits_with_the_tenants_music_looped() -> None:
    sim = simulate(config(MUSIC_STEP))
    assert TENANT_PLAY in [action for _, action in sim.timeline]
    sim.advance(200.0)
    assert music_played(sim) == [TENANT_MUSIC]
    assert Play(Sound.MUSIC_ON_HOLD, loop=True) not in [a for _, a in sim.timeline]


def test_a_tone_may_be_the_music() -> None:
    tone = {"kind": "tone", "frequency_hz": 600, "duration_ms": 800}
    sim = simulate(config({"music": tone}))
    assert Play(TonePrompt(frequency_hz=600, duration_ms=800), loop=True) in [
        action for _, action in sim.timeline
    ]


def test_without_music_the_platform_default_plays() -> None:
    sim = simulate(config())
    assert music_played(sim) == [Sound.MUSIC_ON_HOLD]


def test_the_tenants_music_resumes_after_each_announcement() -> None:
    sim = simulate(config(ANNOUNCING_WITH_MUSIC))
    assert sim.send(QueueStatus(3, 200.0), at=0.1) == [Play(QueueAnnouncement("ru-RU", 3, 4))]
    assert sim.send(PromptFinished(), at=6.0) == [TENANT_PLAY]
    sim.advance(36.0)
    sim.send(QueueStatus(2, 90.0), at=36.1)
    assert sim.send(PromptFinished(), at=40.0) == [TENANT_PLAY]
    assert music_played(sim) == [
        TENANT_MUSIC,
        QueueAnnouncement("ru-RU", 3, 4),
        TENANT_MUSIC,
        QueueAnnouncement("ru-RU", 2, 2),
        TENANT_MUSIC,
    ]


def test_an_announcement_cut_by_an_offer_gives_back_the_tenants_music() -> None:
    sim = simulate(config(ANNOUNCING_WITH_MUSIC))
    sim.send(QueueStatus(2, 100.0), at=0.1)
    assert sim.send(QueueOffer("101"), at=2.0)[0] == TENANT_PLAY
    # The agent is busy: the caller waits on, still with the tenant's music, and the cut
    # announcement is made at once, then the same music again.
    sim.send(MemberFailed("101", MemberFailure.BUSY), at=3.0)
    sim.send(QueueStatus(1, 30.0), at=3.1)
    assert sim.send(PromptFinished(), at=7.0) == [TENANT_PLAY]
    assert Sound.MUSIC_ON_HOLD not in music_played(sim)


def test_an_announcement_whose_end_is_never_heard_gives_way_to_the_tenants_music() -> None:
    sim = simulate(config(ANNOUNCING_WITH_MUSIC))
    sim.send(QueueStatus(2, 100.0), at=0.1)
    assert sim.advance(60.1) == [TENANT_PLAY]

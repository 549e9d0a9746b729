"""IVR menus, voicemail and the caller hanging up while answered by the router."""

from __future__ import annotations

from typing import Any

from vpbx_common.cdr import EndReason
from vpbx_common.nodeconfig import IvrTarget, NodeConfig, TtsPrompt
from vpbx_media.node.routing import (
    AgentSnapshot,
    Answer,
    CallContext,
    CallerHungUp,
    CallRouter,
    CollectDigits,
    Connect,
    Digit,
    Done,
    Hangup,
    MemberAnswered,
    Play,
    PromptFinished,
    RecordVoicemail,
    Ring,
    RouteResult,
    Sound,
    StopPlayback,
    StopRinging,
    VoicemailFinished,
)
from vpbx_media.node.routing.simulator import Simulator

CALL = CallContext("c1", "acme", "+74950000001", "+79160000000", "msk")
PROMPT = TtsPrompt(text="Press 1 for sales", prompt_id="p-1")


def config(**menu: Any) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": [{"extension": "101", "name": "a", "city": "msk"}],
            "groups": [{"name": "sales", "members": ["101"], "ring_timeout_s": 20}],
            "numbers": [],
            "ivr_menus": [
                {
                    "name": "main",
                    "prompt": PROMPT.model_dump(),
                    "options": {
                        "1": {"type": "group", "name": "sales"},
                        "0": {"type": "voicemail"},
                    },
                    "timeout_s": 5,
                    "max_retries": 2,
                    **menu,
                }
            ],
        }
    )


def simulate(cfg: NodeConfig) -> Simulator:
    sim = Simulator(CallRouter(CALL, cfg, AgentSnapshot(), IvrTarget(name="main")))
    sim.start()
    return sim


def plays(sim: Simulator) -> list[float]:
    return [t for t, play in sim.of(Play) if play.sound == PROMPT]


def test_the_menu_answers_plays_and_a_digit_sends_the_call_on() -> None:
    sim = simulate(config())
    assert sim.timeline == [(0.0, Answer()), (0.0, CollectDigits(1)), (0.0, Play(PROMPT))]
    assert sim.router.next_deadline is not None  # only a guard while the prompt plays
    sim.send(PromptFinished(), at=4.0)
    assert sim.router.next_deadline == 9.0  # the digit timeout starts after the prompt
    actions = sim.send(Digit("1"), at=6.0)
    # answered already: the caller hears our ringback while the group rings
    assert actions == [Ring(("101",), 26.0, "sales"), Play(Sound.RINGBACK, loop=True)]
    actions = sim.send(MemberAnswered("101"), at=8.0)
    assert actions == [StopPlayback(), Connect("101"), Done(RouteResult.CONNECTED)]


def test_a_digit_while_the_prompt_plays_interrupts_it() -> None:
    sim = simulate(config())
    actions = sim.send(Digit("0"), at=1.5)
    assert actions == [StopPlayback(), RecordVoicemail(None, 120)]  # answered once only


def test_no_digit_replays_the_prompt_then_goes_to_the_timeout_target() -> None:
    sim = simulate(config(timeout_target={"type": "hangup", "reason": "busy"}))
    for start in (0.0, 10.0, 20.0):
        sim.send(PromptFinished(), at=start + 5.0)
    sim.run_out()
    assert plays(sim) == [0.0, 10.0, 20.0]  # the first play and max_retries replays
    assert sim.timeline[-2:] == [
        (30.0, Hangup(486, EndReason.BUSY, "hangup:busy", True)),
        (30.0, Done(RouteResult.HUNG_UP)),
    ]


def test_no_digit_and_no_timeout_target_hangs_up() -> None:
    sim = simulate(config(max_retries=0))
    sim.send(PromptFinished(), at=3.0)
    sim.run_out()
    assert sim.of(Hangup) == [
        (8.0, Hangup(200, EndReason.COMPLETED, "no digit after 0 replays: hang up", True))
    ]


def test_wrong_digits_replay_then_go_to_the_invalid_target() -> None:
    sim = simulate(config(invalid_target={"type": "group", "name": "sales"}))
    sim.send(Digit("7"), at=1.0)
    sim.send(Digit("8"), at=2.0)
    assert plays(sim) == [0.0, 1.0, 2.0]
    sim.send(Digit("9"), at=3.0)
    assert sim.of(Ring) == [(3.0, Ring(("101",), 23.0, "sales"))]


def test_wrong_digit_and_timeout_share_the_replays() -> None:
    sim = simulate(config(max_retries=1))
    sim.send(Digit("7"), at=1.0)  # replay 1
    sim.send(PromptFinished(), at=3.0)
    sim.run_out()  # no digit: no replays left, no timeout target
    assert plays(sim) == [0.0, 1.0]
    assert sim.of(Hangup)[0][0] == 8.0


def test_a_lost_prompt_end_does_not_hold_the_caller_for_ever() -> None:
    sim = simulate(config(max_retries=0))
    sim.run_out()
    (t, hangup), *_ = sim.of(Hangup)
    assert t == 305.0  # the prompt guard, then the digit timeout
    assert hangup.answered


def test_voicemail_after_the_menu_ends_with_a_plain_bye() -> None:
    sim = simulate(config())
    sim.send(Digit("0"), at=1.0)
    sim.send(VoicemailFinished(), at=40.0)
    assert sim.of(Hangup) == [(40.0, Hangup(200, EndReason.VOICEMAIL, "voicemail recorded", True))]


def test_the_caller_hanging_up_in_the_menu_ends_routing() -> None:
    sim = simulate(config())
    assert sim.send(CallerHungUp(), at=2.0) == [Done(RouteResult.CALLER_LEFT)]
    assert sim.router.next_deadline is None


def test_the_caller_hanging_up_after_the_menu_stops_the_ringing() -> None:
    sim = simulate(config())
    sim.send(Digit("1"), at=1.0)
    actions = sim.send(CallerHungUp(), at=4.0)
    assert actions == [StopRinging(("101",)), Done(RouteResult.CALLER_LEFT)]

"""Conference rooms without sockets: the router sending calls to rooms, the PIN keys,
and the node's room registry (places, first in starts the mixer, last out closes it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vpbx_common.cdr import EndReason
from vpbx_common.nodeconfig import (
    ConferenceRoomEntry,
    ConferenceTarget,
    IvrTarget,
    NodeConfig,
    RoutePlanTarget,
    Target,
)
from vpbx_media.media.g711 import Codec
from vpbx_media.media.mixer import ConferenceState, Party
from vpbx_media.media.scheduler import PacedScheduler
from vpbx_media.node.calls.room import PIN_ATTEMPTS, PinEntry, PinVerdict
from vpbx_media.node.conference import ConferenceRooms
from vpbx_media.node.routing import (
    AgentSnapshot,
    CallContext,
    CallRouter,
    Digit,
    Done,
    Hangup,
    JoinConference,
    Outcome,
    RouteResult,
    RouterState,
    TargetDecision,
    parse_decision,
)
from vpbx_media.node.routing.simulator import Simulator

CALL = CallContext(call_id="c1", tenant="acme", number="+74950000001", caller="+7916", city="msk")
ROOM_ID = "7d0b3a52-95c5-4c41-9a0e-2b6b3f1c8e01"


def config(**extra: Any) -> NodeConfig:
    document: dict[str, Any] = {
        "tenant": "acme",
        "display_name": "Acme",
        "sip_domain": "acme.pbx",
        "city": "msk",
        "suspended": False,
        "users": [{"extension": "101", "name": "Anna", "city": "msk"}],
        "groups": [],
        "numbers": [],
        "conference_rooms": [{"extension": "800", "name": "All hands", "id": ROOM_ID}],
        "ivr_menus": [
            {"name": "main", "options": {"5": {"type": "conference", "room": "800"}}},
        ],
        "route_plans": [
            {
                "name": "day",
                "steps": [
                    {"type": "conference", "target": {"type": "conference", "room": "800"}},
                ],
            },
            {
                "name": "gone",
                "steps": [
                    {"type": "conference", "target": {"type": "unrouted", "missing": "x"}},
                    {"type": "hangup", "reason": "busy"},
                ],
            },
        ],
    }
    document.update(extra)
    return NodeConfig.model_validate(document)


def simulate(target: Target, cfg: NodeConfig | None = None) -> Simulator:
    sim = Simulator(CallRouter(CALL, cfg or config(), AgentSnapshot(), target))
    sim.start()
    return sim


def test_a_conference_target_hands_the_call_to_the_room() -> None:
    sim = simulate(ConferenceTarget(room="800"))
    assert [action for _, action in sim.timeline] == [
        JoinConference("800"),
        Done(RouteResult.CONFERENCE),
    ]
    assert sim.router.state is RouterState.CONFERENCE
    assert sim.router.finished
    [entry] = sim.router.route
    assert (entry.subject, entry.outcome) == ("conference:800", Outcome.ENTERED)


def test_a_room_that_is_gone_is_unavailable() -> None:
    sim = simulate(ConferenceTarget(room="899"))
    [(_, hangup)] = sim.of(Hangup)
    assert (hangup.status, hangup.end_reason) == (480, EndReason.UNAVAILABLE)
    assert "no such conference room" in hangup.detail


def test_an_ivr_option_leads_into_the_room() -> None:
    sim = simulate(IvrTarget(name="main"))
    actions = sim.send(Digit("5"), at=1.0)
    assert JoinConference("800") in actions
    assert actions[-1] == Done(RouteResult.CONFERENCE)


def test_a_route_plan_step_leads_into_the_room_and_a_deleted_one_is_skipped() -> None:
    sim = simulate(RoutePlanTarget(name="day"))
    assert sim.of(JoinConference) == [(0.0, JoinConference("800"))]
    skipped = simulate(RoutePlanTarget(name="gone"))
    assert skipped.of(JoinConference) == []
    [(_, hangup)] = skipped.of(Hangup)
    assert hangup.status == 486  # the plan went on to its next step
    assert any("x no longer exists" in entry.detail for entry in skipped.router.route)


def test_an_http_decision_can_name_a_room_by_id() -> None:
    body = json.dumps({"action": "target", "target": f"conference:{ROOM_ID}"}).encode()
    decision = parse_decision(200, body, config())
    assert isinstance(decision, TargetDecision)
    assert decision.target == ConferenceTarget(room="800", room_id=ROOM_ID)


# --- PIN keys -------------------------------------------------------------------------


def keys(entry: PinEntry, typed: str) -> list[PinVerdict]:
    return [verdict for key in typed if (verdict := entry.key(key)) is not None]


def test_the_pin_ends_with_hash_and_star_starts_it_over() -> None:
    assert keys(PinEntry("2468"), "2468#") == [PinVerdict.RIGHT]
    assert keys(PinEntry("2468"), "13*2468#") == [PinVerdict.RIGHT]
    assert keys(PinEntry("2468"), "2468") == []  # not before the hash key


def test_three_wrong_attempts_refuse_and_a_pause_counts_as_one() -> None:
    entry = PinEntry("2468")
    assert keys(entry, "1111#") == [PinVerdict.WRONG]
    assert entry.submit() is PinVerdict.WRONG  # the pause: nothing keyed
    assert keys(entry, "24") == []
    assert entry.submit() is PinVerdict.REFUSED
    assert (entry.wrong, entry.attempts_left) == (PIN_ATTEMPTS, 0)


def test_eight_digits_end_the_pin_without_hash() -> None:
    entry = PinEntry("12345678")
    assert keys(entry, "12345678") == [PinVerdict.RIGHT]
    assert keys(PinEntry("1234"), "123456789") == [PinVerdict.WRONG]


# --- the registry -----------------------------------------------------------------------


def party(name: str) -> Party:
    return Party(name, Codec.PCMU, lambda datagram: None)


@pytest.fixture
def rooms() -> ConferenceRooms:
    registry = ConferenceRooms(PacedScheduler(), "acme")
    registry.start()
    return registry


def test_places_are_taken_until_the_room_is_full(rooms: ConferenceRooms) -> None:
    room = ConferenceRoomEntry(extension="800", name="Pair", max_participants=2)
    first, second = rooms.admit(room, "c1"), rooms.admit(room, "c2")
    assert first is not None
    assert second is not None
    assert rooms.admit(room, "c3") is None
    assert rooms.admit(room, "c1") is first  # the same call keeps its place
    second.leave()
    second.leave()  # idempotent
    assert rooms.places_taken("800") == 1
    assert rooms.admit(room, "c3") is not None


def test_the_first_in_starts_the_mixer_and_the_last_out_closes_the_room(
    rooms: ConferenceRooms,
) -> None:
    room = ConferenceRoomEntry(extension="800", name="All hands")
    first, second = rooms.admit(room, "c1"), rooms.admit(room, "c2")
    assert first is not None
    assert second is not None
    first.join(party("c1"))
    conference = first._room.conference
    assert conference.state is ConferenceState.RUNNING
    second.join(party("c2"))
    assert rooms.participants("800") == 2
    first.leave()
    assert rooms.participants("800") == 1
    assert "800" in rooms
    second.leave()
    assert "800" not in rooms
    assert conference.state is ConferenceState.STOPPED
    with pytest.raises(RuntimeError):
        second.join(party("late"))


def test_a_place_given_back_before_joining_closes_an_empty_room(rooms: ConferenceRooms) -> None:
    room = ConferenceRoomEntry(extension="801", name="Board", pin="2468")
    seat = rooms.admit(room, "c1")
    assert seat is not None
    assert "801" in rooms
    seat.leave()  # a wrong PIN
    assert "801" not in rooms


def test_stopping_the_rooms_stops_every_mixer_and_admits_nobody(rooms: ConferenceRooms) -> None:
    room = ConferenceRoomEntry(extension="800", name="All hands")
    seat = rooms.admit(room, "c1")
    assert seat is not None
    seat.join(party("c1"))
    conference = seat._room.conference
    rooms.stop()
    assert conference.state is ConferenceState.STOPPED
    assert rooms.admit(room, "c2") is None
    assert rooms.stats() == []

"""Conference rooms in the node-config contract: compiled from a TenantSource, reachable
by every kind of reference (IVR option, number entry, route-plan step), refused where
their extension is a user's."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from vpbx_common.manifests import Number
from vpbx_common.nodeconfig import (
    ConferenceRoomEntry,
    ConferenceTarget,
    NodeConfig,
    SourceConferenceRoom,
    SourceIvrMenu,
    SourceRoutePlan,
    SourceUser,
    TenantSource,
    UnroutedTarget,
    compile_node_config,
    describe,
)
from vpbx_common.nodeconfig.steps import ConferenceStep

ROOM = str(uuid.uuid4())
CLASH = str(uuid.uuid4())
GONE = str(uuid.uuid4())


def number(entry: str) -> Number:
    return Number.model_validate(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Number",
            "metadata": {"name": "acme-main"},
            "spec": {"number": "+74950000001", "tenant": "acme", "city": "msk", "entry": entry},
        }
    )


def source(entry: str = f"conference:{ROOM}") -> TenantSource:
    return TenantSource(
        tenant="acme",
        display_name="Acme",
        sip_domain="acme.test",
        cities=["msk", "nsk"],
        users=[SourceUser(extension="101", name="Anna", id=str(uuid.uuid4()))],
        conference_rooms=[
            SourceConferenceRoom(id=ROOM, extension="800", name="All hands", pin="2468"),
            SourceConferenceRoom(id=CLASH, extension="101", name="Clash"),
        ],
        ivr_menus=[
            SourceIvrMenu(
                id=str(uuid.uuid4()),
                name="main",
                prompt={},
                options={
                    "1": {"type": "conference", "room_id": ROOM},
                    "2": {"type": "conference", "room_id": GONE},
                },
                timeout_s=5,
                max_retries=2,
            )
        ],
        route_plans=[
            SourceRoutePlan(
                id=str(uuid.uuid4()),
                name="day",
                steps=[{"type": "conference", "room_id": ROOM}],
            )
        ],
        numbers=[number(entry)],
    )


def test_rooms_are_compiled_with_their_pin_and_size() -> None:
    config = compile_node_config(source(), "nsk")
    [room] = config.conference_rooms  # the one whose extension is a user's is left out
    assert room == ConferenceRoomEntry(
        id=ROOM, extension="800", name="All hands", pin="2468", max_participants=10
    )
    assert config.conference_room("800") == room
    assert config.conference_room("101") is None
    assert config.user("101") is not None
    # The document round-trips (a node reads it back from JSON).
    assert NodeConfig.from_json(config.to_json()).conference_room("800") == room


def test_every_kind_of_reference_reaches_the_room() -> None:
    config = compile_node_config(source(), "msk")
    target = ConferenceTarget(room="800", room_id=ROOM)
    menu = config.ivr_menu("main")
    assert menu is not None
    assert menu.options["1"] == target
    assert menu.options["2"] == UnroutedTarget(missing=f"conference:{GONE}")
    plan = config.route_plan("day")
    assert plan is not None
    assert plan.steps == [ConferenceStep(target=target)]
    assert config.numbers[0].target == target
    assert describe(target) == "conference:800"


def test_a_hand_written_entry_naming_the_rooms_extension_reaches_it() -> None:
    config = compile_node_config(source(entry="800"), "msk")
    assert config.numbers[0].target == ConferenceTarget(room="800", room_id=ROOM)


@pytest.mark.parametrize("size", [1, 33])
def test_a_room_holds_2_to_32(size: int) -> None:
    with pytest.raises(ValidationError):
        ConferenceRoomEntry(extension="800", name="x", max_participants=size)


def test_a_config_of_an_older_compiler_has_no_rooms() -> None:
    config = NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.test",
            "city": "msk",
            "suspended": False,
            "users": [],
            "groups": [],
            "numbers": [],
        }
    )
    assert config.conference_rooms == []
    assert config.conference_room("800") is None

"""/v1/conference-rooms: CRUD, one plan of extensions with the users, the write-only
PIN, rooms as targets (IVR option, number entry, route-plan step, group overflow)
compiled into the node config, and isolation."""

from __future__ import annotations

from typing import Any

from tests.services.control_api import ApiHarness

from vpbx_control.auth.principal import Role

PIN = "97531"
ROOM: dict[str, Any] = {"extension": "800", "name": "All hands", "pin": PIN}


async def _room(api: ApiHarness, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    created = await api.client.post(
        "/v1/conference-rooms", json={**ROOM, **fields}, headers=headers
    )
    assert created.status_code == 201, created.text
    room: dict[str, Any] = created.json()
    return room


async def test_create_read_update_delete_and_the_pin_is_never_shown(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    created = await api.client.post("/v1/conference-rooms", json=ROOM, headers=admin)
    assert created.status_code == 201, created.text
    room = created.json()
    assert created.headers["Location"] == f"/v1/conference-rooms/{room['id']}"
    assert {k: room[k] for k in ("extension", "name", "pin_set", "max_participants")} == {
        "extension": "800",
        "name": "All hands",
        "pin_set": True,
        "max_participants": 10,
    }
    assert "pin" not in room
    assert PIN not in created.text

    agent = await api.as_role("acme", Role.AGENT)
    read = await api.client.get(f"/v1/conference-rooms/{room['id']}", headers=agent)
    assert read.status_code == 200
    assert read.json() == room
    assert PIN not in read.text
    listed = await api.client.get("/v1/conference-rooms", headers=agent)
    assert [item["id"] for item in listed.json()["items"]] == [room["id"]]
    assert PIN not in listed.text
    refused = await api.client.post(
        "/v1/conference-rooms", json={**ROOM, "extension": "801"}, headers=agent
    )
    assert refused.status_code == 403

    etag = read.headers["ETag"]
    changed = await api.client.patch(
        f"/v1/conference-rooms/{room['id']}",
        json={"name": "Board", "max_participants": 32},
        headers={**admin, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["max_participants"]) == ("Board", 32)
    assert changed.json()["pin_set"] is True  # left out: unchanged
    stale = await api.client.patch(
        f"/v1/conference-rooms/{room['id']}",
        json={"name": "Other"},
        headers={**admin, "If-Match": etag},
    )
    assert stale.status_code == 412
    no_pin = await api.client.patch(
        f"/v1/conference-rooms/{room['id']}", json={"pin": None}, headers=admin
    )
    assert no_pin.json()["pin_set"] is False
    new_pin = await api.client.patch(
        f"/v1/conference-rooms/{room['id']}", json={"pin": "1234"}, headers=admin
    )
    assert new_pin.json()["pin_set"] is True
    assert "1234" not in new_pin.text

    deleted = await api.client.delete(f"/v1/conference-rooms/{room['id']}", headers=admin)
    assert deleted.status_code == 204
    gone = await api.client.get(f"/v1/conference-rooms/{room['id']}", headers=admin)
    assert gone.status_code == 404


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    cases = [
        ({**ROOM, "pin": "12a4"}, "body.pin"),
        ({**ROOM, "pin": "123"}, "body.pin"),
        ({**ROOM, "pin": "123456789"}, "body.pin"),
        ({**ROOM, "extension": "8"}, "body.extension"),
        ({**ROOM, "extension": "8000000"}, "body.extension"),
        ({**ROOM, "max_participants": 33}, "body.max_participants"),
        ({**ROOM, "max_participants": 1}, "body.max_participants"),
        ({**ROOM, "name": ""}, "body.name"),
        ({**ROOM, "moderator": True}, "body.moderator"),
    ]
    for body, field in cases:
        response = await api.client.post("/v1/conference-rooms", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["details"][0]["field"] == field, response.json()
        assert "12a4" not in response.text or field != "body.pin"


async def test_rooms_and_users_share_one_plan_of_extensions(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    await api.add_user("acme", extension="101")
    taken = await api.client.post(
        "/v1/conference-rooms", json={**ROOM, "extension": "101"}, headers=admin
    )
    assert taken.status_code == 409
    assert taken.json()["error_id"] == "extension-taken"
    assert taken.json()["details"][0]["field"] == "body.extension"

    room = await _room(api, admin)
    twice = await api.client.post("/v1/conference-rooms", json=ROOM, headers=admin)
    assert twice.status_code == 409
    assert twice.json()["error_id"] == "extension-taken"
    other = await _room(api, admin, extension="801")
    moved = await api.client.patch(
        f"/v1/conference-rooms/{other['id']}", json={"extension": "800"}, headers=admin
    )
    assert moved.status_code == 409
    assert moved.json()["error_id"] == "extension-taken"
    same = await api.client.patch(
        f"/v1/conference-rooms/{room['id']}", json={"extension": "800"}, headers=admin
    )
    assert same.status_code == 200  # its own extension is no clash

    user = await api.client.post(
        "/v1/users",
        json={"email": "ivan@acme.example", "name": "Ivan", "role": "agent", "extension": "800"},
        headers=admin,
    )
    assert user.status_code == 409
    assert user.json()["error_id"] == "extension-taken"
    assert "conference room" in user.json()["message"]
    # Another tenant's 800 is another room.
    await _room(api, await api.as_role("globex"))


async def test_rooms_are_targets_everywhere_and_compile_into_the_node_config(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    room = await _room(api, admin, max_participants=5)
    target = {"type": "conference", "room_id": room["id"]}
    menu = await api.client.post(
        "/v1/ivr-menus", json={"name": "main", "options": {"1": target}}, headers=admin
    )
    assert menu.status_code == 201, menu.text
    plan = await api.client.post(
        "/v1/route-plans",
        json={"name": "day", "steps": [{"type": "conference", "room_id": room["id"]}]},
        headers=admin,
    )
    assert plan.status_code == 201, plan.text
    group = await api.client.post(
        "/v1/groups",
        json={"name": "sales", "strategy": "ring-all", "members": [], "overflow": target},
        headers=admin,
    )
    assert group.status_code == 201, group.text
    pool = await api.client.post(
        "/v1/platform/pool", json={"city": "msk", "numbers": ["+74950000001"]}, headers=api.platform
    )
    assert pool.status_code == 201, pool.text
    number = await api.client.post(
        "/v1/numbers", json={"city": "msk", "entry": target}, headers=admin
    )
    assert number.status_code == 201, number.text
    assert number.json()["entry"] == target

    compiled = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    config = compiled.json()
    assert config["conference_rooms"] == [
        {
            "extension": "800",
            "name": "All hands",
            "id": room["id"],
            "pin": PIN,  # the node compares what callers key in
            "max_participants": 5,
        }
    ]
    node_target = {"type": "conference", "room": "800", "room_id": room["id"]}
    assert config["ivr_menus"][0]["options"]["1"] == node_target
    assert config["route_plans"][0]["steps"] == [{"type": "conference", "target": node_target}]
    assert config["groups"][0]["overflow"] == node_target
    assert config["numbers"][0]["target"] == node_target

    # Still used: not deleted. Each referrer named.
    refused = await api.client.delete(f"/v1/conference-rooms/{room['id']}", headers=admin)
    assert refused.status_code == 409
    for name in ("route plan 'day'", "IVR menu 'main'", "group 'sales'"):
        assert name in refused.json()["message"]
    for path in (
        f"/v1/route-plans/{plan.json()['id']}",
        f"/v1/ivr-menus/{menu.json()['id']}",
        f"/v1/groups/{group.json()['id']}",
    ):
        assert (await api.client.delete(path, headers=admin)).status_code == 204
    entry = await api.client.delete(f"/v1/conference-rooms/{room['id']}", headers=admin)
    assert entry.status_code == 409
    assert entry.json()["error_id"] == "conference-room-used-by-number"
    unrouted = await api.client.patch(
        f"/v1/numbers/{number.json()['id']}", json={"entry": None}, headers=admin
    )
    assert unrouted.status_code == 200, unrouted.text
    deleted = await api.client.delete(f"/v1/conference-rooms/{room['id']}", headers=admin)
    assert deleted.status_code == 204


async def test_another_tenants_room_is_not_found(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    room = await _room(api, acme)
    globex = await api.as_role("globex")
    url = f"/v1/conference-rooms/{room['id']}"
    assert (await api.client.get(url, headers=globex)).status_code == 404
    patched = await api.client.patch(url, json={"name": "mine"}, headers=globex)
    assert patched.status_code == 404
    assert (await api.client.delete(url, headers=globex)).status_code == 404
    listed = await api.client.get("/v1/conference-rooms", headers=globex)
    assert listed.json()["items"] == []
    # Nor can globex send its calls into acme's room.
    stolen = await api.client.post(
        "/v1/ivr-menus",
        json={"name": "main", "options": {"1": {"type": "conference", "room_id": room["id"]}}},
        headers=globex,
    )
    assert stolen.status_code == 404
    assert stolen.json()["error_id"] == "reference-not-found"
    assert stolen.json()["details"][0]["field"] == "body.options.1.room_id"
    step = await api.client.post(
        "/v1/route-plans",
        json={"name": "day", "steps": [{"type": "conference", "room_id": room["id"]}]},
        headers=globex,
    )
    assert step.status_code == 404
    assert step.json()["details"][0]["field"] == "body.steps[0].room_id"
    assert (await api.client.get(url, headers=acme)).json()["name"] == "All hands"

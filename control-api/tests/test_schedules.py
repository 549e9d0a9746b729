"""/v1/schedules: the pattern every tenant resource follows (CRUD, ETags, isolation)."""

from __future__ import annotations

from typing import Any

from tests.services.control_api import ApiHarness

from vpbx_control.auth.principal import Role

OFFICE: dict[str, Any] = {
    "name": "office hours",
    "time_zone": "Europe/Moscow",
    "weekly": [
        {"day": "mon", "start": "09:00", "end": "13:00"},
        {"day": "mon", "start": "14:00", "end": "18:00"},
    ],
    "special_days": [{"date": "2027-01-01", "name": "New Year", "hours": []}],
}


async def test_create_read_update_delete(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    created = await api.client.post("/v1/schedules", json=OFFICE, headers=admin)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert created.headers["Location"] == f"/v1/schedules/{schedule['id']}"
    assert schedule["weekly"][1] == {"day": "mon", "start": "14:00", "end": "18:00"}

    read = await api.client.get(f"/v1/schedules/{schedule['id']}", headers=admin)
    assert read.json() == schedule
    etag = read.headers["ETag"]

    changed = await api.client.patch(
        f"/v1/schedules/{schedule['id']}",
        json={"time_zone": "Asia/Yekaterinburg"},
        headers={**admin, "If-Match": etag},
    )
    assert changed.status_code == 200
    assert changed.json()["time_zone"] == "Asia/Yekaterinburg"
    assert changed.json()["weekly"] == schedule["weekly"]
    assert changed.headers["ETag"] != etag

    # A second admin still holding the old ETag does not overwrite the change.
    stale = await api.client.patch(
        f"/v1/schedules/{schedule['id']}",
        json={"time_zone": "Europe/Kaliningrad"},
        headers={**admin, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.json()["error_id"] == "precondition-failed"

    listed = await api.client.get("/v1/schedules", params={"name": "OFFICE"}, headers=admin)
    assert [item["id"] for item in listed.json()["items"]] == [schedule["id"]]

    deleted = await api.client.delete(f"/v1/schedules/{schedule['id']}", headers=admin)
    assert deleted.status_code == 204
    gone = await api.client.get(f"/v1/schedules/{schedule['id']}", headers=admin)
    assert gone.status_code == 404


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    cases = [
        ({**OFFICE, "time_zone": "Mars/Olympus"}, "body.time_zone"),
        (
            {**OFFICE, "weekly": [{"day": "mon", "start": "18:00", "end": "09:00"}]},
            "body.weekly[0]",
        ),
        (
            {**OFFICE, "weekly": [{"day": "xyz", "start": "09:00", "end": "10:00"}]},
            "body.weekly[0].day",
        ),
        (
            {**OFFICE, "weekly": [{"day": "mon", "start": "9am", "end": "10:00"}]},
            "body.weekly[0].start",
        ),
    ]
    for body, field in cases:
        response = await api.client.post("/v1/schedules", json=body, headers=admin)
        assert response.status_code == 422, body
        assert field in [detail["field"] for detail in response.json()["details"]], response.json()


async def test_names_are_unique_within_a_tenant_only(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    globex = await api.as_role("globex")
    assert (await api.client.post("/v1/schedules", json=OFFICE, headers=acme)).status_code == 201
    again = await api.client.post("/v1/schedules", json=OFFICE, headers=acme)
    assert again.status_code == 409
    assert again.json()["error_id"] == "schedule-name-taken"
    assert (await api.client.post("/v1/schedules", json=OFFICE, headers=globex)).status_code == 201


async def test_another_tenants_schedule_is_not_found(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    created = (await api.client.post("/v1/schedules", json=OFFICE, headers=acme)).json()
    globex_key = await api.api_key("globex")
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.client.request(
            method,
            f"/v1/schedules/{created['id']}",
            json={"name": "stolen"} if method == "PATCH" else None,
            headers=globex_key,
        )
        assert response.status_code == 404, method
    assert (await api.client.get("/v1/schedules", headers=globex_key)).json()["total"] == 0


async def test_agents_read_but_do_not_change_schedules(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    agent = await api.as_role("acme", Role.AGENT)
    created = (await api.client.post("/v1/schedules", json=OFFICE, headers=admin)).json()
    assert (
        await api.client.get(f"/v1/schedules/{created['id']}", headers=agent)
    ).status_code == 200
    refused = await api.client.patch(
        f"/v1/schedules/{created['id']}", json={"name": "x"}, headers=agent
    )
    assert refused.status_code == 403


async def test_a_change_is_announced_to_the_tenants_nodes(api: ApiHarness) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    async with api.context.redis.pubsub() as pubsub:
        await pubsub.subscribe("vpbx:config:acme")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await api.client.post("/v1/schedules", json=OFFICE, headers=admin)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    assert message["data"] == b"acme"

"""POST /v1/users/me/devices: a user's own browser softphone (the agent workspace)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from tests.services.control_api import ApiHarness

from vpbx_common.sipauth import DigestAlgorithm, ha1
from vpbx_control.auth.principal import Role
from vpbx_control.users.models import DeviceRow

URL = "/v1/users/me/devices"


async def _user_devices(api: ApiHarness, user_id: uuid.UUID) -> list[DeviceRow]:
    async with api.context.database.session() as session:
        result = await session.execute(
            select(DeviceRow).where(DeviceRow.user_id == user_id).order_by(DeviceRow.created_at)
        )
        return list(result.scalars().all())


async def test_an_agent_gets_credentials_for_their_browser_once(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    olga = await api.add_user("acme", role=Role.AGENT, extension="101", password="olga-pw-12")
    headers = await api.login(olga.email, "olga-pw-12")

    created = await api.client.post(
        URL, json={"kind": "browser", "name": "Chromium"}, headers=headers
    )

    assert created.status_code == 201, created.text
    assert created.headers["Cache-Control"] == "no-store"
    device = created.json()
    assert device["kind"] == "browser"
    assert device["user_id"] == str(olga.id)
    assert device["username"] == "101-web"
    assert device["sip_domain"] == "acme.vpbx.test"
    (row,) = await _user_devices(api, olga.id)
    assert row.ha1_md5 == ha1("101-web", "acme.vpbx.test", device["password"], DigestAlgorithm.MD5)
    # Listed as the user's own device, without the password.
    listed = await api.client.get(f"/v1/users/{olga.id}/devices", headers=headers)
    assert [d["kind"] for d in listed.json()["items"]] == ["browser"]
    assert device["password"] not in listed.text


async def test_the_sixth_browser_replaces_the_oldest_and_desk_phones_stay(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    olga = await api.add_user("acme", role=Role.AGENT, extension="101", password="olga-pw-12")
    headers = await api.login(olga.email, "olga-pw-12")
    desk = await api.client.post(
        f"/v1/users/{olga.id}/devices", json={"name": "desk"}, headers=admin
    )
    assert desk.status_code == 201, desk.text

    names = [f"browser {n}" for n in range(6)]
    for name in names:
        response = await api.client.post(
            URL, json={"kind": "browser", "name": name}, headers=headers
        )
        assert response.status_code == 201, response.text

    rows = await _user_devices(api, olga.id)
    assert sorted(row.name for row in rows) == sorted(["desk", *names[1:]])
    assert {row.username for row in rows if row.kind == "phone"} == {"101"}


async def test_bad_bodies_name_the_field(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    olga = await api.add_user("acme", role=Role.AGENT, extension="101", password="olga-pw-12")
    headers = await api.login(olga.email, "olga-pw-12")

    for body, field in (
        ({"kind": "phone", "name": "desk"}, "body.kind"),
        ({"name": "no kind"}, "body.kind"),
        ({"kind": "browser", "name": ""}, "body.name"),
        ({"kind": "browser", "name": "x", "username": "101"}, "body.username"),
    ):
        response = await api.client.post(URL, json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        assert field in [d["field"] for d in response.json()["details"]], response.text
    assert await _user_devices(api, olga.id) == []


async def test_a_user_without_an_extension_or_an_api_key_gets_none(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    boss = await api.add_user("acme", role=Role.SUPERVISOR, password="boss-pw-123")
    boss_headers = await api.login(boss.email, "boss-pw-123")
    no_extension = await api.client.post(
        URL, json={"kind": "browser", "name": "x"}, headers=boss_headers
    )
    assert no_extension.status_code == 422, no_extension.text

    key = await api.api_key("acme")
    by_key = await api.client.post(URL, json={"kind": "browser", "name": "x"}, headers=key)
    assert by_key.status_code == 404, by_key.text
    assert by_key.json()["error_id"] == "not-a-user"
    assert await _user_devices(api, boss.id) == []

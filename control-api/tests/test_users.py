"""/v1/users: people, extensions, presence, self-service and SIP devices."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from tests.services.control_api import ApiHarness

from vpbx_common.agents import AgentStateStore
from vpbx_common.manifests import PLATFORM_API_VERSION, Number
from vpbx_common.pbx import Presence
from vpbx_common.sipauth import DigestAlgorithm, ha1
from vpbx_control.auth.principal import Role
from vpbx_control.groups.models import GroupMemberRow, GroupRow
from vpbx_control.users.models import DeviceRow

ANNA: dict[str, Any] = {
    "email": "Anna@Acme.Example",
    "name": "Anna Petrova",
    "role": "agent",
    "extension": "101",
    "city": "msk",
    "mobile": "8 (916) 123-45-67",
    "rank": 70,
    "skills": ["english", "sales", "english"],
    "settings": {"forward_to_mobile": True, "forward_after_s": 15},
}
PASSWORD = "a long initial password"


async def _create(api: ApiHarness, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Someone", "role": "agent", **fields}
    body.setdefault("email", f"{uuid.uuid4().hex[:8]}@acme.example")
    response = await api.client.post("/v1/users", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def _devices_in_db(api: ApiHarness, user_id: str) -> list[DeviceRow]:
    async with api.context.database.session() as session:
        result = await session.execute(
            select(DeviceRow).where(DeviceRow.user_id == uuid.UUID(user_id))
        )
        return list(result.scalars().all())


async def test_create_read_update_delete(api: ApiHarness) -> None:
    await api.add_tenant("acme", cities=("msk", "spb"))
    admin = await api.as_role("acme")
    created = await api.client.post("/v1/users", json={**ANNA, "password": PASSWORD}, headers=admin)
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["Location"] == f"/v1/users/{user['id']}"
    assert user["email"] == "anna@acme.example"
    assert user["mobile"] == "+79161234567"
    assert user["skills"] == ["english", "sales"]
    assert user["settings"] == {
        "forward_to_mobile": True,
        "forward_after_s": 15,
        "mobile_parallel": False,
        "forward_all_to": None,
        "wrap_up_s": 0,
        "voicemail": True,
        "record": None,
        "voicemail_greeting": None,
        "caller_id": None,
    }
    assert user["presence"] == "available"
    assert user["has_password"] is True
    assert PASSWORD not in created.text
    assert "password_hash" not in user
    assert "token_generation" not in user

    read = await api.client.get(f"/v1/users/{user['id']}", headers=admin)
    assert read.json() == user
    etag = read.headers["ETag"]

    changed = await api.client.patch(
        f"/v1/users/{user['id']}",
        json={"city": "spb", "rank": 90, "settings": {"wrap_up_s": 30}},
        headers={**admin, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["city"] == "spb"
    assert changed.json()["rank"] == 90
    # A partial settings change keeps the other settings.
    assert changed.json()["settings"]["forward_after_s"] == 15
    assert changed.json()["settings"]["wrap_up_s"] == 30
    assert changed.headers["ETag"] != etag

    stale = await api.client.patch(
        f"/v1/users/{user['id']}", json={"rank": 1}, headers={**admin, "If-Match": etag}
    )
    assert stale.status_code == 412

    cleared = await api.client.patch(
        f"/v1/users/{user['id']}",
        json={"city": None, "settings": {"forward_to_mobile": False}, "mobile": None},
        headers=admin,
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["city"] is None
    assert cleared.json()["mobile"] is None

    deleted = await api.client.delete(f"/v1/users/{user['id']}", headers=admin)
    assert deleted.status_code == 204
    assert (await api.client.get(f"/v1/users/{user['id']}", headers=admin)).status_code == 404


async def test_a_created_user_logs_in_with_the_initial_password(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    user = await _create(api, admin, email="new@acme.example", password=PASSWORD)
    token = await api.login("NEW@acme.example", PASSWORD)
    me = await api.client.get("/v1/users/me", headers=token)
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]
    assert me.json()["last_login_at"] is not None


async def test_list_filters_and_sorts_by_extension_then_name(api: ApiHarness) -> None:
    await api.add_tenant("acme", cities=("msk", "spb"))
    admin = await api.as_role("acme")  # a tenant admin without an extension, named Test User
    await _create(api, admin, name="Zoe", extension="100", city="spb", skills=["vip"])
    await _create(api, admin, name="Boris", extension="20", role="supervisor")
    await _create(api, admin, name="Yuri", email="yuri@acme.example", presence="away")
    await _create(api, admin, name="Alla")

    async def names(**params: str) -> list[str]:
        response = await api.client.get("/v1/users", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names() == ["Boris", "Zoe", "Alla", "Test User", "Yuri"]
    assert await names(role="supervisor") == ["Boris"]
    assert await names(city="spb") == ["Zoe"]
    assert await names(extension="20") == ["Boris"]
    assert await names(presence="away") == ["Yuri"]
    assert await names(q="YURI@") == ["Yuri"]
    assert await names(q="or") == ["Boris"]
    page = await api.client.get("/v1/users", params={"limit": 2, "offset": 1}, headers=admin)
    assert [item["name"] for item in page.json()["items"]] == ["Zoe", "Alla"]
    assert page.json()["total"] == 5


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    await api.add_tenant("acme", cities=("msk",))
    admin = await api.as_role("acme")
    cases: list[tuple[dict[str, Any], str]] = [
        ({**ANNA, "email": "not-an-address"}, "body.email"),
        ({**ANNA, "extension": "1"}, "body.extension"),
        ({**ANNA, "extension": "1234567"}, "body.extension"),
        ({**ANNA, "extension": "10a"}, "body.extension"),
        ({**ANNA, "city": "paris"}, "body.city"),
        ({**ANNA, "mobile": "12"}, "body.mobile"),
        ({**ANNA, "rank": 101}, "body.rank"),
        ({**ANNA, "role": "root"}, "body.role"),
        ({**ANNA, "skills": ["Has Spaces"]}, "body.skills[0]"),
        ({**ANNA, "presence": "busy"}, "body.presence"),
        ({**ANNA, "settings": {"forward_after_s": 3}}, "body.settings.forward_after_s"),
        ({**ANNA, "settings": {"ring_forever": True}}, "body.settings.ring_forever"),
        ({**ANNA, "password": "short"}, "body.password"),
        ({**ANNA, "mobile": None}, "body.settings.forward_to_mobile"),
        ({**ANNA, "token_generation": 7}, "body.token_generation"),
    ]
    for body, field in cases:
        response = await api.client.post("/v1/users", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error_id"] == "validation-failed"
        assert field in [detail["field"] for detail in response.json()["details"]], response.json()
    assert (await api.client.get("/v1/users", headers=admin)).json()["total"] == 1


async def test_email_is_unique_everywhere_and_extension_within_the_tenant(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    globex = await api.as_role("globex")
    anna = await _create(api, acme, email="anna@acme.example", extension="101")

    for headers in (acme, globex):
        taken = await api.client.post(
            "/v1/users", json={"email": "ANNA@acme.example", "name": "Other"}, headers=headers
        )
        assert taken.status_code == 409
        assert taken.json()["error_id"] == "email-taken"
        assert taken.json()["details"][0]["field"] == "body.email"

    clash = await api.client.post(
        "/v1/users", json={"email": "b@acme.example", "name": "B", "extension": "101"}, headers=acme
    )
    assert clash.status_code == 409
    assert clash.json()["error_id"] == "extension-taken"
    assert clash.json()["details"][0]["field"] == "body.extension"
    await _create(api, globex, extension="101")  # another tenant's 101 is a different phone

    other = await _create(api, acme, extension="102")
    moved = await api.client.patch(
        f"/v1/users/{other['id']}", json={"extension": "101"}, headers=acme
    )
    assert moved.status_code == 409
    assert moved.json()["error_id"] == "extension-taken"
    renamed = await api.client.patch(
        f"/v1/users/{other['id']}", json={"email": anna["email"]}, headers=acme
    )
    assert renamed.status_code == 409
    assert renamed.json()["error_id"] == "email-taken"
    # Setting a user's own values again is no conflict.
    same = await api.client.patch(
        f"/v1/users/{anna['id']}",
        json={"extension": "101", "email": "anna@acme.example"},
        headers=acme,
    )
    assert same.status_code == 200


async def test_seats_limit_the_users_with_an_extension(api: ApiHarness) -> None:
    await api.add_tenant("acme", seats=2)
    admin = await api.as_role("acme")
    first = await _create(api, admin, extension="101")
    await _create(api, admin, extension="102")

    full = await api.client.post(
        "/v1/users",
        json={"email": "c@acme.example", "name": "C", "extension": "103"},
        headers=admin,
    )
    assert full.status_code == 409
    assert full.json()["error_id"] == "plan-limit-reached"
    assert "2 seats" in full.json()["message"]
    assert full.json()["details"][0]["field"] == "body.extension"

    # Users without an extension take no seat; giving them one does.
    third = await _create(api, admin, email="c@acme.example", name="C")
    given = await api.client.patch(
        f"/v1/users/{third['id']}", json={"extension": "103"}, headers=admin
    )
    assert given.status_code == 409
    assert given.json()["error_id"] == "plan-limit-reached"

    # Moving a seated user to another extension keeps the count.
    moved = await api.client.patch(
        f"/v1/users/{first['id']}", json={"extension": "105"}, headers=admin
    )
    assert moved.status_code == 200
    freed = await api.client.patch(
        f"/v1/users/{first['id']}", json={"extension": None}, headers=admin
    )
    assert freed.status_code == 200
    assert freed.json()["extension"] is None
    given = await api.client.patch(
        f"/v1/users/{third['id']}", json={"extension": "103"}, headers=admin
    )
    assert given.status_code == 200


async def test_a_role_or_password_change_signs_the_user_out(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    user = await _create(api, admin, email="agent@acme.example", password=PASSWORD)
    old = await api.login("agent@acme.example", PASSWORD)
    assert (await api.client.get("/v1/users/me", headers=old)).status_code == 200

    # Unrelated changes leave the session alone.
    renamed = await api.client.patch(
        f"/v1/users/{user['id']}", json={"name": "Renamed"}, headers=admin
    )
    assert renamed.status_code == 200
    assert (await api.client.get("/v1/users/me", headers=old)).status_code == 200

    promoted = await api.client.patch(
        f"/v1/users/{user['id']}", json={"role": "supervisor"}, headers=admin
    )
    assert promoted.status_code == 200
    assert (await api.client.get("/v1/users/me", headers=old)).status_code == 401
    fresh = await api.login("agent@acme.example", PASSWORD)
    who = await api.client.get("/v1/auth/me", headers=fresh)
    assert who.json()["role"] == "supervisor"

    reset = await api.client.patch(
        f"/v1/users/{user['id']}", json={"password": "another long password"}, headers=admin
    )
    assert reset.status_code == 200
    assert (await api.client.get("/v1/users/me", headers=fresh)).status_code == 401
    refused = await api.client.post(
        "/v1/auth/login", json={"email": "agent@acme.example", "password": PASSWORD}
    )
    assert refused.status_code == 401
    await api.login("agent@acme.example", "another long password")


async def test_self_service_changes_only_personal_fields(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", email="me@acme.example", password=PASSWORD, extension="101")
    me = await api.login("me@acme.example", PASSWORD)

    changed = await api.client.patch(
        "/v1/users/me",
        json={
            "presence": "do-not-disturb",
            "mobile": "+7 916 000-11-22",
            "settings": {"forward_to_mobile": True, "wrap_up_s": 10},
        },
        headers=me,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["presence"] == "do-not-disturb"
    assert body["mobile"] == "+79160001122"
    assert body["settings"]["forward_to_mobile"] is True
    assert body["settings"]["forward_after_s"] == 20

    for field, value in (("role", "tenant-admin"), ("extension", "999"), ("rank", 100)):
        refused = await api.client.patch("/v1/users/me", json={field: value}, headers=me)
        assert refused.status_code == 422
        assert refused.json()["details"][0]["field"] == f"body.{field}"
    unset = await api.client.patch("/v1/users/me", json={"mobile": None}, headers=me)
    assert unset.status_code == 422
    assert unset.json()["details"][0]["field"] == "body.mobile"
    assert (await api.client.get("/v1/users/me", headers=me)).json()["role"] == "agent"


async def test_changing_ones_own_password_needs_the_current_one(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", email="me@acme.example", password=PASSWORD)
    me = await api.login("me@acme.example", PASSWORD)

    missing = await api.client.patch(
        "/v1/users/me", json={"password": "brand new password"}, headers=me
    )
    assert missing.status_code == 422
    wrong = await api.client.patch(
        "/v1/users/me",
        json={"password": "brand new password", "current_password": "guess"},
        headers=me,
    )
    assert wrong.status_code == 403
    assert wrong.json()["error_id"] == "wrong-current-password"
    assert wrong.json()["details"][0]["field"] == "body.current_password"

    done = await api.client.patch(
        "/v1/users/me",
        json={"password": "brand new password", "current_password": PASSWORD},
        headers=me,
    )
    assert done.status_code == 200
    assert "brand new password" not in done.text
    assert (await api.client.get("/v1/users/me", headers=me)).status_code == 401
    await api.login("me@acme.example", "brand new password")


async def test_wrong_current_passwords_are_rate_limited(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", email="me@acme.example", password=PASSWORD)
    me = await api.login("me@acme.example", PASSWORD)
    guess = {"password": "brand new password", "current_password": "guess"}
    for _ in range(api.settings.login_failures_per_account):
        response = await api.client.patch("/v1/users/me", json=guess, headers=me)
        assert response.status_code == 403
    blocked = await api.client.patch(
        "/v1/users/me", json={**guess, "current_password": PASSWORD}, headers=me
    )
    assert blocked.status_code == 429


async def test_presence_is_set_by_the_user_or_a_manager(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    agent_row = await api.add_user("acme", email="a@acme.example", password=PASSWORD)
    other = await api.add_user("acme", email="b@acme.example")
    agent = await api.login("a@acme.example", PASSWORD)
    supervisor = await api.as_role("acme", Role.SUPERVISOR)

    own = await api.client.put(
        f"/v1/users/{agent_row.id}/presence", json={"presence": "away"}, headers=agent
    )
    assert own.status_code == 200
    assert own.json()["presence"] == "away"

    foreign = await api.client.put(
        f"/v1/users/{other.id}/presence", json={"presence": "away"}, headers=agent
    )
    assert foreign.status_code == 403
    assert foreign.json()["error_id"] == "forbidden"

    managed = await api.client.patch(
        f"/v1/users/{other.id}/presence",
        json={"presence": "do-not-disturb"},
        headers=supervisor,
    )
    assert managed.status_code == 200
    read = await api.client.get(f"/v1/users/{other.id}", headers=agent)
    assert read.json()["presence"] == "do-not-disturb"

    invalid = await api.client.put(
        f"/v1/users/{agent_row.id}/presence", json={"presence": "asleep"}, headers=agent
    )
    assert invalid.status_code == 422
    assert invalid.json()["details"][0]["field"] == "body.presence"


async def test_presence_reaches_every_node_through_the_shared_agent_state(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme")
    row = await api.add_user("acme", email="a@acme.example", password=PASSWORD, extension="105")
    agent = await api.login("a@acme.example", PASSWORD)
    assert api.context.redis is not None
    store = AgentStateStore(api.context.redis)

    changed = await api.client.put(
        f"/v1/users/{row.id}/presence", json={"presence": "do-not-disturb"}, headers=agent
    )
    assert changed.status_code == 200
    assert (await store.snapshot("acme")).presence == {"105": Presence.DO_NOT_DISTURB}

    back = await api.client.patch("/v1/users/me", json={"presence": "available"}, headers=agent)
    assert back.status_code == 200
    assert (await store.snapshot("acme")).presence == {"105": Presence.AVAILABLE}


async def test_only_tenant_admins_manage_users(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    target = await api.add_user("acme", email="t@acme.example")
    for role in (Role.AGENT, Role.SUPERVISOR):
        headers = await api.as_role("acme", role)
        assert (await api.client.get("/v1/users", headers=headers)).status_code == 200
        created = await api.client.post(
            "/v1/users", json={"email": "x@acme.example", "name": "X"}, headers=headers
        )
        assert created.status_code == 403, role
        changed = await api.client.patch(
            f"/v1/users/{target.id}", json={"role": "tenant-admin"}, headers=headers
        )
        assert changed.status_code == 403, role
        deleted = await api.client.delete(f"/v1/users/{target.id}", headers=headers)
        assert deleted.status_code == 403, role


async def test_an_api_key_has_no_profile(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    key = await api.api_key("acme", Role.AGENT)
    for method in ("GET", "PATCH"):
        response = await api.client.request(method, "/v1/users/me", json={}, headers=key)
        assert response.status_code == 404, method
        assert response.json()["error_id"] == "not-a-user"


async def test_another_tenants_users_and_devices_are_not_found(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    anna = await _create(api, acme, extension="101")
    device = (
        await api.client.post(
            f"/v1/users/{anna['id']}/devices", json={"name": "desk"}, headers=acme
        )
    ).json()
    globex = await api.api_key("globex")
    globex_user = await _create(api, globex, extension="101")

    user_url = f"/v1/users/{anna['id']}"
    device_url = f"{user_url}/devices/{device['id']}"
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", user_url, None),
        ("PATCH", user_url, {"name": "stolen"}),
        ("DELETE", user_url, None),
        ("PUT", f"{user_url}/presence", {"presence": "away"}),
        ("PATCH", f"{user_url}/presence", {"presence": "away"}),
        ("GET", f"{user_url}/devices", None),
        ("POST", f"{user_url}/devices", {"name": "mine now"}),
        ("GET", device_url, None),
        ("POST", f"{device_url}/rotate", None),
        ("DELETE", device_url, None),
        # The foreign device under the caller's own user is not found either.
        ("GET", f"/v1/users/{globex_user['id']}/devices/{device['id']}", None),
        ("POST", f"/v1/users/{globex_user['id']}/devices/{device['id']}/rotate", None),
        ("DELETE", f"/v1/users/{globex_user['id']}/devices/{device['id']}", None),
    ]
    for method, url, body in requests:
        response = await api.client.request(method, url, json=body, headers=globex)
        assert response.status_code == 404, (method, url, response.text)
    listed = await api.client.get("/v1/users", headers=globex)
    assert [item["id"] for item in listed.json()["items"]] == [globex_user["id"]]
    assert (await api.client.get(user_url, headers=acme)).json()["name"] == "Someone"
    assert len(await _devices_in_db(api, anna["id"])) == 1


async def test_a_user_in_use_is_not_deleted_and_memberships_go_with_the_user(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    anna = await _create(api, admin, name="Anna", extension="101")
    await api.client.post(f"/v1/users/{anna['id']}/devices", json={"name": "desk"}, headers=admin)
    async with api.context.database.session() as session:
        overflow = GroupRow(
            tenant_id="acme",
            name="night",
            strategy="ring-all",
            overflow={"type": "user", "user_id": anna["id"]},
        )
        sales = GroupRow(tenant_id="acme", name="sales", strategy="ring-all")
        session.add_all([overflow, sales])
        await session.flush()
        session.add(GroupMemberRow(group_id=sales.id, user_id=uuid.UUID(anna["id"]), position=0))
        await session.commit()

    refused = await api.client.delete(f"/v1/users/{anna['id']}", headers=admin)
    assert refused.status_code == 409
    assert "group 'night'" in refused.json()["message"]

    async with api.context.database.session() as session:
        row = await session.get(GroupRow, overflow.id)
        assert row is not None
        row.overflow = None
        await session.commit()
    deleted = await api.client.delete(f"/v1/users/{anna['id']}", headers=admin)
    assert deleted.status_code == 204
    async with api.context.database.session() as session:
        members = await session.execute(
            select(GroupMemberRow).where(GroupMemberRow.group_id == sales.id)
        )
        assert members.scalars().all() == []
    assert await _devices_in_db(api, anna["id"]) == []


async def test_the_last_tenant_admin_stays(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    only = await api.add_user("acme", role=Role.TENANT_ADMIN)
    key = await api.api_key("acme")
    demoted = await api.client.patch(f"/v1/users/{only.id}", json={"role": "agent"}, headers=key)
    assert demoted.status_code == 409
    assert demoted.json()["error_id"] == "last-tenant-admin"
    assert (await api.client.delete(f"/v1/users/{only.id}", headers=key)).status_code == 409

    await _create(api, key, role="tenant-admin")
    demoted = await api.client.patch(f"/v1/users/{only.id}", json={"role": "agent"}, headers=key)
    assert demoted.status_code == 200


async def test_device_password_is_shown_once_and_stored_as_ha1(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    anna = await _create(api, admin, extension="101")
    url = f"/v1/users/{anna['id']}/devices"

    created = await api.client.post(url, json={"name": "desk phone"}, headers=admin)
    assert created.status_code == 201, created.text
    device = created.json()
    assert created.headers["Location"] == f"{url}/{device['id']}"
    assert created.headers["Cache-Control"] == "no-store"
    assert device["username"] == "101"
    assert device["sip_domain"] == "acme.vpbx.test"
    password = device["password"]
    assert len(password) >= 20

    (row,) = await _devices_in_db(api, anna["id"])
    realm = "acme.vpbx.test"
    assert row.ha1_md5 == ha1("101", realm, password, DigestAlgorithm.MD5)
    assert row.ha1_sha256 == ha1("101", realm, password, DigestAlgorithm.SHA256)

    listed = await api.client.get(url, headers=admin)
    read = await api.client.get(f"{url}/{device['id']}", headers=admin)
    for response in (listed, read):
        assert response.status_code == 200
        assert password not in response.text
        assert "password" not in response.text
        assert row.ha1_md5 not in response.text
    assert listed.json()["items"][0]["username"] == "101"

    second = await api.client.post(url, json={"name": "softphone"}, headers=admin)
    assert second.json()["username"] == "101-2"
    assert second.json()["password"] != password

    rotated = await api.client.post(
        f"{url}/{device['id']}/rotate",
        headers={**admin, "If-Match": read.headers["ETag"]},
    )
    assert rotated.status_code == 200
    new_password = rotated.json()["password"]
    assert new_password != password
    rows = {r.id: r for r in await _devices_in_db(api, anna["id"])}
    assert rows[uuid.UUID(device["id"])].ha1_md5 == ha1(
        "101", realm, new_password, DigestAlgorithm.MD5
    )
    assert rows[uuid.UUID(device["id"])].ha1_md5 != row.ha1_md5

    deleted = await api.client.delete(f"{url}/{device['id']}", headers=admin)
    assert deleted.status_code == 204
    assert [
        item["username"] for item in (await api.client.get(url, headers=admin)).json()["items"]
    ] == ["101-2"]


async def test_device_rules(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    nobody = await _create(api, admin)
    no_extension = await api.client.post(
        f"/v1/users/{nobody['id']}/devices", json={"name": "desk"}, headers=admin
    )
    assert no_extension.status_code == 422
    assert no_extension.json()["details"][0]["field"] == "path.user_id"

    anna = await _create(api, admin, extension="101")
    url = f"/v1/users/{anna['id']}/devices"
    named = await api.client.post(
        url, json={"name": "desk", "username": "anna-desk"}, headers=admin
    )
    assert named.json()["username"] == "anna-desk"
    again = await api.client.post(url, json={"name": "x", "username": "anna-desk"}, headers=admin)
    assert again.status_code == 409
    assert again.json()["details"][0]["field"] == "body.username"
    bad = await api.client.post(url, json={"name": "x", "username": "has space"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "body.username"

    keep = await api.client.patch(
        f"/v1/users/{anna['id']}", json={"extension": None}, headers=admin
    )
    assert keep.status_code == 409
    assert keep.json()["error_id"] == "extension-has-devices"


async def test_users_read_their_own_devices_and_only_admins_manage_them(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    me_row = await api.add_user("acme", email="me@acme.example", password=PASSWORD, extension="101")
    other = await api.add_user("acme", email="o@acme.example", extension="102")
    mine = await api.client.post(
        f"/v1/users/{me_row.id}/devices", json={"name": "desk"}, headers=admin
    )
    me = await api.login("me@acme.example", PASSWORD)
    supervisor = await api.as_role("acme", Role.SUPERVISOR)

    own = await api.client.get(f"/v1/users/{me_row.id}/devices", headers=me)
    assert own.status_code == 200
    assert own.json()["total"] == 1
    own_item = await api.client.get(
        f"/v1/users/{me_row.id}/devices/{mine.json()['id']}", headers=me
    )
    assert own_item.status_code == 200
    for headers in (me, supervisor):
        foreign = await api.client.get(f"/v1/users/{other.id}/devices", headers=headers)
        assert foreign.status_code == 403
    for headers in (me, supervisor):
        created = await api.client.post(
            f"/v1/users/{me_row.id}/devices", json={"name": "extra"}, headers=headers
        )
        assert created.status_code == 403
        rotated = await api.client.post(
            f"/v1/users/{me_row.id}/devices/{mine.json()['id']}/rotate", headers=headers
        )
        assert rotated.status_code == 403


async def test_changes_are_announced_to_the_tenants_nodes(api: ApiHarness) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    anna = await _create(api, admin, extension="101")
    async with api.context.redis.pubsub() as pubsub:
        await pubsub.subscribe("vpbx:config:acme")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        for method, url, body in (
            ("PUT", f"/v1/users/{anna['id']}/presence", {"presence": "do-not-disturb"}),
            ("POST", f"/v1/users/{anna['id']}/devices", {"name": "desk"}),
        ):
            response = await api.client.request(method, url, json=body, headers=admin)
            assert response.status_code in (200, 201)
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, url
            assert message["data"] == b"acme"


async def test_a_users_caller_id_is_one_of_the_tenants_numbers(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    for tenant, number in (
        ("acme", "+74950000001"),
        ("acme", "+74950000002"),
        ("globex", "+74950000003"),
    ):
        await api.context.numbers.create_number(
            Number.model_validate(
                {
                    "apiVersion": PLATFORM_API_VERSION,
                    "kind": "Number",
                    "metadata": {"name": f"{tenant}-{number.lstrip('+')}"},
                    "spec": {
                        "number": number,
                        "tenant": tenant,
                        "city": "msk",
                        "entry": "unrouted",
                    },
                }
            )
        )
    admin = await api.as_role("acme")

    async def node_caller_id(extension: str) -> Any:
        config = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
        [user] = [u for u in config.json()["users"] if u["extension"] == extension]
        return user["settings"]["caller_id"]

    anna = await _create(api, admin, extension="101", settings={"caller_id": "8 495 000-00-01"})
    assert anna["settings"]["caller_id"] == "+74950000001"
    assert await node_caller_id("101") == "+74950000001"
    url = f"/v1/users/{anna['id']}"
    for number in ("+74950000003", "+74959999999"):  # globex's, nobody's
        refused = await api.client.patch(
            url, json={"settings": {"caller_id": number}}, headers=admin
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["details"][0]["field"] == "body.settings.caller_id"
        created = await api.client.post(
            "/v1/users",
            json={"email": "x@acme.example", "name": "X", "settings": {"caller_id": number}},
            headers=admin,
        )
        assert created.status_code == 422
        assert created.json()["details"][0]["field"] == "body.settings.caller_id"
    invalid = await api.client.patch(url, json={"settings": {"caller_id": "abc"}}, headers=admin)
    assert invalid.status_code == 422
    assert invalid.json()["details"][0]["field"] == "body.settings.caller_id"

    changed = await api.client.patch(
        url, json={"settings": {"caller_id": "+74950000002"}}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert await node_caller_id("101") == "+74950000002"
    # Other settings left out keep it; null goes back to the caller ID by region.
    kept = await api.client.patch(url, json={"settings": {"wrap_up_s": 5}}, headers=admin)
    assert kept.json()["settings"]["caller_id"] == "+74950000002"
    cleared = await api.client.patch(url, json={"settings": {"caller_id": None}}, headers=admin)
    assert cleared.json()["settings"]["caller_id"] is None
    assert await node_caller_id("101") is None

    # Which of the company's numbers a call shows is not the agent's own choice.
    row = await api.add_user("acme", email="ivan@acme.example", password=PASSWORD, extension="102")
    ivan = await api.login("ivan@acme.example", PASSWORD)
    refused = await api.client.patch(
        "/v1/users/me", json={"settings": {"caller_id": "+74950000001"}}, headers=ivan
    )
    assert refused.status_code == 403
    assert refused.json()["details"][0]["field"] == "body.settings.caller_id"
    read = await api.client.get(f"/v1/users/{row.id}", headers=admin)
    assert read.json()["settings"]["caller_id"] is None


async def test_follow_me_settings_reach_the_node(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    anna = await _create(
        api,
        admin,
        extension="101",
        mobile="+79161234567",
        settings={"forward_to_mobile": True, "mobile_parallel": True},
    )
    url = f"/v1/users/{anna['id']}"
    forwarded = await api.client.patch(
        url, json={"settings": {"forward_all_to": "8 916 765-43-21"}}, headers=admin
    )
    assert forwarded.status_code == 200, forwarded.text
    assert forwarded.json()["settings"]["forward_all_to"] == "+79167654321"
    bad = await api.client.patch(
        url, json={"settings": {"forward_all_to": "nowhere"}}, headers=admin
    )
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "body.settings.forward_all_to"

    config = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    [user] = [u for u in config.json()["users"] if u["extension"] == "101"]
    assert user["mobile"] == "+79161234567"
    assert (user["settings"]["mobile_parallel"], user["settings"]["forward_all_to"]) == (
        True,
        "+79167654321",
    )
    off = await api.client.patch(url, json={"settings": {"forward_all_to": None}}, headers=admin)
    assert off.json()["settings"]["forward_all_to"] is None

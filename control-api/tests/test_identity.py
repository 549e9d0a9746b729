"""/internal/v1/identity and /internal/v1/directory: what the CRM learns about people."""

from __future__ import annotations

from tests.services.control_api import ApiHarness, bearer

from vpbx_control.auth.principal import Role


async def test_a_users_token_and_an_api_key_are_introspected_and_bad_ones_refused(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme")
    olga = await api.add_user("acme", role=Role.SUPERVISOR, name="Olga", password="pw-olga-1")
    token = (await api.login(olga.email, "pw-olga-1"))["Authorization"].removeprefix("Bearer ")
    seen = await api.client.post("/internal/v1/identity", json={"token": token}, headers=api.node)
    assert seen.status_code == 200, seen.text
    assert seen.json() == {
        "kind": "user",
        "tenant_id": "acme",
        "role": "supervisor",
        "user_id": str(olga.id),
        "api_key_id": None,
        "name": "Olga",
    }
    key = (await api.api_key("acme", Role.AGENT))["Authorization"].removeprefix("Bearer ")
    seen_key = await api.client.post("/internal/v1/identity", json={"token": key}, headers=api.node)
    assert seen_key.status_code == 200
    assert (seen_key.json()["kind"], seen_key.json()["role"]) == ("api-key", "agent")
    assert seen_key.json()["name"] == "test key"

    forged = await api.client.post(
        "/internal/v1/identity", json={"token": token[:-2] + "xx"}, headers=api.node
    )
    assert forged.status_code == 401
    # Only the platform's services may ask: a user may not introspect anybody.
    asked_by_user = await api.client.post(
        "/internal/v1/identity", json={"token": token}, headers=bearer(token)
    )
    assert asked_by_user.status_code == 403
    empty = await api.client.post("/internal/v1/identity", json={"token": ""}, headers=api.node)
    assert empty.status_code == 422
    assert empty.json()["details"][0]["field"] == "body.token"


async def test_the_directory_lists_a_tenants_people_and_groups_only(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    olga = await api.add_user("acme", name="Olga", extension="101")
    await api.add_user("globex", name="Stranger", extension="101")
    admin = await api.as_role("acme")
    group = await api.client.post(
        "/v1/groups",
        json={"name": "sales", "strategy": "ring-all", "members": [{"user_id": str(olga.id)}]},
        headers=admin,
    )
    assert group.status_code == 201, group.text
    listed = await api.client.get("/internal/v1/directory/acme", headers=api.node)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert "Stranger" not in [user["name"] for user in body["users"]]
    [olga_seen] = [user for user in body["users"] if user["name"] == "Olga"]
    assert (olga_seen["id"], olga_seen["extension"], olga_seen["role"]) == (
        str(olga.id),
        "101",
        "agent",
    )
    assert body["groups"] == [
        {"id": group.json()["id"], "name": "sales", "member_user_ids": [str(olga.id)]}
    ]
    assert (
        await api.client.get("/internal/v1/directory/nobody", headers=api.node)
    ).status_code == 404
    assert (await api.client.get("/internal/v1/directory/acme", headers=admin)).status_code == 403

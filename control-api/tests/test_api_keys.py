"""/v1/api-keys: keys shown once, stored hashed, revoked for good, tenant admins only."""

from __future__ import annotations

import uuid

from tests.services.control_api import ApiHarness, bearer

from vpbx_control.auth.principal import Role


async def _create(api: ApiHarness, headers: dict[str, str], **body: str) -> tuple[str, str]:
    """(key id, full key)."""
    response = await api.client.post("/v1/api-keys", json={"name": "crm", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["key"]


async def test_a_key_is_shown_once_and_works(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    created = await api.client.post("/v1/api-keys", json={"name": "CRM integration"}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["Location"] == f"/v1/api-keys/{body['id']}"
    assert created.headers["Cache-Control"] == "no-store"
    assert body["role"] == "tenant-admin"
    assert body["revoked"] is False
    assert body["last_used_at"] is None
    key = body["key"]
    assert key.startswith(body["prefix"])
    assert body["prefix"].startswith("vpbx_")
    secret = key.rsplit("_", 1)[1]

    # The key acts as a tenant admin of its tenant.
    users = await api.client.get("/v1/users", headers=bearer(key))
    assert users.status_code == 200

    listed = await api.client.get("/v1/api-keys", headers=admin)
    read = await api.client.get(f"/v1/api-keys/{body['id']}", headers=admin)
    for response in (listed, read):
        assert response.status_code == 200
        assert secret not in response.text
        assert key not in response.text
        assert '"key"' not in response.text
    assert read.headers["ETag"]
    item = read.json()
    assert item["name"] == "CRM integration"
    assert item["prefix"] == body["prefix"]
    assert item["last_used_at"] is not None
    assert [entry["id"] for entry in listed.json()["items"]] == [body["id"]]


async def test_a_revoked_key_stops_working(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    key_id, key = await _create(api, admin)
    kept_id, kept = await _create(api, admin, name="kept")
    assert (await api.client.get("/v1/users", headers=bearer(key))).status_code == 200

    revoked = await api.client.delete(f"/v1/api-keys/{key_id}", headers=admin)
    assert revoked.status_code == 204
    refused = await api.client.get("/v1/users", headers=bearer(key))
    assert refused.status_code == 401
    assert refused.json()["error_id"] == "not-authenticated"
    assert (await api.client.get("/v1/users", headers=bearer(kept))).status_code == 200

    read = (await api.client.get(f"/v1/api-keys/{key_id}", headers=admin)).json()
    assert read["revoked"] is True
    assert read["revoked_at"] is not None
    revoked_only = await api.client.get("/v1/api-keys", params={"revoked": "true"}, headers=admin)
    assert [entry["id"] for entry in revoked_only.json()["items"]] == [key_id]
    live = await api.client.get("/v1/api-keys", params={"revoked": "false"}, headers=admin)
    assert [entry["id"] for entry in live.json()["items"]] == [kept_id]

    again = await api.client.delete(f"/v1/api-keys/{key_id}", headers=admin)
    assert again.status_code == 204
    assert (await api.client.get(f"/v1/api-keys/{key_id}", headers=admin)).json() == read


async def test_revoking_with_a_stale_etag_is_refused(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    key_id, key = await _create(api, admin)
    etag = (await api.client.get(f"/v1/api-keys/{key_id}", headers=admin)).headers["ETag"]
    stale = await api.client.delete(f"/v1/api-keys/{key_id}", headers={**admin, "If-Match": '"99"'})
    assert stale.status_code == 412
    assert (await api.client.get("/v1/users", headers=bearer(key))).status_code == 200
    done = await api.client.delete(f"/v1/api-keys/{key_id}", headers={**admin, "If-Match": etag})
    assert done.status_code == 204


async def test_a_key_acts_with_its_role(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    _, agent_key = await _create(api, admin, role="agent")
    agent = bearer(agent_key)
    assert (await api.client.get("/v1/users", headers=agent)).status_code == 200
    created = await api.client.post(
        "/v1/users", json={"email": "x@acme.example", "name": "X"}, headers=agent
    )
    assert created.status_code == 403
    assert (await api.client.get("/v1/api-keys", headers=agent)).status_code == 403
    escalate = await api.client.post("/v1/api-keys", json={"name": "mine"}, headers=agent)
    assert escalate.status_code == 403


async def test_only_tenant_admins_see_or_manage_keys(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    key_id, _ = await _create(api, admin)
    for role in (Role.SUPERVISOR, Role.AGENT):
        headers = await api.as_role("acme", role)
        for method, url in (
            ("GET", "/v1/api-keys"),
            ("POST", "/v1/api-keys"),
            ("GET", f"/v1/api-keys/{key_id}"),
            ("DELETE", f"/v1/api-keys/{key_id}"),
        ):
            response = await api.client.request(
                method, url, json={"name": "x"} if method == "POST" else None, headers=headers
            )
            assert response.status_code == 403, (role, method, url)
    assert (await api.client.get(f"/v1/api-keys/{key_id}", headers=admin)).json()["revoked"] is (
        False
    )


async def test_another_tenants_key_is_not_found(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    key_id, key = await _create(api, acme)
    globex = await api.as_role("globex")
    assert (await api.client.get(f"/v1/api-keys/{key_id}", headers=globex)).status_code == 404
    assert (await api.client.delete(f"/v1/api-keys/{key_id}", headers=globex)).status_code == 404
    assert (await api.client.get("/v1/api-keys", headers=globex)).json()["total"] == 0
    assert (await api.client.get("/v1/users", headers=bearer(key))).status_code == 200
    unknown = await api.client.get(f"/v1/api-keys/{uuid.uuid4()}", headers=acme)
    assert unknown.status_code == 404


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    for body, field in (
        ({"name": ""}, "body.name"),
        ({"name": "x" * 101}, "body.name"),
        ({"name": "x", "role": "root"}, "body.role"),
        ({"name": "x", "secret": "mine"}, "body.secret"),
        ({}, "body.name"),
    ):
        response = await api.client.post("/v1/api-keys", json=body, headers=admin)
        assert response.status_code == 422, body
        assert field in [detail["field"] for detail in response.json()["details"]], body


async def test_keys_are_not_node_config(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    before = api.context.publisher.published
    key_id, _ = await _create(api, admin)
    await api.client.delete(f"/v1/api-keys/{key_id}", headers=admin)
    assert api.context.publisher.published == before

"""/v1/platform: tenants (row + Tenant resource + first admin) and the number pool."""

from __future__ import annotations

from typing import Any

from tests.services.control_api import ApiHarness

from vpbx_common.manifests import PLATFORM_API_VERSION, Number, Tenant, parse_platform_yaml
from vpbx_control.auth.principal import Role

ACME: dict[str, Any] = {
    "id": "acme",
    "display_name": "Acme Logistics",
    "sip_domain": "acme.vpbx.example",
    "cities": ["msk", "ekb"],
    "plan": {"seats": 25, "numbers": 3},
}


def stored_tenants(api: ApiHarness) -> dict[str, Tenant]:
    path = api.settings.local_numbers_file
    if not path.exists():
        return {}
    return {t.name: t for t in parse_platform_yaml(path.read_text()).tenants}


def fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


async def test_create_a_tenant_with_its_first_admin(api: ApiHarness) -> None:
    body = {**ACME, "admin": {"email": "Boss@Acme.example", "password": "acme-admin-secret"}}
    created = await api.client.post("/v1/platform/tenants", json=body, headers=api.platform)
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert created.headers["Location"] == "/v1/platform/tenants/acme"
    assert tenant["plan"] == {"seats": 25, "numbers": 3, "concurrent_calls": 0}
    assert (tenant["cities"], tenant["suspended"]) == (["msk", "ekb"], False)

    resource = stored_tenants(api)["acme"]
    assert resource.spec.display_name == "Acme Logistics"
    assert resource.spec.sip_domain == "acme.vpbx.example"
    assert resource.spec.city_names == ["msk", "ekb"]
    assert (resource.spec.plan.seats, resource.spec.plan.numbers) == (25, 3)

    admin = await api.login("boss@acme.example", "acme-admin-secret")
    me = await api.client.get("/v1/auth/me", headers=admin)
    assert (me.json()["tenant_id"], me.json()["role"]) == ("acme", "tenant-admin")
    read = await api.client.get("/v1/platform/tenants/acme", headers=api.platform)
    assert read.json() == tenant
    assert read.headers["ETag"] == created.headers["ETag"]


async def test_tenant_conflicts_and_validation_name_the_field(api: ApiHarness) -> None:
    await api.add_tenant("globex")
    await api.add_user("globex", email="taken@globex.example")
    assert (
        await api.client.post("/v1/platform/tenants", json=ACME, headers=api.platform)
    ).status_code == 201
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({**ACME, "sip_domain": "other.example"}, 409, "tenant-exists", "body.id"),
        ({**ACME, "id": "acme2"}, 409, "sip-domain-taken", "body.sip_domain"),
        (
            {
                **ACME,
                "id": "initech",
                "sip_domain": "initech.example",
                "admin": {"email": "TAKEN@globex.example", "password": "long enough pw"},
            },
            409,
            "email-taken",
            "body.admin.email",
        ),
        ({**ACME, "id": "Acme"}, 422, "validation-failed", "body.id"),
        ({**ACME, "id": "x", "cities": []}, 422, "validation-failed", "body.cities"),
        ({**ACME, "id": "x", "cities": ["msk", "msk"]}, 422, "validation-failed", "body.cities"),
        (
            {**ACME, "id": "x", "plan": {"numbers": -1}},
            422,
            "validation-failed",
            "body.plan.numbers",
        ),
    ]
    for body, status, error_id, field in cases:
        response = await api.client.post("/v1/platform/tenants", json=body, headers=api.platform)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error_id"] == error_id
        assert field in fields(response), response.json()
    assert set(stored_tenants(api)) == {"acme"}


async def test_change_a_tenant_mirrors_to_its_resource(api: ApiHarness) -> None:
    await api.client.post("/v1/platform/tenants", json=ACME, headers=api.platform)
    # The operator's own settings on the resource (replicas) are not the API's.
    resource = stored_tenants(api)["acme"]
    tuned = resource.model_copy(
        update={
            "spec": resource.spec.model_copy(
                update={
                    "cities": [
                        resource.spec.cities[0].model_copy(update={"replicas": 3}),
                        resource.spec.cities[1],
                    ]
                }
            )
        }
    )
    await api.context.numbers.apply_tenant(tuned)
    etag = (await api.client.get("/v1/platform/tenants/acme", headers=api.platform)).headers["ETag"]

    changed = await api.client.patch(
        "/v1/platform/tenants/acme",
        json={
            "display_name": "Acme Group",
            "plan": {"numbers": 10},
            "cities": ["msk", "spb"],
            "suspended": True,
        },
        headers={**api.platform, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["plan"] == {"seats": 25, "numbers": 10, "concurrent_calls": 0}
    assert changed.headers["ETag"] != etag
    spec = stored_tenants(api)["acme"].spec
    assert (spec.display_name, spec.suspended, spec.plan.numbers) == ("Acme Group", True, 10)
    assert [(c.name, c.replicas) for c in spec.cities] == [("msk", 3), ("spb", 1)]

    stale = await api.client.patch(
        "/v1/platform/tenants/acme",
        json={"suspended": False},
        headers={**api.platform, "If-Match": etag},
    )
    assert stale.status_code == 412

    listed = await api.client.get(
        "/v1/platform/tenants", params={"suspended": True, "name": "GROUP"}, headers=api.platform
    )
    assert [t["id"] for t in listed.json()["items"]] == ["acme"]
    none = await api.client.get(
        "/v1/platform/tenants", params={"suspended": False}, headers=api.platform
    )
    assert none.json()["total"] == 0


async def test_a_tenant_with_numbers_keeps_them_and_its_cities(api: ApiHarness) -> None:
    await api.client.post("/v1/platform/tenants", json=ACME, headers=api.platform)
    await api.client.post(
        "/v1/platform/pool", json={"numbers": ["+73430000001"], "city": "ekb"}, headers=api.platform
    )
    admin = await api.as_role("acme")
    provisioned = await api.client.post("/v1/numbers", json={"city": "ekb"}, headers=admin)
    assert provisioned.status_code == 201, provisioned.text

    drop_city = await api.client.patch(
        "/v1/platform/tenants/acme", json={"cities": ["msk"]}, headers=api.platform
    )
    assert drop_city.status_code == 409
    assert drop_city.json()["error_id"] == "city-in-use"
    assert fields(drop_city) == ["body.cities"]
    refused = await api.client.delete("/v1/platform/tenants/acme", headers=api.platform)
    assert refused.status_code == 409
    assert refused.json()["error_id"] == "tenant-has-numbers"
    assert "+73430000001" in refused.json()["message"]

    released = await api.client.delete(f"/v1/numbers/{provisioned.json()['id']}", headers=admin)
    assert released.status_code == 204
    deleted = await api.client.delete("/v1/platform/tenants/acme", headers=api.platform)
    assert deleted.status_code == 204
    gone = await api.client.get("/v1/platform/tenants/acme", headers=api.platform)
    assert gone.status_code == 404
    assert stored_tenants(api) == {}
    # The tenant's users went with it.
    assert (await api.client.get("/v1/numbers", headers=admin)).status_code == 401


async def test_the_number_pool(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    added = await api.client.post(
        "/v1/platform/pool",
        json={"numbers": ["8 (495) 000-00-01", "+74950000002", "74950000003"], "city": "msk"},
        headers=api.platform,
    )
    assert added.status_code == 201, added.text
    assert [n["number"] for n in added.json()["items"]] == [
        "+74950000001",
        "+74950000002",
        "+74950000003",
    ]
    assert all(n["available"] and n["tenant_id"] is None for n in added.json()["items"])
    await api.client.post(
        "/v1/platform/pool", json={"numbers": ["+73430000001"], "city": "ekb"}, headers=api.platform
    )

    twice = await api.client.post(
        "/v1/platform/pool",
        json={"numbers": ["+74950000009", "+74950000008", "8 495 000 00 09"], "city": "msk"},
        headers=api.platform,
    )
    assert twice.status_code == 409
    assert twice.json()["error_id"] == "number-in-pool"
    assert fields(twice) == ["body.numbers[2]"]
    again = await api.client.post(
        "/v1/platform/pool",
        json={"numbers": ["+74950000007", "+74950000002"], "city": "msk"},
        headers=api.platform,
    )
    assert again.status_code == 409
    assert fields(again) == ["body.numbers[1]"]
    invalid = await api.client.post(
        "/v1/platform/pool",
        json={"numbers": ["+74950000007", "not a number"], "city": "msk"},
        headers=api.platform,
    )
    assert invalid.status_code == 422
    assert fields(invalid) == ["body.numbers[1]"]
    total = await api.client.get("/v1/platform/pool", headers=api.platform)
    assert total.json()["total"] == 4

    admin = await api.as_role("acme")
    taken = (await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)).json()
    assert taken["number"] == "+74950000001"

    async def numbers(**filters: Any) -> list[str]:
        response = await api.client.get("/v1/platform/pool", params=filters, headers=api.platform)
        assert response.status_code == 200, response.text
        return [n["number"] for n in response.json()["items"]]

    assert await numbers(city="msk", available=True) == ["+74950000002", "+74950000003"]
    assert await numbers(available=False) == ["+74950000001"]
    assert await numbers(tenant="acme") == ["+74950000001"]
    assert await numbers(city="ekb") == ["+73430000001"]

    in_use = await api.client.delete("/v1/platform/pool/+74950000001", headers=api.platform)
    assert in_use.status_code == 409
    assert in_use.json()["error_id"] == "number-in-use"
    removed = await api.client.delete("/v1/platform/pool/74950000002", headers=api.platform)
    assert removed.status_code == 204
    assert await numbers(city="msk") == ["+74950000001", "+74950000003"]
    missing = await api.client.get("/v1/platform/pool/+74950000002", headers=api.platform)
    assert missing.status_code == 404


async def test_tenants_cannot_use_the_platform_routes(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    for headers in (await api.as_role("acme"), await api.api_key("acme", Role.TENANT_ADMIN)):
        listed = await api.client.get("/v1/platform/tenants", headers=headers)
        assert listed.status_code == 403
        pooled = await api.client.post(
            "/v1/platform/pool", json={"numbers": ["+74950000001"], "city": "msk"}, headers=headers
        )
        assert pooled.status_code == 403
    assert (await api.client.get("/v1/platform/pool", headers=api.platform)).json()["total"] == 0


async def test_a_page_past_the_end_is_empty(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    for path in ("/v1/platform/tenants", "/v1/platform/pool"):
        response = await api.client.get(path, params={"offset": 1000}, headers=api.platform)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["items"] == []
        assert response.json()["total"] == (1 if path.endswith("tenants") else 0)


# --- the outbound policy ------------------------------------------------------------------


async def _own_number(api: ApiHarness, tenant: str, number: str) -> None:
    await api.context.numbers.create_number(
        Number.model_validate(
            {
                "apiVersion": PLATFORM_API_VERSION,
                "kind": "Number",
                "metadata": {"name": f"{tenant}-{number.lstrip('+')}"},
                "spec": {"number": number, "tenant": tenant, "city": "msk", "entry": "unrouted"},
            }
        )
    )


OUTBOUND_DEFAULTS = {
    "country": "RU",
    "international": False,
    "premium": False,
    "max_concurrent": 0,
    "max_minutes_per_day": 0,
    "default_caller_id": None,
}


async def test_the_outbound_policy_is_the_operators_and_mirrors_to_the_resource(
    api: ApiHarness,
) -> None:
    plain = await api.client.post("/v1/platform/tenants", json=ACME, headers=api.platform)
    assert plain.json()["outbound"] == OUTBOUND_DEFAULTS
    assert stored_tenants(api)["acme"].spec.outbound.international is False
    body = {
        **ACME,
        "id": "globex",
        "sip_domain": "globex.vpbx.example",
        "outbound": {"country": "KZ", "international": True, "max_minutes_per_day": 900},
    }
    created = await api.client.post("/v1/platform/tenants", json=body, headers=api.platform)
    assert created.status_code == 201, created.text
    assert created.json()["outbound"] == {
        **OUTBOUND_DEFAULTS,
        "country": "KZ",
        "international": True,
        "max_minutes_per_day": 900,
    }
    spec = stored_tenants(api)["globex"].spec.outbound
    assert (spec.country, spec.international, spec.max_minutes_per_day) == ("KZ", True, 900)

    # A partial change keeps the fields left out; the caller ID must be the tenant's.
    await _own_number(api, "globex", "+77010000001")
    await _own_number(api, "acme", "+74950000009")
    for number in ("+74950000009", "+77010000002"):
        foreign = await api.client.patch(
            "/v1/platform/tenants/globex",
            json={"outbound": {"default_caller_id": number}},
            headers=api.platform,
        )
        assert foreign.status_code == 422, foreign.text
        assert fields(foreign) == ["body.outbound.default_caller_id"]
    changed = await api.client.patch(
        "/v1/platform/tenants/globex",
        json={"outbound": {"premium": True, "default_caller_id": "8 701 000 00 01"}},
        headers=api.platform,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["outbound"] == {
        **created.json()["outbound"],
        "premium": True,
        "default_caller_id": "+77010000001",
    }
    spec = stored_tenants(api)["globex"].spec.outbound
    assert (spec.premium, spec.default_caller_id, spec.country) == (True, "+77010000001", "KZ")
    read = await api.client.get("/v1/platform/tenants/globex", headers=api.platform)
    assert read.json()["outbound"] == changed.json()["outbound"]
    # Other changes leave it alone; null goes back to the tenant's first number.
    renamed = await api.client.patch(
        "/v1/platform/tenants/globex", json={"display_name": "Globex"}, headers=api.platform
    )
    assert renamed.json()["outbound"] == changed.json()["outbound"]
    cleared = await api.client.patch(
        "/v1/platform/tenants/globex",
        json={"outbound": {"default_caller_id": None}},
        headers=api.platform,
    )
    assert cleared.json()["outbound"]["default_caller_id"] is None
    assert cleared.json()["outbound"]["premium"] is True

    # The tenant's admin reads it, and cannot change it.
    admin = await api.as_role("globex")
    policy = await api.client.get("/v1/outbound-policy", headers=admin)
    assert policy.status_code == 200
    assert policy.json() == cleared.json()["outbound"]
    for method in ("PATCH", "PUT", "POST"):
        refused = await api.client.request(
            method, "/v1/outbound-policy", json={"premium": False}, headers=admin
        )
        assert refused.status_code == 405, method
    assert (
        await api.client.patch(
            "/v1/platform/tenants/globex", json={"outbound": {"premium": False}}, headers=admin
        )
    ).status_code == 403


async def test_outbound_policy_validation_names_the_field(api: ApiHarness) -> None:
    await api.client.post("/v1/platform/tenants", json=ACME, headers=api.platform)
    for outbound, field in (
        ({"country": "ru"}, "body.outbound.country"),
        ({"max_concurrent": -1}, "body.outbound.max_concurrent"),
        ({"max_minutes_per_day": "lots"}, "body.outbound.max_minutes_per_day"),
        ({"international": "maybe"}, "body.outbound.international"),
        ({"default_caller_id": "not a number"}, "body.outbound.default_caller_id"),
        ({"default_caller_id": "+74950000001"}, "body.outbound.default_caller_id"),  # not acme's
        ({"maxConcurrent": 3}, "body.outbound.maxConcurrent"),
    ):
        changed = await api.client.patch(
            "/v1/platform/tenants/acme", json={"outbound": outbound}, headers=api.platform
        )
        assert changed.status_code == 422, (outbound, changed.text)
        assert fields(changed) == [field], outbound
        created = await api.client.post(
            "/v1/platform/tenants",
            json={**ACME, "id": "initech", "sip_domain": "initech.example", "outbound": outbound},
            headers=api.platform,
        )
        assert created.status_code == 422, (outbound, created.text)
        assert fields(created) == [field], outbound
    assert "initech" not in stored_tenants(api)


async def test_a_tenant_keeps_the_outbound_policy_of_its_existing_resource(
    api: ApiHarness,
) -> None:
    """A Tenant applied with kubectl before the API knew it: its policy is taken over."""
    await api.context.numbers.apply_tenant(
        Tenant.model_validate(
            {
                "apiVersion": PLATFORM_API_VERSION,
                "kind": "Tenant",
                "metadata": {"name": "acme"},
                "spec": {
                    "displayName": "Acme",
                    "sipDomain": "acme.vpbx.example",
                    "cities": [{"name": "msk"}],
                    "outbound": {"international": True, "maxConcurrent": 2},
                },
            }
        )
    )
    created = await api.client.post("/v1/platform/tenants", json=ACME, headers=api.platform)
    assert created.status_code == 201, created.text
    assert created.json()["outbound"] == {
        **OUTBOUND_DEFAULTS,
        "international": True,
        "max_concurrent": 2,
    }

"""/v1/feature-codes: the codes a tenant's phones dial for pickup, park and monitoring,
stored per tenant and compiled into its node config."""

from __future__ import annotations

from tests.services.control_api import ApiHarness

from vpbx_control.auth.principal import Role

DEFAULTS = {
    "pickup_group": "*8",
    "pickup_directed": "**",
    "park": "*7",
    "listen": "*33",
    "whisper": "*34",
    "barge": "*35",
    "park_recall_s": 120,
}


async def test_admins_change_the_codes_and_the_nodes_get_them(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    agent = await api.as_role("acme", Role.AGENT)

    read = await api.client.get("/v1/feature-codes", headers=agent)
    assert (read.status_code, read.json()) == (200, DEFAULTS)
    changed = {**DEFAULTS, "pickup_group": "#8", "park": "*70", "park_recall_s": 45}
    refused = await api.client.put("/v1/feature-codes", json=changed, headers=agent)
    assert refused.status_code == 403
    put = await api.client.put("/v1/feature-codes", json=changed, headers=admin)
    assert (put.status_code, put.json()) == (200, changed)

    config = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    assert config.json()["feature_codes"] == changed
    other = await api.client.get("/internal/v1/node-config/globex/msk", headers=api.node)
    assert other.json()["feature_codes"] == DEFAULTS


async def test_codes_must_be_star_or_hash_codes_of_their_own(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")

    shadowing = await api.client.put(
        "/v1/feature-codes", json={**DEFAULTS, "park": "700"}, headers=admin
    )
    twice = await api.client.put(
        "/v1/feature-codes", json={**DEFAULTS, "listen": "*8"}, headers=admin
    )

    assert shadowing.status_code == 422
    assert shadowing.json()["details"][0]["field"] == "body.park"
    assert twice.status_code == 422
    too_long = await api.client.put(
        "/v1/feature-codes", json={**DEFAULTS, "park_recall_s": 7200}, headers=admin
    )
    assert too_long.status_code == 422
    assert too_long.json()["details"][0]["field"] == "body.park_recall_s"

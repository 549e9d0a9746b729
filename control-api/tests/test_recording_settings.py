"""Who is recorded: the tenant's policy (platform API, Tenant resource), a number's and a user's
own `record` setting, each visible in the API and compiled into the node config."""

from __future__ import annotations

from typing import Any

from tests.services.control_api import ApiHarness

from vpbx_common.manifests import PLATFORM_API_VERSION, Tenant, parse_platform_yaml
from vpbx_control.auth.principal import Role
from vpbx_control.numbers.models import PoolNumberRow

ACME: dict[str, Any] = {
    "id": "acme",
    "display_name": "Acme Logistics",
    "sip_domain": "acme.vpbx.example",
    "cities": ["msk"],
}


def _resource_policy(api: ApiHarness, tenant: str) -> str:
    tenants = parse_platform_yaml(api.settings.local_numbers_file.read_text()).tenants
    return {t.name: t for t in tenants}[tenant].spec.recording.policy.value


async def _node_config(api: ApiHarness, tenant: str = "acme") -> dict[str, Any]:
    response = await api.client.get(f"/internal/v1/node-config/{tenant}/msk", headers=api.node)
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()
    return config


def _fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


async def test_the_tenants_recording_policy(api: ApiHarness) -> None:
    created = await api.client.post(
        "/v1/platform/tenants", json={**ACME, "recording_policy": "all"}, headers=api.platform
    )
    assert created.status_code == 201, created.text
    assert created.json()["recording_policy"] == "all"
    assert _resource_policy(api, "acme") == "all"
    assert (await _node_config(api))["recording_policy"] == "all"

    changed = await api.client.patch(
        "/v1/platform/tenants/acme", json={"recording_policy": "on-demand"}, headers=api.platform
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["recording_policy"] == "on-demand"
    assert _resource_policy(api, "acme") == "on-demand"
    assert (await _node_config(api))["recording_policy"] == "on-demand"
    # Other changes leave it alone.
    renamed = await api.client.patch(
        "/v1/platform/tenants/acme", json={"display_name": "Acme"}, headers=api.platform
    )
    assert renamed.json()["recording_policy"] == "on-demand"

    invalid = await api.client.patch(
        "/v1/platform/tenants/acme", json={"recording_policy": "sometimes"}, headers=api.platform
    )
    assert invalid.status_code == 422
    assert _fields(invalid) == ["body.recording_policy"]


async def test_a_tenant_keeps_the_policy_of_its_existing_resource(api: ApiHarness) -> None:
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
                    "recording": {"policy": "all"},
                },
            }
        )
    )
    created = await api.client.post("/v1/platform/tenants", json=ACME, headers=api.platform)
    assert created.status_code == 201, created.text
    assert created.json()["recording_policy"] == "all"
    plain = await api.client.post(
        "/v1/platform/tenants",
        json={**ACME, "id": "globex", "sip_domain": "globex.vpbx.example"},
        headers=api.platform,
    )
    assert plain.json()["recording_policy"] == "off"


async def test_a_numbers_record_setting(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    async with api.context.database.session() as session:
        session.add(PoolNumberRow(number="+74950000001", city="msk", tenant_id=None))
        session.add(PoolNumberRow(number="+74950000002", city="msk", tenant_id=None))
        await session.commit()
    admin = await api.as_role("acme")
    recorded = await api.client.post(
        "/v1/numbers", json={"number": "+74950000001", "record": True}, headers=admin
    )
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["record"] is True
    plain = await api.client.post("/v1/numbers", json={"number": "+74950000002"}, headers=admin)
    assert plain.json()["record"] is None
    url = f"/v1/numbers/{recorded.json()['id']}"

    off = await api.client.patch(url, json={"record": False}, headers=admin)
    assert off.status_code == 200, off.text
    assert (await api.client.get(url, headers=admin)).json()["record"] is False
    numbers = {n["number"]: n for n in (await _node_config(api))["numbers"]}
    assert numbers["+74950000001"]["record"] is False
    assert numbers["+74950000002"]["record"] is None
    # Another field left out keeps it; null goes back to the tenant's policy.
    await api.client.patch(url, json={"label": "radio"}, headers=admin)
    assert (await api.client.get(url, headers=admin)).json()["record"] is False
    cleared = await api.client.patch(url, json={"record": None}, headers=admin)
    assert cleared.json()["record"] is None
    numbers = {n["number"]: n for n in (await _node_config(api))["numbers"]}
    assert numbers["+74950000001"]["record"] is None

    invalid = await api.client.patch(url, json={"record": "maybe"}, headers=admin)
    assert invalid.status_code == 422
    assert _fields(invalid) == ["body.record"]
    agent = await api.as_role("acme", Role.AGENT)
    assert (await api.client.patch(url, json={"record": True}, headers=agent)).status_code == 403


async def test_a_users_record_setting(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    password = "agent-long-password"
    ivan = await api.add_user("acme", extension="101", password=password)
    url = f"/v1/users/{ivan.id}"

    def settings(config: dict[str, Any]) -> dict[str, Any]:
        [user] = [u for u in config["users"] if u["extension"] == "101"]
        result: dict[str, Any] = user["settings"]
        return result

    assert settings(await _node_config(api))["record"] is None
    on = await api.client.patch(url, json={"settings": {"record": True}}, headers=admin)
    assert on.status_code == 200, on.text
    assert on.json()["settings"]["record"] is True
    assert (await api.client.get(url, headers=admin)).json()["settings"]["record"] is True
    assert settings(await _node_config(api))["record"] is True
    # Other settings left out keep it; null follows the number and the tenant again.
    kept = await api.client.patch(url, json={"settings": {"wrap_up_s": 10}}, headers=admin)
    assert kept.json()["settings"]["record"] is True
    cleared = await api.client.patch(url, json={"settings": {"record": None}}, headers=admin)
    assert cleared.json()["settings"]["record"] is None
    assert settings(await _node_config(api))["record"] is None
    off = await api.client.patch(url, json={"settings": {"record": False}}, headers=admin)
    assert off.json()["settings"]["record"] is False
    assert settings(await _node_config(api))["record"] is False

    invalid = await api.client.patch(url, json={"settings": {"record": "maybe"}}, headers=admin)
    assert invalid.status_code == 422
    assert _fields(invalid) == ["body.settings.record"]
    # Whether an agent is recorded is not the agent's own choice.
    agent = await api.login(ivan.email, password)
    refused = await api.client.patch(
        "/v1/users/me", json={"settings": {"record": True}}, headers=agent
    )
    assert refused.status_code == 403
    assert _fields(refused) == ["body.settings.record"]
    assert settings(await _node_config(api))["record"] is False
    allowed = await api.client.patch(
        "/v1/users/me", json={"settings": {"wrap_up_s": 5}}, headers=agent
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["settings"]["record"] is False

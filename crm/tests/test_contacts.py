"""/v1/contacts: the fixed points of the CRM's contacts."""

from __future__ import annotations

import pytest
from tests.services.crm import CrmHarness, crm_tenant

from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_contact_is_created_and_found_by_its_phone_in_any_local_form(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga", extension="101")
    created = await module_crm.client.post(
        "/v1/contacts",
        json={
            "name": "Иван Петров",
            "phones": ["+7 (916) 123-45-67"],
            "category": "client",
            "owner_user_id": str(olga.id),
            "vip": True,
            "custom": {"orders": 12, "debt": 15000.5},
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    contact = created.json()
    assert contact["phones"] == ["+79161234567"]
    assert contact["owner_user_id"] == str(olga.id)
    assert contact["vip"] is True
    assert contact["custom"] == {"orders": 12, "debt": 15000.5}
    assert created.headers["Location"] == f"/v1/contacts/{contact['id']}"
    for form in ("+79161234567", "89161234567", "79161234567", "8 (916) 123-45-67"):
        found = await module_crm.client.get("/v1/contacts", params={"phone": form}, headers=admin)
        assert found.status_code == 200, found.text
        assert [item["id"] for item in found.json()["items"]] == [contact["id"]], form
        assert found.json()["total"] == 1
    nobody = await module_crm.client.get(
        "/v1/contacts", params={"phone": "+79160000000"}, headers=admin
    )
    assert nobody.json()["items"] == []


async def test_a_phone_belongs_to_one_contact_of_the_tenant(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    other = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    first = await module_crm.client.post(
        "/v1/contacts", json={"name": "A", "phones": ["+79161110000"]}, headers=admin
    )
    assert first.status_code == 201
    second = await module_crm.client.post(
        "/v1/contacts", json={"name": "B", "phones": ["+7 916 111-00-00"]}, headers=admin
    )
    assert second.status_code == 409
    assert second.json()["error_id"] == "phone-taken"
    assert second.json()["details"][0]["field"] == "body.phones[0]"
    # Another tenant's CRM knows nothing of the first one's contacts.
    elsewhere = await module_crm.client.post(
        "/v1/contacts",
        json={"name": "B", "phones": ["+79161110000"]},
        headers=await module_crm.as_role(other),
    )
    assert elsewhere.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "body.name"),
        ({"name": "X", "phones": ["not a phone"]}, "body.phones[0]"),
        ({"name": "X", "phones": ["+79161234567", "89161234567"]}, "body.phones[1]"),
        ({"name": "X", "category": "Big Client"}, "body.category"),
        ({"name": "X", "emails": ["nope"]}, "body.emails[0]"),
        ({"name": "X", "custom": {"Orders": 1}}, "body.custom"),
        ({"name": "X", "vip": "maybe"}, "body.vip"),
        ({"name": "X", "color": "red"}, "body.color"),
    ],
)
async def test_invalid_contacts_are_refused_naming_the_field(
    module_crm: CrmHarness, body: dict[str, object], field: str
) -> None:
    tenant = await crm_tenant(module_crm)
    refused = await module_crm.client.post(
        "/v1/contacts", json=body, headers=await module_crm.as_role(tenant)
    )
    assert refused.status_code == 422, refused.text
    assert field in [detail["field"] for detail in refused.json()["details"]]


async def test_an_owner_must_be_a_user_of_the_tenant(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    other = await crm_tenant(module_crm)
    stranger = await module_crm.control.add_user(other, name="Stranger")
    refused = await module_crm.client.post(
        "/v1/contacts",
        json={"name": "X", "owner_user_id": str(stranger.id)},
        headers=await module_crm.as_role(tenant),
    )
    assert refused.status_code == 404
    assert refused.json()["details"][0]["field"] == "body.owner_user_id"


async def test_only_supervisors_give_a_colleagues_client_to_another_manager(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    agent = await module_crm.as_role(tenant, Role.AGENT)
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    olga = await module_crm.control.add_user(tenant, name="Olga")
    petr = await module_crm.control.add_user(tenant, name="Petr")
    contact = (
        await module_crm.client.post(
            "/v1/contacts",
            json={"name": "X", "owner_user_id": str(olga.id)},
            headers=admin,
        )
    ).json()
    path = f"/v1/contacts/{contact['id']}"
    by_agent = await module_crm.client.patch(
        path, json={"owner_user_id": str(petr.id)}, headers=agent
    )
    assert by_agent.status_code == 403
    by_supervisor = await module_crm.client.patch(
        path, json={"owner_user_id": str(petr.id)}, headers=supervisor
    )
    assert by_supervisor.status_code == 200, by_supervisor.text
    assert by_supervisor.json()["owner_user_id"] == str(petr.id)
    read = await module_crm.client.get(path, headers=agent)
    assert read.json()["owner_user_id"] == str(petr.id)
    # Stale If-Match: somebody else changed the contact in between.
    stale = await module_crm.client.patch(
        path, json={"vip": True}, headers={**supervisor, "If-Match": '"1"'}
    )
    assert stale.status_code == 412


async def test_the_node_looks_a_caller_up_live(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga")
    petr = await module_crm.control.add_user(tenant, name="Petr")
    contact = (
        await module_crm.client.post(
            "/v1/contacts",
            json={
                "name": "Supplier Ltd",
                "phones": ["+74951112233"],
                "category": "supplier",
                "owner_user_id": str(olga.id),
            },
            headers=admin,
        )
    ).json()
    path = f"/internal/v1/lookup/{tenant}"
    found = await module_crm.client.get(
        path, params={"phone": "+74951112233"}, headers=module_crm.node
    )
    assert found.status_code == 200, found.text
    assert found.json() == {
        "contact": {
            "id": contact["id"],
            "name": "Supplier Ltd",
            "category": "supplier",
            "owner_user_id": str(olga.id),
            "vip": False,
        }
    }
    await module_crm.client.patch(
        f"/v1/contacts/{contact['id']}", json={"owner_user_id": str(petr.id)}, headers=admin
    )
    again = await module_crm.client.get(
        path, params={"phone": "+74951112233"}, headers=module_crm.node
    )
    assert again.json()["contact"]["owner_user_id"] == str(petr.id)
    unknown = await module_crm.client.get(
        path, params={"phone": "+74950000000"}, headers=module_crm.node
    )
    assert unknown.json() == {"contact": None}
    # People may not ask the node's question.
    assert (
        await module_crm.client.get(path, params={"phone": "+74951112233"}, headers=admin)
    ).status_code == 403


async def test_an_agent_cannot_take_a_colleagues_client_by_moving_their_phone(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    agent = await module_crm.as_role(tenant, Role.AGENT)
    olga = await module_crm.control.add_user(tenant, name="Olga")
    client = (
        await module_crm.client.post(
            "/v1/contacts",
            json={
                "name": "Olga's client",
                "phones": ["+79165550101"],
                "owner_user_id": str(olga.id),
            },
            headers=admin,
        )
    ).json()
    path = f"/v1/contacts/{client['id']}"
    for change in ({"phones": []}, {"category": "supplier"}):
        refused = await module_crm.client.patch(path, json=change, headers=agent)
        assert refused.status_code == 403, change
    renamed = await module_crm.client.patch(
        path, json={"name": "Olga's client, Ltd"}, headers=agent
    )
    assert renamed.status_code == 200
    read = (await module_crm.client.get(path, headers=admin)).json()
    assert (read["phones"], read["category"]) == (["+79165550101"], "client")

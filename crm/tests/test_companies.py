"""/v1/companies: the organisations a tenant's contacts work for."""

from __future__ import annotations

import pytest
from tests.services.crm import CrmHarness, crm_tenant, crm_user

from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_company_is_created_read_found_and_changed(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga")
    created = await module_crm.client.post(
        "/v1/companies",
        json={
            "name": "ООО Ромашка",
            "phones": ["8 (495) 123-45-67", "+7 916 000-11-22"],
            "emails": ["office@romashka.example"],
            "website": "https://romashka.example",
            "address": "Новосибирск, Красный проспект, 1",
            "tax_id": "5406123456",
            "category": "supplier",
            "owner_user_id": str(olga.id),
            "custom": {"contract": "A-17"},
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    company = created.json()
    path = f"/v1/companies/{company['id']}"
    assert created.headers["Location"] == path
    assert created.headers["ETag"] == '"1"'
    assert {key: value for key, value in company.items() if not key.endswith("_at")} == {
        "id": company["id"],
        "name": "ООО Ромашка",
        "phones": ["+74951234567", "+79160001122"],
        "emails": ["office@romashka.example"],
        "website": "https://romashka.example",
        "address": "Новосибирск, Красный проспект, 1",
        "tax_id": "5406123456",
        "category": "supplier",
        "owner_user_id": str(olga.id),
        "custom": {"contract": "A-17"},
    }
    read = await module_crm.client.get(path, headers=admin)
    assert read.status_code == 200
    assert read.json() == company
    assert read.headers["ETag"] == '"1"'

    await module_crm.client.post("/v1/companies", json={"name": "ИП Сидоров"}, headers=admin)
    for query, expected in [
        ({"q": "ромаш"}, ["ООО Ромашка"]),
        ({"q": "540612"}, ["ООО Ромашка"]),
        ({"category": "supplier"}, ["ООО Ромашка"]),
        ({"category": "client"}, ["ИП Сидоров"]),
        ({"owner_user_id": str(olga.id)}, ["ООО Ромашка"]),
        ({}, ["ИП Сидоров", "ООО Ромашка"]),
    ]:
        found = await module_crm.client.get("/v1/companies", params=query, headers=admin)
        assert found.status_code == 200, found.text
        assert [item["name"] for item in found.json()["items"]] == expected, query
        assert found.json()["total"] == len(expected)

    changed = await module_crm.client.patch(
        path,
        json={"phones": ["+74959999999"], "tax_id": "540612345678", "website": ""},
        headers={**admin, "If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == '"2"'
    assert changed.json()["phones"] == ["+74959999999"]
    assert changed.json()["tax_id"] == "540612345678"
    assert changed.json()["website"] == ""
    assert changed.json()["name"] == "ООО Ромашка"  # not given: unchanged
    # A company's phone is not unique: a switchboard number is shared.
    shared = await module_crm.client.post(
        "/v1/companies", json={"name": "Branch", "phones": ["+74959999999"]}, headers=admin
    )
    assert shared.status_code == 201, shared.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "body.name"),
        ({"name": "X", "tax_id": "123456789"}, "body.tax_id"),
        ({"name": "X", "tax_id": "12345678901"}, "body.tax_id"),
        ({"name": "X", "tax_id": "54061234AB"}, "body.tax_id"),
        ({"name": "X", "phones": ["not a phone"]}, "body.phones[0]"),
        ({"name": "X", "phones": ["+74951234567", "84951234567"]}, "body.phones[1]"),
        ({"name": "X", "emails": ["nope"]}, "body.emails[0]"),
        ({"name": "X", "website": "my site"}, "body.website"),
        ({"name": "X", "category": "Big"}, "body.category"),
        ({"name": "X", "custom": {"Bad Key": 1}}, "body.custom"),
        ({"name": "X", "inn": "5406123456"}, "body.inn"),
    ],
)
async def test_invalid_companies_are_refused_naming_the_field(
    module_crm: CrmHarness, body: dict[str, object], field: str
) -> None:
    tenant = await crm_tenant(module_crm)
    refused = await module_crm.client.post(
        "/v1/companies", json=body, headers=await module_crm.as_role(tenant)
    )
    assert refused.status_code == 422, refused.text
    assert field in [detail["field"] for detail in refused.json()["details"]]


async def test_deleting_a_company_keeps_its_contacts_and_is_for_managers(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    agent = await module_crm.as_role(tenant, Role.AGENT)
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    company = (
        await module_crm.client.post("/v1/companies", json={"name": "Acme"}, headers=admin)
    ).json()
    other = (
        await module_crm.client.post("/v1/companies", json={"name": "Other"}, headers=admin)
    ).json()
    ids = []
    for name, company_id in [
        ("Anna", company["id"]),
        ("Boris", company["id"]),
        ("Vera", other["id"]),
    ]:
        contact = await module_crm.client.post(
            "/v1/contacts", json={"name": name, "company_id": company_id}, headers=admin
        )
        assert contact.status_code == 201, contact.text
        ids.append(contact.json()["id"])
    path = f"/v1/companies/{company['id']}"
    listed = await module_crm.client.get(f"{path}/contacts", headers=agent)
    assert listed.status_code == 200, listed.text
    assert [item["name"] for item in listed.json()["items"]] == ["Anna", "Boris"]
    assert listed.json()["total"] == 2

    assert (await module_crm.client.delete(path, headers=agent)).status_code == 403
    assert (await module_crm.client.get(path, headers=agent)).status_code == 200
    stale = await module_crm.client.delete(path, headers={**supervisor, "If-Match": '"7"'})
    assert stale.status_code == 412
    deleted = await module_crm.client.delete(path, headers={**supervisor, "If-Match": '"1"'})
    assert deleted.status_code == 204
    gone = await module_crm.client.get(path, headers=admin)
    assert gone.status_code == 404
    assert gone.json()["error_id"] == "company-not-found"
    assert (await module_crm.client.get(f"{path}/contacts", headers=admin)).status_code == 404
    anna = await module_crm.client.get(f"/v1/contacts/{ids[0]}", headers=admin)
    assert anna.status_code == 200
    assert anna.json()["company_id"] is None
    vera = await module_crm.client.get(f"/v1/contacts/{ids[2]}", headers=admin)
    assert vera.json()["company_id"] == other["id"]


async def test_only_supervisors_give_a_colleagues_company_to_another_manager(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    me, agent = await crm_user(module_crm, tenant, Role.AGENT)
    colleague = await module_crm.control.add_user(tenant, name="Colleague")
    # An agent takes a company nobody owns...
    free = (
        await module_crm.client.post("/v1/companies", json={"name": "Free"}, headers=admin)
    ).json()
    taken = await module_crm.client.patch(
        f"/v1/companies/{free['id']}", json={"owner_user_id": str(me)}, headers=agent
    )
    assert taken.status_code == 200, taken.text
    assert taken.json()["owner_user_id"] == str(me)
    # ...but neither gives it to a colleague nor creates one for a colleague.
    given = await module_crm.client.patch(
        f"/v1/companies/{free['id']}", json={"owner_user_id": str(colleague.id)}, headers=agent
    )
    assert given.status_code == 403
    created = await module_crm.client.post(
        "/v1/companies", json={"name": "X", "owner_user_id": str(colleague.id)}, headers=agent
    )
    assert created.status_code == 403
    read = await module_crm.client.get(f"/v1/companies/{free['id']}", headers=admin)
    assert read.json()["owner_user_id"] == str(me)
    stale = await module_crm.client.patch(
        f"/v1/companies/{free['id']}", json={"name": "Y"}, headers={**admin, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    again = await module_crm.client.get(f"/v1/companies/{free['id']}", headers=admin)
    assert again.json()["name"] == "Free"


async def test_another_tenants_company_does_not_exist(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    other = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    theirs = await module_crm.as_role(other)
    stranger = await module_crm.control.add_user(other, name="Stranger")
    company = (
        await module_crm.client.post("/v1/companies", json={"name": "Mine"}, headers=admin)
    ).json()
    path = f"/v1/companies/{company['id']}"
    for response in [
        await module_crm.client.get(path, headers=theirs),
        await module_crm.client.get(f"{path}/contacts", headers=theirs),
        await module_crm.client.patch(path, json={"name": "Stolen"}, headers=theirs),
        await module_crm.client.delete(path, headers=theirs),
    ]:
        assert response.status_code == 404, response.request
        assert response.json()["error_id"] == "company-not-found"
    listed = await module_crm.client.get("/v1/companies", params={"q": "Mine"}, headers=theirs)
    assert listed.json()["items"] == []
    contact = await module_crm.client.post(
        "/v1/contacts", json={"name": "X", "company_id": company["id"]}, headers=theirs
    )
    assert contact.status_code == 404
    assert contact.json()["details"][0]["field"] == "body.company_id"
    owner = await module_crm.client.post(
        "/v1/companies", json={"name": "X", "owner_user_id": str(stranger.id)}, headers=admin
    )
    assert owner.status_code == 404
    assert owner.json()["details"][0]["field"] == "body.owner_user_id"
    assert (await module_crm.client.get(path, headers=admin)).json()["name"] == "Mine"

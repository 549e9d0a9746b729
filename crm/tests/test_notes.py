"""/v1/notes: notes on a contact, a company or a deal."""

from __future__ import annotations

from typing import Any

import pytest
from tests.services.crm import CrmHarness, crm_tenant, crm_user

from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def targets(crm: CrmHarness, headers: dict[str, str]) -> dict[str, str]:
    """A contact, a company and a deal of the caller's tenant, by the field naming them."""
    contact = await crm.client.post("/v1/contacts", json={"name": "Anna"}, headers=headers)
    company = await crm.client.post("/v1/companies", json={"name": "Acme"}, headers=headers)
    deal = await crm.client.post("/v1/deals", json={"title": "PBX"}, headers=headers)
    for created in (contact, company, deal):
        assert created.status_code == 201, created.text
    return {
        "contact_id": contact.json()["id"],
        "company_id": company.json()["id"],
        "deal_id": deal.json()["id"],
    }


async def write(crm: CrmHarness, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    created = await crm.client.post("/v1/notes", json=body, headers=headers)
    assert created.status_code == 201, created.text
    note: dict[str, Any] = created.json()
    return note


@pytest.mark.parametrize("target", ["contact_id", "company_id", "deal_id"])
async def test_notes_are_written_on_one_thing_and_listed_newest_first(
    module_crm: CrmHarness, target: str
) -> None:
    tenant = await crm_tenant(module_crm)
    me, agent = await crm_user(module_crm, tenant, Role.AGENT)
    ids = await targets(module_crm, agent)
    created = await module_crm.client.post(
        "/v1/notes",
        json={target: ids[target], "text": "  Перезвонить после 15:00\n"},
        headers=agent,
    )
    assert created.status_code == 201, created.text
    first = created.json()
    assert created.headers["Location"] == f"/v1/notes/{first['id']}"
    assert created.headers["ETag"] == '"1"'
    assert {key: value for key, value in first.items() if not key.endswith("_at")} == {
        "id": first["id"],
        "contact_id": None,
        "company_id": None,
        "deal_id": None,
        target: ids[target],
        "author_user_id": str(me),
        "text": "Перезвонить после 15:00",
    }
    second = await write(module_crm, agent, **{target: ids[target], "text": "Отправил КП"})
    # A note on something else is not on this list.
    other = next(name for name in ids if name != target)
    await write(module_crm, agent, **{other: ids[other], "text": "elsewhere"})
    listed = await module_crm.client.get("/v1/notes", params={target: ids[target]}, headers=agent)
    assert listed.status_code == 200, listed.text
    assert [note["id"] for note in listed.json()["items"]] == [second["id"], first["id"]]
    assert listed.json()["total"] == 2
    read = await module_crm.client.get(f"/v1/notes/{first['id']}", headers=agent)
    assert read.json() == first
    assert read.headers["ETag"] == '"1"'


async def test_a_note_is_on_exactly_one_thing(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    ids = await targets(module_crm, admin)
    nothing = await module_crm.client.post("/v1/notes", json={"text": "x"}, headers=admin)
    assert nothing.status_code == 422
    assert [detail["field"] for detail in nothing.json()["details"]] == [
        "body.contact_id",
        "body.company_id",
        "body.deal_id",
    ]
    two = await module_crm.client.post(
        "/v1/notes",
        json={"contact_id": ids["contact_id"], "deal_id": ids["deal_id"], "text": "x"},
        headers=admin,
    )
    assert two.status_code == 422
    assert [detail["field"] for detail in two.json()["details"]] == [
        "body.contact_id",
        "body.deal_id",
    ]
    unfiltered = await module_crm.client.get("/v1/notes", headers=admin)
    assert unfiltered.status_code == 422
    assert "query.contact_id" in [detail["field"] for detail in unfiltered.json()["details"]]
    both = await module_crm.client.get(
        "/v1/notes",
        params={"company_id": ids["company_id"], "deal_id": ids["deal_id"]},
        headers=admin,
    )
    assert both.status_code == 422
    assert [detail["field"] for detail in both.json()["details"]] == [
        "query.company_id",
        "query.deal_id",
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [("", "body.text"), ("   \n ", "body.text"), ("x" * 10001, "body.text"), (None, "body.text")],
)
async def test_a_notes_text_is_1_to_10000_characters(
    module_crm: CrmHarness, text: str | None, field: str
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    ids = await targets(module_crm, admin)
    refused = await module_crm.client.post(
        "/v1/notes", json={"deal_id": ids["deal_id"], "text": text}, headers=admin
    )
    assert refused.status_code == 422, refused.text
    assert field in [detail["field"] for detail in refused.json()["details"]]
    longest = await write(module_crm, admin, deal_id=ids["deal_id"], text="x" * 10000)
    assert len(longest["text"]) == 10000


async def test_only_the_author_and_managers_change_or_delete_a_note(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    _, author = await crm_user(module_crm, tenant, Role.AGENT)
    _, colleague = await crm_user(module_crm, tenant, Role.AGENT)
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    ids = await targets(module_crm, author)
    note = await write(module_crm, author, contact_id=ids["contact_id"], text="draft")
    path = f"/v1/notes/{note['id']}"
    refused = await module_crm.client.patch(path, json={"text": "mine now"}, headers=colleague)
    assert refused.status_code == 403
    assert (await module_crm.client.delete(path, headers=colleague)).status_code == 403
    assert (await module_crm.client.get(path, headers=colleague)).json()["text"] == "draft"
    edited = await module_crm.client.patch(
        path, json={"text": "final"}, headers={**author, "If-Match": '"1"'}
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["text"] == "final"
    assert edited.headers["ETag"] == '"2"'
    stale = await module_crm.client.patch(
        path, json={"text": "lost update"}, headers={**supervisor, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    by_supervisor = await module_crm.client.patch(
        path, json={"text": "checked"}, headers={**supervisor, "If-Match": '"2"'}
    )
    assert by_supervisor.status_code == 200
    assert by_supervisor.json()["text"] == "checked"
    only_text = await module_crm.client.patch(
        path, json={"text": "x", "deal_id": ids["deal_id"]}, headers=author
    )
    assert only_text.status_code == 422
    assert only_text.json()["details"][0]["field"] == "body.deal_id"
    assert (await module_crm.client.delete(path, headers=author)).status_code == 204
    gone = await module_crm.client.get(path, headers=author)
    assert gone.status_code == 404
    assert gone.json()["error_id"] == "note-not-found"
    other = await write(module_crm, author, contact_id=ids["contact_id"], text="x")
    deleted = await module_crm.client.delete(f"/v1/notes/{other['id']}", headers=supervisor)
    assert deleted.status_code == 204


async def test_notes_go_with_the_deal_they_are_on(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    ids = await targets(module_crm, admin)
    note = await write(module_crm, admin, deal_id=ids["deal_id"], text="x")
    kept = await write(module_crm, admin, contact_id=ids["contact_id"], text="y")
    deleted = await module_crm.client.delete(f"/v1/deals/{ids['deal_id']}", headers=admin)
    assert deleted.status_code == 204
    assert (
        await module_crm.client.get(f"/v1/notes/{note['id']}", headers=admin)
    ).status_code == 404
    assert (
        await module_crm.client.get(f"/v1/notes/{kept['id']}", headers=admin)
    ).status_code == 200


async def test_another_tenants_notes_and_their_subjects_do_not_exist(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    other = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    theirs = await module_crm.as_role(other)
    ids = await targets(module_crm, admin)
    note = await write(module_crm, admin, company_id=ids["company_id"], text="secret")
    path = f"/v1/notes/{note['id']}"
    for response in [
        await module_crm.client.get(path, headers=theirs),
        await module_crm.client.patch(path, json={"text": "x"}, headers=theirs),
        await module_crm.client.delete(path, headers=theirs),
    ]:
        assert response.status_code == 404, response.request
        assert response.json()["error_id"] == "note-not-found"
    for name, value in ids.items():
        listed = await module_crm.client.get("/v1/notes", params={name: value}, headers=theirs)
        assert listed.status_code == 404, listed.text
        assert listed.json()["details"][0]["field"] == f"query.{name}"
        created = await module_crm.client.post(
            "/v1/notes", json={name: value, "text": "x"}, headers=theirs
        )
        assert created.status_code == 404, created.text
        assert created.json()["details"][0]["field"] == f"body.{name}"
    assert (await module_crm.client.get(path, headers=admin)).json()["text"] == "secret"

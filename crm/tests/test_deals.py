"""/v1/pipelines and /v1/deals: stages, deals moving through them, history and the board."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from tests.services.crm import CrmHarness, crm_tenant, crm_user

from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARTNER_STAGES = [
    {"name": "Lead"},
    {"name": "Contract", "kind": "open"},
    {"name": "Signed", "kind": "won"},
    {"name": "Dropped", "kind": "lost"},
]


async def first_pipeline(crm: CrmHarness, headers: dict[str, str]) -> dict[str, Any]:
    listed = await crm.client.get("/v1/pipelines", headers=headers)
    assert listed.status_code == 200, listed.text
    pipeline: dict[str, Any] = listed.json()["items"][0]
    return pipeline


def stage_ids(pipeline: dict[str, Any]) -> dict[str, str]:
    return {stage["name"]: stage["id"] for stage in pipeline["stages"]}


async def new_deal(crm: CrmHarness, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    created = await crm.client.post("/v1/deals", json={"title": "Deal", **body}, headers=headers)
    assert created.status_code == 201, created.text
    deal: dict[str, Any] = created.json()
    return deal


# --- pipelines ----------------------------------------------------------------------------


async def test_a_tenant_without_pipelines_gets_the_default_one_once(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    agent = await module_crm.as_role(tenant, Role.AGENT)
    # Several first reads at once still make one default pipeline.
    reads = await asyncio.gather(
        *(module_crm.client.get("/v1/pipelines", headers=agent) for _ in range(3))
    )
    assert [read.status_code for read in reads] == [200, 200, 200], [r.text for r in reads]
    listed = await module_crm.client.get("/v1/pipelines", headers=agent)
    assert listed.json()["total"] == 1
    sales = listed.json()["items"][0]
    assert sales["name"] == "Sales"
    assert sales["position"] == 0
    assert [(s["name"], s["kind"], s["position"]) for s in sales["stages"]] == [
        ("New", "open", 0),
        ("Qualified", "open", 1),
        ("Proposal", "open", 2),
        ("Negotiation", "open", 3),
        ("Won", "won", 4),
        ("Lost", "lost", 5),
    ]
    assert {read.json()["items"][0]["id"] for read in reads} == {sales["id"]}
    read = await module_crm.client.get(f"/v1/pipelines/{sales['id']}", headers=agent)
    assert read.json() == sales
    assert read.headers["ETag"] == '"1"'


async def test_the_first_deal_of_a_tenant_goes_to_the_default_pipelines_first_stage(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    me, agent = await crm_user(module_crm, tenant, Role.AGENT)
    created = await module_crm.client.post("/v1/deals", json={"title": "PBX"}, headers=agent)
    assert created.status_code == 201, created.text
    deal = created.json()
    assert created.headers["Location"] == f"/v1/deals/{deal['id']}"
    assert created.headers["ETag"] == '"1"'
    sales = await first_pipeline(module_crm, agent)
    assert sales["name"] == "Sales"
    assert (await module_crm.client.get("/v1/pipelines", headers=agent)).json()["total"] == 1
    assert deal["pipeline_id"] == sales["id"]
    assert deal["stage_id"] == stage_ids(sales)["New"]
    assert deal["status"] == "open"
    assert deal["owner_user_id"] == str(me)  # the caller, when the body names nobody
    assert deal["amount"] is None
    assert deal["currency"] == "RUB"
    assert deal["closed_at"] is None
    assert deal["loss_reason"] == ""
    read = await module_crm.client.get(f"/v1/deals/{deal['id']}", headers=agent)
    assert read.json() == deal
    assert read.headers["ETag"] == '"1"'


async def test_a_tenant_that_made_its_own_pipeline_gets_no_default(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    created = await module_crm.client.post(
        "/v1/pipelines", json={"name": "Partners", "stages": PARTNER_STAGES}, headers=admin
    )
    assert created.status_code == 201, created.text
    pipeline = created.json()
    assert created.headers["Location"] == f"/v1/pipelines/{pipeline['id']}"
    assert [(s["name"], s["kind"], s["position"]) for s in pipeline["stages"]] == [
        ("Lead", "open", 0),
        ("Contract", "open", 1),
        ("Signed", "won", 2),
        ("Dropped", "lost", 3),
    ]
    listed = await module_crm.client.get("/v1/pipelines", headers=admin)
    assert [item["name"] for item in listed.json()["items"]] == ["Partners"]
    deal = await new_deal(module_crm, admin)
    assert deal["stage_id"] == stage_ids(pipeline)["Lead"]


async def test_managers_change_pipelines_and_everybody_reads_them(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    agent = await module_crm.as_role(tenant, Role.AGENT)
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    sales = await first_pipeline(module_crm, agent)
    body = {"name": "Partners", "stages": PARTNER_STAGES}
    assert (
        await module_crm.client.post("/v1/pipelines", json=body, headers=agent)
    ).status_code == 403
    created = await module_crm.client.post("/v1/pipelines", json=body, headers=supervisor)
    assert created.status_code == 201, created.text
    partners = created.json()
    assert partners["position"] == 1  # after the default one
    path = f"/v1/pipelines/{partners['id']}"
    assert (await module_crm.client.get(path, headers=agent)).status_code == 200
    by_agent = await module_crm.client.patch(path, json={"name": "Mine"}, headers=agent)
    assert by_agent.status_code == 403
    assert (await module_crm.client.delete(path, headers=agent)).status_code == 403
    taken = await module_crm.client.patch(path, json={"name": "sales"}, headers=supervisor)
    assert taken.status_code == 409
    assert taken.json()["error_id"] == "pipeline-name-taken"
    # Moving it first makes it the default for new deals.
    first = await module_crm.client.patch(
        path, json={"name": "Partners 2", "position": 0}, headers={**supervisor, "If-Match": '"1"'}
    )
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] == '"2"'
    assert first.json()["name"] == "Partners 2"
    listed = await module_crm.client.get("/v1/pipelines", headers=agent)
    assert [item["id"] for item in listed.json()["items"]] == [partners["id"], sales["id"]]
    deal = await new_deal(module_crm, agent)
    assert deal["pipeline_id"] == partners["id"]
    stale = await module_crm.client.patch(
        path, json={"name": "X"}, headers={**supervisor, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    in_use = await module_crm.client.delete(path, headers=supervisor)
    assert in_use.status_code == 409
    assert in_use.json()["error_id"] == "pipeline-in-use"
    empty = await module_crm.client.post(
        "/v1/pipelines", json={"name": "Empty", "stages": PARTNER_STAGES}, headers=supervisor
    )
    deleted = await module_crm.client.delete(
        f"/v1/pipelines/{empty.json()['id']}", headers=supervisor
    )
    assert deleted.status_code == 204
    gone = await module_crm.client.get(f"/v1/pipelines/{empty.json()['id']}", headers=agent)
    assert gone.status_code == 404
    assert gone.json()["error_id"] == "pipeline-not-found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "stages": PARTNER_STAGES}, "body.name"),
        ({"name": "P"}, "body.stages"),
        ({"name": "P", "stages": []}, "body.stages"),
        (
            {"name": "P", "stages": [{"name": "W", "kind": "won"}, {"name": "L", "kind": "lost"}]},
            "body.stages",
        ),
        ({"name": "P", "stages": [{"name": "N"}, {"name": "L", "kind": "lost"}]}, "body.stages"),
        (
            {
                "name": "P",
                "stages": [
                    {"name": "N"},
                    {"name": "W1", "kind": "won"},
                    {"name": "W2", "kind": "won"},
                    {"name": "L", "kind": "lost"},
                ],
            },
            "body.stages",
        ),
        ({"name": "P", "stages": [{"name": "N"}, {"name": "W", "kind": "won"}]}, "body.stages"),
        (
            {
                "name": "P",
                "stages": [{"name": "New"}, {"name": "new ", "kind": "open"}, *PARTNER_STAGES[2:]],
            },
            "body.stages[1].name",
        ),
        ({"name": "P", "stages": [{"name": ""}, *PARTNER_STAGES[1:]]}, "body.stages[0].name"),
        (
            {"name": "P", "stages": [{"name": "N", "kind": "maybe"}, *PARTNER_STAGES[1:]]},
            "body.stages[0].kind",
        ),
        (
            {"name": "P", "stages": [{"name": "N", "id": str(uuid.uuid4())}, *PARTNER_STAGES[1:]]},
            "body.stages[0].id",
        ),
        (
            {"name": "P", "stages": [{"name": "N", "position": 0}, *PARTNER_STAGES[1:]]},
            "body.stages[1].position",
        ),
        (
            {"name": "P", "stages": [{"name": "N", "color": "red"}, *PARTNER_STAGES[1:]]},
            "body.stages[0].color",
        ),
    ],
)
async def test_invalid_pipelines_are_refused_naming_the_field(
    module_crm: CrmHarness, body: dict[str, object], field: str
) -> None:
    tenant = await crm_tenant(module_crm)
    refused = await module_crm.client.post(
        "/v1/pipelines", json=body, headers=await module_crm.as_role(tenant)
    )
    assert refused.status_code == 422, refused.text
    assert field in [detail["field"] for detail in refused.json()["details"]]


async def test_the_stage_list_is_replaced_keeping_the_stages_given_with_their_ids(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    sales = await first_pipeline(module_crm, admin)
    ids = stage_ids(sales)
    deal = await new_deal(module_crm, admin, stage_id=ids["Proposal"])
    path = f"/v1/pipelines/{sales['id']}"
    # Qualified and Negotiation (empty) go, New is renamed, Demo is new, Proposal stays.
    changed = await module_crm.client.patch(
        path,
        json={
            "stages": [
                {"id": ids["New"], "name": "Inbox"},
                {"name": "Demo"},
                {"id": ids["Proposal"], "name": "Proposal"},
                {"id": ids["Won"], "name": "Won", "kind": "won"},
                {"id": ids["Lost"], "name": "Lost", "kind": "lost"},
            ]
        },
        headers={**admin, "If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == '"2"'
    stages = changed.json()["stages"]
    assert [(s["name"], s["kind"], s["position"]) for s in stages] == [
        ("Inbox", "open", 0),
        ("Demo", "open", 1),
        ("Proposal", "open", 2),
        ("Won", "won", 3),
        ("Lost", "lost", 4),
    ]
    kept = [stages[0]["id"], stages[2]["id"], stages[3]["id"], stages[4]["id"]]
    assert kept == [ids["New"], ids["Proposal"], ids["Won"], ids["Lost"]]
    assert stages[1]["id"] not in ids.values()
    read = await module_crm.client.get(f"/v1/deals/{deal['id']}", headers=admin)
    assert read.json()["stage_id"] == ids["Proposal"]

    # Positions, when every stage has one, order the stages whatever the list's order.
    reordered = await module_crm.client.patch(
        path,
        json={
            "stages": [
                {**stage, "position": position}
                for stage, position in zip(stages, [1, 0, 2, 4, 3], strict=True)
            ]
        },
        headers=admin,
    )
    assert reordered.status_code == 200, reordered.text
    names = [stage["name"] for stage in reordered.json()["stages"]]
    assert names == ["Demo", "Inbox", "Proposal", "Lost", "Won"]
    stages = reordered.json()["stages"]
    without_proposal = [
        {"id": s["id"], "name": s["name"], "kind": s["kind"]}
        for s in stages
        if s["name"] != "Proposal"
    ]
    in_use = await module_crm.client.patch(path, json={"stages": without_proposal}, headers=admin)
    assert in_use.status_code == 409
    assert in_use.json()["error_id"] == "stage-in-use"
    assert "'Proposal' holds 1 deal" in in_use.json()["message"]
    assert in_use.json()["details"][0]["field"] == "body.stages"
    made_lost = [
        {"id": s["id"], "name": s["name"], "kind": "lost" if s["name"] == "Proposal" else s["kind"]}
        for s in stages
    ]
    kind_change = await module_crm.client.patch(path, json={"stages": made_lost}, headers=admin)
    assert kind_change.status_code == 409
    assert kind_change.json()["details"][0]["field"] == "body.stages[2].kind"
    unknown = [{"id": str(uuid.uuid4()), "name": "Ghost"}, *without_proposal]
    refused = await module_crm.client.patch(path, json={"stages": unknown}, headers=admin)
    assert refused.status_code == 404
    assert refused.json()["details"][0]["field"] == "body.stages[0].id"
    # None of the refused changes touched the pipeline.
    again = await module_crm.client.get(path, headers=admin)
    assert again.json()["stages"] == stages
    assert again.headers["ETag"] == '"3"'


# --- deals --------------------------------------------------------------------------------


async def test_a_deal_takes_the_contacts_company_and_ad_channel(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga")
    company = (
        await module_crm.client.post("/v1/companies", json={"name": "Acme"}, headers=admin)
    ).json()
    contact = (
        await module_crm.client.post(
            "/v1/contacts",
            json={"name": "Anna", "company_id": company["id"], "source_label": "yandex-direct"},
            headers=admin,
        )
    ).json()
    sales = await first_pipeline(module_crm, admin)
    deal = await new_deal(
        module_crm,
        admin,
        title="  Офисная АТС  ",
        contact_id=contact["id"],
        stage_id=stage_ids(sales)["Proposal"],
        amount="150000.5",
        currency="USD",
        owner_user_id=str(olga.id),
        custom={"seats": 25},
    )
    assert {key: value for key, value in deal.items() if not key.endswith("_at")} == {
        "id": deal["id"],
        "title": "Офисная АТС",
        "pipeline_id": sales["id"],
        "stage_id": stage_ids(sales)["Proposal"],
        "status": "open",
        "contact_id": contact["id"],
        "company_id": company["id"],
        "contact_name": "Anna",
        "company_name": "Acme",
        "amount": "150000.50",
        "currency": "USD",
        "owner_user_id": str(olga.id),
        "loss_reason": "",
        "source_label": "yandex-direct",
        "custom": {"seats": 25},
    }
    assert deal["closed_at"] is None
    # What the body says wins over the contact's.
    own = await new_deal(
        module_crm,
        admin,
        contact_id=contact["id"],
        company_id=None,
        source_label="avito",
        amount=1500,
    )
    assert own["company_id"] is None
    assert own["source_label"] == "avito"
    assert own["amount"] == "1500.00"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "body.title"),
        ({"title": "X", "amount": -1}, "body.amount"),
        ({"title": "X", "amount": "abc"}, "body.amount"),
        ({"title": "X", "amount": "10.005"}, "body.amount"),
        ({"title": "X", "amount": "NaN"}, "body.amount"),
        ({"title": "X", "amount": "1e15"}, "body.amount"),
        ({"title": "X", "currency": "rub"}, "body.currency"),
        ({"title": "X", "currency": "RUBL"}, "body.currency"),
        ({"title": "X", "loss_reason": "too expensive"}, "body.loss_reason"),
        ({"title": "X", "custom": {"Seats": 1}}, "body.custom"),
        ({"title": "X", "stage": "New"}, "body.stage"),
    ],
)
async def test_invalid_deals_are_refused_naming_the_field(
    module_crm: CrmHarness, body: dict[str, object], field: str
) -> None:
    tenant = await crm_tenant(module_crm)
    refused = await module_crm.client.post(
        "/v1/deals", json=body, headers=await module_crm.as_role(tenant)
    )
    assert refused.status_code == 422, refused.text
    assert field in [detail["field"] for detail in refused.json()["details"]]


async def test_a_deal_moves_through_the_stages_and_its_history_says_how(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    agent_id, agent = await crm_user(module_crm, tenant, Role.AGENT)
    boss_id, boss = await crm_user(module_crm, tenant, Role.SUPERVISOR)
    sales = await first_pipeline(module_crm, agent)
    ids = stage_ids(sales)
    deal = await new_deal(module_crm, agent, amount="1000")
    path = f"/v1/deals/{deal['id']}"

    async def move(headers: dict[str, str], **body: Any) -> dict[str, Any]:
        moved = await module_crm.client.patch(path, json=body, headers=headers)
        assert moved.status_code == 200, moved.text
        result: dict[str, Any] = moved.json()
        return result

    assert (await move(agent, stage_id=ids["Qualified"]))["status"] == "open"
    no_reason = await module_crm.client.patch(path, json={"stage_id": ids["Lost"]}, headers=agent)
    assert no_reason.status_code == 422
    assert no_reason.json()["details"][0]["field"] == "body.loss_reason"
    assert (await module_crm.client.get(path, headers=agent)).json()["stage_id"] == ids["Qualified"]
    lost = await move(boss, stage_id=ids["Lost"], loss_reason="Too expensive")
    assert (lost["status"], lost["loss_reason"]) == ("lost", "Too expensive")
    assert lost["closed_at"] is not None
    reopened = await move(agent, stage_id=ids["New"])
    assert (reopened["status"], reopened["loss_reason"], reopened["closed_at"]) == (
        "open",
        "",
        None,
    )
    won = await move(agent, stage_id=ids["Won"], amount="2500")
    assert (won["status"], won["amount"]) == ("won", "2500.00")
    assert won["closed_at"] is not None
    renamed = await move(agent, title="Renamed")  # no step: the stage did not change
    assert renamed["closed_at"] == won["closed_at"]
    assert renamed["status"] == "won"

    history = await module_crm.client.get(f"{path}/history", headers=agent)
    assert history.status_code == 200, history.text
    events = history.json()["items"]
    assert history.json()["total"] == 5
    assert [
        (e["kind"], e["from_stage_id"], e["to_stage_id"], e["amount"], e["user_id"]) for e in events
    ] == [
        ("created", None, ids["New"], "1000.00", str(agent_id)),
        ("moved", ids["New"], ids["Qualified"], "1000.00", str(agent_id)),
        ("lost", ids["Qualified"], ids["Lost"], "1000.00", str(boss_id)),
        ("reopened", ids["Lost"], ids["New"], "1000.00", str(agent_id)),
        ("won", ids["New"], ids["Won"], "2500.00", str(agent_id)),
    ]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)

    # Another pipeline: the deal goes to its first open stage (the funnel says reopened).
    partners = (
        await module_crm.client.post(
            "/v1/pipelines", json={"name": "Partners", "stages": PARTNER_STAGES}, headers=boss
        )
    ).json()
    wrong = await module_crm.client.patch(
        path, json={"stage_id": stage_ids(partners)["Contract"]}, headers=agent
    )
    assert wrong.status_code == 422
    assert wrong.json()["details"][0]["field"] == "body.stage_id"
    moved = await move(agent, pipeline_id=partners["id"])
    assert (moved["pipeline_id"], moved["stage_id"]) == (
        partners["id"],
        stage_ids(partners)["Lead"],
    )
    assert moved["closed_at"] is None
    last = (await module_crm.client.get(f"{path}/history", headers=agent)).json()["items"][-1]
    assert (last["kind"], last["from_stage_id"], last["to_stage_id"]) == (
        "reopened",
        ids["Won"],
        stage_ids(partners)["Lead"],
    )


async def test_a_deal_created_in_a_closed_stage_is_closed(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    ids = stage_ids(await first_pipeline(module_crm, admin))
    refused = await module_crm.client.post(
        "/v1/deals", json={"title": "X", "stage_id": ids["Lost"]}, headers=admin
    )
    assert refused.status_code == 422
    assert refused.json()["details"][0]["field"] == "body.loss_reason"
    lost = await new_deal(module_crm, admin, stage_id=ids["Lost"], loss_reason="No budget")
    assert (lost["status"], lost["loss_reason"]) == ("lost", "No budget")
    assert lost["closed_at"] is not None
    won = await new_deal(module_crm, admin, stage_id=ids["Won"])
    assert won["status"] == "won"
    assert won["closed_at"] is not None
    partners = (
        await module_crm.client.post(
            "/v1/pipelines", json={"name": "Partners", "stages": PARTNER_STAGES}, headers=admin
        )
    ).json()
    elsewhere = await module_crm.client.post(
        "/v1/deals",
        json={"title": "X", "pipeline_id": partners["id"], "stage_id": ids["New"]},
        headers=admin,
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["details"][0]["field"] == "body.stage_id"


async def test_deals_are_found_by_pipeline_stage_contact_company_owner_and_status(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga")
    company = (
        await module_crm.client.post("/v1/companies", json={"name": "Acme"}, headers=admin)
    ).json()
    contact = (
        await module_crm.client.post("/v1/contacts", json={"name": "Anna"}, headers=admin)
    ).json()
    sales = await first_pipeline(module_crm, admin)
    ids = stage_ids(sales)
    partners = (
        await module_crm.client.post(
            "/v1/pipelines", json={"name": "Partners", "stages": PARTNER_STAGES}, headers=admin
        )
    ).json()
    await new_deal(module_crm, admin, title="a", contact_id=contact["id"])
    await new_deal(module_crm, admin, title="b", company_id=company["id"], stage_id=ids["Won"])
    await new_deal(
        module_crm,
        admin,
        title="c",
        stage_id=ids["Lost"],
        loss_reason="x",
        owner_user_id=str(olga.id),
    )
    await new_deal(module_crm, admin, title="d", pipeline_id=partners["id"])
    for query, titles in [
        ({}, ["d", "c", "b", "a"]),
        ({"pipeline_id": sales["id"]}, ["c", "b", "a"]),
        ({"pipeline_id": partners["id"]}, ["d"]),
        ({"stage_id": ids["Won"]}, ["b"]),
        ({"contact_id": contact["id"]}, ["a"]),
        ({"company_id": company["id"]}, ["b"]),
        ({"owner_user_id": str(olga.id)}, ["c"]),
        ({"status": "open"}, ["d", "a"]),
        ({"status": "won"}, ["b"]),
        ({"status": "lost"}, ["c"]),
        ({"status": "open", "pipeline_id": sales["id"]}, ["a"]),
    ]:
        found = await module_crm.client.get("/v1/deals", params=query, headers=admin)
        assert found.status_code == 200, found.text
        assert [deal["title"] for deal in found.json()["items"]] == titles, query
        assert found.json()["total"] == len(titles)
    bad = await module_crm.client.get("/v1/deals", params={"status": "closed"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "query.status"


async def test_the_board_has_every_stage_with_its_count_totals_and_newest_deals(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga")
    sales = await first_pipeline(module_crm, admin)
    ids = stage_ids(sales)
    await new_deal(module_crm, admin, title="n1", amount="100")
    await new_deal(module_crm, admin, title="n2", amount="200.5", owner_user_id=str(olga.id))
    await new_deal(module_crm, admin, title="n3", amount=10, currency="USD")
    company = await module_crm.client.post(
        "/v1/companies", json={"name": "ООО Ромашка"}, headers=admin
    )
    client = await module_crm.client.post(
        "/v1/contacts",
        json={"name": "Ирина", "phones": ["+79160007788"], "company_id": company.json()["id"]},
        headers=admin,
    )
    await new_deal(
        module_crm, admin, title="p1", stage_id=ids["Proposal"], contact_id=client.json()["id"]
    )
    await new_deal(module_crm, admin, title="w1", stage_id=ids["Won"], amount="1000")
    # Another pipeline's deals are not on this board.
    partners = (
        await module_crm.client.post(
            "/v1/pipelines", json={"name": "Partners", "stages": PARTNER_STAGES}, headers=admin
        )
    ).json()
    await new_deal(module_crm, admin, title="x", pipeline_id=partners["id"], amount="5")

    board = await module_crm.client.get(
        f"/v1/pipelines/{sales['id']}/board", params={"per_stage": 2}, headers=admin
    )
    assert board.status_code == 200, board.text
    assert (board.json()["pipeline_id"], board.json()["name"]) == (sales["id"], "Sales")
    columns = [
        (s["name"], s["kind"], s["count"], s["totals"], [d["title"] for d in s["deals"]])
        for s in board.json()["stages"]
    ]
    assert columns == [
        ("New", "open", 3, {"RUB": "300.50", "USD": "10.00"}, ["n3", "n2"]),
        ("Qualified", "open", 0, {}, []),
        ("Proposal", "open", 1, {}, ["p1"]),
        ("Negotiation", "open", 0, {}, []),
        ("Won", "won", 1, {"RUB": "1000.00"}, ["w1"]),
        ("Lost", "lost", 0, {}, []),
    ]
    assert board.json()["stages"][0]["deals"][0]["amount"] == "10.00"
    # The cards name the client and their company (read for the whole board at once).
    card = board.json()["stages"][2]["deals"][0]
    assert (card["contact_name"], card["company_name"]) == ("Ирина", "ООО Ромашка")
    assert board.json()["stages"][0]["deals"][0]["contact_name"] is None
    hers = await module_crm.client.get(
        f"/v1/pipelines/{sales['id']}/board",
        params={"owner_user_id": str(olga.id)},
        headers=admin,
    )
    assert [(s["count"], s["totals"]) for s in hers.json()["stages"][:2]] == [
        (1, {"RUB": "200.50"}),
        (0, {}),
    ]


async def test_agents_neither_delete_deals_nor_give_them_to_colleagues(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    me, agent = await crm_user(module_crm, tenant, Role.AGENT)
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    colleague = await module_crm.control.add_user(tenant, name="Colleague")
    for_colleague = await module_crm.client.post(
        "/v1/deals", json={"title": "X", "owner_user_id": str(colleague.id)}, headers=agent
    )
    assert for_colleague.status_code == 403
    deal = await new_deal(module_crm, agent)
    path = f"/v1/deals/{deal['id']}"
    given = await module_crm.client.patch(
        path, json={"owner_user_id": str(colleague.id)}, headers=agent
    )
    assert given.status_code == 403
    assert (await module_crm.client.delete(path, headers=agent)).status_code == 403
    read = await module_crm.client.get(path, headers=agent)
    assert read.json()["owner_user_id"] == str(me)
    reassigned = await module_crm.client.patch(
        path, json={"owner_user_id": str(colleague.id)}, headers={**supervisor, "If-Match": '"1"'}
    )
    assert reassigned.status_code == 200, reassigned.text
    assert reassigned.json()["owner_user_id"] == str(colleague.id)
    stale = await module_crm.client.patch(
        path, json={"title": "Y"}, headers={**agent, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert (await module_crm.client.get(path, headers=agent)).json()["title"] == "Deal"
    stale_delete = await module_crm.client.delete(path, headers={**supervisor, "If-Match": '"1"'})
    assert stale_delete.status_code == 412
    deleted = await module_crm.client.delete(path, headers={**supervisor, "If-Match": '"2"'})
    assert deleted.status_code == 204
    assert (await module_crm.client.get(path, headers=agent)).status_code == 404
    assert (await module_crm.client.get(f"{path}/history", headers=agent)).status_code == 404


async def test_another_tenants_pipelines_and_deals_do_not_exist(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    other = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    theirs = await module_crm.as_role(other)
    sales = await first_pipeline(module_crm, admin)
    contact = (
        await module_crm.client.post("/v1/contacts", json={"name": "A"}, headers=admin)
    ).json()
    company = (
        await module_crm.client.post("/v1/companies", json={"name": "C"}, headers=admin)
    ).json()
    deal = await new_deal(module_crm, admin, contact_id=contact["id"])
    pipeline_path = f"/v1/pipelines/{sales['id']}"
    deal_path = f"/v1/deals/{deal['id']}"
    for response in [
        await module_crm.client.get(pipeline_path, headers=theirs),
        await module_crm.client.get(f"{pipeline_path}/board", headers=theirs),
        await module_crm.client.patch(pipeline_path, json={"name": "X"}, headers=theirs),
        await module_crm.client.delete(pipeline_path, headers=theirs),
    ]:
        assert response.status_code == 404, response.request
        assert response.json()["error_id"] == "pipeline-not-found"
    for response in [
        await module_crm.client.get(deal_path, headers=theirs),
        await module_crm.client.get(f"{deal_path}/history", headers=theirs),
        await module_crm.client.patch(deal_path, json={"title": "X"}, headers=theirs),
        await module_crm.client.delete(deal_path, headers=theirs),
    ]:
        assert response.status_code == 404, response.request
        assert response.json()["error_id"] == "deal-not-found"
    filtered = await module_crm.client.get(
        "/v1/deals", params={"pipeline_id": sales["id"]}, headers=theirs
    )
    assert filtered.json()["items"] == []
    own = await new_deal(module_crm, theirs)
    references = [
        ("pipeline_id", sales["id"]),
        ("stage_id", stage_ids(sales)["Qualified"]),
        ("contact_id", contact["id"]),
        ("company_id", company["id"]),
    ]
    for name, value in references:
        created = await module_crm.client.post(
            "/v1/deals", json={"title": "X", name: value}, headers=theirs
        )
        assert created.status_code == 404, (name, created.text)
        assert created.json()["details"][0]["field"] == f"body.{name}"
        changed = await module_crm.client.patch(
            f"/v1/deals/{own['id']}", json={name: value}, headers=theirs
        )
        assert changed.status_code == 404, (name, changed.text)
        assert changed.json()["details"][0]["field"] == f"body.{name}"
    # Their pipeline cannot take our stages either.
    their_sales = await first_pipeline(module_crm, theirs)
    taken = await module_crm.client.patch(
        f"/v1/pipelines/{their_sales['id']}",
        json={"stages": [{"id": stage_ids(sales)["New"], "name": "New"}, *PARTNER_STAGES[1:]]},
        headers=theirs,
    )
    assert taken.status_code == 404
    assert taken.json()["details"][0]["field"] == "body.stages[0].id"
    assert (await module_crm.client.get(deal_path, headers=admin)).json() == deal

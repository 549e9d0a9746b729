"""Call scripts, who sees which calls, and the after-call form's result with its actions.

Calls are put on the timeline through the CRM's own call-event handler (what the Redis
reader calls for every node event), so the rows are the ones production writes.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from typing import Any

import pytest
from tests.services.crm import CrmHarness, crm_tenant, crm_user

from vpbx_common.events import CallEvent, CallEventType
from vpbx_control.auth.principal import Role
from vpbx_crm.events.handler import CrmEventHandler

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAIN = "+74950000001"
PROMO = "+74950000009"


async def call(
    crm: CrmHarness,
    tenant: str,
    *,
    caller: str,
    offered: str = "",
    answered: str = "",
    number: str = MAIN,
    label: str = "",
) -> str:
    """An inbound call that rang ``offered`` (extensions) and, if given, was answered by
    ``answered``; its call id."""
    call_id = f"call-{secrets.token_hex(6)}@test"
    now = int(time.time() * 1000)
    base: dict[str, Any] = {
        "call_id": call_id,
        "tenant": tenant,
        "city": "msk",
        "node": "n1",
        "number": number,
        "caller": caller,
        "label": label,
        "direction": "inbound",
    }
    handler = CrmEventHandler(crm.context.database, crm.context.identity)
    await handler.handle(
        CallEvent(type=CallEventType.RINGING, callee=offered, at_ms=now - 60_000, **base)
    )
    if answered:
        await handler.handle(
            CallEvent(type=CallEventType.ANSWERED, callee=answered, at_ms=now - 50_000, **base)
        )
    await handler.handle(
        CallEvent(
            type=CallEventType.ENDED,
            callee=answered or offered,
            at_ms=now - 1_000,
            end_reason="completed" if answered else "no-answer",
            **base,
        )
    )
    return call_id


def phone() -> str:
    return f"+7916{secrets.randbelow(10**7):07d}"


async def contact(crm: CrmHarness, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    created = await crm.client.post(
        "/v1/contacts", json={"name": "Client", "phones": [phone()], **body}, headers=headers
    )
    assert created.status_code == 201, created.text
    found: dict[str, Any] = created.json()
    return found


# --- call scripts ---------------------------------------------------------------------


async def test_supervisors_write_call_scripts_agents_read_them(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    _, supervisor = await crm_user(module_crm, tenant, Role.SUPERVISOR)
    _, agent = await crm_user(module_crm, tenant, Role.AGENT)
    body = {
        "name": "Inbound sales",
        "numbers": ["8 (495) 000-00-01"],
        "labels": ["yandex-direct"],
        "stages": ["Greet", "Ask what they need", "Offer a demo"],
    }
    refused = await module_crm.client.post("/v1/call-scripts", json=body, headers=agent)
    assert refused.status_code == 403
    created = await module_crm.client.post("/v1/call-scripts", json=body, headers=supervisor)
    assert created.status_code == 201, created.text
    script = created.json()
    assert script["numbers"] == [MAIN]  # the local form, as E.164
    assert script["stages"] == body["stages"]

    listed = await module_crm.client.get("/v1/call-scripts", headers=agent)
    assert [item["id"] for item in listed.json()["items"]] == [script["id"]]
    changed = await module_crm.client.patch(
        f"/v1/call-scripts/{script['id']}", json={"stages": ["Greet"]}, headers=agent
    )
    assert changed.status_code == 403

    # A number (or label) has one script: the second names the field.
    taken = await module_crm.client.post(
        "/v1/call-scripts",
        json={"name": "Other", "numbers": [PROMO, MAIN], "stages": ["Hi"]},
        headers=supervisor,
    )
    assert taken.status_code == 409
    assert taken.json()["details"][0]["field"] == "body.numbers[1]"

    for bad, field in (
        ({"name": "X", "numbers": ["12-ab"], "stages": ["Hi"]}, "body.numbers"),
        ({"name": "X", "stages": []}, "body.stages"),
        ({"name": " ", "stages": ["Hi"]}, "body.name"),
        ({"name": "X", "stages": ["Hi"], "colour": "red"}, "body.colour"),
    ):
        answer = await module_crm.client.post("/v1/call-scripts", json=bad, headers=supervisor)
        assert answer.status_code == 422, answer.text
        fields = [detail["field"] for detail in answer.json()["details"]]
        assert any(name.startswith(field) for name in fields), (bad, fields)

    stale = await module_crm.client.patch(
        f"/v1/call-scripts/{script['id']}",
        json={"name": "Renamed"},
        headers={**supervisor, "If-Match": '"7"'},
    )
    assert stale.status_code == 412
    renamed = await module_crm.client.patch(
        f"/v1/call-scripts/{script['id']}",
        json={"name": "Renamed"},
        headers={**supervisor, "If-Match": created.headers["ETag"]},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["stages"] == body["stages"]
    deleted = await module_crm.client.delete(f"/v1/call-scripts/{script['id']}", headers=supervisor)
    assert deleted.status_code == 204
    gone = await module_crm.client.get(f"/v1/call-scripts/{script['id']}", headers=agent)
    assert gone.status_code == 404


async def test_a_call_gets_the_script_of_its_number_else_of_its_campaign(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    by_number = await module_crm.client.post(
        "/v1/call-scripts",
        json={"name": "Main line", "numbers": [MAIN], "stages": ["A"]},
        headers=admin,
    )
    by_label = await module_crm.client.post(
        "/v1/call-scripts",
        json={"name": "Promo", "labels": ["promo"], "stages": ["B"]},
        headers=admin,
    )
    assert by_number.status_code == by_label.status_code == 201
    main = await call(module_crm, tenant, caller=phone(), number=MAIN, label="promo")
    promo = await call(module_crm, tenant, caller=phone(), number=PROMO, label="promo")
    other = await call(module_crm, tenant, caller=phone(), number=PROMO, label="")
    for call_id, expected in ((main, "Main line"), (promo, "Promo"), (other, None)):
        found = await module_crm.client.get(f"/v1/calls/{call_id}/script", headers=admin)
        assert found.status_code == 200, found.text
        assert (found.json() or {}).get("name") == expected


# --- who sees which calls ----------------------------------------------------------------


async def test_an_agent_sees_the_calls_they_took_part_in_and_their_clients_calls(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(
        tenant, name="Olga", extension="101", password="olga-pw-1"
    )
    await module_crm.control.add_user(tenant, name="Petr", extension="102")
    olga_headers = await module_crm.control.login(olga.email, "olga-pw-1")
    own_client = await contact(module_crm, admin, owner_user_id=str(olga.id))

    answered = await call(module_crm, tenant, caller=phone(), offered="101,102", answered="101")
    offered = await call(module_crm, tenant, caller=phone(), offered="102,101")
    petrs = await call(module_crm, tenant, caller=phone(), offered="102", answered="102")
    # 1010 is not 101: the offered list is matched by whole extensions.
    lookalike = await call(module_crm, tenant, caller=phone(), offered="1010")
    clients = await call(
        module_crm, tenant, caller=own_client["phones"][0], offered="102", answered="102"
    )

    seen = await module_crm.client.get("/v1/calls", headers=olga_headers)
    assert seen.status_code == 200
    assert {item["call_id"] for item in seen.json()["items"]} == {answered, offered, clients}
    everything = await module_crm.client.get("/v1/calls", headers=admin)
    assert {item["call_id"] for item in everything.json()["items"]} >= {petrs, lookalike}
    hidden = await module_crm.client.get(f"/v1/calls/{petrs}", headers=olga_headers)
    assert hidden.status_code == 404
    own = await module_crm.client.get(f"/v1/calls/{answered}", headers=olga_headers)
    assert own.status_code == 200
    assert own.json()["result"] is None
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    assert (
        await module_crm.client.get(f"/v1/calls/{petrs}", headers=supervisor)
    ).status_code == 200


# --- the after-call result ------------------------------------------------------------


async def _scene(crm: CrmHarness) -> dict[str, Any]:
    """A tenant with an agent (101), a client with a deal, a script and a call the agent
    answered after a missed one (whose task is still open)."""
    tenant = await crm_tenant(crm)
    admin = await crm.as_role(tenant)
    password = "anna-pw-1"
    anna = await crm.control.add_user(tenant, name="Anna", extension="101", password=password)
    headers = await crm.control.login(anna.email, password)
    client = await contact(crm, admin, owner_user_id=str(anna.id))
    deal = await crm.client.post(
        "/v1/deals", json={"title": "PBX", "contact_id": client["id"]}, headers=admin
    )
    assert deal.status_code == 201, deal.text
    pipeline = (await crm.client.get("/v1/pipelines", headers=admin)).json()["items"][0]
    stages = {stage["name"]: stage["id"] for stage in pipeline["stages"]}
    script = await crm.client.post(
        "/v1/call-scripts",
        json={"name": "Sales", "numbers": [MAIN], "stages": ["Greet", "Needs", "Demo"]},
        headers=admin,
    )
    assert script.status_code == 201, script.text
    await call(crm, tenant, caller=client["phones"][0], offered="101")
    missed_task = (
        await crm.client.get(
            "/v1/tasks", params={"contact_id": client["id"], "kind": "missed-call"}, headers=admin
        )
    ).json()["items"][0]
    # The later answered call closes the missed call's task by itself: reopen it, as if
    # the callback had not happened yet.
    call_id = await call(crm, tenant, caller=client["phones"][0], offered="101", answered="101")
    reopened = await crm.client.patch(
        f"/v1/tasks/{missed_task['id']}", json={"status": "open"}, headers=admin
    )
    assert reopened.status_code == 200, reopened.text
    return {
        "tenant": tenant,
        "admin": admin,
        "agent": headers,
        "agent_id": str(anna.id),
        "contact": client,
        "deal": deal.json(),
        "stages": stages,
        "script": script.json(),
        "call_id": call_id,
        "task": missed_task,
    }


async def test_the_result_is_stored_on_the_call_and_its_actions_applied(
    module_crm: CrmHarness,
) -> None:
    scene = await _scene(module_crm)
    agent, call_id = scene["agent"], scene["call_id"]
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(microsecond=0)
    body = {
        "script_id": scene["script"]["id"],
        "checked": [0, 2],
        "outcome": "Demo on Thursday",
        "move_deal": {"deal_id": scene["deal"]["id"], "stage_id": scene["stages"]["Proposal"]},
        "close_task_id": scene["task"]["id"],
        "follow_up": {"title": "Send the proposal", "due_at": due.isoformat()},
    }
    stored = await module_crm.client.post(f"/v1/calls/{call_id}/result", json=body, headers=agent)
    assert stored.status_code == 201, stored.text
    result = stored.json()["result"]
    assert result["outcome"] == "Demo on Thursday"
    assert result["script_name"] == "Sales"
    assert [(mark["text"], mark["checked"]) for mark in result["stages"]] == [
        ("Greet", True),
        ("Needs", False),
        ("Demo", True),
    ]
    assert result["user_id"] == scene["agent_id"]

    admin = scene["admin"]
    deal = await module_crm.client.get(f"/v1/deals/{scene['deal']['id']}", headers=admin)
    assert deal.json()["stage_id"] == scene["stages"]["Proposal"]
    history = await module_crm.client.get(f"/v1/deals/{scene['deal']['id']}/history", headers=admin)
    assert [event["user_id"] for event in history.json()["items"]][-1] == scene["agent_id"]
    task = await module_crm.client.get(f"/v1/tasks/{scene['task']['id']}", headers=admin)
    assert (task.json()["status"], task.json()["result"]) == ("done", "Demo on Thursday")
    follow_up = await module_crm.client.get(
        f"/v1/tasks/{result['follow_up_task_id']}", headers=admin
    )
    assert follow_up.json()["title"] == "Send the proposal"
    assert follow_up.json()["assignee_user_id"] == scene["agent_id"]
    assert follow_up.json()["contact_name"] == scene["contact"]["name"]
    assert dt.datetime.fromisoformat(follow_up.json()["due_at"]) == due

    # On the contact's timeline, and only once.
    timeline = await module_crm.client.get(
        f"/v1/contacts/{scene['contact']['id']}/calls", headers=admin
    )
    entry = next(item for item in timeline.json()["items"] if item["call_id"] == call_id)
    assert entry["result"]["outcome"] == "Demo on Thursday"
    again = await module_crm.client.post(
        f"/v1/calls/{call_id}/result", json={"outcome": "Again"}, headers=agent
    )
    assert again.status_code == 409
    assert again.json()["error_id"] == "call-result-exists"


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        # The deal move is valid; the task close is refused after it.
        ({"close_task_id": "other-task"}, 403, None),
        ({"close_task_id": str(uuid.UUID(int=7))}, 404, "body.close_task_id"),
        ({"checked": [0, 3]}, 422, "body.checked[1]"),
        ({"move_deal": "to-lost"}, 422, "body.move_deal.loss_reason"),
        ({"follow_up": {"title": "x", "due_at": "2026-12-08T10:00:00"}}, 422, "body.follow_up"),
    ],
)
async def test_a_refused_action_leaves_nothing_behind(
    module_crm: CrmHarness, change: dict[str, Any], status: int, field: str | None
) -> None:
    scene = await _scene(module_crm)
    admin, agent = scene["admin"], scene["agent"]
    body: dict[str, Any] = {
        "script_id": scene["script"]["id"],
        "checked": [0],
        "outcome": "Talked",
        "move_deal": {"deal_id": scene["deal"]["id"], "stage_id": scene["stages"]["Proposal"]},
        "follow_up": {"title": "Call again", "due_at": "2026-12-30T10:00:00+03:00"},
        **change,
    }
    if change.get("close_task_id") == "other-task":
        # A colleague's task on the same client: an agent may not close it.
        _, colleague = await crm_user(module_crm, scene["tenant"], Role.AGENT)
        other = await module_crm.client.post(
            "/v1/tasks",
            json={"title": "Colleague's", "contact_id": scene["contact"]["id"]},
            headers=colleague,
        )
        body["close_task_id"] = other.json()["id"]
    if change.get("move_deal") == "to-lost":
        body["move_deal"] = {"deal_id": scene["deal"]["id"], "stage_id": scene["stages"]["Lost"]}
    answer = await module_crm.client.post(
        f"/v1/calls/{scene['call_id']}/result", json=body, headers=agent
    )
    assert answer.status_code == status, answer.text
    if field is not None:
        fields = [detail["field"] for detail in answer.json()["details"]]
        assert any(name.startswith(field) for name in fields), fields

    read = await module_crm.client.get(f"/v1/calls/{scene['call_id']}", headers=admin)
    assert read.json()["result"] is None
    deal = await module_crm.client.get(f"/v1/deals/{scene['deal']['id']}", headers=admin)
    assert deal.json()["stage_id"] == scene["deal"]["stage_id"]
    follow_ups = await module_crm.client.get(
        "/v1/tasks", params={"kind": "follow-up", "call_id": scene["call_id"]}, headers=admin
    )
    assert follow_ups.json()["total"] == 0
    task = await module_crm.client.get(f"/v1/tasks/{scene['task']['id']}", headers=admin)
    assert task.json()["status"] == "open"


async def test_a_colleague_cannot_file_the_result_of_a_call_they_had_no_part_in(
    module_crm: CrmHarness,
) -> None:
    scene = await _scene(module_crm)
    _, colleague = await crm_user(module_crm, scene["tenant"], Role.AGENT)
    answer = await module_crm.client.post(
        f"/v1/calls/{scene['call_id']}/result", json={"outcome": "Mine"}, headers=colleague
    )
    assert answer.status_code == 404
    unknown = await module_crm.client.post(
        "/v1/calls/nope@test/result", json={"outcome": "x"}, headers=scene["admin"]
    )
    assert unknown.status_code == 404
    empty = await module_crm.client.post(
        f"/v1/calls/{scene['call_id']}/result", json={"outcome": "  "}, headers=scene["agent"]
    )
    assert empty.status_code == 422
    assert empty.json()["details"][0]["field"] == "body.outcome"


async def test_the_task_list_names_each_tasks_contact(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    first = await contact(module_crm, admin, name="Ирина Кузнецова")
    for title, contact_id in (("Call", first["id"]), ("Nobody's", None)):
        created = await module_crm.client.post(
            "/v1/tasks", json={"title": title, "contact_id": contact_id}, headers=admin
        )
        assert created.status_code == 201
    listed = await module_crm.client.get("/v1/tasks", headers=admin)
    names = {item["title"]: item["contact_name"] for item in listed.json()["items"]}
    assert names == {"Call": "Ирина Кузнецова", "Nobody's": None}

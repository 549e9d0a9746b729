"""Tenant isolation and access policy over every CRM route.

Tenant A gets one object of every kind; tenant B (a logged-in admin, and an API key) calls
every route that takes an id with A's ids and must get 404, and every list of B shows
none of A's objects. The routes are enumerated from the app: a new route is covered, or
this test fails because it does not know which id to put in it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from tests.services.control_api import bearer
from tests.services.crm import CrmHarness, crm_tenant

from vpbx_common.events import CallEvent, CallEventPublisher, CallEventType
from vpbx_control.auth.principal import PUBLIC as PUBLIC_POLICY
from vpbx_control.auth.principal import Role
from vpbx_control.deps import route_policy
from vpbx_crm.app import create_app
from vpbx_crm.settings import CrmSettings
from vpbx_crm.web.static import WorkspaceRoute

ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

NOT_TENANT_SCOPED = ("/internal/",)
PUBLIC = {"/healthz", "/readyz", "/config.json"}
# FastAPI's own pages of the API's documentation: no data.
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

# Lists that answer only with a filter: path -> the filter (an id) to pass.
FILTERED_LISTS = {("/v1/notes", "GET"): "contact_id"}

# A body that would be accepted, so that the answer is about the id, not the body.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/contacts/{contact_id}"): {"vip": True},
    ("PATCH", "/v1/companies/{company_id}"): {"website": "stolen.example"},
    ("PATCH", "/v1/pipelines/{pipeline_id}"): {"name": "Stolen"},
    ("PATCH", "/v1/deals/{deal_id}"): {"title": "Stolen"},
    ("PATCH", "/v1/notes/{note_id}"): {"text": "Stolen"},
    ("PATCH", "/v1/tasks/{task_id}"): {"status": "done"},
    ("PATCH", "/v1/call-scripts/{script_id}"): {"name": "Stolen"},
    ("POST", "/v1/calls/{call_id}/result"): {"outcome": "Stolen"},
}


def _routes() -> list[APIRoute]:
    app = create_app(CrmSettings(mode="local"), migrate=False)
    return [route for route in app.routes if isinstance(route, APIRoute)]


def test_every_route_declares_an_access_policy_and_only_probes_are_public() -> None:
    for route in _routes():
        policy = route_policy(route)
        assert policy is not None, f"{route.path} declares no access policy"
        assert policy.public == (route.path in PUBLIC), route.path
        assert policy.public or policy.roles or policy.node, f"{route.path} is closed to all"


def test_every_other_route_is_the_api_docs_or_the_public_workspace() -> None:
    """Routes that are not APIRoutes carry no dependencies the test above could read: the
    workspace (the built web app, no data) declares its policy itself."""
    app = create_app(CrmSettings(mode="local"), migrate=False)
    others = [route for route in app.routes if not isinstance(route, APIRoute)]
    workspace = [route for route in others if isinstance(route, WorkspaceRoute)]
    assert len(workspace) == 1
    assert workspace[0].policy == PUBLIC_POLICY
    assert app.routes[-1] is workspace[0], "the workspace must come after every API route"
    # The live WebSocket reads its credential from the first message, not a dependency
    # (tests/test_live.py: a bad one closes it 4401, an agent's API key 4403).
    sockets = [route for route in others if isinstance(route, APIWebSocketRoute)]
    assert [route.path for route in sockets] == ["/v1/live"]
    for route in others:
        if route is not workspace[0] and route not in sockets:
            assert getattr(route, "path", None) in DOCS, route


async def _seed(crm: CrmHarness, tenant: str, name: str) -> dict[str, str]:
    """One object of every kind in ``tenant``; path parameter -> id."""
    admin = await crm.as_role(tenant)
    contact = await crm.client.post(
        "/v1/contacts", json={"name": name, "phones": ["+79160001122"]}, headers=admin
    )
    assert contact.status_code == 201, contact.text
    task = await crm.client.post(
        "/v1/tasks",
        json={"title": "Secret task", "contact_id": contact.json()["id"]},
        headers=admin,
    )
    assert task.status_code == 201, task.text
    client = crm.context.redis
    assert client is not None
    await CallEventPublisher(client).publish(
        CallEvent(
            type=CallEventType.ENDED,
            call_id=f"{tenant}-secret-call",
            tenant=tenant,
            city="msk",
            node="n",
            number="+74950000001",
            caller="+79160001122",
            callee="101",
            at_ms=int(time.time() * 1000),
            end_reason="no-answer",
        )
    )
    deadline = time.monotonic() + 10
    notification_ids: list[str] = []
    while time.monotonic() < deadline:
        listed = await crm.client.get(f"/v1/calls/{tenant}-secret-call", headers=admin)
        if listed.status_code == 200:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the CRM never read the call")
    olga = await crm.control.add_user(tenant, name="Olga", password="olga-pw-9")
    await crm.client.patch(
        f"/v1/tasks/{task.json()['id']}", json={"assignee_user_id": str(olga.id)}, headers=admin
    )
    olga_headers = await crm.control.login(olga.email, "olga-pw-9")
    notes = await crm.client.get("/v1/notifications", headers=olga_headers)
    notification_ids = [item["id"] for item in notes.json()["items"]]
    assert notification_ids
    company = await crm.client.post("/v1/companies", json={"name": f"{name} Ltd"}, headers=admin)
    assert company.status_code == 201, company.text
    deal = await crm.client.post(
        "/v1/deals",
        json={"title": f"{name} deal", "contact_id": contact.json()["id"], "amount": "100"},
        headers=admin,
    )
    assert deal.status_code == 201, deal.text
    note = await crm.client.post(
        "/v1/notes",
        json={"contact_id": contact.json()["id"], "text": f"{name} note"},
        headers=admin,
    )
    assert note.status_code == 201, note.text
    script = await crm.client.post(
        "/v1/call-scripts",
        json={"name": f"{name} script", "numbers": ["+74950000001"], "stages": ["Hello"]},
        headers=admin,
    )
    assert script.status_code == 201, script.text
    return {
        "script_id": script.json()["id"],
        "company_id": company.json()["id"],
        "pipeline_id": deal.json()["pipeline_id"],
        "deal_id": deal.json()["id"],
        "note_id": note.json()["id"],
        "contact_id": contact.json()["id"],
        "task_id": task.json()["id"],
        "call_id": f"{tenant}-secret-call",
        "notification_id": notification_ids[0],
    }


@ON_MODULE_LOOP
async def test_another_tenants_objects_are_404_on_every_route(module_crm: CrmHarness) -> None:
    owner = await crm_tenant(module_crm, "iso")
    intruder = await crm_tenant(module_crm, "iso")
    ids = await _seed(module_crm, owner, "Secret client")
    await _seed(
        module_crm, intruder, "Own client"
    )  # the intruder's lists are not empty, just not the owner's
    for headers in (
        await module_crm.as_role(intruder),
        await module_crm.control.api_key(intruder, Role.TENANT_ADMIN),
    ):
        checked = 0
        for route in _routes():
            if route.path.startswith(NOT_TENANT_SCOPED) or route.path in PUBLIC:
                continue
            names = [name.split(":")[0] for name in route.param_convertors]
            unknown = [name for name in names if name not in ids]
            assert not unknown, f"{route.path}: no id known for {unknown}; extend _seed"
            path = route.path
            for name in route.param_convertors:
                path = path.replace("{" + name + "}", ids[name.split(":")[0]])
            for method in sorted(route.methods):
                response = await module_crm.client.request(
                    method, path, json=BODIES.get((method, route.path)), headers=headers
                )
                if names:
                    assert response.status_code == 404, (method, route.path, response.text)
                    checked += 1
                elif method == "GET":
                    allowed = {200}
                    if (route.path, method) in FILTERED_LISTS:
                        # A list that needs a filter, given the owner's id as the filter.
                        name = FILTERED_LISTS[(route.path, method)]
                        response = await module_crm.client.get(
                            path, params={name: ids[name]}, headers=headers
                        )
                        allowed = {200, 404}
                    assert response.status_code in allowed, (route.path, response.text)
                    for value in ids.values():
                        assert value not in response.text, (route.path, value)
                    assert "Secret client" not in response.text
                    checked += 1
        assert checked >= 8


@ON_MODULE_LOOP
async def test_people_cannot_call_the_nodes_lookup_nor_nodes_the_peoples_routes(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm, "iso")
    agent = await module_crm.as_role(tenant, Role.AGENT)
    lookup = f"/internal/v1/lookup/{tenant}"
    as_agent = await module_crm.client.get(lookup, params={"phone": "+79160001122"}, headers=agent)
    assert as_agent.status_code == 403
    as_node = await module_crm.client.get("/v1/contacts", headers=module_crm.node)
    assert as_node.status_code == 403
    nobody = await module_crm.client.get("/v1/contacts", headers=bearer("vpbx_nonsense"))
    assert nobody.status_code == 401

"""/v1/groups: members in order with weights, strategies, overflow, references and isolation."""

from __future__ import annotations

import uuid
from typing import Any

from tests.services.control_api import ApiHarness

from vpbx_common.agents import AgentStateStore
from vpbx_common.manifests import PLATFORM_API_VERSION, Number
from vpbx_control.auth.principal import Role


def _fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


async def _acme(api: ApiHarness) -> tuple[dict[str, str], list[str]]:
    """Tenant acme with its admin's headers and three users with extensions 101..103."""
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    users = [
        await api.add_user("acme", extension=f"10{index}", name=f"Agent {index}")
        for index in (1, 2, 3)
    ]
    return admin, [str(user.id) for user in users]


async def _add_number(api: ApiHarness, tenant: str, number: str, entry: str) -> None:
    await api.context.numbers.create_number(
        Number.model_validate(
            {
                "apiVersion": PLATFORM_API_VERSION,
                "kind": "Number",
                "metadata": {"name": f"{tenant}-{number.lstrip('+')}"},
                "spec": {"number": number, "tenant": tenant, "city": "msk", "entry": entry},
            }
        )
    )


async def test_create_read_update_delete(api: ApiHarness) -> None:
    admin, (ann, bob, cid) = await _acme(api)
    created = await api.client.post(
        "/v1/groups",
        json={
            "name": "support",
            "strategy": "escalating",
            "ring_timeout_s": 40,
            "escalation_interval_s": 5,
            "overflow": {"type": "voicemail", "user_id": None},
            "members": [{"user_id": bob, "weight": 3}, {"user_id": ann}],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    group = created.json()
    assert created.headers["Location"] == f"/v1/groups/{group['id']}"
    assert group["strategy"] == "escalating"
    assert group["escalation_interval_s"] == 5
    assert group["overflow"] == {"type": "voicemail", "user_id": None}
    assert group["members"] == [
        {
            "user_id": bob,
            "number": None,
            "extension": "102",
            "name": "Agent 2",
            "weight": 3,
            "position": 0,
        },
        {
            "user_id": ann,
            "number": None,
            "extension": "101",
            "name": "Agent 1",
            "weight": 1,
            "position": 1,
        },
    ]

    read = await api.client.get(f"/v1/groups/{group['id']}", headers=admin)
    assert read.status_code == 200
    assert read.json() == group
    etag = read.headers["ETag"]

    # Members given: the list is replaced, in the new order; the rest stays.
    changed = await api.client.patch(
        f"/v1/groups/{group['id']}",
        json={"strategy": "sequential", "members": [{"user_id": cid}, {"user_id": bob}]},
        headers={**admin, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["strategy"] == "sequential"
    assert [(m["extension"], m["position"]) for m in changed.json()["members"]] == [
        ("103", 0),
        ("102", 1),
    ]
    assert changed.json()["ring_timeout_s"] == 40
    assert changed.headers["ETag"] != etag

    # Members not given: they stay; overflow null removes the overflow.
    cleared = await api.client.patch(
        f"/v1/groups/{group['id']}", json={"overflow": None}, headers=admin
    )
    assert cleared.json()["overflow"] is None
    assert len(cleared.json()["members"]) == 2

    stale = await api.client.patch(
        f"/v1/groups/{group['id']}",
        json={"ring_timeout_s": 20},
        headers={**admin, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.json()["error_id"] == "precondition-failed"
    stale_delete = await api.client.delete(
        f"/v1/groups/{group['id']}", headers={**admin, "If-Match": etag}
    )
    assert stale_delete.status_code == 412

    deleted = await api.client.delete(f"/v1/groups/{group['id']}", headers=admin)
    assert deleted.status_code == 204
    assert (await api.client.get(f"/v1/groups/{group['id']}", headers=admin)).status_code == 404


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    admin, (ann, _, _) = await _acme(api)
    valid: dict[str, Any] = {"name": "sales", "members": [{"user_id": ann}]}
    cases = [
        ({**valid, "name": "Sales"}, "body.name"),
        ({**valid, "name": "1st-line"}, "body.name"),
        ({**valid, "name": "x" * 64}, "body.name"),
        ({**valid, "strategy": "random"}, "body.strategy"),
        ({**valid, "ring_timeout_s": 4}, "body.ring_timeout_s"),
        ({**valid, "ring_timeout_s": 601}, "body.ring_timeout_s"),
        ({**valid, "escalation_interval_s": 1}, "body.escalation_interval_s"),
        ({**valid, "members": [{"user_id": ann, "weight": 0}]}, "body.members[0].weight"),
        ({**valid, "members": [{"user_id": ann, "weight": 101}]}, "body.members[0].weight"),
        ({**valid, "members": [{"user_id": "not-an-id"}]}, "body.members[0].user_id"),
        (
            {**valid, "overflow": {"type": "external", "number": "12"}},
            "body.overflow.external.number",
        ),
        ({**valid, "colour": "red"}, "body.colour"),
    ]
    for body, field in cases:
        response = await api.client.post("/v1/groups", json=body, headers=admin)
        assert response.status_code == 422, body
        assert response.json()["error_id"] == "validation-failed"
        assert field in _fields(response), (body, response.json())

    twice = await api.client.post(
        "/v1/groups",
        json={"name": "sales", "members": [{"user_id": ann}, {"user_id": ann, "weight": 2}]},
        headers=admin,
    )
    assert twice.status_code == 422
    assert _fields(twice) == ["body.members[1].user_id"]

    no_extension = await api.add_user("acme", extension=None)
    refused = await api.client.post(
        "/v1/groups",
        json={"name": "sales", "members": [{"user_id": ann}, {"user_id": str(no_extension.id)}]},
        headers=admin,
    )
    assert refused.status_code == 422
    assert refused.json()["error_id"] == "member-without-extension"
    assert _fields(refused) == ["body.members[1].user_id"]

    # Nothing of the refused requests was stored.
    assert (await api.client.get("/v1/groups", headers=admin)).json()["total"] == 0


async def test_names_are_unique_within_a_tenant(api: ApiHarness) -> None:
    admin, _ = await _acme(api)
    await api.add_tenant("globex")
    globex = await api.as_role("globex")
    assert (
        await api.client.post("/v1/groups", json={"name": "sales"}, headers=admin)
    ).status_code == 201
    again = await api.client.post("/v1/groups", json={"name": "sales"}, headers=admin)
    assert again.status_code == 409
    assert again.json()["error_id"] == "group-name-taken"
    other = (await api.client.post("/v1/groups", json={"name": "other"}, headers=admin)).json()
    renamed = await api.client.patch(
        f"/v1/groups/{other['id']}", json={"name": "sales"}, headers=admin
    )
    assert renamed.status_code == 409
    assert (
        await api.client.post("/v1/groups", json={"name": "sales"}, headers=globex)
    ).status_code == 201


async def test_references_to_another_tenant_are_not_found(api: ApiHarness) -> None:
    admin, (ann, _, _) = await _acme(api)
    await api.add_tenant("globex")
    globex_user = await api.add_user("globex", extension="101")
    globex_admin = await api.as_role("globex")
    globex_group = (
        await api.client.post("/v1/groups", json={"name": "sales"}, headers=globex_admin)
    ).json()

    cases = [
        (
            {"name": "a", "members": [{"user_id": ann}, {"user_id": str(globex_user.id)}]},
            "body.members[1].user_id",
        ),
        (
            {"name": "a", "overflow": {"type": "group", "group_id": globex_group["id"]}},
            "body.overflow.group_id",
        ),
        (
            {"name": "a", "overflow": {"type": "user", "user_id": str(globex_user.id)}},
            "body.overflow.user_id",
        ),
        (
            {"name": "a", "overflow": {"type": "route-plan", "route_plan_id": str(uuid.uuid4())}},
            "body.overflow.route_plan_id",
        ),
    ]
    for body, field in cases:
        response = await api.client.post("/v1/groups", json=body, headers=admin)
        assert response.status_code == 404, body
        assert response.json()["error_id"] == "reference-not-found"
        assert _fields(response) == [field]

    # The other tenant's group itself: not found by id, not listed.
    globex_key = await api.api_key("globex")
    acme_key = await api.api_key("acme")
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.client.request(
            method,
            f"/v1/groups/{globex_group['id']}",
            json={"ring_timeout_s": 10} if method == "PATCH" else None,
            headers=acme_key,
        )
        assert response.status_code == 404, method
    assert (await api.client.get("/v1/groups", headers=acme_key)).json()["total"] == 0
    assert (await api.client.get("/v1/groups", headers=globex_key)).json()["total"] == 1


async def test_agents_list_groups_but_do_not_manage_them(api: ApiHarness) -> None:
    admin, (ann, _, _) = await _acme(api)
    group = (await api.client.post("/v1/groups", json={"name": "sales"}, headers=admin)).json()
    for role in (Role.AGENT, Role.SUPERVISOR):
        headers = await api.as_role("acme", role)
        listed = await api.client.get("/v1/groups", headers=headers)
        assert listed.status_code == 200
        assert [item["name"] for item in listed.json()["items"]] == ["sales"]
        read = await api.client.get(f"/v1/groups/{group['id']}", headers=headers)
        assert read.status_code == 200
        attempts = [
            ("POST", "/v1/groups", {"name": "mine"}),
            ("PATCH", f"/v1/groups/{group['id']}", {"members": [{"user_id": ann}]}),
            ("DELETE", f"/v1/groups/{group['id']}", None),
        ]
        for method, url, body in attempts:
            response = await api.client.request(method, url, json=body, headers=headers)
            assert response.status_code == 403, (role, method)
            assert response.json()["error_id"] == "forbidden"
    unchanged = await api.client.get(f"/v1/groups/{group['id']}", headers=admin)
    assert unchanged.json()["members"] == []


async def test_filters_and_pagination(api: ApiHarness) -> None:
    admin, (ann, bob, _) = await _acme(api)
    bodies: list[dict[str, Any]] = [
        {"name": "sales-msk", "strategy": "round-robin", "members": [{"user_id": ann}]},
        {"name": "sales-spb", "strategy": "ring-all", "members": [{"user_id": bob}]},
        {"name": "support", "strategy": "by-rank", "members": [{"user_id": ann}]},
        {"name": "vip", "strategy": "least-recently-called"},
    ]
    for body in bodies:
        assert (await api.client.post("/v1/groups", json=body, headers=admin)).status_code == 201

    async def names(**params: Any) -> list[str]:
        response = await api.client.get("/v1/groups", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names(name="SALES") == ["sales-msk", "sales-spb"]
    assert await names(strategy="by-rank") == ["support"]
    assert await names(member_user_id=ann) == ["sales-msk", "support"]
    assert await names(member_user_id=ann, name="sup") == ["support"]
    assert await names(member_user_id=str(uuid.uuid4())) == []

    page = (await api.client.get("/v1/groups?limit=2&offset=1", headers=admin)).json()
    assert [item["name"] for item in page["items"]] == ["sales-spb", "support"]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert page["items"][0]["members"][0]["extension"] == "102"

    bad = await api.client.get("/v1/groups", params={"strategy": "random"}, headers=admin)
    assert bad.status_code == 422
    assert _fields(bad) == ["query.strategy"]


async def test_a_group_in_use_is_not_deleted(api: ApiHarness) -> None:
    admin, _ = await _acme(api)
    night = (await api.client.post("/v1/groups", json={"name": "night"}, headers=admin)).json()
    day = (
        await api.client.post(
            "/v1/groups",
            json={"name": "day", "overflow": {"type": "group", "group_id": night["id"]}},
            headers=admin,
        )
    ).json()
    refused = await api.client.delete(f"/v1/groups/{night['id']}", headers=admin)
    assert refused.status_code == 409
    assert "group 'day'" in refused.json()["message"]

    # A number whose entry is the group, by id or by name.
    await _add_number(api, "acme", "+74951234567", f"group:{day['id']}")
    await _add_number(api, "acme", "+74951234568", "night")
    by_id = await api.client.delete(f"/v1/groups/{day['id']}", headers=admin)
    assert by_id.status_code == 409
    assert by_id.json()["error_id"] == "group-used-by-number"
    assert "+74951234567" in by_id.json()["message"]
    # Renaming keeps numbers that enter by id; one entering by name would be cut off.
    renamed = await api.client.patch(
        f"/v1/groups/{day['id']}", json={"name": "daytime"}, headers=admin
    )
    assert renamed.status_code == 200
    by_name = await api.client.patch(
        f"/v1/groups/{night['id']}", json={"name": "evening"}, headers=admin
    )
    assert by_name.status_code == 409
    assert by_name.json()["error_id"] == "group-used-by-number"


async def test_a_group_does_not_overflow_to_itself(api: ApiHarness) -> None:
    admin, _ = await _acme(api)
    group = (await api.client.post("/v1/groups", json={"name": "sales"}, headers=admin)).json()
    response = await api.client.patch(
        f"/v1/groups/{group['id']}",
        json={"overflow": {"type": "group", "group_id": group["id"]}},
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["error_id"] == "route-cycle"
    assert _fields(response) == ["body.overflow.group_id"]
    assert "group sales -> group sales" in response.json()["message"]


async def test_round_robin_shows_who_the_nodes_rang_last_while_they_are_a_member(
    api: ApiHarness,
) -> None:
    admin, (ann, bob, _) = await _acme(api)
    group = (
        await api.client.post(
            "/v1/groups",
            json={
                "name": "sales",
                "strategy": "round-robin",
                "members": [{"user_id": ann}, {"user_id": bob}],
            },
            headers=admin,
        )
    ).json()
    assert group["last_member_id"] is None
    # The media nodes keep who rang last in their shared agent state.
    assert api.context.redis is not None
    await AgentStateStore(api.context.redis).remember_last_member("acme", "sales", "102")
    kept = await api.client.patch(
        f"/v1/groups/{group['id']}",
        json={"members": [{"user_id": bob}, {"user_id": ann}]},
        headers=admin,
    )
    assert kept.json()["last_member_id"] == bob
    listed = await api.client.get("/v1/groups", headers=admin)
    assert listed.json()["items"][0]["last_member_id"] == bob
    removed = await api.client.patch(
        f"/v1/groups/{group['id']}", json={"members": [{"user_id": ann}]}, headers=admin
    )
    assert removed.json()["last_member_id"] is None


async def test_a_number_outside_is_a_member_rung_in_its_place(api: ApiHarness) -> None:
    admin, (ann, bob, _) = await _acme(api)
    created = await api.client.post(
        "/v1/groups",
        json={
            "name": "night",
            "strategy": "sequential",
            "members": [{"user_id": ann}, {"number": "+79161234567"}, {"user_id": bob}],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    members = created.json()["members"]
    assert [(m["user_id"], m["number"], m["extension"], m["name"]) for m in members] == [
        (ann, None, "101", "Agent 1"),
        (None, "+79161234567", None, "+79161234567"),
        (bob, None, "102", "Agent 2"),
    ]
    config = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    [night] = [group for group in config.json()["groups"] if group["name"] == "night"]
    assert night["members"] == ["101", "+79161234567", "102"]

    group_url = f"/v1/groups/{created.json()['id']}"
    both = await api.client.patch(
        group_url, json={"members": [{"user_id": ann, "number": "+79161234567"}]}, headers=admin
    )
    neither = await api.client.patch(group_url, json={"members": [{"weight": 2}]}, headers=admin)
    twice = await api.client.patch(
        group_url,
        json={"members": [{"number": "+79161234567"}, {"number": "+79161234567"}]},
        headers=admin,
    )
    not_a_number = await api.client.patch(
        group_url, json={"members": [{"number": "call me"}]}, headers=admin
    )
    assert both.status_code == neither.status_code == 422
    assert _fields(both) == ["body.members[0]"]
    assert twice.status_code == 422
    assert _fields(twice) == ["body.members[1].number"]
    assert not_a_number.status_code == 422
    assert _fields(not_a_number) == ["body.members[0].number"]
    unchanged = await api.client.get(group_url, headers=admin)
    assert [m["number"] for m in unchanged.json()["members"]] == [None, "+79161234567", None]

"""/v1/route-plans: step chains, references in the tenant, unreachable steps and route cycles.

The routing graph (routeplans/graph.py) is tested on its own first, without a database.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import update
from tests.services.control_api import ApiHarness

from vpbx_common.manifests import PLATFORM_API_VERSION, Number
from vpbx_common.nodeconfig import GroupTarget, NodeConfig
from vpbx_common.nodeconfig.steps import CrmLookupStep as CompiledCrmLookupStep
from vpbx_control.auth.principal import Role
from vpbx_control.ivr.models import IvrMenuRow
from vpbx_control.routeplans.errors import RouteCycle
from vpbx_control.routeplans.graph import (
    Edge,
    NodeKind,
    NodeRef,
    ProposedChange,
    RefKind,
    RouteGraph,
    group_edges,
    ivr_menu_edges,
    route_plan_edges,
    step_references,
)
from vpbx_control.routeplans.models import RoutePlanRow
from vpbx_control.routeplans.service import refuse_cycles

# --- the graph, without a database ---------------------------------------------------


def _node(kind: NodeKind) -> NodeRef:
    return NodeRef(kind, uuid.uuid4())


def _to(node: NodeRef) -> dict[str, str]:
    key = {
        NodeKind.ROUTE_PLAN: "route_plan_id",
        NodeKind.GROUP: "group_id",
        NodeKind.IVR_MENU: "ivr_menu_id",
    }[node.kind]
    kind = "ivr" if node.kind is NodeKind.IVR_MENU else node.kind.value
    return {"type": kind, key: str(node.id)}


def test_references_are_found_with_their_field_paths() -> None:
    group, plan, user, schedule, menu = (uuid.uuid4() for _ in range(5))
    steps = [
        {"type": "crm-lookup", "categories": {"client": {"type": "user", "user_id": str(user)}}},
        {"type": "queue", "group_id": str(group)},
        {
            "type": "schedule",
            "schedule_id": str(schedule),
            "branches": {
                "open": [{"type": "ivr", "ivr_menu_id": str(menu)}],
                "closed": [
                    {"type": "voicemail", "user_id": None},
                ],
            },
        },
        {
            "type": "http-decision",
            "url": "https://crm.example.com/route",
            "fallback": {"type": "route-plan", "route_plan_id": str(plan)},
        },
    ]
    found = [(ref.kind, ref.id, ref.field) for ref in step_references(steps, "body.steps")]
    assert found == [
        (RefKind.USER, user, "body.steps[0].categories.client.user_id"),
        (RefKind.GROUP, group, "body.steps[1].group_id"),
        (RefKind.SCHEDULE, schedule, "body.steps[2].schedule_id"),
        (RefKind.IVR_MENU, menu, "body.steps[2].branches.open[0].ivr_menu_id"),
        (RefKind.ROUTE_PLAN, plan, "body.steps[3].fallback.route_plan_id"),
    ]
    # Only plans, groups and menus are nodes of the graph.
    assert [edge.field for edge in route_plan_edges(steps)] == [
        "body.steps[1].group_id",
        "body.steps[2].branches.open[0].ivr_menu_id",
        "body.steps[3].fallback.route_plan_id",
    ]


def test_a_plan_routing_to_itself_is_a_cycle() -> None:
    sales = _node(NodeKind.ROUTE_PLAN)
    graph = RouteGraph()
    graph.add(sales, "sales", ())
    change = ProposedChange(
        sales, "sales", route_plan_edges([{"type": "route-plan", "route_plan_id": str(sales.id)}])
    )
    cycle = graph.cycle_after(change)
    assert cycle is not None
    assert str(cycle) == "sales -> sales"
    assert cycle.field == "body.steps[0].route_plan_id"


def test_the_shortest_cycle_through_the_change_is_reported() -> None:
    sales, night, weekend = (_node(NodeKind.ROUTE_PLAN) for _ in range(3))
    graph = RouteGraph()
    graph.add(sales, "sales", route_plan_edges([{"type": "hangup"}], "steps"))
    graph.add(night, "night", route_plan_edges([{"type": "route-plan", **_ids(weekend)}], "steps"))
    graph.add(
        weekend, "weekend", route_plan_edges([{"type": "route-plan", **_ids(sales)}], "steps")
    )
    # sales -> night -> weekend -> sales is long; sales -> weekend -> sales is shorter.
    steps: list[dict[str, Any]] = [
        {
            "type": "schedule",
            "schedule_id": str(uuid.uuid4()),
            "branches": {
                "open": [{"type": "route-plan", **_ids(night)}],
                "closed": [{"type": "route-plan", **_ids(weekend)}],
            },
        }
    ]
    cycle = graph.cycle_after(ProposedChange(sales, "sales", route_plan_edges(steps)))
    assert cycle is not None
    assert str(cycle) == "sales -> weekend -> sales"
    assert cycle.field == "body.steps[0].branches.closed[0].route_plan_id"
    # Without the closing edge there is none: the old graph is acyclic.
    assert graph.cycle_after(ProposedChange(sales, "sales", ())) is None


def _ids(node: NodeRef) -> dict[str, str]:
    return {key: value for key, value in _to(node).items() if key != "type"}


def test_cycles_through_groups_and_menus() -> None:
    sales = _node(NodeKind.ROUTE_PLAN)
    support = _node(NodeKind.GROUP)
    main = _node(NodeKind.IVR_MENU)
    graph = RouteGraph()
    graph.add(sales, "sales", route_plan_edges([{"type": "group", **_ids(support)}], "steps"))
    graph.add(support, "support", ())
    graph.add(main, "main", ())

    # A group whose overflow leads back through the plan that rings it.
    cycle = graph.cycle_after(ProposedChange(support, "support", group_edges(_to(sales))))
    assert cycle is not None
    assert str(cycle) == "group support -> sales -> group support"
    assert cycle.field == "body.overflow.route_plan_id"

    # An IVR menu whose timeout target goes to the plan that plays it.
    graph.add(sales, "sales", route_plan_edges([{"type": "ivr", **_ids(main)}], "steps"))
    cycle = graph.cycle_after(ProposedChange(main, "main", ivr_menu_edges({}, _to(sales), None)))
    assert cycle is not None
    assert str(cycle) == "IVR menu main -> sales -> IVR menu main"
    assert cycle.field == "body.timeout_target.route_plan_id"


def test_menus_may_lead_back_to_each_other() -> None:
    main, billing = _node(NodeKind.IVR_MENU), _node(NodeKind.IVR_MENU)
    graph = RouteGraph()
    graph.add(main, "main", ivr_menu_edges({"1": _to(billing)}, None, None))
    back = ivr_menu_edges({"9": _to(main), "0": {"type": "hangup"}}, None, _to(billing))
    assert graph.cycle_after(ProposedChange(billing, "billing", back)) is None
    # ... but not through a plan: main -> 1 -> billing -> 9 -> plan -> main.
    plan = _node(NodeKind.ROUTE_PLAN)
    graph.add(plan, "entry", route_plan_edges([{"type": "ivr", **_ids(main)}], "steps"))
    cycle = graph.cycle_after(
        ProposedChange(billing, "billing", ivr_menu_edges({"9": _to(plan)}, None, None))
    )
    assert cycle is not None
    assert str(cycle) == "IVR menu billing -> entry -> IVR menu main -> IVR menu billing"
    assert cycle.field == "body.options.9.route_plan_id"


def test_an_older_cycle_elsewhere_does_not_block_a_change() -> None:
    first, second, other = (_node(NodeKind.ROUTE_PLAN) for _ in range(3))
    graph = RouteGraph()
    graph.add(first, "first", [Edge(second, "steps[0].route_plan_id")])
    graph.add(second, "second", [Edge(first, "steps[0].route_plan_id")])
    change = ProposedChange(other, "other", (Edge(first, "body.steps[0].route_plan_id"),))
    assert graph.cycle_after(change) is None


# --- the API ---------------------------------------------------------------------------


def _fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


class Acme:
    """Tenant acme with an admin, two users, a schedule, a group and an IVR menu."""

    def __init__(self, api: ApiHarness) -> None:
        self.api = api

    async def setup(self) -> Acme:
        api = self.api
        await api.add_tenant("acme")
        self.admin = await api.as_role("acme")
        self.ann = str((await api.add_user("acme", extension="101")).id)
        self.bob = str((await api.add_user("acme", extension="102")).id)
        office = await api.client.post(
            "/v1/schedules",
            json={"name": "office", "time_zone": "Europe/Moscow", "weekly": []},
            headers=self.admin,
        )
        self.schedule = office.json()["id"]
        support = await api.client.post(
            "/v1/groups",
            json={"name": "support", "members": [{"user_id": self.ann}]},
            headers=self.admin,
        )
        self.group = support.json()["id"]
        self.menu = str(await add_menu(api, "acme", "main"))
        return self

    async def plan(self, name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        response = await self.api.client.post(
            "/v1/route-plans", json={"name": name, "steps": steps}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def change(self, plan_id: str, steps: list[dict[str, Any]]) -> Any:
        return await self.api.client.patch(
            f"/v1/route-plans/{plan_id}", json={"steps": steps}, headers=self.admin
        )


async def add_menu(
    api: ApiHarness, tenant: str, name: str, options: dict[str, Any] | None = None
) -> uuid.UUID:
    """An IVR menu written straight into the database (its endpoints are another resource)."""
    row = IvrMenuRow(
        id=uuid.uuid4(),
        tenant_id=tenant,
        name=name,
        prompt={"kind": "tts", "text": "hello"},
        options=options or {},
        timeout_s=5,
        revision=1,
    )
    async with api.context.database.session() as session:
        session.add(row)
        await session.commit()
    return row.id


def _plan_step(plan: dict[str, Any]) -> dict[str, str]:
    return {"type": "route-plan", "route_plan_id": plan["id"]}


async def test_create_read_update_delete(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    steps: list[dict[str, Any]] = [
        {
            "type": "crm-lookup",
            "categories": {"supplier": {"type": "group", "group_id": acme.group}},
        },
        {
            "type": "schedule",
            "schedule_id": acme.schedule,
            "branches": {
                "open": [
                    {"type": "queue", "group_id": acme.group, "announce_position": True},
                    {"type": "user", "user_id": acme.bob, "ring_timeout_s": 15},
                ],
                "closed": [{"type": "voicemail", "user_id": acme.ann}],
            },
        },
        {"type": "group", "group_id": acme.group, "ring_timeout_s": 20},
        {
            "type": "http-decision",
            "url": "https://crm.example.com/route",
            "timeout_ms": 800,
            "fallback": {"type": "external", "number": "+7 (495) 123-45-67"},
        },
    ]
    created = await api.client.post(
        "/v1/route-plans", json={"name": "sales", "steps": steps}, headers=acme.admin
    )
    assert created.status_code == 201, created.text
    plan = created.json()
    assert created.headers["Location"] == f"/v1/route-plans/{plan['id']}"
    assert [step["type"] for step in plan["steps"]] == [
        "crm-lookup",
        "schedule",
        "group",
        "http-decision",
    ]
    assert plan["steps"][0]["to_responsible_manager"] is True  # the default
    assert plan["steps"][1]["branches"]["open"][0]["max_wait_s"] == 300
    assert plan["steps"][3]["fallback"] == {"type": "external", "number": "+74951234567"}

    read = await api.client.get(f"/v1/route-plans/{plan['id']}", headers=acme.admin)
    assert read.json() == plan
    etag = read.headers["ETag"]

    changed = await api.client.patch(
        f"/v1/route-plans/{plan['id']}",
        json={
            "name": "sales-new",
            "steps": [
                {"type": "ivr", "ivr_menu_id": acme.menu},
            ],
        },
        headers={**acme.admin, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "sales-new"
    assert changed.json()["steps"] == [{"type": "ivr", "ivr_menu_id": acme.menu}]
    assert changed.headers["ETag"] != etag

    stale = await api.client.patch(
        f"/v1/route-plans/{plan['id']}",
        json={"name": "again"},
        headers={**acme.admin, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.json()["error_id"] == "precondition-failed"

    deleted = await api.client.delete(
        f"/v1/route-plans/{plan['id']}",
        headers={**acme.admin, "If-Match": changed.headers["ETag"]},
    )
    assert deleted.status_code == 204
    gone = await api.client.get(f"/v1/route-plans/{plan['id']}", headers=acme.admin)
    assert gone.status_code == 404


async def test_invalid_steps_name_the_field(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([{"type": "teleport"}], "body.steps[0]"),
        ([{"type": "forward", "number": "12"}], "body.steps[0].forward.number"),
        ([{"type": "hangup", "reason": "angry"}], "body.steps[0].hangup.reason"),
        (
            [{"type": "http-decision", "url": "ftp://x.example", "fallback": {"type": "hangup"}}],
            "body.steps[0].http-decision.url",
        ),
        (
            [
                {
                    "type": "http-decision",
                    "url": "https://crm.example.com/",
                    "timeout_ms": 50,
                    "fallback": {"type": "hangup"},
                }
            ],
            "body.steps[0].http-decision.timeout_ms",
        ),
        ([{"type": "queue", "group_id": acme.group, "max_wait_s": 0}], "body.steps[0].queue"),
        (
            [{"type": "crm-lookup", "categories": {"Bad Key!": {"type": "hangup"}}}],
            "body.steps[0].crm-lookup.categories",
        ),
        ([], "body.steps"),
    ]
    for steps, field in cases:
        response = await api.client.post(
            "/v1/route-plans", json={"name": "p", "steps": steps}, headers=acme.admin
        )
        assert response.status_code == 422, steps
        assert any(f.startswith(field) for f in _fields(response)), (steps, response.json())


async def test_the_crm_lookup_escalation_times_are_kept_and_reach_the_node(
    api: ApiHarness,
) -> None:
    acme = await Acme(api).setup()
    plan = await acme.plan(
        "known-clients",
        [
            {
                "type": "crm-lookup",
                "categories": {"supplier": {"type": "group", "group_id": acme.group}},
                "manager_timeout_s": 15,
                "group_timeout_s": 0,
                "everyone_timeout_s": 600,
            },
            {"type": "group", "group_id": acme.group},
        ],
    )
    lookup = plan["steps"][0]
    assert (lookup["manager_timeout_s"], lookup["group_timeout_s"]) == (15, 0)
    assert lookup["everyone_timeout_s"] == 600
    defaults = await acme.plan("defaults", [{"type": "crm-lookup"}])
    assert {
        name: defaults["steps"][0][name]
        for name in ("manager_timeout_s", "group_timeout_s", "everyone_timeout_s")
    } == {"manager_timeout_s": 20, "group_timeout_s": 20, "everyone_timeout_s": 0}

    response = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    assert response.status_code == 200, response.text
    config = NodeConfig.model_validate_json(response.content)
    compiled = {p.name: p.steps[0] for p in config.route_plans}
    step = compiled["known-clients"]
    assert isinstance(step, CompiledCrmLookupStep)
    assert (step.manager_timeout_s, step.group_timeout_s, step.everyone_timeout_s) == (15, 0, 600)
    assert step.categories == {"supplier": GroupTarget(name="support", group_id=acme.group)}
    default_step = compiled["defaults"]
    assert isinstance(default_step, CompiledCrmLookupStep)
    assert (default_step.manager_timeout_s, default_step.everyone_timeout_s) == (20, 0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"manager_timeout_s": 601}, "body.steps[0].crm-lookup.manager_timeout_s"),
        ({"group_timeout_s": -1}, "body.steps[0].crm-lookup.group_timeout_s"),
        ({"everyone_timeout_s": 601}, "body.steps[0].crm-lookup.everyone_timeout_s"),
        ({"everyone_timeout_s": "soon"}, "body.steps[0].crm-lookup.everyone_timeout_s"),
        ({"manager_timeout_s": 4}, "body.steps[0].crm-lookup.manager_timeout_s"),
        (
            {"to_responsible_manager": True, "manager_timeout_s": 0},
            "body.steps[0].crm-lookup.manager_timeout_s",
        ),
    ],
)
async def test_crm_lookup_times_out_of_range_are_422_naming_the_field(
    api: ApiHarness, fields: dict[str, Any], field: str
) -> None:
    acme = await Acme(api).setup()
    response = await api.client.post(
        "/v1/route-plans",
        json={"name": "p", "steps": [{"type": "crm-lookup", **fields}]},
        headers=acme.admin,
    )
    assert response.status_code == 422, response.text
    assert _fields(response) == [field]


async def test_a_lookup_not_ringing_the_manager_may_skip_the_manager_stage(
    api: ApiHarness,
) -> None:
    acme = await Acme(api).setup()
    plan = await acme.plan(
        "by-category",
        [{"type": "crm-lookup", "to_responsible_manager": False, "manager_timeout_s": 0}],
    )
    assert plan["steps"][0]["manager_timeout_s"] == 0


async def test_steps_after_the_end_of_the_call_are_refused(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([{"type": "hangup"}, {"type": "voicemail"}], "body.steps[1]"),
        (
            [{"type": "group", "group_id": acme.group}, {"type": "voicemail"}, {"type": "hangup"}],
            "body.steps[2]",
        ),
        (
            [
                {
                    "type": "schedule",
                    "schedule_id": acme.schedule,
                    "branches": {
                        "open": [],
                        "closed": [
                            {"type": "forward", "number": "+74951234567"},
                            {"type": "hangup"},
                        ],
                    },
                }
            ],
            "body.steps[0].branches.closed[1]",
        ),
        # Both branches end the call: the schedule step does too.
        (
            [
                {
                    "type": "schedule",
                    "schedule_id": acme.schedule,
                    "branches": {"open": [{"type": "hangup"}], "closed": [{"type": "voicemail"}]},
                },
                {"type": "hangup"},
            ],
            "body.steps[1]",
        ),
    ]
    for steps, field in cases:
        response = await api.client.post(
            "/v1/route-plans", json={"name": "p", "steps": steps}, headers=acme.admin
        )
        assert response.status_code == 422, steps
        assert response.json()["error_id"] == "unreachable-step"
        assert _fields(response) == [field]

    # Schedules nest, but not without end.
    nested: list[dict[str, Any]] = [{"type": "hangup"}]
    for _ in range(5):
        nested = [
            {
                "type": "schedule",
                "schedule_id": acme.schedule,
                "branches": {"open": nested, "closed": []},
            }
        ]
    too_deep = await api.client.post(
        "/v1/route-plans", json={"name": "p", "steps": nested}, headers=acme.admin
    )
    assert too_deep.status_code == 422
    assert _fields(too_deep) == ["body.steps[0]" + ".branches.open[0]" * 4 + ".branches.open"]
    await acme.plan("deep", nested[0]["branches"]["open"])

    # A branch that does not end the call goes on with the next step: that is fine.
    await acme.plan(
        "ok",
        [
            {
                "type": "schedule",
                "schedule_id": acme.schedule,
                "branches": {"open": [{"type": "group", "group_id": acme.group}], "closed": []},
            },
            {"type": "crm-lookup"},
            {"type": "hangup", "reason": "busy"},
        ],
    )


async def test_references_must_exist_in_the_tenant(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    await api.add_tenant("globex")
    globex = await api.as_role("globex")
    foreign_group = (
        await api.client.post("/v1/groups", json={"name": "support"}, headers=globex)
    ).json()["id"]
    foreign_menu = str(await add_menu(api, "globex", "main"))
    foreign_user = str((await api.add_user("globex", extension="101")).id)

    def branching(closed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"type": "crm-lookup"},
            {"type": "group", "group_id": acme.group},
            {
                "type": "schedule",
                "schedule_id": acme.schedule,
                "branches": {"open": [], "closed": closed},
            },
        ]

    cases: list[tuple[list[dict[str, Any]], str]] = [
        (
            branching([{"type": "group", "group_id": foreign_group}]),
            "body.steps[2].branches.closed[0].group_id",
        ),
        (
            branching([{"type": "ivr", "ivr_menu_id": foreign_menu}]),
            "body.steps[2].branches.closed[0].ivr_menu_id",
        ),
        (
            branching([{"type": "voicemail", "user_id": foreign_user}]),
            "body.steps[2].branches.closed[0].user_id",
        ),
        (
            [{"type": "schedule", "schedule_id": str(uuid.uuid4()), "branches": {}}],
            "body.steps[0].schedule_id",
        ),
        (
            [
                {
                    "type": "crm-lookup",
                    "categories": {
                        "client": {"type": "group", "group_id": acme.group},
                        "supplier": {"type": "group", "group_id": foreign_group},
                    },
                }
            ],
            "body.steps[0].categories.supplier.group_id",
        ),
        (
            [
                {
                    "type": "http-decision",
                    "url": "https://crm.example.com/",
                    "fallback": {"type": "route-plan", "route_plan_id": str(uuid.uuid4())},
                }
            ],
            "body.steps[0].fallback.route_plan_id",
        ),
        ([{"type": "queue", "group_id": foreign_group}], "body.steps[0].group_id"),
    ]
    for steps, field in cases:
        response = await api.client.post(
            "/v1/route-plans", json={"name": "p", "steps": steps}, headers=acme.admin
        )
        assert response.status_code == 404, steps
        assert response.json()["error_id"] == "reference-not-found"
        assert _fields(response) == [field]
    assert (await api.client.get("/v1/route-plans", headers=acme.admin)).json()["total"] == 0


async def test_another_tenants_plan_is_not_found(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    plan = await acme.plan("sales", [{"type": "hangup"}])
    await api.add_tenant("globex")
    globex_key = await api.api_key("globex")
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.client.request(
            method,
            f"/v1/route-plans/{plan['id']}",
            json={"name": "stolen"} if method == "PATCH" else None,
            headers=globex_key,
        )
        assert response.status_code == 404, method
    assert (await api.client.get("/v1/route-plans", headers=globex_key)).json()["total"] == 0
    # Nor can globex route into it.
    globex = await api.as_role("globex")
    response = await api.client.post(
        "/v1/route-plans",
        json={"name": "steal", "steps": [_plan_step(plan)]},
        headers=globex,
    )
    assert response.status_code == 404
    assert _fields(response) == ["body.steps[0].route_plan_id"]


async def test_agents_read_plans_but_do_not_change_them(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    plan = await acme.plan("sales", [{"type": "hangup"}])
    agent = await api.as_role("acme", Role.AGENT)
    assert (await api.client.get("/v1/route-plans", headers=agent)).json()["total"] == 1
    assert (await api.client.get(f"/v1/route-plans/{plan['id']}", headers=agent)).status_code == 200
    for method, url in (
        ("POST", "/v1/route-plans"),
        ("PATCH", f"/v1/route-plans/{plan['id']}"),
        ("DELETE", f"/v1/route-plans/{plan['id']}"),
    ):
        body = {"name": "x", "steps": [{"type": "hangup"}]} if method != "DELETE" else None
        response = await api.client.request(method, url, json=body, headers=agent)
        assert response.status_code == 403, method


async def test_cycles_are_refused_and_named(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    sales = await acme.plan("sales", [{"type": "hangup"}])

    # Directly.
    direct = await acme.change(sales["id"], [{"type": "crm-lookup"}, _plan_step(sales)])
    assert direct.status_code == 422
    assert direct.json()["error_id"] == "route-cycle"
    assert _fields(direct) == ["body.steps[1].route_plan_id"]
    assert "sales -> sales" in direct.json()["message"]

    # Through a second plan.
    night = await acme.plan("night", [_plan_step(sales)])
    indirect = await acme.change(
        sales["id"],
        [
            {
                "type": "schedule",
                "schedule_id": acme.schedule,
                "branches": {"open": [{"type": "hangup"}], "closed": [_plan_step(night)]},
            }
        ],
    )
    assert indirect.status_code == 422
    assert indirect.json()["error_id"] == "route-cycle"
    assert _fields(indirect) == ["body.steps[0].branches.closed[0].route_plan_id"]
    assert "sales -> night -> sales" in indirect.json()["message"]

    # Through a group's overflow, from either side.
    rings = await acme.change(sales["id"], [{"type": "group", "group_id": acme.group}])
    assert rings.status_code == 200
    overflow = await api.client.patch(
        f"/v1/groups/{acme.group}",
        json={"overflow": {"type": "route-plan", "route_plan_id": night["id"]}},
        headers=acme.admin,
    )
    assert overflow.status_code == 422
    assert overflow.json()["error_id"] == "route-cycle"
    assert _fields(overflow) == ["body.overflow.route_plan_id"]
    assert "group support -> night -> sales -> group support" in overflow.json()["message"]

    await acme.change(sales["id"], [{"type": "hangup"}])
    assert (
        await api.client.patch(
            f"/v1/groups/{acme.group}",
            json={"overflow": {"type": "route-plan", "route_plan_id": night["id"]}},
            headers=acme.admin,
        )
    ).status_code == 200
    via_group = await acme.change(
        sales["id"], [{"type": "queue", "group_id": acme.group, "max_wait_s": 60}]
    )
    assert via_group.status_code == 422
    assert "sales -> group support -> night -> sales" in via_group.json()["message"]

    # Through an IVR menu's option.
    menu = await add_menu(api, "acme", "welcome", {"0": _plan_step(sales)})
    via_menu = await acme.change(sales["id"], [{"type": "ivr", "ivr_menu_id": str(menu)}])
    assert via_menu.status_code == 422
    assert "sales -> IVR menu welcome -> sales" in via_menu.json()["message"]

    # Nothing refused was stored.
    stored = await api.client.get(f"/v1/route-plans/{sales['id']}", headers=acme.admin)
    assert stored.json()["steps"] == [{"type": "hangup", "reason": "normal"}]


async def test_a_plan_in_use_is_not_deleted(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    sales = await acme.plan("sales", [{"type": "hangup"}])
    night = await acme.plan("night", [{"type": "crm-lookup"}, _plan_step(sales)])
    refused = await api.client.delete(f"/v1/route-plans/{sales['id']}", headers=acme.admin)
    assert refused.status_code == 409
    assert "route plan 'night'" in refused.json()["message"]

    await api.context.numbers.create_number(
        Number.model_validate(
            {
                "apiVersion": PLATFORM_API_VERSION,
                "kind": "Number",
                "metadata": {"name": "acme-74951234567"},
                "spec": {
                    "number": "+74951234567",
                    "tenant": "acme",
                    "city": "msk",
                    "entry": f"route-plan:{night['id']}",
                },
            }
        )
    )
    entry = await api.client.delete(f"/v1/route-plans/{night['id']}", headers=acme.admin)
    assert entry.status_code == 409
    assert entry.json()["error_id"] == "route-plan-used-by-number"
    assert (await api.client.get("/v1/route-plans", headers=acme.admin)).json()["total"] == 2


async def test_filters_and_pagination(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    for name in ("sales day", "sales night", "support", "vip"):
        await acme.plan(name, [{"type": "hangup"}])
    listed = await api.client.get("/v1/route-plans", params={"name": "SALES"}, headers=acme.admin)
    assert [item["name"] for item in listed.json()["items"]] == ["sales day", "sales night"]
    page = (
        await api.client.get(
            "/v1/route-plans", params={"limit": 2, "offset": 2}, headers=acme.admin
        )
    ).json()
    assert [item["name"] for item in page["items"]] == ["support", "vip"]
    assert page["total"] == 4
    names_taken = await api.client.post(
        "/v1/route-plans", json={"name": "vip", "steps": [{"type": "hangup"}]}, headers=acme.admin
    )
    assert names_taken.status_code == 409
    assert names_taken.json()["error_id"] == "route-plan-name-taken"


async def test_two_admins_cannot_close_a_cycle_together(api: ApiHarness) -> None:
    """Each change alone is fine, both together loop: the second check waits for the first."""
    acme = await Acme(api).setup()
    first = await acme.plan("first", [{"type": "hangup"}])
    second = await acme.plan("second", [{"type": "hangup"}])
    first_id, second_id = uuid.UUID(first["id"]), uuid.UUID(second["id"])
    database = api.context.database
    async with database.session() as one, database.session() as two:
        steps = [_plan_step(second)]
        await refuse_cycles(
            one,
            "acme",
            ProposedChange(
                NodeRef(NodeKind.ROUTE_PLAN, first_id), "first", route_plan_edges(steps)
            ),
        )
        await one.execute(
            update(RoutePlanRow).where(RoutePlanRow.id == first_id).values(steps=steps)
        )
        back = ProposedChange(
            NodeRef(NodeKind.ROUTE_PLAN, second_id), "second", route_plan_edges([_plan_step(first)])
        )
        waiting = asyncio.create_task(refuse_cycles(two, "acme", back))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # held until the first change commits
        await one.commit()
        with pytest.raises(RouteCycle, match="second -> first -> second"):
            await waiting


async def test_outside_local_mode_http_decisions_must_call_the_internet(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    api.context.outbound.allow_private = False  # what VPBX_MODE=cluster gets by default

    def decision(url: str) -> dict[str, Any]:
        return {"type": "http-decision", "url": url, "fallback": {"type": "hangup"}}

    for url in ("http://10.0.0.7/route", "https://redis.vpbx.svc/", "http://127.0.0.1:8000/"):
        nested = [
            {
                "type": "schedule",
                "schedule_id": acme.schedule,
                "branches": {"open": [decision(url)], "closed": []},
            }
        ]
        refused = await api.client.post(
            "/v1/route-plans", json={"name": "inside", "steps": nested}, headers=acme.admin
        )
        assert refused.status_code == 422, (url, refused.text)
        assert [d["field"] for d in refused.json()["details"]] == [
            "body.steps[0].branches.open[0].url"
        ]
    allowed = await acme.plan("crm", [decision("https://crm.example.com/route")])
    assert allowed["steps"][0]["url"] == "https://crm.example.com/route"

    api.context.outbound.allow_private = True  # local mode: the CRM runs on the same machine
    local = await acme.plan("local-crm", [decision("http://127.0.0.1:8000/route")])
    assert local["steps"][0]["url"] == "http://127.0.0.1:8000/route"


async def test_queue_announcements_exit_digit_and_length_reach_the_nodes(api: ApiHarness) -> None:
    acme = await Acme(api).setup()
    plan = await acme.plan(
        "queued",
        [
            {
                "type": "queue",
                "group_id": acme.group,
                "announce_position": True,
                "announce_every_s": 45,
                "exit_digit": "#",
                "max_length": 5,
            },
            {"type": "user", "user_id": acme.bob},
        ],
    )
    queue = plan["steps"][0]
    assert (queue["announce_every_s"], queue["exit_digit"], queue["max_length"]) == (45, "#", 5)
    defaults = await acme.plan("plain", [{"type": "queue", "group_id": acme.group}])
    step = defaults["steps"][0]
    assert (step["announce_every_s"], step["exit_digit"], step["max_length"]) == (30, None, None)

    response = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    compiled = {p["name"]: p for p in response.json()["route_plans"]}
    node_step = compiled["queued"]["steps"][0]
    assert node_step["announce_position"] is True
    assert (node_step["announce_every_s"], node_step["exit_digit"], node_step["max_length"]) == (
        45,
        "#",
        5,
    )
    plain = compiled["plain"]["steps"][0]
    assert (plain["exit_digit"], plain["max_length"]) == (None, None)
    assert response.json()["language"] == "ru-RU"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exit_digit", "x"),
        ("exit_digit", "12"),
        ("exit_digit", 1),
        ("max_length", 0),
        ("announce_every_s", 5),
    ],
)
async def test_invalid_queue_fields_are_named(api: ApiHarness, field: str, value: Any) -> None:
    acme = await Acme(api).setup()
    response = await api.client.post(
        "/v1/route-plans",
        json={"name": "p", "steps": [{"type": "queue", "group_id": acme.group, field: value}]},
        headers=acme.admin,
    )
    assert response.status_code == 422
    assert f"body.steps[0].queue.{field}" in _fields(response), response.json()

"""The crm-lookup step, the router's side: a fake CRM answering, on the simulator's clock.

Known clients ring their manager, then the manager's groups, then everyone, then the
plan goes on; a category sends the call to its target as a plan step would; unknown
callers, a CRM that fails or is too slow, and callers without a number go on with the
next step. Every case leaves its reason on the route.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vpbx_common.cdr import Direction, EndReason
from vpbx_common.crm import CrmContact
from vpbx_common.nodeconfig import NodeConfig, RoutePlanTarget
from vpbx_media.node.routing import (
    AgentSnapshot,
    AgentState,
    CallContext,
    CallerHungUp,
    CallRouter,
    Connect,
    CrmFailed,
    CrmReply,
    Done,
    Hangup,
    LookUpCaller,
    MemberAnswered,
    MemberFailed,
    MemberFailure,
    Outcome,
    Ring,
    RouteResult,
)
from vpbx_media.node.routing.simulator import Simulator

CALLER = "+79160000000"
CALL = CallContext("c1", "acme", "+74950000001", CALLER, "msk")
LOOKUP_MS = 300
MANAGER_ID = "0b5e2c4c-8c1e-4a53-9a7d-3c2f1e0d9b8a"
OTHER_MANAGER_ID = "6f1d1b0e-3f7a-4f5e-9d1c-0c1d2e3f4a5b"
STEP = "plan:main step 1 (crm-lookup)"


def client(owner: str | None = MANAGER_ID, **fields: Any) -> CrmContact:
    values: dict[str, Any] = {"id": "ct-1", "name": "Ivan", "category": "client", **fields}
    return CrmContact(owner_user_id=owner, **values)


SUPPLIER = CrmContact(id="ct-2", name="Steel Ltd", category="supplier")


def config(step: dict[str, Any] | None = None, **manager_fields: Any) -> NodeConfig:
    """101 is the manager (in sales and support), 105 another manager (in no group);
    the plan: the lookup, then the reception group (104)."""

    def user(extension: str, ident: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"extension": extension, "name": extension, "city": "msk", "id": ident, **extra}

    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": [
                user("101", MANAGER_ID, **{"settings": {"voicemail": False}, **manager_fields}),
                user("102"),
                user("103"),
                user("104"),
                user("105", OTHER_MANAGER_ID),
            ],
            "groups": [
                {"name": "sales", "members": ["101", "102"], "ring_timeout_s": 30},
                {"name": "support", "members": ["103", "101"], "ring_timeout_s": 30},
                {"name": "purchasing", "members": ["104"], "ring_timeout_s": 25},
                {"name": "reception", "members": ["104"], "ring_timeout_s": 30},
            ],
            "numbers": [],
            "route_plans": [
                {
                    "name": "main",
                    "steps": [
                        {
                            "type": "crm-lookup",
                            "categories": {"supplier": {"type": "group", "name": "purchasing"}},
                            "manager_timeout_s": 20,
                            "group_timeout_s": 15,
                            "everyone_timeout_s": 10,
                            **(step or {}),
                        },
                        {"type": "group", "target": {"type": "group", "name": "reception"}},
                    ],
                }
            ],
        }
    )


@dataclass
class FakeCrm:
    """Answers the router's lookups from a phone book (None: unknown number)."""

    book: dict[str, CrmContact] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def answer(self, sim: Simulator, at: float) -> None:
        [lookup] = [action for _, action in sim.of(LookUpCaller)][len(self.asked) :]
        self.asked.append(lookup.phone)
        sim.send(CrmReply(self.book.get(lookup.phone)), at=at)


def simulate(
    cfg: NodeConfig | None = None,
    *,
    call: CallContext = CALL,
    agents: AgentSnapshot | None = None,
    crm_lookup_ms: int | None = LOOKUP_MS,
) -> Simulator:
    router = CallRouter(
        call,
        cfg or config(),
        agents or AgentSnapshot(),
        RoutePlanTarget(name="main"),
        crm_lookup_ms=crm_lookup_ms,
    )
    sim = Simulator(router)
    sim.start()
    return sim


def known(contact: CrmContact, cfg: NodeConfig | None = None, **kwargs: Any) -> Simulator:
    """A call whose caller the CRM answers for 50 ms after the lookup starts."""
    sim = simulate(cfg, **kwargs)
    FakeCrm({CALLER: contact}).answer(sim, at=0.05)
    return sim


def rang(sim: Simulator) -> list[tuple[float, tuple[str, ...]]]:
    return [(round(t, 3), ring.extensions) for t, ring in sim.of(Ring)]


def notes(sim: Simulator, subject: str = STEP) -> list[tuple[Outcome, str]]:
    return [(e.outcome, e.detail) for e in sim.router.route if e.subject == subject]


# --- the manager, the groups, everyone ------------------------------------------------


def test_the_lookup_asks_the_crm_about_the_caller_with_the_nodes_timeout() -> None:
    sim = simulate()
    assert [a for _, a in sim.timeline] == [LookUpCaller(CALLER, LOOKUP_MS)]
    assert sim.router.next_deadline == LOOKUP_MS / 1000
    assert rang(sim) == []  # nobody rings before the CRM answered


def test_a_known_client_escalates_manager_groups_everyone_then_the_next_step() -> None:
    sim = known(client())
    assert notes(sim) == [(Outcome.ENTERED, ""), (Outcome.DECIDED, "contact ct-1 owner 101")]
    assert sim.router.contact == client()
    sim.run_out()
    assert rang(sim) == [
        (0.05, ("101",)),  # the manager, 20 s
        (20.05, ("101", "102", "103")),  # sales and support together, the manager too, 15 s
        (35.05, ("101", "102", "103", "104", "105")),  # everyone, 10 s
        (45.05, ("104",)),  # the plan's next step: reception
    ]
    assert [ring.until for _, ring in sim.of(Ring)][:3] == [20.05, 35.05, 45.05]
    subjects = [e.subject for e in sim.router.route if e.outcome is Outcome.FELL_THROUGH]
    assert subjects[:3] == [
        "crm manager user:101",
        "crm manager's groups group:sales,group:support",
        "crm everyone",
    ]


def test_an_answer_in_the_groups_stage_connects_that_person() -> None:
    sim = known(client())
    sim.advance(25.0)
    assert sim.send(MemberAnswered("103"), at=25.0)[-2:] == [
        Connect("103"),
        Done(RouteResult.CONNECTED),
    ]


def test_the_manager_declining_moves_on_to_their_groups_at_once() -> None:
    sim = known(client())
    sim.send(MemberFailed("101", MemberFailure.DECLINED), at=3.0)
    assert rang(sim) == [(0.05, ("101",)), (3.0, ("101", "102", "103"))]


def test_the_manager_rings_as_any_call_to_them_rings_follow_me_included() -> None:
    cfg = config(
        mobile="+79990000101",
        settings={"voicemail": False, "forward_to_mobile": True, "mobile_parallel": True},
    )
    sim = known(client(), cfg)
    assert rang(sim) == [(0.05, ("101", "+79990000101"))]


def test_busy_and_dnd_members_are_skipped_in_the_groups_stage() -> None:
    agents = AgentSnapshot({"102": AgentState(on_call=True)})
    cfg = config()
    document = cfg.model_dump(mode="json")
    document["users"][2]["presence"] = "do-not-disturb"  # 103
    sim = known(client(), NodeConfig.model_validate(document), agents=agents)
    sim.advance(20.05)
    assert rang(sim)[1] == (20.05, ("101",))
    skipped = [(e.member, e.detail) for e in sim.router.route if e.outcome is Outcome.SKIPPED]
    assert skipped == [("102", "on-call"), ("103", "do-not-disturb")]


def test_a_stage_of_zero_seconds_is_skipped() -> None:
    sim = known(client(), config({"group_timeout_s": 0}))
    sim.run_out()
    assert rang(sim) == [
        (0.05, ("101",)),
        (20.05, ("101", "102", "103", "104", "105")),
        (30.05, ("104",)),
    ]


def test_a_manager_in_no_group_goes_from_themselves_to_everyone() -> None:
    sim = known(client(OTHER_MANAGER_ID), config({"everyone_timeout_s": 0}))
    sim.run_out()
    assert notes(sim)[-1] == (Outcome.DECIDED, "contact ct-1 owner 105")
    assert rang(sim) == [(0.05, ("105",)), (20.05, ("104",))]


def test_every_stage_at_zero_goes_on_with_the_next_step() -> None:
    cfg = config({"manager_timeout_s": 0, "group_timeout_s": 0, "everyone_timeout_s": 0})
    sim = known(client(), cfg)
    assert rang(sim) == [(0.05, ("104",))]
    assert notes(sim)[-1] == (
        Outcome.FELL_THROUGH,
        "every escalation stage has 0 s: next step",
    )


def test_nobody_answering_at_the_end_of_the_plan_is_480() -> None:
    cfg = config({"everyone_timeout_s": 0})
    document = cfg.model_dump(mode="json")
    del document["route_plans"][0]["steps"][1]
    sim = known(client(), NodeConfig.model_validate(document))
    sim.run_out()
    [(_, hangup)] = sim.of(Hangup)
    assert (hangup.status, hangup.end_reason) == (480, EndReason.NO_ANSWER)
    assert hangup.detail == "no-answer, end of route plan"


def test_a_vip_client_routes_exactly_as_any_client() -> None:
    plain, vip = known(client()), known(client(vip=True))
    plain.run_out()
    vip.run_out()
    assert rang(vip) == rang(plain)


# --- categories ---------------------------------------------------------------------------


def test_a_supplier_goes_to_the_category_target_then_the_plan_goes_on() -> None:
    sim = known(SUPPLIER)
    assert notes(sim)[-1] == (Outcome.DECIDED, "contact ct-2 category supplier: group:purchasing")
    sim.run_out()
    # purchasing rings its 25 s, then the plan's next step, as a group step would.
    assert rang(sim) == [(0.05, ("104",)), (25.05, ("104",))]
    entered = [e.subject for e in sim.router.route if e.outcome is Outcome.ENTERED]
    assert f"{STEP} supplier step 1 (group)" in entered


def test_a_client_without_a_manager_to_ring_goes_by_category() -> None:
    to_sales = {"categories": {"client": {"type": "group", "name": "sales"}}}
    off = known(client(), config({**to_sales, "to_responsible_manager": False}))
    assert rang(off) == [(0.05, ("101", "102"))]
    gone = known(client("7d7d7d7d-0000-4000-8000-000000000000"), config(to_sales))
    assert rang(gone) == [(0.05, ("101", "102"))]
    assert notes(gone)[-1] == (Outcome.DECIDED, "contact ct-1 category client: group:sales")


def test_a_known_contact_whose_category_has_no_target_goes_on() -> None:
    partner = CrmContact(id="ct-3", name="Partner", category="partner")
    sim = known(partner)
    assert notes(sim)[-1] == (Outcome.FELL_THROUGH, "contact ct-3 category partner: no target")
    assert rang(sim) == [(0.05, ("104",))]
    assert sim.router.contact == partner  # known all the same: the CDR and events say who


# --- nobody known, nothing asked, nothing answered ------------------------------------------


def test_an_unknown_caller_goes_on_with_the_next_step() -> None:
    sim = simulate()
    FakeCrm().answer(sim, at=0.04)
    assert notes(sim)[-1] == (Outcome.FELL_THROUGH, "unknown caller")
    assert rang(sim) == [(0.04, ("104",))]
    assert sim.router.contact is None


def test_a_failed_lookup_goes_on_with_the_next_step_and_says_why() -> None:
    sim = simulate()
    sim.send(CrmFailed("HTTP 503"), at=0.02)
    assert notes(sim)[-1] == (Outcome.FELL_THROUGH, "CRM unavailable: HTTP 503")
    assert rang(sim) == [(0.02, ("104",))]


def test_a_crm_slower_than_the_timeout_is_not_waited_for_and_its_late_answer_ignored() -> None:
    sim = simulate()
    sim.advance(0.299)
    assert rang(sim) == []
    sim.advance(0.3)
    assert notes(sim)[-1] == (Outcome.FELL_THROUGH, "CRM unavailable: timeout after 300 ms")
    assert rang(sim) == [(0.3, ("104",))]
    sim.send(CrmReply(client()), at=0.5)
    assert rang(sim) == [(0.3, ("104",))]
    assert sim.router.contact is None


def test_callers_without_a_number_are_not_looked_up() -> None:
    internal = CallContext("c2", "acme", "main", "102", "msk", direction=Direction.INTERNAL)
    anonymous = CallContext("c3", "acme", "+74950000001", "anonymous", "msk")
    for call, why in (
        (internal, "internal caller: not looked up"),
        (anonymous, "caller has no phone number: not looked up"),
    ):
        sim = simulate(call=call)
        assert sim.of(LookUpCaller) == []
        assert notes(sim) == [(Outcome.FELL_THROUGH, why)]
        assert rang(sim) == [(0.0, ("104",))]


def test_a_node_without_a_crm_goes_on_with_the_next_step() -> None:
    sim = simulate(crm_lookup_ms=None)
    assert sim.of(LookUpCaller) == []
    assert notes(sim) == [(Outcome.FELL_THROUGH, "CRM not configured")]
    assert rang(sim) == [(0.0, ("104",))]


def test_the_caller_hanging_up_during_the_lookup_ends_the_routing() -> None:
    sim = simulate()
    sim.send(CallerHungUp(), at=0.1)
    assert sim.done == Done(RouteResult.CALLER_LEFT)
    sim.send(CrmReply(client()), at=0.2)
    assert rang(sim) == []

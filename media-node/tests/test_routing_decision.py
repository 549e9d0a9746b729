"""The HTTP decision step: the request, every reply form, and every way to the fallback."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from vpbx_common.nodeconfig import (
    GroupTarget,
    HangupReason,
    HangupTarget,
    IvrTarget,
    NodeConfig,
    RoutePlanTarget,
    UserTarget,
    VoicemailTarget,
)
from vpbx_media.node.routing import (
    AgentSnapshot,
    AgentState,
    CallContext,
    CallerHungUp,
    CallRouter,
    DecisionFailed,
    DecisionReply,
    Done,
    FallbackDecision,
    Hangup,
    MemberAnswered,
    Outcome,
    RequestDecision,
    Ring,
    RingDecision,
    RouteResult,
    TargetDecision,
    parse_decision,
)
from vpbx_media.node.routing.simulator import Simulator

GROUP_ID = "6f1d1b0e-3f7a-4f5e-9d1c-0c1d2e3f4a5b"
USER_ID = "5b7e2a1c-8f4d-4f4e-a0a2-52a1c3e4d5f6"
IVR_ID = "3f0c8a52-2d0b-4a51-9d51-9c0b6b1f2a11"
PLAN_ID = "0b5e2c4c-8c1e-4a53-9a7d-3c2f1e0d9b8a"
OTHER_ID = "11111111-2222-3333-4444-555555555555"
AT = dt.datetime(2025, 3, 3, 6, 30, tzinfo=dt.UTC)
CALL = CallContext(
    call_id="c1",
    tenant="acme",
    number="+74950000001",
    caller="+79160000000",
    city="msk",
    label="yandex-direct",
)
CONFIG = NodeConfig.model_validate(
    {
        "tenant": "acme",
        "display_name": "Acme",
        "sip_domain": "acme.pbx",
        "city": "msk",
        "suspended": False,
        "users": [
            {"extension": "101", "name": "a", "city": "msk"},
            {"extension": "102", "name": "b", "city": "msk", "id": USER_ID},
            {"extension": "103", "name": "c", "city": "msk"},
        ],
        "groups": [{"name": "sales", "id": GROUP_ID, "members": ["101"], "ring_timeout_s": 20}],
        "numbers": [],
        "ivr_menus": [{"name": "main", "id": IVR_ID}],
        "route_plans": [
            {
                "name": "main",
                "id": PLAN_ID,
                "steps": [
                    {
                        "type": "http-decision",
                        "url": "https://crm.example.com/route",
                        "timeout_ms": 1500,
                        "fallback": {"type": "hangup", "reason": "unavailable"},
                    }
                ],
            }
        ],
    }
)


def reply(document: Any, status: int = 200) -> DecisionReply:
    return DecisionReply(status, json.dumps(document).encode())


def simulate(agents: AgentSnapshot | None = None) -> Simulator:
    router = CallRouter(
        CALL,
        CONFIG,
        agents or AgentSnapshot(),
        RoutePlanTarget(name="main"),
        epoch_offset=AT.timestamp(),
    )
    sim = Simulator(router)
    sim.start()
    return sim


def decided(sim: Simulator) -> str:
    (detail,) = [e.detail for e in sim.router.route if e.outcome is Outcome.DECIDED]
    return detail


def test_the_request_carries_the_call() -> None:
    sim = simulate()
    assert sim.timeline == [
        (
            0.0,
            RequestDecision(
                "https://crm.example.com/route",
                1500,
                {
                    "call_id": "c1",
                    "tenant": "acme",
                    "number": "+74950000001",
                    "caller": "+79160000000",
                    "city": "msk",
                    "label": "yandex-direct",
                    "time": "2025-03-03T06:30:00Z",
                },
            ),
        )
    ]
    assert sim.router.next_deadline == 1.5


def test_ring_parallel_rings_the_extensions_and_falls_back_when_nobody_answers() -> None:
    sim = simulate()
    doc = {"action": "ring", "targets": ["102", "103"], "mode": "parallel", "ring_timeout_s": 20}
    assert sim.send(reply(doc), at=0.2) == [Ring(("102", "103"), 20.2)]
    sim.advance(20.2)
    assert sim.of(Hangup)[0][1].status == 480  # the fallback: hangup unavailable
    assert decided(sim) == "ring 102,103 parallel"


def test_ring_sequential_rings_one_after_the_other() -> None:
    sim = simulate()
    sim.send(reply({"action": "ring", "targets": ["103", "102"], "mode": "sequential"}), at=0.5)
    sim.send(MemberAnswered("102"), at=20.0)
    assert [(t, r.extensions, r.until) for t, r in sim.of(Ring)] == [
        (0.5, ("103",), 15.5),
        (15.5, ("102",), 30.5),
    ]
    assert sim.router.connected_to == "102"


def test_ring_leaves_out_unknown_extensions_and_skips_busy_members() -> None:
    sim = simulate(AgentSnapshot({"103": AgentState(on_call=True)}))
    sim.send(reply({"action": "ring", "targets": ["999", "102", "103"]}), at=0.1)
    assert [r.extensions for _, r in sim.of(Ring)] == [("102",)]
    assert decided(sim) == "ring 102,103 parallel (unknown extensions left out: 999)"


def test_ring_with_only_unknown_extensions_falls_back() -> None:
    sim = simulate()
    sim.send(reply({"action": "ring", "targets": ["999"]}), at=0.1)
    assert sim.of(Ring) == []
    assert decided(sim) == "fallback: ring: no extension of the tenant in targets"
    assert sim.of(Hangup)[0][1].status == 480


def test_target_reply_goes_to_the_object_with_that_id() -> None:
    sim = simulate()
    sim.send(reply({"action": "target", "target": f"group:{GROUP_ID}"}), at=0.3)
    assert sim.of(Ring) == [(0.3, Ring(("101",), 20.3, "sales"))]


def test_hangup_reply_hangs_up_with_its_reason() -> None:
    sim = simulate()
    actions = sim.send(reply({"action": "hangup", "reason": "busy"}), at=0.3)
    assert next(a for a in actions if isinstance(a, Hangup)).status == 486


def ring_with(**fields: Any) -> bytes:
    return json.dumps({"action": "ring", "targets": ["102"], **fields}).encode()


def target_of(reference: str) -> bytes:
    return json.dumps({"action": "target", "target": reference}).encode()


BAD_TIMEOUT = "ring: ring_timeout_s must be 5..600"


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (503, b"{}", "HTTP 503"),
        (302, b'{"action": "hangup"}', "HTTP 302"),
        (200, b"<html>", "reply is not JSON"),
        (200, b"[1, 2]", "reply is not a JSON object"),
        (200, b'{"action": "dance"}', "unknown action 'dance'"),
        (200, ring_with(targets="102"), "ring: targets must be a list of extensions"),
        (200, ring_with(mode="random"), "ring: unknown mode 'random'"),
        (200, ring_with(ring_timeout_s=1), BAD_TIMEOUT),
        (200, ring_with(ring_timeout_s=True), BAD_TIMEOUT),
        (200, target_of(f"group:{OTHER_ID}"), f"target: no group with id {OTHER_ID}"),
        (200, target_of("group:sales"), "target: not <kind>:<uuid>: 'group:sales'"),
        (200, target_of(f"fax:{GROUP_ID}"), f"target: not <kind>:<uuid>: 'fax:{GROUP_ID}'"),
        (200, b'{"action": "hangup", "reason": "angry"}', "unknown hangup reason 'angry'"),
    ],
)
def test_anything_else_goes_to_the_fallback_and_the_route_says_why(
    status: int, body: bytes, why: str
) -> None:
    assert parse_decision(status, body, CONFIG) == FallbackDecision(why)
    sim = simulate()
    sim.send(DecisionReply(status, body), at=0.4)
    assert decided(sim) == f"fallback: {why}"
    assert sim.of(Hangup) == [(0.4, sim.of(Hangup)[0][1])]


def test_no_reply_in_time_goes_to_the_fallback_and_a_late_reply_is_ignored() -> None:
    sim = simulate()
    sim.advance(1.5)
    assert decided(sim) == "fallback: no reply within 1500 ms"
    assert sim.timeline[-1] == (1.5, Done(RouteResult.HUNG_UP))
    assert sim.send(reply({"action": "hangup", "reason": "busy"}), at=1.6) == []


def test_a_failed_request_goes_to_the_fallback() -> None:
    sim = simulate()
    sim.send(DecisionFailed("refused by the outbound policy"), at=0.01)
    assert decided(sim) == "fallback: request failed: refused by the outbound policy"


def test_the_caller_hanging_up_while_deciding_ends_routing() -> None:
    sim = simulate()
    assert sim.send(CallerHungUp(), at=0.5) == [Done(RouteResult.CALLER_LEFT)]
    assert sim.router.next_deadline is None


@pytest.mark.parametrize(
    ("reference", "target"),
    [
        (f"user:{USER_ID}", UserTarget(extension="102", user_id=USER_ID)),
        (f"USER:{USER_ID.upper()}", None),
        (f"group:{GROUP_ID.upper()}", GroupTarget(name="sales", group_id=GROUP_ID)),
        (f"ivr:{IVR_ID}", IvrTarget(name="main", ivr_menu_id=IVR_ID)),
        (f"route-plan:{PLAN_ID}", RoutePlanTarget(name="main", route_plan_id=PLAN_ID)),
        (f"voicemail:{USER_ID}", VoicemailTarget(extension="102", user_id=USER_ID)),
        ("voicemail", VoicemailTarget()),
    ],
)
def test_target_references_resolve_against_the_config_ids(reference: str, target: object) -> None:
    decision = parse_decision(
        200, json.dumps({"action": "target", "target": reference}).encode(), CONFIG
    )
    if target is None:
        assert isinstance(decision, FallbackDecision)
    else:
        assert isinstance(decision, TargetDecision)
        assert decision.target == target


def test_reply_forms_parse_to_decisions() -> None:
    ring = parse_decision(200, b'{"action":"ring","targets":["101","101","102"]}', CONFIG)
    assert ring == RingDecision(("101", "102"), sequential=False, ring_timeout_s=30)
    hangup = parse_decision(204, b'{"action":"hangup"}', CONFIG)
    assert hangup == TargetDecision(HangupTarget(reason=HangupReason.NORMAL), "hangup normal")

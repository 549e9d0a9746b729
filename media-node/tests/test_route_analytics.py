"""The router's real traces read by the analytics derivation (vpbx_common.cdr.derived).

The derivation parses route subjects and details the router writes; these tests drive the
router through the simulator and check that what it writes is what the derivation expects,
so a change of wording in the router fails here rather than silently in the reports."""

from __future__ import annotations

from typing import Any

from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, RouteStep
from vpbx_common.cdr.derived import CallAnalytics, derive_call
from vpbx_common.nodeconfig import GroupTarget, IvrTarget, NodeConfig, RoutePlanTarget, TtsPrompt
from vpbx_media.node.routing import (
    AgentSnapshot,
    CallContext,
    CallerHungUp,
    CallRouter,
    Digit,
    MemberAnswered,
    PromptFinished,
    QueueOffer,
)
from vpbx_media.node.routing.simulator import Simulator

START = 1_763_800_000_000
CALL = CallContext("c1", "acme", "+74950000001", "+79160000000", "msk")


def config() -> NodeConfig:
    users = [{"extension": e, "name": e, "city": "msk"} for e in ("101", "102")]
    queue_step: dict[str, Any] = {
        "type": "queue",
        "target": {"type": "group", "name": "support"},
        "max_wait_s": 60,
    }
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": users,
            "groups": [
                {"name": "support", "members": ["101", "102"], "ring_timeout_s": 30},
                {"name": "sales", "members": ["101"], "ring_timeout_s": 20},
            ],
            "numbers": [],
            "route_plans": [{"name": "main", "steps": [queue_step]}],
            "ivr_menus": [
                {
                    "name": "main",
                    "prompt": TtsPrompt(text="Press 1", prompt_id="p-1").model_dump(),
                    "options": {"1": {"type": "group", "name": "sales"}},
                    "timeout_s": 5,
                    "max_retries": 2,
                }
            ],
        }
    )


def simulate(target: GroupTarget | IvrTarget | RoutePlanTarget) -> Simulator:
    sim = Simulator(CallRouter(CALL, config(), AgentSnapshot(), target))
    sim.start()
    return sim


def derived(sim: Simulator, *, answered_by: str = "", end_s: float) -> CallAnalytics:
    route = tuple(RouteStep.from_json(entry.as_dict()) for entry in sim.router.route)
    answer = START + round(sim.now * 1000) if answered_by else None
    record = CallRecord.build(
        call_id="c1",
        tenant="acme",
        city="msk",
        node="n",
        direction=Direction.INBOUND,
        caller="+74950000001",
        dialled="+79160000000",
        start_ms=START,
        answer_ms=answer,
        end_ms=START + round(end_s * 1000),
        end_reason=EndReason.COMPLETED if answered_by else EndReason.CANCELLED,
        sip_status=200 if answered_by else 487,
        hangup_by=HangupBy.CALLER,
        answered_by=answered_by,
        route=route,
    )
    return derive_call(record)


def test_a_queued_caller_answered_after_an_offer() -> None:
    sim = simulate(RoutePlanTarget(name="main"))
    sim.send(QueueOffer("102"), at=12.0)
    sim.send(MemberAnswered("102"), at=15.0)
    result = derived(sim, answered_by="102", end_s=100.0)
    assert (result.queue, result.group_name, result.queue_wait_ms) == ("support", "support", 15_000)
    assert result.abandoned_in == ""
    assert {leg.kind for leg in result.legs} == {"plan", "queue"}


def test_a_queued_caller_who_hangs_up_abandoned_the_queue() -> None:
    sim = simulate(RoutePlanTarget(name="main"))
    sim.send(QueueOffer("101"), at=5.0)
    sim.send(CallerHungUp(), at=30.0)
    result = derived(sim, end_s=30.0)
    assert (result.abandoned_in, result.queue_wait_ms, result.last_rung) == ("queue", 30_000, "101")


def test_a_caller_leaving_the_menu_abandoned_the_ivr() -> None:
    sim = simulate(IvrTarget(name="main"))
    sim.send(PromptFinished(), at=4.0)
    sim.send(CallerHungUp(), at=6.0)
    result = derived(sim, end_s=6.0)
    assert (result.abandoned_in, result.ivr_menu, result.ivr_choice) == ("ivr", "main", "")


def test_an_ivr_digit_leads_to_the_group_that_answers() -> None:
    sim = simulate(IvrTarget(name="main"))
    sim.send(PromptFinished(), at=4.0)
    sim.send(Digit("1"), at=5.0)
    sim.send(MemberAnswered("101"), at=8.0)
    result = derived(sim, answered_by="101", end_s=60.0)
    assert (result.ivr_menu, result.ivr_choice, result.group_name) == ("main", "1", "sales")
    assert result.last_rung == "101"


def test_a_caller_hanging_up_while_the_group_rings_abandoned_the_ringing() -> None:
    sim = simulate(GroupTarget(name="sales"))
    sim.send(CallerHungUp(), at=9.0)
    result = derived(sim, end_s=9.0)
    assert (result.abandoned_in, result.group_name, result.last_rung) == ("ring", "sales", "101")


def test_an_ivr_entered_directly_is_named_by_its_target() -> None:
    sim = simulate(IvrTarget(name="main"))
    sim.send(PromptFinished(), at=4.0)
    sim.send(Digit("1"), at=5.0)
    sim.send(CallerHungUp(), at=7.0)
    result = derived(sim, end_s=7.0)
    assert (result.ivr_choice, result.abandoned_in, result.group_name) == ("1", "ring", "sales")

"""Properties of the router over random groups, agent states and event orders.

- it never rings a member the snapshot says is not free, nor one already ringing,
  nor one whose devices all failed; one-at-a-time strategies ring one member at most;
- every run ends with exactly one ``Done``, last: connected to a member who was
  ringing, or hung up (within the group's ring timeout, nothing left ringing),
  or the caller gone;
- the decision reader takes any reply without raising.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpbx_common.nodeconfig import GroupTarget, NodeConfig
from vpbx_common.pbx import Presence, RingStrategy
from vpbx_media.node.routing import (
    AgentSnapshot,
    AgentState,
    CallContext,
    CallerHungUp,
    CallRouter,
    Connect,
    Done,
    FallbackDecision,
    Hangup,
    MemberAnswered,
    MemberFailed,
    MemberFailure,
    RingDecision,
    RouteResult,
    StopRinging,
    TargetDecision,
    TimerFired,
    parse_decision,
)
from vpbx_media.node.routing.actions import Ring
from vpbx_media.node.routing.events import Event
from vpbx_media.node.routing.simulator import Simulator

EPOCH = 1_750_000_000.0
CALL = CallContext("c1", "acme", "+74950000001", "+79160000000", "msk")
EXTENSIONS = ("101", "102", "103", "104", "105")
ONE_AT_A_TIME = {
    RingStrategy.SEQUENTIAL,
    RingStrategy.ROUND_ROBIN,
    RingStrategy.LEAST_RECENTLY_CALLED,
    RingStrategy.BY_RANK,
}

users = st.tuples(
    st.sampled_from([Presence.AVAILABLE] * 4 + list(Presence)),  # the config's presence
    st.sampled_from([0, 30]),  # wrap_up_s
    st.integers(0, 3),  # rank
)
agent_states = st.builds(
    AgentState,
    on_call=st.sampled_from([False, False, False, True]),
    last_call_end=st.none() | st.floats(EPOCH - 60, EPOCH),
    presence=st.sampled_from([None, None, None, *Presence]),
    devices=st.sampled_from([None, None, 0, 1]),
)
groups = st.fixed_dictionaries(
    {
        "strategy": st.sampled_from(list(RingStrategy)),
        "ring_timeout_s": st.integers(5, 60),
        "member_ring_s": st.none() | st.integers(2, 20),
        "escalation_interval_s": st.integers(2, 15),
        "overflow": st.sampled_from([None, {"type": "hangup", "reason": "busy"}]),
    }
)
# (seconds later, what happens, which member, how it fails)
steps = st.lists(
    st.tuples(
        st.floats(0, 12),
        st.sampled_from(["answer", "fail", "fail", "timer", "timer", "hangup"]),
        st.integers(0, 4),
        st.sampled_from(list(MemberFailure)),
    ),
    max_size=12,
)


def build(n: int, user_specs: list[tuple[Presence, int, int]], group: dict[str, Any]) -> NodeConfig:
    members = list(EXTENSIONS[:n])
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": [
                {
                    "extension": ext,
                    "name": ext,
                    "city": "msk",
                    "presence": presence,
                    "rank": rank,
                    "settings": {"wrap_up_s": wrap_up},
                }
                for ext, (presence, wrap_up, rank) in zip(members, user_specs, strict=False)
            ],
            "groups": [{"name": "sales", "members": members, **group}],
            "numbers": [],
        }
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 5),
    user_specs=st.lists(users, min_size=5, max_size=5),
    states=st.lists(agent_states, min_size=5, max_size=5),
    group=groups,
    last_member=st.sampled_from([None, *EXTENSIONS]),
    script=steps,
)
def test_a_group_rings_only_free_members_and_always_ends(
    n: int,
    user_specs: list[tuple[Presence, int, int]],
    states: list[AgentState],
    group: dict[str, Any],
    last_member: str | None,
    script: list[tuple[float, str, int, MemberFailure]],
) -> None:
    config = build(n, user_specs, group)
    agents = AgentSnapshot(
        dict(zip(EXTENSIONS, states, strict=True)),
        {"sales": last_member} if last_member else {},
    )
    router = CallRouter(CALL, config, agents, GroupTarget(name="sales"), epoch_offset=EPOCH)
    sim = Simulator(router)
    ringing: set[str] = set()
    failed: set[str] = set()
    answered: set[str] = set()
    seen = 0

    def check_new_actions() -> None:
        nonlocal seen
        for t, action in sim.timeline[seen:]:
            if isinstance(action, Ring):
                for ext in action.extensions:
                    user = config.user(ext)
                    assert user is not None
                    assert agents.is_free(user, EPOCH + t)[0], (ext, t)
                    assert ext not in ringing
                    assert ext not in failed
                    ringing.add(ext)
                assert action.until <= group["ring_timeout_s"] + 1e-9
            elif isinstance(action, StopRinging):
                assert set(action.extensions) <= ringing
                ringing.difference_update(action.extensions)
            elif isinstance(action, Connect):
                assert action.extension in answered
            if group["strategy"] in ONE_AT_A_TIME:
                assert len(ringing) <= 1
        seen = len(sim.timeline)

    sim.start()
    check_new_actions()
    for delay, kind, index, status in script:
        if router.finished:
            break
        at = sim.now + delay
        candidates = sorted(ringing) or list(EXTENSIONS[:n])
        ext = candidates[index % len(candidates)]
        event: Event
        if kind == "answer":
            event = MemberAnswered(ext)
            sim.advance(at)  # timers due by then first, so "ringing" is current
            check_new_actions()
            if ext in ringing:
                answered.add(ext)
                ringing.discard(ext)
        elif kind == "fail":
            event = MemberFailed(ext, status)
            sim.advance(at)
            check_new_actions()
            if ext in ringing:
                failed.add(ext)
                ringing.discard(ext)
        elif kind == "hangup":
            event = CallerHungUp()
        else:
            event = TimerFired()
        sim.send(event, at=at)
        check_new_actions()
    sim.run_out()
    check_new_actions()

    dones = [(t, a) for t, a in sim.timeline if isinstance(a, Done)]
    assert len(dones) == 1
    done_at, done = dones[0]
    assert sim.timeline[-1] == (done_at, done)
    assert router.next_deadline is None
    if done.result is RouteResult.CONNECTED:
        assert router.connected_to in answered
    elif done.result is RouteResult.HUNG_UP:
        assert not ringing
        assert done_at <= group["ring_timeout_s"]
        hangups = [a for _, a in sim.timeline if isinstance(a, Hangup)]
        assert [h.status for h in hangups] in ([480], [486], [603])
    else:
        assert not ringing


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=5,
)
replies = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["ring", "target", "hangup", "other"]) | json_values,
        "targets": st.lists(st.sampled_from(["101", "999", ""]) | json_values, max_size=3),
        "mode": st.sampled_from(["parallel", "sequential"]) | json_values,
        "ring_timeout_s": st.integers(-5, 700) | json_values,
        "target": st.sampled_from(["group:x", "voicemail", "user:"]) | json_values,
        "reason": st.sampled_from(["busy", "unavailable", "normal"]) | json_values,
    },
)
CONFIG = build(3, [(Presence.AVAILABLE, 0, 0)] * 3, {"ring_timeout_s": 20})


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(100, 599), body=st.binary(max_size=64) | replies.map(json.dumps))
def test_any_reply_reads_as_a_decision(status: int, body: bytes | str) -> None:
    data = body.encode() if isinstance(body, str) else body
    decision = parse_decision(status, data, CONFIG)
    assert isinstance(decision, RingDecision | TargetDecision | FallbackDecision)
    if isinstance(decision, RingDecision):
        assert 200 <= status < 300
        assert decision.extensions
        assert all(CONFIG.user(ext) is not None for ext in decision.extensions)

"""The queue dispatcher against a real Redis: one fair queue across the nodes of a tenant."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from vpbx_common.agents import AgentStateStore
from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.pbx import Presence
from vpbx_common.queues import QueueView
from vpbx_media.node.bindings import Binding, BindingStore
from vpbx_media.node.queues import (
    ALIVE_S,
    RETRY_SAME_AGENT_AFTER_S,
    WAITS_WINDOW_S,
    QueueDispatcher,
    QueueFullError,
    offer_lease_s,
)

AGENTS = ("101", "102", "103")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def config(
    members: tuple[str, ...] = AGENTS,
    strategy: str = "sequential",
    users: dict[str, dict[str, Any]] | None = None,
    groups: list[dict[str, Any]] | None = None,
) -> NodeConfig:
    extensions = sorted({*members, *(users or {})})
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.pbx",
            "city": "msk",
            "suspended": False,
            "users": [
                {"extension": e, "name": e, "city": "msk", **(users or {}).get(e, {})}
                for e in extensions
            ],
            "groups": groups
            if groups is not None
            else [
                {
                    "name": "support",
                    "members": list(members),
                    "strategy": strategy,
                    "ring_timeout_s": 30,
                }
            ],
            "numbers": [],
        }
    )


class Node:
    """One media node's dispatcher, with what its callers were told."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        clock: Callable[[], float],
        cfg: NodeConfig,
        **kw: Any,
    ) -> None:
        self.cfg = cfg
        self.store = AgentStateStore(client, clock)
        self.queue = QueueDispatcher(
            client, "acme", name, lambda: self.cfg, self.store, clock, **kw
        )
        self.offers: dict[str, list[str]] = defaultdict(list)
        self.left: dict[str, list[str]] = defaultdict(list)
        self.offered = asyncio.Event()

    async def join(self, call_id: str, group: str = "support", **kw: Any) -> int:
        def on_offer(extension: str) -> None:
            self.offers[call_id].append(extension)
            self.offered.set()

        return await self.queue.join(
            call_id, group, on_offer, lambda reason: self.left[call_id].append(reason), **kw
        )

    async def dispatch(self) -> dict[str, str]:
        """One round of the loop (mark the callers alive, offer); the offers it made."""
        before = {call: len(offers) for call, offers in self.offers.items()}
        await self.queue.refresh()
        await self.queue.dispatch()
        return {
            call: offers[-1]
            for call, offers in list(self.offers.items())
            if len(offers) > before.get(call, 0)
        }


@pytest.fixture
async def clients(flushed_redis: str) -> AsyncIterator[list[redis.Redis]]:
    connections = [redis.Redis.from_url(flushed_redis) for _ in range(2)]  # two nodes
    yield connections
    for connection in connections:
        await connection.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def nodes(clients: list[redis.Redis], clock: Clock) -> tuple[Node, Node]:
    return (
        Node(clients[0], "acme-msk", clock, config()),
        Node(clients[1], "acme-ekb", clock, config()),
    )


async def later(clock: Clock, seconds: float, *nodes: Node) -> None:
    """Time passes; the nodes' loops keep their callers alive meanwhile."""
    clock.now += seconds
    for node in nodes:
        await node.queue.refresh()


async def busy(node: Node, *extensions: str) -> None:
    for extension in extensions:
        await node.store.call_answered("acme", extension, f"direct-{extension}")


async def free(node: Node, *extensions: str) -> None:
    for extension in extensions:
        await node.store.call_ended("acme", extension, f"direct-{extension}")


async def test_first_come_first_served_across_cities(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, ekb = nodes
    await busy(msk, *AGENTS)
    assert await msk.join("c1") == 1
    clock.now += 1
    assert await ekb.join("c2") == 2
    clock.now += 1
    assert await msk.join("c3") == 3
    assert await msk.dispatch() == {}
    assert await ekb.dispatch() == {}

    await free(msk, "102")
    clock.now += 1
    # Ekb's caller is second: the agent waits for the head, held in Moscow.
    assert await ekb.dispatch() == {}
    assert await msk.dispatch() == {"c1": "102"}

    await free(ekb, "101")
    clock.now += 1
    # Moscow's next caller came after Ekb's: it may not take the agent.
    assert await msk.dispatch() == {}
    assert await ekb.dispatch() == {"c2": "101"}
    assert [await msk.queue.position(c, "support") for c in ("c1", "c2", "c3")] == [1, 2, 3]

    await msk.queue.connected("c1", "support", "102")
    await ekb.queue.connected("c2", "support", "101")
    assert await ekb.queue.position("c3", "support") == 1
    assert await ekb.queue.length("support") == 1


async def test_one_agent_is_offered_one_caller_at_a_time(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, ekb = nodes
    for node in nodes:
        node.cfg = config(members=("101",))
    await msk.join("c1")
    clock.now += 1
    await ekb.join("c2")
    assert await msk.dispatch() == {"c1": "101"}
    assert await ekb.dispatch() == {}
    assert await msk.dispatch() == {}  # nor is the caller offered twice

    # Not answered: the second caller gets the agent, the first keeps its place.
    await msk.queue.back("c1", "support", "101")
    assert await msk.dispatch() == {}  # it skips the agent who did not answer, for a while
    assert await ekb.dispatch() == {"c2": "101"}
    assert await msk.queue.position("c1", "support") == 1

    await ekb.store.call_answered("acme", "101", "c2")
    await ekb.queue.connected("c2", "support", "101")
    clock.now += RETRY_SAME_AGENT_AFTER_S
    assert await msk.dispatch() == {}  # talking
    await ekb.store.call_ended("acme", "101", "c2")
    assert await msk.dispatch() == {"c1": "101"}


async def test_an_unanswered_caller_keeps_its_place_and_another_free_agent_takes_it(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, ekb = nodes
    await msk.join("c1")
    clock.now += 1
    await ekb.join("c2")
    assert await msk.dispatch() == {"c1": "101"}
    assert await ekb.dispatch() == {"c2": "102"}

    await msk.queue.back("c1", "support", "101")
    clock.now += 1
    assert await msk.dispatch() == {"c1": "103"}
    assert await msk.queue.position("c1", "support") == 1

    # A newcomer may take the agent the head skips: nobody earlier can.
    await ekb.join("c3")
    assert await ekb.dispatch() == {"c3": "101"}


async def test_busy_dnd_away_and_wrap_up_agents_are_never_offered(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, _ = nodes
    msk.cfg = config(
        members=("101", "102", "103", "104", "105"),
        users={"103": {"settings": {"wrap_up_s": 30}}, "105": {"presence": "away"}},
    )
    await busy(msk, "101")
    await msk.store.set_presence("acme", "102", Presence.DO_NOT_DISTURB)
    await busy(msk, "103")
    await free(msk, "103")  # its call just ended: wrap-up
    await msk.store.set_presence("acme", "104", Presence.AWAY)
    await msk.join("c1")
    assert await msk.dispatch() == {}

    clock.now += 31
    assert await msk.dispatch() == {"c1": "103"}
    await msk.join("c2")
    await msk.store.set_presence("acme", "102", Presence.AVAILABLE)
    assert await msk.dispatch() == {"c2": "102"}


async def test_an_agent_with_no_phone_registered_is_not_offered_callers(
    clients: list[redis.Redis], clock: Clock
) -> None:
    bindings = BindingStore(clients[0])
    msk = Node(
        clients[0],
        "acme-msk",
        clock,
        config(members=("101", "102")),
        reachable=lambda extensions: bindings.registered("acme", extensions),
    )
    await bindings.put(
        Binding(
            tenant="acme",
            extension="102",
            contact="sip:102@127.0.0.1:5099",
            path=(),
            expires_at=time.time() + 3600,
            call_id="reg-102",
            cseq=1,
        )
    )
    await msk.join("c1")
    # 101 is first in ring order and free, but has no phone: 102 gets the caller.
    assert await msk.dispatch() == {"c1": "102"}


async def test_an_agent_of_two_groups_gets_one_call(nodes: tuple[Node, Node]) -> None:
    msk, ekb = nodes
    groups = [
        {"name": "support", "members": ["101"], "ring_timeout_s": 30},
        {"name": "sales", "members": ["101"], "ring_timeout_s": 30},
    ]
    for node in nodes:
        node.cfg = config(members=("101",), groups=groups)
    await msk.join("c1", "support")
    await ekb.join("c2", "sales")
    offered = {**await msk.dispatch(), **await ekb.dispatch()}
    assert offered == {"c1": "101"}


async def test_strategies_pick_the_agent(nodes: tuple[Node, Node], clock: Clock) -> None:
    msk, _ = nodes
    msk.cfg = config(strategy="least-recently-called")
    for extension in ("101", "103", "102"):  # 102 ended a call last
        await busy(msk, extension)
        await free(msk, extension)
        clock.now += 1
    await msk.join("c1")
    await msk.join("c2")
    assert await msk.dispatch() == {"c1": "101", "c2": "103"}

    msk.cfg = config(strategy="by-rank", users={"103": {"rank": 5}})
    await msk.join("c3")
    await msk.queue.leave("c1", "support")  # releases 101
    assert await msk.dispatch() == {"c3": "101"}  # 103, ranked first, is offered c2

    msk.cfg = config(strategy="round-robin")
    await msk.queue.leave("c2", "support")
    await msk.queue.leave("c3", "support")
    await msk.join("c4")
    await msk.store.remember_last_member("acme", "support", "101")
    assert await msk.dispatch() == {"c4": "102"}
    assert (await msk.store.snapshot("acme")).last_member == {"support": "102"}


async def test_an_offer_without_outcome_runs_out(nodes: tuple[Node, Node], clock: Clock) -> None:
    msk, _ = nodes
    msk.cfg = config(members=("101", "102"))
    await msk.join("c1")
    assert await msk.dispatch() == {"c1": "101"}
    assert await msk.dispatch() == {}  # one agent at a time for a caller, though 102 is free
    # The executor never reports: after the offer's ringing and the margin, both are free.
    lease = offer_lease_s(msk.cfg.groups[0])
    await later(clock, lease / 2, msk)
    assert await msk.dispatch() == {}
    await later(clock, lease / 2, msk)
    assert await msk.dispatch() == {"c1": "101"}


async def test_a_dead_nodes_callers_expire_and_release_their_agent(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, ekb = nodes
    for node in nodes:
        node.cfg = config(members=("101",))
    await msk.join("c1")
    clock.now += 1
    await ekb.join("c2")
    assert await msk.dispatch() == {"c1": "101"}
    # Moscow dies: nobody refreshes c1, nobody reports the offer's outcome.
    clock.now += ALIVE_S
    await ekb.queue.refresh()
    assert await ekb.queue.position("c1", "support") is None
    assert await ekb.queue.position("c2", "support") == 1
    assert await ekb.dispatch() == {"c2": "101"}


async def test_a_live_node_puts_back_its_vanished_callers_at_their_place(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, ekb = nodes
    await busy(msk, *AGENTS)
    await msk.join("c1")
    clock.now += ALIVE_S + 1  # Moscow stalled, its caller dropped
    await ekb.join("c2")
    assert await ekb.queue.position("c1", "support") is None
    assert await msk.queue.refresh() == 1
    assert await ekb.queue.position("c1", "support") == 1
    assert await ekb.queue.position("c2", "support") == 2


async def test_leave_removes_the_caller_and_releases_its_offer(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, ekb = nodes
    for node in nodes:
        node.cfg = config(members=("101",))
    await msk.join("c1")
    clock.now += 1
    await ekb.join("c2")
    assert await msk.dispatch() == {"c1": "101"}
    await msk.queue.leave("c1", "support")
    await msk.queue.leave("c1", "support")  # idempotent
    assert await msk.queue.position("c1", "support") is None
    assert await ekb.queue.position("c2", "support") == 1
    assert await msk.dispatch() == {}
    assert await ekb.dispatch() == {"c2": "101"}
    # A late outcome for the caller that left changes nothing.
    await msk.queue.back("c1", "support", "101")
    await msk.join("c3")
    assert await msk.dispatch() == {}


async def test_positions_and_expected_wait(nodes: tuple[Node, Node], clock: Clock) -> None:
    msk, ekb = nodes
    await busy(msk, *AGENTS)
    assert [await msk.join("c1"), await ekb.join("c2"), await msk.join("c3")] == [1, 2, 3]
    assert await msk.queue.expected_wait_s("support") is None
    await later(clock, 30, msk, ekb)
    await msk.queue.connected("c1", "support", "101")
    await later(clock, 30, msk, ekb)
    await ekb.queue.connected("c2", "support", "102")
    assert await msk.queue.expected_wait_s("support") == pytest.approx(45.0)
    assert await msk.queue.position("c3", "support") == 1
    clock.now += WAITS_WINDOW_S + 1
    assert await msk.queue.expected_wait_s("support") is None


async def test_the_estimate_is_place_times_the_seconds_a_place_took(
    nodes: tuple[Node, Node], clock: Clock
) -> None:
    msk, ekb = nodes
    await busy(msk, *AGENTS)
    members = len(msk.queue._config().group("support").members)  # type: ignore[union-attr]
    # Nothing known yet: two minutes per caller, shared by the group's members.
    assert await msk.queue.estimate_wait_s("support", 3) == pytest.approx(3 * 120 / members)
    await msk.join("c1")
    await ekb.join("c2")
    await msk.join("c3")
    for _ in range(6):  # in steps shorter than ALIVE_S: nobody is dropped meanwhile
        await later(clock, 5, msk, ekb)
    await msk.queue.connected("c1", "support", "101")  # 30 s from place 1
    for _ in range(6):
        await later(clock, 5, msk, ekb)
    await ekb.queue.connected("c2", "support", "102")  # 60 s from place 2
    assert await msk.queue.estimate_wait_s("support", 1) == pytest.approx(30.0)
    assert await msk.queue.estimate_wait_s("support", 4) == pytest.approx(120.0)


async def test_join_refuses_beyond_max_length(nodes: tuple[Node, Node]) -> None:
    msk, ekb = nodes
    await busy(msk, *AGENTS)
    await msk.join("c1", max_length=2)
    await ekb.join("c2", max_length=2)
    with pytest.raises(QueueFullError):
        await msk.join("c3", max_length=2)
    assert await msk.join("c1", max_length=2) == 1  # already waiting: stays
    assert await msk.queue.position("c3", "support") is None


async def test_the_caller_is_never_offered_to_itself(nodes: tuple[Node, Node]) -> None:
    msk, _ = nodes
    await msk.join("c1", internal_caller="101")
    assert await msk.dispatch() == {"c1": "102"}


async def test_a_group_gone_from_the_config_lets_its_callers_go(
    nodes: tuple[Node, Node],
) -> None:
    msk, _ = nodes
    await msk.join("c1")
    await msk.join("c2", "ghosts")
    assert await msk.dispatch() == {"c1": "101"}
    assert msk.left == {"c2": ["queue gone"]}
    assert await msk.queue.length("ghosts") == 0

    await msk.join("c3")
    await msk.queue.stop()
    assert msk.left["c3"] == ["queue stopped"]
    assert await msk.queue.length("support") == 0


async def test_the_running_loop_wakes_on_joins_and_hints(clients: list[redis.Redis]) -> None:
    clock = Clock()
    # No poll to speak of: only a join here and a pub/sub hint wake the loop.
    msk = Node(clients[0], "acme-msk", clock, config(members=("101",)), poll_s=60.0)
    ekb = Node(clients[1], "acme-ekb", clock, config(members=("101",)), poll_s=60.0)
    await busy(msk, "101")
    msk.queue.start()
    try:
        await asyncio.wait_for(msk.queue.subscribed.wait(), 5)
        await msk.join("c1")
        await asyncio.sleep(0.2)
        assert msk.offers == {}
        await free(ekb, "101")  # another node ends the agent's call
        await asyncio.wait_for(msk.offered.wait(), 5)
        assert msk.offers == {"c1": ["101"]}

        await msk.queue.leave("c1", "support")
        msk.offered.clear()
        await msk.join("c2")
        await asyncio.wait_for(msk.offered.wait(), 5)
        assert msk.offers["c2"] == ["101"]
    finally:
        await msk.queue.stop()


async def test_concurrent_dispatch_never_double_offers(clients: list[redis.Redis]) -> None:
    """Two nodes, real time, many callers, random outcomes: never one agent offered two
    callers or a talking agent offered, never one caller offered two agents; all served."""
    rng = random.Random(7)
    cfg = config(members=("101", "102", "103", "104"), strategy="round-robin")
    timing = {"poll_s": 0.05, "refresh_s": 0.5, "settle_s": 0.05, "retry_agent_after_s": 0.05}
    nodes = [
        Node(client, f"acme-{i}", time.time, cfg, **timing) for i, client in enumerate(clients)
    ]
    ringing: dict[str, str] = {}  # extension -> the call offered to it now
    talking: set[str] = set()
    violations: list[str] = []
    connected: list[str] = []
    done = asyncio.Event()  # everybody served, or a violation
    offers = 0
    tasks: set[asyncio.Task[None]] = set()

    async def outcome(node: Node, call_id: str, extension: str) -> None:
        await asyncio.sleep(rng.uniform(0, 0.03))
        del ringing[extension]
        if rng.random() < 0.4:
            await node.queue.back(call_id, "support", extension)
            return
        talking.add(extension)
        await node.store.call_answered("acme", extension, call_id)
        await node.queue.connected(call_id, "support", extension)
        connected.append(call_id)
        if len(connected) == len(calls):
            done.set()
        await asyncio.sleep(rng.uniform(0, 0.05))
        talking.discard(extension)
        await node.store.call_ended("acme", extension, call_id)

    def on_offer(node: Node, call_id: str, extension: str) -> None:
        nonlocal offers
        offers += 1
        if extension in ringing or extension in talking:
            violations.append(f"{extension} offered {call_id} while busy")
        if call_id in ringing.values():
            violations.append(f"{call_id} offered {extension} while another rings")
        if violations:
            done.set()
        ringing[extension] = call_id
        task = asyncio.get_running_loop().create_task(outcome(node, call_id, extension))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def join(i: int, call_id: str) -> None:
        node = nodes[i % 2]
        await asyncio.sleep(rng.uniform(0, 0.2))
        await node.queue.join(
            call_id,
            "support",
            lambda extension: on_offer(node, call_id, extension),
            lambda reason: violations.append(f"{call_id} left: {reason}"),
        )

    calls = [f"call-{i:02d}" for i in range(40)]
    for node in nodes:
        node.queue.start()
    try:
        await asyncio.gather(*(join(i, call_id) for i, call_id in enumerate(calls)))
        await asyncio.wait_for(done.wait(), 60)
    finally:
        for node in nodes:
            await node.queue.stop()
        for task in list(tasks):
            task.cancel()
    assert violations == []
    assert sorted(connected) == calls
    assert offers > len(calls)  # some offers went unanswered and were made again


async def test_a_reader_sees_every_citys_waiting_callers_and_not_a_dead_nodes(
    nodes: tuple[Node, Node], clients: list[redis.Redis], clock: Clock
) -> None:
    """``vpbx_common.queues.QueueView`` (the CRM's live board) reads the dispatcher's keys."""
    msk, ekb = nodes
    await busy(msk, *AGENTS)
    view = QueueView(clients[0], clock)
    await msk.join("c1")
    clock.now += 2
    await ekb.join("c2")
    clock.now += 1
    await msk.join("c3", "sales")
    assert [(w.call_id, w.queue, w.joined_ms) for w in await view.waiting("acme", ["support"])] == [
        ("c1", "support", 1_800_000_000_000),
        ("c2", "support", 1_800_000_002_000),
    ]
    assert [w.call_id for w in await view.waiting("acme", ["support", "sales"])] == [
        "c1",
        "c2",
        "c3",
    ]
    assert await view.waiting("globex", ["support"]) == []
    await msk.queue.leave("c1", "support")
    # Moscow dies: its callers stop counting as soon as nobody keeps them alive.
    clock.now += ALIVE_S + 1
    await ekb.queue.refresh()
    assert [w.call_id for w in await view.waiting("acme", ["support", "sales"])] == ["c2"]

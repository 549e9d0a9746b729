"""The queue dispatcher: queued callers of every city, offered to free agents, first come
first served.

A tenant runs one media node per city; each node holds the callers who dialled in
there. A group's queue spans all of them: one fair order across cities and one
picture of who is free, both in Redis. Each node runs one ``QueueDispatcher``.

The queue (per tenant and group)
    A sorted set of waiting call ids scored by the time they joined: the order.
    Per call an entry (the node holding it, join time, the agent offered now and
    until when, the agents it skips for a while) and an "alive until" time that
    the holding node refreshes every ``REFRESH_S``. A node that dies stops
    refreshing: its callers are dropped ``ALIVE_S`` later by whichever script
    runs next, and any agent offered to them is released with them. A live node
    whose entries vanished anyway (it stalled, Redis lost them) puts them back
    with their original join time: the node's own list of callers is the truth,
    Redis the shared view. A caller handed back after an unanswered offer keeps
    its score, so its place.

Offers
    An offer is a lease: the agent is offered one caller, the caller one agent,
    until the outcome comes (or the lease runs out: the offer's ringing time plus
    ``OFFER_MARGIN_S``, so an outcome that never comes frees both). Taking it is
    one Lua script that checks, atomically:

    - the agent holds no lease (tenant-wide: an agent of several groups is
      offered one call at a time whatever the queue);
    - the caller is waiting, holds no lease, and does not skip this agent;
    - no caller before it in the queue could take this agent (everybody earlier
      is being offered somebody else, or skips this agent): FIFO across cities.

    So two nodes dispatching at once can never offer one agent twice or one
    caller twice, and never jump the queue. The outcomes: connected (the caller
    leaves; the agent stays leased ``settle_s`` more, until the talking state
    the executor writes is visible), not answered (``back``: the caller keeps its
    place and skips that agent for ``RETRY_SAME_AGENT_AFTER_S``, so another free
    agent gets it), or the caller left (``leave``).

Who dispatches
    A node offers only the callers it holds (it alone can ring for them), in
    queue order; the script's FIFO check makes that fair across nodes: a free
    agent waits for the global head's node to take it (within a round) rather
    than going to a later caller here. The cost: a dead node's head blocks the
    agents it could take until it expires (``ALIVE_S``).

    A round: read the live agent state (``AgentStateStore``) once, list the
    members of the group in its strategy's order (``ring_order``: round-robin
    after the member offered last, least-recently-called, by-rank; ring-all,
    sequential and escalating offer in list order), keep those free (not on a
    call, available, out of wrap-up) and not leased, then try this node's callers
    in order against them. Rounds run when a caller joins here, on a hint from
    another node (pub/sub: an outcome or offer changed the queue; an agent's call
    ended or presence became available), and every ``poll_s`` whatever (wrap-ups
    end silently, hints get lost).

Expected wait
    ``expected_wait_s`` is the mean wait of the last ``WAITS_KEPT`` callers
    connected from the queue in the last ``WAITS_WINDOW_S`` (the average speed of
    answer), not position x handling time: the node never learns when a queue
    call ends, and the mean already reflects how many agents serve the queue.
    Callers who gave up do not count, so a queue many abandon reads short.

    ``estimate_wait_s(group, position)`` is what a caller is told: position x the
    seconds one place in the queue took recently. Each connected caller's wait is
    kept with the place it joined at, so waited / place is how long the queue took
    to move by one for them; the mean over the same recent callers, times the
    caller's place, is the estimate. With no such caller yet it is position x
    ``DEFAULT_HANDLE_S`` / the group's members (each member takes a caller about
    every two minutes): a guess, said as one.

What the call's executor does (the router's queue step, ``routing/queue.py``)
    - ``JoinQueue`` -> ``join`` (with its ``max_length``); ``QueueFullError`` or a Redis
      error: feed the router ``QueueLeft`` with the reason.
    - ``AskQueueStatus`` -> ``position`` and ``estimate_wait_s``, fed back as
      ``QueueStatus`` (unknown on a Redis error: that announcement is skipped).
    - ``on_offer(extension)`` -> hand the router a fresh agent snapshot
      (``update_agents``; its own is from the call's start and would refuse an agent
      who has become free since), then feed ``QueueOffer(extension)``.
    - ``on_left(reason)`` -> feed ``QueueLeft(reason)``.
    - ``BackToQueue`` -> ``back``.
    - ``LeaveQueue`` with reason ``answered`` (a ``Connect`` follows) -> mark the agent
      talking (``AgentStateStore.call_answered``), then ``connected``.
    - any other ``LeaveQueue``, and the call ending in any way while queued -> ``leave``
      (idempotent).
    - the node: ``start`` with the node, ``stop`` after its calls ended (drain: the
      queued callers are still served meanwhile).

Keys (``{tenant}`` is a hash tag: one cluster slot per tenant, the scripts' keys
together)::

    vpbx:queue:{<tenant>}:<group>:wait   zset call id -> join time (epoch s): the order
    vpbx:queue:{<tenant>}:<group>:alive  zset call id -> alive until (epoch s)
    vpbx:queue:{<tenant>}:<group>:entry  hash call id -> JSON {n: node, j: joined,
                                         p: place on joining,
                                         a: agent offered, u: offer until,
                                         s: {agent: skip until}, c: the caller's own
                                         extension, never offered to it}
    vpbx:queue:{<tenant>}:<group>:waits  list "<connected at> <waited s> <place on
                                         joining>", newest first
    vpbx:queue:{<tenant>}:offers         zset extension -> lease until (tenant-wide)
    vpbx:queue:{<tenant>}:offer          hash extension -> call id holding the lease
    vpbx:queue:{<tenant>}:wake           pub/sub: the queue of <group> changed

All times are epoch seconds from the dispatcher's clock (the nodes' clocks agree
within far less than the windows used here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis

from vpbx_common.agents import AgentStates, AgentStateStore
from vpbx_common.nodeconfig import GroupEntry, NodeConfig
from vpbx_common.pbx import RingStrategy
from vpbx_common.queues import queue_base

from .routing import AgentSnapshot, Availability
from .routing.queue import QUEUE_OFFER_RING_S
from .routing.ringing import ring_order

logger = logging.getLogger(__name__)

POLL_S = 1.0  # a round runs at least this often while callers wait here
REFRESH_S = 2.0  # the node marks its callers alive this often
ALIVE_S = 6.0  # a caller nobody refreshed for this long is dropped (its node died)
OFFER_MARGIN_S = 10.0  # an offer's lease outlasts its ringing by this much (call setup)
RETRY_SAME_AGENT_AFTER_S = 20.0  # a caller whose offer failed skips that agent so long
SETTLE_S = 2.0  # an agent who answered stays leased until their talking state shows
WAITS_KEPT = 20
WAITS_WINDOW_S = 3600.0
DEFAULT_HANDLE_S = 120.0  # the guess per caller and agent before any wait is known
_KEY_TTL_S = 24 * 3600  # keys of a queue nobody touches go away on their own
_RETRY_S = 1.0  # after a Redis error in the loops


# Extensions -> those of them with a registered device.
Reachable = Callable[[list[str]], Awaitable[set[str]]]


class QueueFullError(Exception):
    """``join`` refused: the queue holds ``max_length`` callers already."""

    def __init__(self, group: str, max_length: int) -> None:
        super().__init__(f"queue full ({max_length} callers waiting in group {group})")
        self.group = group
        self.max_length = max_length


_PRELUDE = """
local WAIT, ALIVE, ENTRY = KEYS[1], KEYS[2], KEYS[3]
local OFFERS, OFFER, WAITS = KEYS[4], KEYS[5], KEYS[6]

local function leased(e, now)
    return e.a ~= nil and tonumber(e.u) > now
end

local function skips(e, ext, now)
    if e.c == ext then
        return true
    end
    local till = e.s[ext]
    return till ~= nil and till > now
end

local function release(ext, call)
    if redis.call('HGET', OFFER, ext) == call then
        redis.call('ZREM', OFFERS, ext)
        redis.call('HDEL', OFFER, ext)
    end
end

local function drop(call)
    local raw = redis.call('HGET', ENTRY, call)
    if raw then
        local e = cjson.decode(raw)
        if e.a then
            release(e.a, call)
        end
    end
    redis.call('ZREM', WAIT, call)
    redis.call('ZREM', ALIVE, call)
    redis.call('HDEL', ENTRY, call)
    return raw
end

local function purge(now)
    for _, call in ipairs(redis.call('ZRANGEBYSCORE', ALIVE, '-inf', now)) do
        drop(call)
    end
    for _, ext in ipairs(redis.call('ZRANGEBYSCORE', OFFERS, '-inf', now)) do
        redis.call('HDEL', OFFER, ext)
    end
    redis.call('ZREMRANGEBYSCORE', OFFERS, '-inf', now)
end

local function add(call, node, joined, caller)
    redis.call('ZADD', WAIT, joined, call)
    local e = {n = node, j = tonumber(joined), s = {}}
    if caller ~= '' then
        e.c = caller
    end
    redis.call('HSET', ENTRY, call, cjson.encode(e))
end

local function keep(ttl)
    for i = 1, #KEYS do
        redis.call('EXPIRE', KEYS[i], ttl)
    end
end
"""

# ARGV: call, node, now, alive until, joined, max length (0: none), key ttl, caller's
# extension -> position (1 = next), 0: full
_JOIN = """
local call, now = ARGV[1], tonumber(ARGV[3])
purge(now)
if not redis.call('ZSCORE', WAIT, call) then
    local max = tonumber(ARGV[6])
    if max > 0 and redis.call('ZCARD', WAIT) >= max then
        return 0
    end
    add(call, ARGV[2], ARGV[5], ARGV[8])
    local e = cjson.decode(redis.call('HGET', ENTRY, call))
    e.p = redis.call('ZRANK', WAIT, call) + 1
    redis.call('HSET', ENTRY, call, cjson.encode(e))
end
redis.call('ZADD', ALIVE, ARGV[4], call)
keep(ARGV[7])
return redis.call('ZRANK', WAIT, call) + 1
"""

# ARGV: node, now, alive until, key ttl, then (call, joined, caller's extension) each
# -> the calls put back (they had vanished)
_REFRESH = """
local now, alive = tonumber(ARGV[2]), ARGV[3]
for i = 5, #ARGV, 3 do
    if redis.call('ZSCORE', WAIT, ARGV[i]) then
        redis.call('ZADD', ALIVE, alive, ARGV[i])
    end
end
purge(now)
local back = {}
for i = 5, #ARGV, 3 do
    local call = ARGV[i]
    if not redis.call('ZSCORE', WAIT, call) then
        add(call, ARGV[1], ARGV[i + 1], ARGV[i + 2])
        redis.call('ZADD', ALIVE, alive, call)
        table.insert(back, call)
    end
end
keep(ARGV[4])
return back
"""

# ARGV: call, extension, now, lease until -> 'ok' or why not
_OFFER = """
local call, ext, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
purge(now)
if redis.call('ZSCORE', OFFERS, ext) then
    return 'agent-busy'
end
local raw = redis.call('HGET', ENTRY, call)
local rank = redis.call('ZRANK', WAIT, call)
if not raw or not rank then
    return 'gone'
end
local e = cjson.decode(raw)
if leased(e, now) then
    return 'caller-offered'
end
if skips(e, ext, now) then
    return 'skipped'
end
if rank > 0 then
    for _, other in ipairs(redis.call('ZRANGE', WAIT, 0, rank - 1)) do
        local o = redis.call('HGET', ENTRY, other)
        if o then
            o = cjson.decode(o)
            if not leased(o, now) and not skips(o, ext, now) then
                return 'not-first'
            end
        end
    end
end
e.a = ext
e.u = tonumber(ARGV[4])
redis.call('HSET', ENTRY, call, cjson.encode(e))
redis.call('ZADD', OFFERS, ARGV[4], ext)
redis.call('HSET', OFFER, ext, call)
return 'ok'
"""

# ARGV: call, extension, now, skip until -> 1 when it ended this call's offer to extension
_BACK = """
local call, ext, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
purge(now)
local ended = 0
if redis.call('HGET', OFFER, ext) == call then
    redis.call('ZREM', OFFERS, ext)
    redis.call('HDEL', OFFER, ext)
    ended = 1
end
local raw = redis.call('HGET', ENTRY, call)
if raw then
    local e = cjson.decode(raw)
    if e.a == ext then
        e.a = nil
        e.u = nil
    end
    local s = {}
    for agent, till in pairs(e.s) do
        if till > now then
            s[agent] = till
        end
    end
    s[ext] = tonumber(ARGV[4])
    e.s = s
    redis.call('HSET', ENTRY, call, cjson.encode(e))
end
return ended
"""

# ARGV: call, extension, now, settle until, waits kept, key ttl, '1' when the wait counts
# -> seconds waited, '' if gone or not counted
_CONNECTED = """
local call, ext, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
purge(now)
local raw = drop(call)
local waited = ''
if raw and ARGV[7] == '1' then
    local e = cjson.decode(raw)
    waited = now - e.j
    redis.call('LPUSH', WAITS, ARGV[3] .. ' ' .. waited .. ' ' .. (e.p or 1))
    redis.call('LTRIM', WAITS, 0, tonumber(ARGV[5]) - 1)
    redis.call('EXPIRE', WAITS, ARGV[6])
end
if tonumber(ARGV[4]) > now and not redis.call('HGET', OFFER, ext) then
    redis.call('ZADD', OFFERS, ARGV[4], ext)
    redis.call('HSET', OFFER, ext, call)
end
return tostring(waited)
"""

# ARGV: call, now -> 1 when it was waiting
_LEAVE = """
purge(tonumber(ARGV[2]))
if drop(ARGV[1]) then
    return 1
end
return 0
"""

# ARGV: call ('' for none), now -> {position (0: not waiting), length}
_STATUS = """
purge(tonumber(ARGV[2]))
local rank = false
if ARGV[1] ~= '' then
    rank = redis.call('ZRANK', WAIT, ARGV[1])
end
return {rank and rank + 1 or 0, redis.call('ZCARD', WAIT)}
"""


def _raise_if_cancelled() -> None:
    """redis.asyncio sometimes swallows a cancellation that lands inside a command
    (redis/redis-py#2028): loops check that they were cancelled before going on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def agent_snapshot(states: AgentStates) -> AgentSnapshot:
    """The router's view of a tenant's live agent state (devices are not counted)."""
    return AgentSnapshot.from_states(states)


def offer_lease_s(group: GroupEntry) -> float:
    """How long an offer holds agent and caller: the router rings the agent this long,
    plus the margin for call setup."""
    return float(group.member_ring_s or QUEUE_OFFER_RING_S) + OFFER_MARGIN_S


@dataclass(eq=False, slots=True)
class _Waiter:
    call_id: str
    group: str
    joined: float
    internal_caller: str  # '' for an outside caller
    on_offer: Callable[[str], None]
    on_left: Callable[[str], None]
    offered: str | None = None
    offered_until: float = 0.0


class QueueDispatcher:
    """One node's share of its tenant's queues (see the module docstring).

    Callbacks run on the dispatcher's task, never inside the awaited methods,
    and must not block (put an event in the call's queue):

    - ``on_offer(extension)``: ring this agent for the caller alone; report the
      outcome with ``connected``, ``back`` or ``leave``. At most one offer is out per
      caller until then (or until its lease runs out).
    - ``on_left(reason)``: the dispatcher took the caller out (the group is gone
      from the config or has no members, the dispatcher stops); nothing more to
      report.
    """

    def __init__(
        self,
        client: redis.Redis,
        tenant: str,
        node_name: str,
        config: Callable[[], NodeConfig],
        agents: AgentStateStore,
        clock: Callable[[], float] = time.time,
        *,
        poll_s: float = POLL_S,
        refresh_s: float = REFRESH_S,
        settle_s: float = SETTLE_S,
        retry_agent_after_s: float = RETRY_SAME_AGENT_AFTER_S,
        reachable: Reachable | None = None,
    ) -> None:
        self._redis = client
        # Which of these extensions have a device registered now (None: assume all): an
        # agent who is free but logged out of every phone is not offered callers.
        self._reachable = reachable
        self.tenant = tenant
        self.node_name = node_name
        self._config = config
        self._agents = agents
        self._clock = clock
        self.poll_s = poll_s
        self.refresh_s = refresh_s
        self.settle_s = settle_s
        self.retry_agent_after_s = retry_agent_after_s
        self._waiters: dict[tuple[str, str], _Waiter] = {}  # (call id, group) -> waiter
        # Every change of this node's callers, in Redis and here, happens under it: a
        # round never re-adds or offers a caller that left while it ran.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._base = queue_base(tenant)  # shared with the readers (vpbx_common.queues)
        self.wake_channel = f"{self._base}:wake"
        self._offers_key = f"{self._base}:offers"
        self._join = client.register_script(_PRELUDE + _JOIN)
        self._refresh = client.register_script(_PRELUDE + _REFRESH)
        self._offer = client.register_script(_PRELUDE + _OFFER)
        self._back = client.register_script(_PRELUDE + _BACK)
        self._connected = client.register_script(_PRELUDE + _CONNECTED)
        self._leave = client.register_script(_PRELUDE + _LEAVE)
        self._status = client.register_script(_PRELUDE + _STATUS)

    def keys(self, group: str) -> list[str]:
        """The keys every script gets, in the order of its KEYS."""
        queue = f"{self._base}:{group}"
        return [
            f"{queue}:wait",
            f"{queue}:alive",
            f"{queue}:entry",
            self._offers_key,
            f"{self._base}:offer",
            f"{queue}:waits",
        ]

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name=f"queue-dispatch-{self.tenant}"),
            loop.create_task(self._listen(), name=f"queue-listen-{self.tenant}"),
        ]

    async def stop(self) -> None:
        """Stop dispatching; callers still waiting here leave (``on_left``)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        async with self._lock:
            waiters = list(self._waiters.values())
            self._waiters.clear()
            for waiter in waiters:
                await self._drop(waiter)
        for waiter in waiters:
            self._tell_left(waiter, "queue stopped")

    # --- the executor's side ---------------------------------------------------

    async def join(
        self,
        call_id: str,
        group: str,
        on_offer: Callable[[str], None],
        on_left: Callable[[str], None],
        *,
        max_length: int | None = None,
        internal_caller: str | None = None,
        joined_at: float | None = None,
    ) -> int:
        """Queue the caller at the end (or where it is, if it waits already); its position.

        ``max_length``: refuse with ``QueueFullError`` when that many callers wait
        (in all cities). ``internal_caller``: the extension calling, never offered to
        itself. ``joined_at``: the place kept from an earlier wait (a callback coming
        back after an attempt), instead of the end. Raises ``redis.RedisError`` when
        Redis is unreachable.
        """
        now = self._clock()
        async with self._lock:
            waiter = self._waiters.get((call_id, group))
            joined = waiter.joined if waiter is not None else (joined_at or now)
            position = int(
                await self._join(
                    keys=self.keys(group),
                    args=[
                        call_id,
                        self.node_name,
                        now,
                        now + ALIVE_S,
                        joined,
                        max_length or 0,
                        _KEY_TTL_S,
                        internal_caller or "",
                    ],
                )
            )
            if position == 0:
                raise QueueFullError(group, max_length or 0)
            if waiter is None:
                self._waiters[(call_id, group)] = _Waiter(
                    call_id, group, joined, internal_caller or "", on_offer, on_left
                )
        self._log(logging.INFO, call_id, "joined queue %s at position %d", group, position)
        self._wake.set()
        return position

    async def waiting_since(self, call_id: str, group: str) -> float | None:
        """When the caller joined (its place); None: it does not wait here."""
        async with self._lock:
            waiter = self._waiters.get((call_id, group))
            return waiter.joined if waiter is not None else None

    async def hand_over(
        self,
        call_id: str,
        group: str,
        on_offer: Callable[[str], None],
        on_left: Callable[[str], None],
    ) -> float | None:
        """Someone else takes over a waiting caller's place (a callback): from now on
        offers and the end go to these callbacks. The place's join time; None: the
        caller does not wait here (any more)."""
        async with self._lock:
            waiter = self._waiters.get((call_id, group))
            if waiter is None:
                return None
            waiter.on_offer, waiter.on_left = on_offer, on_left
            return waiter.joined

    async def back(self, call_id: str, group: str, extension: str) -> None:
        """The offer to ``extension`` did not become a call: the caller keeps its place
        and skips that agent for ``retry_agent_after_s``; the agent is free for others."""
        now = self._clock()
        async with self._lock:
            waiter = self._waiters.get((call_id, group))
            if waiter is not None and waiter.offered == extension:
                waiter.offered, waiter.offered_until = None, 0.0
            with self._logged(call_id, "back to queue"):
                await self._back(
                    keys=self.keys(group),
                    args=[call_id, extension, now, now + self.retry_agent_after_s],
                )
        await self._announce(group)
        self._wake.set()

    async def connected(
        self, call_id: str, group: str, extension: str, *, counts: bool = True
    ) -> None:
        """The caller is talking to ``extension``: it leaves the queue, its wait counts
        for ``expected_wait_s`` (unless ``counts`` is off: a callback's place, whose
        wait is not a caller waiting on the line). Mark the agent talking
        (``AgentStateStore``) first or within ``settle_s``."""
        now = self._clock()
        async with self._lock:
            self._waiters.pop((call_id, group), None)
            with self._logged(call_id, "connected"):
                await self._connected(
                    keys=self.keys(group),
                    args=[
                        call_id,
                        extension,
                        now,
                        now + self.settle_s,
                        WAITS_KEPT,
                        _KEY_TTL_S,
                        "1" if counts else "0",
                    ],
                )
        await self._announce(group)
        self._wake.set()

    async def leave(self, call_id: str, group: str) -> None:
        """The caller stops waiting (hung up, waited long enough, anything but an answer).
        Idempotent; an offer still out is released."""
        async with self._lock:
            waiter = self._waiters.pop((call_id, group), None)
            with self._logged(call_id, "leave"):
                await self._leave(keys=self.keys(group), args=[call_id, self._clock()])
        if waiter is not None:
            self._log(logging.INFO, call_id, "left queue %s", group)
        await self._announce(group)
        self._wake.set()

    async def position(self, call_id: str, group: str) -> int | None:
        """1 = the next caller offered; None: not waiting (any more)."""
        position, _ = await self._status(keys=self.keys(group), args=[call_id, self._clock()])
        return int(position) or None

    async def length(self, group: str) -> int:
        """Callers waiting in the group's queue, in all cities."""
        _, length = await self._status(keys=self.keys(group), args=["", self._clock()])
        return int(length)

    async def expected_wait_s(self, group: str) -> float | None:
        """The mean wait of the callers recently connected from this queue; None: none."""
        waits = [waited for waited, _ in await self._recent_waits(group)]
        return sum(waits) / len(waits) if waits else None

    async def estimate_wait_s(self, group: str, position: int) -> float:
        """What a caller at ``position`` may expect to wait (the module docstring says how)."""
        per_place = [waited / place for waited, place in await self._recent_waits(group)]
        if per_place:
            return position * sum(per_place) / len(per_place)
        entry = self._config().group(group)
        agents = len(entry.members) if entry is not None else 0
        return position * DEFAULT_HANDLE_S / max(1, agents)

    async def _recent_waits(self, group: str) -> list[tuple[float, int]]:
        """(seconds waited, place on joining) of the callers recently connected."""
        since = self._clock() - WAITS_WINDOW_S
        waits: list[tuple[float, int]] = []
        for item in await self._redis.lrange(self.keys(group)[5], 0, WAITS_KEPT - 1):
            fields = _text(item).split()
            try:
                at, waited = float(fields[0]), float(fields[1])
                # Entries written before places were kept count as the first place.
                place = int(fields[2]) if len(fields) > 2 else 1
            except (IndexError, ValueError):
                logger.warning("tenant=%s queue %s: unreadable wait %r", self.tenant, group, item)
                continue
            if at >= since:
                waits.append((waited, max(1, place)))
        return waits

    # --- rounds ------------------------------------------------------------------

    async def dispatch(self) -> int:
        """One round over this node's callers; how many offers it made."""
        async with self._lock:
            if not self._waiters:
                return 0
            config = self._config()
            now = self._clock()
            snapshot = agent_snapshot(await self._agents.snapshot(self.tenant))
            offers = await self._redis.zrangebyscore(self._offers_key, f"({now}", "+inf")
            leased = {_text(extension) for extension in cast("list[bytes | str]", offers)}
            ranks = {user.extension: user.rank for user in config.users}
            by_group: dict[str, list[_Waiter]] = {}
            for waiter in self._waiters.values():
                by_group.setdefault(waiter.group, []).append(waiter)
            made = 0
            for name, waiters in by_group.items():
                group = config.group(name)
                if group is None or not group.members:
                    await self._close(waiters, "queue gone" if group is None else "no members")
                    continue
                free = [
                    extension
                    for extension in ring_order(group, snapshot, ranks)
                    if extension not in leased and self._free(config, snapshot, extension, now)
                ]
                if free and self._reachable is not None:
                    registered = await self._reachable(free)
                    free = [extension for extension in free if extension in registered]
                waiters.sort(key=lambda w: (w.joined, w.call_id))
                made += await self._offer_round(group, waiters, free, leased, now)
        if made:
            await self._announce("")
        return made

    async def refresh(self) -> int:
        """Mark this node's callers alive; put back any that vanished. How many came back."""
        async with self._lock:
            by_group: dict[str, list[_Waiter]] = {}
            for waiter in self._waiters.values():
                by_group.setdefault(waiter.group, []).append(waiter)
            now = self._clock()
            restored = 0
            for group, waiters in by_group.items():
                args: list[Any] = [self.node_name, now, now + ALIVE_S, _KEY_TTL_S]
                for waiter in waiters:
                    args += [waiter.call_id, waiter.joined, waiter.internal_caller]
                back = await self._refresh(keys=self.keys(group), args=args)
                for call_id in back:
                    restored += 1
                    self._log(logging.WARNING, _text(call_id), "back in queue %s", group)
                    waiter = self._waiters[(_text(call_id), group)]
                    waiter.offered, waiter.offered_until = None, 0.0
            return restored

    async def _offer_round(
        self,
        group: GroupEntry,
        waiters: list[_Waiter],
        free: list[str],
        leased: set[str],
        now: float,
    ) -> int:
        made = 0
        keys = self.keys(group.name)
        lease_until = now + offer_lease_s(group)
        for waiter in waiters:
            if not free:
                break
            if waiter.offered_until > now:
                continue
            for extension in list(free):
                result = _text(
                    await self._offer(keys=keys, args=[waiter.call_id, extension, now, lease_until])
                )
                if result == "ok":
                    free.remove(extension)
                    leased.add(extension)
                    waiter.offered, waiter.offered_until = extension, lease_until
                    made += 1
                    self._log(
                        logging.INFO, waiter.call_id, "queue %s offers %s", group.name, extension
                    )
                    try:
                        waiter.on_offer(extension)
                    except Exception:
                        logger.exception(
                            "call=%s tenant=%s on_offer failed", waiter.call_id, self.tenant
                        )
                    if group.strategy is RingStrategy.ROUND_ROBIN:
                        with self._logged(waiter.call_id, "round-robin pointer"):
                            await self._agents.remember_last_member(
                                self.tenant, group.name, extension
                            )
                    break
                if result in ("agent-busy", "not-first"):
                    # Leased meanwhile, or owed to an earlier caller (maybe in another
                    # city): no later caller here may take it either.
                    free.remove(extension)
                    if result == "agent-busy":
                        leased.add(extension)
                    continue
                if result == "skipped":
                    continue
                break  # caller-offered, gone: the next refresh repairs
        return made

    async def _close(self, waiters: list[_Waiter], reason: str) -> None:
        for waiter in waiters:
            self._waiters.pop((waiter.call_id, waiter.group), None)
            await self._drop(waiter)
            self._log(logging.INFO, waiter.call_id, "queue %s closed: %s", waiter.group, reason)
            self._tell_left(waiter, reason)

    async def _drop(self, waiter: _Waiter) -> None:
        with self._logged(waiter.call_id, "leave"):
            await self._leave(keys=self.keys(waiter.group), args=[waiter.call_id, self._clock()])

    @staticmethod
    def _free(config: NodeConfig, snapshot: AgentSnapshot, extension: str, now: float) -> bool:
        user = config.user(extension)
        return user is not None and snapshot.availability(user, now) is Availability.FREE

    def _tell_left(self, waiter: _Waiter, reason: str) -> None:
        try:
            waiter.on_left(reason)
        except Exception:
            logger.exception("call=%s tenant=%s on_left failed", waiter.call_id, self.tenant)

    # --- loops ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        while True:
            _raise_if_cancelled()
            # Not wait_for: on 3.11 it swallows a cancel that meets a wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.refresh_s
                    await self.refresh()
                await self.dispatch()
            except (redis.RedisError, OSError) as exc:
                _raise_if_cancelled()
                logger.warning("tenant=%s queue round failed: %s", self.tenant, exc)
                await asyncio.sleep(_RETRY_S)

    async def _listen(self) -> None:
        while True:
            _raise_if_cancelled()
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.wake_channel, AgentStateStore.free_channel(self.tenant))
                self.subscribed.set()
                self._wake.set()  # hints sent while (re)connecting are lost: look once now
                async for message in pubsub.listen():
                    _raise_if_cancelled()
                    if message.get("type") == "message":
                        self._wake.set()
            except (redis.RedisError, OSError) as exc:
                logger.warning("tenant=%s queue hints unavailable: %s", self.tenant, exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(_RETRY_S)

    async def _announce(self, group: str) -> None:
        """Hint the other nodes: an agent or the queue's head may be theirs now."""
        try:
            await self._redis.publish(self.wake_channel, group)
        except (redis.RedisError, OSError) as exc:
            logger.debug("tenant=%s queue hint not sent: %s", self.tenant, exc)

    @contextlib.contextmanager
    def _logged(self, call_id: str, what: str) -> Iterator[None]:
        """Outcomes never fail the call: without Redis, leases and entries run out."""
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            self._log(logging.WARNING, call_id, "queue %s not recorded: %s", what, exc)

    def _log(self, level: int, call_id: str, message: str, *args: object) -> None:
        logger.log(level, "call=%s tenant=%s " + message, call_id, self.tenant, *args)

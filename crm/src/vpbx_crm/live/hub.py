"""The live hub: tails the call-event stream and fans events out to connected browsers.

Not the durable reader (``events/handler.py``, consumer group ``crm``): a plain
``XREAD BLOCK`` from ``$`` on a Redis connection of its own, no group, no acknowledgement,
no database on the way. Every CRM replica tails the stream itself and serves the browsers
connected to it; an event published while a replica was not reading is not shown by it
(a screen pop is worth something only for the seconds a phone rings).

Per event: the tenant's board (calls, queue waits, agent states) takes it in, then each
subscriber of the tenant whose extension the call concerns gets it (a ``screen-pop`` for
``call.offered``, else a ``call``; a queue's ``call.queued``/``call.dequeued`` only
supervisors), and supervisors get every event, the changed agent list and the call's
row of the board (``board-call``, ``board-call-ended``). A supervisor connecting gets
the agents and the whole board (``board``) first, the deltas after. Who waits in the
tenant's queues is also read from Redis (the dispatcher's keys, every city's callers)
on connect and every tick, so a replica that started late, or missed an event, still
shows each waiting caller with their wait. A subscriber
has a bounded queue; one that does not keep up is dropped (its browser reconnects) rather
than slowing the others. The caller's card (company, open deals) is read from the database
after the pop went out and follows as a ``card`` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from vpbx_common.agents import AgentStates, AgentStateStore
from vpbx_common.cdr import EndReason
from vpbx_common.events import (
    CALL_EVENTS_STREAM,
    CallEvent,
    CallEventError,
    CallEventType,
    event_from_fields,
)
from vpbx_common.queues import QueueView
from vpbx_control.db.session import Database
from vpbx_control.identity.schemas import Directory

from ..identity import IdentityClient, IdentityUnavailableError, TenantDirectory
from . import messages
from .board import AgentActivity, AgentLive, TenantBoard, extensions_of, is_extension
from .cards import load_card

logger = logging.getLogger(__name__)

QUEUE_SIZE = 256


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class Subscriber:
    """One browser's feed: who it is and the messages waiting for its writer."""

    tenant: str
    user_id: str | None  # None: a supervisor's API key (no extension of its own)
    supervisor: bool
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    too_slow: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, text: str) -> None:
        if self.too_slow.is_set():
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.too_slow.set()


class LiveHub:
    def __init__(
        self,
        redis_url: str,
        identity: IdentityClient,
        database: Database,
        *,
        block_s: float = 1.0,
        directory_ttl_s: float = 10.0,
        tick_s: float = 1.0,
        stream: str = CALL_EVENTS_STREAM,
        clock: Callable[[], int] = now_ms,
        agents: AgentStateStore | None = None,
        queues: QueueView | None = None,
    ) -> None:
        self._redis_url = redis_url
        self._identity = identity
        self._database = database
        self._block_s = block_s
        self._directory_ttl_s = directory_ttl_s
        self._tick_s = tick_s
        self._stream = stream
        self._clock = clock
        # The nodes' and the control API's live picture in Redis (who talks, when each
        # call ended, presence set a moment ago): shared by every replica, so a CRM that
        # started mid-call, or missed an event, still shows the agent busy.
        self._agents = agents
        self._queues = queues
        self._redis: redis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._boards: dict[str, TenantBoard] = {}
        self._directories: dict[str, tuple[float, TenantDirectory]] = {}
        self._refreshing: set[str] = set()
        self._agents_sent: dict[str, str] = {}
        self.reading = asyncio.Event()  # set once the first XREAD is on its way
        self.events_seen = 0

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        # A connection of its own: the durable reader's and the app's commands must not
        # queue behind a blocking XREAD, nor it behind them.
        self._redis = redis.Redis.from_url(self._redis_url)
        self._tasks = [
            asyncio.create_task(self._tail(self._redis), name="live-tail"),
            asyncio.create_task(self._tick(), name="live-tick"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._side_tasks]
        self._tasks = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # --- subscribers -----------------------------------------------------------------

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Add a browser; supervisors get the agent list at once. Raises
        IdentityUnavailableError when the tenant's directory cannot be read."""
        await self._directory(subscriber.tenant, fresh=True)
        if subscriber.supervisor:
            # Before it is added: the rows this changes reach the others as deltas, and it
            # gets them in its snapshot (a delta that comes before the snapshot is only
            # replaced by it).
            await self._complete_queues(subscriber.tenant)
        self._subscribers.setdefault(subscriber.tenant, set()).add(subscriber)
        if subscriber.supervisor:
            subscriber.send(json.dumps(await self.agents_message(subscriber.tenant)))
            subscriber.send(json.dumps(await self.board_message(subscriber.tenant)))

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.tenant)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[subscriber.tenant]
                self._agents_sent.pop(subscriber.tenant, None)

    async def agents_message(self, tenant: str) -> dict[str, Any]:
        directory = await self._directory(tenant)
        board = self._boards.get(tenant) or TenantBoard()
        now = self._clock()
        shared = await self._shared_states(tenant)
        states: dict[str, AgentLive] = {}
        presence: dict[str, str] = {}
        for user in directory.directory.users:
            if not user.extension:
                continue
            live = board.state_of(user.extension, now)
            if shared is not None:
                live = merged_state(live, shared, user.extension, user.wrap_up_s, now)
                if user.extension in shared.presence:
                    presence[user.extension] = str(shared.presence[user.extension])
            states[user.extension] = live
        return messages.agents(directory, states, presence)

    async def board_message(self, tenant: str) -> dict[str, Any]:
        """The tenant's calls in progress as this replica knows them (a snapshot)."""
        directory = await self._directory(tenant)
        board = self._boards.get(tenant) or TenantBoard()
        return messages.board(board.in_progress(), directory, self._clock())

    async def _complete_queues(self, tenant: str) -> None:
        """Who waits in the tenant's queues and who talks on which call, per Redis, onto
        the board; the changed rows to the supervisors watching."""
        if self._queues is None:
            return
        directory = await self._directory(tenant)
        groups = [group.name for group in directory.directory.groups]
        read_ms = self._clock()
        try:
            waiting = await self._queues.waiting(tenant, groups)
            talking = await self._agents.talking_calls(tenant) if self._agents else None
        except RedisError as exc:
            logger.warning("tenant=%s live: queue waits unavailable (%s)", tenant, exc)
            return
        board = self._boards.setdefault(tenant, TenantBoard())
        changed, gone = board.complete_queues(waiting, groups, read_ms)
        if talking is not None:
            talks, ended = board.complete_talking(talking, read_ms)
            changed, gone = (changed | talks) - ended, gone | ended
        for call_id in sorted(changed):
            self._send_board_row(tenant, board, call_id, directory)
        for call_id in sorted(gone):
            self._to_supervisors(tenant, json.dumps(messages.board_call_ended(call_id, read_ms)))

    def _send_board_row(
        self, tenant: str, board: TenantBoard, call_id: str, directory: TenantDirectory
    ) -> None:
        call = board.calls.get(call_id)
        if call is not None:
            self._to_supervisors(tenant, json.dumps(messages.board_call(call, directory)))

    def _to_supervisors(self, tenant: str, text: str) -> None:
        for subscriber in self._subscribers.get(tenant, ()):
            if subscriber.supervisor:
                subscriber.send(text)

    async def _shared_states(self, tenant: str) -> AgentStates | None:
        if self._agents is None:
            return None
        try:
            return await self._agents.snapshot(tenant)
        except RedisError as exc:
            logger.warning("tenant=%s live: agent states unavailable (%s)", tenant, exc)
            return None

    def extension_of(self, subscriber: Subscriber) -> str | None:
        if subscriber.user_id is None:
            return None
        cached = self._directories.get(subscriber.tenant)
        user = cached[1].users.get(subscriber.user_id) if cached else None
        return user.extension if user is not None else None

    # --- the stream ------------------------------------------------------------------

    async def _tail(self, client: redis.Redis) -> None:
        last: bytes | str = "$"
        block_ms = max(1, int(self._block_s * 1000))
        while True:
            try:
                self.reading.set()
                reply = await client.xread({self._stream: last}, block=block_ms, count=100)
            except RedisError as exc:
                logger.warning("live: reading %s failed (%s); again in 1 s", self._stream, exc)
                await asyncio.sleep(1.0)
                continue
            for entry_id, entry in _entries(reply):
                last = entry_id
                await self._take(entry_id, entry)

    async def _take(self, entry_id: bytes | str, entry: Mapping[Any, Any]) -> None:
        try:
            event = event_from_fields(entry)
        except CallEventError as exc:
            logger.debug("live: entry %r is not a call event (%s)", entry_id, exc)
            return
        try:
            await self.handle(event)
        except Exception:
            # One bad event must not stop the feed of every tenant.
            logger.exception(
                "call=%s tenant=%s live: handling %s failed",
                event.call_id,
                event.tenant,
                event.type.value,
            )

    async def handle(self, event: CallEvent) -> None:
        """One event: the board, then every subscriber it concerns."""
        self.events_seen += 1
        tenant = event.tenant
        subscribers = self._subscribers.get(tenant)
        board = self._boards.setdefault(tenant, TenantBoard())
        if subscribers:
            directory = await self._directory(tenant)
        else:
            # Nobody of the tenant watches this replica: no waiting for the control API.
            directory = self._cached_directory(tenant)
        involved = board.involved(event.call_id) | extensions_of(event.callee)
        if is_extension(event.caller):
            involved.add(event.caller)
        answered_by = ""
        call = board.calls.get(event.call_id)
        on_board = call is not None
        if call is not None and call.answered_by:
            answered_by = call.answered_by
        touched = board.apply(event, _wrap_up_of(directory))
        call = board.calls.get(event.call_id)
        if call is not None:
            answered_by = call.answered_by or answered_by
            involved |= board.involved(event.call_id)
        completed = event.end_reason == EndReason.COMPLETED
        if event.type is CallEventType.ENDED and not answered_by and completed:
            # The board never saw this call answered (it started reading later).
            found = extensions_of(event.callee)
            answered_by = min(found) if found else ""
        if not subscribers:
            return
        sent_ms = self._clock()
        pop_text = ""
        if event.type is CallEventType.OFFERED:
            pop_text = json.dumps(messages.screen_pop(event, directory, sent_ms))
        call_text = json.dumps(messages.call_event(event, answered_by, directory, sent_ms))
        queue_event = event.type in (CallEventType.QUEUED, CallEventType.DEQUEUED)
        popped: list[Subscriber] = []
        for subscriber in list(subscribers):
            extension = self.extension_of(subscriber)
            if pop_text and extension is not None and extension in event.offered:
                subscriber.send(pop_text)
                popped.append(subscriber)
                if subscriber.supervisor:
                    subscriber.send(call_text)
            elif subscriber.supervisor or (
                not queue_event and extension is not None and extension in involved
            ):
                subscriber.send(call_text)
        if popped:
            self._spawn(self._send_card(event, directory, popped))
        if touched:
            await self._send_agents(tenant)
        if event.call_id in board.calls:
            self._send_board_row(tenant, board, event.call_id, directory)
        elif on_board:
            self._to_supervisors(
                tenant, json.dumps(messages.board_call_ended(event.call_id, event.at_ms))
            )

    async def _send_card(
        self, event: CallEvent, directory: TenantDirectory, subscribers: list[Subscriber]
    ) -> None:
        contact = event.crm_contact
        found = await load_card(
            self._database,
            event.tenant,
            contact_id=contact.id if contact is not None else None,
            phone=event.caller,
        )
        if found is None:
            return
        text = json.dumps(messages.card(event.call_id, found, directory))
        for subscriber in subscribers:
            subscriber.send(text)

    async def _send_agents(self, tenant: str) -> None:
        supervisors = [s for s in self._subscribers.get(tenant, ()) if s.supervisor]
        if not supervisors:
            return
        text = json.dumps(await self.agents_message(tenant))
        if self._agents_sent.get(tenant) == text:
            return
        self._agents_sent[tenant] = text
        for subscriber in supervisors:
            subscriber.send(text)

    async def _tick(self) -> None:
        """Wrap-up ends and presence changes come without an event: look every tick."""
        while True:
            await asyncio.sleep(self._tick_s)
            for tenant in list(self._subscribers):
                try:
                    await self._send_agents(tenant)
                    if any(s.supervisor for s in self._subscribers.get(tenant, ())):
                        await self._complete_queues(tenant)
                except IdentityUnavailableError as exc:
                    logger.warning("tenant=%s live: directory unavailable (%s)", tenant, exc)

    # --- the tenant's directory (names, extensions, presence, wrap-up) ---------------

    def _cached_directory(self, tenant: str) -> TenantDirectory:
        cached = self._directories.get(tenant)
        if cached is None:
            return TenantDirectory(Directory(tenant_id=tenant, users=[], groups=[], numbers=[]))
        return cached[1]

    async def _directory(self, tenant: str, *, fresh: bool = False) -> TenantDirectory:
        """The tenant's directory; a stale one is used while a newer one is read in the
        background, so an event never waits for the control API once the tenant is known."""
        cached = self._directories.get(tenant)
        if cached is None or fresh:
            directory = await self._identity.directory(tenant, fresh=fresh)
            self._directories[tenant] = (time.monotonic(), directory)
            return directory
        if time.monotonic() - cached[0] >= self._directory_ttl_s and tenant not in self._refreshing:
            self._refreshing.add(tenant)
            self._spawn(self._refresh(tenant))
        return cached[1]

    async def _refresh(self, tenant: str) -> None:
        try:
            directory = await self._identity.directory(tenant, fresh=True)
            self._directories[tenant] = (time.monotonic(), directory)
        except IdentityUnavailableError as exc:
            logger.warning("tenant=%s live: directory unavailable (%s)", tenant, exc)
        finally:
            self._refreshing.discard(tenant)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_done)

    def _side_done(self, task: asyncio.Task[None]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("live: background step failed", exc_info=task.exception())


def merged_state(
    live: AgentLive, shared: AgentStates, extension: str, wrap_up_s: int, now: int
) -> AgentLive:
    """This replica's board, completed by the shared picture: talking per the nodes (a
    call this replica saw nothing of), wrap-up after the last call the nodes ended."""
    if live.activity in (AgentActivity.TALKING, AgentActivity.RINGING):
        return live
    if extension in shared.talking:
        return AgentLive(extension, AgentActivity.TALKING)
    ended = shared.last_call_end_ms.get(extension)
    if live.activity is AgentActivity.IDLE and ended and wrap_up_s > 0:
        until = ended + wrap_up_s * 1000
        if now < until:
            return AgentLive(extension, AgentActivity.WRAP_UP, "", ended, until)
    return live


def _wrap_up_of(directory: TenantDirectory) -> Callable[[str], int]:
    def wrap_up_s(extension: str) -> int:
        user = directory.by_extension.get(extension)
        return user.wrap_up_s if user is not None else 0

    return wrap_up_s


def _entries(reply: Any) -> list[tuple[Any, Any]]:
    """The entries of an XREAD reply on one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [entry for entries in reply.values() for entry in (entries[0] if entries else [])]
    return [entry for _, entries in reply for entry in entries]

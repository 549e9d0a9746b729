"""The live board of one tenant: calls in progress, callers waiting in queues, agent states,
derived from the call events (pure, no I/O; times are the events' and the caller's clock).

An extension is *ringing* while a call offered to it is neither answered nor ended (nor
handed back to its queue place), *talking* from the answer to the end, then in *wrap-up*
for the user's ``wrap_up_s`` (the same hold-off the node's routing applies before
offering the next queue call: ``vpbx_media.node.routing.agents``), else *idle*.

A call is on the board from its first event (``call.queued``, ``call.offered``,
``call.ringing`` or ``call.answered``: a call still in an IVR is not) to ``call.ended``;
its state is *talking* once answered, else *ringing* while phones ring for it, else
*queued* while it waits in a queue, else *routing*. ``call.queued`` puts it in its
queue (again after an unanswered offer: nobody rings for it then, its place and wait
are kept), ``call.dequeued`` or the answer takes it out.

Each CRM replica builds its own board from the events it saw since it started; the hub
completes it from Redis, which every replica shares: agent states as the nodes keep them
(``hub.merged_state``) and who waits in each queue (``complete_queues``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vpbx_common.events import CallEvent, CallEventType
from vpbx_common.queues import Waiting

# A call the board never saw end (a node killed mid-call) stops counting after this long.
STALE_CALL_MS = 4 * 3600 * 1000
# An event of a call that ended this recently is a straggler (the node publishes most
# events from tasks of their own, so one may overtake another): it must not bring the
# call back.
ENDED_MEMORY_MS = 60 * 1000
# What Redis says of a queue is older than the events that came in while it was read.
QUEUE_READ_GRACE_MS = 2000


class AgentActivity(enum.StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    TALKING = "talking"
    WRAP_UP = "wrap-up"


@dataclass(frozen=True, slots=True)
class AgentLive:
    extension: str
    activity: AgentActivity
    call_id: str = ""
    since_ms: int = 0
    until_ms: int = 0  # wrap-up: when it ends


class CallState(enum.StrEnum):
    ROUTING = "routing"
    QUEUED = "queued"
    RINGING = "ringing"
    TALKING = "talking"


@dataclass(slots=True)
class LiveCall:
    call_id: str
    started_ms: int
    offered: set[str] = field(default_factory=set)
    answered_by: str = ""
    caller: str = ""  # the extension that placed it ('' for a caller from outside)
    answered_ms: int = 0
    # What the board shows of it, from its latest event.
    party: str = ""  # the caller as the node saw them: a number or an extension
    callee: str = ""
    number: str = ""
    label: str = ""
    direction: str = ""
    city: str = ""
    node: str = ""
    contact: dict[str, Any] | None = None
    queue: str = ""  # the group whose queue it waits in
    queued_ms: int = 0  # since when (its place: kept while offers come and go)
    ringing_ms: int = 0  # since when phones ring for it, ours or outside (0: none ring)
    # Known only from Redis, the queue's keys or the agents' talking set (this replica
    # saw none of its events): caller and number unknown; a talk's start is when this
    # replica first saw it.
    partial: bool = False

    @property
    def state(self) -> CallState:
        if self.answered_ms:
            return CallState.TALKING
        if self.offered or self.ringing_ms:
            return CallState.RINGING
        if self.queue:
            return CallState.QUEUED
        return CallState.ROUTING

    @property
    def since_ms(self) -> int:
        """When it entered its present state."""
        match self.state:
            case CallState.TALKING:
                return self.answered_ms
            case CallState.RINGING:
                return self.ringing_ms or self.started_ms
            case CallState.QUEUED:
                return self.queued_ms
            case _:
                return self.started_ms

    def take_details(self, event: CallEvent) -> None:
        self.partial = False
        self.party = event.caller or self.party
        self.callee = event.callee or self.callee
        self.number = event.number or self.number
        self.label = event.label or self.label
        self.direction = event.direction or self.direction
        self.city = event.city or self.city
        self.node = event.node or self.node
        if event.contact is not None:
            self.contact = event.contact

    def stop_ringing(self) -> set[str]:
        """Nobody rings for it any more; the extensions that were rung."""
        rung, self.offered = self.offered, set()
        self.ringing_ms = 0
        return rung


def is_extension(party: str) -> bool:
    """An extension of the tenant, not a phone number (E.164) or a SIP URI."""
    return bool(party) and not party.startswith("+") and party.isalnum()


def extensions_of(party: str) -> set[str]:
    """The extensions in an event's ``callee`` ("101" or "101,102" while ringing)."""
    return {part for part in party.split(",") if is_extension(part)}


_STARTS_A_CALL = frozenset(
    {
        CallEventType.QUEUED,
        CallEventType.OFFERED,
        CallEventType.RINGING,
        CallEventType.ANSWERED,
    }
)


class TenantBoard:
    def __init__(self) -> None:
        self.calls: dict[str, LiveCall] = {}
        self._wrap_up: dict[str, tuple[int, int, str]] = {}  # ext -> (since, until, call id)
        self._ended: dict[str, int] = {}  # call id -> when it ended (ENDED_MEMORY_MS)

    def apply(self, event: CallEvent, wrap_up_s: Callable[[str], int]) -> set[str]:
        """Take one event in; the extensions whose activity may have changed."""
        call = self.calls.get(event.call_id)
        if call is None:
            if event.type in (CallEventType.ENDED, CallEventType.REFUSED):
                # Never on this board, but Redis may still name it a moment (a queue
                # place, a talking entry): that must not bring it on.
                self._ended[event.call_id] = event.at_ms
            if event.type not in _STARTS_A_CALL or event.call_id in self._ended:
                return set()
            call = self.calls[event.call_id] = LiveCall(event.call_id, event.at_ms)
            if is_extension(event.caller):
                call.caller = event.caller
        call.take_details(event)
        touched: set[str] = set()
        match event.type:
            case CallEventType.OFFERED:
                new = set(event.offered)
                if new and not call.ringing_ms:
                    call.ringing_ms = event.at_ms
                call.offered |= new
                touched |= new
            case CallEventType.RINGING:
                ringing = extensions_of(event.callee) - call.offered
                # A call out rings a number: no extension of ours, ringing all the same.
                call.ringing_ms = call.ringing_ms or event.at_ms
                call.offered |= ringing
                touched |= ringing
            case CallEventType.QUEUED if not call.answered_ms:
                if call.queue != event.queue:
                    call.queue, call.queued_ms = event.queue, event.at_ms
                touched |= call.stop_ringing()  # back at its place: the offer is over
            case CallEventType.DEQUEUED:
                if call.queue == event.queue:
                    call.queue, call.queued_ms = "", 0
                if event.queue_left != "answered" and not call.answered_ms:
                    touched |= call.stop_ringing()  # an offer ringing then was stopped
            case CallEventType.ANSWERED:
                answered = sorted(extensions_of(event.callee))
                call.answered_by = answered[0] if answered else ""
                call.answered_ms = event.at_ms
                call.queue, call.queued_ms = "", 0
                touched |= call.offered | set(answered)
                if call.caller:
                    touched.add(call.caller)
            case CallEventType.ENDED | CallEventType.REFUSED:
                del self.calls[event.call_id]
                self._ended[event.call_id] = event.at_ms
                touched |= call.offered
                for talker in (call.answered_by, call.caller):
                    if talker and call.answered_ms:
                        hold_s = wrap_up_s(talker)
                        if hold_s > 0:
                            self._wrap_up[talker] = (
                                event.at_ms,
                                event.at_ms + hold_s * 1000,
                                call.call_id,
                            )
                    if talker:
                        touched.add(talker)
            case _:
                return set()
        self._forget_stale(event.at_ms)
        return touched

    def ended(self, call_id: str) -> bool:
        """The board saw this call end (lately)."""
        return call_id in self._ended

    def in_progress(self) -> list[LiveCall]:
        """The calls on the board, oldest first."""
        return sorted(self.calls.values(), key=lambda call: (call.started_ms, call.call_id))

    def complete_queues(
        self, waiting: Iterable[Waiting], queues: Iterable[str], read_ms: int
    ) -> tuple[set[str], set[str]]:
        """Bring the queue waits in line with the queues' keys in Redis, read at ``read_ms``
        for the groups ``queues``: a caller waiting there that this replica never saw
        (it started later, or missed the event) is added; one the board still has
        waiting but Redis no longer does (a missed ``call.dequeued``) leaves its queue,
        unless the board's news is fresher than the read. The ids of calls changed and
        of calls gone from the board."""
        changed: set[str] = set()
        gone: set[str] = set()
        there = {(item.call_id, item.queue): item for item in waiting}
        for (call_id, queue), item in there.items():
            if call_id in self._ended:
                continue
            call = self.calls.get(call_id)
            if call is None:
                self.calls[call_id] = LiveCall(
                    call_id, item.joined_ms, queue=queue, queued_ms=item.joined_ms, partial=True
                )
                changed.add(call_id)
            elif not call.queue and not call.answered_ms:
                call.queue, call.queued_ms = queue, item.joined_ms
                changed.add(call_id)
        watched = set(queues)
        for call in list(self.calls.values()):
            if not call.queue or call.queue not in watched:
                continue
            if (call.call_id, call.queue) in there:
                continue
            if not call.partial and call.queued_ms >= read_ms - QUEUE_READ_GRACE_MS:
                continue  # it joined as Redis was read: the next read will tell
            if call.partial:
                del self.calls[call.call_id]  # all the board knew of it was the wait
                gone.add(call.call_id)
            else:
                call.queue, call.queued_ms = "", 0
                changed.add(call.call_id)
        return changed, gone

    def state_of(self, extension: str, now_ms: int) -> AgentLive:
        """Talking beats ringing (a second call offered to a busy agent) beats wrap-up."""
        ringing: LiveCall | None = None
        for call in self.calls.values():
            if call.answered_ms and extension in (call.answered_by, call.caller):
                return AgentLive(extension, AgentActivity.TALKING, call.call_id, call.answered_ms)
            if not call.answered_ms and extension in call.offered | {call.caller}:
                ringing = call
        if ringing is not None:
            return AgentLive(extension, AgentActivity.RINGING, ringing.call_id, ringing.started_ms)
        wrap = self._wrap_up.get(extension)
        if wrap is not None and now_ms < wrap[1]:
            return AgentLive(extension, AgentActivity.WRAP_UP, wrap[2], wrap[0], wrap[1])
        return AgentLive(extension, AgentActivity.IDLE)

    def involved(self, call_id: str) -> set[str]:
        """The extensions a call in progress was offered to, answered by or placed by."""
        call = self.calls.get(call_id)
        if call is None:
            return set()
        return call.offered | {e for e in (call.answered_by, call.caller) if e}

    def complete_talking(
        self, talking: Iterable[tuple[str, str]], read_ms: int
    ) -> tuple[set[str], set[str]]:
        """The calls the agents' talking set in Redis (read at ``read_ms``) names that this
        replica saw no event of come on the board as partial talking calls; one of those
        gone from the set (ended, and the end not seen) leaves it. Changed and gone ids."""
        changed: set[str] = set()
        gone: set[str] = set()
        named = dict((call_id, extension) for extension, call_id in talking)
        for call_id, extension in named.items():
            if call_id in self._ended or call_id in self.calls:
                continue
            self.calls[call_id] = LiveCall(
                call_id, read_ms, answered_by=extension, answered_ms=read_ms, partial=True
            )
            changed.add(call_id)
        for call in list(self.calls.values()):
            if call.partial and call.answered_ms and call.call_id not in named:
                del self.calls[call.call_id]
                gone.add(call.call_id)
        return changed, gone

    def _forget_stale(self, now_ms: int) -> None:
        stale = [c.call_id for c in self.calls.values() if now_ms - c.started_ms > STALE_CALL_MS]
        for call_id in stale:
            del self.calls[call_id]
        for call_id in [c for c, at in self._ended.items() if now_ms - at > ENDED_MEMORY_MS]:
            del self._ended[call_id]
        for extension in [e for e, w in self._wrap_up.items() if w[1] <= now_ms]:
            del self._wrap_up[extension]

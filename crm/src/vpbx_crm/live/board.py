"""Live agent states of one tenant, derived from the call events only (pure, no I/O).

An extension is *ringing* while a call offered to it is neither answered nor ended,
*talking* from the answer to the end, then in *wrap-up* for the user's ``wrap_up_s``
(the same hold-off the node's routing applies before offering the next queue call:
``vpbx_media.node.routing.agents``), else *idle*. Each CRM replica builds its own board
from the events it saw since it started; the hub completes it with the agent state the
nodes keep in Redis (``hub.merged_state``), which every replica shares.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from vpbx_common.events import CallEvent, CallEventType

# A call the board never saw end (a node killed mid-call) stops counting after this long.
STALE_CALL_MS = 4 * 3600 * 1000


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


@dataclass(slots=True)
class LiveCall:
    call_id: str
    started_ms: int
    offered: set[str] = field(default_factory=set)
    answered_by: str = ""
    caller: str = ""
    answered_ms: int = 0


def is_extension(party: str) -> bool:
    """An extension of the tenant, not a phone number (E.164) or a SIP URI."""
    return bool(party) and not party.startswith("+") and party.isalnum()


def extensions_of(party: str) -> set[str]:
    """The extensions in an event's ``callee`` ("101" or "101,102" while ringing)."""
    return {part for part in party.split(",") if is_extension(part)}


class TenantBoard:
    def __init__(self) -> None:
        self.calls: dict[str, LiveCall] = {}
        self._wrap_up: dict[str, tuple[int, int, str]] = {}  # ext -> (since, until, call id)

    def apply(self, event: CallEvent, wrap_up_s: Callable[[str], int]) -> set[str]:
        """Take one event in; the extensions whose activity may have changed."""
        call = self.calls.get(event.call_id)
        if call is None:
            if event.type in (CallEventType.ENDED, CallEventType.REFUSED):
                return set()
            if event.type not in (
                CallEventType.OFFERED,
                CallEventType.RINGING,
                CallEventType.ANSWERED,
            ):
                return set()
            call = self.calls[event.call_id] = LiveCall(event.call_id, event.at_ms)
            if is_extension(event.caller):
                call.caller = event.caller
        touched: set[str] = set()
        match event.type:
            case CallEventType.OFFERED:
                new = set(event.offered)
                call.offered |= new
                touched |= new
            case CallEventType.RINGING:
                ringing = extensions_of(event.callee) - call.offered
                call.offered |= ringing
                touched |= ringing
            case CallEventType.ANSWERED:
                answered = sorted(extensions_of(event.callee))
                call.answered_by = answered[0] if answered else ""
                call.answered_ms = event.at_ms
                touched |= call.offered | set(answered)
                if call.caller:
                    touched.add(call.caller)
            case CallEventType.ENDED | CallEventType.REFUSED:
                del self.calls[event.call_id]
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

    def _forget_stale(self, now_ms: int) -> None:
        stale = [c.call_id for c in self.calls.values() if now_ms - c.started_ms > STALE_CALL_MS]
        for call_id in stale:
            del self.calls[call_id]
        for extension in [e for e, w in self._wrap_up.items() if w[1] <= now_ms]:
            del self._wrap_up[extension]

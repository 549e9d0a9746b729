"""Live agent state as the router sees it: one immutable snapshot the executor builds.

The executor reads Redis (live calls, last call ends, presence changes,
registrations, round-robin pointers) into an ``AgentSnapshot`` before it
starts a router, and may hand it a fresher one later (``CallRouter.update_agents``).
The router never reads Redis itself, so every decision is reproducible from
(call, config, snapshot, events).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from vpbx_common.agents import AgentStates
from vpbx_common.nodeconfig import UserEntry
from vpbx_common.pbx import Presence


class Availability(enum.StrEnum):
    """Whether a user may be offered a call now, and if not, why (the CDR route says it)."""

    FREE = "free"
    CALLER = "caller"  # the user is the one calling (an internal call to their own group)
    ON_CALL = "on-call"
    DO_NOT_DISTURB = "do-not-disturb"
    AWAY = "away"
    WRAP_UP = "wrap-up"
    NOT_REGISTERED = "not-registered"  # the snapshot counted no registered device
    UNKNOWN = "unknown-extension"  # a member the config has no user for


@dataclass(frozen=True, slots=True)
class AgentState:
    """One extension's live state; every field defaults to "nothing known"."""

    on_call: bool = False
    last_call_end: float | None = None  # epoch seconds; None: no call remembered
    # A newer presence than the config's (set in the CRM a moment ago); None: the config's.
    presence: Presence | None = None
    # Registered devices; 0: skipped as not registered, without ringing. None: not counted
    # (e.g. devices homed in another city): the member is rung and the legs tell.
    devices: int | None = None


_NOBODY = AgentState()


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    agents: Mapping[str, AgentState] = field(default_factory=dict)  # extension -> state
    last_member: Mapping[str, str] = field(default_factory=dict)  # group name -> extension

    def __post_init__(self) -> None:
        # Read-only views: a snapshot shared by several routers cannot change under them.
        object.__setattr__(self, "agents", MappingProxyType(dict(self.agents)))
        object.__setattr__(self, "last_member", MappingProxyType(dict(self.last_member)))

    @classmethod
    def from_states(cls, states: AgentStates) -> AgentSnapshot:
        """The snapshot of what the nodes keep in Redis (devices are not counted)."""
        extensions = states.talking | states.last_call_end_ms.keys() | states.presence.keys()
        return cls(
            agents={
                extension: AgentState(
                    on_call=extension in states.talking,
                    last_call_end=(
                        states.last_call_end_ms[extension] / 1000
                        if extension in states.last_call_end_ms
                        else None
                    ),
                    presence=states.presence.get(extension),
                )
                for extension in extensions
            },
            last_member=states.last_member,
        )

    def state(self, extension: str) -> AgentState:
        return self.agents.get(extension, _NOBODY)

    def presence(self, user: UserEntry) -> Presence:
        """The snapshot's presence when it has one (it is newer), else the config's."""
        return self.state(user.extension).presence or user.presence

    def availability(self, user: UserEntry, at: float, *, handed_out: bool = True) -> Availability:
        """Whether ``user`` may ring at epoch time ``at``.

        The first reason that applies wins, in the order a caller cares about: on a
        call (busy), do-not-disturb, away, wrap-up, no registered device.
        ``handed_out=False`` for a call to the user personally: being on a call and
        wrap-up only pace the calls a group or queue hands out; a caller asking for
        this person rings their phone (call waiting: the person decides).
        """
        state = self.state(user.extension)
        if handed_out and state.on_call:
            return Availability.ON_CALL
        presence = self.presence(user)
        if presence is Presence.DO_NOT_DISTURB:
            return Availability.DO_NOT_DISTURB
        if presence is Presence.AWAY:
            return Availability.AWAY
        wrap_up_s = user.settings.wrap_up_s
        if (
            handed_out
            and wrap_up_s > 0
            and state.last_call_end is not None
            and at < state.last_call_end + wrap_up_s
        ):
            return Availability.WRAP_UP
        if state.devices == 0:
            return Availability.NOT_REGISTERED
        return Availability.FREE

    def is_free(
        self, user: UserEntry, at: float, *, handed_out: bool = True
    ) -> tuple[bool, Availability]:
        availability = self.availability(user, at, handed_out=handed_out)
        return availability is Availability.FREE, availability

    def last_call_end(self, extension: str) -> float | None:
        return self.state(extension).last_call_end

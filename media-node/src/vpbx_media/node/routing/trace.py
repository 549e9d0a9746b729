"""The call's route, for the CDR: every step and target tried, what came of it, and when.

Sessions write to one ``Output`` per router: the actions of the current answer
and the route so far. The route is a flat list of entries, in order; a CDR
keeps it as it is (``RouteEntry.as_dict``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .actions import Action


class Outcome(enum.StrEnum):
    ENTERED = "entered"  # a target or step began
    RINGING = "ringing"  # a member started ringing
    ANSWERED = "answered"  # a member answered: the call is connected
    NO_ANSWER = "no-answer"  # a member, a group or a user did not answer in time
    FAILED = "failed"  # a member's devices all failed (busy, declined, unavailable)
    SKIPPED = "skipped"  # a member was not rung (on a call, wrap-up, away, dnd, ...)
    FELL_THROUGH = "fell-through"  # a step or target could not run; the call went on
    BRANCHED = "branched"  # a schedule chose its open or closed branch
    DECIDED = "decided"  # an HTTP decision, an IVR digit or a timeout chose where to go
    PROMPTED = "prompted"  # an IVR menu played (again)
    QUEUED = "queued"  # joined, offered to an agent, back at its place, left
    RECORDED = "recorded"  # voicemail: a message was left
    NO_MESSAGE = "no-message"  # voicemail: the caller said nothing
    HUNG_UP = "hung-up"  # the router ended the call
    # Conference rooms (the executor's, vpbx_media.node.calls.room): the caller joined a
    # room, left it (the detail says how long they were in it), found it full, or was
    # refused (wrong PIN).
    JOINED = "joined"
    LEFT = "left"
    FULL = "full"
    REFUSED = "refused"
    CALLER_LEFT = "caller-left"


@dataclass(frozen=True, slots=True)
class RouteEntry:
    after_s: float  # seconds since routing started
    subject: str  # what was tried: "group:sales", "plan:main step 2 (schedule)", "user:101"
    outcome: Outcome
    member: str | None = None  # the extension concerned, if any
    detail: str = ""  # why, in words

    def as_dict(self) -> dict[str, object]:
        return {
            "after_s": round(self.after_s, 3),
            "subject": self.subject,
            "outcome": str(self.outcome),
            "member": self.member,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        member = f" {self.member}" if self.member else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"+{self.after_s:.1f}s {self.subject} {self.outcome}{member}{detail}"


class Output:
    """Where sessions put actions and route entries; drained by the router per answer."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.actions: list[Action] = []
        self.route: list[RouteEntry] = []

    def act(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def note(
        self,
        now: float,
        subject: str,
        outcome: Outcome,
        member: str | None = None,
        detail: str = "",
    ) -> None:
        self.route.append(RouteEntry(now - self.origin, subject, outcome, member, detail))

    def drain(self) -> list[Action]:
        actions, self.actions = self.actions, []
        return actions

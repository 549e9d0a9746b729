"""What the call's executor tells the router."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vpbx_common.crm import CrmContact


class MemberFailure(enum.StrEnum):
    """Why every device of an extension failed (the executor maps SIP statuses)."""

    BUSY = "busy"  # 486, 600
    DECLINED = "declined"  # 603, 403: the person rejected the call
    UNAVAILABLE = "unavailable"  # anything else: 404, 408, 480, 5xx, no device left


@dataclass(frozen=True, slots=True)
class MemberAnswered:
    extension: str


@dataclass(frozen=True, slots=True)
class MemberFailed:
    """Every device of ``extension`` failed (sent once, when the last one does)."""

    extension: str
    status: MemberFailure


@dataclass(frozen=True, slots=True)
class TimerFired:
    """``now`` reached ``CallRouter.next_deadline``; harmless when early or stale."""


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str  # 0-9, *, #


@dataclass(frozen=True, slots=True)
class PromptFinished:
    pass


@dataclass(frozen=True, slots=True)
class DecisionReply:
    status: int  # the HTTP status
    body: bytes


@dataclass(frozen=True, slots=True)
class DecisionFailed:
    reason: str  # refused by the outbound policy, connection failed, timed out, ...


@dataclass(frozen=True, slots=True)
class CrmReply:
    """The CRM's answer to ``LookUpCaller``: the contact, or None (nobody has that number)."""

    contact: CrmContact | None


@dataclass(frozen=True, slots=True)
class CrmFailed:
    """No usable answer from the CRM; ``reason`` says why (``timeout after 300 ms``,
    ``HTTP 503``, ``bad document: ...``, ``connection failed: ...``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class QueueOffer:
    """The queue dispatcher picked ``extension`` for this caller."""

    extension: str


@dataclass(frozen=True, slots=True)
class QueueLeft:
    """The dispatcher took the caller out of the queue (no agent logged in, queue gone)."""

    reason: str


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """The answer to ``AskQueueStatus``: the caller's place (1 = next; None: not waiting,
    or unknown) and the expected wait from there in seconds (None: no estimate)."""

    position: int | None
    expected_wait_s: float | None


@dataclass(frozen=True, slots=True)
class CallbackBooked:
    """What became of ``BookCallback``: booked, or why not (the caller keeps waiting)."""

    booked: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class VoicemailFinished:
    kept: bool = True  # False: nobody spoke, no message was stored


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    voicemail_kept: bool = True  # hung up while recording: was a message stored?


Event = (
    MemberAnswered
    | MemberFailed
    | TimerFired
    | Digit
    | PromptFinished
    | DecisionReply
    | DecisionFailed
    | CrmReply
    | CrmFailed
    | QueueOffer
    | QueueLeft
    | QueueStatus
    | CallbackBooked
    | VoicemailFinished
    | CallerHungUp
)

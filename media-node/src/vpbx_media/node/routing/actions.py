"""What the router asks the call's executor to do.

The executor runs the actions of one ``start``/``on_event`` answer in order,
before it feeds the router anything else. Every action is a frozen value: the
executor may log it, journal it or replay it.

Rules the executor keeps whatever the router says:

- it bridges only the extension named in ``Connect``; any other leg that
  answers (a device that picked up after its ringing was stopped, a second
  device of the same user) is ended with BYE;
- ``Done`` is the router's last action: the executor then ends whatever is
  still going on for the router (a playback, a pending decision request; a
  voicemail recording is kept) and stops feeding it events.

Times (``Ring.until``) are on the clock of the ``now`` the executor passes in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from vpbx_common.cdr import EndReason
from vpbx_common.nodeconfig import Prompt


class Sound(enum.StrEnum):
    """Sounds the platform ships (as opposed to a tenant's prompts from the config)."""

    RINGBACK = "ringback"  # an answered caller waits for a person: ringing tone, played by us
    MUSIC_ON_HOLD = "music-on-hold"
    VOICEMAIL_GREETING = "voicemail-greeting"  # the platform's default voicemail greeting
    BEEP = "beep"  # the voicemail beep: speak now
    CONFERENCE_JOIN = "conference-join"  # two rising notes: you are in the room now


@dataclass(frozen=True, slots=True)
class QueueAnnouncement:
    """Spoken: the caller's place in the queue and the expected wait.

    ``language`` is the tenant's (BCP 47); ``wait_minutes`` 0 means less than a minute.
    The executor builds it from the platform's spoken phrases (``/internal/v1/speech``).
    """

    language: str
    position: int | None  # None: the place is not said (only the callback offer)
    wait_minutes: int
    callback_key: str | None = None  # the key that books a callback, offered at the end


@dataclass(frozen=True, slots=True)
class SpokenPhrase:
    """One of the platform's spoken phrases (``vpbx_common.speech``) in ``language``."""

    language: str
    phrase: str


class RouteResult(enum.StrEnum):
    """How routing ended (``Done.result``)."""

    CONNECTED = "connected"  # bridged to a person (``Connect`` came before)
    HUNG_UP = "hung-up"  # the router ended the call (``Hangup`` came before)
    CALLER_LEFT = "caller-left"  # the caller hung up while the router was at work
    CONFERENCE = "conference"  # handed to a conference room (``JoinConference`` came before)


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the caller (200 OK) before anyone is connected: IVR, queue, voicemail."""


@dataclass(frozen=True, slots=True)
class Play:
    """Play to the caller, replacing whatever plays now; ``PromptFinished`` when it ends
    (never for a loop)."""

    sound: Prompt | Sound | QueueAnnouncement | SpokenPhrase
    loop: bool = False


@dataclass(frozen=True, slots=True)
class StopPlayback:
    pass


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Pass the caller's DTMF digits as ``Digit`` events, also while a prompt plays.

    The router keeps the time itself (its digit timeout starts when the prompt ends).
    """

    max_digits: int = 1


@dataclass(frozen=True, slots=True)
class Ring:
    """Start ringing every registered device of these extensions.

    ``until`` is when the router will stop them (the executor may use it as the
    INVITE's Expires); ``group`` names the group they ring for, if any.
    The executor answers with ``MemberAnswered`` for the first device to answer,
    or ``MemberFailed`` once every device of an extension failed.
    """

    extensions: tuple[str, ...]
    until: float
    group: str | None = None


@dataclass(frozen=True, slots=True)
class StopRinging:
    """Cancel the ringing legs to these extensions (no ``MemberFailed`` is expected back)."""

    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Connect:
    """Bridge the caller with the device of ``extension`` that answered."""

    extension: str


@dataclass(frozen=True, slots=True)
class JoinQueue:
    """Put the caller in the group's queue; the dispatcher answers with ``QueueOffer``."""

    group: str
    max_wait_s: int
    announce_position: bool = False
    # Refuse (``QueueLeft``) when this many callers wait already; None: no limit.
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class BookCallback:
    """The caller asked to be called back: their place in the group's queue becomes a
    callback (``node/callbacks.py``) and survives their hanging up. Answered with
    ``CallbackBooked``."""

    group: str
    attempts: int
    retry_s: int


@dataclass(frozen=True, slots=True)
class AskQueueStatus:
    """Look up the caller's place in the group's queue and the wait expected from there;
    answer with ``QueueStatus``."""

    group: str


@dataclass(frozen=True, slots=True)
class BackToQueue:
    """The offer to ``extension`` did not become a call: the caller keeps its place."""

    group: str
    extension: str
    reason: str


@dataclass(frozen=True, slots=True)
class LeaveQueue:
    group: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordVoicemail:
    """Play the greeting, then record a message; ``VoicemailFinished`` when done."""

    box: str | None  # the owner's extension; None: the tenant's general box
    max_s: int
    greeting: Prompt | Sound = Sound.VOICEMAIL_GREETING


@dataclass(frozen=True, slots=True)
class RequestDecision:
    """POST ``body`` as JSON to ``url`` (through the outbound policy).

    Answer with ``DecisionReply`` (any HTTP status) or ``DecisionFailed``. The
    router times out by itself after ``timeout_ms``; a later answer is ignored.
    """

    url: str
    timeout_ms: int
    body: dict[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class LookUpCaller:
    """Ask the CRM who ``phone`` (the caller, E.164) is (``vpbx_common.crm``).

    Answer with ``CrmReply`` (the contact, or None for a number the CRM does not know)
    or ``CrmFailed``. The router times out by itself after ``timeout_ms``; a later
    answer is ignored.
    """

    phone: str
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class RememberLastMember:
    """Round-robin: store ``extension`` as the group's last member rung (Redis); the
    next snapshot gives it back as ``AgentSnapshot.last_member[group]``."""

    group: str
    extension: str


@dataclass(frozen=True, slots=True)
class JoinConference:
    """Take the caller into the tenant's conference room ``room`` (its extension).

    The executor does the rest without the router: a full room is refused (486), a
    PIN is asked for, the caller joins and stays until they hang up. The router
    ends with ``Done(CONFERENCE)`` right after it.
    """

    room: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call.

    Unanswered caller: the final response ``status`` (486, 480, 603). Answered
    caller: a BYE, with ``Reason: SIP;cause=<status>`` (RFC 3326) unless
    ``status`` is 200 (a normal end). ``end_reason`` is the CDR's; ``detail``
    says why in words (also for the Reason header's text).
    """

    status: int
    end_reason: EndReason
    detail: str
    answered: bool


@dataclass(frozen=True, slots=True)
class Done:
    result: RouteResult


Action = (
    Answer
    | Play
    | StopPlayback
    | CollectDigits
    | Ring
    | StopRinging
    | Connect
    | JoinQueue
    | AskQueueStatus
    | BackToQueue
    | LeaveQueue
    | BookCallback
    | RecordVoicemail
    | RequestDecision
    | LookUpCaller
    | RememberLastMember
    | JoinConference
    | Hangup
    | Done
)

"""The caller's side of a queue step: wait with music, take offers, leave after max_wait_s.

The queue dispatcher (another component, across calls and cities) picks an agent
for the caller and sends ``QueueOffer``; the router rings that agent alone. An
answer connects the call; anything else (no answer within the offer time, busy,
declined, the agent not free by this router's snapshot) hands the caller back
to the dispatcher at its place (``BackToQueue``). The wait ends after
``max_wait_s`` (an offer ringing then may still be answered: the wait ends
when it is over) or when the dispatcher says so (``QueueLeft``); the route plan
then goes on with its next step.

Announcements (``announce_position``): on joining and then every
``announce_every_s`` of waiting, the router asks the executor where the caller
stands (``AskQueueStatus`` -> ``QueueStatus``) and plays a ``QueueAnnouncement``
in place of the music, which comes back when it has been said. The music is the
step's ``music`` (the tenant's prompt, looped) when set, else the platform's
``Sound.MUSIC_ON_HOLD``; whatever interrupts it (an announcement, one cut short)
resumes that same music. Never while an
offer rings: an offer cuts an announcement short, and one that falls due during
an offer (or was cut) is made as soon as the caller waits again.

``exit_digit``: the caller's digits are collected only when one is set; that
digit leaves the queue (an offer ringing is stopped) and the plan goes on.
``max_length`` travels with ``JoinQueue``; a full queue answers ``QueueLeft``.

``callback_digit`` (outside callers with a number only): every announcement ends
with the offer ("to be called back without losing your place, press 1"; with no
``announce_position`` the announcement is only the offer). The key stops an offer
ringing and asks the executor to turn the caller's place into a callback
(``BookCallback``); once it is booked (``CallbackBooked``) the caller hears a
confirmation and the node hangs up, the CDR's end reason ``callback``. A caller
who hangs up during the confirmation leaves their callback behind all the same.
Not booked (Redis unreachable): a note, and the caller waits on as before.
"""

from __future__ import annotations

import enum
import math

from vpbx_common import speech
from vpbx_common.cdr import Direction
from vpbx_common.nodeconfig import GroupEntry, Prompt
from vpbx_common.nodeconfig.steps import QueueStep

from .actions import (
    AskQueueStatus,
    BackToQueue,
    BookCallback,
    CollectDigits,
    JoinQueue,
    LeaveQueue,
    QueueAnnouncement,
    Sound,
    SpokenPhrase,
)
from .env import RouterEnv
from .events import MemberFailure
from .ringing import RingMode, RingSession, RingSpec, RingState
from .trace import Outcome

# How long an offered agent rings when the group sets no member_ring_s.
QUEUE_OFFER_RING_S = 15.0
# Guards against an executor that never answers: a status not given in this time is
# skipped; an announcement whose end is never reported gives way to the music again.
STATUS_GUARD_S = 5.0
ANNOUNCEMENT_GUARD_S = 60.0
# The platform speaks numbers up to this (the phrases the control API renders).
MAX_SPOKEN_NUMBER = 99


class _Announcing(enum.Enum):
    ASKING = "asking"  # AskQueueStatus is out
    PLAYING = "playing"  # the announcement plays instead of the music


def wait_minutes(expected_wait_s: float | None) -> int:
    """Whole minutes to announce, rounded up (a wait is not promised shorter than it
    is); 0: less than a minute, also when nothing is known yet."""
    if expected_wait_s is None or expected_wait_s < 60:
        return 0
    return min(MAX_SPOKEN_NUMBER, math.ceil(expected_wait_s / 60))


class QueueState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    OFFERING = "offering"  # an agent rings for this caller
    CONNECTED = "connected"
    BOOKING = "booking"  # the caller pressed the callback key: BookCallback is out
    CONFIRMING = "confirming"  # booked: the caller hears so before the node hangs up
    CALLBACK = "callback"  # the place is the callback's now; the call ends
    LEFT = "left"  # the wait is over; ``left_because`` says why


class QueueSession:
    def __init__(self, group: GroupEntry, step: QueueStep, subject: str, env: RouterEnv) -> None:
        self.group = group
        self.max_wait_s = step.max_wait_s
        self.announce_position = step.announce_position
        self.announce_every_s = float(max(1, step.announce_every_s))
        self.exit_digit = step.exit_digit
        call = env.call
        # Only a caller with a number can be called back.
        callable_back = call.direction is Direction.INBOUND and call.caller.startswith("+")
        self.callback_digit = step.callback_digit if callable_back else None
        self.callback_attempts = step.callback_attempts
        self.callback_retry_s = step.callback_retry_s
        self.max_length = step.max_length
        self.music: Prompt | Sound = step.music if step.music is not None else Sound.MUSIC_ON_HOLD
        self.subject = subject
        self.env = env
        self.state = QueueState.IDLE
        self.answered_by: str | None = None
        self.left_because = ""
        self._offer: RingSession | None = None
        self._expires = 0.0
        self._announcing: _Announcing | None = None
        self._announce_at: float | None = None  # the next announcement (None: none)
        self._guard = 0.0  # the running announcement's (or status request's) guard

    @property
    def deadline(self) -> float | None:
        if self.state is QueueState.WAITING:
            if self._announcing is not None:
                return min(self._expires, self._guard)
            if self._announce_at is not None:
                return min(self._expires, self._announce_at)
            return self._expires
        if self.state is QueueState.OFFERING and self._offer is not None:
            return self._offer.deadline
        if self.state in (QueueState.BOOKING, QueueState.CONFIRMING):
            return self._guard
        return None

    @property
    def _announces(self) -> bool:
        return self.announce_position or self.callback_digit is not None

    def start(self, now: float) -> None:
        if self.exit_digit is not None or self.callback_digit is not None:
            self.env.out.act(CollectDigits(max_digits=1))
        self._play_music()
        self.env.out.act(
            JoinQueue(self.group.name, self.max_wait_s, self.announce_position, self.max_length)
        )
        self.env.out.note(now, self.subject, Outcome.QUEUED, detail="joined")
        self.state = QueueState.WAITING
        self._expires = now + self.max_wait_s
        if self._announces:
            self._ask(now)

    def on_status(self, position: int | None, expected_wait_s: float | None, now: float) -> None:
        if self.state is not QueueState.WAITING or self._announcing is not _Announcing.ASKING:
            return  # a late answer: an offer came, or the caller left
        said: int | None = None
        if self.announce_position:
            if position is None or position > MAX_SPOKEN_NUMBER:
                why = "place unknown" if position is None else f"place {position}: beyond words"
                if self.callback_digit is None:
                    self.env.out.note(
                        now, self.subject, Outcome.PROMPTED, detail=f"no announcement, {why}"
                    )
                    self._announced(now)
                    return
            else:
                said = position
        minutes = wait_minutes(expected_wait_s)
        language = self.env.config.language
        self.env.play(QueueAnnouncement(language, said, minutes, self.callback_digit))
        self._announcing = _Announcing.PLAYING
        self._guard = now + ANNOUNCEMENT_GUARD_S
        parts = []
        if said is not None:
            parts.append(
                f"place {said}, " + (f"about {minutes} min" if minutes else "under a minute")
            )
        if self.callback_digit is not None:
            parts.append(f"callback on {self.callback_digit}")
        self.env.out.note(
            now, self.subject, Outcome.PROMPTED, detail="announced " + "; ".join(parts)
        )

    def on_prompt_finished(self, now: float) -> None:
        if self.state is QueueState.WAITING and self._announcing is _Announcing.PLAYING:
            self._play_music()
            self._announced(now)
        elif self.state is QueueState.CONFIRMING:
            self.state = QueueState.CALLBACK

    def on_digit(self, digit: str, now: float) -> None:
        if self.state not in (QueueState.WAITING, QueueState.OFFERING):
            return
        if digit == self.callback_digit:
            self._book_callback(digit, now)
            return
        if digit != self.exit_digit:
            return
        if self.state is QueueState.OFFERING and self._offer is not None:
            self._offer.stop(now, f"caller pressed {digit}")
            self._offer = None
        self._leave(now, f"caller pressed {digit}")

    def on_callback_booked(self, booked: bool, detail: str, now: float) -> None:
        if self.state is not QueueState.BOOKING:
            return
        if not booked:
            self.env.out.note(
                now, self.subject, Outcome.QUEUED, detail=f"callback not booked: {detail}"
            )
            self.state = QueueState.WAITING
            self._play_music()
            self._announce_at = now + self.announce_every_s
            if now >= self._expires:
                self._leave(now, f"waited {self.max_wait_s} s")
            return
        self.env.out.note(now, self.subject, Outcome.QUEUED, detail=f"callback booked: {detail}")
        self.env.play(SpokenPhrase(self.env.config.language, speech.CALLBACK_BOOKED))
        self.state = QueueState.CONFIRMING
        self._guard = now + ANNOUNCEMENT_GUARD_S

    def on_offer(self, extension: str, now: float) -> None:
        if self.state is not QueueState.WAITING:
            # Only one agent rings for a caller at a time; the dispatcher will offer again.
            self.env.out.act(BackToQueue(self.group.name, extension, "already offered"))
            return
        ring_s = self.group.member_ring_s or QUEUE_OFFER_RING_S
        spec = RingSpec(
            subject=self.subject,
            members=(extension,),
            mode=RingMode.ALL,
            ring_s=float(ring_s),
            group=self.group.name,
        )
        self.env.out.note(now, self.subject, Outcome.QUEUED, extension, "offered")
        self._interrupt_announcement(now)
        self._offer = RingSession(spec, self.env)
        self.state = QueueState.OFFERING
        self._offer.start(now)
        self._after_offer(now)

    def on_answered(self, extension: str, now: float) -> bool:
        if self.state is not QueueState.OFFERING or self._offer is None:
            return False
        if not self._offer.on_answered(extension, now):
            return False
        self.env.out.act(LeaveQueue(self.group.name, "answered"))
        self.state = QueueState.CONNECTED
        self.answered_by = extension
        return True

    def on_failed(self, extension: str, status: MemberFailure, now: float) -> None:
        if self.state is QueueState.OFFERING and self._offer is not None:
            self._offer.on_failed(extension, status, now)
            self._after_offer(now)

    def on_timer(self, now: float) -> None:
        if self.state is QueueState.BOOKING and now >= self._guard:
            self.on_callback_booked(False, "no answer from the executor", now)
        elif self.state is QueueState.CONFIRMING and now >= self._guard:
            self.state = QueueState.CALLBACK
        elif self.state is QueueState.OFFERING and self._offer is not None:
            self._offer.on_timer(now)
            self._after_offer(now)
        elif self.state is QueueState.WAITING:
            if now >= self._expires:
                self._leave(now, f"waited {self.max_wait_s} s")
            elif self._announcing is _Announcing.ASKING and now >= self._guard:
                self.env.out.note(now, self.subject, Outcome.PROMPTED, detail="no queue status")
                self._announced(now)
            elif self._announcing is _Announcing.PLAYING and now >= self._guard:
                self.env.out.note(now, self.subject, Outcome.PROMPTED, detail="end not heard")
                self._play_music()
                self._announced(now)
            elif self._announce_at is not None and now >= self._announce_at:
                self._ask(now)

    def on_left(self, reason: str, now: float) -> None:
        """The dispatcher ended the wait."""
        if self.state is QueueState.OFFERING and self._offer is not None:
            self._offer.stop(now, "queue left")
        if self.state in (QueueState.WAITING, QueueState.OFFERING):
            self.state = QueueState.LEFT
            self.left_because = reason
            self.env.out.note(now, self.subject, Outcome.QUEUED, detail=f"left: {reason}")

    def stop(self, now: float, why: str) -> None:
        """The caller hung up."""
        if self.state is QueueState.OFFERING and self._offer is not None:
            self._offer.stop(now, why)
        if self.state in (QueueState.WAITING, QueueState.OFFERING):
            self.env.out.act(LeaveQueue(self.group.name, why))
            self.state = QueueState.LEFT
            self.left_because = why

    def _after_offer(self, now: float) -> None:
        offer = self._offer
        if offer is None or offer.state is not RingState.ENDED:
            return
        extension = offer.spec.members[0]
        why = str(offer.result)
        self.env.out.act(BackToQueue(self.group.name, extension, why))
        self.env.out.note(now, self.subject, Outcome.QUEUED, extension, f"back at its place: {why}")
        self._offer = None
        self.state = QueueState.WAITING
        if now >= self._expires:
            self._leave(now, f"waited {self.max_wait_s} s")

    def _book_callback(self, digit: str, now: float) -> None:
        if self.state is QueueState.OFFERING and self._offer is not None:
            offer, self._offer = self._offer, None
            offer.stop(now, f"caller pressed {digit} for a callback")
            extension = offer.spec.members[0]
            self.env.out.act(BackToQueue(self.group.name, extension, "caller asked for a callback"))
        self._announcing = None
        self._announce_at = None
        self.env.stop_playback()
        self.env.out.act(
            BookCallback(self.group.name, self.callback_attempts, self.callback_retry_s)
        )
        self.env.out.note(now, self.subject, Outcome.QUEUED, detail=f"caller pressed {digit}")
        self.state = QueueState.BOOKING
        self._guard = now + STATUS_GUARD_S

    def _play_music(self) -> None:
        self.env.play(self.music, loop=True)

    def _ask(self, now: float) -> None:
        self.env.out.act(AskQueueStatus(self.group.name))
        self._announcing = _Announcing.ASKING
        self._announce_at = None
        self._guard = now + STATUS_GUARD_S

    def _announced(self, now: float) -> None:
        self._announcing = None
        self._announce_at = now + self.announce_every_s

    def _interrupt_announcement(self, now: float) -> None:
        """An offer rings: no announcement over it; one cut short is made again after."""
        if self._announcing is None:
            return
        if self._announcing is _Announcing.PLAYING:
            self._play_music()
            self.env.out.note(now, self.subject, Outcome.PROMPTED, detail="announcement cut")
        self._announcing = None
        self._announce_at = now

    def _leave(self, now: float, why: str) -> None:
        self._announcing = None
        self._announce_at = None
        self.env.out.act(LeaveQueue(self.group.name, why))
        self.env.out.note(now, self.subject, Outcome.QUEUED, detail=f"left: {why}")
        self.state = QueueState.LEFT
        self.left_because = why

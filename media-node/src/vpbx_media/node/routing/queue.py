"""The caller's side of a queue step: wait with music, take offers, leave after max_wait_s.

The queue dispatcher (another component, across calls and cities) picks an agent
for the caller and sends ``QueueOffer``; the router rings that agent alone. An
answer connects the call; anything else (no answer within the offer time, busy,
declined, the agent not free by this router's snapshot) hands the caller back
to the dispatcher at its place (``BackToQueue``). The wait ends after
``max_wait_s`` (an offer ringing then may still be answered: the wait ends
when it is over) or when the dispatcher says so (``QueueLeft``); the route plan
then goes on with its next step.
"""

from __future__ import annotations

import enum

from vpbx_common.nodeconfig import GroupEntry

from .actions import BackToQueue, JoinQueue, LeaveQueue, Sound
from .env import RouterEnv
from .events import MemberFailure
from .ringing import RingMode, RingSession, RingSpec, RingState
from .trace import Outcome

# How long an offered agent rings when the group sets no member_ring_s.
QUEUE_OFFER_RING_S = 15.0


class QueueState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    OFFERING = "offering"  # an agent rings for this caller
    CONNECTED = "connected"
    LEFT = "left"  # the wait is over; ``left_because`` says why


class QueueSession:
    def __init__(
        self,
        group: GroupEntry,
        max_wait_s: int,
        announce_position: bool,
        subject: str,
        env: RouterEnv,
    ) -> None:
        self.group = group
        self.max_wait_s = max_wait_s
        self.announce_position = announce_position
        self.subject = subject
        self.env = env
        self.state = QueueState.IDLE
        self.answered_by: str | None = None
        self.left_because = ""
        self._offer: RingSession | None = None
        self._expires = 0.0

    @property
    def deadline(self) -> float | None:
        if self.state is QueueState.WAITING:
            return self._expires
        if self.state is QueueState.OFFERING and self._offer is not None:
            return self._offer.deadline
        return None

    def start(self, now: float) -> None:
        self.env.play(Sound.MUSIC_ON_HOLD, loop=True)
        self.env.out.act(JoinQueue(self.group.name, self.max_wait_s, self.announce_position))
        self.env.out.note(now, self.subject, Outcome.QUEUED, detail="joined")
        self.state = QueueState.WAITING
        self._expires = now + self.max_wait_s

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
        if self.state is QueueState.OFFERING and self._offer is not None:
            self._offer.on_timer(now)
            self._after_offer(now)
        elif self.state is QueueState.WAITING and now >= self._expires:
            self._leave(now, f"waited {self.max_wait_s} s")

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

    def _leave(self, now: float, why: str) -> None:
        self.env.out.act(LeaveQueue(self.group.name, why))
        self.env.out.note(now, self.subject, Outcome.QUEUED, detail=f"left: {why}")
        self.state = QueueState.LEFT
        self.left_because = why

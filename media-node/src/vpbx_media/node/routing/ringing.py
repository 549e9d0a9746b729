"""Ringing people: a group by its strategy, one user, a decision's list, a queue offer.

One ``RingSession`` rings one list of extensions in one of three modes and
ends ANSWERED or with the reason nobody did:

- ``ALL``: every free member at once (ring-all; one user; a parallel decision);
- ``ONE_AT_A_TIME``: sequential, round-robin, least-recently-called, by-rank (the
  strategy only orders the list): each member rings for ``member_ring_s``, or
  an equal share of the whole ringing time over the members free at the start;
  the next one starts when the previous stops (no answer in its slot, or at once
  when it is busy or declines). With time left after the last member, the members
  who only did not answer ring again, in the same order; the only member left
  rings until the end;
- ``ESCALATING``: the next member joins every ``escalation_s`` while the earlier
  ones keep ringing (at once when nobody rings any more).

Whatever the mode, the whole list rings at most ``ring_s``. A member is offered
the call only when free at the moment its turn comes (``RouterEnv.availability``);
skipped members are on the route with the reason. A member whose every device
failed is done for this call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vpbx_common.nodeconfig import GroupEntry
from vpbx_common.pbx import RingStrategy

from .actions import RememberLastMember, Ring, StopRinging
from .agents import AgentSnapshot, Availability
from .env import RouterEnv
from .events import MemberFailure
from .trace import Outcome

DEFAULT_ESCALATION_S = 10.0  # the control API's default escalation_interval_s
# A member is not started for less than this: a phone ringing for a fraction of a
# second only annoys its owner.
MIN_RING_S = 1.0


class RingMode(enum.Enum):
    ALL = "all"
    ONE_AT_A_TIME = "one-at-a-time"
    ESCALATING = "escalating"


_MODES = {
    RingStrategy.RING_ALL: RingMode.ALL,
    RingStrategy.SEQUENTIAL: RingMode.ONE_AT_A_TIME,
    RingStrategy.ROUND_ROBIN: RingMode.ONE_AT_A_TIME,
    RingStrategy.LEAST_RECENTLY_CALLED: RingMode.ONE_AT_A_TIME,
    RingStrategy.BY_RANK: RingMode.ONE_AT_A_TIME,
    RingStrategy.ESCALATING: RingMode.ESCALATING,
}


class RingState(enum.Enum):
    IDLE = "idle"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"  # nobody answered; ``result`` says why


class RingResult(enum.StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no-answer"  # somebody rang and nobody picked up in time
    BUSY = "busy"  # nobody rang long enough: members busy (on a call, or 486)
    DECLINED = "declined"  # every member rung declined
    UNAVAILABLE = "unavailable"  # nobody free or reachable (away, dnd, no device, failures)


@dataclass(frozen=True, slots=True)
class RingSpec:
    subject: str  # for the route: "group:sales", "user:101", "decision"
    members: tuple[str, ...]  # in ringing order, no duplicates
    mode: RingMode
    ring_s: float  # the whole ringing at most
    member_ring_s: float | None = None  # one at a time: each member's slot; None: equal share
    escalation_s: float = DEFAULT_ESCALATION_S
    group: str | None = None  # named on Ring actions
    remember: bool = False  # round-robin: RememberLastMember for each member rung
    handed_out: bool = True  # False for a call to a person directly (call waiting)


def ring_order(group: GroupEntry, agents: AgentSnapshot, ring_rank: dict[str, int]) -> list[str]:
    """The group's members in the order its strategy rings them (ties keep list order).

    ``ring_rank``: extension -> the user's rank (by-rank).
    """
    members = list(dict.fromkeys(group.members))
    match group.strategy:
        case RingStrategy.ROUND_ROBIN:
            last = agents.last_member.get(group.name)
            if last in members:
                start = members.index(last) + 1
                members = members[start:] + members[:start]
        case RingStrategy.LEAST_RECENTLY_CALLED:
            # Never called first, then the longest ago; sorted() is stable for ties.
            def key(extension: str) -> tuple[bool, float]:
                end = agents.last_call_end(extension)
                return (end is not None, end or 0.0)

            members.sort(key=key)
        case RingStrategy.BY_RANK:
            members.sort(key=lambda extension: -ring_rank.get(extension, 0))
        case _:
            pass
    return members


def group_spec(
    group: GroupEntry, env: RouterEnv, ring_s: int | None = None, subject: str | None = None
) -> RingSpec:
    ranks = {user.extension: user.rank for user in env.config.users}
    return RingSpec(
        subject=subject or f"group:{group.name}",
        members=tuple(ring_order(group, env.agents, ranks)),
        mode=_MODES[group.strategy],
        ring_s=float(ring_s if ring_s is not None else group.ring_timeout_s),
        member_ring_s=float(group.member_ring_s) if group.member_ring_s is not None else None,
        escalation_s=float(group.escalation_interval_s or DEFAULT_ESCALATION_S),
        group=group.name,
        remember=group.strategy is RingStrategy.ROUND_ROBIN,
    )


class RingSession:
    def __init__(self, spec: RingSpec, env: RouterEnv) -> None:
        self.spec = spec
        self.env = env
        self.state = RingState.IDLE
        self.result: RingResult | None = None
        self.answered_by: str | None = None
        self.ringing: dict[str, float] = {}  # extension -> when its slot ends
        self._pending: list[str] = []  # still to ring in this pass
        self._unanswered: list[str] = []  # rang their slot out; rung again in the next pass
        self._rang_out = False  # somebody rang until their slot or the whole time ended
        self._failed: dict[str, MemberFailure] = {}
        self._skipped: dict[str, Availability] = {}
        self._slot = 0.0
        self._end = 0.0  # the whole ringing ends
        self._next_add: float | None = None  # escalating: when the next member joins

    # --- driving ----------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        if self.state is not RingState.RINGING:
            return None
        times = [self._end, *self.ringing.values()]
        if self._next_add is not None and self._pending:
            times.append(self._next_add)
        return min(times)

    def start(self, now: float) -> None:
        self.state = RingState.RINGING
        self._end = now + self.spec.ring_s
        free = [ext for ext in self.spec.members if self._free(ext, now)]
        if not free:
            self._finish(now)
            return
        self._pending = free
        match self.spec.mode:
            case RingMode.ALL:
                self._ring(free, self._end, now)
                self._pending = []
            case RingMode.ONE_AT_A_TIME:
                self._slot = self.spec.member_ring_s or self.spec.ring_s / len(free)
                self._next_one(now)
            case RingMode.ESCALATING:
                self._add_next(now)

    def on_timer(self, now: float) -> None:
        if self.state is not RingState.RINGING:
            return
        if now >= self._end:
            self._stop_all(now, "ring timeout")
            self._finish(now)
            return
        expired = [ext for ext, until in self.ringing.items() if until <= now]
        if expired:
            self.env.out.act(StopRinging(tuple(expired)))
            for ext in expired:
                del self.ringing[ext]
                self._unanswered.append(ext)
                self._rang_out = True
                self.env.out.note(now, self.spec.subject, Outcome.NO_ANSWER, ext, "slot over")
        match self.spec.mode:
            case RingMode.ONE_AT_A_TIME:
                if not self.ringing:
                    self._next_one(now)
            case RingMode.ESCALATING:
                due = self._next_add is not None and now >= self._next_add
                if due and not self._add_next(now) and not self.ringing:
                    self._finish(now)
            case RingMode.ALL:
                pass

    def on_answered(self, extension: str, now: float) -> bool:
        """Whether this answer wins the call (False: not ringing for us any more)."""
        if self.state is not RingState.RINGING or extension not in self.ringing:
            return False
        del self.ringing[extension]
        if self.ringing:
            self.env.out.act(StopRinging(tuple(self.ringing)))
            self.ringing.clear()
        self.state = RingState.ANSWERED
        self.result = RingResult.ANSWERED
        self.answered_by = extension
        self.env.out.note(now, self.spec.subject, Outcome.ANSWERED, extension)
        return True

    def on_failed(self, extension: str, status: MemberFailure, now: float) -> None:
        if self.state is not RingState.RINGING or extension not in self.ringing:
            return
        del self.ringing[extension]
        self._failed[extension] = status
        self.env.out.note(now, self.spec.subject, Outcome.FAILED, extension, str(status))
        if self.ringing:
            return
        match self.spec.mode:
            case RingMode.ONE_AT_A_TIME:
                self._next_one(now)  # at once: the caller should not wait out a dead slot
            case RingMode.ESCALATING:
                if not self._add_next(now):
                    self._finish(now)
            case RingMode.ALL:
                self._finish(now)

    def stop(self, now: float, why: str) -> None:
        """End the ringing from outside (the caller hung up)."""
        if self.state is RingState.RINGING:
            self._stop_all(now, why)
            self.state = RingState.ENDED

    # --- inside -------------------------------------------------------------

    def _free(self, extension: str, now: float) -> bool:
        availability = self.env.availability(extension, now, handed_out=self.spec.handed_out)
        if availability is Availability.FREE:
            return True
        if extension not in self._skipped:
            self._skipped[extension] = availability
            self.env.out.note(now, self.spec.subject, Outcome.SKIPPED, extension, str(availability))
        return False

    def _ring(self, extensions: list[str], until: float, now: float) -> None:
        self.env.out.act(Ring(tuple(extensions), until, self.spec.group))
        for extension in extensions:
            self.ringing[extension] = until
            self.env.out.note(now, self.spec.subject, Outcome.RINGING, extension)
            if self.spec.remember and self.spec.group is not None:
                self.env.out.act(RememberLastMember(self.spec.group, extension))

    def _next_one(self, now: float) -> None:
        while True:
            while self._pending and self._end - now >= MIN_RING_S:
                extension = self._pending.pop(0)
                if self._free(extension, now):
                    # The last one left rings out the time: stopping and ringing the same
                    # phone again would only cut the call short for the person.
                    alone = not self._pending and not self._unanswered
                    until = self._end if alone else min(now + self._slot, self._end)
                    self._ring([extension], until, now)
                    return
            if not self._unanswered or self._end - now < MIN_RING_S:
                break
            # Time left after the pass: ring again those who only did not answer.
            self._pending, self._unanswered = self._unanswered, []
            self._skipped = {}  # a member skipped now is on the route again
        self._finish(now)

    def _add_next(self, now: float) -> bool:
        while self._pending:
            extension = self._pending.pop(0)
            if self._free(extension, now):
                self._ring([extension], self._end, now)
                self._next_add = now + self.spec.escalation_s
                return True
        self._next_add = None
        return False

    def _stop_all(self, now: float, why: str) -> None:
        if not self.ringing:
            return
        self.env.out.act(StopRinging(tuple(self.ringing)))
        for extension in self.ringing:
            self.env.out.note(now, self.spec.subject, Outcome.NO_ANSWER, extension, why)
        self._rang_out = True
        self.ringing.clear()

    def _finish(self, now: float) -> None:
        self.state = RingState.ENDED
        self.ringing.clear()
        self._next_add = None
        self.result = self._why_nobody()
        summary = self._summary(self.result)
        self.env.out.note(now, self.spec.subject, Outcome.NO_ANSWER, detail=summary)

    def _why_nobody(self) -> RingResult:
        if self._rang_out:
            return RingResult.NO_ANSWER
        failures = set(self._failed.values())
        if failures:
            if MemberFailure.BUSY in failures:
                return RingResult.BUSY
            # Members nobody could reach do not outvote the people who declined.
            if failures - {MemberFailure.UNAVAILABLE} == {MemberFailure.DECLINED}:
                return RingResult.DECLINED
            return RingResult.UNAVAILABLE
        if self._skipped and set(self._skipped.values()) == {Availability.ON_CALL}:
            return RingResult.BUSY
        return RingResult.UNAVAILABLE

    def _summary(self, result: RingResult) -> str:
        if not self.spec.members:
            return "no members"
        if not self._rang_out and not self._failed:
            return "nobody free"
        return _SUMMARIES[result]


_SUMMARIES = {
    RingResult.ANSWERED: "answered",
    RingResult.NO_ANSWER: "nobody answered in time",
    RingResult.BUSY: "members busy",
    RingResult.DECLINED: "declined",
    RingResult.UNAVAILABLE: "nobody reachable",
}

"""A punctual executor on a fake clock: drives a ``CallRouter`` without sockets or sleeps.

For tests, and for replaying a call's events from a journal: it wakes the
router exactly at each ``next_deadline`` and records every action with the
time it was given. Events at time ``t`` come after the timers due before
``t``; timers due exactly at ``t`` run after the event, as the router does with
a real executor.
"""

from __future__ import annotations

from typing import TypeVar

from .actions import Action, Done
from .events import Event, TimerFired
from .router import CallRouter

_A = TypeVar("_A")

# Timer wake-ups per advance before the simulator calls it a hang (each moves time on).
_MAX_WAKEUPS = 100_000


class Simulator:
    def __init__(self, router: CallRouter) -> None:
        self.router = router
        self.now = 0.0
        self.timeline: list[tuple[float, Action]] = []

    def start(self, at: float = 0.0) -> list[Action]:
        self.now = at
        return self._record(at, self.router.start(at))

    def advance(self, to: float) -> list[Action]:
        """Let time pass until ``to``, waking the router at each deadline up to and at ``to``."""
        return self._advance(to, inclusive=True)

    def send(self, event: Event, at: float | None = None) -> list[Action]:
        """Timers due before ``at`` run first (at their own times), then the event."""
        when = self.now if at is None else at
        if when < self.now:
            raise ValueError(f"time runs forward: {when} < {self.now}")
        actions = self._advance(when, inclusive=False)
        self.now = when
        return actions + self._record(when, self.router.on_event(event, when))

    def run_out(self, limit: float = 86_400.0) -> list[Action]:
        """Let timers run until the router is done or waits only for events."""
        actions: list[Action] = []
        for _ in range(_MAX_WAKEUPS):
            deadline = self.router.next_deadline
            if deadline is None or deadline > limit:
                return actions
            actions += self._advance(deadline, inclusive=True)
        raise RuntimeError("router never settles")

    @property
    def done(self) -> Done | None:
        return next((a for _, a in self.timeline if isinstance(a, Done)), None)

    def of(self, kind: type[_A]) -> list[tuple[float, _A]]:
        """The recorded actions of one type, with their times."""
        return [(t, a) for t, a in self.timeline if isinstance(a, kind)]

    def _advance(self, to: float, *, inclusive: bool) -> list[Action]:
        actions: list[Action] = []
        for _ in range(_MAX_WAKEUPS):
            deadline = self.router.next_deadline
            if deadline is None or deadline > to or (deadline == to and not inclusive):
                self.now = max(self.now, to) if inclusive else self.now
                return actions
            self.now = max(self.now, deadline)
            actions += self._record(self.now, self.router.on_event(TimerFired(), self.now))
        raise RuntimeError("router timers never settle")

    def _record(self, at: float, actions: list[Action]) -> list[Action]:
        self.timeline.extend((at, action) for action in actions)
        return actions

"""Where the call is in a route plan: a stack of step lists (a schedule branch is pushed
on top of its plan and, when it runs out, the plan goes on after the schedule step)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vpbx_common.nodeconfig import RoutePlanEntry
from vpbx_common.nodeconfig.steps import Step


@dataclass(slots=True)
class _Frame:
    steps: Sequence[Step]
    subject: str
    index: int = 0


class PlanCursor:
    def __init__(self, plan: RoutePlanEntry) -> None:
        self.plan = plan
        self._frames = [_Frame(plan.steps, f"plan:{plan.name}")]

    def next(self) -> tuple[str, Step] | None:
        """The next step to run with its route subject; None: the plan has run out."""
        while self._frames:
            frame = self._frames[-1]
            if frame.index < len(frame.steps):
                step = frame.steps[frame.index]
                frame.index += 1
                return f"{frame.subject} step {frame.index} ({step.type})", step
            self._frames.pop()
        return None

    def push(self, steps: Sequence[Step], subject: str) -> None:
        """Run ``steps`` next, then go on where the plan was."""
        self._frames.append(_Frame(steps, subject))

    def has_more(self) -> bool:
        return any(frame.index < len(frame.steps) for frame in self._frames)

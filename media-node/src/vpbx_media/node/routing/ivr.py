"""An IVR menu: play the prompt, wait for a digit, go where it says.

The caller may press a digit while the prompt plays (it stops the prompt); the
digit timeout starts when the prompt has finished. A wrong digit and a timeout
each replay the prompt while replays are left (``max_retries``, shared by both);
after that the call goes to ``invalid_target`` or ``timeout_target``, whichever
fits the last try, or is hung up when that is not set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vpbx_common.nodeconfig import IvrMenuEntry, Target

from .actions import CollectDigits
from .env import RouterEnv
from .trace import Outcome

# A prompt whose end the executor never reports (a lost event) must not hold the
# caller for ever; no IVR prompt is this long.
PROMPT_GUARD_S = 300.0


class IvrState(enum.Enum):
    IDLE = "idle"
    PLAYING = "playing"  # the prompt plays; a digit interrupts it
    WAITING = "waiting"  # the prompt ended; the digit timeout runs
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class IvrChoice:
    """Where the menu sends the call; ``target`` None: hang up."""

    target: Target | None
    why: str


class IvrSession:
    def __init__(self, menu: IvrMenuEntry, subject: str, env: RouterEnv) -> None:
        self.menu = menu
        self.subject = subject
        self.env = env
        self.state = IvrState.IDLE
        self.choice: IvrChoice | None = None
        self._replays = 0
        self._deadline: float | None = None

    @property
    def deadline(self) -> float | None:
        return self._deadline if self.state in (IvrState.PLAYING, IvrState.WAITING) else None

    def start(self, now: float) -> None:
        self.env.out.act(CollectDigits(max_digits=1))
        self._play(now)

    def on_prompt_finished(self, now: float) -> None:
        if self.state is IvrState.PLAYING:
            self.env.playing = False
            self.state = IvrState.WAITING
            self._deadline = now + self.menu.timeout_s

    def on_digit(self, digit: str, now: float) -> None:
        if self.state not in (IvrState.PLAYING, IvrState.WAITING):
            return
        self.env.stop_playback()  # barge-in: the caller knows what they want
        target = self.menu.options.get(digit)
        if target is not None:
            self._choose(now, target, f"digit {digit}")
            return
        self.env.out.note(now, self.subject, Outcome.DECIDED, detail=f"wrong digit {digit}")
        self._retry(now, self.menu.invalid_target, f"wrong digit {digit}")

    def on_timer(self, now: float) -> None:
        if self.state is IvrState.PLAYING:
            self.env.out.note(now, self.subject, Outcome.PROMPTED, detail="prompt end not heard")
            self.on_prompt_finished(now)
        elif self.state is IvrState.WAITING:
            self.env.out.note(now, self.subject, Outcome.DECIDED, detail="no digit")
            self._retry(now, self.menu.timeout_target, "no digit")

    def stop(self) -> None:
        self.state = IvrState.ENDED

    def _play(self, now: float) -> None:
        self.env.play(self.menu.prompt)
        self.state = IvrState.PLAYING
        self._deadline = now + PROMPT_GUARD_S
        replay = f"replay {self._replays}" if self._replays else ""
        self.env.out.note(now, self.subject, Outcome.PROMPTED, detail=replay)

    def _retry(self, now: float, final: Target | None, why: str) -> None:
        if self._replays < self.menu.max_retries:
            self._replays += 1
            self._play(now)
            return
        retries = f"{why} after {self._replays} replays"
        self._choose(now, final, retries if final is not None else f"{retries}: hang up")

    def _choose(self, now: float, target: Target | None, why: str) -> None:
        self.state = IvrState.ENDED
        self._deadline = None
        self.choice = IvrChoice(target, why)
        if target is not None:
            self.env.out.note(now, self.subject, Outcome.DECIDED, detail=why)

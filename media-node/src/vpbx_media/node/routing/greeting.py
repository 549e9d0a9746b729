"""A number's greeting: answered, the greeting plays to its end, then routing begins.

Digits are not collected: a greeting is not a menu, and a caller pressing keys
early must not skip it (nor choose anything in a menu that follows).
"""

from __future__ import annotations

import enum

from vpbx_common.nodeconfig import Prompt

from .env import RouterEnv
from .trace import Outcome

# A greeting whose end the executor never reports must not hold the call for ever; no
# greeting is this long (the control API caps prompts well below it).
GREETING_GUARD_S = 300.0


class GreetingState(enum.Enum):
    IDLE = "idle"
    PLAYING = "playing"
    ENDED = "ended"


class GreetingSession:
    def __init__(self, prompt: Prompt, subject: str, env: RouterEnv) -> None:
        self.prompt = prompt
        self.subject = subject
        self.env = env
        self.state = GreetingState.IDLE
        self._guard = 0.0

    @property
    def deadline(self) -> float | None:
        return self._guard if self.state is GreetingState.PLAYING else None

    def start(self, now: float) -> None:
        self.env.play(self.prompt)
        self.state = GreetingState.PLAYING
        self._guard = now + GREETING_GUARD_S
        self.env.out.note(now, self.subject, Outcome.PROMPTED, detail=self.env.call.number)

    def on_prompt_finished(self, now: float) -> None:
        if self.state is GreetingState.PLAYING:
            self.env.playing = False
            self.state = GreetingState.ENDED

    def on_timer(self, now: float) -> None:
        if self.state is GreetingState.PLAYING and now >= self._guard:
            self.env.out.note(now, self.subject, Outcome.PROMPTED, detail="greeting end not heard")
            self.env.stop_playback()
            self.state = GreetingState.ENDED

    def stop(self) -> None:
        self.state = GreetingState.ENDED

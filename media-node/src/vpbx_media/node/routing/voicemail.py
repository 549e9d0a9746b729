"""Voicemail: answer, greet, record, hang up."""

from __future__ import annotations

import enum

from .actions import RecordVoicemail
from .env import RouterEnv
from .trace import Outcome

VOICEMAIL_MAX_S = 120  # the longest message recorded
# The greeting plays before the recording; a lost VoicemailFinished ends the call this
# long after the recording should have.
VOICEMAIL_GUARD_S = 60.0


class VoicemailState(enum.Enum):
    IDLE = "idle"
    RECORDING = "recording"
    ENDED = "ended"


class VoicemailSession:
    def __init__(self, box: str | None, subject: str, env: RouterEnv) -> None:
        self.box = box
        self.subject = subject
        self.env = env
        self.state = VoicemailState.IDLE
        self.kept = False
        self._deadline = 0.0

    @property
    def deadline(self) -> float | None:
        return self._deadline if self.state is VoicemailState.RECORDING else None

    def start(self, now: float) -> None:
        self.env.stop_playback()
        self.env.out.act(RecordVoicemail(self.box, VOICEMAIL_MAX_S))
        self.state = VoicemailState.RECORDING
        self._deadline = now + VOICEMAIL_MAX_S + VOICEMAIL_GUARD_S

    def on_finished(self, now: float, kept: bool = True) -> None:
        if self.state is VoicemailState.RECORDING:
            self.state = VoicemailState.ENDED
            self.kept = kept
            self.env.out.note(now, self.subject, Outcome.RECORDED if kept else Outcome.NO_MESSAGE)

    def on_timer(self, now: float) -> None:
        if self.state is VoicemailState.RECORDING and now >= self._deadline:
            self.state = VoicemailState.ENDED
            self.env.out.note(now, self.subject, Outcome.RECORDED, detail="end not heard")

    def stop(self) -> None:
        self.state = VoicemailState.ENDED

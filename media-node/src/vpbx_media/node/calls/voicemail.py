"""Taking a voice message: greeting, beep, the caller's message until they are done.

The router decided on voicemail (``RecordVoicemail``); this is how the call carries
it out on the caller's media. The greeting (the box owner's own, else the
platform's) can be skipped with ``#`` or ``*``; the beep always plays. The message
ends with ``#``, after ``VOICEMAIL_SILENCE_S`` without voice, at the box's
maximum length, or when the caller hangs up (the usual way; the message is kept).
A message in which the caller never spoke is dropped: nobody wants to listen to
silence. Ended by silence, the message loses its silent tail but for half a second.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Sequence

from vpbx_common.nodeconfig import Prompt

from ...media.g711 import SAMPLE_RATE
from ...media.recorder import Channel, Recording, RecordingMeta
from ..recordings import RecordingService
from ..routing.actions import Sound, SpokenPhrase
from .media import CallerMedia

logger = logging.getLogger(__name__)

VOICEMAIL_SILENCE_S = 5.0
_TAIL_SAMPLES = SAMPLE_RATE // 2  # kept after the last voice when silence ends a message
_CHECK_INTERVAL_S = 0.2
_SKIP_GREETING_KEYS = "#*"
_END_KEY = "#"


class VoicemailState(enum.Enum):
    GREETING = "greeting"
    RECORDING = "recording"
    ENDED = "ended"


class VoicemailEnd(enum.StrEnum):
    KEY = "key"  # the caller pressed #
    SILENCE = "silence"
    MAX_LENGTH = "max-length"
    CALLER_LEFT = "caller-left"


class VoicemailTaker:
    def __init__(
        self,
        media: CallerMedia,
        recordings: RecordingService,
        meta: RecordingMeta,
        greeting: Sequence[Prompt | Sound | SpokenPhrase],
        max_s: float,
        on_finished: Callable[[bool], None],
    ) -> None:
        self.media = media
        self.recordings = recordings
        self.meta = meta
        self.greeting = tuple(greeting)
        self.max_s = max_s
        self._on_finished = on_finished
        self.state = VoicemailState.GREETING
        self.ended_by: VoicemailEnd | None = None
        self.kept = False  # a message was stored (it had voice in it)
        self._recording: Recording | None = None

    async def run(self) -> None:
        await self.media.play_to_end(self.greeting)  # False: skipped with a key
        if self.state is not VoicemailState.GREETING:
            return
        await self.media.play_to_end((Sound.BEEP,))
        if self.state is not VoicemailState.GREETING:
            return
        self._recording = self.recordings.begin(self.meta)
        self.media.record(self._recording.writer(Channel.CALLER))
        self.state = VoicemailState.RECORDING
        started = time.monotonic()
        while self.state is VoicemailState.RECORDING:
            await asyncio.sleep(_CHECK_INTERVAL_S)
            now = time.monotonic()
            if now - started >= self.max_s:
                self.end(VoicemailEnd.MAX_LENGTH)
            elif now - self.media.last_voice >= VOICEMAIL_SILENCE_S:
                self.end(VoicemailEnd.SILENCE)

    def digit(self, digit: str) -> None:
        if self.state is VoicemailState.GREETING and digit in _SKIP_GREETING_KEYS:
            self.media.stop_playback()
        elif self.state is VoicemailState.RECORDING and digit == _END_KEY:
            self.end(VoicemailEnd.KEY)

    def end(self, why: VoicemailEnd) -> None:
        """Stop here; keep the message if it has voice. Tells the router unless the
        caller left (the router knows that already)."""
        if self.state is VoicemailState.ENDED:
            return
        was_recording = self.state is VoicemailState.RECORDING
        self.state = VoicemailState.ENDED
        self.ended_by = why
        recording, self._recording = self._recording, None
        if was_recording and recording is not None:
            voice_end = self.media.voice_end_samples
            self.media.record(None)
            if voice_end == 0:
                self.recordings.discard(recording)
            else:
                keep = voice_end + _TAIL_SAMPLES if why is VoicemailEnd.SILENCE else None
                self.recordings.finish(recording, length_samples=keep)
                self.kept = True
        else:
            self.media.stop_playback()
        logger.info(
            "call=%s tenant=%s voicemail ended by %s, message %s",
            self.meta.call_id,
            self.meta.tenant,
            why,
            "kept" if self.kept else "not kept",
        )
        if why is not VoicemailEnd.CALLER_LEFT:
            self._on_finished(self.kept)

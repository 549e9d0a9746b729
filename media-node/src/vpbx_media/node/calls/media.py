"""The node's own media towards the caller: prompts and tones out, digits in.

While the node serves the caller (an IVR, a queue, voicemail, ringback after an
IVR), the relay hands the caller's RTP to ``on_rtp`` instead of forwarding it,
and a ``Playback`` on the node's one paced scheduler sends the prompt. Digits
come as RFC 4733 events when the caller's SDP offered telephone-event, from
in-band tones otherwise, and from SIP INFO either way.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Sequence

from vpbx_common.nodeconfig import Prompt

from ...media.dtmf import DtmfDetector, DtmfEventReceiver
from ...media.g711 import Codec, loudness_table
from ...media.player import Loop, PlayOnce
from ...media.recorder import ChannelWriter
from ...media.rtpout import RtpStream
from ...media.scheduler import PacedScheduler, Playback
from ...rtp.packet import payload_bounds
from ...rtp.relay import Leg, MediaRelay
from ...sdp import Negotiation
from ..prompts import PromptLibrary
from ..routing.actions import QueueAnnouncement, Sound, SpokenPhrase

_TIMESTAMP = struct.Struct("!I")


class CallerMedia:
    def __init__(
        self,
        relay: MediaRelay,
        negotiation: Negotiation,
        scheduler: PacedScheduler,
        prompts: PromptLibrary,
        *,
        on_digit: Callable[[str], None],
        on_prompt_end: Callable[[], None],
    ) -> None:
        self._relay = relay
        self._scheduler = scheduler
        self._prompts = prompts
        self._on_digit = on_digit
        self._on_prompt_end = on_prompt_end
        self.codec = Codec.from_name(negotiation.codec.name)
        event = negotiation.telephone_event
        self._event_type = event.payload_type if event is not None else -1
        self._audio_type = negotiation.codec.payload_type
        self._events = DtmfEventReceiver()
        self._tones = DtmfDetector() if event is None else None
        self._playback = Playback(RtpStream(self._audio_type), relay.sender(Leg.A))
        self._generation = 0  # which play() a completion belongs to
        self._ended: asyncio.Future[bool] | None = None  # play_to_end()'s
        self._recorder: ChannelWriter | None = None
        self._loudness = loudness_table(self.codec)
        self.serving = False
        self.collecting = False
        # Voice activity while recording: when the caller last spoke (time.monotonic())
        # and where on the recording's timeline that speech ended.
        self.last_voice = 0.0
        self.voice_end_samples = 0

    def start(self) -> None:
        """Serve the caller: their RTP comes to us, our prompts go to them."""
        if not self.serving:
            self.serving = True
            self._relay.serve(Leg.A, self._on_rtp)
            self._scheduler.add(self._playback)

    def stop(self) -> None:
        """Hand the caller back to the relay (bridged to the other leg, or the call ends)."""
        if self.serving:
            self.serving = False
            self.collecting = False
            self._recorder = None
            self._playback.play(None)
            self._resolve(False)
            self._scheduler.remove(self._playback)
            self._relay.serve(Leg.A, None)

    async def play(
        self, sound: Prompt | Sound | QueueAnnouncement | SpokenPhrase, *, loop: bool
    ) -> None:
        self._generation += 1
        generation = self._generation
        frames = await self._prompts.frames(sound, self.codec)
        if generation != self._generation or not self.serving:
            return  # replaced or stopped while the audio was being fetched
        if loop:
            self._playback.play(Loop(frames))
        else:
            self._playback.play(PlayOnce(frames), lambda _: self._finished(generation))

    async def play_to_end(self, sounds: Sequence[Prompt | Sound | SpokenPhrase]) -> bool:
        """Play ``sounds`` one after the other; True when they played to the end, False
        when stopped or replaced first (a key pressed to skip, the caller gone)."""
        self._generation += 1
        generation = self._generation
        frames = [await self._prompts.frames(sound, self.codec) for sound in sounds]
        if generation != self._generation or not self.serving:
            return False
        ended = self._ended = asyncio.get_running_loop().create_future()
        self._playback.play(PlayOnce(frames), lambda _: self._resolve(True))
        played: bool = await ended
        return played

    def _resolve(self, played: bool) -> None:
        ended, self._ended = self._ended, None
        if ended is not None and not ended.done():
            ended.set_result(played)

    def stop_playback(self) -> None:
        self._generation += 1
        self._playback.play(None)
        self._resolve(False)

    def _finished(self, generation: int) -> None:
        if generation == self._generation:
            self._on_prompt_end()

    def record(self, writer: ChannelWriter | None) -> None:
        """Write the caller's audio to ``writer`` (None: stop), tracking their voice."""
        self._recorder = writer
        self.last_voice = time.monotonic()
        self.voice_end_samples = 0

    def digit(self, digit: str) -> None:
        """A digit from outside the RTP path (SIP INFO)."""
        if self.collecting:
            self._on_digit(digit)

    def _on_rtp(self, packet: bytes) -> None:
        header, end = payload_bounds(packet)
        if end <= header:
            return
        payload_type = packet[1] & 0x7F
        recorder = self._recorder
        if recorder is not None:
            recorder.place(packet, header, end)
            if payload_type == self._audio_type and max(
                packet[header:end].translate(self._loudness)
            ):
                self.last_voice = time.monotonic()
                self.voice_end_samples = recorder.length
        digit: str | None = None
        if payload_type == self._event_type:
            (timestamp,) = _TIMESTAMP.unpack_from(packet, 4)
            digit = self._events.feed(timestamp, bool(packet[1] & 0x80), packet[header:end])
        elif payload_type == self._audio_type and self._tones is not None:
            digit = self._tones.feed_g711(packet[header:end], self.codec)
        if digit is not None and self.collecting:
            self._on_digit(digit)

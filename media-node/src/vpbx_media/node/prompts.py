"""What callers hear from the node: the tenant's prompts and the sounds the platform ships.

Every prompt is encoded once per codec and cached (``PromptCache``): a thousand
callers in the queue share one music-on-hold frame tuple. Uploaded and spoken
prompts are fetched from the control API by id; an id names immutable audio,
so a fetched prompt never needs refreshing.

Queue announcements are put together from the platform's spoken phrases
(``vpbx_common.speech``), fetched once per language and phrase from the
control API and cached per codec like any prompt; an announcement (place,
minutes) is then a concatenation of cached frames, itself cached.
"""

from __future__ import annotations

import io
import logging
from array import array
from collections.abc import Awaitable, Callable

from vpbx_common import speech
from vpbx_common.nodeconfig import AudioPrompt, Prompt, TonePrompt, TtsPrompt

from ..media import tones
from ..media.g711 import Codec
from ..media.prompt import Prompt as Frames
from ..media.prompt import PromptCache
from ..media.wav import WavFormatError, read_mono_8k
from .routing.actions import QueueAnnouncement, Sound, SpokenPhrase

logger = logging.getLogger(__name__)

FetchAudio = Callable[[str], Awaitable[bytes]]
FetchSpeech = Callable[[str, str], Awaitable[bytes]]  # (language, phrase) -> WAV

# Between the phrases of an announcement: espeak-ng's clips carry little silence.
_PHRASE_GAP_FRAMES = 8  # 160 ms

# A tenant prompt that cannot be had (control API down, a broken file) is replaced by
# this short tone, so an IVR still tells the caller that it waits for a key.
_FALLBACK = TonePrompt(frequency_hz=440, duration_ms=400)


def music_on_hold() -> array[int]:
    """The default hold music: a slow, quiet arpeggio over four chords (about 9.6 s)."""
    chords = (
        (261.6, 329.6, 392.0),
        (220.0, 261.6, 329.6),
        (174.6, 220.0, 261.6),
        (196.0, 246.9, 293.7),
    )
    note = tones.samples_for(400)
    music = array("h")
    for chord in chords:
        for frequency in (*chord, chord[1], *chord[::-1], chord[1]):
            music.extend(tones.sine(frequency, note, -20.0, ramp_ms=40.0))
    return music


def _beep() -> array[int]:
    return tones.VOICEMAIL_BEEP.render()


def conference_join() -> array[int]:
    """The join tone of a conference room: two short rising notes (about 0.3 s)."""
    tone = array("h")
    tone.extend(tones.sine(660.0, tones.samples_for(120), -12.0, ramp_ms=5.0))
    tone.extend(tones.silence(tones.samples_for(40)))
    tone.extend(tones.sine(880.0, tones.samples_for(160), -12.0, ramp_ms=5.0))
    return tone


class PromptLibrary:
    def __init__(
        self,
        fetch: FetchAudio | None = None,
        cache: PromptCache | None = None,
        *,
        fetch_speech: FetchSpeech | None = None,
    ) -> None:
        self._fetch = fetch
        self._fetch_speech = fetch_speech
        self.cache = cache if cache is not None else PromptCache()

    async def frames(
        self, sound: Prompt | Sound | QueueAnnouncement | SpokenPhrase, codec: Codec
    ) -> Frames:
        if isinstance(sound, QueueAnnouncement):
            return await self.announcement(sound, codec)
        if isinstance(sound, SpokenPhrase):
            language = speech.language_of(sound.language)
            clip = await self.phrase(language, sound.phrase, codec)
            return clip if clip is not None else self._tone(_FALLBACK, codec)
        if isinstance(sound, Sound):
            return self._sound(sound, codec)
        if isinstance(sound, TonePrompt):
            return self._tone(sound, codec)
        prompt_id = sound.prompt_id if isinstance(sound, AudioPrompt | TtsPrompt) else None
        if prompt_id is None:
            return self._tone(_FALLBACK, codec)
        key = f"prompt:{prompt_id}"
        cached = self.cache.get(key, codec)
        if cached is not None:
            return cached
        pcm = await self._audio(prompt_id)
        if pcm is None:
            return self._tone(_FALLBACK, codec)
        return self.cache.get_or_build(key, codec, lambda c: Frames.from_pcm(pcm, c))

    async def announcement(self, announcement: QueueAnnouncement, codec: Codec) -> Frames:
        """The caller's place and expected wait, spoken in the tenant's language."""
        language = speech.language_of(announcement.language)
        key = (
            f"announce:{language}:{announcement.position}:{announcement.wait_minutes}"
            f":{announcement.callback_key or ''}"
        )
        cached = self.cache.get(key, codec)
        if cached is not None:
            return cached
        clips: list[Frames] = []
        phrases = speech.announcement(
            announcement.position, announcement.wait_minutes, announcement.callback_key
        )
        for phrase in phrases:
            clip = await self.phrase(language, phrase, codec)
            if clip is None:
                # Half a sentence would mislead: a tone, and the next announcement retries.
                return self._tone(_FALLBACK, codec)
            clips.append(clip)
        gap = (codec.silence_frame(),) * _PHRASE_GAP_FRAMES
        frames: list[bytes] = []
        for clip in clips:
            frames.extend(clip.frames)
            frames.extend(gap)
        built = Frames(codec, tuple(frames))
        self.cache.put(key, built)
        return built

    async def phrase(self, language: str, phrase: str, codec: Codec) -> Frames | None:
        """One of the platform's spoken phrases (None: it cannot be had now)."""
        key = f"speech:{language}:{phrase}"
        cached = self.cache.get(key, codec)
        if cached is not None:
            return cached
        if self._fetch_speech is None:
            logger.warning("phrase %s/%s: no control API to fetch it from", language, phrase)
            return None
        try:
            pcm = read_mono_8k(io.BytesIO(await self._fetch_speech(language, phrase)))
        except (OSError, WavFormatError, ValueError) as exc:
            logger.warning("phrase %s/%s unavailable (%s)", language, phrase, exc)
            return None
        return self.cache.get_or_build(key, codec, lambda c: Frames.from_pcm(pcm, c))

    async def _audio(self, prompt_id: str) -> array[int] | None:
        if self._fetch is None:
            logger.warning("prompt %s: no control API to fetch it from; playing a tone", prompt_id)
            return None
        try:
            return read_mono_8k(io.BytesIO(await self._fetch(prompt_id)))
        except (OSError, WavFormatError, ValueError) as exc:
            logger.warning("prompt %s unavailable (%s); playing a tone", prompt_id, exc)
            return None

    def _tone(self, tone: TonePrompt, codec: Codec) -> Frames:
        samples = tones.samples_for(tone.duration_ms)
        return self.cache.from_pcm(
            f"tone:{tone.frequency_hz}:{tone.duration_ms}",
            codec,
            lambda: tones.sine(tone.frequency_hz, samples, -10.0, ramp_ms=5.0),
        )

    def _sound(self, sound: Sound, codec: Codec) -> Frames:
        if sound is Sound.RINGBACK:
            return self.cache.from_cadence("ringback", tones.RINGBACK, codec)
        if sound is Sound.MUSIC_ON_HOLD:
            return self.cache.from_pcm("music-on-hold", codec, music_on_hold)
        if sound is Sound.BEEP:
            return self.cache.from_pcm("beep", codec, _beep)
        if sound is Sound.CONFERENCE_JOIN:
            return self.cache.from_pcm("conference-join", codec, conference_join)
        # The default greeting is spoken in the tenant's language: the call asks for a
        # SpokenPhrase; without a language this is all there is.
        return self._tone(_FALLBACK, codec)

"""Queue announcements from the platform's spoken phrases: fetched once, cached per codec."""

from __future__ import annotations

import io
import wave

from vpbx_media.media.g711 import Codec
from vpbx_media.media.tones import sine
from vpbx_media.node.prompts import PromptLibrary
from vpbx_media.node.routing import QueueAnnouncement


def _wav(ms: int, frequency: float) -> bytes:
    samples = sine(frequency, 8 * ms, -10.0)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


class Phrases:
    def __init__(self, missing: str = "") -> None:
        self.asked: list[tuple[str, str]] = []
        self.missing = missing

    async def __call__(self, language: str, phrase: str) -> bytes:
        self.asked.append((language, phrase))
        if phrase == self.missing:
            raise OSError("control API answered 503")
        return _wav(200, 300 + 10 * len(self.asked))


async def test_an_announcement_is_built_from_phrases_fetched_once() -> None:
    phrases = Phrases()
    library = PromptLibrary(fetch_speech=phrases)
    first = await library.frames(QueueAnnouncement("ru-RU", 3, 4), Codec.PCMU)
    assert phrases.asked == [
        ("ru", "you-are-number"),
        ("ru", "3"),
        ("ru", "expected-wait"),
        ("ru", "minutes-4"),
        ("ru", "please-hold"),
    ]
    # Five 200 ms clips, each followed by a 160 ms gap.
    assert first.duration_ms == 5 * (200 + 160)
    assert await library.frames(QueueAnnouncement("ru-RU", 3, 4), Codec.PCMU) is first
    await library.frames(QueueAnnouncement("ru-RU", 2, 0), Codec.PCMU)
    assert phrases.asked[5:] == [("ru", "2"), ("ru", "less-than-a-minute")]
    await library.frames(QueueAnnouncement("en-US", 2, 0), Codec.PCMA)
    assert {language for language, _ in phrases.asked[7:]} == {"en"}


async def test_a_phrase_that_cannot_be_had_gives_a_tone_and_is_retried() -> None:
    phrases = Phrases(missing="expected-wait")
    library = PromptLibrary(fetch_speech=phrases)
    tone = await library.frames(QueueAnnouncement("ru-RU", 1, 0), Codec.PCMU)
    assert tone.duration_ms == 400
    phrases.missing = ""
    spoken = await library.frames(QueueAnnouncement("ru-RU", 1, 0), Codec.PCMU)
    assert spoken.duration_ms > 1000
    assert phrases.asked.count(("ru", "you-are-number")) == 1  # the clip stayed cached

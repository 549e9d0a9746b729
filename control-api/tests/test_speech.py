"""Text to speech for IVR prompts: voice choice, and espeak-ng run safely (real espeak-ng)."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from pathlib import Path

import pytest
from tests.services.control_api import ApiHarness
from tests.wavs import read_wav

from vpbx_common.speech import phrase_text
from vpbx_control.ivr.speech import (
    SpeechEngine,
    SpeechFailedError,
    SpeechUnavailableError,
    UnspeakableTextError,
    UnsupportedLanguageError,
    parse_voices,
    voice_for,
)

# The head of `espeak-ng --voices` (1.51): voice names with spaces written as underscores,
# other languages a voice speaks in parentheses with a priority.
LISTING = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  de              --/M      German             gmw/de
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 5  en-gb-x-rp      --/M      English_(Received_Pronunciation) gmw/en-GB-x-rp       (en-gb 4)(en 5)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  pt-br           --/M      Portuguese_(Brazil) roa/pt-BR            (pt 6)
 5  ru              --/M      Russian            zle/ru
 2  ru-lv           --/M      Russian_(Latvia)   zle/ru-LV
"""


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "espeak-ng"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_the_voice_listing_is_read_with_the_other_languages() -> None:
    voices = parse_voices(LISTING)
    assert voices == {"de", "en", "en-gb", "en-gb-x-rp", "en-us", "pt", "pt-br", "ru", "ru-lv"}


@pytest.mark.parametrize(
    ("language", "voice"),
    [
        ("ru-RU", "ru"),
        ("ru", "ru"),
        ("en-US", "en-us"),
        ("en-GB", "en"),
        ("en-AU", "en"),
        ("en", "en"),
        ("de-DE", "de"),
        ("pt-BR", "pt-br"),
        ("pt-PT", "pt"),
        ("ru-LV", "ru-lv"),
    ],
)
def test_a_language_picks_its_voice(language: str, voice: str) -> None:
    assert voice_for(language, parse_voices(LISTING)) == voice


def test_a_language_without_a_voice_is_refused() -> None:
    with pytest.raises(UnsupportedLanguageError, match="'xx-YY'"):
        voice_for("xx-YY", parse_voices(LISTING))
    with pytest.raises(UnsupportedLanguageError):
        voice_for("fr-FR", parse_voices(LISTING))


async def test_the_text_is_spoken_never_read_as_options_or_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"--help -w {marker} $(touch {marker}); touch {marker} `touch {marker}`"
    speech = await SpeechEngine().render(text, "en-US")
    rate, channels, _, samples = read_wav(speech.audio.wav)
    assert (rate, channels) == (8000, 1)
    assert len(samples) / rate > 2  # all of it was spoken
    assert not marker.exists()


async def test_text_with_nothing_to_say_is_refused() -> None:
    with pytest.raises(UnspeakableTextError, match="silence"):
        await SpeechEngine().render("...", "en-US")


async def test_rendering_keeps_the_event_loop_free() -> None:
    text = "Press one for sales, zero for the operator. " * 22  # ~1000 characters, ~60 s
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        speech = await SpeechEngine().render(text, "en-US")
    finally:
        ticker.cancel()
    assert speech.audio.duration_ms > 30_000
    assert len(gaps) > 20
    assert max(gaps) < 1.0


async def test_without_espeak_ng_speech_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnavailableError, match="espeak-ng is not installed"):
        await SpeechEngine(str(tmp_path / "missing")).voice("ru-RU")


async def test_a_hung_espeak_ng_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    engine = SpeechEngine(_script(tmp_path, "exec sleep 60"), timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(SpeechFailedError, match="too long"):
        await engine.voice("ru-RU")
    assert time.monotonic() - started < 5


async def test_a_failing_espeak_ng_is_an_error_not_audio(tmp_path: Path) -> None:
    engine = SpeechEngine(_script(tmp_path, 'echo "broken" >&2; exit 3'))
    with pytest.raises(SpeechFailedError):
        await engine.voice("ru-RU")


# --- the platform's spoken phrases (/internal/v1/speech), real espeak-ng ----------------


def _speech_rms(samples: array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def _voiced_share(samples: array[int], threshold: float = 300.0) -> float:
    """Share of 20 ms windows loud enough to be speech (not silence, not a click)."""
    windows = [samples[i : i + 160] for i in range(0, len(samples) - 159, 160)]
    loud = [w for w in windows if _speech_rms(w) > threshold]
    return len(loud) / max(1, len(windows))


async def test_spoken_phrases_are_speech_rendered_once(api: ApiHarness, tmp_path: Path) -> None:
    clips: dict[str, array[int]] = {}
    for phrase in ("you-are-number", "3", "7", "minutes-1", "minutes-5"):
        response = await api.client.get(f"/internal/v1/speech/ru/{phrase}", headers=api.node)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "audio/wav"
        rate, channels, width, samples = read_wav(response.content)
        assert (rate, channels, width) == (8000, 1, 2)
        seconds = len(samples) / rate
        assert 0.2 < seconds < 4.0, (phrase, seconds)
        assert _speech_rms(samples) > 300, phrase
        assert _voiced_share(samples) > 0.3, phrase
        clips[phrase] = samples
    # Different numbers are different speech (not one clip served for all).
    assert clips["3"] != clips["7"]
    assert clips["minutes-1"] != clips["minutes-5"]
    english = await api.client.get("/internal/v1/speech/en/3", headers=api.node)
    assert english.status_code == 200
    assert read_wav(english.content)[3] != clips["3"]
    # Kept on disk: asked again, the file answers and espeak-ng is not run.
    cached = api.settings.speech_cache_dir / "ru" / "3.wav"
    assert cached.exists()
    api.context.phrases.engine.command = str(tmp_path / "no-such-espeak")
    again = await api.client.get("/internal/v1/speech/ru/3", headers=api.node)
    assert again.status_code == 200
    assert again.content == cached.read_bytes()


@pytest.mark.parametrize(
    "path",
    ["/internal/v1/speech/ru/hello", "/internal/v1/speech/de/3", "/internal/v1/speech/ru/100"],
)
async def test_only_the_vocabulary_is_spoken(api: ApiHarness, path: str) -> None:
    response = await api.client.get(path, headers=api.node)
    assert response.status_code == 404
    assert response.json()["error_id"] == "phrase-not-found"


async def test_phrases_are_for_media_nodes_only(api: ApiHarness) -> None:
    assert (await api.client.get("/internal/v1/speech/ru/3")).status_code == 401
    response = await api.client.get("/internal/v1/speech/ru/3", headers=api.platform)
    assert response.status_code == 403


async def test_without_espeak_a_phrase_is_503(api: ApiHarness, tmp_path: Path) -> None:
    api.context.phrases.engine.command = str(tmp_path / "no-such-espeak")
    response = await api.client.get("/internal/v1/speech/en/42", headers=api.node)
    assert response.status_code == 503
    assert response.json()["error_id"] == "speech-unavailable"


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (1, "одна минута"),
        (2, "две минуты"),
        (4, "4 минуты"),
        (5, "5 минут"),
        (11, "11 минут"),
        (12, "12 минут"),
        (21, "двадцать одна минута"),
        (32, "тридцать две минуты"),
        (45, "45 минут"),
    ],
)
def test_russian_minutes_agree_with_their_number(minutes: int, text: str) -> None:
    assert phrase_text("ru", f"minutes-{minutes}") == text

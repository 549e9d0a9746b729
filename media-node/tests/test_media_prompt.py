"""Prompts: frames per codec, cadences as whole frames, and the bounded cache."""

from __future__ import annotations

import array
from pathlib import Path

import pytest

from vpbx_media.media.g711 import Codec
from vpbx_media.media.prompt import FRAME_BYTES, Prompt, PromptCache
from vpbx_media.media.tones import BUSY, RINGBACK, VOICEMAIL_BEEP, Cadence, sine
from vpbx_media.media.wav import WavFormatError, write_wav


def test_pcm_becomes_whole_frames_padded_with_silence() -> None:
    pcm = sine(1000.0, 400)
    prompt = Prompt.from_pcm(pcm, Codec.PCMA)
    assert len(prompt) == 3
    assert prompt.duration_ms == 60
    assert all(len(frame) == FRAME_BYTES for frame in prompt.frames)
    assert b"".join(prompt.frames)[:400] == Codec.PCMA.encode(pcm)
    assert prompt.frames[2][80:] == b"\xd5" * 80


def test_empty_pcm_is_an_empty_prompt() -> None:
    assert len(Prompt.from_pcm(b"", Codec.PCMU)) == 0


def test_frames_must_be_160_octets() -> None:
    with pytest.raises(ValueError, match="frame 1 has 159 octets, not 160"):
        Prompt(Codec.PCMU, (b"\xff" * 160, b"\xff" * 159))


def test_identical_frames_share_one_object() -> None:
    prompt = Prompt.from_cadence(RINGBACK, Codec.PCMU)
    assert len(prompt) == 250  # 5 s
    silent = prompt.frames[50:]
    assert all(frame is silent[0] for frame in silent)
    assert silent[0] == b"\xff" * 160
    # 425 Hz fits 17 whole cycles in two frames, so the tone frames repeat as well: only
    # the ramped first and last frames, two alternating tone frames and silence remain.
    assert prompt.size_bytes == 5 * FRAME_BYTES


def test_cadences_that_are_whole_frames() -> None:
    busy = Prompt.from_cadence(BUSY, Codec.PCMA)
    assert len(busy) == 35  # 0.7 s
    beep = Prompt.from_cadence(VOICEMAIL_BEEP, Codec.PCMA)
    assert len(beep) == 25


def test_cadence_of_partial_frames_is_repeated_until_whole() -> None:
    # 25 ms on, 25 ms off: 400 samples per cycle, 2 cycles make 5 frames.
    prompt = Prompt.from_cadence(Cadence((425.0,), (25.0, 25.0)), Codec.PCMU)
    assert len(prompt) == 5
    # 13 ms on, 10 ms off: 184 samples; 20 cycles would be needed, so the end is padded.
    padded = Prompt.from_cadence(Cadence((425.0,), (13.0, 10.0)), Codec.PCMU)
    assert len(padded) == 2


def test_prompt_from_wav(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    pcm = sine(440.0, 1600)
    write_wav(path, pcm)
    prompt = Prompt.from_wav(path, Codec.PCMU)
    assert b"".join(prompt.frames) == Codec.PCMU.encode(pcm)
    write_wav(path, pcm, sample_rate=16000)
    with pytest.raises(WavFormatError, match="16000 Hz mono"):
        Prompt.from_wav(path, Codec.PCMU)


def test_silence_prompt() -> None:
    prompt = Prompt.silence(Codec.PCMA, 3)
    assert prompt.frames == (b"\xd5" * 160,) * 3


def test_cache_builds_once_per_codec() -> None:
    cache = PromptCache()
    calls: list[str] = []

    def pcm() -> array.array[int]:
        calls.append("built")
        return sine(440.0, 320)

    first = cache.from_pcm("greeting", Codec.PCMU, pcm)
    assert cache.from_pcm("greeting", Codec.PCMU, pcm) is first
    other = cache.from_pcm("greeting", Codec.PCMA, pcm)
    assert other.codec is Codec.PCMA
    assert calls == ["built", "built"]
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)
    assert ("greeting", Codec.PCMA) in cache
    assert cache.size_bytes == 4 * FRAME_BYTES


def test_cache_evicts_least_recently_used_beyond_its_size() -> None:
    cache = PromptCache(max_bytes=5 * FRAME_BYTES)
    for name in ("a", "b"):
        cache.from_pcm(name, Codec.PCMU, lambda: sine(440.0, 320))
    assert cache.get("a", Codec.PCMU) is not None  # "b" is now the oldest
    cache.from_pcm("c", Codec.PCMU, lambda: sine(440.0, 320))
    assert ("b", Codec.PCMU) not in cache
    assert ("a", Codec.PCMU) in cache
    assert cache.evictions == 1
    assert cache.size_bytes == 4 * FRAME_BYTES


def test_prompt_larger_than_the_cache_is_returned_but_not_kept() -> None:
    cache = PromptCache(max_bytes=FRAME_BYTES)
    prompt = cache.from_pcm("moh", Codec.PCMU, lambda: sine(440.0, 1600))
    assert len(prompt) == 10
    assert len(cache) == 0
    assert cache.size_bytes == 0


def test_put_replaces_and_clear_empties() -> None:
    cache = PromptCache()
    cache.put("x", Prompt.silence(Codec.PCMU, 2))
    cache.put("x", Prompt.from_pcm(sine(440.0, 480), Codec.PCMU))
    assert cache.size_bytes == 3 * FRAME_BYTES
    cache.clear()
    assert (len(cache), cache.size_bytes) == (0, 0)


def test_builder_of_the_wrong_codec_is_refused() -> None:
    cache = PromptCache()
    with pytest.raises(ValueError, match="'x' was built as PCMA, not PCMU"):
        cache.get_or_build("x", Codec.PCMU, lambda codec: Prompt.silence(Codec.PCMA))


def test_cache_by_wav_path_and_cadence(tmp_path: Path) -> None:
    path = tmp_path / "moh.wav"
    write_wav(path, sine(440.0, 800))
    cache = PromptCache()
    assert cache.from_wav(path, Codec.PCMA) is cache.from_wav(str(path), Codec.PCMA)
    assert cache.from_cadence("busy", BUSY, Codec.PCMU) is cache.get("busy", Codec.PCMU)


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        PromptCache(0)

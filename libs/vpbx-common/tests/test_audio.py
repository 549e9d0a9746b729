"""Prompt audio: WAV parsing and conversion to the media node's format (8 kHz mono 16-bit)."""

from __future__ import annotations

import math
import struct
import warnings
from array import array
from typing import Any

import pytest
from tests.wavs import amplitude, pcm16_wav, read_wav, riff

from vpbx_common import audio


def test_g711_expansion_matches_the_reference_tables() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # The reference implementation (CPython's C code); gone in 3.13.
        audioop = pytest.importorskip("audioop")

    codes = bytes(range(256))
    assert list(audio.MULAW_TABLE) == list(array("h", audioop.ulaw2lin(codes, 2)))
    assert list(audio.ALAW_TABLE) == list(array("h", audioop.alaw2lin(codes, 2)))


@pytest.mark.parametrize(
    ("format_tag", "bits", "encode"),
    [
        (0x0001, 8, lambda v: bytes([(v >> 8) + 128])),
        (0x0001, 16, lambda v: struct.pack("<h", v)),
        (0x0001, 24, lambda v: struct.pack("<i", v << 8)[:3]),
        (0x0001, 32, lambda v: struct.pack("<i", v << 16)),
        (0x0003, 32, lambda v: struct.pack("<f", v / 32768)),
        (0x0003, 64, lambda v: struct.pack("<d", v / 32768)),
    ],
    ids=["pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64"],
)
def test_every_sample_format_decodes_to_the_same_tone(
    format_tag: int, bits: int, encode: Any
) -> None:
    rate = 16000
    values = [int(12000 * math.sin(2 * math.pi * 1000 * i / rate)) for i in range(rate // 4)]
    frames = b"".join(encode(value) for value in values)
    converted = audio.convert_prompt(riff(format_tag, 1, rate, bits, frames))
    out_rate, channels, _, samples = read_wav(converted.wav)
    assert (out_rate, channels, len(samples)) == (8000, 1, 2000)
    assert converted.duration_ms == 250
    assert amplitude(samples[200:-200], 1000, 8000) == pytest.approx(12000, rel=0.03)


def test_sound_above_the_phone_band_is_filtered_not_folded_back() -> None:
    # 5 kHz cannot be carried at 8 kHz; without a filter it would come back as 3 kHz.
    converted = audio.convert_prompt(pcm16_wav(44100, 1, 0.5, frequency=5000))
    samples = read_wav(converted.wav)[3]
    assert amplitude(samples[200:-200], 3000, 8000) < 10000 / 100  # at least 40 dB down


def test_a_wav_round_trips_through_parse_and_bytes() -> None:
    data = pcm16_wav(22050, 2, 0.01)
    parsed = audio.Wav.parse(data)
    assert parsed.format == audio.WavFormat(audio.Encoding.PCM, 2, 22050, 16)
    assert parsed.frame_count == 220
    assert bytes(parsed) == data
    assert audio.Wav.parse(bytes(parsed)) == parsed

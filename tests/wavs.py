"""WAV files for tests, written and read with the standard library (no numpy)."""

from __future__ import annotations

import io
import math
import struct
import wave
from array import array


def pcm16_wav(rate: int, channels: int, seconds: float, frequency: float = 440.0) -> bytes:
    frames = array("h")
    for index in range(int(rate * seconds)):
        value = int(10000 * math.sin(2 * math.pi * frequency * index / rate))
        frames.extend([value] * channels)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(frames.tobytes())
    return buffer.getvalue()


def riff(format_tag: int, channels: int, rate: int, bits: int, frames: bytes) -> bytes:
    """A WAV with any format tag (the wave module writes PCM only)."""
    block = channels * max(1, bits // 8)
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(frames)) + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def read_wav(data: bytes) -> tuple[int, int, int, array[int]]:
    with wave.open(io.BytesIO(data)) as reader:
        samples = array("h", reader.readframes(reader.getnframes()))
        return reader.getframerate(), reader.getnchannels(), reader.getsampwidth(), samples


def amplitude(samples: array[int], frequency: float, rate: int) -> float:
    """Amplitude of one frequency component (a single DFT bin over the samples)."""
    n = len(samples)
    sine = sum(s * math.sin(2 * math.pi * frequency * i / rate) for i, s in enumerate(samples))
    cosine = sum(s * math.cos(2 * math.pi * frequency * i / rate) for i, s in enumerate(samples))
    return 2 * math.hypot(sine, cosine) / n

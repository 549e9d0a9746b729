"""16-bit PCM WAV in and out, and the channel interleaving a stereo recording needs.

The node reads prompts and music on hold as 8 kHz mono 16-bit PCM WAV (what the control
API converts uploads to; G.711 carries nothing better) and writes call recordings as
8 kHz WAV, stereo with the caller on the left and the answering side on the right so
that a supervisor can listen to either. The standard library's `wave` does the RIFF
work; this module checks formats, says clearly what it refuses, and converts between
the file's little-endian octets and native `array('h')`.
"""

from __future__ import annotations

import array
import os
import sys
import wave
from dataclasses import dataclass
from typing import BinaryIO

from .g711 import SAMPLE_RATE, PcmBuffer

WavSource = str | os.PathLike[str] | BinaryIO


class WavFormatError(ValueError):
    """A file that is not 16-bit PCM WAV, or not in the format the caller requires."""


@dataclass(frozen=True, slots=True, eq=False)
class WavAudio:
    """Samples as read from a file; stereo samples are interleaved left, right, ..."""

    sample_rate: int
    channels: int
    samples: array.array[int]

    @property
    def frames(self) -> int:
        """Sample frames: samples per channel."""
        return len(self.samples) // self.channels

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def describe(self) -> str:
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels}-channel")
        return f"{self.sample_rate} Hz {layout} 16-bit PCM"


def _name(source: WavSource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return str(getattr(source, "name", "WAV data"))


def _open_target(source: WavSource) -> str | BinaryIO:
    # wave.open() takes a str path or a file object, not a PathLike.
    return os.fspath(source) if isinstance(source, os.PathLike) else source


def _to_native(octets: bytes) -> array.array[int]:
    samples = array.array("h")
    samples.frombytes(octets)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _to_little_endian(samples: PcmBuffer) -> bytes:
    if sys.byteorder == "little":
        return bytes(memoryview(samples).cast("B"))
    swapped = array.array("h")
    swapped.frombytes(memoryview(samples).cast("B"))
    swapped.byteswap()
    return swapped.tobytes()


def read_wav(source: WavSource) -> WavAudio:
    """A 16-bit PCM WAV file of any rate, mono or stereo."""
    name = _name(source)
    try:
        with wave.open(_open_target(source), "rb") as reader:
            width = reader.getsampwidth()
            channels = reader.getnchannels()
            rate = reader.getframerate()
            frames = reader.getnframes()
            octets = reader.readframes(frames)
    except wave.Error as exc:
        # wave refuses compressed formats (G.711, ADPCM, float) by their format tag.
        raise WavFormatError(f"{name}: not a PCM WAV file ({exc})") from exc
    except EOFError as exc:
        raise WavFormatError(f"{name}: truncated or empty WAV file") from exc
    if width != 2:
        raise WavFormatError(f"{name}: {8 * width}-bit samples; only 16-bit PCM is read")
    if channels not in (1, 2):
        raise WavFormatError(f"{name}: {channels} channels; only mono or stereo is read")
    # A file cut short holds fewer frames than its header says; keep whole frames.
    whole = len(octets) - len(octets) % (2 * channels)
    return WavAudio(rate, channels, _to_native(octets[:whole]))


def read_mono_8k(source: WavSource) -> array.array[int]:
    """The samples of an 8 kHz mono 16-bit PCM WAV; any other format is refused."""
    audio = read_wav(source)
    if audio.sample_rate != SAMPLE_RATE or audio.channels != 1:
        raise WavFormatError(
            f"{_name(source)} is {audio.describe()}; prompts must be {SAMPLE_RATE} Hz "
            "mono 16-bit PCM (the control API converts uploads to that)"
        )
    return audio.samples


def write_wav(
    target: WavSource, samples: PcmBuffer, *, channels: int = 1, sample_rate: int = SAMPLE_RATE
) -> None:
    """Write PCM16 (interleaved when stereo) as a 16-bit PCM WAV file."""
    if channels not in (1, 2):
        raise ValueError(f"{channels} channels; only mono or stereo is written")
    octets = _to_little_endian(samples)
    if len(octets) % (2 * channels):
        raise ValueError(f"{len(octets)} octets are not whole {channels}-channel 16-bit frames")
    with wave.open(_open_target(target), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(octets)


def _as_samples(pcm: PcmBuffer) -> array.array[int]:
    if isinstance(pcm, array.array) and pcm.typecode == "h":
        return pcm
    samples = array.array("h")
    samples.frombytes(memoryview(pcm).cast("B"))
    return samples


def interleave(left: PcmBuffer, right: PcmBuffer) -> array.array[int]:
    """Two mono channels as one stereo stream; the shorter one is padded with silence.

    For recordings: left is the caller, right the answering side. A leg that sent
    nothing for a frame is passed as silence (or simply shorter) and stays in step.
    """
    left_samples = _as_samples(left)
    right_samples = _as_samples(right)
    frames = max(len(left_samples), len(right_samples))
    stereo = array.array("h", bytes(4 * frames))
    # Extended-slice assignment copies in C, one channel at a time.
    stereo[0 : 2 * len(left_samples) : 2] = left_samples
    stereo[1 : 2 * len(right_samples) : 2] = right_samples
    return stereo


def deinterleave(stereo: PcmBuffer) -> tuple[array.array[int], array.array[int]]:
    """A stereo stream as its (left, right) channels."""
    samples = _as_samples(stereo)
    if len(samples) % 2:
        raise ValueError(f"{len(samples)} samples are not whole stereo frames")
    return samples[0::2], samples[1::2]

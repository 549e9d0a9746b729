"""Prompt audio: WAV parsing, validation and conversion to the media node's format.

The node plays prompts as 8 kHz mono 16-bit PCM WAV (what G.711 carries). The
control API converts uploads and the speech it renders from text (espeak-ng writes
22.05 kHz) with this module. Uploads may be any WAV a sound editor or a phone system
writes: integer PCM of 8, 16, 24 or 32 bits, IEEE float, or G.711 mu-law / A-law,
mono or stereo, at any sample rate.

Conversion is pure Python (no numpy, no audioop, which is gone in 3.13), kept fast
by letting C do the per-sample loops (``array``, slicing, ``map``, ``accumulate``):

1. decode to 16-bit-range samples (24/32-bit PCM keep their top 16 bits);
2. mix stereo to mono;
3. for rates of 32 kHz and up, decimate by an integer factor to 16..32 kHz with a
   second-order CIC filter (two moving sums), which keeps what folds back into
   the telephone band at least ~20 dB down;
4. resample to 8 kHz with a Hann-windowed sinc low-pass (passband to ~3.4 kHz,
   stopband from 4 kHz) evaluated as a polyphase table;
5. quantise once, applying the gain collected on the way, with clipping.

Every problem with the upload raises AudioError with a message meant for the user.
"""

from __future__ import annotations

import enum
import hashlib
import io
import math
import operator
import struct
import sys
import wave
from array import array
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate
from typing import TypeAlias

NODE_RATE = 8000
MAX_DURATION_S = 300

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_ALAW = 0x0006
_FORMAT_MULAW = 0x0007
_FORMAT_EXTENSIBLE = 0xFFFE

# Names of encodings people do upload in WAV containers, for a useful refusal.
_KNOWN_UNSUPPORTED = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0050: "MPEG audio",
    0x0055: "MP3",
    0x0064: "G.726 ADPCM",
    0x0065: "G.722 ADPCM",
    0x00FF: "AAC",
    0x0161: "Windows Media Audio",
}

# Magic numbers of other audio containers, to say what was uploaded instead.
_OTHER_CONTAINERS = (
    (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg file"),
    (b"fLaC", "a FLAC file"),
    (b"FORM", "an AIFF file"),
    (b"RIFX", "a big-endian RIFF file"),
    (b"#!AMR", "an AMR file"),
)

_SUPPORTED = "PCM 8/16/24/32-bit, IEEE float, G.711 mu-law or A-law"


class AudioError(ValueError):
    """The upload is not audio the node can play; the message is for the user."""


class Encoding(enum.Enum):
    PCM = "pcm"
    FLOAT = "float"
    MULAW = "mu-law"
    ALAW = "a-law"


@dataclass(frozen=True)
class WavFormat:
    encoding: Encoding
    channels: int
    sample_rate: int
    bits_per_sample: int

    @property
    def frame_size(self) -> int:
        return self.channels * self.bits_per_sample // 8

    def _format_tag(self) -> int:
        return {
            Encoding.PCM: _FORMAT_PCM,
            Encoding.FLOAT: _FORMAT_FLOAT,
            Encoding.ALAW: _FORMAT_ALAW,
            Encoding.MULAW: _FORMAT_MULAW,
        }[self.encoding]


@dataclass(frozen=True)
class Wav:
    """A WAV file: its format and the raw sample frames (whole frames only)."""

    format: WavFormat
    frames: bytes

    @property
    def frame_count(self) -> int:
        return len(self.frames) // self.format.frame_size

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.format.sample_rate

    @classmethod
    def parse(cls, data: bytes) -> Wav:
        if not data:
            raise AudioError("the file is empty")
        if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
            raise AudioError(f"not a WAV file: {_what_is(data)}; upload a WAV ({_SUPPORTED})")
        fmt: WavFormat | None = None
        frames: bytes | None = None
        offset = 12
        while offset + 8 <= len(data):
            chunk_id = data[offset : offset + 4]
            (size,) = struct.unpack_from("<I", data, offset + 4)
            body_start = offset + 8
            if chunk_id == b"fmt ":
                fmt = _parse_fmt(data[body_start : body_start + size])
            elif chunk_id == b"data" and frames is None:
                # Streaming writers leave the size open (0xFFFFFFFF) or wrong: take what is there.
                frames = data[body_start : body_start + size]
            offset = body_start + size + (size & 1)
        if fmt is None:
            raise AudioError("malformed WAV file: no fmt chunk")
        if not frames:
            raise AudioError("the file contains no audio (empty data chunk)")
        whole = len(frames) - len(frames) % fmt.frame_size
        if whole == 0:
            raise AudioError("the file contains no audio (less than one sample frame)")
        return cls(format=fmt, frames=frames[:whole])

    def __bytes__(self) -> bytes:
        fmt = self.format
        fmt_chunk = struct.pack(
            "<HHIIHH",
            fmt._format_tag(),
            fmt.channels,
            fmt.sample_rate,
            fmt.sample_rate * fmt.frame_size,
            fmt.frame_size,
            fmt.bits_per_sample,
        )
        pad = b"\0" if len(self.frames) & 1 else b""
        body = (
            b"WAVE"
            + b"fmt "
            + struct.pack("<I", len(fmt_chunk))
            + fmt_chunk
            + b"data"
            + struct.pack("<I", len(self.frames))
            + self.frames
            + pad
        )
        return b"RIFF" + struct.pack("<I", len(body)) + body


def _what_is(data: bytes) -> str:
    for magic, name in _OTHER_CONTAINERS:
        if data.startswith(magic):
            return f"this looks like {name}"
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "this looks like an MP3 file"
    return "no RIFF/WAVE header"


def _parse_fmt(chunk: bytes) -> WavFormat:
    if len(chunk) < 16:
        raise AudioError("malformed WAV file: fmt chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _FORMAT_EXTENSIBLE:
        if len(chunk) < 26:
            raise AudioError("malformed WAV file: extensible fmt chunk too short")
        # WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
        (tag,) = struct.unpack_from("<H", chunk, 24)
    encodings = {
        _FORMAT_PCM: (Encoding.PCM, (8, 16, 24, 32)),
        _FORMAT_FLOAT: (Encoding.FLOAT, (32, 64)),
        _FORMAT_MULAW: (Encoding.MULAW, (8,)),
        _FORMAT_ALAW: (Encoding.ALAW, (8,)),
    }
    if tag not in encodings:
        name = _KNOWN_UNSUPPORTED.get(tag, "an unknown encoding")
        raise AudioError(f"unsupported WAV encoding: {name} (format 0x{tag:04x}); use {_SUPPORTED}")
    encoding, sizes = encodings[tag]
    if bits not in sizes:
        raise AudioError(f"unsupported sample size: {bits}-bit {encoding.value}; use {_SUPPORTED}")
    if channels not in (1, 2):
        raise AudioError(f"unsupported channel count {channels}: only mono or stereo")
    if not 1000 <= rate <= 384_000:
        raise AudioError(f"unsupported sample rate {rate} Hz (1 kHz to 384 kHz)")
    return WavFormat(encoding=encoding, channels=channels, sample_rate=rate, bits_per_sample=bits)


# --- G.711 (ITU-T G.711 expansion to linear 16-bit) -------------------------------------


def _mulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return -magnitude if code & 0x80 else magnitude


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (mantissa << 4) + (8 if exponent == 0 else 0x108)
    if exponent > 1:
        magnitude <<= exponent - 1
    return magnitude if code & 0x80 else -magnitude


MULAW_TABLE: tuple[int, ...] = tuple(_mulaw_to_linear(code) for code in range(256))
ALAW_TABLE: tuple[int, ...] = tuple(_alaw_to_linear(code) for code in range(256))
_U8_TABLE: tuple[int, ...] = tuple((code - 128) << 8 for code in range(256))


# --- decoding ---------------------------------------------------------------------------


def _native(samples: array[int] | array[float]) -> None:
    if sys.byteorder == "big":
        samples.byteswap()


def _top16(frames: bytes, width: int) -> array[int]:
    """The two most significant bytes of each little-endian ``width``-byte sample."""
    pairs = bytearray(2 * (len(frames) // width))
    pairs[0::2] = frames[width - 2 :: width]
    pairs[1::2] = frames[width - 1 :: width]
    samples = array("h", pairs)
    _native(samples)
    return samples


# A string: array is subscriptable at runtime only from Python 3.12.
Samples: TypeAlias = "array[int] | array[float]"


def decode(wav: Wav) -> tuple[Samples, float]:
    """Interleaved samples and the gain that brings them to the 16-bit range."""
    fmt, frames = wav.format, wav.frames
    if fmt.encoding is Encoding.MULAW:
        return array("h", map(MULAW_TABLE.__getitem__, frames)), 1.0
    if fmt.encoding is Encoding.ALAW:
        return array("h", map(ALAW_TABLE.__getitem__, frames)), 1.0
    if fmt.encoding is Encoding.FLOAT:
        floats = array("f" if fmt.bits_per_sample == 32 else "d", frames)
        _native(floats)
        return floats, 32767.0
    if fmt.bits_per_sample == 8:
        return array("h", map(_U8_TABLE.__getitem__, frames)), 1.0
    if fmt.bits_per_sample == 16:
        samples = array("h", frames)
        _native(samples)
        return samples, 1.0
    return _top16(frames, fmt.bits_per_sample // 8), 1.0


def mix_to_mono(samples: Samples, channels: int) -> tuple[Samples, float]:
    if channels == 1:
        return samples, 1.0
    return array("d", map(operator.add, samples[0::2], samples[1::2])), 0.5


# --- resampling (arrays, not lists: a 5-minute upload stays tens of MB, not hundreds) ---


def _cic_decimate(samples: Samples, factor: int) -> array[float]:
    """Second-order CIC: a moving sum of ``factor`` samples, then block sums. Gain factor**2."""
    prefix = array("d", accumulate(samples, initial=0))
    moving = array("d", map(operator.sub, prefix[factor:], prefix[:-factor]))
    del prefix
    blocks = array("d", accumulate(moving, initial=0))
    return array("d", map(operator.sub, blocks[factor::factor], blocks[:-factor:factor]))


_PHASES = 128


def _kernel(phase: float, half: int, cutoff: float) -> list[float]:
    """Taps for the input samples around a point ``phase`` (0..1) past sample ``half - 1``.

    ``cutoff`` is relative to the input rate. Normalised to unity gain at DC.
    """
    taps = []
    for j in range(2 * half):
        distance = phase + half - 1 - j
        x = 2.0 * cutoff * distance
        sinc = 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)
        window = 0.5 * (1.0 + math.cos(math.pi * distance / half)) if abs(distance) < half else 0.0
        taps.append(sinc * window)
    total = sum(taps)
    return [tap / total for tap in taps]


def _windowed_sinc(samples: Samples, step: Fraction, rate_in: float) -> array[float]:
    """Resample by ``step`` input samples per output sample (rate_out = rate_in / step)."""
    rate_out = rate_in / float(step)
    band = min(rate_in, rate_out) / 2.0
    cutoff = 0.925 * band / rate_in  # passband edge ~3.4 kHz at 8 kHz out
    transition = 0.15 * band / rate_in  # full stop at the output's Nyquist frequency
    half = max(2, math.ceil(1.55 / transition))
    table = [_kernel(p / _PHASES, half, cutoff) for p in range(_PHASES + 1)]
    zeros = array("d", [0.0]) * (half + 1)
    padded = zeros[:half] + array("d", samples) + zeros
    width = 2 * half
    num, den = step.numerator, step.denominator
    count = len(samples) * den // num
    out = array("d")
    append, mul = out.append, operator.mul
    for m in range(count):
        index, rest = divmod(m * num, den)
        taps = table[(rest * _PHASES + den // 2) // den]
        append(sum(map(mul, taps, padded[index + 1 : index + 1 + width])))
    return out


def resample(samples: Samples, rate_in: int, rate_out: int) -> tuple[Samples, float]:
    """Samples at ``rate_out`` and the gain still to apply to them."""
    if rate_in == rate_out:
        return samples, 1.0
    gain = 1.0
    factor = rate_in // (2 * rate_out) if rate_in >= 4 * rate_out else 1
    if factor > 1:
        samples = _cic_decimate(samples, factor)
        gain = 1.0 / (factor * factor)
    return _windowed_sinc(samples, Fraction(rate_in, factor * rate_out), rate_in / factor), gain


def quantize(samples: Samples, gain: float) -> array[int]:
    out = array("h", (max(-32768, min(32767, round(value * gain))) for value in samples))
    _native(out)
    return out


# --- the whole conversion ---------------------------------------------------------------


@dataclass(frozen=True)
class ConvertedPrompt:
    wav: bytes  # 8 kHz mono 16-bit PCM WAV
    duration_ms: int
    sha256: str
    source: WavFormat


def node_wav(pcm: array[int]) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(NODE_RATE)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def convert_prompt(data: bytes, *, max_duration_s: float = MAX_DURATION_S) -> ConvertedPrompt:
    """Validate an uploaded WAV and convert it to 8 kHz mono 16-bit PCM (CPU-bound)."""
    source = Wav.parse(data)
    if source.duration_s > max_duration_s:
        raise AudioError(
            f"the audio is {source.duration_s:.1f} s long; prompts may be at most "
            f"{max_duration_s:g} s"
        )
    samples, gain = decode(source)
    mono, mix_gain = mix_to_mono(samples, source.format.channels)
    resampled, resample_gain = resample(mono, source.format.sample_rate, NODE_RATE)
    if not resampled:
        raise AudioError("the audio is too short (less than one sample at 8 kHz)")
    pcm = quantize(resampled, gain * mix_gain * resample_gain)
    encoded = node_wav(pcm)
    return ConvertedPrompt(
        wav=encoded,
        duration_ms=round(len(pcm) * 1000 / NODE_RATE),
        sha256=hashlib.sha256(encoded).hexdigest(),
        source=source.format,
    )

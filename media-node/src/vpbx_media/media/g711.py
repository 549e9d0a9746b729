"""G.711 PCMU (mu-law) and PCMA (A-law) at 8 kHz, encoded and decoded by table.

Every prompt, tone and recording passes through here, and decoding runs on every packet a
recorder or in-band DTMF detector looks at, so the per-sample loop is left to C:

- decoding translates the payload twice through 256-entry tables (the low and the high
  byte of each sample's PCM16 value) and interleaves the two with slice assignment;
- encoding indexes a 65536-entry table (one code per 16-bit sample) through `map`;
- PCMU <-> PCMA is one `bytes.translate`.

PCM16 here is native-endian signed 16-bit (`array('h')`), full scale +-32767. The laws
are defined on 14-bit (mu) and 13-bit (A) linear values; a 16-bit sample is shifted
down to that scale, negative samples by their one's complement (as the ITU-T G.191
reference encoder does), so x and -x-1 encode to mirror codes: 0 and -1 to the
smallest positive and negative ones.
Decoding returns the middle of each code's interval, scaled back to 16 bits.
"""

from __future__ import annotations

import array
import enum
import functools
import sys
from typing import TypeAlias

# A frame is 20 ms at 8 kHz: the packetisation every phone and trunk uses for G.711.
SAMPLE_RATE = 8000
FRAME_SAMPLES = 160

PCMU_SILENCE = 0xFF
PCMA_SILENCE = 0xD5

_MU_BIAS = 33  # on the 14-bit scale (132 on the 16-bit one)
_MU_MAX = 0x1FFF  # biased 14-bit magnitude at which mu-law clips
_A_XOR = 0x55  # A-law inverts every even bit on the line

# What PCM16 arrives as: an array('h') or a buffer holding the same native-endian octets.
# (A string because array.array is not subscriptable at run time before Python 3.12.)
PcmBuffer: TypeAlias = "array.array[int] | bytes | bytearray | memoryview"


def _mu_encode(sample: int) -> int:
    # Biased 14-bit magnitude: the segment is where its top bit is, the mantissa the
    # four bits below it; the line carries the whole code inverted.
    magnitude = (~sample if sample < 0 else sample) >> 2
    biased = min(magnitude + _MU_BIAS, _MU_MAX)
    exponent = biased.bit_length() - 6
    mantissa = (biased >> (exponent + 1)) & 0x0F
    code = ((exponent << 4) | mantissa) ^ 0x7F
    return code if sample < 0 else code | 0x80


def _mu_decode(code: int) -> int:
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return magnitude if code & 0x80 else -magnitude


def _a_encode(sample: int) -> int:
    # 12-bit magnitude: segments 0 and 1 share one step size, so 0-15 are coded as is.
    magnitude = (~sample if sample < 0 else sample) >> 4
    if magnitude < 16:
        code = magnitude
    else:
        exponent = magnitude.bit_length() - 4
        code = (exponent << 4) | ((magnitude >> (exponent - 1)) & 0x0F)
    return (code if sample < 0 else code | 0x80) ^ _A_XOR


def _a_decode(code: int) -> int:
    value = code ^ _A_XOR
    exponent = (value >> 4) & 0x07
    mantissa = value & 0x0F
    # Segments 0 and 1 share a step size; from segment 1 on the leading 1 is implied.
    step_base = (mantissa << 4) + 8
    magnitude = step_base if exponent == 0 else (step_base + 0x100) << (exponent - 1)
    return magnitude if value & 0x80 else -magnitude


class Codec(enum.Enum):
    """The two G.711 laws, named as SDP names them (RFC 3551 static payload types)."""

    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def payload_type(self) -> int:
        return 0 if self is Codec.PCMU else 8

    @property
    def silence(self) -> int:
        """The code of digital silence, the byte a silent frame is filled with."""
        return PCMU_SILENCE if self is Codec.PCMU else PCMA_SILENCE

    @classmethod
    def from_name(cls, name: str) -> Codec:
        try:
            return cls(name.upper())
        except ValueError:
            raise ValueError(f"{name!r} is not a G.711 codec (PCMU or PCMA)") from None

    @classmethod
    def from_payload_type(cls, payload_type: int) -> Codec:
        if payload_type == 0:
            return cls.PCMU
        if payload_type == 8:
            return cls.PCMA
        raise ValueError(f"payload type {payload_type} is not static PCMU (0) or PCMA (8)")

    def decode_value(self, code: int) -> int:
        """The PCM16 value of one code (the reference the tables are built from)."""
        return _mu_decode(code) if self is Codec.PCMU else _a_decode(code)

    def encode_value(self, sample: int) -> int:
        """The code of one PCM16 sample (the reference the tables are built from)."""
        if not -32768 <= sample <= 32767:
            raise ValueError(f"sample {sample} does not fit 16 bits")
        return _mu_encode(sample) if self is Codec.PCMU else _a_encode(sample)

    def encode(self, pcm: PcmBuffer) -> bytes:
        """PCM16 samples (native-endian int16: an `array('h')` or its bytes) to codes."""
        view = memoryview(pcm).cast("B")
        if len(view) % 2:
            raise ValueError(f"PCM16 of {len(view)} octets is not whole 16-bit samples")
        return bytes(map(_encode_table(self).__getitem__, view.cast("H")))

    def decode(self, payload: bytes | bytearray | memoryview) -> array.array[int]:
        """Codes to PCM16 samples."""
        low, high = _decode_tables(self)
        data = bytes(payload)
        pcm = bytearray(2 * len(data))
        pcm[0::2] = data.translate(low)
        pcm[1::2] = data.translate(high)
        samples = array.array("h")
        samples.frombytes(pcm)
        return samples

    def silence_frame(self, samples: int = FRAME_SAMPLES) -> bytes:
        return bytes((self.silence,)) * samples


@functools.cache
def _encode_table(codec: Codec) -> bytes:
    # Indexed by the sample's bit pattern read as unsigned: 0..32767 then -32768..-1.
    encode = _mu_encode if codec is Codec.PCMU else _a_encode
    return bytes(
        encode(unsigned - 0x10000 if unsigned & 0x8000 else unsigned) for unsigned in range(0x10000)
    )


@functools.cache
def _decode_tables(codec: Codec) -> tuple[bytes, bytes]:
    """Two translate tables: the first and the second octet of each code's PCM16 value."""
    decode = _mu_decode if codec is Codec.PCMU else _a_decode
    octets = [(decode(code) & 0xFFFF).to_bytes(2, sys.byteorder) for code in range(256)]
    return bytes(pair[0] for pair in octets), bytes(pair[1] for pair in octets)


@functools.cache
def _transcode_table(source: Codec, target: Codec) -> bytes:
    return bytes(target.encode_value(source.decode_value(code)) for code in range(256))


def transcode(payload: bytes, source: Codec, target: Codec) -> bytes:
    """Re-encode a payload in the other law: decode each code and encode the value."""
    if source is target:
        return payload
    return payload.translate(_transcode_table(source, target))


# A sample at least this loud (about -40 dBFS) is voice, not line noise, to the
# voice-activity check of a voice message.
VOICE_THRESHOLD = 330


@functools.cache
def loudness_table(codec: Codec) -> bytes:
    """A translate table: 1 for the codes of samples at least VOICE_THRESHOLD loud, else 0.
    ``max(payload.translate(table))`` tells whether a frame has voice in it."""
    return bytes(int(abs(codec.decode_value(code)) >= VOICE_THRESHOLD) for code in range(256))

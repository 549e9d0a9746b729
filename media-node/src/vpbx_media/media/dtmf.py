"""DTMF in its three forms: RFC 4733 telephone-events, SIP INFO bodies and in-band tones.

Callers press keys in IVR menus and to log in to voicemail; what reaches the node
depends on the phone and the trunk:

- RFC 4733 telephone-event packets (the normal case when the SDP negotiated them).
  Each event is sent as a series of packets sharing one RTP timestamp, the start often
  repeated and the end three times, so `DtmfEventReceiver` reports each event once.
- SIP INFO with `application/dtmf-relay` or `application/dtmf` bodies (some desk phones
  and softphones): `parse_info_body()`.
- Tones inside the audio (callers whose trunk negotiated no telephone-event): the
  `DtmfDetector` runs on every 20 ms frame of such a leg, so it computes the eight
  Goertzel powers as one matrix product in numpy (the same |X(f)|^2 a Goertzel filter
  yields, without a per-sample Python loop) and keeps its decision logic to a few float
  comparisons.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .g711 import FRAME_SAMPLES, SAMPLE_RATE, Codec, PcmBuffer
from .tones import DTMF_HIGH_HZ, DTMF_KEYPAD, DTMF_LOW_HZ, peak_amplitude

# RFC 4733 3.2: events 0-9 are the digits, then *, #, A-D; 16 is hook flash.
EVENT_CHARACTERS = "0123456789*#ABCD"
EVENT_FLASH = 16

_EVENT = struct.Struct("!BBH")
_SERIAL_HALF = 1 << 31


class DtmfError(ValueError):
    """A DTMF payload or body that cannot be read; the message says what is wrong."""


def event_for_digit(digit: str) -> int:
    """The RFC 4733 event code of a key."""
    code = EVENT_CHARACTERS.find(digit.upper())
    if len(digit) != 1 or code < 0:
        raise DtmfError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")
    return code


def digit_for_event(event: int) -> str | None:
    """The key of an RFC 4733 event code, or None for other events (flash, tones)."""
    return EVENT_CHARACTERS[event] if 0 <= event < len(EVENT_CHARACTERS) else None


# --- RFC 4733 telephone-event -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 2.3): 4 octets.

    `volume` is the power level in -dBm0 (0-63); `duration` is in RTP timestamp units
    since the event's start (the packet's RTP timestamp). The reserved bit is ignored
    when parsing and sent as 0, as the RFC asks.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event {self.event} does not fit 8 bits")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume {self.volume} is not 0-63 (-dBm0)")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"duration {self.duration} does not fit 16 bits")

    @property
    def digit(self) -> str | None:
        return digit_for_event(self.event)

    @classmethod
    def for_digit(
        cls, digit: str, *, end: bool = False, volume: int = 10, duration: int = 0
    ) -> TelephoneEvent:
        return cls(event_for_digit(digit), end, volume, duration)

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        if len(data) != _EVENT.size:
            raise DtmfError(f"telephone-event payload of {len(data)} octets, expected 4")
        event, flags, duration = _EVENT.unpack(data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


class DtmfEventReceiver:
    """Turns one stream's telephone-event packets into keys, each event reported once.

    An event is known by its RTP timestamp: a packet with the timestamp of the event
    already reported is a repetition (RFC 4733 repeats the start and sends the end three
    times). A key is reported on the first packet seen of its event, so losing the
    start packets still yields the key from the end packets. Packets of older events that
    arrive late are ignored, and so is the next segment of an event longer than the
    16-bit duration allows (RFC 4733 2.5.1.3: new timestamp, same event, no marker,
    while the event has not ended).

    Per packet: one struct unpack and a few integer comparisons; malformed payloads and
    non-key events (hook flash) are counted, not raised, since they come off the wire.
    """

    __slots__ = ("_ended", "_event", "_timestamp", "events", "ignored", "malformed")

    def __init__(self) -> None:
        self._timestamp = -1
        self._event = -1
        self._ended = True
        self.events = 0
        self.malformed = 0
        self.ignored = 0

    def feed(self, timestamp: int, marker: bool, payload: bytes) -> str | None:
        if len(payload) != 4:
            self.malformed += 1
            return None
        event, flags, _ = _EVENT.unpack(payload)
        end = bool(flags & 0x80)
        if self._timestamp >= 0:
            ahead = (timestamp - self._timestamp) & 0xFFFFFFFF
            if ahead == 0 and event == self._event:
                self._ended = self._ended or end
                return None
            if ahead >= _SERIAL_HALF:
                return None  # an older event's packet, arriving late
            if ahead and not marker and event == self._event and not self._ended:
                self._timestamp = timestamp  # a long event's next segment
                self._ended = end
                return None
        self._timestamp = timestamp
        self._event = event
        self._ended = end
        if event >= len(EVENT_CHARACTERS):
            self.ignored += 1
            return None
        self.events += 1
        return EVENT_CHARACTERS[event]


# --- SIP INFO -----------------------------------------------------------------------------

DTMF_RELAY = "application/dtmf-relay"
DTMF_PLAIN = "application/dtmf"


def _signal_digit(value: str, what: str) -> str:
    text = value.strip()
    if len(text) == 1 and text.upper() in EVENT_CHARACTERS:
        return text.upper()
    # Some phones send the event code instead of the key ("Signal=11" for #).
    if text.isascii() and text.isdigit() and int(text) < len(EVENT_CHARACTERS):
        return EVENT_CHARACTERS[int(text)]
    raise DtmfError(f"{what} {value.strip()!r} is not a DTMF key (0-9, *, #, A-D)")


def parse_dtmf_relay(body: str) -> str:
    """The key of an `application/dtmf-relay` body ("Signal=5\\r\\nDuration=160")."""
    signal: str | None = None
    for line in body.splitlines():
        if not line.strip():
            continue
        name, separator, value = line.partition("=")
        if not separator:
            raise DtmfError(f"dtmf-relay line {line.strip()!r} is not name=value")
        key = name.strip().lower()
        if key == "signal":
            if signal is not None:
                raise DtmfError("dtmf-relay body has more than one Signal line")
            signal = value
        elif key == "duration":
            duration = value.strip()
            if not duration.isascii() or not duration.isdigit():
                raise DtmfError(f"dtmf-relay Duration {duration!r} is not a number")
    if signal is None:
        raise DtmfError("dtmf-relay body has no Signal line")
    return _signal_digit(signal, "dtmf-relay Signal")


def parse_dtmf_plain(body: str) -> str:
    """The key of an `application/dtmf` body ("5")."""
    if not body.strip():
        raise DtmfError("application/dtmf body is empty")
    return _signal_digit(body, "application/dtmf body")


def parse_info_body(content_type: str, body: bytes | str) -> str:
    """The key a SIP INFO carries, by its Content-Type (parameters are ignored)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if isinstance(body, bytes):
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise DtmfError(f"{media_type} body is not ASCII text") from None
    else:
        text = body
    if media_type == DTMF_RELAY:
        return parse_dtmf_relay(text)
    if media_type == DTMF_PLAIN:
        return parse_dtmf_plain(text)
    raise DtmfError(
        f"INFO with Content-Type {content_type!r} carries no DTMF "
        f"(expected {DTMF_RELAY} or {DTMF_PLAIN})"
    )


# --- in-band detection --------------------------------------------------------------------

_FREQUENCIES = DTMF_LOW_HZ + DTMF_HIGH_HZ
_FloatArray = npt.NDArray[np.float64]
# Half-frame tone powers this far apart mean the tone covers one half only.
_PARTIAL = 8.0


@functools.cache
def _basis(samples: int) -> tuple[_FloatArray, float, float]:
    """The matrix that takes a frame to the 8 frequencies' DFT parts, and two scales.

    Columns 0-15 are the cos and sin of the 8 frequencies under a Hann window over the
    whole frame: x @ those is each frequency's DFT (what Goertzel computes), and the
    window flattens the response near each frequency and cuts the leakage into the
    neighbouring key frequencies. Columns 16-31 and 32-47 are the same under a Hann
    window over the first and over the second half of the frame alone, for the phase.

    The first scale turns |X|^2 into the energy a sine of that amplitude has over the
    frame (amplitude = 2|X| / sum(w), energy = samples * amplitude^2 / 2). The second
    turns the phase turn between the halves into a frequency offset in Hz: a tone off by
    d Hz turns by 2 pi d / rate per sample, and the half windows' centres are half a
    frame apart.
    """
    half = samples // 2
    n = np.arange(samples, dtype=np.float64)
    steps = 2 * np.pi * np.asarray(_FREQUENCIES) / SAMPLE_RATE
    angles = np.outer(n, steps)
    waves = np.hstack((np.cos(angles), np.sin(angles)))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * (n + 0.5) / samples)
    half_window = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(half) + 0.5) / half)
    basis = np.zeros((samples, 48), dtype=np.float64)
    basis[:, :16] = waves * window[:, np.newaxis]
    basis[:half, 16:32] = waves[:half] * half_window[:, np.newaxis]
    basis[half : 2 * half, 32:] = waves[half : 2 * half] * half_window[:, np.newaxis]
    energy_scale = 2.0 * samples / float(window.sum()) ** 2
    offset_scale = SAMPLE_RATE / (2 * np.pi * half)
    return np.ascontiguousarray(basis), energy_scale, offset_scale


@functools.cache
def _float_decode_table(codec: Codec) -> _FloatArray:
    return np.array([codec.decode_value(code) for code in range(256)], dtype=np.float64)


class DtmfDetector:
    """In-band DTMF on one stream of PCM16 frames: `feed(frame)` returns a key once.

    Per frame the key is the strongest low-group and strongest high-group frequency,
    accepted only if

    - each tone is at least `min_level_dbm0`;
    - the twist is within limits: the high tone at most `normal_twist_db` below the low
      one (lines lose more of the high frequencies) and at most `reverse_twist_db` above;
    - each tone stands `peak_ratio_db` above the other frequencies of its group;
    - together the two tones carry `min_tone_share` of the frame's energy: speech and
      music spread their energy over many frequencies and fail this;
    - each tone is within `max_frequency_error` of its nominal frequency (Q.24 asks to
      accept 1.5 % and reject 3.5 %). At 50 Hz resolution the powers alone cannot tell
      that apart, so the offset is measured from how far the tone's phase turns between
      the two halves of the frame. This is what keeps two musical notes near a key's
      pair (G5 and D6 are 2-3 % off "4") from counting.

    A key is reported once it has been seen in `min_frames` consecutive frames (two
    frames: 40 ms; tones of 50 ms and more are found wherever they fall in the frames,
    and phones send 70-100 ms). The same key counts again only after `min_gap_frames`
    frames without any key (40 ms), so a frame lost in the middle of a long press does
    not make two presses out of one.
    """

    __slots__ = (
        "_basis",
        "_candidate",
        "_energy_scale",
        "_gap",
        "_max_offsets",
        "_min_energy",
        "_min_share",
        "_normal_twist",
        "_offset_scale",
        "_peak_ratio",
        "_reported",
        "_reverse_twist",
        "_run",
        "frames",
        "min_frames",
        "min_gap_frames",
        "samples",
    )

    def __init__(
        self,
        *,
        min_level_dbm0: float = -32.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 6.0,
        peak_ratio_db: float = 6.0,
        min_tone_share: float = 0.7,
        max_frequency_error: float = 0.025,
        min_frames: int = 2,
        min_gap_frames: int = 2,
        samples: int = FRAME_SAMPLES,
    ) -> None:
        if min_frames < 1 or min_gap_frames < 1:
            raise ValueError("min_frames and min_gap_frames must be at least 1")
        if not 0.0 < min_tone_share <= 1.0:
            raise ValueError(f"min_tone_share {min_tone_share} is not in (0, 1]")
        self.samples = samples
        self._basis, self._energy_scale, self._offset_scale = _basis(samples)
        self._max_offsets = tuple(max_frequency_error * frequency for frequency in _FREQUENCIES)
        # Energy over a frame of one sine at the minimum level.
        self._min_energy = samples * peak_amplitude(min_level_dbm0) ** 2 / 2
        self._normal_twist = 10 ** (normal_twist_db / 10)
        self._reverse_twist = 10 ** (reverse_twist_db / 10)
        self._peak_ratio = 10 ** (peak_ratio_db / 10)
        self._min_share = min_tone_share
        self.min_frames = min_frames
        self.min_gap_frames = min_gap_frames
        self.frames = 0
        self._candidate: str | None = None
        self._run = 0
        self._reported: str | None = None
        self._gap = 0

    def reset(self) -> None:
        """Forget the current key (the stream was interrupted or switched)."""
        self._candidate = None
        self._run = 0
        self._reported = None
        self._gap = 0

    def feed(self, frame: PcmBuffer) -> str | None:
        """One frame of PCM16 (native-endian int16 buffer of `samples` samples)."""
        samples = np.frombuffer(frame, dtype=np.int16).astype(np.float64)
        return self._track(self._classify(samples))

    def feed_g711(self, payload: bytes, codec: Codec) -> str | None:
        """One G.711 payload, decoded straight to floats (no PCM16 step)."""
        table = _float_decode_table(codec)
        return self._track(self._classify(table[np.frombuffer(payload, dtype=np.uint8)]))

    def classify(self, frame: PcmBuffer) -> str | None:
        """The key one frame holds on its own, without the duration and gap rules."""
        return self._classify(np.frombuffer(frame, dtype=np.int16).astype(np.float64))

    def _classify(self, samples: _FloatArray) -> str | None:
        if samples.shape[0] != self.samples:
            raise ValueError(f"frame of {samples.shape[0]} samples, expected {self.samples}")
        self.frames += 1
        total = float(np.dot(samples, samples))
        min_energy = self._min_energy
        if total < 2 * min_energy:
            return None
        # [cos 0-7, sin 0-7] over the frame, then over its first and its second half.
        parts: list[float] = np.dot(samples, self._basis).tolist()
        lows = [parts[k] * parts[k] + parts[k + 8] * parts[k + 8] for k in range(4)]
        highs = [parts[k] * parts[k] + parts[k + 8] * parts[k + 8] for k in range(4, 8)]
        low = max(lows)
        high = max(highs)
        scale = self._energy_scale
        if low * scale < min_energy or high * scale < min_energy:
            return None
        if (low + high) * scale < self._min_share * total:
            return None
        if high < low:
            if low > high * self._normal_twist:
                return None
        elif high > low * self._reverse_twist:
            return None
        ratio = self._peak_ratio
        if sorted(lows)[2] * ratio > low or sorted(highs)[2] * ratio > high:
            return None
        row = lows.index(low)
        column = 4 + highs.index(high)
        for index in (row, column):
            # How far the phase turned from the first half to the second: the offset.
            re1 = parts[index + 16]
            im1 = parts[index + 24]
            re2 = parts[index + 32]
            im2 = parts[index + 40]
            first = re1 * re1 + im1 * im1
            second = re2 * re2 + im2 * im2
            if first > second * _PARTIAL or second > first * _PARTIAL:
                # The tone starts or stops in this frame: a phase with next to no tone
                # behind it says nothing, so the check waits for a frame the tone fills.
                # (Only a blip under 40 ms astride two frames never gets one.)
                continue
            turn = math.atan2(im2 * re1 - re2 * im1, re2 * re1 + im2 * im1)
            if abs(turn) * self._offset_scale > self._max_offsets[index]:
                return None
        return DTMF_KEYPAD[row][column - 4]

    def _track(self, key: str | None) -> str | None:
        if key is None:
            self._candidate = None
            self._run = 0
            self._gap += 1
            if self._gap >= self.min_gap_frames:
                self._reported = None
            return None
        self._gap = 0
        if key == self._candidate:
            self._run += 1
        else:
            self._candidate = key
            self._run = 1
        if self._run >= self.min_frames and key != self._reported:
            self._reported = key
            return key
        return None

"""Call-progress tones, beeps and DTMF as PCM16 at 8 kHz.

Tones are rendered once (into prompts, see `prompt.py`) and then only replayed, so this
module is plain Python and favours exactness over speed: phase is continuous across a
whole on-period, and on/off edges get a short raised-cosine ramp so a cadence does not
click at every switch.

Levels are in dBm0-ish terms: 0 dBm0 is the sine whose peak lies 3.14 dB below the
codec's overload point (the G.711 A-law figure; mu-law's 3.17 dB is close enough for
tones). Call-progress tones go out at about -10 dBm0 per frequency, DTMF a little louder.
"""

from __future__ import annotations

import array
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .g711 import SAMPLE_RATE

# Peak of a 0 dBm0 sine on the 16-bit scale.
DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)

# The DTMF keypad: rows are the low group, columns the high group (ITU-T Q.23).
DTMF_LOW_HZ = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYPAD = ("123A", "456B", "789C", "*0#D")
DTMF_DIGITS = "0123456789*#ABCD"

# Edge ramps short enough not to shorten a tone audibly, long enough to avoid a click.
DEFAULT_RAMP_MS = 2.0


def samples_for(ms: float) -> int:
    """Samples in `ms` milliseconds at 8 kHz, rounded to the nearest sample."""
    if ms < 0:
        raise ValueError(f"duration {ms} ms is negative")
    return round(ms * SAMPLE_RATE / 1000)


def peak_amplitude(level_dbm0: float) -> float:
    """The peak of a sine at `level_dbm0` on the 16-bit scale."""
    return DBM0_PEAK * 10 ** (level_dbm0 / 20)


def dtmf_frequencies(digit: str) -> tuple[float, float]:
    """The (low, high) frequency pair of a DTMF key."""
    key = digit.upper()
    for row, keys in enumerate(DTMF_KEYPAD):
        column = keys.find(key)
        if len(key) == 1 and column >= 0:
            return DTMF_LOW_HZ[row], DTMF_HIGH_HZ[column]
    raise ValueError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")


def _to_pcm(values: Iterable[float]) -> array.array[int]:
    # Round and clip: two tones at high levels can sum past full scale.
    return array.array("h", (max(-32768, min(32767, round(value))) for value in values))


def _ramp(samples: int, ramp: int, index: int) -> float:
    if index < ramp:
        return 0.5 - 0.5 * math.cos(math.pi * (index + 0.5) / ramp)
    if index >= samples - ramp:
        return 0.5 - 0.5 * math.cos(math.pi * (samples - index - 0.5) / ramp)
    return 1.0


def tone(
    frequencies: Sequence[float],
    samples: int,
    levels_dbm0: Sequence[float] | float = -10.0,
    *,
    ramp_ms: float = 0.0,
) -> array.array[int]:
    """The sum of sines at `frequencies`, each at its own level (one level for all)."""
    if samples < 0:
        raise ValueError(f"sample count {samples} is negative")
    if isinstance(levels_dbm0, float | int):
        levels: Sequence[float] = [float(levels_dbm0)] * len(frequencies)
    else:
        levels = levels_dbm0
    if len(levels) != len(frequencies):
        raise ValueError(f"{len(frequencies)} frequencies but {len(levels)} levels")
    for frequency in frequencies:
        if not 0 < frequency < SAMPLE_RATE / 2:
            raise ValueError(f"{frequency} Hz is not between 0 and {SAMPLE_RATE // 2} Hz")
    steps = [2 * math.pi * frequency / SAMPLE_RATE for frequency in frequencies]
    peaks = [peak_amplitude(level) for level in levels]
    ramp = min(samples_for(ramp_ms), samples // 2)
    pairs = list(zip(steps, peaks, strict=True))
    return _to_pcm(
        sum(peak * math.sin(step * index) for step, peak in pairs)
        * (_ramp(samples, ramp, index) if ramp else 1.0)
        for index in range(samples)
    )


def sine(
    frequency: float, samples: int, level_dbm0: float = -10.0, *, ramp_ms: float = 0.0
) -> array.array[int]:
    return tone((frequency,), samples, level_dbm0, ramp_ms=ramp_ms)


def dual_tone(
    low_hz: float,
    high_hz: float,
    samples: int,
    low_dbm0: float = -10.0,
    high_dbm0: float | None = None,
    *,
    ramp_ms: float = 0.0,
) -> array.array[int]:
    high_level = low_dbm0 if high_dbm0 is None else high_dbm0
    return tone((low_hz, high_hz), samples, (low_dbm0, high_level), ramp_ms=ramp_ms)


def silence(samples: int) -> array.array[int]:
    if samples < 0:
        raise ValueError(f"sample count {samples} is negative")
    return array.array("h", bytes(2 * samples))


def dtmf(
    digit: str,
    duration_ms: float = 100.0,
    *,
    low_dbm0: float = -8.0,
    high_dbm0: float = -6.0,
    ramp_ms: float = DEFAULT_RAMP_MS,
) -> array.array[int]:
    """One DTMF key; the high group 2 dB above the low one, as telephones send it."""
    low, high = dtmf_frequencies(digit)
    return dual_tone(low, high, samples_for(duration_ms), low_dbm0, high_dbm0, ramp_ms=ramp_ms)


def dtmf_sequence(
    digits: str, tone_ms: float = 100.0, gap_ms: float = 100.0, **levels: float
) -> array.array[int]:
    """Keys one after the other, each followed by `gap_ms` of silence."""
    pcm = array.array("h")
    for digit in digits:
        pcm.extend(dtmf(digit, tone_ms, **levels))
        pcm.extend(silence(samples_for(gap_ms)))
    return pcm


@dataclass(frozen=True, slots=True)
class Cadence:
    """A tone switched on and off: `pattern_ms` alternates on, off, on, off... durations.

    `render()` gives one whole cycle; looping it (a looping prompt) plays the cadence.
    A pattern of one duration is a single burst (a beep).
    """

    frequencies: tuple[float, ...]
    pattern_ms: tuple[float, ...]
    level_dbm0: float = -10.0
    ramp_ms: float = DEFAULT_RAMP_MS

    def __post_init__(self) -> None:
        if not self.frequencies:
            raise ValueError("a cadence needs at least one frequency")
        if not self.pattern_ms or any(duration <= 0 for duration in self.pattern_ms):
            raise ValueError(f"cadence pattern {self.pattern_ms} needs positive durations")

    @property
    def cycle_samples(self) -> int:
        return sum(samples_for(duration) for duration in self.pattern_ms)

    def render(self) -> array.array[int]:
        pcm = array.array("h")
        for index, duration in enumerate(self.pattern_ms):
            count = samples_for(duration)
            if index % 2:
                pcm.extend(silence(count))
            else:
                pcm.extend(tone(self.frequencies, count, self.level_dbm0, ramp_ms=self.ramp_ms))
        return pcm


# Russian / ETSI (TR 101 041) call-progress tones on 425 Hz.
RINGBACK = Cadence((425.0,), (1000.0, 4000.0))
BUSY = Cadence((425.0,), (350.0, 350.0))
# The "leave your message after the beep" beep.
VOICEMAIL_BEEP = Cadence((1000.0,), (500.0,), level_dbm0=-8.0)

"""Tone generators: frequencies, levels, cadences and the DTMF keypad."""

from __future__ import annotations

import array
import itertools
import math

import pytest

from vpbx_media.media.tones import (
    BUSY,
    DBM0_PEAK,
    DTMF_DIGITS,
    RINGBACK,
    VOICEMAIL_BEEP,
    Cadence,
    dtmf,
    dtmf_frequencies,
    dtmf_sequence,
    dual_tone,
    peak_amplitude,
    samples_for,
    silence,
    sine,
    tone,
)


def rms(samples: array.array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def power_at(samples: array.array[int], frequency: float) -> float:
    """Normalised power at one frequency: 1.0 for a full-scale sine at exactly it."""
    step = 2 * math.pi * frequency / 8000
    re = sum(s * math.cos(step * n) for n, s in enumerate(samples))
    im = sum(s * math.sin(step * n) for n, s in enumerate(samples))
    return (re * re + im * im) / (len(samples) * 32768 / 2) ** 2


def test_sine_has_its_level_and_frequency() -> None:
    pcm = sine(425.0, 8000, -10.0)
    assert len(pcm) == 8000
    assert max(pcm) == pytest.approx(DBM0_PEAK * 10 ** (-10 / 20), abs=1)
    assert rms(pcm) == pytest.approx(peak_amplitude(-10.0) / math.sqrt(2), rel=1e-3)
    # 425 crossings upwards in one second.
    upward = sum(1 for a, b in itertools.pairwise(pcm) if a < 0 <= b)
    assert upward in (424, 425)


def test_dual_tone_holds_both_frequencies_at_their_levels() -> None:
    pcm = dual_tone(697.0, 1209.0, 800, -10.0, -4.0)
    low = power_at(pcm, 697.0)
    high = power_at(pcm, 1209.0)
    assert 10 * math.log10(high / low) == pytest.approx(6.0, abs=0.2)
    assert power_at(pcm, 1000.0) < low / 100


def test_zero_dbm0_sits_3_14_db_below_full_scale() -> None:
    assert 20 * math.log10(32768 / peak_amplitude(0.0)) == pytest.approx(3.14)


def test_loud_tones_clip_instead_of_wrapping() -> None:
    pcm = tone((400.0, 401.0), 800, 3.0)
    assert max(pcm) == 32767
    assert min(pcm) == -32768


def test_ramp_starts_and_ends_quietly() -> None:
    pcm = sine(1000.0, 800, 0.0, ramp_ms=2.0)
    assert abs(pcm[0]) < 200
    assert abs(pcm[-1]) < 200
    assert max(pcm[100:700]) == pytest.approx(peak_amplitude(0.0), rel=0.01)


@pytest.mark.parametrize(
    ("digit", "pair"),
    [
        ("1", (697.0, 1209.0)),
        ("5", (770.0, 1336.0)),
        ("9", (852.0, 1477.0)),
        ("*", (941.0, 1209.0)),
        ("0", (941.0, 1336.0)),
        ("#", (941.0, 1477.0)),
        ("A", (697.0, 1633.0)),
        ("d", (941.0, 1633.0)),
    ],
)
def test_dtmf_keypad(digit: str, pair: tuple[float, float]) -> None:
    assert dtmf_frequencies(digit) == pair


def test_every_dtmf_key_is_a_distinct_pair() -> None:
    assert len({dtmf_frequencies(digit) for digit in DTMF_DIGITS}) == 16


@pytest.mark.parametrize("bad", ["E", "", "12", "x"])
def test_not_a_dtmf_key(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a DTMF key"):
        dtmf_frequencies(bad)


def test_dtmf_tone_and_sequence_lengths() -> None:
    assert len(dtmf("5")) == 800
    assert len(dtmf("#", 40.0)) == 320
    assert len(dtmf_sequence("123", tone_ms=80, gap_ms=60)) == 3 * (640 + 480)


def test_silence_and_durations() -> None:
    assert silence(160) == array.array("h", [0] * 160)
    assert samples_for(20) == 160
    assert samples_for(350) == 2800
    with pytest.raises(ValueError, match="negative"):
        samples_for(-1)
    with pytest.raises(ValueError, match="negative"):
        silence(-1)


def test_ringback_is_one_second_on_four_off() -> None:
    cycle = RINGBACK.render()
    assert len(cycle) == RINGBACK.cycle_samples == 40_000
    assert rms(cycle[:8000]) > 1000
    assert not any(cycle[8000:])
    assert power_at(cycle[:8000], 425.0) > 100 * power_at(cycle[:8000], 450.0)


def test_busy_is_350_ms_on_350_off() -> None:
    cycle = BUSY.render()
    assert len(cycle) == 5600
    assert rms(cycle[:2800]) > 1000
    assert not any(cycle[2800:])


def test_beep_is_one_burst() -> None:
    beep = VOICEMAIL_BEEP.render()
    assert len(beep) == 4000
    assert power_at(beep, 1000.0) > 100 * power_at(beep, 1100.0)


def test_cadence_validation() -> None:
    with pytest.raises(ValueError, match="at least one frequency"):
        Cadence((), (100.0,))
    with pytest.raises(ValueError, match="positive durations"):
        Cadence((425.0,), (100.0, 0.0))
    with pytest.raises(ValueError, match="not between 0 and 4000"):
        sine(4000.0, 10)
    with pytest.raises(ValueError, match="2 frequencies but 1 levels"):
        tone((400.0, 500.0), 10, (-10.0,))

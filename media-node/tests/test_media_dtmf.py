"""DTMF: RFC 4733 payloads and their receiver, SIP INFO bodies, in-band detection."""

from __future__ import annotations

import array
import math
import random
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from vpbx_media.media.dtmf import (
    DtmfDetector,
    DtmfError,
    DtmfEventReceiver,
    TelephoneEvent,
    digit_for_event,
    event_for_digit,
    parse_dtmf_plain,
    parse_dtmf_relay,
    parse_info_body,
)
from vpbx_media.media.g711 import Codec
from vpbx_media.media.tones import (
    DTMF_DIGITS,
    dtmf,
    dtmf_frequencies,
    dual_tone,
    peak_amplitude,
    samples_for,
    silence,
    sine,
    tone,
)

# --- RFC 4733 -----------------------------------------------------------------------------


def test_event_codes() -> None:
    assert [event_for_digit(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert event_for_digit("a") == 12
    assert [digit_for_event(code) for code in (0, 9, 10, 11, 15)] == ["0", "9", "*", "#", "D"]
    assert digit_for_event(16) is None  # hook flash
    with pytest.raises(DtmfError, match="'E' is not a DTMF key"):
        event_for_digit("E")
    with pytest.raises(DtmfError, match="'12' is not a DTMF key"):
        event_for_digit("12")


@pytest.mark.parametrize(
    ("wire", "event"),
    [
        ("050a00a0", TelephoneEvent(5, end=False, volume=10, duration=160)),
        ("0b8a0320", TelephoneEvent(11, end=True, volume=10, duration=800)),
        ("10000000", TelephoneEvent(16, end=False, volume=0, duration=0)),
        ("0fbfffff", TelephoneEvent(15, end=True, volume=63, duration=65535)),
    ],
)
def test_telephone_event_wire_format(wire: str, event: TelephoneEvent) -> None:
    assert TelephoneEvent.parse(bytes.fromhex(wire)) == event
    assert bytes(event).hex() == wire


def test_telephone_event_ignores_the_reserved_bit() -> None:
    event = TelephoneEvent.parse(bytes.fromhex("05ca00a0"))
    assert event == TelephoneEvent(5, end=True, volume=10, duration=160)
    assert bytes(event).hex() == "058a00a0"


def test_telephone_event_helpers_and_errors() -> None:
    assert TelephoneEvent.for_digit("#", end=True, duration=320).digit == "#"
    assert TelephoneEvent(16).digit is None
    with pytest.raises(DtmfError, match="payload of 3 octets, expected 4"):
        TelephoneEvent.parse(b"\x05\x0a\x00")
    with pytest.raises(ValueError, match="volume 64 is not 0-63"):
        TelephoneEvent(1, volume=64)
    with pytest.raises(ValueError, match="duration 65536 does not fit 16 bits"):
        TelephoneEvent(1, duration=65536)
    with pytest.raises(ValueError, match="event 256 does not fit 8 bits"):
        TelephoneEvent(256)


def rfc4733_packets(
    digit: str, timestamp: int, *, updates: int = 4, ends: int = 3
) -> list[tuple[int, bool, bytes]]:
    """What a phone sends for one key press: a start (marker), updates, three ends."""
    packets = []
    for index in range(updates):
        event = TelephoneEvent.for_digit(digit, duration=160 * (index + 1))
        packets.append((timestamp, index == 0, bytes(event)))
    for _ in range(ends):
        event = TelephoneEvent.for_digit(digit, end=True, duration=160 * updates)
        packets.append((timestamp, False, bytes(event)))
    return packets


def receive(receiver: DtmfEventReceiver, packets: Iterable[tuple[int, bool, bytes]]) -> str:
    return "".join(
        key for ts, marker, payload in packets if (key := receiver.feed(ts, marker, payload))
    )


def test_each_event_is_reported_once() -> None:
    receiver = DtmfEventReceiver()
    packets = rfc4733_packets("1", 1000) + rfc4733_packets("1", 3000) + rfc4733_packets("#", 5000)
    assert receive(receiver, packets) == "11#"
    assert receiver.events == 3


def test_repeated_start_packets_count_once() -> None:
    start = (7000, True, bytes(TelephoneEvent.for_digit("5", duration=0)))
    receiver = DtmfEventReceiver()
    assert receive(receiver, [start, start, start, *rfc4733_packets("5", 7000)]) == "5"


def test_lost_start_still_yields_the_key_from_its_end() -> None:
    receiver = DtmfEventReceiver()
    ends = rfc4733_packets("9", 160, updates=0)
    assert receive(receiver, ends) == "9"


def test_late_packet_of_an_older_event_is_ignored() -> None:
    receiver = DtmfEventReceiver()
    first = rfc4733_packets("1", 1000)
    second = rfc4733_packets("2", 2000)
    # The last end packet of "1" arrives after "2" started.
    assert receive(receiver, [*first[:-1], *second[:2], first[-1], *second[2:]]) == "12"


def test_long_event_segments_are_one_key() -> None:
    # RFC 4733 2.5.1.3: past 65535 units the sender starts a segment with a new timestamp
    # and no marker, while the event goes on.
    receiver = DtmfEventReceiver()
    long_first = [
        (1000, True, bytes(TelephoneEvent.for_digit("0", duration=160))),
        (1000, False, bytes(TelephoneEvent.for_digit("0", duration=65535))),
        (66535, False, bytes(TelephoneEvent.for_digit("0", duration=160))),
        (66535, False, bytes(TelephoneEvent.for_digit("0", end=True, duration=800))),
    ]
    assert receive(receiver, long_first) == "0"
    # The same key pressed again: a new timestamp with the marker.
    assert receive(receiver, rfc4733_packets("0", 80000)) == "0"


def test_same_key_again_after_lost_marker_counts_when_the_first_ended() -> None:
    receiver = DtmfEventReceiver()
    second = [(p[0], False, p[2]) for p in rfc4733_packets("3", 9000)]
    assert receive(receiver, rfc4733_packets("3", 5000) + second) == "33"


def test_timestamp_wrap_is_newer_not_older() -> None:
    receiver = DtmfEventReceiver()
    packets = rfc4733_packets("4", 0xFFFFFF00) + rfc4733_packets("5", 0x00000100)
    assert receive(receiver, packets) == "45"


def test_malformed_and_non_key_events_are_counted() -> None:
    receiver = DtmfEventReceiver()
    assert receiver.feed(100, True, b"\x05\x0a") is None
    assert receiver.feed(200, True, bytes(TelephoneEvent(16, duration=160))) is None
    assert receiver.feed(200, False, bytes(TelephoneEvent(16, end=True))) is None
    assert (receiver.malformed, receiver.ignored, receiver.events) == (1, 1, 0)
    assert receiver.feed(400, True, bytes(TelephoneEvent.for_digit("7"))) == "7"


# --- SIP INFO -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        ("Signal=5\r\nDuration=160\r\n", "5"),
        ("Signal=5\r\nDuration=160", "5"),
        ("signal= *\nduration= 250\n", "*"),
        ("Signal=#\r\n", "#"),
        ("Signal=11\r\nDuration=100\r\n", "#"),  # event code instead of the key
        ("Signal=d\r\n", "D"),
        ("\r\nSignal=0\r\n\r\n", "0"),
    ],
)
def test_dtmf_relay_bodies(body: str, digit: str) -> None:
    assert parse_dtmf_relay(body) == digit
    assert parse_info_body("application/dtmf-relay", body.encode()) == digit


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Duration=160\r\n", "has no Signal line"),
        ("Signal=5\r\nSignal=6\r\n", "more than one Signal line"),
        ("Signal=X\r\n", "dtmf-relay Signal 'X' is not a DTMF key"),
        ("Signal=16\r\n", "dtmf-relay Signal '16' is not a DTMF key"),
        ("Signal=\r\n", "dtmf-relay Signal '' is not a DTMF key"),
        ("Signal=5\r\nDuration=long\r\n", "Duration 'long' is not a number"),
        ("Signal 5\r\n", "line 'Signal 5' is not name=value"),
        ("", "has no Signal line"),
    ],
)
def test_bad_dtmf_relay_bodies(body: str, message: str) -> None:
    with pytest.raises(DtmfError, match=message):
        parse_dtmf_relay(body)


@pytest.mark.parametrize(("body", "digit"), [("5", "5"), ("#\r\n", "#"), (" a ", "A"), ("10", "*")])
def test_dtmf_plain_bodies(body: str, digit: str) -> None:
    assert parse_dtmf_plain(body) == digit
    assert parse_info_body("Application/DTMF; charset=us-ascii", body) == digit


def test_bad_info_bodies() -> None:
    with pytest.raises(DtmfError, match="application/dtmf body is empty"):
        parse_dtmf_plain("\r\n")
    with pytest.raises(DtmfError, match="application/dtmf body '55' is not a DTMF key"):
        parse_dtmf_plain("55")
    with pytest.raises(DtmfError, match="'application/media_control\\+xml' carries no DTMF"):
        parse_info_body("application/media_control+xml", "<x/>")
    with pytest.raises(DtmfError, match="application/dtmf-relay body is not ASCII"):
        parse_info_body("application/dtmf-relay", "Signal=\u0665".encode())


# --- in-band ------------------------------------------------------------------------------

FRAME = 160


def as_pcm(values: Iterable[float]) -> array.array[int]:
    return array.array("h", (max(-32768, min(32767, round(v))) for v in values))


def frames(pcm: Sequence[int] | bytes) -> list[array.array[int]]:
    samples = array.array("h", pcm)
    samples.extend(silence(-len(samples) % FRAME))
    return [samples[i : i + FRAME] for i in range(0, len(samples), FRAME)]


def detect(pcm: Sequence[int] | bytes, detector: DtmfDetector | None = None) -> str:
    detector = detector or DtmfDetector()
    return "".join(key for frame in frames(pcm) if (key := detector.feed(frame)))


def noise(count: int, level_dbm0: float, seed: int = 1) -> list[float]:
    """White noise whose power equals a sine's at `level_dbm0`."""
    rng = random.Random(seed)
    spread = peak_amplitude(level_dbm0) / math.sqrt(2)
    return [rng.gauss(0.0, spread) for _ in range(count)]


def mix(*signals: Sequence[float]) -> array.array[int]:
    length = max(len(signal) for signal in signals)
    return as_pcm(sum(signal[i] for signal in signals if i < len(signal)) for i in range(length))


def pad(pcm: Sequence[int], before: int, after: int = 400) -> array.array[int]:
    return silence(before) + array.array("h", pcm) + silence(after)


@pytest.mark.parametrize("digit", list(DTMF_DIGITS))
@pytest.mark.parametrize("offset", [0, 53, 80, 131])
def test_every_key_is_detected_once(digit: str, offset: int) -> None:
    assert detect(pad(dtmf(digit, 100.0), offset)) == digit


def test_long_press_is_one_key() -> None:
    assert detect(pad(dtmf("8", 2000.0), 30)) == "8"


def test_key_from_g711_payloads() -> None:
    pcm = pad(dtmf("#", 100.0), 70)
    for codec in Codec:
        detector = DtmfDetector()
        keys = [detector.feed_g711(codec.encode(frame), codec) for frame in frames(pcm)]
        assert [key for key in keys if key] == ["#"]


def test_a_sequence_of_keys() -> None:
    pcm = pad(dtmf_sequence_with("159*0#AD"), 17)
    assert detect(pcm) == "159*0#AD"


def dtmf_sequence_with(digits: str, tone_ms: float = 70.0, gap_ms: float = 70.0) -> list[int]:
    pcm: list[int] = []
    for digit in digits:
        pcm += dtmf(digit, tone_ms)
        pcm += silence(samples_for(gap_ms))
    return pcm


@pytest.mark.parametrize("offset", [0, 40, 80, 120])
def test_same_key_after_a_60_ms_gap_counts_twice(offset: int) -> None:
    pcm = dtmf("5", 80.0) + silence(samples_for(60.0)) + dtmf("5", 80.0)
    assert detect(pad(pcm, offset)) == "55"


def test_a_dropped_frame_inside_a_press_is_not_a_second_press() -> None:
    pcm = dtmf("2", 100.0) + silence(FRAME) + dtmf("2", 100.0)
    assert detect(pad(pcm, 0)) == "2"


@pytest.mark.parametrize("digit", list(DTMF_DIGITS))
def test_quiet_key_in_white_noise(digit: str) -> None:
    # Each tone at -20 dBm0, white noise 15 dB below the pair.
    key = dtmf(digit, 100.0, low_dbm0=-20.0, high_dbm0=-20.0)
    pcm = mix(noise(2000, -20.0 + 3.0 - 15.0), [0.0] * 400 + list(key))
    assert detect(pcm) == digit


def test_keys_at_the_sensitivity_limit() -> None:
    assert detect(pad(dtmf("6", 100.0, low_dbm0=-30.0, high_dbm0=-30.0), 0)) == "6"
    assert detect(pad(dtmf("6", 100.0, low_dbm0=-36.0, high_dbm0=-36.0), 0)) == ""


def test_twist_limits() -> None:
    # High tone 6 dB below the low one (normal twist, within 8 dB): a key.
    assert detect(pad(dtmf("3", 100.0, low_dbm0=-8.0, high_dbm0=-14.0), 0)) == "3"
    # 10 dB below: not a key.
    assert detect(pad(dtmf("3", 100.0, low_dbm0=-8.0, high_dbm0=-18.0), 0)) == ""
    # Low tone 4 dB below the high one (reverse twist, within 6 dB): a key; 9 dB: not.
    assert detect(pad(dtmf("3", 100.0, low_dbm0=-10.0, high_dbm0=-6.0), 0)) == "3"
    assert detect(pad(dtmf("3", 100.0, low_dbm0=-15.0, high_dbm0=-6.0), 0)) == ""


@pytest.mark.parametrize("digit", list("1590#D"))
def test_frequency_tolerance(digit: str) -> None:
    low, high = dtmf_frequencies(digit)
    for sign in (1, -1):
        near = dual_tone(low * (1 + sign * 0.015), high * (1 - sign * 0.015), 800, -8.0, -6.0)
        assert detect(pad(near, 40)) == digit
        far = dual_tone(low * (1 + sign * 0.035), high * (1 - sign * 0.035), 800, -8.0, -6.0)
        assert detect(pad(far, 40)) == ""


def test_short_blips_are_not_keys() -> None:
    for offset in (0, 60, 120):
        assert detect(pad(dtmf("7", 20.0), offset)) == ""


def test_white_noise_is_not_a_key() -> None:
    assert detect(as_pcm(noise(8000 * 5, -10.0, seed=3))) == ""


def test_single_tones_are_not_keys() -> None:
    for frequency in (697.0, 941.0, 1209.0, 1633.0, 1000.0, 425.0):
        assert detect(sine(frequency, 8000, -5.0)) == ""


def test_one_khz_sine_at_full_level_is_not_a_key() -> None:
    assert detect(sine(1000.0, 8000, 3.0)) == ""


def note(frequency: float, count: int, level: float, harmonics: int) -> npt.NDArray[np.float64]:
    n = np.arange(count)
    peak = peak_amplitude(level)
    return sum(
        (
            peak / h * np.sin(2 * np.pi * frequency * h / 8000 * n)
            for h in range(1, harmonics + 1)
            if frequency * h < 3900
        ),
        np.zeros(count),
    )


def midi(number: int) -> float:
    return 440.0 * 2 ** ((number - 69) / 12)


CHORDS = [(0, 4, 7), (0, 3, 7), (0, 7), (0, 4), (0, 5), (0, 3), (0, 4, 7, 10), (0, 12)]


@pytest.mark.parametrize("harmonics", [1, 4])
def test_chords_are_not_keys(harmonics: int) -> None:
    """Triads, dyads and octaves over three octaves, pure or with harmonics.

    Some dyads land within 2-3 % of a key's pair (G5+D6 near "4", A5+E6 near "8"); only
    the frequency check keeps those out.
    """
    found = {}
    for root in range(55, 91, 1):
        for chord in CHORDS:
            chord_sum = sum(note(midi(root + step), 1600, -12.0, harmonics) for step in chord)
            pcm = np.clip(np.round(chord_sum), -32768, 32767).astype(np.int16).tobytes()
            keys = detect(pcm)
            if keys:
                found[(root, chord)] = keys
    assert found == {}


def test_vowel_like_sounds_are_not_keys() -> None:
    """Harmonics of a voice's pitch shaped by formants, the way talk-off is tested."""
    formants = {
        "a": ((730, 90), (1090, 110), (2440, 170)),
        "i": ((270, 60), (2290, 100), (3010, 150)),
        "u": ((300, 60), (870, 90), (2240, 150)),
        "e": ((530, 80), (1840, 100), (2480, 150)),
        "o": ((570, 80), (840, 90), (2410, 150)),
    }
    rng = random.Random(5)
    found = {}
    for vowel, shape in formants.items():
        for pitch in range(90, 320, 11):
            harmonics = [pitch * h for h in range(1, 3800 // pitch)]
            gains = [sum(1 / (1 + ((f - c) / b) ** 2) for c, b in shape) for f in harmonics]
            levels = [-6.0 + 20 * math.log10(g / max(gains)) for g in gains]
            pcm = tone(harmonics, 1600, levels)
            # Random phases, as a real glottal source has.
            start = rng.randrange(800)
            keys = detect(pcm[start:] + pcm[:start])
            if keys:
                found[(vowel, pitch)] = keys
    assert found == {}


def test_classify_and_reset() -> None:
    detector = DtmfDetector()
    frame = dtmf("9", 20.0, ramp_ms=0.0)
    assert detector.classify(frame) == "9"
    assert detector.feed(frame) is None
    assert detector.feed(frame) == "9"
    assert detector.feed(frame) is None
    detector.reset()
    assert detector.feed(frame) is None
    assert detector.feed(frame) == "9"
    assert detector.frames == 6


def test_detector_checks_its_input_and_settings() -> None:
    with pytest.raises(ValueError, match="frame of 80 samples, expected 160"):
        DtmfDetector().feed(silence(80))
    with pytest.raises(ValueError, match="at least 1"):
        DtmfDetector(min_frames=0)
    with pytest.raises(ValueError, match="min_tone_share 0 is not in"):
        DtmfDetector(min_tone_share=0)

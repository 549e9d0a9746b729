"""G.711: known code/value pairs, the fast table paths against the per-sample reference."""

from __future__ import annotations

import array
import random

import pytest

from vpbx_media.media.g711 import PCMA_SILENCE, PCMU_SILENCE, Codec, transcode

# (code, PCM16 value) pairs from the G.711 tables, scaled to 16 bits.
MU_LAW_GOLDEN = [
    (0xFF, 0),
    (0x7F, 0),  # negative zero
    (0xFE, 8),
    (0x7E, -8),
    (0xF0, 120),
    (0xEF, 132),
    (0x80, 32124),
    (0x00, -32124),
]
A_LAW_GOLDEN = [
    (0xD5, 8),
    (0x55, -8),
    (0xD4, 24),
    (0xC5, 264),
    (0xAA, 32256),
    (0x2A, -32256),
]


@pytest.mark.parametrize(("code", "value"), MU_LAW_GOLDEN)
def test_mu_law_decodes_known_codes(code: int, value: int) -> None:
    assert Codec.PCMU.decode_value(code) == value
    assert list(Codec.PCMU.decode(bytes([code]))) == [value]


@pytest.mark.parametrize(("code", "value"), A_LAW_GOLDEN)
def test_a_law_decodes_known_codes(code: int, value: int) -> None:
    assert Codec.PCMA.decode_value(code) == value
    assert list(Codec.PCMA.decode(bytes([code]))) == [value]


@pytest.mark.parametrize(
    ("codec", "sample", "code"),
    [
        (Codec.PCMU, 0, 0xFF),
        (Codec.PCMU, -1, 0x7F),
        (Codec.PCMU, 32767, 0x80),
        (Codec.PCMU, -32768, 0x00),
        (Codec.PCMU, 1000, 0xCE),
        (Codec.PCMA, 0, 0xD5),
        (Codec.PCMA, -1, 0x55),
        (Codec.PCMA, 32767, 0xAA),
        (Codec.PCMA, -32768, 0x2A),
        (Codec.PCMA, 1000, 0xFA),
    ],
)
def test_known_samples_encode_to_their_codes(codec: Codec, sample: int, code: int) -> None:
    assert codec.encode_value(sample) == code
    assert codec.encode(array.array("h", [sample])) == bytes([code])


def test_silence_codes() -> None:
    assert Codec.PCMU.silence == PCMU_SILENCE == 0xFF
    assert Codec.PCMA.silence == PCMA_SILENCE == 0xD5
    for codec in Codec:
        assert codec.encode(bytes(320)) == codec.silence_frame() == bytes([codec.silence]) * 160


@pytest.mark.parametrize("codec", list(Codec))
def test_every_code_survives_decode_and_encode(codec: Codec) -> None:
    codes = bytes(range(256))
    back = codec.encode(codec.decode(codes))
    changed = {code: back[code] for code in range(256) if back[code] != code}
    # Mu-law's negative zero is the only code whose value has another code (positive zero).
    assert changed == ({0x7F: 0xFF} if codec is Codec.PCMU else {})


@pytest.mark.parametrize("codec", list(Codec))
def test_encoding_is_monotonic_and_within_half_a_step(codec: Codec) -> None:
    previous = -(2**16)
    for sample in range(-32768, 32768):
        value = codec.decode_value(codec.encode_value(sample))
        assert value >= previous
        # Steps are 1/16 of the segment's base value; half of that is 1/32 of the sample.
        assert abs(value - sample) <= abs(sample) / 32 + 8
        previous = value


@pytest.mark.parametrize("codec", list(Codec))
def test_table_paths_match_the_reference(codec: Codec) -> None:
    every_sample = array.array("h", range(-32768, 32768))
    assert codec.encode(every_sample) == bytes(codec.encode_value(s) for s in every_sample)
    # The same samples as bytes and as a memoryview take the same path.
    assert codec.encode(every_sample.tobytes()) == codec.encode(memoryview(every_sample))
    decoded = codec.decode(bytes(range(256)))
    assert decoded.typecode == "h"
    assert list(decoded) == [codec.decode_value(code) for code in range(256)]


def test_odd_octet_count_is_refused() -> None:
    with pytest.raises(ValueError, match="not whole 16-bit samples"):
        Codec.PCMU.encode(b"\x00\x00\x00")


def test_out_of_range_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit 16 bits"):
        Codec.PCMA.encode_value(40000)


def test_transcoding_is_decode_then_encode() -> None:
    codes = bytes(range(256))
    for source, target in ((Codec.PCMU, Codec.PCMA), (Codec.PCMA, Codec.PCMU)):
        assert transcode(codes, source, target) == target.encode(source.decode(codes))
    assert transcode(b"\xff\x7f", Codec.PCMU, Codec.PCMA) == b"\xd5\xd5"
    # A-law has no zero: its silence (+8) becomes mu-law's smallest positive code.
    assert transcode(b"\xd5\x55", Codec.PCMA, Codec.PCMU) == b"\xfe\x7e"
    payload = bytes(random.Random(1).randrange(256) for _ in range(160))
    assert transcode(payload, Codec.PCMU, Codec.PCMU) is payload


def test_speech_like_signal_round_trips_closely() -> None:
    rng = random.Random(7)
    pcm = array.array("h", (int(rng.gauss(0, 3000)) for _ in range(1600)))
    pcm = array.array("h", (max(-32768, min(32767, s)) for s in pcm))
    for codec in Codec:
        back = codec.decode(codec.encode(pcm))
        noise = sum((a - b) ** 2 for a, b in zip(pcm, back, strict=True))
        signal = sum(a * a for a in pcm)
        # G.711 keeps about 38 dB signal-to-quantisation noise over its range.
        assert signal / noise > 10 ** (30 / 10)


@pytest.mark.parametrize(
    ("name", "payload_type", "codec"), [("pcmu", 0, Codec.PCMU), ("PCMA", 8, Codec.PCMA)]
)
def test_codec_lookup(name: str, payload_type: int, codec: Codec) -> None:
    assert Codec.from_name(name) is codec
    assert Codec.from_payload_type(payload_type) is codec
    assert codec.payload_type == payload_type


def test_codec_lookup_errors() -> None:
    with pytest.raises(ValueError, match=r"'G729' is not a G\.711 codec"):
        Codec.from_name("G729")
    with pytest.raises(ValueError, match="payload type 18 is not static PCMU"):
        Codec.from_payload_type(18)

"""WAV reading and writing, the format checks and stereo interleaving."""

from __future__ import annotations

import array
import io
import struct
import wave
from pathlib import Path

import pytest

from vpbx_media.media.wav import (
    WavFormatError,
    deinterleave,
    interleave,
    read_mono_8k,
    read_wav,
    write_wav,
)


def wav_bytes(channels: int, rate: int, width: int, frames: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


def test_mono_round_trip(tmp_path: Path) -> None:
    samples = array.array("h", [0, 1, -1, 32767, -32768, 1234])
    path = tmp_path / "prompt.wav"
    write_wav(path, samples)
    assert read_mono_8k(path) == samples
    audio = read_wav(str(path))
    assert (audio.sample_rate, audio.channels, audio.frames) == (8000, 1, 6)
    assert audio.describe() == "8000 Hz mono 16-bit PCM"


def test_file_octets_are_little_endian(tmp_path: Path) -> None:
    path = tmp_path / "le.wav"
    write_wav(path, array.array("h", [0x0102]))
    assert path.read_bytes()[-2:] == b"\x02\x01"


def test_stereo_round_trip_through_a_file_object() -> None:
    stereo = interleave(array.array("h", [1, 2, 3]), array.array("h", [-1, -2, -3]))
    buffer = io.BytesIO()
    write_wav(buffer, stereo, channels=2)
    audio = read_wav(io.BytesIO(buffer.getvalue()))
    assert (audio.channels, audio.frames, audio.duration) == (2, 3, 3 / 8000)
    assert audio.samples == array.array("h", [1, -1, 2, -2, 3, -3])


@pytest.mark.parametrize(
    ("channels", "rate", "width", "message"),
    [
        (1, 16000, 2, "is 16000 Hz mono 16-bit PCM; prompts must be 8000 Hz mono"),
        (2, 8000, 2, "is 8000 Hz stereo 16-bit PCM; prompts must be 8000 Hz mono"),
        (1, 8000, 1, "8-bit samples; only 16-bit PCM is read"),
        (3, 8000, 2, "3 channels; only mono or stereo is read"),
    ],
)
def test_prompts_refuse_other_formats(
    tmp_path: Path, channels: int, rate: int, width: int, message: str
) -> None:
    path = tmp_path / "upload.wav"
    path.write_bytes(wav_bytes(channels, rate, width, bytes(width * channels * 10)))
    with pytest.raises(WavFormatError, match=message):
        read_mono_8k(path)


def test_g711_wav_is_refused_by_its_format_tag(tmp_path: Path) -> None:
    # A mu-law WAV (format tag 7) as legacy phone systems write them.
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    data = b"\xff" * 16
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "mulaw.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(WavFormatError, match=r"mulaw\.wav: not a PCM WAV file"):
        read_mono_8k(path)


def test_not_a_wav_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(b"ID3\x04" + bytes(100))
    with pytest.raises(WavFormatError, match=r"song\.mp3: not a PCM WAV file"):
        read_wav(path)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(WavFormatError, match=r"empty\.wav: truncated or empty"):
        read_wav(empty)


def test_truncated_data_keeps_whole_frames(tmp_path: Path) -> None:
    data = wav_bytes(1, 8000, 2, array.array("h", [5, 6, 7]).tobytes())
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:-1])
    assert read_mono_8k(path) == array.array("h", [5, 6])


def test_write_refuses_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only mono or stereo"):
        write_wav(tmp_path / "x.wav", array.array("h", [0] * 6), channels=3)
    with pytest.raises(ValueError, match="not whole 2-channel 16-bit frames"):
        write_wav(tmp_path / "x.wav", array.array("h", [0] * 3), channels=2)


def test_interleave_pads_the_shorter_channel() -> None:
    left = array.array("h", [1, 2, 3])
    right = array.array("h", [9]).tobytes()
    assert interleave(left, right) == array.array("h", [1, 9, 2, 0, 3, 0])
    assert interleave(b"", left) == array.array("h", [0, 1, 0, 2, 0, 3])
    assert interleave(b"", b"") == array.array("h")


def test_deinterleave_inverts_interleave() -> None:
    left = array.array("h", range(0, 320))
    right = array.array("h", range(-320, 0))
    assert deinterleave(interleave(left, right)) == (left, right)
    with pytest.raises(ValueError, match="3 samples are not whole stereo frames"):
        deinterleave(array.array("h", [1, 2, 3]))

"""Recordings on the node: the per-channel timeline, the Opus encoding, the spool that
survives a killed node, and the uploader (stored, announced, retried)."""

from __future__ import annotations

import asyncio
import io
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from vpbx_common.events import CallEvent, CallEventType
from vpbx_common.storage import ObjectInfo, StorageError
from vpbx_common.storage.local import LocalObjectStore
from vpbx_media.media import tones
from vpbx_media.media.encode import encode_recording
from vpbx_media.media.g711 import Codec
from vpbx_media.media.recorder import (
    Channel,
    ChannelWriter,
    Recording,
    RecordingKind,
    RecordingMeta,
    channel_path,
)
from vpbx_media.node.recordings import RecordingService

FRAME = 160


def rtp(seq: int, timestamp: int, payload: bytes, *, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def tone_frames(frequency: float, count: int, codec: Codec = Codec.PCMU) -> list[bytes]:
    pcm = tones.sine(frequency, count * FRAME, -10.0)
    codes = codec.encode(pcm)
    return [codes[i * FRAME : (i + 1) * FRAME] for i in range(count)]


class Clock:
    """The time packets arrive at, as the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(
    channel: ChannelWriter,
    clock: Clock,
    frames: list[bytes],
    *,
    first_seq: int = 0,
    ssrc: int = 0x1234,
    pt: int = 0,
) -> None:
    """Feed ``frames`` as RTP packets arriving 20 ms apart, on time."""
    for index, frame in enumerate(frames):
        seq = first_seq + index
        channel.feed(rtp(seq, seq * FRAME, frame, ssrc=ssrc, pt=pt))
        clock.now += FRAME / 8000


def writer(tmp_path: Path, codec: Codec = Codec.PCMU) -> tuple[ChannelWriter, Path]:
    path = tmp_path / "channel.g711"
    clock = Clock()
    return ChannelWriter(path, codec, clock.now, clock), path


def test_packets_in_order_are_written_back_to_back(tmp_path: Path) -> None:
    channel, path = writer(tmp_path)
    frames = tone_frames(440, 5)
    for index, frame in enumerate(frames):
        channel.feed(rtp(index, 1000 + index * FRAME, frame))
    channel.close()
    assert path.read_bytes() == b"".join(frames)
    assert channel.length == 5 * FRAME


def test_a_lost_packet_becomes_silence_and_a_duplicate_is_dropped(tmp_path: Path) -> None:
    channel, path = writer(tmp_path)
    frames = tone_frames(440, 4)
    channel.feed(rtp(0, 0, frames[0]))
    channel.feed(rtp(2, 2 * FRAME, frames[2]))  # frame 1 lost
    channel.feed(rtp(2, 2 * FRAME, frames[2]))  # a duplicate
    channel.feed(rtp(3, 3 * FRAME, frames[3]))
    channel.close()
    silence = bytes((Codec.PCMU.silence,)) * FRAME
    assert path.read_bytes() == frames[0] + silence + frames[2] + frames[3]


def test_the_other_law_is_translated_and_events_are_left_out(tmp_path: Path) -> None:
    channel, path = writer(tmp_path, Codec.PCMU)
    alaw = tone_frames(1000, 1, Codec.PCMA)[0]
    channel.feed(rtp(0, 0, alaw, pt=8))
    channel.feed(rtp(1, FRAME, b"\x0b\x8a\x03\x20", pt=101))  # a telephone-event: not audio
    channel.close()
    written = path.read_bytes()
    assert len(written) == FRAME
    decoded = np.frombuffer(Codec.PCMU.decode(written).tobytes(), dtype=np.int16)
    original = np.frombuffer(Codec.PCMA.decode(alaw).tobytes(), dtype=np.int16)
    assert np.max(np.abs(decoded.astype(int) - original.astype(int))) < 600


def test_a_new_source_is_placed_by_its_arrival_time(tmp_path: Path) -> None:
    channel, path = writer(tmp_path)
    clock: Clock = channel._clock  # type: ignore[assignment]
    frames = tone_frames(440, 2)
    clock.now += 0.1  # the first packet comes 0.1 s into the call
    channel.feed(rtp(0, 50_000, frames[0], ssrc=1))
    clock.now += 0.25  # a re-INVITE: the new stream starts a quarter second later
    channel.feed(rtp(900, 7, frames[1], ssrc=2))
    channel.close()
    written = path.read_bytes()
    # Each lands where it arrived (0.1 s and 0.35 s in), not by its timestamp.
    assert written.index(frames[0]) == 800
    assert written.index(frames[1]) == 2800
    assert len(written) == written.index(frames[1]) + FRAME


def call_meta(tmp_path: Path, key: str = "recordings/acme/2026/12/07/c1.ogg") -> RecordingMeta:
    event = CallEvent(
        type=CallEventType.RECORDING_READY,
        call_id="c1",
        tenant="acme",
        city="msk",
        node="node-1",
        number="+74950000000",
        caller="+79160000000",
        callee="101",
        at_ms=1,
    )
    return RecordingMeta(
        kind=RecordingKind.CALL,
        tenant="acme",
        call_id="c1",
        key=key,
        started_ms=1,
        codec=Codec.PCMU,
        channels=(Channel.CALLER, Channel.ANSWERER),
        extra={"event": event.to_json()},
    )


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    return float(np.argmax(spectrum) * 8000 / len(samples))


def decode_ogg(data: bytes) -> tuple[np.ndarray, int]:
    """Samples (frames x channels) at 8 kHz and the channel count."""
    container = av.open(io.BytesIO(data), "r")
    stream = container.streams.audio[0]
    channels = stream.codec_context.channels
    resampler = av.AudioResampler(format="s16", layout=stream.layout.name, rate=8000)
    chunks: list[np.ndarray] = []
    for frame in container.decode(audio=0):
        chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    return np.concatenate(chunks, axis=1).reshape(-1, channels), channels


def test_a_call_encodes_to_stereo_opus_caller_left_answerer_right(tmp_path: Path) -> None:
    meta = call_meta(tmp_path)
    clock = Clock()
    recording = Recording(tmp_path / "rec", meta, clock)
    feed(recording.writer(Channel.CALLER), clock, tone_frames(440, 100))
    # The answering side spoke for the first second only.
    clock.now -= 2.0
    feed(recording.writer(Channel.ANSWERER), clock, tone_frames(1000, 50), ssrc=9)
    recording.close()
    encoded = encode_recording(
        recording.directory, RecordingMeta.load(recording.directory), tmp_path / "out.ogg"
    )
    assert encoded.duration_ms == 2000
    pcm, channels = decode_ogg(encoded.path.read_bytes())
    assert channels == 2
    assert abs(len(pcm) - 16000) < 400
    assert abs(dominant_hz(pcm[2000:6000, 0]) - 440) < 10
    assert abs(dominant_hz(pcm[2000:6000, 1]) - 1000) < 10
    assert np.abs(pcm[12000:15000, 1]).max() < 300  # the right channel went quiet: padded


class FlakyStore(LocalObjectStore):
    """A real local store whose first ``failures`` puts fail, as a store that is down."""

    def __init__(self, root: Path, failures: int = 0) -> None:
        super().__init__(root)
        self.failures = failures

    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        if self.failures:
            self.failures -= 1
            raise StorageError("store down")
        return await super().put_file(key, path, content_type)


async def test_a_finished_recording_is_stored_announced_and_removed(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    published: list[CallEvent] = []

    async def publish(event: CallEvent) -> None:
        published.append(event)

    service = RecordingService(tmp_path / "spool", store, publish)
    await service.start()
    try:
        clock = Clock()
        recording = service.begin(call_meta(tmp_path), clock)
        feed(recording.writer(Channel.CALLER), clock, tone_frames(440, 50))
        service.finish(recording)
        await asyncio.wait_for(service.wait_idle(), 10)
    finally:
        await service.stop()
    stored = tmp_path / "store" / "recordings/acme/2026/12/07/c1.ogg"
    assert stored.read_bytes()[:4] == b"OggS"
    assert [(e.type, e.call_id, e.key, e.duration_ms) for e in published] == [
        (CallEventType.RECORDING_READY, "c1", "recordings/acme/2026/12/07/c1.ogg", 1000)
    ]
    assert published[0].size_bytes == stored.stat().st_size
    assert not recording.directory.exists()


async def test_a_store_that_fails_is_tried_again(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "store", failures=1)
    published: list[CallEvent] = []

    async def publish(event: CallEvent) -> None:
        published.append(event)

    service = RecordingService(tmp_path / "spool", store, publish)
    await service.start()
    try:
        recording = service.begin(call_meta(tmp_path))
        recording.writer(Channel.CALLER).feed(rtp(0, 0, tone_frames(440, 1)[0]))
        service.finish(recording)
        await asyncio.wait_for(service.wait_idle(), 10)
    finally:
        await service.stop()
    assert store.failures == 0
    assert len(published) == 1


async def test_what_a_killed_node_flushed_is_stored_by_the_next_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = RecordingService(spool, None, _never)
    clock = Clock()
    recording = first.begin(call_meta(tmp_path), clock)
    caller = recording.writer(Channel.CALLER)
    feed(caller, clock, tone_frames(440, 100))  # two seconds flushed...
    recording.flush()
    feed(caller, clock, tone_frames(440, 50), first_seq=100)  # ...and a second not yet
    assert channel_path(recording.directory, Channel.CALLER).stat().st_size == 100 * FRAME
    # The node dies here: no finish(), no close().
    store = LocalObjectStore(tmp_path / "store")
    published: list[CallEvent] = []

    async def publish(event: CallEvent) -> None:
        published.append(event)

    second = RecordingService(spool, store, publish)
    await second.start()
    try:
        await asyncio.wait_for(second.wait_idle(), 10)
    finally:
        await second.stop()
    assert [e.duration_ms for e in published] == [2000]
    data = (tmp_path / "store" / "recordings/acme/2026/12/07/c1.ogg").read_bytes()
    pcm, _ = decode_ogg(data)
    assert abs(dominant_hz(pcm[2000:10000, 0]) - 440) < 10


async def _never(event: CallEvent) -> None:
    raise AssertionError(f"nothing is published without a store: {event}")


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
def test_a_voicemail_is_mono_and_cut_to_its_length(tmp_path: Path, codec: Codec) -> None:
    meta = RecordingMeta(
        kind=RecordingKind.VOICEMAIL,
        tenant="acme",
        call_id="vm1",
        key="voicemail/acme/101/2026/12/07/vm1.ogg",
        started_ms=1,
        codec=codec,
        channels=(Channel.CALLER,),
    )
    clock = Clock()
    recording = Recording(tmp_path / "vm", meta, clock)
    feed(
        recording.writer(Channel.CALLER), clock, tone_frames(700, 150, codec), pt=codec.payload_type
    )
    recording.close(length_samples=8000)
    encoded = encode_recording(
        recording.directory, RecordingMeta.load(recording.directory), tmp_path / "vm.ogg"
    )
    assert encoded.duration_ms == 1000
    pcm, channels = decode_ogg(encoded.path.read_bytes())
    assert channels == 1
    assert abs(dominant_hz(pcm[1000:7000, 0]) - 700) < 10


async def test_a_stopping_node_stores_what_has_ended_before_it_goes(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    published: list[CallEvent] = []

    async def publish(event: CallEvent) -> None:
        published.append(event)

    service = RecordingService(tmp_path / "spool", store, publish)
    await service.start()
    clock = Clock()
    recording = service.begin(call_meta(tmp_path), clock)
    feed(recording.writer(Channel.CALLER), clock, tone_frames(440, 50))
    service.finish(recording)
    await service.stop()  # a pod being removed: no next start here
    assert [event.type for event in published] == [CallEventType.RECORDING_READY]
    assert (await store.stat("recordings/acme/2026/12/07/c1.ogg")).size > 0

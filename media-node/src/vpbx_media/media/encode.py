"""A finished (or interrupted) recording's G.711 channels to Opus in Ogg, with PyAV.

Runs off the call path, in a worker thread: decoding, interleaving and encoding a
ten-minute stereo call takes a few hundred milliseconds of CPU. Channels of
different lengths (one side hung up, a node that died between two flushes) are
padded with silence to the longest; a voice message may be cut to
``length_samples`` (its trailing silence).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from .g711 import SAMPLE_RATE
from .recorder import RecordingMeta, channel_path

# Opus at 8 kHz: speech stays clear at these rates, and from 32 kb/s on a stereo stream
# codes its channels apart (at 24 kb/s one side bled into the other at -25 dB).
_BIT_RATE = {1: 16_000, 2: 32_000}


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    path: Path
    duration_ms: int
    size_bytes: int


def encode_recording(directory: Path, meta: RecordingMeta, target: Path) -> EncodedAudio:
    """Encode the recording in ``directory`` into ``target`` (.ogg)."""
    channels = []
    for name in meta.channels:
        path = channel_path(directory, name)
        codes = path.read_bytes() if path.exists() else b""
        channels.append(np.frombuffer(meta.codec.decode(codes).tobytes(), dtype=np.int16))
    samples = max((len(channel) for channel in channels), default=0)
    if meta.length_samples is not None:
        samples = min(samples, meta.length_samples)
    pcm = np.zeros((samples, len(channels)), dtype=np.int16)
    for index, channel in enumerate(channels):
        used = channel[:samples]
        pcm[: len(used), index] = used
    layout = "stereo" if len(channels) == 2 else "mono"
    with av.open(str(target), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=SAMPLE_RATE, layout=layout)
        stream.bit_rate = _BIT_RATE[len(channels)]
        if samples:
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = SAMPLE_RATE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return EncodedAudio(
        path=target,
        duration_ms=samples * 1000 // SAMPLE_RATE,
        size_bytes=target.stat().st_size,
    )

"""An object store for tests (the local-directory backend in a temporary directory) and
real Ogg/Opus audio made with PyAV, as the media nodes' recorder writes it."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from vpbx_common.storage.local import LocalObjectStore


@pytest.fixture
def object_store(tmp_path: Path) -> LocalObjectStore:
    """The local-directory backend, as `vpbx up` gives the control API."""
    return LocalObjectStore(tmp_path / "objects")


def opus_ogg(frequencies: tuple[float, ...], seconds: float = 2.0, rate: int = 8000) -> bytes:
    """An Ogg/Opus file of one sine per channel (one channel: mono, two: stereo, left first),
    encoded with libopus from ``rate`` Hz 16-bit PCM, as the nodes' recorder does."""
    channels = len(frequencies)
    layout = "mono" if channels == 1 else "stereo"
    t = np.arange(int(seconds * rate)) / rate
    signal = np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in frequencies])
    pcm = (signal * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout=layout)
        frame_samples = rate // 50  # 20 ms, as RTP carries it
        for offset in range(0, pcm.shape[1], frame_samples):
            chunk = pcm[:, offset : offset + frame_samples]
            # s16 is packed: one plane of interleaved samples.
            packed = np.ascontiguousarray(chunk.T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = offset
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(spectrum.argmax())])

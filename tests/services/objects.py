"""An object store for tests (the vpbx_common.storage.ObjectStore Protocol over a directory)
and real Ogg/Opus audio made with PyAV, as the media nodes' recorder writes it.

The platform's own backends (local directory, S3) are tested where they live; the control
API's tests only need something that keeps the Protocol's promises.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from vpbx_common.storage import ObjectInfo, ObjectNotFoundError


class DirectoryObjectStore:
    """Objects as files under ``root``; the key is the relative path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key outside the store: {key!r}")
        return path

    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        return await self.put_bytes(key, await asyncio.to_thread(path.read_bytes), content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return ObjectInfo(key=key, size=len(data), content_type=content_type)

    async def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(key)
        return ObjectInfo(key=key, size=path.stat().st_size, content_type="audio/ogg")

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(key)
        data = path.read_bytes()
        return data[start:end]

    async def stream(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        data = await self.read(key, start, end)
        for offset in range(0, len(data), chunk_size):
            await asyncio.sleep(0)
            yield data[offset : offset + chunk_size]

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def close(self) -> None:
        return None


@pytest.fixture
def object_store(tmp_path: Path) -> DirectoryObjectStore:
    return DirectoryObjectStore(tmp_path / "objects")


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

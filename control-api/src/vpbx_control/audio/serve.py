"""Answer a GET for one stored audio object: Ogg/Opus with HTTP Range, or 8 kHz 16-bit WAV.

Ogg is streamed from the store in chunks (never read whole). WAV is decoded with PyAV
from the Ogg/Opus (copied to a temporary file first: the demuxer wants a seekable file),
resampled to 8000 Hz s16 interleaved, channels kept (stereo for calls, mono for voice
messages), written to a temporary WAV file and served from it with the same Range
handling: its length is known only once decoded. Decodes run in worker threads, at most
``MAX_DECODES`` at once per process.

Range (RFC 9110 section 14): one range, ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n``, is
answered 206 with Content-Range; one that starts beyond the end (or ``bytes=-0``) is 416
with ``Content-Range: bytes */size``. Several ranges, other units or unreadable values
are ignored (200 with everything), as the RFC allows; so is a Range with If-Range, since
the store keeps no validator to compare it with.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import tempfile
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

import av
import av.error
from starlette.responses import Response, StreamingResponse

from vpbx_common.storage import (
    RECORDING_CONTENT_TYPE,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
)

from ..errors import ApiError, error_responses
from .errors import (
    AudioNotDecodable,
    AudioTooLongForWav,
    ObjectStoreUnavailable,
    RangeNotSatisfiable,
)

logger = logging.getLogger(__name__)

WAV_RATE = 8000
WAV_CONTENT_TYPE = "audio/wav"
CHUNK = 64 * 1024
MAX_DECODES = 2
# Stored audio above this is not decoded to WAV (about 4.5 hours of a stereo call at the
# nodes' 32 kbit/s; its WAV would pass 500 MB). The Ogg is always served.
MAX_WAV_SOURCE_BYTES = 64 * 1024 * 1024

_RANGE = re.compile(r"(\d*)-(\d*)")


class AudioFormat(enum.StrEnum):
    OGG = "ogg"
    WAV = "wav"


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # exclusive

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range ``header`` asks for; None to send everything (no Range, or one
    this server ignores). Raises RangeNotSatisfiable."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.fullmatch(spec.strip())
    if match is None or match.group(0) == "-":
        return None
    first, last = match.groups()
    if not first:  # a suffix: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - length), size)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, min(size, int(last) + 1) if last else size)


# OpenAPI description of an audio GET's answers.
AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            RECORDING_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
            WAV_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "the whole audio: Ogg/Opus as stored, or WAV with `format=wav`",
    },
    206: {
        "content": {
            RECORDING_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
            WAV_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "the byte range asked for with `Range` (Content-Range says which)",
    },
    **error_responses(404, 416, 503),
}


class AudioFiles:
    """Serves objects of one store; ``decodes`` bounds concurrent WAV decodes."""

    def __init__(self, store: ObjectStore, decodes: asyncio.Semaphore) -> None:
        self.store = store
        self.decodes = decodes

    async def respond(
        self,
        key: str,
        *,
        audio_format: AudioFormat,
        range_header: str | None,
        if_range: str | None,
        filename: str,
        missing: Callable[[], ApiError],
    ) -> Response:
        """The answer for ``key``; ``missing()`` is raised when the store has no such object."""
        try:
            info = await self.store.stat(key)
        except ObjectNotFoundError as exc:
            raise missing() from exc
        except StorageError as exc:
            logger.warning("object store: stat %s failed: %s", key, exc)
            raise ObjectStoreUnavailable() from exc
        if if_range is not None:
            range_header = None
        if audio_format is AudioFormat.WAV:
            if info.size > MAX_WAV_SOURCE_BYTES:
                raise AudioTooLongForWav(MAX_WAV_SOURCE_BYTES)
            return await self._wav(key, range_header, f"{filename}.wav", missing)
        chosen = parse_range(range_header, info.size)
        start, end = (0, info.size) if chosen is None else (chosen.start, chosen.end)
        headers = _headers(f"{filename}.ogg", end - start)
        if chosen is not None:
            headers["Content-Range"] = chosen.content_range(info.size)
        return StreamingResponse(
            self._stream(key, start, end),
            status_code=200 if chosen is None else 206,
            media_type=RECORDING_CONTENT_TYPE,
            headers=headers,
        )

    async def _stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        if start >= end:
            return  # an empty object: nothing to read
        try:
            async for chunk in self.store.stream(key, start, end, CHUNK):
                yield chunk
        except StorageError:
            # The status line is sent already: all that is left is to cut the body short,
            # which the client sees against Content-Length.
            logger.exception("object store: reading %s failed mid-response", key)
            raise

    async def _wav(
        self, key: str, range_header: str | None, filename: str, missing: Callable[[], ApiError]
    ) -> Response:
        async with self.decodes:
            with tempfile.NamedTemporaryFile(prefix="vpbx-audio-", suffix=".ogg") as source:
                try:
                    async for chunk in self.store.stream(key, 0, None, CHUNK):
                        await asyncio.to_thread(source.write, chunk)
                except ObjectNotFoundError as exc:  # deleted since the stat
                    raise missing() from exc
                except StorageError as exc:
                    logger.warning("object store: reading %s failed: %s", key, exc)
                    raise ObjectStoreUnavailable() from exc
                await asyncio.to_thread(source.flush)
                target = tempfile.TemporaryFile(prefix="vpbx-audio-", suffix=".wav")  # noqa: SIM115 - closed by the response's body iterator
                try:
                    await asyncio.to_thread(decode_to_wav, source.name, target)
                except BaseException:
                    target.close()
                    raise
        size = os.fstat(target.fileno()).st_size
        try:
            chosen = parse_range(range_header, size)
        except RangeNotSatisfiable:
            target.close()
            raise
        start, end = (0, size) if chosen is None else (chosen.start, chosen.end)
        headers = _headers(filename, end - start)
        if chosen is not None:
            headers["Content-Range"] = chosen.content_range(size)
        return StreamingResponse(
            _file_chunks(target, start, end),
            status_code=200 if chosen is None else 206,
            media_type=WAV_CONTENT_TYPE,
            headers=headers,
        )


def _headers(filename: str, length: int) -> dict[str, str]:
    return {
        "Accept-Ranges": "bytes",
        "Content-Length": str(length),
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename, safe='')}",
        "Cache-Control": "private, no-cache",
    }


async def _file_chunks(file: IO[bytes], start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) of an open temporary file, which is closed (and so removed) after."""
    try:
        position = start
        while position < end:
            chunk = await asyncio.to_thread(
                os.pread, file.fileno(), min(CHUNK, end - position), position
            )
            if not chunk:
                break
            position += len(chunk)
            yield chunk
    finally:
        file.close()


def decode_to_wav(source: str, target: IO[bytes], rate: int = WAV_RATE) -> None:
    """Decode the Ogg/Opus file ``source`` into ``target`` as a 16-bit PCM WAV at ``rate``,
    mono or stereo as the source is (more channels are mixed down to stereo).

    Raises AudioNotDecodable. Runs in a worker thread: CPU-bound.
    """
    try:
        with av.open(source) as container:
            if not container.streams.audio:
                raise AudioNotDecodable()
            stream = container.streams.audio[0]
            channels = 1 if (stream.codec_context.channels or 1) == 1 else 2
            resampler = av.AudioResampler(
                format="s16", layout="mono" if channels == 1 else "stereo", rate=rate
            )
            with wave.open(target, "wb") as out:
                out.setnchannels(channels)
                out.setsampwidth(2)
                out.setframerate(rate)
                for frame in container.decode(stream):
                    _write(out, resampler.resample(frame), channels)
                _write(out, resampler.resample(None), channels)
    except av.error.FFmpegError as exc:
        logger.warning("audio %s not decodable: %s", source, exc)
        raise AudioNotDecodable() from exc
    target.flush()


def _write(out: wave.Wave_write, frames: list[av.AudioFrame], channels: int) -> None:
    for frame in frames:
        # s16 is packed (interleaved) in one plane, whose buffer may be padded.
        out.writeframesraw(bytes(frame.planes[0])[: frame.samples * channels * 2])

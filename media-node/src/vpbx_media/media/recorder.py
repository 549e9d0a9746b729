"""Recording RTP audio to disk as it arrives, so that a killed node loses at most a second.

A recording is a spool directory holding ``meta.json`` and one raw G.711 file per
channel (caller on the left, the answering side on the right; a voice message has
the caller only). Each channel places every packet on one timeline of 8 kHz
samples that starts when the recording starts: the RTP timestamp gives the place
within a source, the arrival time places a new source (a new SSRC, a jump after
hold) and the first packet. Gaps (lost packets, silence suppression, hold) are
filled with digital silence, so both channels of a call stay aligned without
any mixing on the call path. Packets that are not G.711 (telephone events,
comfort noise) are left out; the other law is translated to the channel's.

The per-packet work is a few integer operations and one append to a bytearray;
``flush()`` (the node calls it about once a second for every recording) writes
what accumulated. The encoding to Opus happens after the call, off the call path
(``media/encode.py``).
"""

from __future__ import annotations

import enum
import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..rtp.packet import payload_bounds
from .g711 import SAMPLE_RATE, Codec, transcode

META_FILE = "meta.json"
_TIMESTAMP_SSRC = struct.Struct("!II")
# A timestamp that strays this far from the arrival time is a jump (hold, a new
# stream after a re-INVITE, a broken sender): the packet is placed by its arrival.
_MAX_DRIFT_SAMPLES = 2 * SAMPLE_RATE
# Never write more than this much silence at once (a clock gone wild).
_MAX_GAP_SAMPLES = 600 * SAMPLE_RATE


class RecordingKind(enum.StrEnum):
    CALL = "call"  # stereo: caller left, answering side right
    VOICEMAIL = "voicemail"  # mono: the caller


class Channel(enum.StrEnum):
    CALLER = "caller"
    ANSWERER = "answerer"


@dataclass(slots=True)
class RecordingMeta:
    """What the encoder and the uploader need to know; written when the recording starts
    and again when it ends (``complete``)."""

    kind: RecordingKind
    tenant: str
    call_id: str
    key: str  # where the encoded audio goes in the object store
    started_ms: int  # epoch ms of the first sample
    codec: Codec  # of every channel file
    channels: tuple[Channel, ...]
    complete: bool = False  # False: the node died while recording (encode what was flushed)
    length_samples: int | None = None  # keep only this much (a voice message's trailing silence)
    extra: dict[str, str] = field(default_factory=dict)  # voicemail: box, box_user_id, caller

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["codec"] = self.codec.value
        data["channels"] = [channel.value for channel in self.channels]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordingMeta:
        try:
            return cls(
                kind=RecordingKind(data["kind"]),
                tenant=str(data["tenant"]),
                call_id=str(data["call_id"]),
                key=str(data["key"]),
                started_ms=int(data["started_ms"]),
                codec=Codec.from_name(str(data["codec"])),
                channels=tuple(Channel(name) for name in data["channels"]),
                complete=bool(data.get("complete", False)),
                length_samples=(
                    None if data.get("length_samples") is None else int(data["length_samples"])
                ),
                extra={str(k): str(v) for k, v in dict(data.get("extra") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a recording's meta.json: {exc}") from exc

    def save(self, directory: Path) -> None:
        temporary = directory / f"{META_FILE}.tmp"
        temporary.write_text(json.dumps(self.to_json()))
        os.replace(temporary, directory / META_FILE)

    @classmethod
    def load(cls, directory: Path) -> RecordingMeta:
        return cls.from_json(json.loads((directory / META_FILE).read_text()))


def channel_path(directory: Path, channel: Channel) -> Path:
    return directory / f"{channel.value}.g711"


class ChannelWriter:
    """One direction of a call as G.711 on the recording's timeline (see the module doc)."""

    __slots__ = (
        "_anchor",
        "_base_position",
        "_base_timestamp",
        "_clock",
        "_codec",
        "_fd",
        "_pending",
        "_ssrc",
        "_translate",
        "length",
    )

    def __init__(
        self,
        path: Path,
        codec: Codec,
        anchor: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._codec = codec
        self._anchor = anchor  # the clock's time of sample 0
        self._clock = clock
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._pending = bytearray()
        self._ssrc = -1
        self._base_position = 0
        self._base_timestamp = 0
        # The law this channel is not in, as the payload type that needs translating.
        self._translate = Codec.PCMA.payload_type if codec is Codec.PCMU else 0
        self.length = 0  # samples placed so far (written or pending)

    def feed(self, packet: bytes) -> None:
        """Place one RTP packet (as received; anything malformed is ignored)."""
        header, end = payload_bounds(packet)
        self.place(packet, header, end)

    def place(self, packet: bytes, header: int, end: int) -> None:
        """``feed`` for a caller that found the payload's bounds already."""
        payload_type = packet[1] & 0x7F
        if end <= header or (
            payload_type != self._codec.payload_type and payload_type != self._translate
        ):
            return
        timestamp, ssrc = _TIMESTAMP_SSRC.unpack_from(packet, 4)
        arrival = round((self._clock() - self._anchor) * SAMPLE_RATE)
        position = self._base_position + ((timestamp - self._base_timestamp) & 0xFFFFFFFF)
        if ssrc != self._ssrc or abs(position - arrival) > _MAX_DRIFT_SAMPLES:
            self._ssrc = ssrc
            self._base_position = position = max(arrival, 0)
            self._base_timestamp = timestamp
        length = self.length
        size = end - header
        if position > length:
            gap = min(position - length, _MAX_GAP_SAMPLES)
            self._pending += bytes((self._codec.silence,)) * gap
            length += gap
            position = length
        skip = length - position  # already placed (a duplicate or an overlap)
        if skip >= size:
            return
        if payload_type == self._codec.payload_type:
            self._pending += memoryview(packet)[header + skip : end]
        else:
            source = Codec.from_payload_type(payload_type)
            self._pending += transcode(packet[header + skip : end], source, self._codec)
        self.length = length + size - skip

    def flush(self) -> None:
        if self._pending:
            os.write(self._fd, self._pending)
            self._pending.clear()

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


class Recording:
    """A recording in progress: its spool directory, meta and one writer per channel."""

    def __init__(
        self,
        directory: Path,
        meta: RecordingMeta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.meta = meta
        directory.mkdir(parents=True, exist_ok=True)
        meta.save(directory)
        anchor = clock()
        self.writers = {
            channel: ChannelWriter(channel_path(directory, channel), meta.codec, anchor, clock)
            for channel in meta.channels
        }
        self.closed = False

    def writer(self, channel: Channel) -> ChannelWriter:
        return self.writers[channel]

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def close(self, *, length_samples: int | None = None) -> None:
        """Write the rest and mark the recording complete (ready to encode)."""
        if self.closed:
            return
        self.closed = True
        for writer in self.writers.values():
            writer.close()
        self.meta.complete = True
        self.meta.length_samples = length_samples
        self.meta.save(self.directory)

"""One outgoing RTP stream the node generates itself (prompts, tones, music on hold).

The relay forwards the peers' packets untouched; audio the node plays needs its own
stream: a random SSRC, and sequence number and timestamp starting at random values
(RFC 3550 5.1) so that a stream cannot be predicted or mistaken for an earlier one.

The timestamp follows the sampling clock, not the packets: a frame time that passes
without a packet (silence, a paused source, a tick the scheduler had to drop) still
moves it on by 160, and the next packet carries the marker bit, the start of a new
talkspurt (RFC 3551 4.1), which tells the receiver's jitter buffer to resynchronise.
Switching to another source marks the next packet the same way.

`packet()` runs for every generated frame: it writes the changing header fields into
one reusable bytearray with `struct.pack_into`, copies the payload behind them and
returns the datagram as bytes: the one object the socket needs (besides the integers
Python makes for the new sequence number, timestamp and counters).
"""

from __future__ import annotations

import secrets
import struct

from ..rtp.packet import RTP_HEADER_SIZE, RTP_VERSION

_FIXED = struct.Struct("!BBHII")
# The octets after the first: marker and payload type, sequence number, timestamp.
_VARYING = struct.Struct("!BHI")
_MARKER = 0x80


class RtpStream:
    """Sequence number, timestamp and marker state of one outgoing stream.

    `sequence` and `timestamp` are those of the next packet. Integer counters `packets`
    and `octets` (payload octets) are what an RTCP sender report needs.
    """

    __slots__ = (
        "_buffer",
        "_mark",
        "octets",
        "packets",
        "payload_type",
        "samples_per_frame",
        "sequence",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        payload_type: int,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        samples_per_frame: int = 160,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} does not fit 7 bits")
        if samples_per_frame <= 0:
            raise ValueError(f"samples per frame {samples_per_frame} must be positive")
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        if not 0 <= self.ssrc <= 0xFFFFFFFF or not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise ValueError("SSRC and timestamp must fit 32 bits")
        if not 0 <= self.sequence <= 0xFFFF:
            raise ValueError(f"sequence number {self.sequence} does not fit 16 bits")
        self.samples_per_frame = samples_per_frame
        self._buffer = bytearray(RTP_HEADER_SIZE)
        _FIXED.pack_into(self._buffer, 0, RTP_VERSION << 6, payload_type, 0, 0, self.ssrc)
        # The first packet of a stream starts its first talkspurt.
        self._mark = True
        self.packets = 0
        self.octets = 0

    @property
    def marker_pending(self) -> bool:
        """Whether the next packet will carry the marker bit."""
        return self._mark

    def packet(self, payload: bytes | bytearray | memoryview) -> bytes:
        """The datagram for the next frame; sequence + 1, timestamp + one frame.

        `payload` may be any flat byte buffer (a mixer hands a view of its output row)."""
        buffer = self._buffer
        sequence = self.sequence
        timestamp = self.timestamp
        if self._mark:
            _VARYING.pack_into(buffer, 1, _MARKER | self.payload_type, sequence, timestamp)
            self._mark = False
        else:
            _VARYING.pack_into(buffer, 1, self.payload_type, sequence, timestamp)
        buffer[RTP_HEADER_SIZE:] = payload
        self.sequence = (sequence + 1) & 0xFFFF
        self.timestamp = (timestamp + self.samples_per_frame) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(payload)
        return bytes(buffer)

    def event_packet(
        self, payload: bytes, payload_type: int, timestamp: int, marker: bool
    ) -> bytes:
        """A packet outside the audio clock, e.g. an RFC 4733 telephone-event.

        Events keep their start timestamp in every packet of the event, so the caller
        chooses it; the sequence number goes on as for any packet of the stream.
        """
        buffer = self._buffer
        second = (_MARKER if marker else 0) | payload_type
        _VARYING.pack_into(buffer, 1, second, self.sequence, timestamp & 0xFFFFFFFF)
        buffer[RTP_HEADER_SIZE:] = payload
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return bytes(buffer)

    def skip(self, frames: int = 1) -> None:
        """Let `frames` frame times pass without packets; the next one starts a talkspurt."""
        self.timestamp = (self.timestamp + frames * self.samples_per_frame) & 0xFFFFFFFF
        self._mark = True

    def mark(self) -> None:
        """Start a new talkspurt with the next packet (the source changed)."""
        self._mark = True

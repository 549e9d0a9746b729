"""The conference mixer: three-way calls, conference rooms, listen/whisper/barge.

A `Conference` holds N `Party`s (two or more; nothing is quadratic in Python, only one
N x N matrix product). Every 20 ms the node's `PacedScheduler` ticks the conference as
one stream, and the tick sends each party the sum of everyone it may hear, itself left
out, clipped and encoded in that party's codec (PCMU or PCMA), as RTP of the party's
own outgoing stream (`RtpStream`: its own SSRC, sequence and timestamp). Mixing needs
a common clock, so every party's input is placed on the conference's.

Input (per packet; the relay calls `Party.on_rtp` for every RTP packet the party's
peer sends, or a socket callback calls `feed`): a short playout ring per party, one
row of G.711 codes per party in one array, indexed by the conference's sample clock.
A packet's place on it comes from its RTP timestamp, anchored when the party starts
talking: with nothing queued, a packet is played at the next tick (a stream that
starts, resumes after silence suppression, or arrives late after an underrun; the
underrun itself was a frame of silence, so the party's delay grows by a frame); a
packet one frame ahead waits for the one between (reordering, a loss). Queued audio
is bounded by the ring (`depth_frames` x 20 ms, 60 ms by default): a packet beyond it
drops the oldest queued frames (a late burst, a faster sender clock), and a party
whose queue stayed full for `drain_ticks` (2 s) loses one frame of delay. Reordered
packets within the ring fall into place, packets older than the frame due are
dropped (a few in a row restart the stream: its numbering started over), and a new
SSRC or a timestamp jump of a second or more (a new stream after a re-INVITE or a
transfer) is anchored anew right after what is queued. Packets of any length are
placed sample by sample (ptime 10, 20, 30 ms). Anything that is not PCMU or PCMA
(telephone-event, comfort noise) is not mixed. The per-packet work is a few integer
operations and one copy of the payload into the ring: no logging, no objects besides
the header's integers and the payload's slice.

Mixing (per tick, numpy, no per-sample Python): the frame due of every ring is taken
as one (N, 160) slice; one table lookup decodes each row by its party's law into
float32 (exact for sums of 16-bit samples); one product with the "who hears whom"
matrix makes every party's mix at once; clip, one more lookup encodes each row by
its party's law; each row goes out through the party's `RtpStream`. The matrix and
every buffer are rebuilt only when the conference changes (a party joins or leaves,
muting, listen-only, whisper), never per tick. Who hears whom:

- nobody hears themselves;
- nobody hears a `muted` party, nor a `listen_only` one (a supervisor listening in);
- a party whispering (`whisper_to` not empty: a supervisor coaching an agent) is heard
  by those parties only; everyone else is heard by everyone.

A frame with no input is silence. The decoding tables give the A-law codes nearest to
zero (+-8 of 32767, the idle pattern of a PCMA line) the value 0, so that a silent
conference sends digital silence rather than a sum of offsets.
"""

from __future__ import annotations

import enum
import functools
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..rtp.packet import payload_bounds
from .g711 import FRAME_SAMPLES, SAMPLE_RATE, Codec, transcode
from .rtpout import RtpStream
from .scheduler import PacedScheduler

logger = logging.getLogger(__name__)

# Queued input per party, in frames, by default: 60 ms counting the frame due next.
DEPTH_FRAMES = 3
# A party whose queue stayed full for this many ticks (2 s) loses one frame of delay.
DRAIN_TICKS = 100
# A timestamp this far from where the party's stream is now (1 s) is a new stream.
_MAX_JUMP = SAMPLE_RATE
# Packets dropped in a row as older than what plays before the next one starts over.
_STALE_LIMIT = 3
_SEQ_TIMESTAMP_SSRC = struct.Struct("!HII")
_PCMU = Codec.PCMU.payload_type
_PCMA = Codec.PCMA.payload_type
_CODECS = (Codec.PCMU, Codec.PCMA)  # a party's row of the codec tables
_ENCODE_SPAN = 0x10000

Send = Callable[[bytes], object]


@functools.cache
def _decode_table() -> npt.NDArray[np.float32]:
    """Codes of both laws to sample values: PCMU's 256 then PCMA's, A-law idle as 0."""
    values = [codec.decode_value(code) for codec in _CODECS for code in range(256)]
    table = np.array(values, dtype=np.float32)
    for code in (0xD5, 0x55):  # A-law's +-8: the idle pattern
        table[256 + code] = 0.0
    return table


@functools.cache
def _encode_table() -> npt.NDArray[np.uint8]:
    """Sample + 32768 (+ 65536 for PCMA) to code: one table for both laws."""
    samples = np.arange(-32768, 32768, dtype=np.int16).tobytes()
    return np.frombuffer(
        b"".join(codec.encode(samples) for codec in _CODECS), dtype=np.uint8
    ).copy()


class ConferenceState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PartyStats:
    """Counters of one party: `packets_in` audio packets taken; `ignored` packets not
    mixed (telephone-event, comfort noise, not in a conference); `late` dropped as older
    than what already played (or duplicates); `dropped_frames` queued frames given up to
    bound the delay; `resyncs` times the input was anchored anew; `send_errors` frames
    the send callable refused."""

    name: str
    codec: Codec
    packets_in: int
    ignored: int
    late: int
    dropped_frames: int
    resyncs: int
    frames_out: int
    send_errors: int
    queued_samples: int


@dataclass(frozen=True, slots=True)
class ConferenceStats:
    name: str
    state: ConferenceState
    parties: int
    ticks: int
    skipped_frames: int


class Party:
    """One member of a conference: an input ring fed with its RTP and an outgoing stream.

    `send` takes each datagram for the party's peer (in the node `MediaRelay.sender(leg)`,
    or any `DatagramTransport.sendto` bound to the peer's address). `rtp` defaults to a
    new random stream of the codec's payload type.
    """

    __slots__ = (
        "_conference",
        "_end",
        "_listen_only",
        "_low",
        "_muted",
        "_pos_base",
        "_ring",
        "_row",
        "_send",
        "_seq",
        "_silence",
        "_ssrc",
        "_stale",
        "_synced",
        "_ts_base",
        "_whisper_to",
        "codec",
        "dropped_frames",
        "ignored",
        "late",
        "name",
        "packets_in",
        "resyncs",
        "rtp",
        "send_errors",
    )

    def __init__(
        self,
        name: str,
        codec: Codec,
        send: Send,
        *,
        muted: bool = False,
        listen_only: bool = False,
        whisper_to: Iterable[Party] = (),
        rtp: RtpStream | None = None,
    ) -> None:
        if rtp is not None and rtp.payload_type != codec.payload_type:
            raise ValueError(
                f"party {name}: a {codec.value} party cannot send on a stream of payload "
                f"type {rtp.payload_type}"
            )
        self.name = name
        self.codec = codec
        self.rtp = rtp if rtp is not None else RtpStream(codec.payload_type)
        self._send = send
        self._muted = muted
        self._listen_only = listen_only
        self._whisper_to: frozenset[Party] = frozenset(whisper_to)
        self._conference: Conference | None = None
        self._silence = bytes((codec.silence,))
        # The ring: G.711 codes at conference sample s live at column s % len(ring).
        self._row: npt.NDArray[np.uint8] = np.zeros(0, dtype=np.uint8)
        self._ring = self._row.data
        # Anchor: RTP timestamp ts_base is conference sample pos_base. _end: the sample
        # after the newest one written; _seq, _ssrc: of the newest packet taken.
        self._synced = False
        self._ts_base = 0
        self._pos_base = 0
        self._end = 0
        self._seq = 0
        self._ssrc = -1
        self._stale = 0
        self._low = 0  # the least queued at a tick since the last drain check
        self.packets_in = 0
        self.ignored = 0
        self.late = 0
        self.dropped_frames = 0
        self.resyncs = 0
        self.send_errors = 0

    def __repr__(self) -> str:
        return f"Party({self.name!r}, {self.codec.value})"

    # -- who hears this party --------------------------------------------------------

    @property
    def muted(self) -> bool:
        """Nobody hears this party (it still hears the others)."""
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        self._muted = value
        self._changed()

    @property
    def listen_only(self) -> bool:
        """The party only listens (a supervisor listening in): nobody hears it."""
        return self._listen_only

    @listen_only.setter
    def listen_only(self, value: bool) -> None:
        self._listen_only = value
        self._changed()

    @property
    def whisper_to(self) -> frozenset[Party]:
        """When not empty, only these parties hear this one (whisper); empty: everyone."""
        return self._whisper_to

    @whisper_to.setter
    def whisper_to(self, parties: Iterable[Party]) -> None:
        self._whisper_to = frozenset(parties)
        self._changed()

    def hears(self, talker: Party) -> bool:
        """Whether this party hears `talker` (both in the same conference or not)."""
        if talker is self or talker._muted or talker._listen_only:
            return False
        return not talker._whisper_to or self in talker._whisper_to

    @property
    def conference(self) -> Conference | None:
        return self._conference

    def _changed(self) -> None:
        if self._conference is not None:
            self._conference._changed()

    # -- input (per packet) ----------------------------------------------------------

    def on_rtp(self, packet: bytes) -> None:
        """Take one RTP packet from the party's peer (`MediaRelay.serve` or `tap` callback);
        anything not PCMU or PCMA is ignored."""
        start, end = payload_bounds(packet)
        payload_type = packet[1] & 0x7F
        if end <= start or (payload_type != _PCMU and payload_type != _PCMA):
            self.ignored += 1
            return
        seq, timestamp, ssrc = _SEQ_TIMESTAMP_SSRC.unpack_from(packet, 2)
        if ssrc != self._ssrc:
            # Another sender (a transfer, a re-INVITE): its clock starts over.
            self._ssrc = ssrc
            self._synced = False
        if payload_type != self.codec.payload_type:
            source = Codec.from_payload_type(payload_type)
            self._place(
                transcode(bytes(packet[start:end]), source, self.codec),
                0,
                end - start,
                timestamp,
                seq,
            )
            return
        self._place(packet, start, end, timestamp, seq)

    def feed(self, payload: bytes | bytearray | memoryview, timestamp: int, seq: int) -> None:
        """Take one frame of audio in the party's codec, with its RTP timestamp and
        sequence number (for a caller that parsed the packet itself)."""
        self._place(payload, 0, len(payload), timestamp, seq)

    def _place(
        self, data: bytes | bytearray | memoryview, start: int, end: int, timestamp: int, seq: int
    ) -> None:
        conference = self._conference
        if conference is None:
            self.ignored += 1
            return
        ring = self._ring
        depth = len(ring)
        size = end - start
        if size <= 0:
            return
        if size > depth:  # a packet longer than the ring: its newest part
            start = end - depth
            timestamp += size - depth
            size = depth
        self.packets_in += 1
        play = conference._position
        newer = 0 < ((seq - self._seq) & 0xFFFF) < 0x8000
        offset = (timestamp - self._ts_base) & 0xFFFFFFFF
        if offset >= 0x80000000:
            offset -= 0x100000000
        at = self._pos_base + offset
        queued = self._end > play
        far = at - play >= _MAX_JUMP or play - at >= _MAX_JUMP
        if not self._synced or far or (not queued and (at < play or at > play + FRAME_SAMPLES)):
            # The party starts to talk (again) or its stream starts over: this packet
            # plays right after what is queued, at the next tick if nothing is. An old
            # packet (a duplicate, a straggler) does not restart it, unless old packets
            # keep coming.
            if self._synced and not newer and self._stale < _STALE_LIMIT:
                self._stale += 1
                self.late += 1
                return
            at = self._end if queued else play
            self._anchor(timestamp, at)
            newer = True
        elif at + size <= play:
            self._stale += 1
            self.late += 1
            return
        beyond = at + size - play - depth
        if beyond > 0:
            # Too much queued: the oldest frames go, the rest (and this) play earlier.
            frames = -(-beyond // FRAME_SAMPLES)
            self._shift(frames, play)
            at -= frames * FRAME_SAMPLES
        if at < play:
            cut = play - at  # its start is due before the frame the next tick sends
            start += cut
            size -= cut
            at = play
        column = at % depth
        tail = depth - column
        if size <= tail:
            ring[column : column + size] = data[start:end]
        else:
            ring[column:] = data[start : start + tail]
            ring[: size - tail] = data[start + tail : end]
        if at + size > self._end:
            self._end = at + size
        if newer:
            self._seq = seq
        self._stale = 0

    def _anchor(self, timestamp: int, position: int) -> None:
        self._synced = True
        self._ts_base = timestamp
        self._pos_base = position
        self.resyncs += 1

    def _shift(self, frames: int, play: int) -> None:
        """Drop the oldest `frames` queued frames: the rest plays that much earlier."""
        ring = self._ring
        depth = len(ring)
        column = play % depth
        queued = bytes(ring[column:]) + bytes(ring[:column])  # in playing order
        kept = queued[frames * FRAME_SAMPLES :]
        ordered = kept + self._silence * (depth - len(kept))
        ring[column:] = ordered[: depth - column]
        ring[:column] = ordered[depth - column :]
        queued_frames = -(-(self._end - play) // FRAME_SAMPLES)
        self.dropped_frames += max(min(frames, queued_frames), 0)
        moved = frames * FRAME_SAMPLES
        self._pos_base -= moved
        self._end = max(self._end - moved, play)

    def _attach(self, conference: Conference | None, row: npt.NDArray[np.uint8]) -> None:
        self._conference = conference
        self._row = row
        self._ring = row.data

    def stats(self) -> PartyStats:
        play = self._conference._position if self._conference is not None else self._end
        return PartyStats(
            name=self.name,
            codec=self.codec,
            packets_in=self.packets_in,
            ignored=self.ignored,
            late=self.late,
            dropped_frames=self.dropped_frames,
            resyncs=self.resyncs,
            frames_out=self.rtp.packets,
            send_errors=self.send_errors,
            queued_samples=max(self._end - play, 0),
        )


class _Layout:
    """Everything a tick needs, rebuilt when the conference changes."""

    __slots__ = (
        "decode_index",
        "decode_offset",
        "encode_offset",
        "encoded",
        "hearing",
        "idle",
        "mixed",
        "outputs",
        "parties",
        "rings",
        "samples",
        "whole",
    )

    def __init__(self, parties: tuple[Party, ...], depth: int) -> None:
        count = len(parties)
        self.parties = parties
        rings = np.empty((count, depth), dtype=np.uint8)
        for index, party in enumerate(parties):
            old = party._row
            rings[index] = old if len(old) == depth else party.codec.silence
        self.rings = rings
        law = np.array([_CODECS.index(party.codec) for party in parties], dtype=np.intp)
        self.decode_offset = (law * 256).reshape(count, 1)
        self.encode_offset = (law * _ENCODE_SPAN + 32768).astype(np.int32).reshape(count, 1)
        self.idle = np.array([party.codec.silence for party in parties], dtype=np.uint8).reshape(
            count, 1
        )
        self.hearing = np.array(
            [
                [1.0 if listener.hears(talker) else 0.0 for talker in parties]
                for listener in parties
            ],
            dtype=np.float32,
        ).reshape(count, count)
        self.decode_index = np.empty((count, FRAME_SAMPLES), dtype=np.intp)
        self.samples = np.empty((count, FRAME_SAMPLES), dtype=np.float32)
        self.mixed = np.empty((count, FRAME_SAMPLES), dtype=np.float32)
        self.whole = np.empty((count, FRAME_SAMPLES), dtype=np.int32)
        self.encoded = np.empty((count, FRAME_SAMPLES), dtype=np.uint8)
        outputs = []
        for index, party in enumerate(parties):
            outputs.append((party, self.encoded[index].data))
        self.outputs: tuple[tuple[Party, memoryview], ...] = tuple(outputs)


class Conference:
    """A conference room: `add()` parties, `start()` it on the node's scheduler.

    Parties may join and leave at any time, also during a tick (the change takes effect
    from the next one). `tick()` and `skip()` are the scheduler's; a test or a benchmark
    may call them itself instead of starting the conference.
    """

    def __init__(
        self,
        scheduler: PacedScheduler | None = None,
        *,
        name: str = "-",
        depth_frames: int = DEPTH_FRAMES,
        drain_ticks: int = DRAIN_TICKS,
    ) -> None:
        if depth_frames < 1:
            raise ValueError(f"depth_frames {depth_frames} must be at least 1")
        if drain_ticks < 1:
            raise ValueError(f"drain_ticks {drain_ticks} must be at least 1")
        self.name = name
        self._scheduler = scheduler
        self._depth = depth_frames * FRAME_SAMPLES
        self._drain_ticks = drain_ticks
        self._parties: dict[Party, None] = {}
        self._layout: _Layout | None = None
        self._state = ConferenceState.NEW
        # The conference's sample clock: the first sample of the frame the next tick sends.
        self._position = 0
        self._until_drain = drain_ticks
        self.removed_at: float | None = None  # the scheduler's
        self.ticks = 0
        self.skipped_frames = 0

    def __repr__(self) -> str:
        return f"Conference({self.name!r}, {len(self._parties)} parties)"

    @property
    def state(self) -> ConferenceState:
        return self._state

    def _set_state(self, state: ConferenceState) -> None:
        logger.info("conference %s %s -> %s", self.name, self._state.value, state.value)
        self._state = state

    @property
    def parties(self) -> tuple[Party, ...]:
        return tuple(self._parties)

    def __len__(self) -> int:
        return len(self._parties)

    def __contains__(self, party: object) -> bool:
        return party in self._parties

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Tick on the scheduler from now on (every 20 ms, one frame to every party)."""
        if self._state is not ConferenceState.NEW:
            raise RuntimeError(f"conference {self.name} is already {self._state.value}")
        if self._scheduler is None:
            raise RuntimeError(f"conference {self.name} has no scheduler to start on")
        self._set_state(ConferenceState.RUNNING)
        self._scheduler.add(self)

    def stop(self) -> None:
        """Stop sending; the parties stay members (their stats remain readable)."""
        if self._state is ConferenceState.STOPPED:
            return
        if self._scheduler is not None:
            self._scheduler.remove(self)
        self._set_state(ConferenceState.STOPPED)

    def add(self, party: Party) -> None:
        """A party joins: it hears and is heard from the next tick on."""
        if self._state is ConferenceState.STOPPED:
            raise RuntimeError(f"conference {self.name} is stopped")
        if party._conference is not None:
            raise ValueError(f"{party!r} is already in {party._conference!r}")
        party._attach(self, np.full(self._depth, party.codec.silence, dtype=np.uint8))
        party._synced = False
        party._end = 0  # nothing queued on this conference's clock
        party._low = 0
        self._parties[party] = None
        self._layout = None
        logger.info(
            "conference %s: %s joins (%s), %d parties",
            self.name,
            party.name,
            party.codec.value,
            len(self._parties),
        )

    def remove(self, party: Party) -> None:
        """A party leaves: the others stop hearing it (and it them) from the next tick."""
        if party not in self._parties:
            return
        del self._parties[party]
        party._attach(None, np.zeros(0, dtype=np.uint8))
        self._layout = None
        logger.info(
            "conference %s: %s leaves, %d parties", self.name, party.name, len(self._parties)
        )

    def _changed(self) -> None:
        self._layout = None

    def stats(self) -> ConferenceStats:
        return ConferenceStats(
            name=self.name,
            state=self._state,
            parties=len(self._parties),
            ticks=self.ticks,
            skipped_frames=self.skipped_frames,
        )

    # -- the scheduler's -------------------------------------------------------------

    def _build(self) -> _Layout:
        layout = _Layout(tuple(self._parties), self._depth)
        for index, party in enumerate(layout.parties):
            party._attach(self, layout.rings[index])
        self._layout = layout
        return layout

    def tick(self) -> int:
        """Send every party its frame of the mix; returns the number of packets sent."""
        layout = self._layout
        if layout is None:
            if not self._parties:
                self._advance(1)
                return 0
            layout = self._build()
        play = self._position
        column = play % self._depth
        due = layout.rings[:, column : column + FRAME_SAMPLES]
        # Decode by each row's law, mix by who hears whom, clip, encode by each row's law.
        np.add(due, layout.decode_offset, out=layout.decode_index)
        np.take(_decode_table(), layout.decode_index, out=layout.samples, mode="clip")
        np.matmul(layout.hearing, layout.samples, out=layout.mixed)
        np.clip(layout.mixed, -32768.0, 32767.0, out=layout.mixed)
        np.copyto(layout.whole, layout.mixed, casting="unsafe")
        layout.whole += layout.encode_offset
        np.take(_encode_table(), layout.whole, out=layout.encoded, mode="clip")
        due[...] = layout.idle  # played: the ring's slot is free for the next frames
        self._position = play + FRAME_SAMPLES
        self.ticks += 1
        sent = 0
        for party, payload in layout.outputs:
            queued = party._end - play
            if queued < party._low:
                party._low = queued
            try:
                party._send(party.rtp.packet(payload))
            except Exception:
                party.send_errors += 1
                if party.send_errors == 1:
                    logger.exception(
                        "conference %s: sending to %s failed (counting further failures)",
                        self.name,
                        party.name,
                    )
                continue
            sent += 1
        self._until_drain -= 1
        if self._until_drain <= 0:
            self._drain()
        return sent

    def _drain(self) -> None:
        """A party whose queue stayed full since the last check loses a frame of delay."""
        self._until_drain = self._drain_ticks
        play = self._position
        depth = self._depth
        for party in self._parties:
            if party._low >= depth:
                party._shift(1, play)
            party._low = depth

    def skip(self, frames: int) -> None:
        """Frame times that passed without ticks: queued input that was due is dropped,
        every party's stream clock moves on (its next packet starts a talkspurt)."""
        if frames <= 0:
            return
        self._advance(frames)
        self.skipped_frames += frames
        for party in self._parties:
            party.rtp.skip(frames)

    def _advance(self, frames: int) -> None:
        play = self._position
        cleared = min(frames, self._depth // FRAME_SAMPLES)
        for party in self._parties:
            ring = party._ring
            if len(ring) == self._depth:
                for frame in range(cleared):
                    column = (play + frame * FRAME_SAMPLES) % self._depth
                    ring[column : column + FRAME_SAMPLES] = party._silence * FRAME_SAMPLES
            party._low = 0  # a gap in the clock is no evidence of a full queue
        self._position = play + frames * FRAME_SAMPLES

"""The per-call RTP relay that anchors media in the node.

A call has two legs, A and B. Each leg owns two UDP sockets on the node's media address
(even RTP port, odd RTCP port) facing that leg's peer. What arrives on A's sockets leaves
through B's sockets towards B's peer, and the other way round, byte for byte.

Where a leg's peer really is (the latching rule)
------------------------------------------------
The SDP names an address, but a peer behind NAT sends from, and can only receive on,
the address its NAT picked. So the relay learns it from the packets (symmetric RTP,
"latching"); once latched, that source wins over the SDP. To keep strangers from taking
over a call (RTP injection), a packet from any other source only re-latches the leg if

1. nothing is latched yet: the window opens at `start()` and again whenever
   `set_remote()` brings a new SDP address (re-INVITE, transfer); or
2. it comes from exactly the address the peer's SDP announced; or
3. it is among the first `latch_window` packets since the window opened (a NAT that
   rebinds while the stream starts, early media from a different port); or
4. the latched source has sent nothing for `relatch_silence` seconds while this source
   kept sending: with a new SSRC a new sender took over without new SDP (transfer by
   an SBC), with the same SSRC the peer's NAT moved the stream. A stream that is still
   flowing is never replaced, so injected packets cannot take over a live call. (A leg
   whose peer is silent on purpose, e.g. recvonly on hold, can be taken over after that
   time; re-INVITEs reopening the window via `set_remote()` are the normal path.)

RTCP follows the same peer: it latches to the first RTCP source on the host of the RTP
source (or to the SDP RTCP address), since NATs often map the RTCP port unpredictably.
RTCP that a peer multiplexes onto the RTP port anyway (RFC 5761; the node's SDP never
offers it) is recognised by packet type and leaves through the other leg's RTCP port.

A leg's outgoing RTP is one stream, whoever the source is
--------------------------------------------------------
What leaves towards a leg's peer comes from several sources over a call: the other
leg's peer (relayed) and the node's own audio (ringback, music on hold, prompts, the
conference mixer, each an `RtpStream` with its own SSRC, sequence and timestamp, sent
through `sender()`). RFC 3550 lets the SSRC change, but some receivers (baresip 1.0,
several desk phones) keep their jitter buffer's sequence state across an SSRC change
and drop the new stream as "late" whenever its sequence numbers happen to be lower:
silence after a transfer, a queue, a hold. So the relay keeps one stream per outgoing
leg for the whole call: the SSRC of the leg's first source; after a change of source,
each packet's sequence number and timestamp are shifted by offsets fixed at the change
so that the sequence goes on at +1 and the timestamp at the wall-clock gap (8 kHz, the
clock of G.711 and of telephone-event), and that first packet carries the marker bit
(a talkspurt start: the receiver resynchronises its playout). Offsets, not counters,
so that the source's own losses, reordering and RFC 4733 event timestamps (one per
event) pass through intact. A source is an SSRC; a restart of the numbering under
the same SSRC (RFC 3550 A.1's jump) counts as a change too. Until a leg's source
first changes, its packets leave byte for byte (no copy: most calls never change).

RTCP then no longer matches once a leg's stream is rewritten: a relayed SR names the
source's SSRC and its RTP timestamps, and a relayed RR reports sequence numbers of a
stream the other phone never sent. So once either direction of a call is rewritten,
relayed RTCP is dropped (counted in `rtcp_dropped`) and the relay's own receiver
reports take over towards both peers, under the SSRC each peer hears in RTP. The relay
sends no SR of its own: a voice call has no lip sync to keep, and the phones' round-trip
estimate is all that goes (rewriting the peers' SRs and report blocks instead would take
per-report parsing and the offsets of both directions, for that one figure).

The per-packet path reads only the sequence number, timestamp and SSRC (RFC 3550 A.1
extended sequence numbers give the loss estimate), bumps integer counters and forwards:
no logging, no parsing, no allocation besides the datagram itself (and, once a leg's
source changed, the copy whose header is rewritten: bytes are immutable, and a buffer
reused across packets is not safe, since uvloop keeps a reference to a datagram the
socket could not take at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..sdp import MediaEndpoint
from .packet import (
    RTCP_HEADER_SIZE,
    RTCP_PT_MAX,
    RTCP_PT_MIN,
    RTP_HEADER_SIZE,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SdesItem,
    SdesItemType,
    SourceDescription,
)
from .ports import PortAllocator

logger = logging.getLogger(__name__)

_SEQ_SSRC = struct.Struct("!H4xI")
_SEQ_TS_SSRC = struct.Struct("!HII")
_MARKER = 0x80
# A change of source advances the timestamp by the wall-clock gap at this rate
# (G.711 and telephone-event), and by at least one 20 ms frame so that the first
# packet of the new source never overlaps the last one of the old.
_CLOCK_RATE = 8000
_MIN_GAP = 160
_monotonic = time.monotonic
_RTP_MIN_SIZE = RTP_HEADER_SIZE
_RTCP_MIN_SIZE = RTCP_HEADER_SIZE + 4  # header plus the sender's SSRC
_VERSION_MASK = 0xC0
_VERSION_2 = 0x80
_SEQ_MOD = 1 << 16
# RFC 3550 A.1: jumps up to MAX_DROPOUT ahead count as loss, up to MAX_MISORDER behind as
# reordering; anything else is a restarted sender and resynchronises after two packets.
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100
# Binding can fail when another process holds a port of our range; try a few pairs.
_BIND_ATTEMPTS = 16
_CLOSE_TIMEOUT = 1.0


def _discard(datagram: bytes) -> None:
    """The sink of a leg whose peer must not hear it (the other leg is served by the node)."""


class Leg(enum.Enum):
    A = "a"
    B = "b"

    @property
    def other(self) -> Leg:
        return Leg.B if self is Leg.A else Leg.A


class RelayState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class LegStats:
    """Counters of one leg: `_in` counts what its peer sent us, `_out` what we sent it."""

    rtp_port: int
    remote: tuple[str, int] | None
    latched: bool
    ssrc: int | None
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    rtcp_packets_in: int
    rtcp_packets_out: int
    rtcp_generated: int
    rejected: int
    malformed: int
    dropped: int
    expected: int
    received: int
    # The SSRC the peer hears from us, how often that stream changed source, and the
    # relayed RTCP held back from the peer since (see the module's docstring).
    out_ssrc: int | None = None
    source_changes: int = 0
    rtcp_dropped: int = 0

    @property
    def lost(self) -> int:
        """Packets the peer sent that never arrived (negative when duplicates arrived)."""
        return self.expected - self.received

    @property
    def loss_ratio(self) -> float:
        return max(self.lost, 0) / self.expected if self.expected else 0.0


@dataclass(frozen=True, slots=True)
class RelayStats:
    a: LegStats
    b: LegStats

    def leg(self, leg: Leg) -> LegStats:
        return self.a if leg is Leg.A else self.b


def _normalise_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError as exc:
        raise ValueError(f"remote media address {ip!r} is not an IP address") from exc


class _LegState:
    """Everything the relay knows about one leg. Plain attributes: read per packet."""

    __slots__ = (
        "anchor_time",
        "anchor_ts",
        "bad_seq",
        "base_seq",
        "bytes_in",
        "bytes_out",
        "cycles",
        "dropped",
        "foreign_mark",
        "foreign_since",
        "latch_window_end",
        "malformed",
        "max_seq",
        "name",
        "out_seq",
        "out_source",
        "out_ssrc",
        "out_ts",
        "packets_in",
        "packets_out",
        "paused",
        "prior_expected",
        "prior_received",
        "received",
        "rejected",
        "relatch_silence",
        "report_expected",
        "report_received",
        "rewriting",
        "rtcp_dropped",
        "rtcp_generated",
        "rtcp_packets_in",
        "rtcp_packets_out",
        "rtcp_source",
        "rtcp_target",
        "rtcp_transport",
        "rtp_port",
        "rtp_source",
        "rtp_target",
        "rtp_transport",
        "sdp_rtcp",
        "sdp_rtp",
        "seq_offset",
        "served",
        "sink",
        "source_changes",
        "ssrc",
        "tap",
        "ts_offset",
    )

    def __init__(self, name: Leg, relatch_silence: float) -> None:
        self.name = name
        self.relatch_silence = relatch_silence
        self.rtp_port = 0
        self.rtp_transport: asyncio.DatagramTransport | None = None
        self.rtcp_transport: asyncio.DatagramTransport | None = None
        self.sdp_rtp: tuple[str, int] | None = None
        self.sdp_rtcp: tuple[str, int] | None = None
        self.paused = False
        # While the node itself serves this leg (a prompt, an IVR, a queue), its RTP goes
        # to the sink instead of the other leg.
        self.sink: Callable[[bytes], None] | None = None
        # The node's own consumer of this leg's RTP (`serve()`); `sink` is derived from
        # both legs' `served`.
        self.served: Callable[[bytes], None] | None = None
        # Sees every RTP packet of this leg as well (a recording), wherever it goes next.
        self.tap: Callable[[bytes], None] | None = None
        # Latched sources are kept as the exact tuples the loop reports, so the per-packet
        # comparison is one tuple equality.
        self.rtp_source: tuple[Any, ...] | None = None
        self.rtcp_source: tuple[Any, ...] | None = None
        self.rtp_target: tuple[Any, ...] | None = None
        self.rtcp_target: tuple[Any, ...] | None = None
        self.latch_window_end = 0
        self.foreign_since: float | None = None
        self.foreign_mark = 0
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.rtcp_packets_in = 0
        self.rtcp_packets_out = 0
        self.rtcp_generated = 0
        self.rejected = 0
        self.malformed = 0
        self.dropped = 0
        # RFC 3550 A.1 receiver state of the current source; `prior_*` hold earlier sources.
        self.ssrc = -1
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.bad_seq = _SEQ_MOD + 1
        self.received = 0
        self.prior_expected = 0
        self.prior_received = 0
        self.report_expected = 0
        self.report_received = 0
        # The stream towards this leg's peer: the SSRC it hears (-1: nothing sent yet),
        # the SSRC of the source now feeding it (-1 forces a restart at the next packet),
        # the sequence number and timestamp of the last packet sent, when and at which
        # timestamp the current source started, and while `rewriting`, the offsets from
        # the source's numbering to the stream's.
        self.out_ssrc = -1
        self.out_source = -1
        self.out_seq = 0
        self.out_ts = 0
        self.anchor_time = 0.0
        self.anchor_ts = 0
        self.rewriting = False
        self.seq_offset = 0
        self.ts_offset = 0
        self.source_changes = 0
        self.rtcp_dropped = 0

    # -- the outgoing stream (slow path: a change of source) ----------------------------

    def restart(self, data: bytes, seq: int, timestamp: int, ssrc: int) -> bytes | bytearray:
        """The first packet of a new source on this leg's outgoing stream (slow path):
        fixes the offsets that continue the stream, and returns the packet rewritten."""
        now = _monotonic()
        self.out_source = ssrc
        if self.out_ssrc < 0:
            # The leg's first source names its stream for the whole call.
            self.out_ssrc = ssrc
            self.out_seq = seq
            self.out_ts = timestamp
            self.anchor_time = now
            self.anchor_ts = timestamp
            return data
        # When the last packet left: the time of the previous change plus what its
        # source's clock advanced since (a sender's timestamps follow its sampling clock,
        # silence included), so that no packet pays for reading the clock.
        advanced = (self.out_ts - self.anchor_ts) & 0xFFFFFFFF
        if advanced >= 0x80000000:
            advanced -= 0x100000000
        last = self.anchor_time + advanced / _CLOCK_RATE
        gap = max(round((now - last) * _CLOCK_RATE), _MIN_GAP)
        out_seq = (self.out_seq + 1) & 0xFFFF
        out_ts = (self.out_ts + gap) & 0xFFFFFFFF
        self.seq_offset = (out_seq - seq) & 0xFFFF
        self.ts_offset = (out_ts - timestamp) & 0xFFFFFFFF
        self.rewriting = True
        self.source_changes += 1
        self.out_seq = out_seq
        self.out_ts = out_ts
        self.anchor_time = now
        self.anchor_ts = out_ts
        out = bytearray(data)
        _SEQ_TS_SSRC.pack_into(out, 2, out_seq, out_ts, self.out_ssrc)
        out[1] |= _MARKER  # a talkspurt starts: the receiver resynchronises its playout
        return out

    def rewritten(self, data: bytes, seq: int, timestamp: int) -> bytearray:
        """A packet of the current source, renumbered into this leg's one stream (only
        once the source changed: the common case forwards the datagram untouched)."""
        seq = (seq + self.seq_offset) & 0xFFFF
        timestamp = (timestamp + self.ts_offset) & 0xFFFFFFFF
        out = bytearray(data)
        _SEQ_TS_SSRC.pack_into(out, 2, seq, timestamp, self.out_ssrc)
        self.out_seq = seq
        self.out_ts = timestamp
        return out

    def relays_rtcp(self, peer: _LegState) -> bool:
        """Whether RTCP between this leg's peer and `peer`'s still describes the streams
        they see (neither direction rewritten; see the module's docstring)."""
        return not (self.rewriting or peer.rewriting)

    # -- receiver statistics (slow paths called from the per-packet code) ------------

    def expected_current(self) -> int:
        if self.ssrc < 0:
            return 0
        return self.cycles + self.max_seq - self.base_seq + 1

    def start_source(self, ssrc: int, seq: int) -> None:
        self.prior_expected += self.expected_current()
        self.prior_received += self.received
        self.ssrc = ssrc
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self.bad_seq = _SEQ_MOD + 1
        self.received = 1
        self.report_expected = 0
        self.report_received = 0

    def sequence_jump(self, seq: int) -> None:
        if seq == self.bad_seq:
            # Two consecutive packets agree on the new numbering: the sender restarted.
            self.start_source(self.ssrc, seq)
        else:
            self.bad_seq = (seq + 1) & 0xFFFF

    # -- where the peer is -----------------------------------------------------------

    def update_targets(self) -> None:
        if self.paused:
            self.rtp_target = None
            self.rtcp_target = None
            return
        self.rtp_target = self.rtp_source if self.rtp_source is not None else self.sdp_rtp
        self.rtcp_target = self.rtcp_source if self.rtcp_source is not None else self.sdp_rtcp

    def latch_rtp(self, addr: tuple[Any, ...], reason: str, call_id: str) -> None:
        if self.rtcp_source is not None and self.rtcp_source[0] != addr[0]:
            # RTCP was latched for the previous host; let it follow the new one.
            self.rtcp_source = None
        self.rtp_source = addr
        self.foreign_since = None
        self.update_targets()
        logger.info(
            "call %s leg %s: RTP latched to %s:%s (%s)",
            call_id,
            self.name.value,
            addr[0],
            addr[1],
            reason,
        )

    def admit_rtp(self, addr: tuple[Any, ...], data: bytes, loop_time: float, call_id: str) -> bool:
        """Whether a well-formed packet from a source other than the latched one is taken."""
        if self.rtp_source is None:
            self.latch_rtp(addr, "first packet", call_id)
            return True
        sdp = self.sdp_rtp
        if sdp is not None and addr[0] == sdp[0] and addr[1] == sdp[1]:
            self.latch_rtp(addr, "SDP address", call_id)
            return True
        if self.packets_in < self.latch_window_end:
            self.latch_rtp(addr, "latch window", call_id)
            return True
        if self.foreign_since is None or self.foreign_mark != self.packets_in:
            # The latched source spoke since we last looked: (re)start the silence clock.
            self.foreign_since = loop_time
            self.foreign_mark = self.packets_in
        elif loop_time - self.foreign_since >= self.relatch_silence:
            _, ssrc = _SEQ_SSRC.unpack_from(data, 2)
            change = "same SSRC, NAT rebinding" if ssrc == self.ssrc else "new SSRC"
            self.latch_rtp(addr, f"{change} after the old source fell silent", call_id)
            return True
        if self.rejected == 0:
            logger.warning(
                "call %s leg %s: ignoring RTP from %s:%s while latched to %s:%s",
                call_id,
                self.name.value,
                addr[0],
                addr[1],
                self.rtp_source[0],
                self.rtp_source[1],
            )
        self.rejected += 1
        return False

    def admit_rtcp(self, addr: tuple[Any, ...], data: bytes, call_id: str) -> bool:
        if len(data) < _RTCP_MIN_SIZE or data[0] & _VERSION_MASK != _VERSION_2:
            self.malformed += 1
            return False
        sdp = self.sdp_rtcp
        from_sdp = sdp is not None and addr[0] == sdp[0] and addr[1] == sdp[1]
        rtp = self.rtp_source
        same_host = rtp is not None and addr[0] == rtp[0]
        if from_sdp or same_host or (rtp is None and self.rtcp_source is None):
            self.rtcp_source = addr
            self.update_targets()
            logger.info(
                "call %s leg %s: RTCP latched to %s:%s",
                call_id,
                self.name.value,
                addr[0],
                addr[1],
            )
            return True
        self.rejected += 1
        return False

    def snapshot(self) -> LegStats:
        target = self.rtp_target
        expected = self.prior_expected + self.expected_current()
        return LegStats(
            rtp_port=self.rtp_port,
            remote=(str(target[0]), int(target[1])) if target is not None else None,
            latched=self.rtp_source is not None,
            ssrc=self.ssrc if self.ssrc >= 0 else None,
            packets_in=self.packets_in,
            bytes_in=self.bytes_in,
            packets_out=self.packets_out,
            bytes_out=self.bytes_out,
            rtcp_packets_in=self.rtcp_packets_in,
            rtcp_packets_out=self.rtcp_packets_out,
            rtcp_generated=self.rtcp_generated,
            rejected=self.rejected,
            malformed=self.malformed,
            dropped=self.dropped,
            expected=expected,
            received=self.prior_received + self.received,
            out_ssrc=self.out_ssrc if self.out_ssrc >= 0 else None,
            source_changes=self.source_changes,
            rtcp_dropped=self.rtcp_dropped,
        )


class _LegProtocol(asyncio.DatagramProtocol):
    """One of a leg's sockets; `closed` resolves once the loop has really closed it."""

    __slots__ = ("_call_id", "_leg", "_loop", "_peer", "closed")

    def __init__(self, leg: _LegState, peer: _LegState, call_id: str) -> None:
        self._leg = leg
        self._peer = peer
        self._call_id = call_id
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for a peer that went away; the next latch or SDP fixes the target.
        logger.debug("call %s leg %s: socket error %s", self._call_id, self._leg.name.value, exc)


class _RtpProtocol(_LegProtocol):
    __slots__ = ()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        leg = self._leg
        if len(data) < _RTP_MIN_SIZE or data[0] & _VERSION_MASK != _VERSION_2:
            leg.malformed += 1
            return
        if addr != leg.rtp_source and not leg.admit_rtp(
            addr, data, self._loop.time(), self._call_id
        ):
            return
        peer = self._peer
        if RTCP_PT_MIN <= data[1] <= RTCP_PT_MAX:
            # RTCP multiplexed onto the RTP port (RFC 5761): hand it to the RTCP path.
            leg.rtcp_packets_in += 1
            if not leg.relays_rtcp(peer):
                peer.rtcp_dropped += 1
                return
            target = peer.rtcp_target
            transport = peer.rtcp_transport
            if target is None or transport is None:
                peer.dropped += 1
                return
            transport.sendto(data, target)
            peer.rtcp_packets_out += 1
            return
        size = len(data)
        leg.packets_in += 1
        leg.bytes_in += size
        seq, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        if ssrc != leg.ssrc:
            leg.start_source(ssrc, seq)
        else:
            delta = (seq - leg.max_seq) & 0xFFFF
            if delta < _MAX_DROPOUT:
                if seq < leg.max_seq:
                    leg.cycles += _SEQ_MOD
                leg.max_seq = seq
                leg.received += 1
            elif delta <= _SEQ_MOD - _MAX_MISORDER:
                leg.sequence_jump(seq)
                # The numbering jumped under the same SSRC (a restarted sender): the
                # other leg's stream must continue rather than jump with it.
                self._peer.out_source = -1
            else:
                leg.received += 1
        tap = leg.tap
        if tap is not None:
            tap(data)
        sink = leg.sink
        if sink is not None:
            sink(data)
            return
        target = peer.rtp_target
        transport = peer.rtp_transport
        if target is None or transport is None:
            peer.dropped += 1
            return
        if ssrc != peer.out_source:
            transport.sendto(peer.restart(data, seq, timestamp, ssrc), target)
        elif peer.rewriting:
            # Continues the leg's one stream (see the module's docstring).
            transport.sendto(peer.rewritten(data, seq, timestamp), target)
        else:
            # The common case, one source all along: forwarded as it came.
            transport.sendto(data, target)
            peer.out_seq = seq
            peer.out_ts = timestamp
        peer.packets_out += 1
        peer.bytes_out += size


class _RtcpProtocol(_LegProtocol):
    __slots__ = ()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        leg = self._leg
        if addr != leg.rtcp_source:
            if not leg.admit_rtcp(addr, data, self._call_id):
                return
        elif len(data) < _RTCP_MIN_SIZE:
            leg.malformed += 1
            return
        leg.rtcp_packets_in += 1
        peer = self._peer
        if not leg.relays_rtcp(peer):
            peer.rtcp_dropped += 1
            return
        target = peer.rtcp_target
        transport = peer.rtcp_transport
        if target is None or transport is None:
            peer.dropped += 1
            return
        transport.sendto(data, target)
        peer.rtcp_packets_out += 1


class MediaRelay:
    """Relays one call's RTP and RTCP between leg A's peer and leg B's peer.

    `address` is the node's media address the sockets bind to (and the address to put in
    SDP); ports come from the node-wide `ports` allocator and go back on `stop()`.
    With `rtcp_interval` set, the relay sends a receiver report every interval to a peer
    that sends RTP while the other peer sends no RTCP, so that peer still learns about
    loss; None turns that off.
    """

    def __init__(
        self,
        address: str,
        ports: PortAllocator,
        *,
        call_id: str = "-",
        latch_window: int = 10,
        relatch_silence: float = 1.0,
        rtcp_interval: float | None = 5.0,
    ) -> None:
        self.address = _normalise_ip(address)
        self.call_id = call_id
        self._ports = ports
        self._latch_window = latch_window
        self._rtcp_interval = rtcp_interval
        self._legs = {leg: _LegState(leg, relatch_silence) for leg in Leg}
        self._state = RelayState.NEW
        self._rtcp_task: asyncio.Task[None] | None = None
        self._report_ssrc = {leg: random.getrandbits(32) for leg in Leg}
        self._socket_closed: list[asyncio.Future[None]] = []

    @property
    def state(self) -> RelayState:
        return self._state

    def _set_state(self, state: RelayState) -> None:
        logger.info("call %s relay %s -> %s", self.call_id, self._state.value, state.value)
        self._state = state

    def local_endpoint(self, leg: Leg) -> MediaEndpoint:
        """Where `leg`'s peer must send media: put this in the SDP sent to that peer."""
        state = self._legs[leg]
        if self._state is not RelayState.RUNNING:
            raise RuntimeError(f"relay of call {self.call_id} is {self._state.value}")
        return MediaEndpoint(self.address, state.rtp_port, state.rtp_port + 1)

    async def start(self) -> None:
        if self._state is not RelayState.NEW:
            raise RuntimeError(f"relay of call {self.call_id} is already {self._state.value}")
        try:
            for leg in Leg:
                await self._bind(self._legs[leg], self._legs[leg.other])
        except BaseException:
            await self._close_sockets()
            raise
        for state in self._legs.values():
            state.latch_window_end = self._latch_window
        self._set_state(RelayState.RUNNING)
        if self._rtcp_interval is not None:
            self._rtcp_task = asyncio.get_running_loop().create_task(
                self._report_loop(self._rtcp_interval), name=f"rtcp-{self.call_id}"
            )

    async def _bind(self, state: _LegState, peer: _LegState) -> None:
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        # allocate() raises PortsExhaustedError itself when the range is used up.
        for _ in range(min(_BIND_ATTEMPTS, self._ports.capacity)):
            port = self._ports.allocate()
            rtp: asyncio.DatagramTransport | None = None
            try:
                rtp, rtp_protocol = await loop.create_datagram_endpoint(
                    lambda: _RtpProtocol(state, peer, self.call_id),
                    local_addr=(self.address, port),
                )
                self._socket_closed.append(rtp_protocol.closed)
                rtcp, rtcp_protocol = await loop.create_datagram_endpoint(
                    lambda: _RtcpProtocol(state, peer, self.call_id),
                    local_addr=(self.address, port + 1),
                )
                self._socket_closed.append(rtcp_protocol.closed)
            except OSError as exc:
                if rtp is not None:
                    rtp.close()
                    await self._wait_closed()
                self._ports.release(port)
                last_error = exc
                logger.debug("call %s: RTP port %d unusable: %s", self.call_id, port, exc)
                continue
            state.rtp_port = port
            state.rtp_transport = rtp
            state.rtcp_transport = rtcp
            return
        raise OSError(
            f"call {self.call_id}: no bindable RTP port pair on {self.address} "
            f"after {_BIND_ATTEMPTS} tries: {last_error}"
        ) from last_error

    def set_remote(self, leg: Leg, ip: str, rtp_port: int, rtcp_port: int | None = None) -> None:
        """Tell the relay where `leg`'s peer wants media, from that peer's SDP.

        A new address reopens the latch window (the peer may have moved or been
        replaced); the same address keeps the current latch. 0.0.0.0 (RFC 2543 hold)
        stops sending to the leg until an SDP with a real address arrives.
        """
        state = self._legs[leg]
        normalised = _normalise_ip(ip)
        if ipaddress.ip_address(normalised).is_unspecified:
            state.paused = True
            state.update_targets()
            logger.info("call %s leg %s: remote on hold (%s)", self.call_id, leg.value, ip)
            return
        if not 0 < rtp_port < 65_536:
            raise ValueError(f"remote RTP port {rtp_port} is not 1-65535")
        rtp = (normalised, rtp_port)
        rtcp = (normalised, rtcp_port if rtcp_port is not None else rtp_port + 1)
        if rtp != state.sdp_rtp:
            state.rtp_source = None
            state.rtcp_source = None
            state.latch_window_end = state.packets_in + self._latch_window
        state.sdp_rtp = rtp
        state.sdp_rtcp = rtcp
        state.paused = False
        state.update_targets()
        logger.info(
            "call %s leg %s: remote from SDP %s:%d rtcp %d",
            self.call_id,
            leg.value,
            normalised,
            rtp_port,
            rtcp[1],
        )

    def serve(self, leg: Leg, sink: Callable[[bytes], None] | None) -> None:
        """Let the node serve ``leg``: its RTP goes to ``sink`` (None: back to the other leg),
        and nothing of the other leg's reaches it meanwhile.

        Both legs may be served at once (each by its own sink: both sit in a conference);
        a leg handed back while the other is still served is heard by nobody until the
        other is handed back too."""
        state = self._legs[leg]
        other = self._legs[leg.other]
        state.served = sink
        for this, that in ((state, other), (other, state)):
            # What the node serves goes to the node; the rest is forwarded to the other
            # leg, unless the node serves that one (then it would hear two sources).
            served = this.served
            this.sink = (
                served if served is not None else (_discard if that.served is not None else None)
            )

    def tap(self, leg: Leg, listener: Callable[[bytes], None] | None) -> None:
        """Show every RTP packet ``leg``'s peer sends to ``listener`` too (None: stop)."""
        self._legs[leg].tap = listener

    def sender(self, leg: Leg) -> Callable[[bytes], None]:
        """Sends the node's own RTP to ``leg``'s peer, wherever it is latched at the time."""
        state = self._legs[leg]

        def send(datagram: bytes) -> None:
            target = state.rtp_target
            transport = state.rtp_transport
            if target is None or transport is None:
                state.dropped += 1
                return
            # Continues the leg's one outgoing stream (see the module's docstring).
            seq, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(datagram, 2)
            if ssrc != state.out_source:
                transport.sendto(state.restart(datagram, seq, timestamp, ssrc), target)
            elif state.rewriting:
                transport.sendto(state.rewritten(datagram, seq, timestamp), target)
            else:
                transport.sendto(datagram, target)
                state.out_seq = seq
                state.out_ts = timestamp
            state.packets_out += 1
            state.bytes_out += len(datagram)

        return send

    def stats(self) -> RelayStats:
        return RelayStats(a=self._legs[Leg.A].snapshot(), b=self._legs[Leg.B].snapshot())

    async def stop(self) -> None:
        if self._state is RelayState.STOPPED:
            return
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rtcp_task
            self._rtcp_task = None
        await self._close_sockets()
        if self._state is RelayState.RUNNING:
            stats = self.stats()
            logger.info(
                "call %s relay totals: A in %d out %d lost %d, B in %d out %d lost %d",
                self.call_id,
                stats.a.packets_in,
                stats.a.packets_out,
                stats.a.lost,
                stats.b.packets_in,
                stats.b.packets_out,
                stats.b.lost,
            )
        self._set_state(RelayState.STOPPED)

    async def _close_sockets(self) -> None:
        for state in self._legs.values():
            for transport in (state.rtp_transport, state.rtcp_transport):
                if transport is not None:
                    transport.close()
            state.rtp_transport = None
            state.rtcp_transport = None
        # A UDP transport closes on the loop's next turn; a port handed out again
        # before that would fail to bind.
        await self._wait_closed()
        for state in self._legs.values():
            if state.rtp_port:
                self._ports.release(state.rtp_port)
                state.rtp_port = 0

    async def _wait_closed(self) -> None:
        pending = [future for future in self._socket_closed if not future.done()]
        if pending:
            _, still_open = await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)
            if still_open:
                logger.warning(
                    "call %s: %d relay sockets did not close in %.1fs",
                    self.call_id,
                    len(still_open),
                    _CLOSE_TIMEOUT,
                )
        self._socket_closed = [future for future in self._socket_closed if not future.done()]

    # -- generated RTCP ------------------------------------------------------------------

    async def _report_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for leg in Leg:
                self._send_receiver_report(leg)

    def _send_receiver_report(self, leg: Leg) -> None:
        """An RR to `leg`'s peer about its stream, when nobody else tells it anything."""
        state = self._legs[leg]
        other = self._legs[leg.other]
        transport = state.rtcp_transport
        target = state.rtcp_target
        if (
            # The other peer's RTCP reaches this one as long as it is relayed.
            (other.rtcp_packets_in and state.relays_rtcp(other))
            or state.ssrc < 0
            or transport is None
            or target is None
            or state.received == state.report_received
        ):
            return
        expected = state.expected_current()
        expected_interval = expected - state.report_expected
        lost_interval = expected_interval - (state.received - state.report_received)
        state.report_expected = expected
        state.report_received = state.received
        fraction = (
            (lost_interval << 8) // expected_interval
            if expected_interval > 0 and lost_interval > 0
            else 0
        )
        cumulative = max(min(expected - state.received, 0x7FFFFF), -0x800000)
        # The reporter is who the peer hears in RTP, once it hears anyone.
        reporter = state.out_ssrc if state.out_ssrc >= 0 else self._report_ssrc[leg]
        report = RtcpPacket(
            (
                ReceiverReport(
                    ssrc=reporter,
                    reports=(
                        ReportBlock(
                            ssrc=state.ssrc,
                            fraction_lost=min(fraction, 255),
                            cumulative_lost=cumulative,
                            highest_sequence=(state.cycles + state.max_seq) & 0xFFFFFFFF,
                            # Jitter needs an arrival time per packet, which the
                            # per-packet path deliberately does not take.
                            jitter=0,
                        ),
                    ),
                ),
                SourceDescription(
                    (
                        SdesChunk(
                            reporter,
                            (SdesItem(SdesItemType.CNAME, f"vpbx@{self.address}".encode()),),
                        ),
                    )
                ),
            )
        )
        transport.sendto(bytes(report), target)
        state.rtcp_generated += 1

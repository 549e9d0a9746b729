"""The conference mixer: who hears whom (by the spectrum of what each party receives),
the input ring (reordering, late packets, bursts, drain), and a three-way call over two
real relays on loopback driven by the node's paced scheduler."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest

from vpbx_media.media.g711 import Codec
from vpbx_media.media.mixer import Conference, ConferenceState, Party
from vpbx_media.media.rtpout import RtpStream
from vpbx_media.media.scheduler import PacedScheduler
from vpbx_media.rtp.packet import RtpPacket
from vpbx_media.rtp.ports import PortAllocator
from vpbx_media.rtp.relay import Leg, MediaRelay

LOOPBACK = "127.0.0.1"
FRAME = 160
AMPLITUDE = 6000.0
# A band's share of the received energy: a tone heard has its share of the mix, a tone
# not heard nothing but G.711 noise and window leakage.
NOT_HEARD = 1e-3


def tone(hz: float, frames: int, codec: Codec, amplitude: float = AMPLITUDE) -> list[bytes]:
    """`frames` 20 ms payloads of a continuous sine."""
    n = np.arange(frames * FRAME)
    pcm = np.round(amplitude * np.sin(2 * np.pi * hz * n / 8000)).astype(np.int16)
    codes = codec.encode(pcm.tobytes())
    return [codes[i * FRAME : (i + 1) * FRAME] for i in range(frames)]


def constant_frames(count: int) -> list[bytes]:
    """PCMU frames each filled with its own code, codes that survive decode/mix/encode."""
    codes = [
        code
        for code in range(0x80, 0xFF)
        if Codec.PCMU.encode_value(Codec.PCMU.decode_value(code)) == code
    ]
    return [bytes([codes[i]]) * FRAME for i in range(count)]


@dataclass
class Line:
    """What a party's peer receives (a list sink standing in for the socket)."""

    datagrams: list[bytes] = field(default_factory=list)

    def send(self, datagram: bytes) -> None:
        self.datagrams.append(datagram)

    @property
    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(datagram) for datagram in self.datagrams]

    def payloads(self, skip: int = 0) -> list[bytes]:
        return [packet.payload for packet in self.packets[skip:]]


def pcm_of(packets: Sequence[RtpPacket]) -> npt.NDArray[np.float64]:
    codec = Codec.from_payload_type(packets[0].payload_type)
    assert {packet.payload_type for packet in packets} == {codec.payload_type}
    codes = b"".join(packet.payload for packet in packets)
    return np.frombuffer(codec.decode(codes).tobytes(), dtype=np.int16).astype(np.float64)


def band_shares(pcm: npt.NDArray[np.float64], frequencies: Sequence[float]) -> dict[float, float]:
    """Each frequency's share (+-15 Hz) of the signal's energy (Hann window)."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    bins = np.fft.rfftfreq(len(pcm), 1 / 8000)
    total = float(spectrum.sum())
    assert total > 0, "nothing but digital silence received"
    return {
        hz: float(spectrum[(bins > hz - 15) & (bins < hz + 15)].sum()) / total for hz in frequencies
    }


def assert_hears(
    packets: Sequence[RtpPacket], heard: Sequence[float], not_heard: Sequence[float]
) -> None:
    shares = band_shares(pcm_of(packets), [*heard, *not_heard])
    for hz in heard:
        assert shares[hz] > 0.5 / len(heard), f"{hz} Hz should be heard: {shares}"
    for hz in not_heard:
        assert shares[hz] < NOT_HEARD, f"{hz} Hz should not be heard: {shares}"


@dataclass
class Talker:
    """A phone sending a stream of frames to a party (RTP built like a phone's)."""

    party: Party
    frames: list[bytes]
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq0: int = field(default_factory=lambda: random.getrandbits(16))
    ts0: int = field(default_factory=lambda: random.getrandbits(32))
    payload_type: int | None = None

    def packet(
        self, index: int, payload: bytes | None = None, payload_type: int | None = None
    ) -> bytes:
        if payload_type is None:
            payload_type = self.payload_type
        return bytes(
            RtpPacket(
                self.party.codec.payload_type if payload_type is None else payload_type,
                (self.seq0 + index) & 0xFFFF,
                (self.ts0 + index * FRAME) & 0xFFFFFFFF,
                self.ssrc,
                self.frames[index] if payload is None else payload,
                marker=index == 0,
            )
        )

    def send(self, index: int) -> None:
        self.party.on_rtp(self.packet(index))


def run(conference: Conference, talkers: Sequence[Talker], ticks: range) -> None:
    """One packet from every talker, then one tick, per frame."""
    for index in ticks:
        for talker in talkers:
            talker.send(index)
        conference.tick()


def room(*members: tuple[str, Codec]) -> tuple[Conference, dict[str, Party], dict[str, Line]]:
    conference = Conference(name="test-room")
    parties: dict[str, Party] = {}
    lines: dict[str, Line] = {}
    for name, codec in members:
        lines[name] = Line()
        parties[name] = Party(name, codec, lines[name].send)
        conference.add(parties[name])
    return conference, parties, lines


TONES = {"alice": 400.0, "bob": 700.0, "carol": 1100.0}


def three_talking(
    carol_codec: Codec = Codec.PCMA,
) -> tuple[Conference, dict[str, Party], dict[str, Line], dict[str, Talker]]:
    conference, parties, lines = room(
        ("alice", Codec.PCMU), ("bob", Codec.PCMU), ("carol", carol_codec)
    )
    talkers = {
        name: Talker(parties[name], tone(TONES[name], 200, parties[name].codec)) for name in parties
    }
    return conference, parties, lines, talkers


# --- who hears whom -----------------------------------------------------------------------


def test_each_party_hears_the_other_two_and_not_itself_in_its_own_codec() -> None:
    conference, parties, lines, talkers = three_talking()
    run(conference, list(talkers.values()), range(60))
    for name, line in lines.items():
        packets = line.packets
        assert len(packets) == 60
        assert {p.payload_type for p in packets} == {parties[name].codec.payload_type}
        others = [hz for other, hz in TONES.items() if other != name]
        assert_hears(packets[10:], others, [TONES[name]])
    for party in parties.values():
        stats = party.stats()
        assert (stats.packets_in, stats.late, stats.dropped_frames, stats.resyncs) == (60, 0, 0, 1)


def test_all_pcma_and_all_pcmu_rooms_mix_the_same() -> None:
    for codec in (Codec.PCMU, Codec.PCMA):
        conference, parties, lines = room(("alice", codec), ("bob", codec), ("carol", codec))
        talkers = [Talker(parties[n], tone(TONES[n], 60, codec)) for n in parties]
        run(conference, talkers, range(60))
        for name, line in lines.items():
            others = [hz for other, hz in TONES.items() if other != name]
            assert_hears(line.packets[10:], others, [TONES[name]])


def test_a_party_sending_the_other_law_is_translated() -> None:
    conference, parties, lines, talkers = three_talking(carol_codec=Codec.PCMU)
    # Carol's phone switched to PCMA without telling anyone: still mixed, not garbage.
    talkers["carol"] = Talker(
        parties["carol"], tone(TONES["carol"], 60, Codec.PCMA), payload_type=Codec.PCMA.payload_type
    )
    run(conference, list(talkers.values()), range(60))
    assert_hears(lines["alice"].packets[10:], [700.0, 1100.0], [400.0])
    assert {p.payload_type for p in lines["carol"].packets} == {0}


def test_silence_when_nobody_talks() -> None:
    conference, parties, lines = room(
        ("alice", Codec.PCMU), ("bob", Codec.PCMA), ("carol", Codec.PCMU)
    )
    for _ in range(5):
        assert conference.tick() == 3
    # Phones sending digital silence change nothing either.
    talkers = [Talker(p, [p.codec.silence_frame()] * 5) for p in parties.values()]
    run(conference, talkers, range(5))
    for name, line in lines.items():
        codec = parties[name].codec
        assert line.payloads() == [codec.silence_frame()] * 10, name


def test_a_muted_party_is_heard_by_nobody_but_hears_everyone() -> None:
    conference, parties, lines, talkers = three_talking()
    parties["bob"].muted = True
    run(conference, list(talkers.values()), range(50))
    assert_hears(lines["alice"].packets[5:], [1100.0], [400.0, 700.0])
    assert_hears(lines["carol"].packets[5:], [400.0], [700.0, 1100.0])
    assert_hears(lines["bob"].packets[5:], [400.0, 1100.0], [700.0])
    parties["bob"].muted = False
    mark = len(lines["alice"].datagrams)
    run(conference, list(talkers.values()), range(50, 100))
    assert_hears(lines["alice"].packets[mark:], [700.0, 1100.0], [400.0])


def test_a_listen_only_party_hears_the_call_and_nobody_hears_it() -> None:
    conference, parties, lines, talkers = three_talking()
    parties["carol"].listen_only = True
    run(conference, list(talkers.values()), range(50))
    assert_hears(lines["alice"].packets[5:], [700.0], [400.0, 1100.0])
    assert_hears(lines["bob"].packets[5:], [400.0], [700.0, 1100.0])
    assert_hears(lines["carol"].packets[5:], [400.0, 700.0], [1100.0])


def test_a_whispering_supervisor_is_heard_by_the_agent_only() -> None:
    # alice: the customer, bob: the agent, carol: the supervisor coaching bob.
    conference, parties, lines, talkers = three_talking()
    parties["carol"].whisper_to = {parties["bob"]}
    assert parties["bob"].hears(parties["carol"])
    assert not parties["alice"].hears(parties["carol"])
    run(conference, list(talkers.values()), range(50))
    assert_hears(lines["alice"].packets[5:], [700.0], [400.0, 1100.0])
    assert_hears(lines["bob"].packets[5:], [400.0, 1100.0], [700.0])
    assert_hears(lines["carol"].packets[5:], [400.0, 700.0], [1100.0])
    # Barge: the supervisor speaks to both.
    parties["carol"].whisper_to = ()
    mark = len(lines["alice"].datagrams)
    run(conference, list(talkers.values()), range(50, 100))
    assert_hears(lines["alice"].packets[mark + 5 :], [700.0, 1100.0], [400.0])


def test_telephone_events_are_not_mixed() -> None:
    conference, parties, lines, talkers = three_talking()
    # Bob presses a key: RFC 4733 events (PT 101) instead of audio for 20 packets.
    event = bytes([5, 0x0A, 0x00, 0xA0])
    for index in range(20):
        for name in ("alice", "carol"):
            talkers[name].send(index)
        parties["bob"].on_rtp(talkers["bob"].packet(index, event, payload_type=101))
        conference.tick()
    assert_hears(lines["alice"].packets[5:], [1100.0], [400.0, 700.0])
    assert_hears(lines["carol"].packets[5:], [400.0], [700.0, 1100.0])
    assert parties["bob"].stats().ignored == 20
    assert parties["bob"].stats().packets_in == 0


def test_a_party_leaving_and_the_last_two_keep_hearing_each_other() -> None:
    conference, parties, lines, talkers = three_talking()
    run(conference, list(talkers.values()), range(20))
    conference.remove(parties["carol"])
    assert parties["carol"] not in conference
    assert parties["carol"].conference is None
    carol_had = len(lines["carol"].datagrams)
    mark = len(lines["alice"].datagrams)
    run(conference, list(talkers.values()), range(20, 70))
    assert len(lines["carol"].datagrams) == carol_had  # nothing more for the one who left
    assert parties["carol"].stats().ignored == 50  # her phone still sends: not mixed
    assert_hears(lines["alice"].packets[mark:], [700.0], [400.0, 1100.0])
    assert_hears(lines["bob"].packets[mark:], [400.0], [700.0, 1100.0])
    # The same outgoing streams go on: no new SSRC for those who stayed.
    assert len({p.ssrc for p in lines["alice"].packets}) == 1


def test_a_fourth_party_joins_a_running_conference() -> None:
    conference, _, lines, talkers = three_talking()
    run(conference, list(talkers.values()), range(20))
    dave_line = Line()
    dave = Party("dave", Codec.PCMA, dave_line.send)
    conference.add(dave)
    talkers["dave"] = Talker(dave, [b""] * 20 + tone(1700.0, 60, Codec.PCMA))
    everyone = {**TONES, "dave": 1700.0}
    mark = len(lines["alice"].datagrams)
    run(conference, list(talkers.values()), range(20, 80))
    assert len(dave_line.datagrams) == 60
    for name, line in {**lines, "dave": dave_line}.items():
        start = mark + 5 if name != "dave" else 5
        others = [hz for other, hz in everyone.items() if other != name]
        assert_hears(line.packets[start:], others, [everyone[name]])


def test_sixteen_parties_each_hear_the_fifteen_others() -> None:
    names = [f"p{i:02d}" for i in range(16)]
    frequencies = {name: 300.0 + 200.0 * i for i, name in enumerate(names)}
    codecs = {name: Codec.PCMA if i % 4 == 0 else Codec.PCMU for i, name in enumerate(names)}
    conference, parties, lines = room(*((name, codecs[name]) for name in names))
    talkers = [
        Talker(parties[n], tone(frequencies[n], 40, codecs[n], amplitude=2000.0)) for n in names
    ]
    run(conference, talkers, range(40))
    for name in names:
        others = [hz for other, hz in frequencies.items() if other != name]
        assert_hears(lines[name].packets[5:], others, [frequencies[name]])


# --- the input ring -----------------------------------------------------------------------


def one_listener() -> tuple[Conference, Party, Line, Talker]:
    """Alice talks frames each filled with its own code; Bob hears exactly those."""
    conference, parties, lines = room(("alice", Codec.PCMU), ("bob", Codec.PCMU))
    talker = Talker(parties["alice"], constant_frames(40))
    return conference, parties["alice"], lines["bob"], talker


def frame_numbers(line: Line, talker: Talker) -> list[int | None]:
    """Which of the talker's frames each received payload is (None: silence)."""
    index = {frame: number for number, frame in enumerate(talker.frames)}
    return [
        index.get(payload) if payload != Codec.PCMU.silence_frame() else None
        for payload in line.payloads()
    ]


def test_reordered_packets_play_in_order() -> None:
    conference, _, bob, talker = one_listener()
    talker.send(0)
    conference.tick()
    for first in range(1, 19, 2):
        talker.send(first + 1)  # the later one overtook the earlier
        talker.send(first)
        conference.tick()
        conference.tick()
    assert frame_numbers(bob, talker)[:19] == list(range(19))


def test_a_packet_later_than_its_frame_is_dropped() -> None:
    conference, alice, bob, talker = one_listener()
    talker.send(0)
    talker.send(1)
    conference.tick()  # 0
    talker.send(3)
    conference.tick()  # 1
    conference.tick()  # 2 has not come: silence
    talker.send(2)  # too late
    talker.send(1)  # a duplicate
    conference.tick()  # 3
    assert frame_numbers(bob, talker) == [0, 1, None, 3]
    assert alice.stats().late == 2


def test_missing_packets_are_silence_and_a_late_stream_adds_one_frame_of_delay() -> None:
    conference, alice, bob, talker = one_listener()
    talker.send(0)
    conference.tick()
    conference.tick()  # frame 1 is late: silence...
    for index in range(1, 6):  # ...and from now on every packet comes just after its tick
        talker.send(index)
        conference.tick()
    assert frame_numbers(bob, talker) == [0, None, 1, 2, 3, 4, 5]
    assert alice.stats().late == 0


def test_a_burst_keeps_at_most_three_frames_queued() -> None:
    conference, alice, bob, talker = one_listener()
    talker.send(0)
    for _ in range(6):
        conference.tick()
    for index in range(6, 16):  # the network held ten packets and lets them go at once
        talker.send(index)
        assert alice.stats().queued_samples <= 3 * FRAME
    for _ in range(4):
        conference.tick()
    assert frame_numbers(bob, talker) == [0, None, None, None, None, None, 13, 14, 15, None]
    assert alice.stats().dropped_frames == 7


def test_a_queue_that_stays_full_loses_a_frame_of_delay() -> None:
    conference = Conference(name="drain", drain_ticks=10)
    bob_line = Line()
    alice = Party("alice", Codec.PCMU, Line().send)
    conference.add(alice)
    conference.add(Party("bob", Codec.PCMU, bob_line.send))
    talker = Talker(alice, constant_frames(40))
    talker.send(0)
    talker.send(1)
    for index in range(2, 40):  # always two frames ahead: 60 ms queued at every tick
        talker.send(index)
        conference.tick()
    # The first check window started with the join; the second saw a full queue
    # throughout and gave up one frame; from then on 40 ms are queued at a tick.
    assert frame_numbers(bob_line, talker) == [n for n in range(39) if n != 20]
    assert alice.stats().dropped_frames == 1
    assert alice.stats().queued_samples == FRAME


def test_a_new_stream_or_a_timestamp_jump_plays_right_after_what_is_queued() -> None:
    conference, alice, bob, talker = one_listener()
    talker.send(0)
    talker.send(1)
    conference.tick()
    # A re-INVITE brought another sender: new SSRC, unrelated numbers. It is heard
    # right after the old sender's queued frame.
    other = Talker(alice, talker.frames, ts0=(talker.ts0 + 0x40000000) & 0xFFFFFFFF)
    other.send(5)
    conference.tick()
    # The same sender jumping its timestamps by a minute (a broken clock, hold).
    jumped = Talker(
        alice,
        talker.frames,
        ssrc=other.ssrc,
        seq0=other.seq0,
        ts0=(other.ts0 + 480_000) & 0xFFFFFFFF,
    )
    other.send(6)
    jumped.send(7)
    for _ in range(4):
        conference.tick()
    assert frame_numbers(bob, talker) == [0, 1, 5, 6, 7, None]
    assert alice.stats().resyncs == 3
    assert alice.stats().late == 0


def test_after_silence_a_talker_is_heard_at_the_next_tick() -> None:
    conference, alice, bob, talker = one_listener()
    talker.send(0)
    for _ in range(3):
        conference.tick()
    # Silence suppression: nothing for a while, then the stream resumes with timestamps
    # that ran on by a different amount than the node's clock did.
    talker.ts0 += 50 * FRAME
    talker.send(1)
    conference.tick()
    talker.ts0 -= 80 * FRAME
    talker.send(2)
    conference.tick()
    assert frame_numbers(bob, talker) == [0, None, None, 1, 2]
    assert alice.stats().late == 0


def test_10_and_30_ms_packets_are_mixed_without_gaps() -> None:
    conference, parties, lines = room(
        ("alice", Codec.PCMU), ("bob", Codec.PCMA), ("carol", Codec.PCMU)
    )
    streams = []
    for name, samples in (("alice", 240), ("bob", 80)):  # ptime 30 and 10
        codec = parties[name].codec
        audio = b"".join(tone(TONES[name], 60, codec))
        ts0 = random.getrandbits(32)
        packets = [
            (
                offset + samples,  # a phone sends a packet once its last sample is taken
                bytes(
                    RtpPacket(
                        codec.payload_type,
                        number,
                        (ts0 + offset) & 0xFFFFFFFF,
                        1000 * samples,  # SSRC
                        audio[offset : offset + samples],
                    )
                ),
            )
            for number, offset in enumerate(range(0, len(audio), samples))
        ]
        streams.append((parties[name], packets))
    for tick in range(58):
        now = (tick + 1) * FRAME  # what the phones have sent by this tick
        for party, packets in streams:
            while packets and packets[0][0] <= now:
                party.on_rtp(packets.pop(0)[1])
        conference.tick()
    assert_hears(lines["carol"].packets[3:], [400.0, 700.0], [1100.0])
    for name in ("alice", "bob"):
        assert parties[name].stats().late == 0
        assert parties[name].stats().dropped_frames == 0
        assert parties[name].stats().resyncs == 1
    # Carol hears one continuous signal: no frame of silence after the start.
    assert Codec.PCMU.silence_frame() not in lines["carol"].payloads(3)


def test_timestamps_wrap_around() -> None:
    conference, _, bob, talker = one_listener()
    talker.ts0 = 0xFFFFFFFF - 3 * FRAME
    talker.seq0 = 0xFFFE
    run(conference, [talker], range(10))
    assert frame_numbers(bob, talker) == list(range(10))


def test_feed_takes_bare_payloads() -> None:
    conference, alice, bob, talker = one_listener()
    for index in range(5):
        alice.feed(memoryview(talker.frames[index]), 1000 + index * FRAME, index)
        conference.tick()
    assert frame_numbers(bob, talker) == list(range(5))


# --- outgoing streams, clock, errors ------------------------------------------------------


def test_every_party_gets_its_own_continuous_rtp_stream() -> None:
    conference, parties, lines = room(("alice", Codec.PCMU), ("bob", Codec.PCMA))
    for _ in range(3):
        conference.tick()
    conference.skip(2)  # the scheduler dropped two ticks
    conference.tick()
    for name, line in lines.items():
        packets = line.packets
        assert {p.ssrc for p in packets} == {parties[name].rtp.ssrc}
        assert [p.marker for p in packets] == [True, False, False, True]
        seqs = [p.sequence_number for p in packets]
        assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3]
        stamps = [(p.timestamp - packets[0].timestamp) & 0xFFFFFFFF for p in packets]
        assert stamps == [0, 160, 320, 800]
    assert lines["alice"].packets[0].ssrc != lines["bob"].packets[0].ssrc
    assert conference.stats().skipped_frames == 2


def test_a_failing_send_is_counted_and_the_others_still_get_their_mix() -> None:
    conference, parties, lines, talkers = three_talking()

    def broken(datagram: bytes) -> None:
        raise OSError("no route")

    parties["bob"]._send = broken
    run(conference, list(talkers.values()), range(20))
    assert parties["bob"].stats().send_errors == 20
    assert_hears(lines["alice"].packets[5:], [700.0, 1100.0], [400.0])


def test_party_and_conference_refuse_what_cannot_work() -> None:
    conference, parties, _ = room(("alice", Codec.PCMU))
    with pytest.raises(ValueError, match="already in"):
        Conference().add(parties["alice"])
    with pytest.raises(ValueError, match="cannot send on a stream of payload type 0"):
        Party("x", Codec.PCMA, Line().send, rtp=RtpStream(0))
    with pytest.raises(RuntimeError, match="no scheduler"):
        conference.start()
    with pytest.raises(ValueError, match="depth_frames"):
        Conference(depth_frames=0)
    conference.stop()
    assert conference.state is ConferenceState.STOPPED
    with pytest.raises(RuntimeError, match="stopped"):
        conference.add(Party("y", Codec.PCMU, Line().send))


# --- real sockets: two calls' legs in one conference, on the node's scheduler -------------


@dataclass
class Phone(asyncio.DatagramProtocol):
    received: list[bytes] = field(default_factory=list)
    sources: set[tuple[Any, ...]] = field(default_factory=set)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.append(data)
        self.sources.add(addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port


async def open_phone() -> Phone:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        Phone, local_addr=(LOOPBACK, 0)
    )
    return protocol


def free_ports() -> PortAllocator:
    base = random.randrange(30_000, 60_000, 2)
    return PortAllocator(base, base + 63)


@pytest.fixture
async def relays() -> AsyncIterator[tuple[MediaRelay, MediaRelay]]:
    ports = free_ports()
    first = MediaRelay(LOOPBACK, ports, call_id="call-1", rtcp_interval=None)
    second = MediaRelay(LOOPBACK, ports, call_id="call-2", rtcp_interval=None)
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


async def talk(
    phones: Sequence[tuple[Phone, int, Talker]], frames: int, between: Callable[[int], None]
) -> None:
    """Every phone sends one packet per 20 ms on the loop's clock, like a phone."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(frames):
        delay = start + index * 0.020 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        between(index)
        for phone, port, talker in phones:
            assert phone.transport is not None
            phone.transport.sendto(talker.packet(index), (LOOPBACK, port))


def received_packets(phone: Phone) -> list[RtpPacket]:
    packets = [RtpPacket.parse(data) for data in phone.received]
    first = packets[0].sequence_number
    return sorted(packets, key=lambda p: (p.sequence_number - first) & 0xFFFF)


async def test_three_way_call_over_two_relays_on_the_paced_scheduler(
    relays: tuple[MediaRelay, MediaRelay],
) -> None:
    """Call 1 (Alice -> Bob) and Bob's consultation call 2 (Carol on leg A, PCMA) merged:
    the node serves the three legs; each phone hears the two others and not itself."""
    call1, call2 = relays
    scheduler = PacedScheduler()
    scheduler.start()
    conference = Conference(scheduler, name="call-1")
    legs = {
        "alice": (call1, Leg.A, Codec.PCMU),
        "bob": (call1, Leg.B, Codec.PCMU),
        "carol": (call2, Leg.A, Codec.PCMA),
    }
    phones = {name: await open_phone() for name in legs}
    parties: dict[str, Party] = {}
    senders = []
    try:
        for name, (relay, leg, codec) in legs.items():
            relay.set_remote(leg, LOOPBACK, phones[name].port)
            party = Party(f"{relay.call_id}/{leg.value}", codec, relay.sender(leg))
            conference.add(party)
            relay.serve(leg, party.on_rtp)
            parties[name] = party
            senders.append(
                (
                    phones[name],
                    relay.local_endpoint(leg).rtp_port,
                    Talker(party, tone(TONES[name], 60, codec)),
                )
            )
        conference.start()
        assert conference.state is ConferenceState.RUNNING
        await talk(senders, 60, lambda index: None)
        await asyncio.sleep(0.1)
    finally:
        conference.stop()
        scheduler.stop()
        for phone in phones.values():
            assert phone.transport is not None
            phone.transport.close()
    assert conference not in scheduler
    for name, phone in phones.items():
        relay, leg, codec = legs[name]
        packets = received_packets(phone)
        assert len(packets) >= 40, f"{name} got {len(packets)} packets"
        # Only the mixer's stream, from the node's port for that leg: the relay forwarded
        # nothing of the other leg's peer.
        assert {p.ssrc for p in packets} == {parties[name].rtp.ssrc}
        assert {addr[1] for addr in phone.sources} == {relay.local_endpoint(leg).rtp_port}
        others = [hz for other, hz in TONES.items() if other != name]
        assert_hears(packets[10:], others, [TONES[name]])
        stats = parties[name].stats()
        assert stats.packets_in == 60
        assert stats.send_errors == 0


async def test_legs_handed_back_from_a_conference_are_bridged_again(
    relays: tuple[MediaRelay, MediaRelay],
) -> None:
    call, _ = relays
    alice, bob = await open_phone(), await open_phone()
    conference = Conference(name="call-1")
    try:
        call.set_remote(Leg.A, LOOPBACK, alice.port)
        call.set_remote(Leg.B, LOOPBACK, bob.port)
        parties = {}
        for leg in Leg:
            parties[leg] = Party(leg.value, Codec.PCMU, call.sender(leg))
            conference.add(parties[leg])
            call.serve(leg, parties[leg].on_rtp)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            talker = Talker(parties[Leg.A], constant_frames(4))
            sock.sendto(talker.packet(0), (LOOPBACK, call.local_endpoint(Leg.A).rtp_port))
            for _ in range(100):
                if parties[Leg.A].stats().packets_in:
                    break
                await asyncio.sleep(0.005)
            assert parties[Leg.A].stats().packets_in == 1
            assert bob.received == []  # not forwarded while both legs are served
            # One leg back: still nothing forwarded to the other, which the node serves.
            call.serve(Leg.A, None)
            conference.remove(parties[Leg.A])
            sock.sendto(talker.packet(1), (LOOPBACK, call.local_endpoint(Leg.A).rtp_port))
            await asyncio.sleep(0.05)
            assert bob.received == []
            call.serve(Leg.B, None)
            conference.remove(parties[Leg.B])
            sock.sendto(talker.packet(2), (LOOPBACK, call.local_endpoint(Leg.A).rtp_port))
            for _ in range(100):
                if bob.received:
                    break
                await asyncio.sleep(0.005)
            assert bob.received == [talker.packet(2)]
        finally:
            sock.close()
    finally:
        for phone in (alice, bob):
            assert phone.transport is not None
            phone.transport.close()

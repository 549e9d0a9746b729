"""Conference rooms in one process: a real node, phones with RTP sockets on loopback.

Phones dial a room's extension (with digest) and talk: each sends a paced tone of its
own (PCMU or PCMA) and what each receives is checked by its spectrum: the other
parties' tones and not its own. PINs (RFC 4733 keys and SIP INFO), a full room (183
with the "full" announcement, then 486), a participant leaving, a caller from outside
reaching a room through an IVR, and the CDR of every participant.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import Any

from tests.services.sippeers import (
    NUMBER,
    Carrier,
    Dialler,
    RtpMedia,
    band_shares,
    response_text,
    tone_frames,
)

from vpbx_common.cdr import CallRecord
from vpbx_common.nodeconfig import NodeConfig
from vpbx_media.media.g711 import Codec
from vpbx_media.rtp.packet import RtpPacket
from vpbx_media.sip.message import SipRequest

TONES = {"101": 400.0, "102": 700.0, "103": 1100.0}
CODECS = {"101": Codec.PCMU, "102": Codec.PCMU, "103": Codec.PCMA}
PIN = "2468"
# A band's share of the received energy: a tone heard has its share of the mix, a tone
# not heard nothing but G.711 noise and window leakage.
NOT_HEARD = 1e-3


def password(extension: str) -> str:
    return f"secret-{extension}-password"


def _ha1(user: str, password: str, name: str) -> str:
    return hashlib.new(name, f"{user}:acme.test:{password}".encode()).hexdigest()


def room_config() -> NodeConfig:
    extensions = ("101", "102", "103")
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.test",
            "city": "msk",
            "suspended": False,
            "users": [{"extension": ext, "name": ext, "city": "msk"} for ext in extensions],
            "devices": [
                {
                    "username": ext,
                    "extension": ext,
                    "ha1_md5": _ha1(ext, password(ext), "md5"),
                    "ha1_sha256": _ha1(ext, password(ext), "sha256"),
                }
                for ext in extensions
            ],
            "groups": [],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": "ads",
                    "channels": 0,
                    "target": {"type": "ivr", "name": "main"},
                }
            ],
            "ivr_menus": [
                {
                    "name": "main",
                    "prompt": {"kind": "tone", "frequency_hz": 500, "duration_ms": 200},
                    "options": {"1": {"type": "conference", "room": "800"}},
                }
            ],
            "conference_rooms": [
                {"extension": "800", "name": "All hands"},
                {"extension": "801", "name": "Board", "pin": PIN},
                {"extension": "802", "name": "Pair", "max_participants": 2},
            ],
        }
    ).with_version()


async def joined(node: Any, room: str, count: int, timeout: float = 5.0) -> None:
    """Wait until ``count`` callers are mixed in ``room``."""
    async with asyncio.timeout(timeout):
        while True:
            if node.service.rooms.participants(room) == count:
                return
            await asyncio.sleep(0.01)


async def dial_in(node: Any, peers: Any, extension: str, room: str) -> Dialler:
    media = await peers(RtpMedia(CODECS[extension]))
    phone: Dialler = await peers(Dialler(extension, password(extension), media=media))
    await phone.dial(node.address, room)
    final = await phone.final()
    assert final.status == 200, final
    return phone


async def talk(phones: list[Dialler], frames: int) -> float:
    """Every phone sends its tone, one frame per 20 ms on the loop's clock; returns when
    the talking started (loop time)."""
    loop = asyncio.get_running_loop()
    audio = {
        phone: tone_frames(TONES[phone.extension], frames, CODECS[phone.extension])
        for phone in phones
    }
    start = loop.time()
    for index in range(frames):
        delay = start + index * 0.020 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for phone in phones:
            assert phone.media is not None
            phone.media.send_frame(phone.node_media, audio[phone][index], marker=index == 0)
    await asyncio.sleep(0.1)  # the last frames through the mixer
    return start


def room_stream(phone: Dialler, since: float) -> list[RtpPacket]:
    """What the phone got from the room since ``since``: the mixer's stream (the one
    stream with the most packets; the join tone came on another)."""
    assert phone.media is not None
    packets = phone.media.packets(since)
    ssrc, _ = Counter(packet.ssrc for packet in packets).most_common(1)[0]
    return [packet for packet in packets if packet.ssrc == ssrc]


def assert_hears(phone: Dialler, since: float, heard: list[str], not_heard: list[str]) -> None:
    packets = room_stream(phone, since)
    assert len(packets) >= 40, f"{phone.extension} got {len(packets)} packets"
    assert {p.payload_type for p in packets} == {CODECS[phone.extension].payload_type}
    shares = band_shares(packets[10:], [TONES[e] for e in (*heard, *not_heard)])
    for extension in heard:
        share = shares[TONES[extension]]
        assert share > 0.5 / len(heard), f"{phone.extension} should hear {extension}: {shares}"
    for extension in not_heard:
        share = shares[TONES[extension]]
        assert share < NOT_HEARD, f"{phone.extension} should not hear {extension}: {shares}"


async def hang_up(phone: Dialler) -> None:
    phone.bye()
    seq = phone.seq
    response = await phone.response_to(seq)
    assert response.status == 200


def step(record: CallRecord, outcome: str) -> Any:
    return next(s for s in record.route if s.outcome == outcome)


async def test_three_phones_hear_the_other_two_and_the_last_two_go_on_when_one_leaves(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(room_config())
    phones = [await dial_in(node, peers, extension, "800") for extension in ("101", "102", "103")]
    await joined(node, "800", 3)

    since = await talk(phones, 60)
    alice, bob, carol = phones
    assert_hears(alice, since, ["102", "103"], ["101"])
    assert_hears(bob, since, ["101", "103"], ["102"])
    assert_hears(carol, since, ["101", "102"], ["103"])  # PCMA, mixed with two PCMU

    await hang_up(carol)
    await joined(node, "800", 2)
    since = await talk([alice, bob], 50)
    assert_hears(alice, since, ["102"], ["101", "103"])
    assert_hears(bob, since, ["101"], ["102", "103"])

    await hang_up(alice)
    await hang_up(bob)
    records = {record.caller: record for record in await node.records(3)}
    assert "800" not in node.service.rooms  # the last one out closed it
    for extension, record in records.items():
        assert record.direction == "internal", extension
        assert record.dialled == "800"
        assert record.answer_ms is not None
        assert (record.end_reason, record.sip_status, record.hangup_by) == (
            "completed",
            200,
            "caller",
        )
        subjects = {s.subject for s in record.route}
        assert subjects == {"conference:800"}, record.route
        assert step(record, "left").detail.endswith("s in the room")
    assert step(records["101"], "joined").detail == "1 in the room"
    assert step(records["103"], "joined").detail == "3 in the room"


async def test_the_right_pin_as_rfc4733_keys_lets_the_caller_in(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(room_config())
    phone = await dial_in(node, peers, "101", "801")  # answered: the PIN is asked for
    assert phone.media is not None
    await asyncio.sleep(0.1)
    assert node.service.rooms.places_taken("801") == 1
    assert node.service.rooms.participants("801") == 0
    for key in f"{PIN}#":
        await phone.media.send_key(phone.node_media, key)
    await joined(node, "801", 1)
    await hang_up(phone)
    [record] = await node.records(1)
    assert record.answer_ms is not None
    assert [s.outcome for s in record.route] == ["entered", "joined", "left"]


async def test_three_wrong_pins_and_the_node_hangs_up(node_factory: Any, peers: Any) -> None:
    node = await node_factory(room_config())
    phone = await dial_in(node, peers, "102", "801")
    for attempt in ("1111", "", "24680"):
        for key in f"{attempt}#":
            answer = await phone.response_to(phone.info(key))
            assert answer.status == 200, (attempt, key, answer.status)
    bye = await phone.next(method="BYE", timeout=10.0)
    assert isinstance(bye, SipRequest)
    phone.send(response_text(bye, 200, "dialler"), phone.node)
    [record] = await node.records(1)
    assert node.service.rooms.places_taken("801") == 0
    assert record.answer_ms is None  # never in the room
    assert (record.end_reason, record.sip_status, record.hangup_by) == ("rejected", 200, "system")
    assert step(record, "refused").detail == "3 wrong PINs"


async def test_a_full_room_says_so_then_answers_486(node_factory: Any, peers: Any) -> None:
    node = await node_factory(room_config())
    first = await dial_in(node, peers, "101", "802")
    second = await dial_in(node, peers, "102", "802")
    await joined(node, "802", 2)

    media = await peers(RtpMedia(Codec.PCMA))
    third: Dialler = await peers(Dialler("103", password("103"), media=media))
    await third.dial(node.address, "802")
    final = await third.final()
    assert final.status == 486
    progress = [m for m in third.seen if getattr(m, "status", None) == 183]
    assert progress, "the refusal is announced as early media first"
    assert progress[0].body
    announced = media.packets()
    assert len(announced) >= 10
    assert {p.payload_type for p in announced} == {8}
    assert node.service.rooms.participants("802") == 2

    [refused] = await node.records(1)
    assert refused.caller == "103"
    assert (refused.end_reason, refused.sip_status, refused.answer_ms) == ("busy", 486, None)
    assert step(refused, "full").detail == "all 2 places taken"
    await hang_up(first)
    await hang_up(second)


async def test_a_caller_from_outside_reaches_a_room_through_the_ivr(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(room_config())
    phone = await dial_in(node, peers, "101", "800")
    carrier: Carrier = await peers(Carrier(node.address))
    carrier.invite()
    assert (await carrier.final()).status == 200  # the IVR answers
    seq = carrier.info("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n")
    assert (await carrier.response_to(seq)).status == 200
    await joined(node, "800", 2)
    carrier.bye(seq=seq + 1)
    await joined(node, "800", 1)
    [record] = await node.records(1)
    assert (record.direction, record.dialled, record.label) == ("inbound", NUMBER, "ads")
    assert record.caller == "+79130000001"
    assert record.answer_ms is not None
    assert record.end_reason == "completed"
    assert [s.subject for s in record.route if s.subject.startswith("conference")] == [
        "conference:800",
        "conference:800",
        "conference:800",
    ]
    await hang_up(phone)

"""The WebRTC gateway with real worker processes: an aiortc peer as the browser on one
side, a plain UDP socket standing in for the node's relay on the other. Tones must cross
both ways, DTMF events pass through, bad SDP is a 488-class error, a killed worker fails
its sessions and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest
from tests.services.browser import Browser
from tests.services.objects import dominant_frequency

from vpbx_media.media.g711 import Codec
from vpbx_media.webrtc.gateway import GatewayError, WebRtcGateway, WebRtcSdpError
from vpbx_media.webrtc.translate import read_plain

LOOPBACK = "127.0.0.1"
TIMEOUT = 15.0


@dataclass
class PlainPeer(asyncio.DatagramProtocol):
    """The relay's side: sends a G.711 tone to where the gateway's plain SDP says."""

    hz: float
    codec: Codec = Codec.PCMU
    received: list[bytes] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    target: tuple[str, int] | None = None
    task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.append(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def offer(self, version: int = 1, direction: str = "sendrecv") -> bytes:
        return (
            f"v=0\r\no=- 7 {version} IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\n"
            f"t=0 0\r\nm=audio {self.port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            f"a=fmtp:101 0-15\r\na=ptime:20\r\na={direction}\r\n"
        ).encode()

    def answer(self, codec: str = "PCMU") -> bytes:
        pt = 0 if codec == "PCMU" else 8
        return (
            f"v=0\r\no=- 8 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\n"
            f"t=0 0\r\nm=audio {self.port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {codec}/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        ).encode()

    def start(self, gateway_plain_sdp: bytes) -> None:
        plain = read_plain(gateway_plain_sdp)
        self.target = (plain.address, plain.port)
        self.codec = Codec.from_name(
            next(c.name for c in plain.codecs if c.name.upper() in ("PCMU", "PCMA"))
        )
        self.task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        assert self.transport is not None
        assert self.target is not None
        seq, ts, n = 1, 0, 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            t = (np.arange(160) + ts) / 8000
            pcm = (0.4 * 32767 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
            payload = self.codec.encode(pcm.tobytes())
            header = struct.pack("!BBHII", 0x80, self.codec.payload_type, seq, ts, 0x1234)
            self.transport.sendto(header + payload, self.target)
            seq, ts, n = seq + 1, ts + 160, n + 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    def send_event(self, event: int, seq: int) -> None:
        assert self.transport is not None
        assert self.target is not None
        header = struct.pack("!BBHII", 0x80, 101, 60000 + seq, 999, 0x1234)
        self.transport.sendto(header + struct.pack("!BBH", event, 0x8A, 800), self.target)

    def heard(self) -> np.ndarray:
        audio = [p for p in self.received if p[1] & 0x7F in (0, 8)]
        pcm = [
            np.frombuffer(Codec.from_payload_type(p[1] & 0x7F).decode(p[12:]), np.int16)
            for p in audio
        ]
        return np.concatenate(pcm) if pcm else np.zeros(0, np.int16)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.close()


async def plain_peer(hz: float) -> PlainPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(lambda: PlainPeer(hz), local_addr=(LOOPBACK, 0))
    return peer


@pytest.fixture
async def gateway() -> AsyncIterator[WebRtcGateway]:
    failed: list[tuple[str, str]] = []
    gw = WebRtcGateway(
        workers=1, on_failed=lambda sid, why: failed.append((sid, why)), ice_timeout=3.0
    )
    gw.failed = failed  # type: ignore[attr-defined]
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    for _ in range(int(TIMEOUT / 0.05) + 1):
        if predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def has_tone(samples: np.ndarray, hz: float) -> bool:
    # The last second, after ICE/DTLS set-up and jitter-buffer start.
    if len(samples) < 8000:
        return False
    return abs(dominant_frequency(samples[-8000:], 8000) - hz) < 10


async def test_node_calls_browser_tones_both_ways(gateway: WebRtcGateway) -> None:
    relay = await plain_peer(400)
    browser = Browser(1000)
    try:
        webrtc_offer = await gateway.offer_to_browser("call-1", relay.offer())
        assert b"UDP/TLS/RTP/SAVPF 0 8 101" in webrtc_offer
        assert b"a=setup:actpass" in webrtc_offer
        plain_answer = await gateway.answer_from_browser(
            "call-1", await browser.answer(webrtc_offer)
        )
        answer = read_plain(plain_answer)
        assert answer.address == LOOPBACK
        assert answer.codecs[0].name == "PCMU"
        relay.start(plain_answer)
        await browser.connected()
        await wait_for(lambda: has_tone(relay.heard(), 1000), "1 kHz at the relay")
        await wait_for(lambda: has_tone(browser.heard(), 400), "400 Hz at the browser")
        # RFC 4733 from the relay reaches the browser as the same event.
        for seq in range(3):
            relay.send_event(5, seq)
        await wait_for(lambda: len(browser.events) >= 1, "DTMF at the browser")
        assert browser.events[0][0] == 5
    finally:
        relay.stop()
        await browser.close()
        await gateway.close("call-1")


async def test_browser_calls_node_tones_dtmf_and_hold(gateway: WebRtcGateway) -> None:
    relay = await plain_peer(400)
    browser = Browser(1000)
    try:
        plain_offer = await gateway.offer_from_browser("call-2", await browser.offer())
        offered = read_plain(plain_offer)
        assert [c.name for c in offered.codecs] == ["PCMU", "PCMA", "telephone-event"]
        assert offered.address == LOOPBACK
        webrtc_answer = await gateway.answer_to_browser("call-2", relay.answer("PCMA"))
        assert b"a=setup:active" in webrtc_answer
        assert b"UDP/TLS/RTP/SAVPF 8 101" in webrtc_answer
        await browser.accept(webrtc_answer)
        relay.start(plain_offer.replace(b"RTP/AVP 0 8", b"RTP/AVP 8 0"))
        await browser.connected()
        await wait_for(lambda: has_tone(relay.heard(), 1000), "1 kHz at the relay")
        await wait_for(lambda: has_tone(browser.heard(), 400), "400 Hz at the browser")
        # DTMF from the browser passes through with its payload type and event.
        for seq in range(3):
            await browser.send_event(9, end=seq == 2, seq=50000 + seq, timestamp=4242)
        await wait_for(
            lambda: any(p[1] & 0x7F == 101 and p[12] == 9 for p in relay.received),
            "DTMF 9 at the relay",
        )
        # Hold from the browser: a re-offer with sendonly becomes a plain sendonly offer
        # on the same port; ICE and DTLS carry on.
        reoffer = (await browser.offer_again()).replace(b"a=sendrecv", b"a=sendonly")
        plain_reoffer = await gateway.offer_from_browser("call-2", reoffer)
        held = read_plain(plain_reoffer)
        assert held.direction.value == "sendonly"
        assert held.port == offered.port
        reanswer = await gateway.answer_to_browser(
            "call-2", relay.answer("PCMA").replace(b"a=sendrecv", b"a=recvonly")
        )
        assert b"a=recvonly" in reanswer
        assert b"a=setup:active" in reanswer
    finally:
        relay.stop()
        await browser.close()
        await gateway.close("call-2")


async def test_node_holds_browser_reoffer_keeps_transport(gateway: WebRtcGateway) -> None:
    relay = await plain_peer(400)
    browser = Browser(1000)
    try:
        first = await gateway.offer_to_browser("call-3", relay.offer())
        await gateway.answer_from_browser("call-3", await browser.answer(first))
        again = await gateway.offer_to_browser("call-3", relay.offer(2, "sendonly"))
        assert b"a=sendonly" in again
        # Same ICE credentials and fingerprint: no ICE restart, no new handshake.
        for attribute in (b"a=ice-ufrag:", b"a=fingerprint:"):
            line = next(x for x in first.split(b"\r\n") if x.startswith(attribute))
            assert line in again
        assert b"a=setup:passive" in again  # the browser answered active
    finally:
        relay.stop()
        await browser.close()
        await gateway.close("call-3")


@pytest.mark.parametrize(
    ("sdp", "reason"),
    [
        (b"not sdp at all", "<type>=<value>"),
        (
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
            b"a=ice-ufrag:u\r\na=ice-pwd:p\r\na=fingerprint:sha-256 AA:BB\r\na=rtcp-mux\r\n",
            "PCMU/PCMA",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtcp-mux\r\na=fingerprint:sha-256 AA:BB\r\n",
            "ice-ufrag",
        ),
        (b"v=0\r\na=fingerprint:sha-256 \xff\xfe\r\na=ice-ufrag:u\r\n", "UTF-8"),
    ],
)
async def test_bad_browser_sdp_is_a_clear_error(
    gateway: WebRtcGateway, sdp: bytes, reason: str
) -> None:
    with pytest.raises(WebRtcSdpError) as caught:
        await gateway.offer_from_browser("bad", sdp)
    assert reason in caught.value.reason
    assert not gateway.has("bad")  # nothing of the refused session is kept
    # The worker is still there for the next call.
    relay = await plain_peer(400)
    try:
        assert b"a=fingerprint:sha-256" in await gateway.offer_to_browser("next", relay.offer())
    finally:
        relay.stop()
        await gateway.close("next")


async def test_killed_worker_fails_its_sessions_and_restarts(gateway: WebRtcGateway) -> None:
    relay = await plain_peer(400)
    try:
        await gateway.offer_to_browser("doomed", relay.offer())
        (pid,) = gateway.pids
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: gateway.restarts == 1 and len(gateway.pids) == 1, "restart")
        assert gateway.failed == [("doomed", "the WebRTC worker exited")]  # type: ignore[attr-defined]
        with pytest.raises(GatewayError):
            await gateway.answer_from_browser("doomed", b"v=0\r\n")
        await wait_for(lambda: gateway.pids != [pid], "new pid")
        fresh = await gateway.offer_to_browser("fresh", relay.offer())
        assert b"a=ice-ufrag:" in fresh
    finally:
        relay.stop()
        await gateway.close("fresh")


async def test_a_browser_ice_never_reaches_fails_the_session(gateway: WebRtcGateway) -> None:
    relay = await plain_peer(400)
    try:
        offer = await gateway.offer_to_browser("lost", relay.offer())
        assert b"a=candidate:" in offer
        # A browser whose only candidate nobody answers on (the discard port).
        answer = (
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            b"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 127.0.0.1\r\n"
            b"a=candidate:1 1 udp 2122260223 127.0.0.1 9 typ host\r\n"
            b"a=ice-ufrag:lost\r\na=ice-pwd:lostlostlostlostlostlost\r\n"
            b"a=fingerprint:sha-256 " + b":".join([b"AB"] * 32) + b"\r\n"
            b"a=setup:active\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n"
            b"a=rtpmap:0 PCMU/8000\r\n"
        )
        await gateway.answer_from_browser("lost", answer)
        failed = gateway.failed  # type: ignore[attr-defined]
        await wait_for(lambda: bool(failed), "the session's failure")
        assert failed == [("lost", "ICE found no working candidate pair in 3 s")]
        assert not gateway.has("lost")
    finally:
        relay.stop()
        await gateway.close("lost")

"""Calls with a browser on one end, through a real node and a real WebRTC gateway.

The browser is an aiortc peer (tests/services/browser.py) behind a scripted SIP device
whose Contact says ;transport=ws, as the edge registers browsers (the WebSocket
transport itself is the edge's; here the device's SIP rides UDP straight to the node).
The other end is a plain phone or carrier sending a PCMU tone. Tones must cross both
ways; BYE frees the gateway's session.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable

import pytest
from tests.services.browser import Browser
from tests.services.objects import dominant_frequency
from tests.services.ports import free_port
from tests.services.sippeers import (
    Carrier,
    Dialler,
    Node,
    Phone,
    TonePeer,
    WebSocketPhone,
    config,
    sdp,
    with_devices,
)

from vpbx_common.nodeconfig import NodeConfig
from vpbx_media.sip.message import SipRequest, SipResponse
from vpbx_media.webrtc.gateway import WebRtcGateway

TIMEOUT = 15.0


class BrowserDialler(Dialler):
    """A browser placing a call: its INVITE carries the browser's WebRTC offer."""

    offer = b""

    def _invite(self, authorization: str = "") -> None:
        head = self._head("INVITE", self.seq, f"z9hG4bK-w-{self.seq}-{id(self)}")
        self.send(
            head
            + authorization
            + f"Content-Type: application/sdp\r\nContent-Length: {len(self.offer)}\r\n\r\n"
            + self.offer.decode(),
            self.node,
        )


@pytest.fixture
async def gateway() -> AsyncIterator[WebRtcGateway]:
    gw = WebRtcGateway(workers=1)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    for _ in range(int(TIMEOUT / 0.05) + 1):
        if predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def browser_hears(browser: Browser, hz: float) -> bool:
    samples = browser.heard()
    return len(samples) >= 8000 and abs(dominant_frequency(samples[-8000:], 8000) - hz) < 10


def phone_hears(peer: TonePeer, hz: float) -> bool:
    if len(peer.received) < 60:
        return False
    return peer.shares([hz])[hz] > 0.5


async def test_carrier_calls_a_browser_and_tones_cross(
    node_factory: Callable[..., object], peers: Callable[..., object], gateway: WebRtcGateway
) -> None:
    cfg = with_devices(
        config({"strategy": "ring-all", "members": ["101"]}), {"101": "browser-secret-101"}
    )
    node: Node = await node_factory(cfg, webrtc=gateway)  # type: ignore[operator]
    phone: WebSocketPhone = await peers(WebSocketPhone("101"))  # type: ignore[operator]
    phone.own_path = True  # no edge here: the node reaches it through its own Path
    await phone.register(node.address, "browser-secret-101", "acme.test")
    (binding,) = await node.service.bindings.list("acme", "101")
    assert binding.contact.endswith(";transport=ws")  # what the registrar keeps
    carrier: Carrier = await peers(Carrier(node.address))  # type: ignore[operator]
    carrier_media = TonePeer(carrier.port + 1000, 400)
    await carrier_media.open()
    browser = Browser(1000)
    try:
        carrier.invite()
        invite = await phone.ringing(timeout=TIMEOUT)
        assert b"UDP/TLS/RTP/SAVPF" in invite.body
        assert b"a=fingerprint:sha-256" in invite.body
        phone.reply(200, body=await browser.answer(invite.body))
        answered = await carrier.final(timeout=TIMEOUT)
        assert answered.status == 200
        assert b"RTP/AVP" in answered.body
        assert b"SAVPF" not in answered.body
        carrier_media.talk_to(answered.body)
        await browser.connected()
        await wait_until(lambda: browser_hears(browser, 400), "the carrier's 400 Hz in the browser")
        await wait_until(
            lambda: phone_hears(carrier_media, 1000), "the browser's 1 kHz at the carrier"
        )
        # The browser puts the carrier on hold: its re-INVITE (sendonly) reaches the call
        # as plain SDP, the node answers it (music to the carrier), and the browser gets a
        # WebRTC answer on the same ICE/DTLS transport.
        hold = (await browser.offer_again()).replace(b"a=sendrecv", b"a=sendonly")
        phone.request("INVITE", extra="Content-Type: application/sdp\r\n", seq=30, body=hold)
        held = await phone.next_response(timeout=TIMEOUT)
        assert held.status == 200
        assert b"UDP/TLS/RTP/SAVPF" in held.body
        assert b"a=recvonly" in held.body
        assert b"a=setup:passive" in held.body
        carrier.bye()
        await phone.bye_answered()
        await wait_until(lambda: gateway.sessions() == 0, "the gateway session closed")
    finally:
        carrier_media.close()
        await browser.close()


async def test_browser_calls_a_phone_and_tones_cross(
    node_factory: Callable[..., object], peers: Callable[..., object], gateway: WebRtcGateway
) -> None:
    cfg = with_devices(
        config({"strategy": "ring-all", "members": ["101"]}), {"102": "browser-secret-102"}
    )
    node: Node = await node_factory(cfg, webrtc=gateway)  # type: ignore[operator]
    desk: Phone = await peers(Phone("101"))  # type: ignore[operator]
    await node.register(desk)
    desk_media = TonePeer(free_port(), 400)
    await desk_media.open()
    dialler: BrowserDialler = await peers(  # type: ignore[operator]
        BrowserDialler("102", "browser-secret-102")
    )
    browser = Browser(1000)
    try:
        dialler.offer = await browser.offer()
        await dialler.dial(node.address, "101")
        invite = await desk.ringing(timeout=TIMEOUT)
        # The desk phone is offered plain RTP: the codec the node chose from the browser's.
        assert b"RTP/AVP 0 101" in invite.body
        assert b"SAVPF" not in invite.body
        desk.reply(200, body=sdp(desk_media.port))
        desk_media.talk_to(invite.body)
        answered: SipResponse = await dialler.final(timeout=TIMEOUT)
        assert answered.status == 200
        assert b"UDP/TLS/RTP/SAVPF 0 101" in answered.body
        await browser.accept(answered.body)
        await browser.connected()
        await wait_until(
            lambda: browser_hears(browser, 400), "the desk phone's 400 Hz in the browser"
        )
        await wait_until(lambda: phone_hears(desk_media, 1000), "the browser's 1 kHz at the desk")
        # The browser holds the desk phone: the desk gets a plain re-INVITE (sendonly),
        # its answer goes back to the browser as WebRTC SDP (recvonly).
        hold = (await browser.offer_again()).replace(b"a=sendrecv", b"a=sendonly")
        dialler.seq += 1
        head = dialler._head("INVITE", dialler.seq, f"z9hG4bK-hold-{id(dialler)}", dialler.to_tag)
        dialler.send(
            head
            + f"Content-Type: application/sdp\r\nContent-Length: {len(hold)}\r\n\r\n"
            + hold.decode(),
            node.address,
        )
        reinvite = await desk.next(method="INVITE", timeout=TIMEOUT)
        assert isinstance(reinvite, SipRequest)
        assert b"a=sendonly" in reinvite.body
        assert b"SAVPF" not in reinvite.body
        desk.answer_request(
            reinvite, 200, body=sdp(desk_media.port).replace(b"a=sendrecv", b"a=recvonly")
        )
        held = await dialler.final(timeout=TIMEOUT)
        assert held.status == 200
        assert b"UDP/TLS/RTP/SAVPF" in held.body
        assert b"a=recvonly" in held.body
        dialler.bye()
        await desk.bye_answered()
        await wait_until(lambda: gateway.sessions() == 0, "the gateway session closed")
    finally:
        desk_media.close()
        await browser.close()


async def test_browser_with_sdp_the_gateway_cannot_bridge_gets_488(
    node_factory: Callable[..., object], peers: Callable[..., object], gateway: WebRtcGateway
) -> None:
    cfg = with_devices(
        config({"strategy": "ring-all", "members": ["101"]}), {"102": "browser-secret-102"}
    )
    node: Node = await node_factory(cfg, webrtc=gateway)  # type: ignore[operator]
    dialler: BrowserDialler = await peers(  # type: ignore[operator]
        BrowserDialler("102", "browser-secret-102")
    )
    # Opus only, as a browser with G.711 switched off would offer: nothing to bridge.
    dialler.offer = (
        b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\n"
        b"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
        b"a=fingerprint:sha-256 " + b":".join([b"AB"] * 32) + b"\r\n"
        b"a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
    )
    await dialler.dial(node.address, "101")
    refused = await dialler.final(timeout=TIMEOUT)
    assert refused.status == 488
    assert "PCMU/PCMA" in refused.reason
    assert gateway.sessions() == 0
    assert gateway.restarts == 0


async def test_a_dead_gateway_worker_ends_the_call_on_both_sides(
    node_factory: Callable[..., object], peers: Callable[..., object], gateway: WebRtcGateway
) -> None:
    node: Node = await node_factory(  # type: ignore[operator]
        config({"strategy": "ring-all", "members": ["101"]}), webrtc=gateway
    )
    gateway.on_failed = node.service.webrtc_failed  # as the node's app wires it
    phone: WebSocketPhone = await peers(WebSocketPhone("101"))  # type: ignore[operator]
    phone.own_path = True  # no edge here: the node reaches it through its own Path
    await node.register(phone)
    carrier: Carrier = await peers(Carrier(node.address))  # type: ignore[operator]
    browser = Browser(1000)
    try:
        carrier.invite()
        invite = await phone.ringing(timeout=TIMEOUT)
        phone.reply(200, body=await browser.answer(invite.body))
        assert (await carrier.final(timeout=TIMEOUT)).status == 200
        (pid,) = gateway.pids
        os.kill(pid, signal.SIGKILL)
        await carrier.bye_answered(timeout=TIMEOUT)
        await phone.bye_answered()
        await wait_until(lambda: gateway.restarts == 1 and len(gateway.pids) == 1, "a new worker")
        (record,) = await node.records(1, timeout=TIMEOUT)
        assert record.hangup_by == "system"
    finally:
        await browser.close()


def room_with_pin(pin: str) -> NodeConfig:
    document = config({"strategy": "ring-all", "members": ["101"]}).model_dump(mode="json")
    document["conference_rooms"] = [{"extension": "801", "name": "Board", "pin": pin}]
    cfg = NodeConfig.model_validate(document).with_version()
    return with_devices(cfg, {"102": "browser-secret-102"})


async def test_browser_keys_reach_the_node_as_rfc4733(
    node_factory: Callable[..., object], peers: Callable[..., object], gateway: WebRtcGateway
) -> None:
    """A browser dials a PIN-protected room and keys the PIN: the RFC 4733 events its
    RTCDTMFSender would send cross the gateway and the node's DTMF detection takes them."""
    node: Node = await node_factory(room_with_pin("2468"), webrtc=gateway)  # type: ignore[operator]
    dialler: BrowserDialler = await peers(  # type: ignore[operator]
        BrowserDialler("102", "browser-secret-102")
    )
    browser = Browser(1000)
    try:
        dialler.offer = await browser.offer()
        await dialler.dial(node.address, "801")
        answered = await dialler.final(timeout=TIMEOUT)
        assert answered.status == 200
        assert b"telephone-event/8000" in answered.body
        await browser.accept(answered.body)
        await browser.connected()
        assert node.service.rooms.participants("801") == 0
        seq = 100
        for index, key in enumerate("2468#"):
            event = 11 if key == "#" else int(key)
            timestamp = 8000 * (index + 1)
            for packet in range(5):  # start, update, then the end three times
                await browser.send_event(event, end=packet >= 2, seq=seq, timestamp=timestamp)
                seq += 1
                await asyncio.sleep(0.02)
        await wait_until(lambda: node.service.rooms.participants("801") == 1, "joined the room")
        dialler.bye()
        await wait_until(lambda: gateway.sessions() == 0, "the gateway session closed")
    finally:
        await browser.close()


async def test_a_cancelled_call_to_a_browser_frees_its_gateway_session(
    node_factory: Callable[..., object], peers: Callable[..., object], gateway: WebRtcGateway
) -> None:
    node: Node = await node_factory(  # type: ignore[operator]
        config({"strategy": "ring-all", "members": ["101"]}), webrtc=gateway
    )
    phone: WebSocketPhone = await peers(WebSocketPhone("101"))  # type: ignore[operator]
    phone.own_path = True  # no edge here: the node reaches it through its own Path
    await node.register(phone)
    carrier: Carrier = await peers(Carrier(node.address))  # type: ignore[operator]
    carrier.invite()
    invite = await phone.ringing(timeout=TIMEOUT)
    assert b"UDP/TLS/RTP/SAVPF" in invite.body
    assert gateway.sessions() == 1  # ports held while it rings
    carrier.cancel()
    await phone.answers_cancel()
    assert (await carrier.final(timeout=TIMEOUT)).status == 487
    await wait_until(lambda: gateway.sessions() == 0, "the gateway session closed")

"""A "browser" for tests: an aiortc RTCPeerConnection that sends a tone and records what
it hears, speaking SDP the way Chrome does for a SIP softphone (G.711 first,
telephone-event, rtcp-mux, BUNDLE). Reusable by any test that needs a WebRTC peer
(the node's WebRTC legs, the web client's softphone tests).

ICE gathers on 127.0.0.1 only (tests run on 127.0.0.0/8); aioice would otherwise skip
loopback and use the machine's other interfaces.
"""

from __future__ import annotations

import asyncio
import fractions
import struct
import time
from collections.abc import Iterable

import aioice.ice
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def loopback_ice(address: str = "127.0.0.1") -> None:
    """ICE host candidates on `address` only, for every aiortc peer of this process."""

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address]

    aioice.ice.get_host_addresses = addresses


class ToneTrack(MediaStreamTrack):
    """An audio track playing a sine at 8 kHz in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float, amplitude: float = 0.4) -> None:
        super().__init__()
        self.hz = hz
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + self._pts / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self._pts) / RATE
        pcm = (self.amplitude * 32767 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


def _with_telephone_event(sdp: str) -> str:
    """Add telephone-event/8000 (PT 101) to the audio m= line, as Chrome offers it;
    aiortc itself does not negotiate RFC 4733."""
    lines = sdp.split("\r\n")
    out: list[str] = []
    for line in lines:
        if line.startswith("m=audio ") and not line.endswith(" 101"):
            line = f"{line} 101"
        out.append(line)
        if line.startswith("a=rtpmap:8 "):
            out.extend(["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"])
    return "\r\n".join(out)


class Browser:
    """One WebRTC peer. `offer()`/`accept()` when it calls; `answer()` when it is called."""

    def __init__(self, tone_hz: float, codecs: Iterable[str] = ("PCMU", "PCMA")) -> None:
        loopback_ice()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tone = ToneTrack(tone_hz)
        self.codecs = tuple(codecs)
        self.samples: list[np.ndarray] = []
        self.events: list[bytes] = []  # RFC 4733 payloads heard (PT 101)
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.samples.append(frame.to_ndarray().reshape(-1))

    def _prefer_codecs(self) -> None:
        capabilities = RTCRtpSender.getCapabilities("audio").codecs
        wanted = [c for name in self.codecs for c in capabilities if c.name == name]
        for transceiver in self.pc.getTransceivers():
            transceiver.setCodecPreferences(wanted)

    def _hook_events(self) -> None:
        """Record telephone-event packets before aiortc's router drops their unknown PT."""
        transceiver = self.pc.getTransceivers()[0]
        dtls = transceiver.receiver.transport
        original = dtls._handle_rtp_data

        async def handle(data: bytes, arrival_time_ms: int) -> None:
            if len(data) >= 12 and data[1] & 0x7F == 101:
                self.events.append(data[12:16])
                return
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = handle  # type: ignore[method-assign]

    async def offer(self) -> bytes:
        self.pc.addTransceiver(self.tone, direction="sendrecv")
        self._prefer_codecs()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return _with_telephone_event(self.pc.localDescription.sdp).encode()

    async def offer_again(self) -> bytes:
        """A re-offer on the established connection (same ICE and DTLS), for re-INVITEs."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return _with_telephone_event(self.pc.localDescription.sdp).encode()

    async def accept(self, answer: bytes) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.decode(), "answer"))
        self._hook_events()

    async def answer(self, offer: bytes) -> bytes:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer.decode(), "offer"))
        self.pc.addTrack(self.tone)
        self._prefer_codecs()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._hook_events()
        return _with_telephone_event(self.pc.localDescription.sdp).encode()

    async def connected(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.pc.connectionState != "connected":
                if self.pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(f"the peer connection is {self.pc.connectionState}")
                await asyncio.sleep(0.05)

    async def send_event(self, event: int, *, end: bool, seq: int, timestamp: int) -> None:
        """One RFC 4733 packet (PT 101) through the browser's SRTP, as Chrome's
        RTCDTMFSender sends it; on an SSRC of its own, since aiortc's sender owns the
        audio SSRC's sequence numbers (SRTP refuses a reused index)."""
        transceiver = self.pc.getTransceivers()[0]
        sender = transceiver.sender
        header = struct.pack("!BBHII", 0x80, 101, seq, timestamp, sender._ssrc ^ 1)
        payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, 800)
        await sender.transport._send_rtp(header + payload)

    def heard(self) -> np.ndarray:
        if not self.samples:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.samples)

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()

"""One browser's media in a gateway worker: ICE + DTLS-SRTP on one side, plain RTP on
the other, G.711 and telephone-event passed through (SRTP protect/unprotect only).

aiortc supplies ICE (aioice), the DTLS handshake and the SRTP keys; its codec and
track machinery is not used at all: decoding and re-encoding G.711 to get it through
aiortc's tracks cost several times what the pass-through does (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

import pylibsrtp
from aioice.ice import CandidatePair
from aiortc import RTCCertificate, RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.exceptions import InvalidStateError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceParameters, RTCIceTransport
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from ..sdp import Codec, Direction, SdpError
from .rpc import ICE_TIMEOUT
from .translate import (
    BrowserMedia,
    IceDtls,
    PlainMedia,
    plain_sdp,
    read_browser,
    read_plain,
    webrtc_sdp,
)

# RTCP packet types 192-223 put 64-95 in the second byte's low 7 bits (RFC 5761 4).
_RTCP_PT_MIN = 64
_RTCP_PT_MAX = 95


class _PassThroughDtls(RTCDtlsTransport):
    """aiortc's DTLS transport with its RTP routing replaced by one sendto to the relay."""

    plain: asyncio.DatagramTransport | None = None
    plain_remote: tuple[str, int] | None = None

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        plain, remote = self.plain, self.plain_remote
        if plain is not None and remote is not None:
            plain.sendto(data, remote)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        # The browser's receiver reports stop here: the relay keeps its own RTCP per leg
        # and latches nothing from these.
        return None


class _PlainSide(asyncio.DatagramProtocol):
    """The gateway's plain RTP port: what the relay sends here goes to the browser."""

    def __init__(self, session: BridgeSession) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        session = self.session
        srtp = session.dtls._tx_srtp
        pair = session.ice_pair
        if srtp is None or pair is None or len(data) < 12 or data[0] & 0xC0 != 0x80:
            return
        if _RTCP_PT_MIN <= data[1] & 0x7F <= _RTCP_PT_MAX:
            return
        try:
            protected = srtp.protect(data)
        except pylibsrtp.Error:
            # A malformed packet from the far end (a CSRC count or extension longer than
            # the packet): dropped, as the relay drops what it cannot read.
            return
        pair.protocol.transport.sendto(protected, pair.remote_addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the relay's leg is not yet set up: nothing to do,
        # the next packet tries again.
        return None


class BridgeSession:
    """Created on the first offer in either direction; closed on BYE/CANCEL/failure."""

    def __init__(
        self,
        session_id: str,
        *,
        certificate: RTCCertificate,
        plain_address: str,
        on_failed: Callable[[str, str], None],
        ice_timeout: float = ICE_TIMEOUT,
    ) -> None:
        self.session_id = session_id
        self.ice_timeout = ice_timeout
        self.plain_address = plain_address
        self._certificate = certificate
        self._on_failed = on_failed
        self._gatherer = RTCIceGatherer(iceServers=[])
        self.ice = RTCIceTransport(self._gatherer)
        self.dtls = _PassThroughDtls(self.ice, [certificate])
        self.plain: asyncio.DatagramTransport | None = None
        self.plain_port = 0
        self._sdp_id = secrets.randbelow(2**62)
        self._version = 0
        self._cname = secrets.token_hex(8)
        self._mid = "0"
        self._browser: BrowserMedia | None = None
        self._our_setup = "actpass"
        self._pending: str | None = None  # "browser" or "plain": whose offer awaits an answer
        self._offer_browser: BrowserMedia | None = None
        self._transport_task: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def ice_pair(self) -> CandidatePair | None:
        return self.ice._connection._nominated.get(1)

    async def _prepare(self, controlling: bool) -> None:
        loop = asyncio.get_running_loop()
        self._gatherer._connection.ice_controlling = controlling
        await self._gatherer.gather()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _PlainSide(self), local_addr=(self.plain_address, 0)
        )
        self.plain = transport
        self.plain_port = transport.get_extra_info("sockname")[1]
        self.dtls.plain = transport

    def _local_ice(self) -> IceDtls:
        params = self._gatherer.getLocalParameters()
        fingerprint = next(
            fp for fp in self._certificate.getFingerprints() if fp.algorithm == "sha-256"
        )
        candidates = tuple(
            candidate_to_sdp(candidate) for candidate in self._gatherer.getLocalCandidates()
        )
        return IceDtls(
            ufrag=params.usernameFragment or "",
            pwd=params.password or "",
            fingerprint=f"{fingerprint.algorithm} {fingerprint.value}",
            setup=self._our_setup,
            candidates=candidates,
        )

    def _media_address(self) -> tuple[str, int]:
        candidates = self._gatherer.getLocalCandidates()
        if not candidates:
            raise SdpError("the gateway has no ICE candidate on the media address")
        return candidates[0].ip, candidates[0].port

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    def _set_plain_remote(self, plain: PlainMedia) -> None:
        self.dtls.plain_remote = (plain.address, plain.port)

    def _webrtc(
        self, codecs: tuple[Codec, ...], direction: Direction, answer_to: BrowserMedia | None
    ) -> bytes:
        address, port = self._media_address()
        return webrtc_sdp(
            ice=self._local_ice(),
            address=address,
            port=port,
            codecs=codecs,
            direction=direction,
            session_id=self._sdp_id,
            version=self._next_version(),
            mid=self._mid,
            cname=self._cname,
            answer_to=answer_to,
        )

    def _plain(self, codecs: tuple[Codec, ...], direction: Direction) -> bytes:
        return plain_sdp(
            address=self.plain_address,
            port=self.plain_port,
            codecs=codecs,
            direction=direction,
            session_id=self._sdp_id,
            version=self._next_version(),
        )

    def _check_same_transport(self, browser: BrowserMedia) -> None:
        known = self._browser
        if known is not None and (
            known.ice.ufrag != browser.ice.ufrag or known.ice.fingerprint != browser.ice.fingerprint
        ):
            raise SdpError("ICE restart or a new DTLS identity is not supported mid-call")

    # The node offers to the browser (node -> browser INVITE or re-INVITE).
    async def offer_to_browser(self, plain_offer: bytes) -> bytes:
        plain = read_plain(plain_offer)
        if self.plain is None:
            await self._prepare(controlling=True)
        self._set_plain_remote(plain)
        self._pending = "plain"
        return self._webrtc(plain.codecs, plain.direction, None)

    async def answer_from_browser(self, webrtc_answer: bytes) -> bytes:
        if self._pending != "plain":
            raise SdpError("no offer to the browser is waiting for this answer")
        browser = read_browser(webrtc_answer)
        self._check_same_transport(browser)
        first = self._browser is None
        self._browser = browser
        self._pending = None
        if first:
            # The browser picked its DTLS role; ours is the other one from now on.
            self._our_setup = "active" if browser.ice.setup == "passive" else "passive"
            self._start_transport(browser)
        return self._plain(browser.codecs, browser.direction)

    # The browser offers to the node (browser -> node INVITE or re-INVITE).
    async def offer_from_browser(self, webrtc_offer: bytes) -> bytes:
        browser = read_browser(webrtc_offer)
        self._check_same_transport(browser)
        if self.plain is None:
            await self._prepare(controlling=False)
            # RFC 8842 5.2: the answerer to actpass takes active; it then dials DTLS.
            self._our_setup = "passive" if browser.ice.setup == "active" else "active"
        self._mid = browser.mid or "0"
        self._offer_browser = browser
        self._pending = "browser"
        return self._plain(browser.codecs, browser.direction)

    async def answer_to_browser(self, plain_answer: bytes) -> bytes:
        if self._pending != "browser":
            raise SdpError("no offer from the browser is waiting for this answer")
        plain = read_plain(plain_answer)
        browser = self._offer_browser
        assert browser is not None  # set with _pending = "browser"
        self._set_plain_remote(plain)
        first = self._browser is None
        self._browser = browser
        self._pending = None
        answer = self._webrtc(plain.codecs, plain.direction, browser)
        if first:
            self._start_transport(browser)
        return answer

    def _start_transport(self, browser: BrowserMedia) -> None:
        self._transport_task = asyncio.get_running_loop().create_task(self._connect(browser.ice))

    async def _connect(self, remote: IceDtls) -> None:
        try:
            await self._handshake(remote)
        except (ConnectionError, OSError, ValueError, InvalidStateError) as exc:
            # aioice and aiortc raise these for a peer that goes away mid-handshake or a
            # transport closed under them: the session failed, the worker goes on.
            self._fail(f"ICE/DTLS set-up failed: {exc or type(exc).__name__}")

    async def _handshake(self, remote: IceDtls) -> None:
        for line in remote.candidates:
            try:
                candidate = candidate_from_sdp(line)
            except (AssertionError, ValueError, IndexError):
                continue  # one unreadable candidate does not sink the others
            await self.ice.addRemoteCandidate(candidate)
        await self.ice.addRemoteCandidate(None)
        parameters = RTCIceParameters(usernameFragment=remote.ufrag, password=remote.pwd)
        try:
            await asyncio.wait_for(self.ice.start(parameters), self.ice_timeout)
        except TimeoutError:
            self._fail(f"ICE found no working candidate pair in {self.ice_timeout:g} s")
            return
        if self.ice.state != "completed":
            self._fail("ICE found no working candidate pair")
            return
        algorithm, _, value = remote.fingerprint.partition(" ")
        self.dtls._set_role("client" if self._our_setup == "active" else "server")
        await self.dtls.start(
            RTCDtlsParameters(fingerprints=[RTCDtlsFingerprint(algorithm.lower(), value.strip())])
        )
        if self.dtls.state != "connected":
            self._fail("DTLS handshake failed")

    def _fail(self, reason: str) -> None:
        if not self.closed:
            self._on_failed(self.session_id, reason)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._transport_task is not None and not self._transport_task.done():
            self._transport_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._transport_task
        await self.dtls.stop()
        await self.ice.stop()
        if self.plain is not None:
            self.plain.close()

"""A SIP-over-WebSocket user agent (RFC 7118) for tests: what a browser running JsSIP does.

It connects with the subprotocol ``sip``, sends one SIP message per text frame, and
names itself the way JsSIP does (RFC 7118 section 5): a Via ``SIP/2.0/WS
<random>.invalid`` and a Contact ``sip:<random>@<random>.invalid;transport=ws``, an
address nobody can send to, so everything must come back over its connection.

It registers with digest authentication, answers an INVITE with a plain RTP SDP (the
caller's media port is the test's own UDP socket), places an INVITE answering the 407
challenge, and ends calls with BYE. One dialog at a time; enough for the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from dataclasses import dataclass, field

import aiohttp

from vpbx_media.sip.digest import DigestChallenge, build_credentials, preferred_challenge
from vpbx_media.sip.headers import NameAddr
from vpbx_media.sip.message import SipMessage, SipRequest, SipResponse, parse_message

SUBPROTOCOL = "sip"


def rtp_sdp(port: int, host: str = "127.0.0.1") -> str:
    """A plain RTP/AVP PCMU offer or answer (no WebRTC: the node does not speak it yet)."""
    return (
        f"v=0\r\no=ws 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )


@dataclass
class Dialog:
    call_id: str
    local_uri: str  # our From (UAC) / To (UAS) address, without tag
    local_tag: str
    remote_uri: str
    remote_tag: str
    remote_target: str
    route_set: list[str]
    seq: int


@dataclass
class SipWsClient:
    url: str
    user: str
    password: str
    domain: str
    # What a browser's SIP stack makes up for itself.
    invalid_host: str = field(default_factory=lambda: secrets.token_hex(6) + ".invalid")
    contact_user: str = field(default_factory=lambda: secrets.token_hex(4))
    received: list[SipMessage] = field(default_factory=list)
    dialog: Dialog | None = None

    def __post_init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._inbox: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._register_call_id = secrets.token_hex(8)
        self._register_seq = 0
        self.closed = asyncio.Event()

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def contact(self) -> str:
        return f"sip:{self.contact_user}@{self.invalid_host};transport=ws"

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url, protocols=(SUBPROTOCOL,), autoping=True)
        if self._ws.protocol != SUBPROTOCOL:
            raise AssertionError(f"the server chose subprotocol {self._ws.protocol!r}")
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    data = frame.data.encode()
                elif frame.type is aiohttp.WSMsgType.BINARY:
                    data = frame.data
                else:
                    continue
                message = parse_message(data)
                self.received.append(message)
                await self._inbox.put(message)
        finally:
            self.closed.set()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._session is not None:
            await self._session.close()

    async def send(self, message: str | bytes) -> None:
        assert self._ws is not None
        if isinstance(message, bytes):
            await self._ws.send_bytes(message)
        else:
            await self._ws.send_str(message)

    async def next(
        self,
        *,
        method: str | None = None,
        cseq_method: str | None = None,
        timeout: float = 10.0,
    ) -> SipMessage:
        """The next request of `method`, or response to `cseq_method` (others skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self._inbox.get()
                if method is not None and isinstance(message, SipRequest):
                    if message.method == method:
                        return message
                elif cseq_method is not None and isinstance(message, SipResponse):
                    if message.cseq.method == cseq_method:
                        return message
                elif method is None and cseq_method is None:
                    return message

    async def final_response(self, method: str, timeout: float = 10.0) -> SipResponse:
        while True:
            response = await self.next(cseq_method=method, timeout=timeout)
            assert isinstance(response, SipResponse)
            if response.status >= 200:
                return response

    def _branch(self) -> str:
        return f"z9hG4bK{secrets.token_hex(6)}"

    def _via(self, branch: str | None = None) -> str:
        return f"SIP/2.0/WS {self.invalid_host};branch={branch or self._branch()}"

    # --- registration ------------------------------------------------------

    def _register_text(self, expires: int, authorization: str = "") -> str:
        self._register_seq += 1
        return (
            f"REGISTER sip:{self.domain} SIP/2.0\r\n"
            f"Via: {self._via()}\r\n"
            "Max-Forwards: 69\r\n"
            f"To: <{self.aor}>\r\n"
            f"From: <{self.aor}>;tag={secrets.token_hex(5)}\r\n"
            f"Call-ID: {self._register_call_id}\r\n"
            f"CSeq: {self._register_seq} REGISTER\r\n"
            f"Contact: <{self.contact}>;expires={expires}\r\n"
            f"Expires: {expires}\r\n"
            f"{authorization}"
            "User-Agent: vpbx-test-sipws\r\n"
            "Content-Length: 0\r\n\r\n"
        )

    async def register(self, expires: int = 600) -> SipResponse:
        """REGISTER, answering one digest challenge; the final response."""
        await self.send(self._register_text(expires))
        response = await self.final_response("REGISTER")
        if response.status != 401:
            return response
        challenges = [
            DigestChallenge.parse(value) for value in response.headers.values("WWW-Authenticate")
        ]
        credentials = build_credentials(
            preferred_challenge(challenges),
            self.user,
            self.password,
            "REGISTER",
            f"sip:{self.domain}",
        )
        await self.send(self._register_text(expires, f"Authorization: {credentials}\r\n"))
        return await self.final_response("REGISTER")

    # --- answering ---------------------------------------------------------

    def response_text(
        self, request: SipRequest, status: int, reason: str, body: str = "", *, tag: str = ""
    ) -> str:
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in request.headers.values("Via")]
        lines += [f"Record-Route: {rr}" for rr in request.headers.values("Record-Route")]
        to = request.headers.get("To") or ""
        if tag and ";tag=" not in to:
            to += f";tag={tag}"
        lines += [
            f"From: {request.headers.get('From')}",
            f"To: {to}",
            f"Call-ID: {request.call_id}",
            f"CSeq: {request.cseq.seq} {request.cseq.method}",
        ]
        if request.method == "INVITE" and 200 <= status < 300:
            lines.append(f"Contact: <{self.contact}>")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    async def wait_invite(self, timeout: float = 15.0) -> SipRequest:
        invite = await self.next(method="INVITE", timeout=timeout)
        assert isinstance(invite, SipRequest)
        return invite

    async def answer(self, invite: SipRequest, rtp_port: int) -> None:
        """Ring, then answer 200 with an SDP for `rtp_port`; the dialog is ours from now."""
        tag = secrets.token_hex(5)
        await self.send(self.response_text(invite, 180, "Ringing", tag=tag))
        await self.send(self.response_text(invite, 200, "OK", rtp_sdp(rtp_port), tag=tag))
        contact = NameAddr.parse(invite.headers.values("Contact")[0]).uri
        self.dialog = Dialog(
            call_id=invite.call_id,
            local_uri=str(invite.to.uri),
            local_tag=tag,
            remote_uri=str(invite.from_.uri),
            remote_tag=invite.from_.tag or "",
            remote_target=str(contact),
            route_set=list(invite.headers.values("Record-Route")),
            seq=secrets.randbelow(1000) + 1,
        )

    async def ok(self, request: SipRequest) -> None:
        """200 to an in-dialog request (BYE, re-INVITE without SDP change, INFO)."""
        await self.send(self.response_text(request, 200, "OK"))

    # --- calling -----------------------------------------------------------

    def _invite_text(
        self, target: str, call_id: str, seq: int, tag: str, sdp: str, auth: str
    ) -> str:
        return (
            f"INVITE {target} SIP/2.0\r\n"
            f"Via: {self._via()}\r\n"
            "Max-Forwards: 69\r\n"
            f"To: <{target}>\r\n"
            f"From: <{self.aor}>;tag={tag}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {seq} INVITE\r\n"
            f"Contact: <{self.contact};ob>\r\n"
            f"{auth}"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
        )

    async def invite(self, target: str, rtp_port: int, timeout: float = 20.0) -> SipResponse:
        """INVITE `target` (a SIP URI), answering a 407 once; ACKs the final response."""
        call_id, tag, seq = secrets.token_hex(8), secrets.token_hex(5), 1
        sdp = rtp_sdp(rtp_port)
        await self.send(self._invite_text(target, call_id, seq, tag, sdp, ""))
        final = await self.final_response("INVITE", timeout)
        if final.status == 407:
            await self._ack_failure(final, target)
            challenges = [
                DigestChallenge.parse(value) for value in final.headers.values("Proxy-Authenticate")
            ]
            credentials = build_credentials(
                preferred_challenge(challenges), self.user, self.password, "INVITE", target
            )
            seq += 1
            auth = f"Proxy-Authorization: {credentials}\r\n"
            await self.send(self._invite_text(target, call_id, seq, tag, sdp, auth))
            final = await self.final_response("INVITE", timeout)
        if final.status >= 300:
            await self._ack_failure(final, target)
            return final
        contact = NameAddr.parse(final.headers.values("Contact")[0]).uri
        self.dialog = Dialog(
            call_id=call_id,
            local_uri=self.aor,
            local_tag=tag,
            remote_uri=target,
            remote_tag=final.to.tag or "",
            remote_target=str(contact),
            route_set=list(reversed(final.headers.values("Record-Route"))),
            seq=seq,
        )
        await self.send(self._in_dialog_text("ACK", seq))
        return final

    async def _ack_failure(self, final: SipResponse, target: str) -> None:
        """The ACK of a non-2xx: same branch as the INVITE, hop by hop (RFC 3261 17.1.1.3)."""
        via = final.headers.values("Via")[0]
        await self.send(
            f"ACK {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n"
            f"To: {final.headers.get('To')}\r\nFrom: {final.headers.get('From')}\r\n"
            f"Call-ID: {final.call_id}\r\nCSeq: {final.cseq.seq} ACK\r\n"
            "Content-Length: 0\r\n\r\n"
        )

    def _in_dialog_text(self, method: str, seq: int) -> str:
        dialog = self.dialog
        assert dialog is not None
        routes = "".join(f"Route: {route}\r\n" for route in dialog.route_set)
        return (
            f"{method} {dialog.remote_target} SIP/2.0\r\n"
            f"Via: {self._via()}\r\n"
            "Max-Forwards: 69\r\n"
            f"{routes}"
            f"To: <{dialog.remote_uri}>;tag={dialog.remote_tag}\r\n"
            f"From: <{dialog.local_uri}>;tag={dialog.local_tag}\r\n"
            f"Call-ID: {dialog.call_id}\r\n"
            f"CSeq: {seq} {method}\r\n"
            "Content-Length: 0\r\n\r\n"
        )

    async def wait_ack(self, timeout: float = 10.0) -> SipRequest:
        ack = await self.next(method="ACK", timeout=timeout)
        assert isinstance(ack, SipRequest)
        return ack

    async def bye(self, timeout: float = 10.0) -> SipResponse:
        """Hang up the dialog; the BYE's final response."""
        dialog = self.dialog
        assert dialog is not None
        dialog.seq += 1
        await self.send(self._in_dialog_text("BYE", dialog.seq))
        response = await self.final_response("BYE", timeout)
        self.dialog = None
        return response

    async def wait_bye(self, timeout: float = 30.0) -> SipRequest:
        """The other side hung up: the BYE, answered 200."""
        bye = await self.next(method="BYE", timeout=timeout)
        assert isinstance(bye, SipRequest)
        await self.ok(bye)
        self.dialog = None
        return bye

"""A gateway worker process: `python -m vpbx_media.webrtc.worker --fd N --media-address A`.

The node talks to it over one inherited unix stream socket: frames of a 4-byte
big-endian length and a JSON object. Requests carry an `id`; the reply has the same
`id` and either `sdp` or `error` (+ `status`, the SIP status the node should answer).
Unsolicited `{"event": "failed", "session": ..., "reason": ...}` frames tell the node a
session's transport failed (ICE or DTLS), so it can hang the call up.

Operations: offer_to_browser, answer_from_browser, offer_from_browser,
answer_to_browser (each with `session` and `sdp`), close (`session`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from typing import Any

import aioice.ice
from aiortc import RTCCertificate

from ..sdp import SdpError
from .rpc import ICE_TIMEOUT, encode_frame, read_frame
from .session import BridgeSession

log = logging.getLogger("vpbx.webrtc.worker")


class Worker:
    def __init__(
        self, writer: asyncio.StreamWriter, plain_address: str, ice_timeout: float = ICE_TIMEOUT
    ) -> None:
        self.writer = writer
        self.plain_address = plain_address
        self.ice_timeout = ice_timeout
        # One certificate for the worker's life: generating one per session would cost
        # an EC key per call, and browsers only check the fingerprint we announce.
        self.certificate = RTCCertificate.generateCertificate()
        self.sessions: dict[str, BridgeSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(encode_frame(message))

    def session_failed(self, session_id: str, reason: str) -> None:
        self.send({"event": "failed", "session": session_id, "reason": reason})

    def _session(self, session_id: str, create: bool) -> BridgeSession:
        session = self.sessions.get(session_id)
        if session is None:
            if not create:
                raise SdpError(f"no WebRTC session {session_id!r} in this worker")
            session = BridgeSession(
                session_id,
                certificate=self.certificate,
                plain_address=self.plain_address,
                on_failed=self.session_failed,
                ice_timeout=self.ice_timeout,
            )
            self.sessions[session_id] = session
        return session

    async def handle(self, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        op = request.get("op")
        session_id = str(request.get("session", ""))
        sdp = str(request.get("sdp", "")).encode()
        try:
            if op == "close":
                session = self.sessions.pop(session_id, None)
                if session is not None:
                    await session.close()
                self.send({"id": request_id, "ok": True})
                return
            if op == "offer_to_browser":
                reply = await self._session(session_id, True).offer_to_browser(sdp)
            elif op == "offer_from_browser":
                reply = await self._session(session_id, True).offer_from_browser(sdp)
            elif op == "answer_from_browser":
                reply = await self._session(session_id, False).answer_from_browser(sdp)
            elif op == "answer_to_browser":
                reply = await self._session(session_id, False).answer_to_browser(sdp)
            else:
                self.send({"id": request_id, "error": f"unknown op {op!r}", "status": 500})
                return
        except SdpError as exc:
            self.send({"id": request_id, "error": exc.reason, "status": 488})
            return
        except OSError as exc:
            log.warning("WebRTC session %s: %s failed: %s", session_id, op, exc)
            self.send({"id": request_id, "error": f"{op}: {exc}", "status": 503})
            return
        self.send({"id": request_id, "sdp": reply.decode()})

    async def serve(self, reader: asyncio.StreamReader) -> None:
        try:
            while (request := await read_frame(reader)) is not None:
                task = asyncio.get_running_loop().create_task(self.handle(request))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            # The node went away (or stopped us): every session's ports are freed.
            for session in list(self.sessions.values()):
                await session.close()
            self.sessions.clear()


async def _main(fd: int, plain_address: str, ice_timeout: float) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    worker = Worker(writer, plain_address, ice_timeout)
    writer.write(encode_frame({"event": "ready"}))
    await worker.serve(reader)
    writer.close()


def only_host_candidates(media_address: str) -> None:
    """ICE host candidates on the node's media address only, in this process.

    aioice gathers on every interface and skips 127.0.0.1; the gateway must offer the
    address the node advertises for media (and 127.0.0.1 locally), nothing else.
    """

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [media_address]

    aioice.ice.get_host_addresses = addresses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--media-address", default="127.0.0.1")
    parser.add_argument("--plain-address", default="127.0.0.1")
    parser.add_argument("--ice-timeout", type=float, default=ICE_TIMEOUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only_host_candidates(args.media_address)
    try:
        import uvloop

        uvloop.run(_main(args.fd, args.plain_address, args.ice_timeout))
    except KeyboardInterrupt:
        return


if __name__ == "__main__":
    main()

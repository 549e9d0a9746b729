"""The node's handle on its WebRTC workers: start/stop, the RPC, restarts.

Every call here is an await on a unix socket; the node's loop never blocks on a
worker. A session lives in one worker for its life (the least loaded at its first
offer). A worker that dies fails its pending requests and its sessions (the
`on_failed` callback, once per session), and is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sdp import SdpError
from .rpc import ICE_TIMEOUT, encode_frame, read_frame

log = logging.getLogger("vpbx.webrtc")
REQUEST_TIMEOUT = 10.0


class GatewayError(Exception):
    """The gateway could not carry the request (worker gone, timeout): answer 503."""


class WebRtcSdpError(SdpError):
    """The browser's (or the node's) SDP cannot be bridged: answer 488 with the reason."""


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class WebRtcGateway:
    def __init__(
        self,
        *,
        workers: int | None = None,
        media_address: str = "127.0.0.1",
        plain_address: str = "127.0.0.1",
        on_failed: Callable[[str, str], None] | None = None,
        ice_timeout: float = ICE_TIMEOUT,
    ) -> None:
        self.size = workers or os.cpu_count() or 1
        self.ice_timeout = ice_timeout
        self.media_address = media_address
        self.plain_address = plain_address
        self.on_failed = on_failed
        self._workers: list[_Worker | None] = [None] * self.size
        self._by_session: dict[str, _Worker] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self.restarts = 0

    async def start(self) -> None:
        self._stopping = False
        for index in range(self.size):
            await self._spawn(index)
        for worker in self._workers:
            assert worker is not None
            await asyncio.wait_for(worker.ready.wait(), REQUEST_TIMEOUT * 3)

    async def stop(self) -> None:
        self._stopping = True
        for worker in self._workers:
            if worker is None:
                continue
            worker.writer.close()
            try:
                await asyncio.wait_for(worker.process.wait(), 5)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            if worker.task is not None:
                worker.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.task
        self._workers = [None] * self.size
        self._by_session.clear()

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers if worker is not None]

    def has(self, session_id: str) -> bool:
        return session_id in self._by_session

    def sessions(self) -> int:
        return len(self._by_session)

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vpbx_media.webrtc.worker",
                "--fd",
                str(theirs.fileno()),
                "--media-address",
                self.media_address,
                "--plain-address",
                self.plain_address,
                "--ice-timeout",
                str(self.ice_timeout),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker = _Worker(index, process, reader, writer)
        worker.task = asyncio.get_running_loop().create_task(self._read(worker))
        self._workers[index] = worker
        return worker

    async def _read(self, worker: _Worker) -> None:
        try:
            while (message := await read_frame(worker.reader)) is not None:
                if "id" in message:
                    future = worker.pending.pop(int(message["id"]), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("event") == "ready":
                    worker.ready.set()
                elif message.get("event") == "failed":
                    self._session_failed(str(message.get("session")), str(message.get("reason")))
        except (ValueError, ConnectionError) as exc:
            log.warning("WebRTC worker %d: unreadable stream (%s)", worker.index, exc)
        await self._worker_gone(worker)

    def _session_failed(self, session_id: str, reason: str) -> None:
        worker = self._by_session.pop(session_id, None)
        if worker is not None:
            worker.sessions.discard(session_id)
        if self.on_failed is not None:
            self.on_failed(session_id, reason)

    async def _worker_gone(self, worker: _Worker) -> None:
        if self._workers[worker.index] is not worker:
            return
        self._workers[worker.index] = None
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(GatewayError("the WebRTC worker exited"))
        worker.pending.clear()
        for session_id in list(worker.sessions):
            self._session_failed(session_id, "the WebRTC worker exited")
        if worker.process.returncode is None:
            worker.process.kill()
        await worker.process.wait()
        if self._stopping:
            return
        log.warning(
            "WebRTC worker %d exited (%s); starting it again",
            worker.index,
            worker.process.returncode,
        )
        self.restarts += 1
        try:
            await self._spawn(worker.index)
        except OSError as exc:
            # The others carry on; this slot stays empty until the node restarts.
            log.error("WebRTC worker %d could not be started again: %s", worker.index, exc)

    def _least_loaded(self) -> _Worker:
        alive = [worker for worker in self._workers if worker is not None]
        if not alive:
            raise GatewayError("no WebRTC worker is running")
        return min(alive, key=lambda worker: len(worker.sessions))

    async def _request(self, worker: _Worker, message: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = future
        worker.writer.write(encode_frame({"id": request_id, **message}))
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT)
        except TimeoutError as exc:
            raise GatewayError(f"the WebRTC worker did not answer {message['op']}") from exc
        finally:
            worker.pending.pop(request_id, None)

    async def _sdp_op(self, op: str, session_id: str, sdp: bytes, *, first: bool) -> bytes:
        try:
            text = sdp.decode()
        except UnicodeDecodeError as exc:
            raise WebRtcSdpError("the SDP is not UTF-8") from exc
        worker = self._by_session.get(session_id)
        created = worker is None
        if worker is None:
            if not first:
                raise GatewayError(f"WebRTC session {session_id!r} is gone")
            worker = self._least_loaded()
            self._by_session[session_id] = worker
            worker.sessions.add(session_id)
        try:
            reply = await self._request(worker, {"op": op, "session": session_id, "sdp": text})
            if "error" in reply:
                if reply.get("status") == 488:
                    raise WebRtcSdpError(str(reply["error"]))
                raise GatewayError(str(reply["error"]))
        except (WebRtcSdpError, GatewayError):
            if created:
                # A session that never got going holds no call: free its worker's ports
                # now (the caller answers 488/503 and forgets the Call-ID).
                await self.close(session_id)
            raise
        return str(reply["sdp"]).encode()

    # Node -> browser: the node's plain offer becomes the INVITE's WebRTC offer; the
    # browser's answer becomes a plain answer (the gateway's plain port, 127.0.0.1).
    async def offer_to_browser(
        self, session_id: str, plain_offer: bytes, *, again: bool = False
    ) -> bytes:
        """``again``: a re-INVITE's offer, for a session that must still exist (one
        closed meanwhile is an error, not a new session nobody would close)."""
        return await self._sdp_op("offer_to_browser", session_id, plain_offer, first=not again)

    async def answer_from_browser(self, session_id: str, webrtc_answer: bytes) -> bytes:
        return await self._sdp_op("answer_from_browser", session_id, webrtc_answer, first=False)

    # Browser -> node: the INVITE's WebRTC offer becomes a plain offer; the node's plain
    # answer becomes the WebRTC answer for the 200 OK.
    async def offer_from_browser(
        self, session_id: str, webrtc_offer: bytes, *, again: bool = False
    ) -> bytes:
        """``again``: as for ``offer_to_browser``."""
        return await self._sdp_op("offer_from_browser", session_id, webrtc_offer, first=not again)

    async def answer_to_browser(self, session_id: str, plain_answer: bytes) -> bytes:
        return await self._sdp_op("answer_to_browser", session_id, plain_answer, first=False)

    async def close(self, session_id: str) -> None:
        """Free a session's ports (BYE, CANCEL, a failed INVITE). Unknown ids are fine."""
        worker = self._by_session.pop(session_id, None)
        if worker is None:
            return
        worker.sessions.discard(session_id)
        with contextlib.suppress(GatewayError):
            await self._request(worker, {"op": "close", "session": session_id})

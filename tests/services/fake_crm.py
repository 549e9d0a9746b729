"""A tiny HTTP server standing in for the CRM service's lookup (``vpbx_common.crm``).

It answers ``GET /internal/v1/lookup/<tenant>?phone=...`` from a phone book the test
edits while calls go on, keeps connections alive (so a test sees whether the node
reuses them), records every request, and can be slow, failing or send any body.
Fixture: ``fake_crm``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class CrmRequest:
    target: str  # path and query as sent
    headers: dict[str, str]  # names in lower case

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def phone(self) -> str:
        return parse_qs(urlsplit(self.target).query).get("phone", [""])[0]


@dataclass
class FakeCrm:
    book: dict[str, dict[str, Any]] = field(default_factory=dict)  # E.164 -> contact
    status: int = 200
    delay_s: float = 0.0
    body: bytes | None = None  # sent instead of the contract's document when set
    requests: list[CrmRequest] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def asked_for(self) -> list[str]:
        return [request.phone for request in self.requests]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:  # keep-alive: one request after the other on this connection
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                request = CrmRequest(request_line.split(" ")[1], headers)
                self.requests.append(request)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                body = self.body
                if body is None:
                    body = json.dumps({"contact": self.book.get(request.phone)}).encode()
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def fake_crm() -> AsyncIterator[FakeCrm]:
    crm = FakeCrm()
    listening = await asyncio.start_server(crm.handle, "127.0.0.1", 0)
    crm.port = listening.sockets[0].getsockname()[1]
    try:
        yield crm
    finally:
        listening.close()
        await crm.close()
        await listening.wait_closed()

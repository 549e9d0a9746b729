"""The node's HTTP decision client against a real HTTP server on loopback.

The server is a few lines of asyncio: it keeps connections alive (so a test can
see whether the client reuses them), records every request as received (head
and raw body), and answers as the test tells it (status, body, delay, chunked).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from vpbx_common.outbound import Destination, OutboundPolicy
from vpbx_common.signing import verify
from vpbx_media.node.decisions import DecisionClient, DecisionReply, encode_body
from vpbx_media.settings import NodeSettings

SECRET = "tenant-decision-secret-0123456789abcdef"
BODY: dict[str, object] = {
    "call_id": "a84b4c76e66710",
    "tenant": "acme",
    "number": "+74950000001",
    "caller": "+79161234567",
    "city": "msk",
    "label": "Яндекс.Директ",  # non-ASCII: signed as the UTF-8 sent
    "time": "2026-11-23T10:00:00Z",
}
LOCAL = OutboundPolicy(allow_private=True)
STRICT = OutboundPolicy(allow_private=False)


# --- the tenant's server ----------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"action":"target","target":"group:sales"}'
    delay_s: float = 0.0
    chunked: bool = False
    content_type: str = "application/json"


@dataclass
class TenantServer:
    answer: Answer = field(default_factory=Answer)
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, host: str = "127.0.0.1", path: str = "/vpbx/route") -> str:
        return f"http://{host}:{self.port}{path}"

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
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Received(request_line.split(" ")[1], headers, body))
                answer = self.answer
                if answer.delay_s:
                    await asyncio.sleep(answer.delay_s)
                writer.write(self._response(answer))
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    def _response(answer: Answer) -> bytes:
        head = f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
        if answer.status in (301, 302):
            head += "Location: http://127.0.0.1:9/elsewhere\r\n"
        if not answer.chunked:
            return f"{head}Content-Length: {len(answer.body)}\r\n\r\n".encode() + answer.body
        chunks = b"".join(
            f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            for piece in (answer.body[i : i + 1000] for i in range(0, len(answer.body), 1000))
        )
        return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def server() -> AsyncIterator[TenantServer]:
    tenant = TenantServer()
    listening = await asyncio.start_server(tenant.handle, "127.0.0.1", 0)
    tenant.port = listening.sockets[0].getsockname()[1]
    try:
        yield tenant
    finally:
        listening.close()
        await tenant.close()
        await listening.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[DecisionClient]:
    """A started client whose policy allows loopback (local mode)."""
    decisions = DecisionClient(OutboundPolicy(allow_private=True), tenant="acme")
    await decisions.start()
    try:
        yield decisions
    finally:
        await decisions.stop()


async def _ask(
    client: DecisionClient, url: str, *, secret: str | None = SECRET, timeout_s: float = 2.0
) -> DecisionReply:
    return await client.ask(url, BODY, secret=secret, timeout_s=timeout_s)


# --- replies ------------------------------------------------------------------------------


async def test_a_2xx_json_reply_is_parsed(server: TenantServer, client: DecisionClient) -> None:
    reply = await _ask(client, server.url())
    assert reply == DecisionReply(
        200, {"action": "target", "target": "group:sales"}, None, reply.elapsed_ms
    )
    assert reply.ok
    assert 0 <= reply.elapsed_ms < 2000
    [request] = server.requests
    assert request.path == "/vpbx/route"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("vpbx-decisions/")
    assert json.loads(request.body) == BODY
    assert request.body == encode_body(BODY)

    server.answer = Answer(status=201, body=b'[1, "two"]')  # any 2xx, any JSON
    assert (await _ask(client, server.url())).document == [1, "two"]


async def test_the_signature_verifies_over_the_exact_bytes_sent(
    server: TenantServer, client: DecisionClient
) -> None:
    await _ask(client, server.url())
    [request] = server.requests
    header = request.headers["x-vpbx-signature"]
    assert header.startswith("t=")
    assert verify(SECRET, header, request.body)
    assert not verify(SECRET + "x", header, request.body)
    assert not verify(SECRET, header, request.body + b" ")
    assert not verify(SECRET, header, json.dumps(BODY).encode())  # other bytes, same JSON

    await _ask(client, server.url(), secret=None)  # no secret yet: sent unsigned
    assert "x-vpbx-signature" not in server.requests[-1].headers


async def test_a_reply_after_the_timeout_is_a_timeout(
    server: TenantServer, client: DecisionClient
) -> None:
    server.answer = Answer(delay_s=3.0)
    started = time.monotonic()
    reply = await _ask(client, server.url(), timeout_s=0.4)
    took = time.monotonic() - started
    assert reply.error == "timeout"
    assert (reply.status, reply.document) == (None, None)
    assert 0.4 <= took < 0.4 + 0.3
    assert 400 <= reply.elapsed_ms < 700
    assert len(server.requests) == 1  # it was sent; the answer came too late

    # A server that accepts and never reads: the same deadline, connect and send included.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    try:
        started = time.monotonic()
        stalled = await _ask(client, f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_s=0.3)
        assert stalled.error == "timeout"
        assert time.monotonic() - started < 0.3 + 0.3
    finally:
        silent.close()


@pytest.mark.parametrize(("status", "error"), [(500, "http 500"), (404, "http 404")])
async def test_a_non_2xx_reply_is_an_error_with_its_status(
    server: TenantServer, client: DecisionClient, status: int, error: str
) -> None:
    server.answer = Answer(status=status, body=b'{"action":"hangup"}')
    reply = await _ask(client, server.url())
    assert (reply.status, reply.document, reply.error) == (status, None, error)


async def test_redirects_are_not_followed(server: TenantServer, client: DecisionClient) -> None:
    server.answer = Answer(status=302, body=b"")
    reply = await _ask(client, server.url())
    assert (reply.status, reply.error) == (302, "http 302")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body", [b"<html>busy</html>", b"", b'{"action": ', b"\xff\xfe{}", b"[" * 10_000]
)
async def test_a_reply_that_is_not_json_is_an_error(
    server: TenantServer, client: DecisionClient, body: bytes
) -> None:
    server.answer = Answer(body=body, content_type="text/html")
    reply = await _ask(client, server.url())
    assert (reply.status, reply.document, reply.error) == (200, None, "not json")


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_reply_is_not_read(
    server: TenantServer, client: DecisionClient, chunked: bool
) -> None:
    limit = client.max_reply_bytes
    assert limit == 16 * 1024
    fits = json.dumps({"action": "hangup", "pad": "x" * (limit - 40)}).encode()
    assert len(fits) <= limit
    server.answer = Answer(body=fits, chunked=chunked)
    assert (await _ask(client, server.url())).ok

    server.answer = Answer(body=json.dumps({"pad": "x" * limit}).encode(), chunked=chunked)
    reply = await _ask(client, server.url())
    assert (reply.status, reply.document, reply.error) == (200, None, "too large")


async def test_a_refused_connection_is_an_error(client: DecisionClient) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there
    reply = await _ask(client, f"http://127.0.0.1:{port}/route")
    assert (reply.status, reply.error) == (None, "connection failed")


@pytest.mark.parametrize("policy", [LOCAL, STRICT], ids=["local", "strict"])
async def test_an_unusable_url_is_an_error_not_an_exception(policy: OutboundPolicy) -> None:
    decisions = DecisionClient(policy)
    for url in (
        "ftp://crm.example.com/route",
        "http://",
        "not a url",
        "http://crm.example.com:99999/route",
        "http://[::1/route",
    ):
        reply = await _ask(decisions, url, timeout_s=0.5)
        assert reply.error is not None, url
        assert reply.document is None


# --- the outbound policy and pinning ------------------------------------------------------


async def test_private_addresses_are_refused_outside_local_mode(
    server: TenantServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VPBX_OUTBOUND_PRIVATE_ALLOWED", raising=False)
    strict = DecisionClient.from_settings(NodeSettings(mode="cluster", tenant="acme"))
    local = DecisionClient.from_settings(NodeSettings(mode="local", tenant="acme"))
    assert not strict.outbound.allow_private
    assert local.outbound.allow_private
    for decisions in (strict, local):
        await decisions.start()
    try:
        for url in (
            server.url(),
            server.url("localhost"),
            server.url("[::ffff:127.0.0.1]"),
            server.url("2130706433"),
        ):
            refused = await _ask(strict, url)
            assert (refused.status, refused.error) == (None, "refused by outbound policy"), url
        assert server.requests == []

        allowed = await _ask(local, server.url())
        assert allowed.ok
        assert len(server.requests) == 1
    finally:
        for decisions in (strict, local):
            await decisions.stop()

    # The override, as on the control API.
    monkeypatch.setenv("VPBX_OUTBOUND_PRIVATE_ALLOWED", "true")
    assert DecisionClient.from_settings(NodeSettings(mode="cluster")).outbound.allow_private
    monkeypatch.setenv("VPBX_OUTBOUND_PRIVATE_ALLOWED", "false")
    assert not DecisionClient.from_settings(NodeSettings(mode="local")).outbound.allow_private


async def test_a_name_resolving_inside_is_refused_at_send_time(server: TenantServer) -> None:
    host = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    if all(ipaddress.ip_address(address).is_global for address in resolved):
        pytest.skip(f"{host} resolves to public addresses only ({resolved})")
    assert STRICT.problem(server.url(host)) is None  # the text of the URL is fine
    decisions = DecisionClient(STRICT)
    reply = await _ask(decisions, server.url(host))  # not started: a one-off client
    assert reply.error == "refused by outbound policy"
    assert server.requests == []


class ResolvesTo(OutboundPolicy):
    """The strict policy, with DNS answered by the test: every name is ``address``."""

    def __init__(self, address: str) -> None:
        super().__init__(allow_private=False)
        self.address = ipaddress.ip_address(address)
        self.resolved: list[str] = []

    async def destination(self, url: str) -> Destination:
        problem = self.problem(url)
        assert problem is None, problem
        host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
        self.resolved.append(host)
        return Destination(host, self.address)


async def test_the_request_goes_to_the_checked_address_with_its_host(
    server: TenantServer,
) -> None:
    policy = ResolvesTo("127.0.0.1")
    decisions = DecisionClient(policy)
    await decisions.start()
    try:
        url = server.url("crm.example.com")  # DNS would not send this to loopback
        first = await _ask(decisions, url)
        second = await _ask(decisions, url)
    finally:
        await decisions.stop()
    assert first.ok
    assert second.ok
    assert policy.resolved == ["crm.example.com", "crm.example.com"]  # checked at every send
    assert [request.headers["host"] for request in server.requests] == [
        f"crm.example.com:{server.port}"
    ] * 2
    assert all(verify(SECRET, r.headers["x-vpbx-signature"], r.body) for r in server.requests)
    # Pinned requests never share a connection, even with a server that keeps them open.
    assert server.connections == 2


async def test_local_mode_reuses_connections(server: TenantServer, client: DecisionClient) -> None:
    assert (await _ask(client, server.url())).ok
    assert (await _ask(client, server.url())).ok
    assert server.connections == 1


# --- lifecycle and logging ----------------------------------------------------------------


async def test_start_stop_and_asking_without_start(server: TenantServer) -> None:
    decisions = DecisionClient(LOCAL)
    assert (await _ask(decisions, server.url())).ok  # one-off client
    await decisions.start()
    await decisions.start()  # idempotent
    assert (await _ask(decisions, server.url())).ok
    await decisions.stop()
    await decisions.stop()
    assert (await _ask(decisions, server.url())).ok  # after stop (draining calls): still answers


async def test_failures_are_logged_once_with_call_and_tenant_never_the_secret(
    server: TenantServer, client: DecisionClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="vpbx_media.node.decisions")
    await _ask(client, server.url())
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []  # success: quiet

    server.answer = Answer(status=503)
    caplog.clear()
    await _ask(client, server.url())
    [line] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert line.levelno == logging.INFO
    message = line.getMessage()
    assert "call=a84b4c76e66710" in message
    assert "tenant=acme" in message
    assert "http 503" in message
    assert SECRET not in message

    caplog.clear()
    await client.ask(
        server.url(), {"caller": "+79161234567"}, secret=SECRET, timeout_s=1
    )  # a body without them: the client's own tenant
    [line] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert "call=- tenant=acme" in line.getMessage()
    assert all(SECRET not in record.getMessage() for record in caplog.records)

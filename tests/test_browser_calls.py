"""Browsers as SIP devices: SIP over WebSocket (RFC 7118) through the edge, end to end.

`vpbx up` of the demo in a subprocess; the browser is tests/services/sipws.py (what
JsSIP in the agent workspace sends: a `.invalid` Via and Contact, `transport=ws`),
registering as acme's 101 with its SIP password. A carrier (sipp) calls acme's main
number and the browser answers; the browser calls 102 (baresip over UDP). The media
is plain RTP to a UDP socket of the test: the node does not speak WebRTC yet.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import aiohttp
import pytest
import redis

from tests.services.baresip import BaresipFactory
from tests.services.platform import RunningPlatform
from tests.services.sipp import SippFactory
from tests.services.sipws import SipWsClient
from tests.test_first_call import ACME_MAIN, CALLER, register

pytestmark = pytest.mark.integration

DOMAIN = "acme.vpbx.local"


@pytest.fixture
def platform(shared_platform: RunningPlatform) -> RunningPlatform:
    shared_platform.wait_until_idle()
    return shared_platform.for_one_test()


@pytest.fixture
def rtp_port() -> Iterator[int]:
    """A UDP socket of the test's own, where the browser's SDP says its media is."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def bindings_of(platform: RunningPlatform, extension: str) -> list[dict[str, object]]:
    """What acme's registrar stored for `extension` (vpbx_media.node.bindings)."""
    client = redis.Redis.from_url(platform.env["VPBX_REDIS_URL"])
    try:
        return [json.loads(value) for value in client.hvals(f"vpbx:reg:acme:{extension}")]
    finally:
        client.close()


def browser(platform: RunningPlatform, user: str = "101") -> SipWsClient:
    return SipWsClient(platform.sip_ws_url, user, f"acme-{user}-secret", DOMAIN)


async def test_a_browser_registers_and_answers_a_carrier_call(
    platform: RunningPlatform, sipp_factory: SippFactory, rtp_port: int
) -> None:
    agent = browser(platform)
    await agent.connect()
    try:
        registered = await agent.register()
        assert registered.status == 200, registered
        # The registrar kept the browser's own Contact (the node tells WebRTC devices by it).
        assert any(agent.contact in value for value in registered.headers.values("Contact"))
        # ... with the edge's Path, by which the node reaches it.
        (binding,) = bindings_of(platform, "101")
        assert binding["contact"] == agent.contact
        assert len(binding["path"]) == 1
        assert f":{platform.sip_port};lr;vt=" in binding["path"][0]

        caller = sipp_factory(
            "uac_call.xml",
            remote=(platform.host, platform.sip_port),
            service=ACME_MAIN,
            keys={"domain": platform.host, "caller": CALLER},
            pause_ms=1000,
            timeout=40,
        )
        caller.start()
        invite = await agent.wait_invite(timeout=20)
        assert invite.sip_uri.host == agent.invalid_host
        await agent.answer(invite, rtp_port)
        await agent.wait_ack()
        # The carrier hangs up; its BYE reaches the browser over its WebSocket.
        await agent.wait_bye(timeout=30)
        result = await asyncio.to_thread(caller.wait, 40)
        assert result.all_succeeded, result.describe()

        (record,) = await asyncio.to_thread(platform.calls, 1, wait_for=1)
        assert record["dialled"] == ACME_MAIN
        assert record["answered_by"] == "101"
        assert await agent.register(expires=0) is not None
    finally:
        await agent.close()


async def test_a_browser_calls_a_colleague_and_hangs_up(
    platform: RunningPlatform, baresip_factory: BaresipFactory, rtp_port: int
) -> None:
    colleague = register(baresip_factory, platform, "102", "acme-102-secret", DOMAIN)
    agent = browser(platform)
    await agent.connect()
    try:
        assert (await agent.register()).status == 200
        # The node challenges the INVITE (407); the browser answers with its password.
        final = await agent.invite(f"sip:102@{DOMAIN}", rtp_port, timeout=20)
        assert final.status == 200, final
        await asyncio.to_thread(colleague.wait_call_state, "ESTABLISHED", 10)
        ended = await agent.bye()
        assert ended.status == 200
        await asyncio.to_thread(colleague.wait_no_calls, 10)

        (record,) = await asyncio.to_thread(platform.calls, 1, wait_for=1)
        assert record["caller"] == "101"
        assert record["answered_by"] == "102"
        await agent.register(expires=0)
    finally:
        await agent.close()
        colleague.stop()


async def test_bad_websocket_clients_do_not_disturb_the_others(
    platform: RunningPlatform,
) -> None:
    edge_pid = platform.pid_of("edge")
    agent = browser(platform)
    await agent.connect()
    try:
        async with aiohttp.ClientSession() as session:
            # No `sip` subprotocol: refused (RFC 7118 section 4.1).
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(platform.sip_ws_url)
            assert refused.value.status == 400
            async with session.ws_connect(platform.sip_ws_url, protocols=("sip",)) as rogue:
                await rogue.send_str("INVITE garbage\r\n\r\n")
                await rogue.send_bytes(b"\x00\xff" * 100)
                await rogue.send_str("SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n")
                # Over the 64 KiB limit: that connection is closed, nothing else is.
                await rogue.send_str("OPTIONS sip:x SIP/2.0\r\n" + "X: y\r\n" * 20_000)
                closing = await rogue.receive(timeout=10)
                assert closing.type is aiohttp.WSMsgType.CLOSE
                assert closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        registered = await agent.register()
        assert registered.status == 200
        await agent.register(expires=0)
    finally:
        await agent.close()
    assert platform.pid_of("edge") == edge_pid

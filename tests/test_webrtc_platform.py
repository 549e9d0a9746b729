"""A browser agent on the whole platform: `vpbx up` (edge, node, its WebRTC gateway
worker), a carrier's call (sipp, echoing the RTP it gets) to the tenant's number,
answered by 101 from a browser.

The browser registers through the edge as JsSIP would, its Contact saying
;transport=ws, but over UDP: the edge's WebSocket transport is not built yet, and
the contract is the Contact. The browser (aiortc) answers the node's WebRTC offer and
sends 1 kHz; sipp echoes what reaches it, so the browser hearing its own 1 kHz back
proves the audio went both ways: browser -> gateway -> relay -> carrier -> relay ->
gateway -> browser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.services.browser import Browser
from tests.services.objects import dominant_frequency
from tests.services.platform import RunningPlatform
from tests.services.sipp import SippFactory
from tests.services.sippeers import WebSocketPhone
from tests.test_call_routing import ACME, ACME_MAIN, CALLER, PASSWORDS

pytestmark = pytest.mark.integration

TIMEOUT = 20.0


@pytest.fixture
def platform(shared_platform: RunningPlatform) -> RunningPlatform:
    shared_platform.wait_until_idle()
    return shared_platform.for_one_test()


@pytest.fixture
async def browser_101(platform: RunningPlatform) -> AsyncIterator[WebSocketPhone]:
    phone = WebSocketPhone("101")
    await phone.open()
    edge = (platform.host, platform.sip_port)
    await phone.register(edge, PASSWORDS["101"], ACME)
    try:
        yield phone
    finally:
        await phone.register(edge, PASSWORDS["101"], ACME, expires=0)
        phone.close()


async def test_a_carrier_call_answered_in_a_browser_carries_audio_both_ways(
    platform: RunningPlatform, browser_101: WebSocketPhone, sipp_factory: SippFactory
) -> None:
    sipp = sipp_factory(
        "uac_call_echo.xml",
        remote=(platform.host, platform.sip_port),
        service=ACME_MAIN,
        keys={"domain": platform.host, "caller": CALLER},
        timeout=60,
        pause_ms=6000,
        rtp_echo=True,
    )
    carrier = asyncio.create_task(asyncio.to_thread(sipp.run))
    browser = Browser(1000)
    try:
        invite = await browser_101.ringing(timeout=TIMEOUT)
        assert b"UDP/TLS/RTP/SAVPF" in invite.body, invite.body
        browser_101.reply(200, body=await browser.answer(invite.body))
        await browser.connected(timeout=TIMEOUT)

        def hears_itself() -> bool:
            samples = browser.heard()
            if len(samples) < 8000:
                return False
            return abs(dominant_frequency(samples[-8000:], 8000) - 1000) < 10

        for _ in range(int(TIMEOUT / 0.1)):
            if hears_itself():
                break
            await asyncio.sleep(0.1)
        assert hears_itself(), "the browser did not hear its 1 kHz echoed by the carrier"
        # sipp hangs up after its pause: the browser gets the BYE.
        await browser_101.bye_answered()
        result = await carrier
        assert result.all_succeeded, result.describe() + platform.log()[-4000:]
        assert (result.rtp_packets_echoed or 0) >= 100, result.describe()
    finally:
        await browser.close()
        if not carrier.done():
            await asyncio.wait_for(carrier, 60)
    records = await asyncio.to_thread(platform.calls, 1, wait_for=1)
    assert len(records) == 1, platform.log()[-4000:]
    [record] = records
    assert record["answered_by"] == "101"
    assert record["end_reason"] == "completed"
    assert record["hangup_by"] == "caller"

"""A queue callback end to end: real phones, a real platform, the caller called back.

`vpbx up` in a subprocess; baresip plays the agent (extension 101, a 1 kHz tone) and
the outside callers. The first caller (a 600 Hz tone, recording what it hears) waits
in the sales queue, presses 1 to be called back and is hung up on; a second caller
waits behind it. When the agent becomes available, the callback keeps the first
place: the agent's phone rings first for it, and once the agent answers the node
calls the first caller back through a tenant trunk that points at that caller's
phone. Both hear each other; only then does the second caller get the agent.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.services.baresip import Baresip, BaresipFactory
from tests.services.platform import RunningPlatform
from tests.test_call_media import CALLER_HZ, caller_phone
from tests.test_call_routing import (
    ACME,
    ACME_MAIN,
    CALLER,
    PASSWORDS,
    admin_api,
    created,
    dominant_hz,
    ids_by_extension,
    route_main_number,
    sales_group,
    set_sales,
    settled_calls,
    wait_for_reload,
)
from tests.test_calls_out import add_trunk

pytestmark = pytest.mark.integration

AGENT_HZ = 1000
SECOND_CALLER = "+79130000002"


# With baresip's jitter buffer on (its default): it keeps the buffer's sequence state
# across a change of sender (ringback from the node, then the relayed caller), which the
# relay's one outgoing stream per leg makes harmless (docs/architecture.md, Node).
def recording_agent(factory: BaresipFactory, platform: RunningPlatform) -> Baresip:
    phone = factory(
        "101",
        PASSWORDS["101"],
        ACME,
        proxy=(platform.host, platform.sip_port),
        record=True,
    )
    phone.start()
    phone.wait_registered(timeout=15)
    return phone


def wait_until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.2)


def test_a_caller_called_back_keeps_their_place_and_talks_with_the_agent(
    platform_factory: Any, baresip_factory: BaresipFactory
) -> None:
    platform: RunningPlatform = platform_factory()
    anna = recording_agent(baresip_factory, platform)
    first = caller_phone(baresip_factory, platform)
    second = caller_phone(baresip_factory, platform, SECOND_CALLER)
    with admin_api(platform) as api:
        set_sales(api, ["101"])
        users = ids_by_extension(api)
        # The only agent is on do-not-disturb: callers wait.
        dnd = api.put(f"/v1/users/{users['101']}/presence", json={"presence": "do-not-disturb"})
        assert dnd.status_code == 200, dnd.text
        plan = created(
            api,
            "/v1/route-plans",
            {
                "name": "callback",
                "steps": [
                    {
                        "type": "queue",
                        "group_id": sales_group(api)["id"],
                        "max_wait_s": 300,
                        "callback_digit": "1",
                        "callback_attempts": 2,
                        "callback_retry_s": 30,
                    }
                ],
            },
        )
        route_main_number(api, {"type": "route-plan", "route_plan_id": plan["id"]})
        # The carrier the node calls back through: it delivers straight to the first
        # caller's phone (a number's owner, as far as the platform can tell).
        add_trunk(api, "callbacks", first.local_port, 1)
    wait_for_reload(platform)

    first.dial(f"sip:{ACME_MAIN}@{platform.host}")
    first.wait_call_state("ESTABLISHED", timeout=15)  # the queue answers
    time.sleep(1.0)
    second.dial(f"sip:{ACME_MAIN}@{platform.host}")
    second.wait_call_state("ESTABLISHED", timeout=15)  # waits behind the first
    first.send_digits("1")
    first.wait_no_calls(timeout=60)  # confirmed, then hung up on

    with admin_api(platform) as api:
        [booked] = wait_until(
            "the callback listed",
            lambda: api.get("/v1/callbacks", params={"status": "waiting"}).json()["items"],
            10,
        )
        assert (booked["caller"], booked["dialled_number"], booked["position"]) == (
            CALLER,
            ACME_MAIN,
            1,
        )
        back = api.put(f"/v1/users/{users['101']}/presence", json={"presence": "available"})
        assert back.status_code == 200, back.text

    # The agent gets the callback first (their phone shows the caller's number), then
    # the first caller's phone rings with the number they called, and both talk.
    first.wait_call_state("ESTABLISHED", timeout=30)
    anna.wait_call_state("ESTABLISHED", timeout=5)
    time.sleep(3.0)
    anna.hangup()
    first.wait_no_calls(timeout=10)
    # Now the second caller, who waited all along, gets the agent.
    wait_until("the second caller answered", lambda: len(anna.heard()) >= 2, 30)
    time.sleep(1.0)
    second.hangup()

    records = settled_calls(platform, 3)
    callback = next(r for r in records if r["direction"] == "outbound")
    waited = next(r for r in records if r["caller"] == SECOND_CALLER)
    booking = next(r for r in records if r["caller"] == CALLER and r["direction"] == "inbound")
    assert booking["end_reason"] == "callback", platform.log()[-3000:]
    assert (callback["caller"], callback["dialled"], callback["end_reason"]) == (
        "101",
        CALLER,
        "completed",
    )
    assert callback["route"][0]["subject"] == "queue-callback"
    assert (waited["answered_by"], waited["end_reason"]) == ("101", "completed")
    assert int(waited["answer_ms"]) > int(callback["answer_ms"])  # the place was kept

    # They heard each other: the caller the agent's tone, the agent the caller's.
    # baresip completes a recording's WAV header when it lets the file go: at the latest
    # when it stops.
    anna.stop()
    first.stop()
    called_back = first.heard()[-1]
    agent_side = anna.heard()[0]
    caller_hears, _ = dominant_hz(called_back, 1.0, 1.0)
    agent_hears, _ = dominant_hz(agent_side, 1.0, 1.0)
    assert abs(caller_hears - AGENT_HZ) < 15, caller_hears
    assert abs(agent_hears - CALLER_HZ) < 15, agent_hears

    with admin_api(platform) as api:
        [done] = wait_until(
            "the callback connected",
            lambda: api.get("/v1/callbacks", params={"status": "connected"}).json()["items"],
            10,
        )
        assert [(a["agent_extension"], a["outcome"]) for a in done["attempts"]] == [
            ("101", "answered")
        ]

"""A node whose RTP port range is full refuses the next call with 503, not 500.

`vpbx up` with 8 RTP ports per node (4 RTP/RTCP pairs: two 2-leg calls), sipp as the
carrier and as globex's registered phone, all on loopback.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable

import pytest

from tests.services.platform import RunningPlatform
from tests.services.ports import free_port
from tests.services.sipp import SippFactory, SippResult

pytestmark = pytest.mark.integration

GLOBEX_MAIN = "+74950000009"  # routes straight to globex extension 101
CALLER = "+79130000001"
PORTS_PER_NODE = 8
CALLS_THAT_FIT = PORTS_PER_NODE // 4
HOLD_MS = 4000


def received(result: SippResult, status: int) -> list[str]:
    """The responses with `status` sipp received (from its -trace_msg file)."""
    text = (result.workdir / "messages.log").read_text(errors="replace")
    messages = []
    for chunk in re.split(r"^-{20,}[^\n]*\n", text, flags=re.MULTILINE):
        heading, _, message = chunk.strip().partition("\n")
        if heading.startswith("UDP message received") and message.strip().startswith(
            f"SIP/2.0 {status} "
        ):
            messages.append(message.strip())
    return messages


def test_one_call_more_than_the_port_range_holds_gets_503_and_a_cdr(
    platform_factory: Callable[..., RunningPlatform], sipp_factory: SippFactory
) -> None:
    platform = platform_factory(rtp_ports_per_node=PORTS_PER_NODE)
    edge = (platform.host, platform.sip_port)
    phone_port = free_port(socket.SOCK_DGRAM)
    registered = sipp_factory(
        "register.xml",
        remote=edge,
        local_port=phone_port,
        keys={"domain": "globex.vpbx.local", "user": "101", "expires": "600"},
        credentials=("101", "globex-101-secret"),
    ).run()
    assert registered.all_succeeded, registered.describe()
    phone = sipp_factory(
        "uas_bench.xml", local_port=phone_port, calls=CALLS_THAT_FIT + 1, timeout=60
    )
    phone.start()
    carrier: dict[str, object] = {
        "remote": edge,
        "service": GLOBEX_MAIN,
        "keys": {"domain": platform.host, "caller": CALLER},
    }
    held = sipp_factory(
        "uac_bench.xml",
        calls=CALLS_THAT_FIT,
        call_rate=20,
        pause_ms=HOLD_MS,
        timeout=40,
        **carrier,
    )
    held.start()
    # Both answered, holding every port pair of the node (the relays say so in the log).
    deadline = time.monotonic() + 15
    while platform.log().count("relay new -> running") < CALLS_THAT_FIT:
        if time.monotonic() > deadline:
            finished = held.stop()
            raise AssertionError(
                "the calls to hold did not start: "
                + (finished.describe() if finished else "sipp did not run")
            )
        time.sleep(0.1)

    refused = sipp_factory(
        "uac_expect.xml", variables={"expected_status": "503"}, timeout=30, **carrier
    ).run()

    assert refused.all_succeeded, refused.describe() + platform.log()[-3000:]
    (answer,) = received(refused, 503)
    assert re.search(r"^Retry-After: *\d+", answer, re.MULTILINE), answer
    held_result = held.wait()
    assert held_result.all_succeeded, held_result.describe()  # the calls before: unaffected
    # Their ports are back: the next call goes through.
    after = sipp_factory(
        "uac_expect.xml", variables={"expected_status": "200"}, timeout=30, **carrier
    ).run()
    assert after.all_succeeded, after.describe() + platform.log()[-3000:]

    records = platform.calls(10, wait_for=CALLS_THAT_FIT + 2)
    reasons = sorted((record["end_reason"], record["sip_status"]) for record in records)
    assert reasons == [("completed", 200)] * (CALLS_THAT_FIT + 1) + [("no-capacity", 503)]
    (lost,) = [record for record in records if record["end_reason"] == "no-capacity"]
    assert (lost["dialled"], lost["answered_by"], lost["hangup_by"]) == (GLOBEX_MAIN, "", "system")

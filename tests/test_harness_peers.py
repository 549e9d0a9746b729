"""The real-peer harness works on its own, with no vpbx code: sipp and baresip talk directly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.services.baresip import BaresipFactory, RegistrationStatus
from tests.services.sipp import SippExit, SippFactory, uas_reject_scenario

pytestmark = pytest.mark.integration

CALL_MS = 2000
# 20 ms packets: a 2 s call carries about 100 each way; allow for start-up and teardown.
MIN_PACKETS = 60

# A registrar stand-in: one REGISTER answered with a fixed status (filled in below).
REGISTRAR_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="test registrar">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[

      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=60
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def test_sipp_calls_baresip_and_media_flows_both_ways(
    sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    callee = baresip_factory("alice")
    callee.start()
    caller = sipp_factory(
        "uac_call.xml",
        remote=(callee.host, callee.local_port),
        service=callee.user,
        keys={"domain": callee.host, "caller": "79130000001"},
        pause_ms=CALL_MS,
        timeout=20,
    )
    caller.start()
    established = callee.wait_call_state("ESTABLISHED", timeout=10)
    assert "79130000001" in established.peer_uri

    result = caller.wait()

    assert result.all_succeeded, result.describe()
    assert result.successful_calls == 1
    assert result.response_times_ms, "the INVITE's response time was not traced"
    assert result.rtp_packets_sent is not None
    assert result.rtp_packets_sent >= MIN_PACKETS, result.describe()
    callee.wait_no_calls(timeout=5)
    [stats] = callee.wait_rtp_stats(count=1)
    assert stats.packets_received >= MIN_PACKETS, callee.log_tail()
    assert stats.packets_sent >= MIN_PACKETS, callee.log_tail()
    assert stats.errors_received == 0


def test_sipp_echo_counts_what_baresip_sends(
    sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    callee = baresip_factory("bob")
    callee.start()
    caller = sipp_factory(
        "uac_call_echo.xml",
        remote=(callee.host, callee.local_port),
        service=callee.user,
        keys={"domain": callee.host, "caller": "79130000002"},
        pause_ms=CALL_MS,
        rtp_echo=True,
        timeout=20,
    )

    result = caller.run()

    assert result.all_succeeded, result.describe()
    assert result.rtp_packets_echoed is not None, result.describe()
    assert result.rtp_packets_echoed >= MIN_PACKETS
    [stats] = callee.wait_rtp_stats(count=1)
    # Everything sipp received went back: baresip hears its own tone.
    assert stats.packets_received >= MIN_PACKETS, callee.log_tail()


def test_baresip_hangs_up_and_sipp_sees_the_bye(
    sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    caller = baresip_factory("carol")
    caller.start()
    # uas_answer.xml plays the tone and waits for BYE: here baresip dials it and hangs up.
    answerer = sipp_factory("uas_answer.xml", timeout=20)
    answerer.start()
    caller.dial(f"sip:answer@{answerer.local_ip}:{answerer.local_port}")
    caller.wait_call_state("ESTABLISHED", timeout=10)
    time.sleep(1.0)  # let media flow before hanging up

    caller.hangup()

    caller.wait_no_calls(timeout=5)
    [stats] = caller.wait_rtp_stats(count=1)
    result = answerer.wait()
    assert result.all_succeeded, result.describe()
    assert stats.packets_received >= 20, caller.log_tail()


def test_sipp_uac_against_sipp_uas(sipp_factory: SippFactory) -> None:
    answerer = sipp_factory("uas_answer.xml", timeout=20)
    answerer.start()
    caller = sipp_factory(
        "uac_call.xml",
        remote=(answerer.local_ip, answerer.local_port),
        service="100",
        keys={"domain": "pbx.test", "caller": "200"},
        pause_ms=1000,
        timeout=20,
    )

    uac = caller.run()
    uas = answerer.wait()

    assert uac.all_succeeded, uac.describe()
    assert uas.all_succeeded, uas.describe()
    assert uac.rtp_packets_sent is not None
    assert uac.rtp_packets_sent >= 30


def test_cancel_before_answer(sipp_factory: SippFactory) -> None:
    ringer = sipp_factory("uas_reject.xml", timeout=20)
    ringer.start()
    caller = sipp_factory(
        "uac_cancel.xml",
        remote=(ringer.local_ip, ringer.local_port),
        service="100",
        keys={"domain": "pbx.test", "caller": "200"},
        timeout=20,
    )

    uac = caller.run()
    uas = ringer.wait()

    assert uac.all_succeeded, uac.describe()
    assert uas.all_succeeded, uas.describe()


@pytest.mark.parametrize(
    ("rejected_with", "expected", "succeeds"), [(480, "480", True), (480, "404", False)]
)
def test_expected_final_status(
    sipp_factory: SippFactory, tmp_path: Path, rejected_with: int, expected: str, succeeds: bool
) -> None:
    ringer = sipp_factory(
        uas_reject_scenario(tmp_path, rejected_with, "Temporarily Unavailable"), timeout=20
    )
    ringer.start()
    caller = sipp_factory(
        "uac_expect.xml",
        remote=(ringer.local_ip, ringer.local_port),
        service="100",
        keys={"domain": "pbx.test", "caller": "200"},
        variables={"expected_status": expected},
        timeout=20,
    )

    result = caller.run()
    ringer.wait()

    if succeeds:
        assert result.all_succeeded, result.describe()
    else:
        assert result.exit is SippExit.SOME_CALLS_FAILED, result.describe()
        assert result.failed_calls == 1
        assert f"expected final status {expected}, got {rejected_with}" in result.logs


@pytest.mark.parametrize(("status", "registered"), [("200 OK", True), ("403 Forbidden", False)])
def test_baresip_registration_outcome(
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
    tmp_path: Path,
    status: str,
    registered: bool,
) -> None:
    scenario = tmp_path / "registrar.xml"
    scenario.write_text(REGISTRAR_SCENARIO.format(status=status), encoding="iso-8859-1")
    registrar = sipp_factory(scenario, timeout=20)
    registrar.start()
    agent = baresip_factory(
        "101", "secret", "acme.vpbx.local", proxy=(registrar.local_ip, registrar.local_port)
    )
    agent.start()

    if registered:
        agent.wait_registered(timeout=10)
        assert agent.registration_status() is RegistrationStatus.REGISTERED
    else:
        reason = agent.wait_registration_failed(timeout=10)
        assert "403" in reason
    assert registrar.wait().all_succeeded

"""How the registrar and the B2BUA behave against real peers: who rings, who gets the
call, what the caller hears as the final answer and what the CDR says.

Everything is real: `vpbx up` in a subprocess, sipp as the carrier (or as a bare
registering device), baresip as agents' phones, all on loopback.

One `vpbx up` serves the module's tests (each starts from the demo's routing: the
``platform`` fixture puts it back) but two, whose platform file differs from the demo's:
a ring timeout below the control API's minimum of 5 s, and the carrier's addresses.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.services.baresip import Baresip, BaresipFactory
from tests.services.platform import DEMO, RunningPlatform
from tests.services.ports import free_port
from tests.services.sipp import Sipp, SippFactory, SippResult, uas_reject_scenario
from tests.test_call_routing import route_as_in_the_demo, wait_for_reload

pytestmark = pytest.mark.integration

ACME_MAIN = "+74950000001"
GLOBEX_MAIN = "+74950000009"
CALLER = "+79130000001"
ACME = "acme.vpbx.local"
GLOBEX = "globex.vpbx.local"
PASSWORDS = {
    ("101", ACME): "acme-101-secret",
    ("102", ACME): "acme-102-secret",
    ("201", ACME): "acme-201-secret",
    ("101", GLOBEX): "globex-101-secret",
}
# How baresip 1.0 (libre) reports a call the other side ended, by CANCEL or BYE.
REMOTE_ENDED_REASON = "Connection reset by peer"
PACKETS_PER_SECOND = 50  # G.711 at 20 ms per packet


# --- helpers -----------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def platform_with_ring_timeout(
    platform_factory: Callable[..., RunningPlatform], tmp_path: Path, seconds: int
) -> RunningPlatform:
    """The demo platform with the sales group ringing for `seconds` only."""
    text = DEMO.read_text()
    if "ringTimeoutSeconds: 30" not in text:
        raise AssertionError("examples/demo.yaml no longer sets the sales ring timeout to 30")
    config = tmp_path / "demo-ring-timeout.yaml"
    config.write_text(text.replace("ringTimeoutSeconds: 30", f"ringTimeoutSeconds: {seconds}"))
    return platform_factory(file=config)


def hanks_voicemail(platform: RunningPlatform, *, on: bool) -> None:
    """Hank (globex 101) with voicemail (as in the demo) or without."""
    with platform.api(platform.login("admin@globex.vpbx.local", "globex-admin-secret")) as api:
        users = api.get("/v1/users", params={"limit": 200}).json()["items"]
        [user] = [user for user in users if user["extension"] == "101"]
        changed = api.patch(f"/v1/users/{user['id']}", json={"settings": {"voicemail": on}})
        assert changed.status_code == 200, changed.text
    wait_for_reload(platform, tenant="globex")


def without_voicemail(platform: RunningPlatform) -> None:
    """Hank without voicemail: an unanswered call ends with what his phone said instead
    of going to his box."""
    hanks_voicemail(platform, on=False)


@pytest.fixture
def platform(shared_platform: RunningPlatform) -> RunningPlatform:
    """The module's platform routed as in the demo (Hank's voicemail on again too), its
    calls() those of this test."""
    route_as_in_the_demo(shared_platform)
    hanks_voicemail(shared_platform, on=True)
    return shared_platform.for_one_test()


def phone(
    factory: BaresipFactory,
    platform: RunningPlatform,
    user: str,
    domain: str = ACME,
    *,
    auto_answer: bool = True,
) -> Baresip:
    """A baresip registered as `user`@`domain` through the edge."""
    agent = factory(
        user,
        PASSWORDS[(user, domain)],
        domain,
        proxy=(platform.host, platform.sip_port),
        auto_answer=auto_answer,
    )
    agent.start()
    agent.wait_registered(timeout=15)
    return agent


def carrier(
    sipp: SippFactory,
    platform: RunningPlatform,
    scenario: str | Path,
    number: str = ACME_MAIN,
    **options: Any,
) -> Sipp:
    """A carrier calling `number` through the edge (not started yet)."""
    settings: dict[str, Any] = {
        "remote": (platform.host, platform.sip_port),
        "service": number,
        "keys": {"domain": platform.host, "caller": CALLER},
        "timeout": 30,
    }
    settings.update(options)
    return sipp(scenario, **settings)


def expect_status(
    sipp: SippFactory, platform: RunningPlatform, status: int, number: str = ACME_MAIN
) -> SippResult:
    """Call `number` and require `status` as the final answer."""
    runner = carrier(
        sipp, platform, "uac_expect.xml", number, variables={"expected_status": str(status)}
    )
    return runner.run()


def event_types(agent: Baresip) -> list[str]:
    return [str(event.get("type", "")) for event in agent.events]


def saw(agent: Baresip, event_type: str) -> bool:
    return event_type in event_types(agent)


def closed_reasons(agent: Baresip) -> list[str]:
    return [
        str(event.get("param", "")) for event in agent.events if event.get("type") == "CALL_CLOSED"
    ]


def call_states(agent: Baresip) -> list[str]:
    return [call.state for call in agent.calls()]


def calls_when_settled(
    platform: RunningPlatform, count: int, settle_s: float = 1.0
) -> list[dict[str, Any]]:
    """Wait for `count` CDRs, then a little longer to catch any unexpected extra one."""
    platform.calls(count + 5, wait_for=count)
    time.sleep(settle_s)
    return platform.calls(count + 5)


def sip_messages(result: SippResult, direction: str = "received") -> list[str]:
    """SIP messages sipp `direction` ("received" or "sent"), from its -trace_msg file."""
    path = result.workdir / "messages.log"
    text = path.read_text(errors="replace") if path.is_file() else ""
    messages = []
    for chunk in re.split(r"^-{20,}[^\n]*\n", text, flags=re.MULTILINE):
        heading, _, message = chunk.strip().partition("\n")
        if heading.startswith(f"UDP message {direction}") and message.strip():
            messages.append(message.strip())
    return messages


def received_responses(result: SippResult, status: int, method: str) -> list[str]:
    pattern = re.compile(rf"^CSeq:\s*\d+ {method}\b", re.MULTILINE)
    return [
        message
        for message in sip_messages(result)
        if message.startswith(f"SIP/2.0 {status} ") and pattern.search(message)
    ]


def contact_expiries(response: str) -> dict[str, int]:
    """{contact URI: expires} of every Contact in a REGISTER's 200 OK."""
    contacts: dict[str, int] = {}
    for line in response.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() not in ("contact", "m"):
            continue
        for match in re.finditer(r"<([^>]+)>[^,]*?;\s*expires=(\d+)", value):
            contacts[match[1]] = int(match[2])
    return contacts


# --- 1. several devices per extension -------------------------------------------


def test_every_device_of_an_extension_rings_and_the_one_that_answers_gets_the_call(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
) -> None:
    desk = phone(baresip_factory, platform, "101", auto_answer=False)
    mobile = phone(baresip_factory, platform, "101", auto_answer=False)
    caller = carrier(sipp_factory, platform, "uac_call_echo.xml", pause_ms=1500, rtp_echo=True)

    caller.start()
    wait_until(
        lambda: call_states(desk) == ["INCOMING"] and call_states(mobile) == ["INCOMING"],
        10,
        "both devices of 101 ringing",
    )
    desk.command("accept")
    result = caller.wait()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert (result.rtp_packets_echoed or 0) >= PACKETS_PER_SECOND, result.describe()
    desk.wait_no_calls(timeout=10)
    mobile.wait_no_calls(timeout=10)
    assert saw(desk, "CALL_ESTABLISHED"), event_types(desk)
    assert saw(mobile, "CALL_INCOMING"), event_types(mobile)
    # The other device stopped ringing because the node cancelled its INVITE (it
    # never answered, so no BYE can have ended it).
    assert closed_reasons(mobile) == [REMOTE_ENDED_REASON], mobile.events
    assert not saw(mobile, "CALL_ESTABLISHED"), event_types(mobile)
    [record] = calls_when_settled(platform, 1)
    assert record["answered_by"] == "101"
    assert record["end_reason"] == "completed"
    assert record["hangup_by"] == "caller"
    assert record["sip_status"] == 200


# --- 2. two devices answer at once ----------------------------------------------


def test_when_two_agents_answer_at_once_exactly_one_gets_the_call(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
) -> None:
    agents = {
        "101": phone(baresip_factory, platform, "101"),
        "102": phone(baresip_factory, platform, "102"),
    }
    rounds = 3

    for attempt in range(rounds):
        # Long enough that a loaded machine still polls the phones mid-call.
        caller = carrier(sipp_factory, platform, "uac_call.xml", pause_ms=4000)
        caller.start()
        # Both auto-answer the moment their INVITE arrives; mid-call, one talks.
        wait_until(
            lambda: any("ESTABLISHED" in call_states(a) for a in agents.values()),
            15,
            "an agent established",
        )
        time.sleep(0.7)
        talking = {ext for ext, a in agents.items() if call_states(a) == ["ESTABLISHED"]}
        idle = {ext for ext, a in agents.items() if not a.calls()}
        result = caller.wait()
        assert result.all_succeeded, result.describe() + platform.log()[-3000:]
        assert len(talking) == 1, (attempt, talking, idle)
        assert len(idle) == 1, (attempt, talking, idle)
        for agent in agents.values():
            agent.wait_no_calls(timeout=10)
        records = calls_when_settled(platform, attempt + 1)
        assert len(records) == attempt + 1, records
        latest = max(records, key=lambda r: r["start_ms"])
        assert latest["answered_by"] == talking.pop(), latest
        assert latest["end_reason"] == "completed"
        assert latest["hangup_by"] == "caller"


# --- 3. the agent hangs up first ------------------------------------------------


# 201 works in Ekaterinburg: its phone registers with the tenant's ekb node while the
# Moscow number's calls run on the msk node, so its BYE must find its way there.
@pytest.mark.parametrize("extension", ["101", "201"], ids=["same-city", "other-city"])
def test_agent_hangs_up_first_and_the_caller_gets_the_bye(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
    extension: str,
) -> None:
    agent = phone(baresip_factory, platform, extension)
    caller = carrier(sipp_factory, platform, "uac_wait_bye.xml")

    caller.start()
    agent.wait_call_state("ESTABLISHED", timeout=10)
    time.sleep(1.0)
    agent.hangup()
    result = caller.wait()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    byes = [m for m in sip_messages(result) if m.startswith("BYE ")]
    assert len(byes) >= 1, "the caller never got a BYE"
    agent.wait_no_calls(timeout=5)
    [stats] = agent.wait_rtp_stats(count=1)
    assert stats.packets_received >= PACKETS_PER_SECOND * 0.7, agent.log_tail()
    [record] = calls_when_settled(platform, 1)
    assert record["answered_by"] == extension
    assert record["end_reason"] == "completed"
    assert record["hangup_by"] == "callee"
    assert record["sip_status"] == 200
    assert 800 <= record["talk_ms"] <= 4000, record


# --- 4. nobody answers ------------------------------------------------------------


def test_ring_timeout_gives_the_caller_480_and_stops_the_ringing(
    platform_factory: Callable[..., RunningPlatform],
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
    tmp_path: Path,
) -> None:
    platform = platform_with_ring_timeout(platform_factory, tmp_path, 3)
    agent = phone(baresip_factory, platform, "101", auto_answer=False)

    started = time.monotonic()
    result = expect_status(sipp_factory, platform, 480)
    elapsed = time.monotonic() - started

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert 2.8 <= elapsed <= 6.0, elapsed
    agent.wait_no_calls(timeout=5)
    assert saw(agent, "CALL_INCOMING"), event_types(agent)
    assert closed_reasons(agent) == [REMOTE_ENDED_REASON], agent.events
    [record] = calls_when_settled(platform, 1)
    assert record["end_reason"] == "no-answer"
    assert record["sip_status"] == 480
    assert record["answered_by"] == ""
    assert record["hangup_by"] == "system"
    assert 2900 <= record["ring_ms"] <= 4000, record
    assert record["talk_ms"] == 0


# --- 5. the only agent rejects ------------------------------------------------------


def test_agent_rejecting_a_ringing_call_makes_the_caller_hear_busy(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
) -> None:
    agent = phone(baresip_factory, platform, "101", auto_answer=False)
    caller = carrier(sipp_factory, platform, "uac_expect.xml", variables={"expected_status": "486"})

    caller.start()
    agent.wait_call_state("INCOMING", timeout=10)
    agent.hangup()  # baresip 1.0 declines a ringing call with 486 Busy Here
    result = caller.wait()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    agent.wait_no_calls(timeout=5)
    [record] = calls_when_settled(platform, 1)
    assert record["end_reason"] == "busy"
    assert record["sip_status"] == 486
    assert record["answered_by"] == ""
    assert record["talk_ms"] == 0


def test_device_declining_a_ringing_call_makes_the_caller_hear_decline(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    tmp_path: Path,
) -> None:
    without_voicemail(platform)
    device_port = free_port(socket.SOCK_DGRAM)

    def register(expires: int) -> SippResult:
        return sipp_factory(
            "register.xml",
            remote=(platform.host, platform.sip_port),
            local_port=device_port,
            keys={"domain": GLOBEX, "user": "101", "expires": str(expires)},
            credentials=("101", PASSWORDS[("101", GLOBEX)]),
            timeout=15,
        ).run()

    assert register(300).all_succeeded
    device = sipp_factory(
        uas_reject_scenario(tmp_path, 603, "Decline"), local_port=device_port, timeout=20
    )
    device.start()

    result = expect_status(sipp_factory, platform, 603, GLOBEX_MAIN)

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert device.wait().all_succeeded
    [record] = calls_when_settled(platform, 1)
    assert record["end_reason"] == "rejected"
    assert record["sip_status"] == 603
    assert record["answered_by"] == ""
    # The device goes as it came: no binding is left for the tests after this one.
    assert register(0).all_succeeded


# --- 6. the agent unregisters -----------------------------------------------------


def test_after_the_agent_unregisters_calls_get_480(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
) -> None:
    without_voicemail(platform)
    agent = phone(baresip_factory, platform, "101", GLOBEX)
    assert expect_status(sipp_factory, platform, 200, GLOBEX_MAIN).all_succeeded

    log_before_uadel = len(platform.log())
    agent.command("uadel", agent.aor)

    wait_until(
        lambda: (
            "tenant=globex city=msk ext=101 registered 0 binding(s)"
            in platform.log()[log_before_uadel:]
        ),
        10,
        "the node saw the un-REGISTER",
    )
    result = expect_status(sipp_factory, platform, 480, GLOBEX_MAIN)
    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    records = calls_when_settled(platform, 2)
    latest = max(records, key=lambda r: r["start_ms"])
    assert latest["end_reason"] == "unavailable"
    assert latest["sip_status"] == 480
    assert latest["answered_by"] == ""


# --- 6b. only carriers call numbers -------------------------------------------------


def test_calls_to_numbers_come_from_carriers_addresses_only(
    platform_factory: Callable[..., RunningPlatform], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    """The demo's platform carrier narrowed to 127.0.0.1: a sipp carrier on 127.0.0.2 is
    refused at the edge (and straight at a node), the same sipp on 127.0.0.1 gets through."""
    text = DEMO.read_text()
    wide = 'allowedAddresses: ["127.0.0.0/8"]'
    assert wide in text, "examples/demo.yaml no longer lets loopback carriers call"
    narrowed = tmp_path / "platform.yaml"
    narrowed.write_text(text.replace(wide, 'allowedAddresses: ["127.0.0.1/32"]'))
    platform = platform_factory(file=narrowed)
    without_voicemail(platform)

    def dial(local_ip: str, status: int, remote: tuple[str, int] | None = None) -> SippResult:
        options: dict[str, Any] = {"local_ip": local_ip}
        if remote is not None:
            options["remote"] = remote
        return carrier(
            sipp_factory,
            platform,
            "uac_expect.xml",
            GLOBEX_MAIN,
            variables={"expected_status": str(status)},
            **options,
        ).run()

    refused = dial("127.0.0.2", 403)
    assert refused.all_succeeded, refused.describe() + platform.log()[-3000:]
    assert "answered 403 Not From A Carrier" in platform.log()
    # Around the edge, straight at the node: refused there too (no edge proof, no trunk).
    direct = dial("127.0.0.2", 403, remote=(platform.host, platform.node_ports[-1]))
    assert direct.all_succeeded, direct.describe() + platform.log()[-3000:]
    # The carrier's own address: routed to globex's node, where nobody answers.
    taken = dial("127.0.0.1", 480)
    assert taken.all_succeeded, taken.describe() + platform.log()[-3000:]
    [record] = calls_when_settled(platform, 1)
    assert (record["tenant"], record["dialled"]) == ("globex", GLOBEX_MAIN)


# --- 7. hold and resume -------------------------------------------------------------


@pytest.mark.parametrize("holder", ["caller", "callee"])
def test_hold_and_resume_and_audio_comes_back(
    platform: RunningPlatform,
    baresip_factory: BaresipFactory,
    holder: str,
) -> None:
    callee = phone(baresip_factory, platform, "201")
    caller = phone(baresip_factory, platform, "102")
    holding, held_party = (caller, callee) if holder == "caller" else (callee, caller)

    caller.dial("sip:201@acme.vpbx.local")
    callee.wait_call_state("ESTABLISHED", timeout=10)
    caller.wait_call_state("ESTABLISHED", timeout=10)
    established = time.monotonic()
    time.sleep(0.5)
    holding.command("hold")
    held = time.monotonic()
    time.sleep(1.5)
    states_on_hold = (call_states(caller), call_states(callee))
    holding.command("resume")
    resumed = time.monotonic()
    time.sleep(2.0)
    states_resumed = (call_states(caller), call_states(callee))
    caller.hangup()
    hung_up = time.monotonic()

    assert states_on_hold == (["ESTABLISHED"], ["ESTABLISHED"])
    assert states_resumed == (["ESTABLISHED"], ["ESTABLISHED"])
    callee.wait_no_calls(timeout=10)
    [heard] = held_party.wait_rtp_stats(count=1)
    if holder == "caller":
        # Both re-INVITEs (hold, then resume) reached the other phone through the node.
        assert held_party.log_text().count("call: got re-INVITE") == 2, held_party.log_tail()
        # baresip 1.0 stops the audio while on hold, so what the held party heard came from
        # the talking time only; most of it after the resume, so audio came back.
        talking_packets = ((held - established) + (hung_up - resumed)) * PACKETS_PER_SECOND
        assert heard.packets_received >= 0.7 * talking_packets, (heard, talking_packets)
        assert heard.packets_received <= talking_packets + 0.5 * PACKETS_PER_SECOND, (
            "audio went on during hold",
            heard,
            talking_packets,
        )
    else:
        # The answering party's hold is the node's to serve: it answers the re-INVITEs
        # itself and the caller hears music on hold instead of silence.
        assert held_party.log_text().count("call: got re-INVITE") == 0, held_party.log_tail()
        whole_call = (hung_up - established) * PACKETS_PER_SECOND
        assert heard.packets_received >= 0.7 * whole_call, ("silence during hold", heard)
    [record] = calls_when_settled(platform, 1)
    assert record["direction"] == "internal"
    assert record["answered_by"] == "201"
    assert record["end_reason"] == "completed"
    assert record["hangup_by"] == "caller"
    assert record["talk_ms"] >= 3500, record


def test_a_transfer_or_dtmf_info_the_node_does_not_carry_out_is_refused_not_confirmed(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
) -> None:
    agent = phone(baresip_factory, platform, "101")
    # The scenario fails unless the caller's REFER gets 403 (only the answering party
    # transfers) and the INFO 405 (a 200 would lie to the phone).
    result = carrier(sipp_factory, platform, "uac_refer_info.xml").run()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    [refused] = [m for m in sip_messages(result) if m.startswith("SIP/2.0 405 ")]
    assert "Allow:" in refused
    assert "INFO" not in refused.split("Allow:", 1)[1].splitlines()[0]
    agent.wait_no_calls(timeout=5)
    [record] = calls_when_settled(platform, 1)
    assert (record["answered_by"], record["end_reason"]) == ("101", "completed")


# --- 8. registration life cycle ----------------------------------------------------


def test_one_extension_keeps_several_bindings_refreshes_them_and_removes_all(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
) -> None:
    # sipp 3.6 only knows MD5: the registrar challenges it (by User-Agent) with MD5 only.
    registering = sipp_factory(
        "register_auth.xml",
        remote=(platform.host, platform.sip_port),
        keys={"domain": GLOBEX, "user": "101", "expires": "120", "refresh_expires": "600"},
        credentials=("101", PASSWORDS[("101", GLOBEX)]),
        timeout=20,
    )

    result = registering.run()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    registered, refreshed, removed = received_responses(result, 200, "REGISTER")
    desk, mobile = (
        f"sip:{name}@127.0.0.1:{registering.local_port};transport=UDP"
        for name in ("desk", "mobile")
    )
    first = contact_expiries(registered)
    assert first.keys() == {desk, mobile}, registered
    assert all(110 <= expires <= 120 for expires in first.values()), registered
    # The refresh replaced the desk binding (no duplicate) and left the mobile one alone.
    second = contact_expiries(refreshed)
    assert second.keys() == {desk, mobile}, refreshed
    assert 590 <= second[desk] <= 600, refreshed
    assert 100 <= second[mobile] <= first[mobile], refreshed
    assert contact_expiries(removed) == {}, removed
    assert "Contact" not in removed, removed
    # Nothing is left to ring (and Hank takes no voice messages).
    without_voicemail(platform)
    assert expect_status(sipp_factory, platform, 480, GLOBEX_MAIN).all_succeeded
    [record] = calls_when_settled(platform, 1)
    assert record["end_reason"] == "unavailable"

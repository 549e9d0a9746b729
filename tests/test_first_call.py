"""The first real call: a carrier (sipp) calls a tenant number through the edge, a
registered agent (baresip) answers, audio flows both ways, and the CDR lands.

Everything here is real: `vpbx up` in a subprocess, redis-server, chdb or
Debian's clickhouse-server, sipp and baresip on loopback.

One `vpbx up` (CDRs in chdb) serves the module's tests but those that need another:
with a ClickHouse server, or to crash something (the server, a node).
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
import redis

from tests.services.baresip import Baresip, BaresipFactory
from tests.services.platform import RunningPlatform
from tests.services.sipp import SippFactory

pytestmark = pytest.mark.integration

CALL_MS = 2000
MIN_PACKETS = 50  # 20 ms packets: a 2 s call carries about 100 each way
ACME_MAIN = "+74950000001"
ACME_AD = "+74950000002"
GLOBEX_MAIN = "+74950000009"
CALLER = "+79130000001"


def register(
    factory: BaresipFactory,
    platform: RunningPlatform,
    user: str,
    password: str,
    domain: str,
    *,
    auto_answer: bool = True,
) -> Baresip:
    agent = factory(
        user, password, domain, proxy=(platform.host, platform.sip_port), auto_answer=auto_answer
    )
    agent.start()
    agent.wait_registered(timeout=15)
    return agent


def call(
    sipp: SippFactory,
    platform: RunningPlatform,
    number: str,
    scenario: str = "uac_call_echo.xml",
    **options: Any,
) -> Any:
    defaults: dict[str, Any] = {
        "remote": (platform.host, platform.sip_port),
        "service": number,
        "keys": {"domain": platform.host, "caller": CALLER},
        "timeout": 40,
    }
    if scenario.startswith("uac_call"):
        defaults.update(pause_ms=CALL_MS, rtp_echo=scenario == "uac_call_echo.xml")
    defaults.update(options)
    return sipp(scenario, **defaults).run()


@pytest.fixture
def platform(shared_platform: RunningPlatform) -> RunningPlatform:
    """The module's platform, its calls() those of this test. No test here changes its
    config; the phones and calls of the tests before are waited out."""
    shared_platform.wait_until_idle()
    return shared_platform.for_one_test()


@pytest.fixture(params=["chdb", "clickhouse-server"])
def platform_of_each_cdr_store(
    request: pytest.FixtureRequest, platform_factory: Any
) -> RunningPlatform:
    if request.param == "chdb":
        shared: RunningPlatform = request.getfixturevalue("platform")
        return shared
    clickhouse_url = request.getfixturevalue("clickhouse_database_url")
    started: RunningPlatform = platform_factory(clickhouse_url=clickhouse_url)
    return started.for_one_test()


def test_carrier_call_is_answered_with_media_and_recorded(
    platform_of_each_cdr_store: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
) -> None:
    platform = platform_of_each_cdr_store
    agent = register(baresip_factory, platform, "101", "acme-101-secret", "acme.vpbx.local")

    result = call(sipp_factory, platform, ACME_MAIN)

    assert result.all_succeeded, result.describe() + platform.log()[-4000:]
    # sipp echoes what it receives: its count is the agent's audio reaching the caller.
    assert (result.rtp_packets_echoed or 0) >= MIN_PACKETS, result.describe()
    agent.wait_no_calls(timeout=10)
    [stats] = agent.wait_rtp_stats(count=1)
    assert stats.packets_sent >= MIN_PACKETS, agent.log_tail()
    # ...and what the agent receives back is the caller's side of the relay.
    assert stats.packets_received >= MIN_PACKETS, agent.log_tail()

    [record] = platform.calls(1, wait_for=1)
    assert record["tenant"] == "acme"
    assert record["city"] == "msk"
    assert record["direction"] == "inbound"
    assert record["dialled"] == ACME_MAIN
    assert record["caller"] == CALLER
    assert record["answered_by"] == "101"
    assert record["end_reason"] == "completed"
    assert record["sip_status"] == 200
    assert record["hangup_by"] == "caller"
    assert record["label"] == ""
    assert CALL_MS - 200 <= record["talk_ms"] <= CALL_MS + 3000, record
    assert 0 <= record["ring_ms"] < 5000, record
    assert record["answer_ms"] - record["start_ms"] == record["ring_ms"]
    assert record["end_ms"] - record["answer_ms"] == record["talk_ms"]

    # The control API reads the same store the node shipped to (chdb dir or server).
    with platform.api(platform.login("admin@acme.vpbx.local", "acme-admin-secret")) as api:
        [ivan] = api.get("/v1/users", params={"extension": "101"}).json()["items"]
        # Since the test began: the platform may have taken calls for other tests before.
        began = datetime.fromtimestamp(platform.calls_since_ms / 1000, UTC).isoformat()
        listed = api.get("/v1/calls", params={"number": "8 (495) 000-00-01", "from": began})
        assert listed.status_code == 200, listed.text
        assert [item["call_id"] for item in listed.json()["items"]] == [record["call_id"]]
        detail = api.get(f"/v1/calls/{quote(record['call_id'], safe='@')}")
        assert detail.status_code == 200, detail.text
    call_out = detail.json()
    assert call_out["answered_by"] == "101"
    assert call_out["answered_by_user_id"] == ivan["id"]
    assert call_out["ring_s"] == record["ring_ms"] / 1000
    assert call_out["route"] == record["route"]


def test_carrier_over_tcp_and_call_events_on_redis(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    register(baresip_factory, platform, "101", "acme-101-secret", "acme.vpbx.local")

    result = call(
        sipp_factory, platform, ACME_MAIN, "uac_call.xml", pause_ms=500, extra_args=("-t", "t1")
    )

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    [record] = platform.calls(1, wait_for=1)
    assert record["end_reason"] == "completed"
    # The stream keeps the events: nobody had to be listening while the call went on.
    stream = redis.Redis.from_url(platform.env["VPBX_REDIS_URL"])
    received: list[tuple[bytes, dict[str, Any]]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        received = [
            (fields[b"tenant"], json.loads(fields[b"event"]))
            for _, fields in stream.xrange("vpbx:call-events")
            if json.loads(fields[b"event"])["call_id"] == record["call_id"]
        ]
        if len(received) >= 3:
            break
        time.sleep(0.1)
    stream.close()
    # No call.offered: it feeds the CRM's screen pop, and this platform runs no CRM
    # (media-node/tests/test_crm_routing.py shows it before the phone's INVITE).
    assert [event["type"] for _, event in received] == [
        "call.ringing",
        "call.answered",
        "call.ended",
    ]
    assert {tenant for tenant, _ in received} == {b"acme"}
    ended = received[-1][1]
    assert ended["call_id"] == record["call_id"]
    assert ended["number"] == ACME_MAIN
    assert ended["caller"] == CALLER
    assert ended["callee"] == "101"
    assert ended["end_reason"] == "completed"
    assert ended["direction"] == "inbound"


def test_cdrs_survive_a_clickhouse_outage(
    platform_factory: Any,
    clickhouse_server: Any,
    clickhouse_database_url: str,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
) -> None:
    platform: RunningPlatform = platform_factory(clickhouse_url=clickhouse_database_url)
    register(baresip_factory, platform, "101", "acme-101-secret", "acme.vpbx.local")
    clickhouse_server.crash()
    try:
        calls_during_outage = [
            call(sipp_factory, platform, ACME_MAIN, "uac_call.xml", pause_ms=300) for _ in range(3)
        ]
        assert all(result.all_succeeded for result in calls_during_outage)
        assert platform.cli("calls", "--last", "1", "--json").returncode != 0
    finally:
        clickhouse_server.start()

    records = platform.calls(3, wait_for=3, timeout=60)

    assert len(records) == 3
    assert {record["end_reason"] for record in records} == {"completed"}
    assert len({record["call_id"] for record in records}) == 3


def test_ad_channel_label_lands_on_the_cdr(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    register(baresip_factory, platform, "102", "acme-102-secret", "acme.vpbx.local")

    result = call(sipp_factory, platform, ACME_AD, "uac_call.xml", pause_ms=500)

    assert result.all_succeeded, result.describe()
    [record] = platform.calls(1, wait_for=1)
    assert record["label"] == "yandex-direct"
    assert record["answered_by"] == "102"


def test_tenants_with_the_same_extension_never_get_each_others_calls(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    acme = register(baresip_factory, platform, "101", "acme-101-secret", "acme.vpbx.local")
    globex = register(baresip_factory, platform, "101", "globex-101-secret", "globex.vpbx.local")

    to_acme = call(sipp_factory, platform, ACME_MAIN, "uac_call.xml", pause_ms=500)
    to_globex = call(sipp_factory, platform, GLOBEX_MAIN, "uac_call.xml", pause_ms=500)

    assert to_acme.all_succeeded, to_acme.describe()
    assert to_globex.all_succeeded, to_globex.describe()
    acme.wait_no_calls(timeout=10)
    globex.wait_no_calls(timeout=10)
    assert len(acme.wait_rtp_stats(count=1)) == 1, "acme's 101 took exactly one call"
    assert len(globex.wait_rtp_stats(count=1)) == 1, "globex's 101 took exactly one call"
    records = platform.calls(2, wait_for=2)
    by_number = {record["dialled"]: record for record in records}
    assert by_number[ACME_MAIN]["tenant"] == "acme"
    assert by_number[GLOBEX_MAIN]["tenant"] == "globex"
    assert by_number[ACME_MAIN]["answered_by"] == "101"
    assert by_number[GLOBEX_MAIN]["answered_by"] == "101"


def test_unknown_number_is_404(platform: RunningPlatform, sipp_factory: SippFactory) -> None:
    result = call(
        sipp_factory,
        platform,
        "+74950000777",
        "uac_expect.xml",
        variables={"expected_status": "404"},
    )

    assert result.all_succeeded, result.describe()


@pytest.mark.parametrize(
    ("user", "password"),
    [("101", "wrong-password"), ("999", "acme-999-secret")],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_get_no_binding(
    platform: RunningPlatform,
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
    user: str,
    password: str,
) -> None:
    agent = baresip_factory(
        user, password, "acme.vpbx.local", proxy=(platform.host, platform.sip_port)
    )
    agent.start()

    reason = agent.wait_registration_failed(timeout=15)

    # The same answer for both: the registrar does not reveal which extensions exist.
    assert reason.startswith("403"), reason
    result = call(
        sipp_factory, platform, ACME_MAIN, "uac_expect.xml", variables={"expected_status": "480"}
    )
    assert result.all_succeeded, result.describe()


def test_a_user_with_no_phone_registered_gets_the_call_in_voicemail_and_a_cdr(
    platform: RunningPlatform, sipp_factory: SippFactory
) -> None:
    # globex's number rings Hank (101), who has no phone registered and voicemail on.
    result = call(sipp_factory, platform, GLOBEX_MAIN, "uac_call.xml")

    assert result.all_succeeded, result.describe()
    [record] = platform.calls(1, wait_for=1)
    assert record["tenant"] == "globex"
    assert record["sip_status"] == 200  # voicemail answered
    assert record["answered_by"] == ""  # nobody did
    # sipp hung up without a word: no message is kept, a missed call.
    assert record["end_reason"] == "cancelled", record
    outcomes = [(step["subject"], step["outcome"]) for step in record["route"]]
    assert ("voicemail:101", "no-message") in outcomes, outcomes


def test_caller_cancel_while_ringing_cancels_every_fork(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    phones = [
        register(
            baresip_factory,
            platform,
            "101",
            "acme-101-secret",
            "acme.vpbx.local",
            auto_answer=False,
        ),
        register(
            baresip_factory,
            platform,
            "201",
            "acme-201-secret",
            "acme.vpbx.local",
            auto_answer=False,
        ),
    ]

    result = call(sipp_factory, platform, ACME_MAIN, "uac_cancel.xml")

    assert result.all_succeeded, result.describe()
    for phone in phones:
        phone.wait_no_calls(timeout=10)
        assert "CALL_CLOSED" in phone.log_text() or not phone.calls()
    [record] = platform.calls(1, wait_for=1)
    assert record["end_reason"] == "cancelled"
    assert record["hangup_by"] == "caller"
    assert record["sip_status"] == 487
    assert record["answered_by"] == ""


def test_killed_node_still_yields_a_cdr_for_its_call(
    platform_factory: Any, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    platform: RunningPlatform = platform_factory()
    agent = register(baresip_factory, platform, "101", "acme-101-secret", "acme.vpbx.local")
    caller = sipp_factory(
        "uac_call.xml",
        remote=(platform.host, platform.sip_port),
        service=ACME_MAIN,
        keys={"domain": platform.host, "caller": CALLER},
        pause_ms=20_000,
        timeout=40,
    )
    caller.start()
    agent.wait_call_state("ESTABLISHED", timeout=15)
    node_pid = platform.pid_of("vpbx-node-acme-msk")

    os.kill(node_pid, signal.SIGKILL)

    # The launcher restarts the node as Kubernetes would restart its pod; on start it
    # turns the journal entry of the interrupted call into a CDR.
    deadline = time.monotonic() + 30
    while platform.pid_of("vpbx-node-acme-msk") == node_pid and time.monotonic() < deadline:
        time.sleep(0.2)
    [record] = platform.calls(1, wait_for=1)
    caller.stop()
    assert record["end_reason"] == "node-lost", record
    assert record["tenant"] == "acme"
    assert record["answered_by"] == "101"
    assert record["hangup_by"] == "system"
    assert record["answer_ms"] is not None
    assert record["end_ms"] >= record["answer_ms"]


def test_extension_calls_extension_inside_the_tenant(
    platform: RunningPlatform, baresip_factory: BaresipFactory
) -> None:
    callee = register(baresip_factory, platform, "201", "acme-201-secret", "acme.vpbx.local")
    caller = register(baresip_factory, platform, "102", "acme-102-secret", "acme.vpbx.local")

    caller.dial("sip:201@acme.vpbx.local")

    callee.wait_call_state("ESTABLISHED", timeout=15)
    caller.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(1.0)  # let audio flow
    caller.hangup()
    callee.wait_no_calls(timeout=10)
    [stats] = callee.wait_rtp_stats(count=1)
    assert stats.packets_received >= 20, callee.log_tail()
    [record] = platform.calls(1, wait_for=1)
    assert record["direction"] == "internal"
    assert record["caller"] == "102"
    assert record["dialled"] == "201"
    assert record["answered_by"] == "201"
    assert record["end_reason"] == "completed"
    assert record["hangup_by"] == "caller"


def test_a_number_is_multichannel(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    agent = register(baresip_factory, platform, "101", "globex-101-secret", "globex.vpbx.local")
    simultaneous = 5

    result = call(
        sipp_factory,
        platform,
        GLOBEX_MAIN,
        "uac_call.xml",
        pause_ms=4000,
        calls=simultaneous,
        call_rate=simultaneous,
        concurrent_limit=simultaneous,
    )

    assert result.all_succeeded, result.describe()
    assert result.successful_calls == simultaneous
    agent.wait_no_calls(timeout=10)
    records = platform.calls(simultaneous, wait_for=simultaneous)
    assert [r["end_reason"] for r in records] == ["completed"] * simultaneous
    # They overlapped: every call was answered before the first one ended.
    first_end = min(r["end_ms"] for r in records)
    assert all(r["answer_ms"] < first_end for r in records), records


def test_sigterm_drains_the_node_without_dropping_the_call_in_progress(
    platform_factory: Any, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    platform: RunningPlatform = platform_factory()
    agent = register(baresip_factory, platform, "101", "globex-101-secret", "globex.vpbx.local")
    in_progress = sipp_factory(
        "uac_call.xml",
        remote=(platform.host, platform.sip_port),
        service=GLOBEX_MAIN,
        keys={"domain": platform.host, "caller": CALLER},
        pause_ms=4000,
        timeout=40,
    )
    in_progress.start()
    agent.wait_call_state("ESTABLISHED", timeout=15)
    node_pid = platform.pid_of("vpbx-node-globex-msk")

    os.kill(node_pid, signal.SIGTERM)
    time.sleep(0.3)
    refused = call(
        sipp_factory, platform, GLOBEX_MAIN, "uac_expect.xml", variables={"expected_status": "503"}
    )

    assert refused.all_succeeded, refused.describe()
    finished = in_progress.wait()
    assert finished.all_succeeded, finished.describe()
    [record] = platform.calls(5, wait_for=1)
    assert record["end_reason"] == "completed", "the call in progress was not cut"
    assert record["talk_ms"] >= 3500
    assert record["hangup_by"] == "caller"

"""The SIP call-rate benchmark's pure pieces: scenarios, bench platform file, figures.

No processes and no timing: what `make bench-sip` would start and how it reports.
"""

from __future__ import annotations

import copy
import hashlib
import xml.dom.minidom
from pathlib import Path
from typing import Any

import pytest
import yaml
from loadtest.bench_sip import (
    DEMO,
    BenchConfig,
    SearchEnd,
    StepResult,
    StepVerdict,
    SystemResult,
    bench_phone,
    cpu_ms_per_call,
    cpu_text,
    judge,
    summary_lines,
)
from loadtest.sip_scenarios import (
    AGENT_B,
    AGENT_HOLD_MS,
    BENCH_NUMBER,
    CARRIER_TRUNK,
    OUTBOUND_DIALLED,
    Phone,
    PlatformFileError,
    Ports,
    Scenario,
    ScenarioError,
    bench_platform_documents,
    digest_ha1,
    kamailio_defines,
    kamailio_plan,
    parse_scenarios,
    vpbx_plan,
)

from tests.services.sipp import SippExit, SippResult, SippStats, scenario_path
from vpbx_common.e164 import normalize_e164
from vpbx_common.manifests import load_platform_file, parse_platform_documents

PORTS = Ports(agent=21001, target=21002, carrier=21003)


def demo_documents() -> list[Any]:
    return list(yaml.safe_load_all(DEMO.read_text()))


def demo_phone() -> Phone:
    return bench_phone(load_platform_file(DEMO))


# --- scenarios ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", (Scenario.INBOUND, Scenario.OUTBOUND, Scenario.TRANSFER)),
        ("inbound", (Scenario.INBOUND,)),
        (" Transfer , inbound ", (Scenario.INBOUND, Scenario.TRANSFER)),
        ("outbound,all", (Scenario.INBOUND, Scenario.OUTBOUND, Scenario.TRANSFER)),
    ],
)
def test_scenarios_are_read_in_their_fixed_order(text: str, expected: tuple[Scenario]) -> None:
    assert parse_scenarios(text) == expected


@pytest.mark.parametrize("text", ["", " , ", "inbound,sideways"])
def test_unknown_or_missing_scenarios_are_refused(text: str) -> None:
    with pytest.raises(ScenarioError):
        parse_scenarios(text)


def test_the_demo_phone_is_the_extension_behind_the_bench_number() -> None:
    assert demo_phone() == Phone(
        tenant="globex",
        city="msk",
        domain="globex.vpbx.local",
        extension="101",
        password="globex-101-secret",
    )


def test_inbound_is_measured_as_before() -> None:
    phone = demo_phone()
    for plan in (
        vpbx_plan(Scenario.INBOUND, PORTS, phone),
        kamailio_plan(Scenario.INBOUND, PORTS, phone),
    ):
        assert plan.caller.scenario == "uac_bench.xml"
        assert plan.caller.service == BENCH_NUMBER
        assert plan.caller.hold_ms == 1000
        assert plan.caller.credentials is None
        [uas] = plan.peers
        assert (uas.role, uas.scenario, uas.port, uas.judged) == (
            "uas",
            "uas_bench.xml",
            21001,
            False,
        )
    assert kamailio_defines(Scenario.INBOUND, PORTS, phone) == {"UAS_URI": '"sip:127.0.0.1:21001"'}


def test_outbound_calls_a_national_number_as_the_phone_with_its_credentials() -> None:
    phone = demo_phone()
    assert normalize_e164(OUTBOUND_DIALLED, "RU") == "+74951234567"
    for plan in (
        vpbx_plan(Scenario.OUTBOUND, PORTS, phone),
        kamailio_plan(Scenario.OUTBOUND, PORTS, phone),
    ):
        assert plan.caller.scenario == "uac_bench_auth.xml"
        assert plan.caller.keys == {"domain": "globex.vpbx.local", "caller": "101"}
        assert plan.caller.credentials == ("101", "globex-101-secret")
        [carrier] = plan.peers
        assert (carrier.role, carrier.port) == ("carrier", PORTS.carrier)
    defines = kamailio_defines(Scenario.OUTBOUND, PORTS, phone)
    ha1 = hashlib.md5(b"101:globex.vpbx.local:globex-101-secret", usedforsecurity=False)
    assert defines == {
        "UAS_URI": '"sip:127.0.0.1:21003"',
        "AUTH_USER": '"101"',
        "AUTH_HA1": f'"{ha1.hexdigest()}"',
    }
    assert digest_ha1("101", "globex.vpbx.local", "globex-101-secret") == ha1.hexdigest()


def test_transfer_judges_both_agents_and_only_kamailio_needs_a_transferring_caller() -> None:
    phone = demo_phone()
    ours, theirs = (
        vpbx_plan(Scenario.TRANSFER, PORTS, phone),
        kamailio_plan(Scenario.TRANSFER, PORTS, phone),
    )
    assert ours.peers == theirs.peers
    agent_a, agent_b = ours.peers
    assert agent_a.scenario == "uas_bench_refer.xml"
    assert agent_a.keys == {"target": AGENT_B, "domain": "globex.vpbx.local"}
    assert agent_a.judged
    assert agent_a.times_transfer
    assert agent_a.extra_args == ("-aa",)  # NOTIFYs answered wherever they arrive
    assert (agent_b.port, agent_b.judged, agent_b.times_transfer) == (PORTS.target, True, False)
    assert ours.caller.scenario == "uac_bench.xml"
    assert theirs.caller.scenario == "uac_bench_transferee.xml"
    # On vpbx the caller's hold spans the agent's talk before the REFER and B's talk.
    assert ours.caller.hold_ms > AGENT_HOLD_MS + 1000
    assert kamailio_defines(Scenario.TRANSFER, PORTS, phone) == {
        "UAS_URI": '"sip:127.0.0.1:21001"',
        "TARGET_USER": f'"{AGENT_B}"',
        "TARGET_URI": '"sip:127.0.0.1:21002"',
    }


@pytest.mark.parametrize("scenario", list(Scenario))
def test_every_sipp_scenario_a_plan_names_exists_and_is_well_formed(scenario: Scenario) -> None:
    phone = demo_phone()
    for plan in (vpbx_plan(scenario, PORTS, phone), kamailio_plan(scenario, PORTS, phone)):
        for name in (plan.caller.scenario, *(peer.scenario for peer in plan.peers)):
            # The repository's own files (sipp's DTD is named, never fetched).
            xml.dom.minidom.parse(str(scenario_path(name)))  # noqa: S318


# --- the bench platform file ------------------------------------------------------------


def test_the_bench_platform_adds_agent_b_and_a_carrier_trunk_and_loads() -> None:
    documents = demo_documents()
    original = copy.deepcopy(documents)
    extended = bench_platform_documents(documents, tenant="globex", city="msk", carrier_port=21003)
    assert documents == original  # the input is left alone
    platform = parse_platform_documents(extended)
    globex = next(config for config in platform.configs if config.tenant == "globex")
    agent_b = next(user for user in globex.spec.users if user.extension == AGENT_B)
    assert agent_b.city == "msk"
    # The demo's own carrier (local-carrier, priority 10000) stays; the bench's goes first.
    [trunk] = [trunk for trunk in platform.trunks if trunk.name == CARRIER_TRUNK]
    assert trunk.spec.priority < min(t.spec.priority for t in platform.trunks if t is not trunk)
    assert trunk.spec.uri == "sip:127.0.0.1:21003;transport=udp"
    assert not trunk.spec.registers
    # Nothing else changed: the same tenants and numbers.
    assert len(platform.tenants) == 2
    assert BENCH_NUMBER in {number.spec.number for number in platform.numbers}


def test_the_bench_platform_round_trips_through_yaml(tmp_path: Path) -> None:
    extended = bench_platform_documents(
        demo_documents(), tenant="globex", city="msk", carrier_port=21003
    )
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump_all(extended, sort_keys=False))
    trunks = {trunk.name: trunk.spec.priority for trunk in load_platform_file(path).trunks}
    assert trunks[CARRIER_TRUNK] == 10


def test_the_bench_platform_needs_the_tenants_config_and_a_free_extension() -> None:
    with pytest.raises(PlatformFileError, match="no PbxConfig"):
        bench_platform_documents(demo_documents(), tenant="initech", city="msk", carrier_port=1)
    twice = bench_platform_documents(demo_documents(), tenant="globex", city="msk", carrier_port=1)
    with pytest.raises(PlatformFileError):
        bench_platform_documents(twice, tenant="globex", city="msk", carrier_port=1)


# --- figures ------------------------------------------------------------------------------


def test_cpu_per_call_divides_each_process_by_the_calls_busiest_first() -> None:
    used = {"edge": 2.0, "vpbx-node-globex-msk": 4.5, "redis-server": 0.25}
    assert cpu_ms_per_call(used, 500) == (
        ("vpbx-node-globex-msk", 9.0),
        ("edge", 4.0),
        ("redis-server", 0.5),
    )
    assert cpu_ms_per_call(used, 0) == ()


def test_cpu_per_call_takes_off_what_a_process_uses_idle() -> None:
    # A 10 s step of 500 calls; the node idles at 5% of a core, the edge at 0.1%, and the
    # control API spends only its idle rate (nothing per call, never below zero).
    used = {"vpbx-node-globex-msk": 5.0, "edge": 2.01, "control-api": 0.2}
    idle = {"vpbx-node-globex-msk": 5.0, "edge": 0.1, "control-api": 3.0}
    per_call = dict(cpu_ms_per_call(used, 500, 10.0, idle))
    assert per_call["vpbx-node-globex-msk"] == pytest.approx(9.0)
    assert per_call["edge"] == pytest.approx(4.0)
    assert per_call["control-api"] == 0.0


def step(
    rate: int, cpu_ms: tuple[tuple[str, float], ...], transfer: float | None = None
) -> StepResult:
    return StepResult(
        rate=rate,
        planned=rate * 8,
        created=rate * 8,
        succeeded=rate * 8,
        failed=0,
        retransmissions=0,
        p50_ms=8.0,
        p99_ms=100.0,
        max_ms=120.0,
        answer_rate=float(rate),
        seconds=10.0,
        verdict=StepVerdict.PASSED,
        workdir="/tmp/x",
        cpu_percent=(),
        sipp_cpu_percent=5.0,
        cpu_ms_per_call=cpu_ms,
        transfer_p50_ms=transfer,
        transfer_p99_ms=transfer,
    )


def test_the_summary_shows_each_scenario_with_cpu_per_call_beside_kamailio() -> None:
    node = (("vpbx-node-globex-msk", 12.345), ("edge", 4.0), ("redis-server", 0.5))
    vpbx = SystemResult(
        "vpbx",
        "vpbx",
        step(10, node),
        (step(50, node, transfer=20.0),),
        SearchEnd.STEP_FAILED,
        Scenario.TRANSFER,
        ("vpbx-node-globex-msk", "edge", "redis-server"),
        (("vpbx-node-globex-msk", 4.25), ("control-api", 3.0), ("edge", 0.5)),
    )
    kamailio = SystemResult(
        "kamailio",
        "kamailio",
        step(10, (("kamailio", 0.5),)),
        (step(50, (("kamailio", 0.4),), transfer=4.0), step(2000, (("kamailio", 0.31),))),
        SearchEnd.STEP_FAILED,
        Scenario.TRANSFER,
        ("kamailio",),
    )
    lines = summary_lines([vpbx, kamailio])
    assert lines[0].startswith("scenario transfer:")
    assert (
        "CPU per call at the highest passing rate: vpbx (50/s): vpbx-node-globex-msk 12.3 ms, "
        "edge 4.00 ms, redis-server 0.50 ms; kamailio (2000/s): kamailio 0.31 ms"
    ) in lines
    assert (
        "idle CPU (taken off the CPU per call): vpbx: "
        "vpbx-node-globex-msk 4.2%, edge 0.5%, redis-server 0.0%"
    ) in lines
    assert "ratio vpbx/kamailio (highest passing rates): 0.025" in lines
    assert any(line.startswith("transfer time (REFER to BYE at agent A) at 50") for line in lines)
    assert cpu_text(kamailio, kamailio.steps[0]) == "kamailio (50/s): kamailio 0.40 ms"
    assert summary_lines([]) == []


def sipp_result(calls: int, ok: int) -> SippResult:
    counters = {
        "TotalCallCreated": str(calls),
        "SuccessfulCall(C)": str(ok),
        "FailedCall(C)": str(calls - ok),
        "Retransmissions(C)": "0",
    }
    return SippResult(
        exit=SippExit.ALL_CALLS_SUCCEEDED if ok == calls else SippExit.SOME_CALLS_FAILED,
        returncode=0 if ok == calls else 1,
        stats=SippStats(counters),
        response_times_ms=(),
        rtp_packets_sent=None,
        rtp_packets_echoed=None,
        errors="",
        logs="",
        output="",
        workdir=Path("/tmp/x"),
    )


def test_a_warm_up_is_judged_on_its_calls_not_on_the_cold_start(tmp_path: Path) -> None:
    config = BenchConfig(
        rates=(20,),
        step_seconds=8,
        max_calls_per_step=100,
        budget_per_system_s=60,
        max_retransmission_ratio=0.01,
        min_answer_rate_ratio=0.9,
        max_p99_ms=500,
        workdir=tmp_path,
        platform_file=DEMO,
    )
    # The first call of a fresh node took 1.4 s: a slow rate and p99 for the warm-up.
    slow = (sipp_result(20, 20), 10, 20, 7.5, 1444.0, config)
    assert judge(*slow, warmup=True) is StepVerdict.PASSED
    assert judge(*slow) is StepVerdict.SLOW
    assert judge(sipp_result(20, 20), 10, 20, 10.0, 1444.0, config) is StepVerdict.LATENCY
    failed = (sipp_result(20, 19), 10, 20, 10.0, 10.0, config)
    assert judge(*failed, warmup=True) is StepVerdict.FAILED_CALLS

"""`make bench-sip`: a stepped sipp search of the highest call rate, vpbx vs Kamailio.

For each scenario and each system under test the search offers rising call rates
(calls per second), each step a fixed number of short calls (SDP but no RTP) between
sipp peers. A step passes when every call succeeded (at the caller, and at the peers
the caller cannot see: the transfer's agents), sipp had to retransmit (almost)
nothing and the 200 OKs came back at the offered rate; the search stops at the first
failing step, at the top of the ladder or when the time budget is spent. Reported per
scenario and system: the highest passing rate with its p50/p99 time from INVITE to
200 OK, the CPU per call of the busiest processes (vpbx: the node, the edge), and the
ratio vpbx/Kamailio.

The scenarios (loadtest/sip_scenarios.py has the details):
  inbound   a carrier calls the tenant's number, the registered phone answers
            (INVITE, 200, ACK, 1 s hold, BYE).
  outbound  a tenant phone (digest-authenticated) calls a number outside the PBX,
            which a carrier trunk answers.
  transfer  a carrier calls the tenant's number, agent A answers and hands the caller
            to agent B with a blind transfer (REFER); B answers, A is let go.

The systems:
  vpbx      `vpbx up` with a bench platform file (the --platform-file, by default
            examples/demo.yaml, plus agent B and a platform Trunk to the carrier sipp)
            on free loopback ports, started once for all scenarios; the agents register
            as globex extensions 101 and 102. Inbound and transfer: sipp -> edge ->
            media node -> edge -> agent(s). Outbound: sipp -> edge -> media node ->
            carrier.
  kamailio  Debian's kamailio with loadtest/kamailio/kamailio.cfg, a plain stateful
            (tm) record-routing relay, started per scenario: to the UAS (inbound), with
            a digest check of the phone (outbound), to agent A and for B's extension to
            B, the caller carrying out the transfer itself (transfer).

Everything runs on loopback in this one process tree and stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import enum
import json
import logging
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from tests.services.platform import sip_options
from tests.services.ports import free_port, free_port_pair
from tests.services.sipp import Sipp, SippExit, SippResult, scenario_path

from loadtest.sip_scenarios import (
    AGENT_B,
    AGENT_B_PASSWORD,
    BENCH_NUMBER,
    HOLD_MS,
    HOST,
    Phone,
    PlatformFileError,
    Ports,
    Scenario,
    ScenarioError,
    StepPlan,
    bench_platform_documents,
    kamailio_defines,
    kamailio_plan,
    parse_scenarios,
    vpbx_plan,
)
from vpbx_common.manifests import ManifestError, PlatformFile, load_platform_file

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo.yaml"
KAMAILIO_CFG = Path(__file__).resolve().parent / "kamailio" / "kamailio.cfg"

DEFAULT_RATES = (
    *(20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200, 250, 300, 400, 500, 700),
    *(1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 6000, 8000),
)
WARMUP_RATE = 10
WARMUP_CALLS = 20
# sipp gives up on a call that hears nothing for this long (the step then fails).
RECV_TIMEOUT_MS = 8000
REGISTER_EXPIRES_S = 3600
# Rough time a step needs besides offering its calls: UAS start, hold, tail.
STEP_OVERHEAD_S = 5.0
# How long the judged peers (the transfer's agents) may take to finish their last calls
# after the caller finished.
PEER_TAIL_S = 10.0
# Seconds the system's idle CPU is measured once it is up, before any call: subtracted
# from the CPU per call (a node's timers cost the same with or without calls).
IDLE_SECONDS = 3.0
# Between two scenarios on the same `vpbx up`: the last, failing step's backlog (queued
# requests, CDRs to ship) must not be measured as the next scenario's.
SETTLE_SECONDS = 10.0

# The edge ignores a source address sending more than 200 requests/s (anti-flood).
# On loopback every sender, including the media node relaying through the edge, is
# 127.0.0.1, so the limit would cap the search at ~33 calls/s: lift it here.
VPBX_BENCH_ENV = {
    "VPBX_LOG_LEVEL": "WARNING",
    # sipp 3.6.1 computes MD5 digests only and answers the first challenge it
    # parses; the registrar's default puts SHA-256 first.
    "VPBX_DIGEST_ALGORITHMS": '["MD5"]',
    "VPBX_SOURCE_RATE": "1000000",
    "VPBX_SOURCE_BURST": "1000000",
}


class BenchError(RuntimeError):
    """The benchmark could not set up a system under test."""


@dataclass(frozen=True)
class BenchConfig:
    rates: tuple[int, ...]
    step_seconds: float
    max_calls_per_step: int
    budget_per_system_s: float
    max_retransmission_ratio: float
    min_answer_rate_ratio: float
    max_p99_ms: float
    workdir: Path
    platform_file: Path

    def calls_for(self, rate: int) -> int:
        return max(1, min(self.max_calls_per_step, round(rate * self.step_seconds)))


@dataclass(frozen=True)
class Target:
    """One system under test, set up for one scenario: where the caller sends its
    INVITEs, and the sipp peers of a step."""

    name: str
    scenario: Scenario
    remote: tuple[str, int]
    plan: StepPlan
    # The system's process tree, for CPU accounting: its root and names for pids.
    root_pid: int
    labels: Mapping[int, str]
    # The processes whose CPU per call the summary shows (vpbx: node, edge, Redis).
    focus: tuple[str, ...]
    # CPU % (100 = one core) of each process with no calls, measured once it was up.
    idle_percent: Mapping[str, float] = field(default_factory=dict)


class StepVerdict(enum.Enum):
    PASSED = "passed"
    INCOMPLETE = "sipp did not finish the step"
    FAILED_CALLS = "calls failed"
    RETRANSMISSIONS = "too many retransmissions"
    SLOW = "200 OKs slower than the offered rate"
    LATENCY = "p99 time to 200 OK over the limit"
    PEER_FAILED = "calls failed at an answering peer"


@dataclass(frozen=True)
class PeerOutcome:
    """What a judged peer (a transfer agent) counted for the step."""

    role: str
    succeeded: int
    failed: int
    retransmissions: int
    exit: str

    def complete(self, planned: int) -> bool:
        return self.failed == 0 and self.succeeded >= planned


@dataclass(frozen=True)
class StepResult:
    rate: int
    planned: int
    created: int
    succeeded: int
    failed: int
    retransmissions: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    answer_rate: float | None
    seconds: float
    verdict: StepVerdict
    workdir: str
    # CPU use of the system under test while the step ran, busiest process first.
    cpu_percent: tuple[tuple[str, float], ...]
    # sipp UAC + UAS together: near 100% means the load generator is the limit.
    sipp_cpu_percent: float
    # CPU ms each process of the system used during the step per call of the step, its
    # idle rate (measured once the system was up) taken off, busiest first.
    cpu_ms_per_call: tuple[tuple[str, float], ...] = ()
    # The judged peers (transfer agents): their own counts of the step's calls.
    peers: tuple[PeerOutcome, ...] = ()
    # Transfer: REFER sent to BYE received at agent A (the transferor let go).
    transfer_p50_ms: float | None = None
    transfer_p99_ms: float | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is StepVerdict.PASSED

    def cpu_ms(self, label: str) -> float | None:
        for name, value in self.cpu_ms_per_call:
            if name == label:
                return value
        return None


class SearchEnd(enum.Enum):
    STEP_FAILED = "a step failed"
    WARMUP_FAILED = "the warm-up failed"
    LADDER_TOP = "top of the rate ladder reached"
    TIME_BUDGET = "time budget spent"


@dataclass(frozen=True)
class SystemResult:
    name: str
    description: str
    warmup: StepResult
    steps: tuple[StepResult, ...]
    end: SearchEnd
    scenario: Scenario = Scenario.INBOUND
    focus: tuple[str, ...] = ()
    # CPU % (100 = one core) of each process with no calls, measured once it was up.
    idle_cpu_percent: tuple[tuple[str, float], ...] = ()

    @property
    def best(self) -> StepResult | None:
        passing = [step for step in self.steps if step.passed]
        return passing[-1] if passing else None

    def step_at(self, rate: int) -> StepResult | None:
        for step in self.steps:
            if step.rate == rate:
                return step
        return None


# --- measurements -----------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def read_rtt_rows(workdir: Path) -> list[tuple[float, float]]:
    """(ms since sipp started, response time ms) for every 200 OK sipp timed."""
    rows: list[tuple[float, float]] = []
    for path in sorted(workdir.glob("*_rtt.csv")):
        for row in csv.reader(path.read_text().splitlines()[1:], delimiter=";"):
            if len(row) < 2:
                continue
            try:
                rows.append((float(row[0]), float(row[1])))
            except ValueError:
                logger.warning("sipp rtt line not understood in %s: %r", path, row)
    return rows


def answer_rate(rows: Sequence[tuple[float, float]]) -> float | None:
    """Answered calls per second between the first and the last 200 OK."""
    if len(rows) < 2:
        return None
    stamps = sorted(stamp for stamp, _ in rows)
    span_s = (stamps[-1] - stamps[0]) / 1000.0
    return (len(stamps) - 1) / span_s if span_s > 0 else None


def judge(
    result: SippResult,
    rate: int,
    planned: int,
    rate_seen: float | None,
    p99_ms: float | None,
    config: BenchConfig,
    *,
    warmup: bool = False,
) -> StepVerdict:
    """The step's verdict. A warm-up is judged on its calls only, not on their speed:
    the first calls on a fresh system pay one-time costs (imports, caches, the first CDR
    shipment) that a slow 200 OK would otherwise turn into the end of the search."""
    stats = result.stats
    if result.exit is SippExit.KILLED_AT_DEADLINE or stats.created_calls < planned:
        return StepVerdict.INCOMPLETE
    if not result.all_succeeded or stats.successful_calls < planned:
        return StepVerdict.FAILED_CALLS
    if stats.retransmissions > config.max_retransmission_ratio * planned:
        return StepVerdict.RETRANSMISSIONS
    if warmup:
        return StepVerdict.PASSED
    # One call cannot show a rate; a step of a few calls is judged on failures only.
    if planned >= 10 and (rate_seen is None or rate_seen < config.min_answer_rate_ratio * rate):
        return StepVerdict.SLOW
    # Both proxies answer 100 Trying at once, which stops sipp retransmitting the
    # INVITE: a queue building up inside shows only as a growing time to 200 OK.
    if p99_ms is None or p99_ms > config.max_p99_ms:
        return StepVerdict.LATENCY
    return StepVerdict.PASSED


# --- CPU accounting (Linux /proc) ----------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return text[text.rfind(")") + 2 :].split()


def process_tree(root_pid: int) -> dict[int, str]:
    """pid -> command name of root_pid and all its descendants."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if fields is None:
            continue
        parents[pid] = int(fields[1])
        try:
            names[pid] = (entry / "comm").read_text().strip()
        except OSError:
            names[pid] = "?"
    tree = {root_pid: names.get(root_pid, "?")}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree[pid] = names[pid]
                grew = True
    return tree


def reaped_children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_seconds(root_pid: int, labels: Mapping[int, str]) -> dict[str, float]:
    """CPU seconds (user + system, all threads) used so far, summed per label."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid, name in process_tree(root_pid).items():
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # utime and stime are fields 14 and 15 of /proc/PID/stat (1-based).
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        label = labels.get(pid, name)
        used[label] = used.get(label, 0.0) + seconds
    return used


# --- one step ---------------------------------------------------------------------


def run_step(
    target: Target,
    rate: int,
    calls: int,
    workdir: Path,
    config: BenchConfig,
    *,
    warmup: bool = False,
    idle_percent: Mapping[str, float] | None = None,
) -> StepResult:
    caller = target.plan.caller
    offer_s = calls / rate
    sipp_timeout = offer_s + caller.hold_ms / 1000 + RECV_TIMEOUT_MS / 1000 + 20
    peers = [
        (
            peer,
            Sipp(
                scenario_path(peer.scenario),
                workdir=workdir / peer.role,
                local_ip=HOST,
                local_port=peer.port,
                keys=peer.keys,
                pause_ms=peer.pause_ms,
                calls=calls,
                timeout=sipp_timeout + 10,
                trace_messages=False,
                extra_args=peer.extra_args,
            ),
        )
        for peer in target.plan.peers
    ]
    uac = Sipp(
        scenario_path(caller.scenario),
        workdir=workdir / "uac",
        remote=target.remote,
        local_ip=HOST,
        service=caller.service,
        keys=caller.keys,
        credentials=caller.credentials,
        calls=calls,
        call_rate=rate,
        pause_ms=caller.hold_ms,
        recv_timeout_ms=RECV_TIMEOUT_MS,
        timeout=sipp_timeout,
        trace_messages=False,
    )
    cpu_before = tree_cpu_seconds(target.root_pid, target.labels)
    sipp_before = reaped_children_cpu_seconds()
    started = time.monotonic()
    outcomes: list[PeerOutcome] = []
    try:
        for _, runner in peers:
            runner.start()
        result = uac.run()
        for peer, runner in peers:
            if peer.judged:
                outcomes.append(_outcome(peer.role, runner.wait(timeout=PEER_TAIL_S)))
    finally:
        for _, runner in peers:
            runner.stop()
    seconds = time.monotonic() - started
    cpu_after = tree_cpu_seconds(target.root_pid, target.labels)
    used = {label: spent - cpu_before.get(label, 0.0) for label, spent in cpu_after.items()}
    cpu_percent = sorted(
        ((label, 100.0 * spent / seconds) for label, spent in used.items()),
        key=lambda item: -item[1],
    )
    cpu_ms = cpu_ms_per_call(used, calls, seconds, idle_percent or {})
    # Every sipp process of the step has been reaped by now; the systems under test
    # have not (they are not finished), so this delta is sipp's alone.
    sipp_percent = 100.0 * (reaped_children_cpu_seconds() - sipp_before) / seconds
    rows = read_rtt_rows(workdir / "uac")
    times = [response for _, response in rows]
    rate_seen = answer_rate(rows)
    p99_ms = percentile(times, 0.99)
    verdict = judge(result, rate, calls, rate_seen, p99_ms, config, warmup=warmup)
    if verdict is StepVerdict.PASSED and not all(o.complete(calls) for o in outcomes):
        verdict = StepVerdict.PEER_FAILED
    if verdict is not StepVerdict.PASSED:
        logger.info("step %d/s on %s: %s\n%s", rate, target.name, verdict.value, result.describe())
    transfer_times = [
        response
        for peer in target.plan.peers
        if peer.times_transfer
        for _, response in read_rtt_rows(workdir / peer.role)
    ]
    return StepResult(
        rate=rate,
        planned=calls,
        created=result.stats.created_calls,
        succeeded=result.stats.successful_calls,
        failed=result.stats.failed_calls,
        retransmissions=result.stats.retransmissions,
        p50_ms=percentile(times, 0.50),
        p99_ms=p99_ms,
        max_ms=max(times) if times else None,
        answer_rate=rate_seen,
        seconds=seconds,
        verdict=verdict,
        workdir=str(workdir),
        cpu_percent=tuple(cpu_percent),
        sipp_cpu_percent=sipp_percent,
        cpu_ms_per_call=cpu_ms,
        peers=tuple(outcomes),
        transfer_p50_ms=percentile(transfer_times, 0.50),
        transfer_p99_ms=percentile(transfer_times, 0.99),
    )


def _outcome(role: str, result: SippResult) -> PeerOutcome:
    return PeerOutcome(
        role=role,
        succeeded=result.stats.successful_calls,
        failed=result.stats.failed_calls,
        retransmissions=result.stats.retransmissions,
        exit=result.exit.name,
    )


def cpu_ms_per_call(
    used_s: Mapping[str, float],
    calls: int,
    seconds: float = 0.0,
    idle_percent: Mapping[str, float] | None = None,
) -> tuple[tuple[str, float], ...]:
    """CPU ms per call of each process, busiest first: the CPU seconds it used in a step
    of `seconds`, less what it uses idle in that time (`idle_percent`, 100 = one core),
    over the step's calls."""
    if calls <= 0:
        return ()
    idle = idle_percent or {}
    per_call = (
        (label, 1000.0 * max(0.0, spent - idle.get(label, 0.0) / 100.0 * seconds) / calls)
        for label, spent in used_s.items()
    )
    return tuple(sorted(per_call, key=lambda item: -item[1]))


def idle_cpu_percent(root_pid: int, labels: Mapping[int, str], seconds: float) -> dict[str, float]:
    """CPU % of each process of a system over `seconds` without calls."""
    before = tree_cpu_seconds(root_pid, labels)
    started = time.monotonic()
    time.sleep(seconds)
    after = tree_cpu_seconds(root_pid, labels)
    elapsed = time.monotonic() - started
    return {
        label: 100.0 * max(0.0, spent - before.get(label, 0.0)) / elapsed
        for label, spent in after.items()
    }


def search(target: Target, description: str, config: BenchConfig, workdir: Path) -> SystemResult:
    """Climb the rate ladder until a step fails, the ladder ends or time runs out."""
    started = time.monotonic()
    idle = target.idle_percent
    warmup = run_step(
        target,
        WARMUP_RATE,
        WARMUP_CALLS,
        workdir / "warmup",
        config,
        warmup=True,
        idle_percent=idle,
    )
    print_step(target.name, warmup, label="warm-up")

    def result(steps: Sequence[StepResult], end: SearchEnd) -> SystemResult:
        return SystemResult(
            target.name,
            description,
            warmup,
            tuple(steps),
            end,
            target.scenario,
            target.focus,
            tuple(sorted(idle.items(), key=lambda item: -item[1])),
        )

    if not warmup.passed:
        return result((), SearchEnd.WARMUP_FAILED)
    steps: list[StepResult] = []
    end = SearchEnd.LADDER_TOP
    hold_s = target.plan.caller.hold_ms / 1000
    for rate in config.rates:
        calls = config.calls_for(rate)
        needed = calls / rate + hold_s + STEP_OVERHEAD_S
        if time.monotonic() - started + needed > config.budget_per_system_s:
            end = SearchEnd.TIME_BUDGET
            break
        step = run_step(
            target, rate, calls, workdir / f"step-{rate:05d}", config, idle_percent=idle
        )
        steps.append(step)
        print_step(target.name, step)
        if not step.passed:
            end = SearchEnd.STEP_FAILED
            break
        # Let the previous step's last transactions and timers drain.
        time.sleep(2.0)
    return result(steps, end)


# --- systems under test -----------------------------------------------------------


def _port_block_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((HOST, port))
                except OSError:
                    return False
    return True


def free_port_block(count: int, low: int, high: int) -> int:
    """A base port such that base..base+count-1 are free for UDP and TCP."""
    for _ in range(200):
        base = random.randrange(low, high - count)
        if _port_block_free(base, count):
            return base
    raise BenchError(f"no {count} free consecutive ports in {low}-{high}")


def wait_answers_options(port: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sip_options(HOST, port) is not None:
            return
        time.sleep(0.2)
    raise BenchError(f"nothing answers SIP OPTIONS on {HOST}:{port}; see {log}")


def all_as(root_pid: int, label: str) -> dict[int, str]:
    return dict.fromkeys(process_tree(root_pid), label)


def stop_process(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d did not stop in %.0fs: killing it", process.pid, timeout)
        process.kill()
        process.wait(timeout=10)


def bench_phone(platform: PlatformFile) -> Phone:
    """The extension BENCH_NUMBER routes to: the inbound UAS, transfer agent A, and the
    phone that calls out."""
    for number in platform.numbers:
        if number.spec.number != BENCH_NUMBER:
            continue
        tenant = next(t for t in platform.tenants if t.metadata.name == number.spec.tenant)
        config = next(c for c in platform.configs if c.metadata.name == number.spec.tenant)
        for user in config.spec.users:
            if user.extension == number.spec.entry:
                return Phone(
                    tenant=tenant.metadata.name,
                    city=user.city,
                    domain=tenant.spec.sip_domain,
                    extension=user.extension,
                    password=user.sip_password.get_secret_value(),
                )
    raise BenchError(f"{BENCH_NUMBER} must route straight to one extension in the platform file")


def write_bench_platform_file(source: Path, target: Path, phone: Phone, carrier_port: int) -> Path:
    """`source` plus agent B and the carrier trunk (sip_scenarios.bench_platform_documents),
    checked as `vpbx up` will check it."""
    try:
        documents = list(yaml.safe_load_all(source.read_text()))
        extended = bench_platform_documents(
            documents, tenant=phone.tenant, city=phone.city, carrier_port=carrier_port
        )
    except (OSError, yaml.YAMLError, PlatformFileError) as exc:
        raise BenchError(f"cannot make the bench platform file from {source}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump_all(extended, sort_keys=False))
    try:
        load_platform_file(target)
    except ManifestError as exc:
        raise BenchError(f"the bench platform file {target} does not load: {exc}") from exc
    return target


@dataclass(frozen=True)
class VpbxSystem:
    """`vpbx up` running with the agents registered: a Target per scenario."""

    remote: tuple[str, int]
    root_pid: int
    labels: Mapping[int, str]
    phone: Phone
    ports: Ports
    idle_percent: Mapping[str, float]

    def target(self, scenario: Scenario) -> Target:
        node = f"vpbx-node-{self.phone.tenant}-{self.phone.city}"
        return Target(
            name="vpbx",
            scenario=scenario,
            remote=self.remote,
            plan=vpbx_plan(scenario, self.ports, self.phone),
            root_pid=self.root_pid,
            labels=self.labels,
            focus=(node, "edge", "redis-server"),
            idle_percent=self.idle_percent,
        )


def register(
    workdir: Path, edge: tuple[str, int], port: int, domain: str, user: str, password: str
) -> None:
    """Bind `user` to sipp on `port` (the UAS that later listens there takes its calls)."""
    result = Sipp(
        scenario_path("register.xml"),
        workdir=workdir,
        remote=edge,
        local_ip=HOST,
        local_port=port,
        keys={"domain": domain, "user": user, "expires": str(REGISTER_EXPIRES_S)},
        credentials=(user, password),
        timeout=30,
    ).run()
    if not result.all_succeeded:
        raise BenchError(f"extension {user} could not register:\n{result.describe()}")


@contextlib.contextmanager
def running_vpbx(config: BenchConfig, workdir: Path) -> Iterator[VpbxSystem]:
    phone = bench_phone(load_platform_file(config.platform_file))
    workdir.mkdir(parents=True, exist_ok=True)
    ports = Ports(
        agent=free_port(socket.SOCK_DGRAM, HOST),
        target=free_port(socket.SOCK_DGRAM, HOST),
        carrier=free_port(socket.SOCK_DGRAM, HOST),
    )
    platform_file = write_bench_platform_file(
        config.platform_file, workdir / "platform.yaml", phone, ports.carrier
    )
    sip_port = free_port_pair(HOST)
    node_base = free_port_block(8, 30000, 40000)
    rtp_base = free_port_block(16, 40000, 50000)
    redis_port = free_port(socket.SOCK_STREAM, HOST)
    env = dict(os.environ)
    # A private redis-server (started by `vpbx up`) and the embedded CDR store.
    env.pop("VPBX_REDIS_URL", None)
    env.pop("VPBX_CLICKHOUSE_URL", None)
    env.update(VPBX_BENCH_ENV)
    command = [
        sys.executable, "-m", "vpbx_cli.main", "up",
        "-f", str(platform_file),
        "--host", HOST,
        "--sip-port", str(sip_port),
        "--sip-ws-port", "0",  # no browsers here; a fixed port would clash between runs
        "--node-port-base", str(node_base),
        "--rtp-port-base", str(rtp_base),
        "--redis-port", str(redis_port),
        "--var-dir", str(workdir / "var"),
        # The CRM reads every call event on the same two cores; what it costs is its own
        # figure (docs/benchmarks.md), not the SIP path's.
        "--no-crm",
    ]  # fmt: skip
    log_path = workdir / "vpbx-up.log"
    print(f"starting: {' '.join(command[2:])}", flush=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        node_ports = wait_vpbx_up(process, log_path, timeout=90)
        labels = {process.pid: "vpbx-up", **started_children(log_path)}
        for port in (sip_port, *node_ports):
            wait_answers_options(port, 60, log_path)
        edge = (HOST, sip_port)
        register(
            workdir / "register", edge, ports.agent, phone.domain, phone.extension, phone.password
        )
        register(
            workdir / "register-b", edge, ports.target, phone.domain, AGENT_B, AGENT_B_PASSWORD
        )
        idle = idle_cpu_percent(process.pid, labels, IDLE_SECONDS)
        yield VpbxSystem(edge, process.pid, labels, phone, ports, idle)
    finally:
        stop_process(process, signal.SIGINT, timeout=40)


_STARTED_RE = re.compile(r"started (\S+) \(pid (\d+)\)")


def started_children(log_path: Path) -> dict[int, str]:
    """pid -> name of the processes `vpbx up` says it started (edge, nodes)."""
    text = log_path.read_text(errors="replace")
    return {int(pid): name for name, pid in _STARTED_RE.findall(text)}


def wait_vpbx_up(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"vpbx up exited with {process.returncode}; see {log_path}")
        text = log_path.read_text(errors="replace")
        if "vpbx is up" in text:
            return [
                int(line.rsplit(":", 1)[1])
                for line in text.splitlines()
                if line.strip().startswith("node ")
            ]
        time.sleep(0.2)
    raise BenchError(f"vpbx up was not up after {timeout:.0f}s; see {log_path}")


@contextlib.contextmanager
def running_kamailio(
    workdir: Path, scenario: Scenario, ports: Ports, phone: Phone
) -> Iterator[Target]:
    binary = shutil.which("kamailio")
    if binary is None:
        raise BenchError("kamailio is not installed (Debian package kamailio)")
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / "run"
    run_dir.mkdir(exist_ok=True)
    port = free_port_pair(HOST)
    children = max(1, os.cpu_count() or 1)
    defines = [
        part
        for name, value in kamailio_defines(scenario, ports, phone).items()
        for part in ("-A", f"{name}={value}")
    ]
    command = [
        binary, "-DD", "-E",
        "-f", str(KAMAILIO_CFG),
        "-l", f"udp:{HOST}:{port}",
        *defines,
        "-A", f"CHILDREN={children}",
        "-m", "1024", "-M", "16",
        "-Y", str(run_dir),
    ]  # fmt: skip
    log_path = workdir / "kamailio.log"
    print(f"starting: {' '.join(command)}", flush=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_answers_options(port, 20, log_path)
        labels = all_as(process.pid, "kamailio")
        yield Target(
            name="kamailio",
            scenario=scenario,
            remote=(HOST, port),
            plan=kamailio_plan(scenario, ports, phone),
            root_pid=process.pid,
            # One label for the main process and its workers: the proxy as a whole.
            labels=labels,
            focus=("kamailio",),
            idle_percent=idle_cpu_percent(process.pid, labels, IDLE_SECONDS),
        )
    finally:
        # SIGTERM makes kamailio's main process stop its children too.
        stop_process(process, signal.SIGTERM, timeout=20)


# --- report -----------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


STEP_HEADER = (
    f"{'system':<9} {'step':<8} {'rate/s':>6} {'calls':>6} {'ok':>6} {'failed':>6} "
    f"{'retrans':>7} {'200s/s':>7} {'p50 ms':>6} {'p99 ms':>6} {'max ms':>6}  "
    "verdict; CPU of the busiest processes"
)


def step_line(system: str, step: StepResult, label: str = "step") -> str:
    return (
        f"{system:<9} {label:<8} {step.rate:>6} {step.planned:>6} {step.succeeded:>6} "
        f"{step.failed:>6} {step.retransmissions:>7} {_rate(step.answer_rate):>7} "
        f"{_ms(step.p50_ms):>6} {_ms(step.p99_ms):>6} {_ms(step.max_ms):>6}  "
        f"{step.verdict.value}; {_cpu(step)}{_peers(step)}"
    )


def _cpu(step: StepResult, count: int = 2) -> str:
    busiest = [f"{label} {percent:.0f}%" for label, percent in step.cpu_percent[:count]]
    return ", ".join([*busiest, f"sipp {step.sipp_cpu_percent:.0f}%"])


def _peers(step: StepResult) -> str:
    """The transfer's own figures (nothing for the other scenarios)."""
    parts = [
        f"{peer.role} {peer.succeeded} ok {peer.failed} failed"
        for peer in step.peers
        if not peer.complete(step.planned)
    ]
    if step.transfer_p50_ms is not None:
        parts.append(
            f"transfer p50 {_ms(step.transfer_p50_ms)} / p99 {_ms(step.transfer_p99_ms)} ms"
        )
    return "".join(f"; {part}" for part in parts)


def print_step(system: str, step: StepResult, label: str = "step") -> None:
    print(step_line(system, step, label), flush=True)


SCENARIO_TITLES = {
    Scenario.INBOUND: "a carrier calls the tenant's number, the registered phone answers",
    Scenario.OUTBOUND: "a tenant phone (digest) calls out through a carrier trunk",
    Scenario.TRANSFER: "agent A answers a carrier's call and transfers it to agent B (REFER)",
}


def print_scenario_header(scenario: Scenario) -> None:
    print(f"--- scenario {scenario.value}: {SCENARIO_TITLES[scenario]}", flush=True)


def summary_lines(results: Sequence[SystemResult]) -> list[str]:
    """Per scenario: the highest passing rates, the ratio, times and CPU per call."""
    lines: list[str] = []
    for scenario in Scenario:
        group = [result for result in results if result.scenario is scenario]
        if group:
            lines.append(f"scenario {scenario.value}: {SCENARIO_TITLES[scenario]}")
            lines.extend(scenario_summary_lines(group))
    return lines


def scenario_summary_lines(results: Sequence[SystemResult]) -> list[str]:
    lines = [
        f"{'system':<9} {'highest passing rate':>21} {'p50 ms':>7} {'p99 ms':>7}  search ended",
    ]
    for result in results:
        best = result.best
        rate = f"{best.rate} calls/s" if best else "none"
        lines.append(
            f"{result.name:<9} {rate:>21} {_ms(best.p50_ms if best else None):>7} "
            f"{_ms(best.p99_ms if best else None):>7}  {result.end.value}"
        )
    by_name = {result.name: result for result in results}
    vpbx, kamailio = by_name.get("vpbx"), by_name.get("kamailio")
    best_cpu = [cpu_text(result, result.best) for result in results if result.best is not None]
    if best_cpu:
        lines.append(f"CPU per call at the highest passing rate: {'; '.join(best_cpu)}")
    idle = [idle_text(result) for result in results if result.idle_cpu_percent]
    if idle:
        lines.append(f"idle CPU (taken off the CPU per call): {'; '.join(idle)}")
    if vpbx is not None and kamailio is not None:
        lines.append(ratio_line(vpbx, kamailio))
        common = _highest_common_rate(vpbx, kamailio)
        if common is not None:
            ours, theirs = vpbx.step_at(common), kamailio.step_at(common)
            if ours is not None and theirs is not None:
                lines.append(
                    f"time to 200 OK at {common} calls/s (highest rate both passed): "
                    f"vpbx p50 {_ms(ours.p50_ms)} / p99 {_ms(ours.p99_ms)} ms, "
                    f"kamailio p50 {_ms(theirs.p50_ms)} / p99 {_ms(theirs.p99_ms)} ms "
                    "(sipp measures whole milliseconds)"
                )
                if ours.transfer_p50_ms is not None or theirs.transfer_p50_ms is not None:
                    lines.append(
                        f"transfer time (REFER to BYE at agent A) at {common} calls/s: "
                        f"vpbx p50 {_ms(ours.transfer_p50_ms)} / p99 "
                        f"{_ms(ours.transfer_p99_ms)} ms, kamailio p50 "
                        f"{_ms(theirs.transfer_p50_ms)} / p99 {_ms(theirs.transfer_p99_ms)} ms"
                    )
                lines.append(
                    f"CPU per call at {common} calls/s: "
                    f"{cpu_text(vpbx, ours)}; {cpu_text(kamailio, theirs)}"
                )
    return lines


def _cpu_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def cpu_text(result: SystemResult, step: StepResult) -> str:
    """`vpbx (80/s): vpbx-node-globex-msk 9.31 ms, edge 5.02 ms, ...` for the focus."""
    parts = [f"{label} {_cpu_ms(step.cpu_ms(label))} ms" for label in result.focus]
    return f"{result.name} ({step.rate}/s): {', '.join(parts)}"


def idle_text(result: SystemResult) -> str:
    idle = dict(result.idle_cpu_percent)
    parts = [f"{label} {idle.get(label, 0.0):.1f}%" for label in result.focus]
    return f"{result.name}: {', '.join(parts)}"


def ratio_line(vpbx: SystemResult, kamailio: SystemResult) -> str:
    ours, theirs = vpbx.best, kamailio.best
    if ours is None or theirs is None:
        return "ratio vpbx/kamailio: undefined (a system passed no step)"
    ratio = ours.rate / theirs.rate
    # Kamailio passing the top of the ladder means its real limit is higher still.
    bound = "at most " if kamailio.end is not SearchEnd.STEP_FAILED else ""
    return f"ratio vpbx/kamailio (highest passing rates): {bound}{ratio:.3f}"


def _highest_common_rate(first: SystemResult, second: SystemResult) -> int | None:
    passed_first = {step.rate for step in first.steps if step.passed}
    passed_second = {step.rate for step in second.steps if step.passed}
    common = passed_first & passed_second
    return max(common) if common else None


def write_json(
    path: Path,
    config: BenchConfig,
    results: Sequence[SystemResult],
    scenarios: Sequence[Scenario] = (Scenario.INBOUND,),
) -> None:
    def encode(value: object) -> object:
        if isinstance(value, enum.Enum):
            return value.name
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"cannot encode {type(value).__name__}")

    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
        "scenarios": [scenario.value for scenario in scenarios],
        "results": [
            {**asdict(result), "best_rate": result.best.rate if result.best else None}
            for result in results
        ],
    }
    path.write_text(json.dumps(document, indent=2, default=encode))


# --- entry point ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_sip",
        description="Stepped sipp search of the highest call rate: vpbx edge+node vs Kamailio.",
    )
    parser.add_argument(
        "--scenario",
        default="all",
        help="inbound, outbound, transfer, a comma-separated list of them, or all (default)",
    )
    parser.add_argument(
        "--rates",
        default=",".join(str(rate) for rate in DEFAULT_RATES),
        help="comma-separated ladder of call rates (calls/s), climbed in order",
    )
    parser.add_argument(
        "--step-seconds", type=float, default=8.0, help="seconds of calls a step offers (default 8)"
    )
    parser.add_argument(
        "--max-calls-per-step",
        type=int,
        default=15000,
        help="fewer calls, hence shorter steps, at the top of the ladder (default 15000)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds of search per system and scenario (default 300)",
    )
    parser.add_argument(
        "--systems", default="vpbx,kamailio", help="comma-separated: vpbx, kamailio (default both)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default var/bench-sip/<UTC timestamp>"
    )
    parser.add_argument(
        "--max-p99-ms",
        type=float,
        default=500.0,
        help="a step fails when p99 time to 200 OK exceeds this (default 500 ms = SIP T1)",
    )
    parser.add_argument(
        "--platform-file",
        type=Path,
        default=DEMO,
        help="the platform the bench file is made from (default examples/demo.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log sipp failures in full")
    return parser.parse_args(argv)


def _parse_rates(text: str) -> tuple[int, ...]:
    rates = tuple(int(part) for part in text.split(",") if part.strip())
    if not rates or any(rate <= 0 for rate in rates) or list(rates) != sorted(set(rates)):
        raise BenchError(f"--rates must be rising positive integers, not {text!r}")
    return rates


VPBX_DESCRIPTIONS = {
    Scenario.INBOUND: "vpbx edge + media node ({file}, globex)",
    Scenario.OUTBOUND: "vpbx edge + media node: extension 101 calls out through a platform trunk",
    Scenario.TRANSFER: "vpbx edge + media node: extension 101 transfers the caller to 102 (REFER)",
}
KAMAILIO_DESCRIPTIONS = {
    Scenario.INBOUND: "Kamailio stateful relay (loadtest/kamailio/kamailio.cfg)",
    Scenario.OUTBOUND: "Kamailio stateful relay with a digest check of the phone (AUTH_*)",
    Scenario.TRANSFER: (
        "Kamailio stateful relay (TARGET_*); the caller carries out the transfer itself"
    ),
}


def run_vpbx(
    config: BenchConfig, scenarios: Sequence[Scenario], workdir: Path
) -> Iterator[SystemResult]:
    """One `vpbx up` for every scenario: results as each search ends."""
    with running_vpbx(config, workdir) as system:
        for index, scenario in enumerate(scenarios):
            if index:
                time.sleep(SETTLE_SECONDS)
            print_scenario_header(scenario)
            description = VPBX_DESCRIPTIONS[scenario].format(file=config.platform_file.name)
            yield search(system.target(scenario), description, config, workdir / scenario.value)


def run_kamailio(
    config: BenchConfig, scenarios: Sequence[Scenario], workdir: Path
) -> Iterator[SystemResult]:
    """Kamailio started per scenario (its defines differ): results as each search ends."""
    phone = bench_phone(load_platform_file(config.platform_file))
    ports = Ports(
        agent=free_port(socket.SOCK_DGRAM, HOST),
        target=free_port(socket.SOCK_DGRAM, HOST),
        carrier=free_port(socket.SOCK_DGRAM, HOST),
    )
    for scenario in scenarios:
        print_scenario_header(scenario)
        scenario_dir = workdir / scenario.value
        with running_kamailio(scenario_dir, scenario, ports, phone) as target:
            yield search(target, KAMAILIO_DESCRIPTIONS[scenario], config, scenario_dir)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rates = _parse_rates(args.rates)
        scenarios = parse_scenarios(args.scenario)
    except (BenchError, ScenarioError, ValueError) as exc:
        print(f"bench-sip: {exc}", file=sys.stderr)
        return 2
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = set(systems) - {"vpbx", "kamailio"}
    if unknown or not systems:
        print(f"bench-sip: unknown systems {sorted(unknown)}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or REPO / "var" / "bench-sip" / stamp).resolve()
    config = BenchConfig(
        rates=rates,
        step_seconds=args.step_seconds,
        max_calls_per_step=args.max_calls_per_step,
        budget_per_system_s=args.budget,
        max_retransmission_ratio=0.01,
        min_answer_rate_ratio=0.9,
        max_p99_ms=args.max_p99_ms,
        workdir=workdir,
        platform_file=args.platform_file.resolve(),
    )
    print(
        f"bench-sip: scenarios {','.join(scenario.value for scenario in scenarios)}; ladder "
        f"{','.join(map(str, rates))} calls/s, {config.step_seconds:g} s "
        f"per step (at most {config.max_calls_per_step} calls), {HOLD_MS} ms hold, no RTP; "
        f"{os.cpu_count()} CPUs shared by everything; files in {workdir}",
        flush=True,
    )
    print(
        "pass: 0 failed calls, retransmissions <= "
        f"{config.max_retransmission_ratio:.0%} of calls, 200 OKs at >= "
        f"{config.min_answer_rate_ratio:.0%} of the offered rate, p99 <= {config.max_p99_ms:g} ms; "
        f"load average before the run: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        flush=True,
    )
    print(STEP_HEADER, flush=True)
    results: list[SystemResult] = []
    try:
        for name in systems:
            run = run_vpbx if name == "vpbx" else run_kamailio
            results.extend(run(config, scenarios, workdir / name))
    except BenchError as exc:
        print(f"bench-sip: {exc}", file=sys.stderr)
        return 1
    finally:
        if results:
            write_json(workdir / "results.json", config, results, scenarios)
    print(flush=True)
    for line in summary_lines(results):
        print(line, flush=True)
    print(f"details: {workdir / 'results.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench-sip`: a stepped sipp search of the highest call rate, vpbx vs Kamailio.

For each system under test the search offers rising call rates (calls per second),
each step a fixed number of short calls (INVITE, 200, ACK, 1 s hold, BYE; SDP but no
RTP) answered by one sipp UAS. A step passes when every call succeeded, sipp had
to retransmit (almost) nothing and the 200 OKs came back at the offered rate; the
search stops at the first failing step, at the top of the ladder or when the time
budget is spent. Reported per system: the highest passing rate with its p50/p99
time from INVITE to 200 OK, and the ratio vpbx/Kamailio.

The systems:
  vpbx      `vpbx up -f examples/demo.yaml` on free loopback ports; the UAS registers
            as globex extension 101 and sipp calls globex's number, which routes
            straight to that extension: sipp -> edge -> media node -> edge -> UAS.
  kamailio  Debian's kamailio with loadtest/kamailio/kamailio.cfg, a plain stateful
            (tm) record-routing relay to the UAS: sipp -> kamailio -> UAS.

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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.services.platform import sip_options
from tests.services.ports import free_port, free_port_pair
from tests.services.sipp import Sipp, SippExit, SippResult, scenario_path

from vpbx_common.manifests import PlatformFile, load_platform_file

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo.yaml"
KAMAILIO_CFG = Path(__file__).resolve().parent / "kamailio" / "kamailio.cfg"
HOST = "127.0.0.1"

DEFAULT_RATES = (
    *(20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200, 250, 300, 400, 500, 700),
    *(1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 6000, 8000),
)
# The number the benchmark calls: it routes straight to one extension, so exactly
# one UAS answers (a ring group would fork to several).
BENCH_NUMBER = "+74950000009"
CALLER = "+79130000001"
HOLD_MS = 1000
WARMUP_RATE = 10
WARMUP_CALLS = 20
# sipp gives up on a call that hears nothing for this long (the step then fails).
RECV_TIMEOUT_MS = 8000
REGISTER_EXPIRES_S = 3600
# Rough time a step needs besides offering its calls: UAS start, hold, tail.
STEP_OVERHEAD_S = 5.0

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
    """Where the caller sends its INVITEs and where the answering UAS must listen."""

    name: str
    remote: tuple[str, int]
    uas_port: int
    domain: str
    service: str
    # The system's process tree, for CPU accounting: its root and names for pids.
    root_pid: int
    labels: Mapping[int, str]


class StepVerdict(enum.Enum):
    PASSED = "passed"
    INCOMPLETE = "sipp did not finish the step"
    FAILED_CALLS = "calls failed"
    RETRANSMISSIONS = "too many retransmissions"
    SLOW = "200 OKs slower than the offered rate"
    LATENCY = "p99 time to 200 OK over the limit"


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

    @property
    def passed(self) -> bool:
        return self.verdict is StepVerdict.PASSED


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
) -> StepVerdict:
    stats = result.stats
    if result.exit is SippExit.KILLED_AT_DEADLINE or stats.created_calls < planned:
        return StepVerdict.INCOMPLETE
    if not result.all_succeeded or stats.successful_calls < planned:
        return StepVerdict.FAILED_CALLS
    if stats.retransmissions > config.max_retransmission_ratio * planned:
        return StepVerdict.RETRANSMISSIONS
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
    target: Target, rate: int, calls: int, workdir: Path, config: BenchConfig
) -> StepResult:
    offer_s = calls / rate
    sipp_timeout = offer_s + HOLD_MS / 1000 + RECV_TIMEOUT_MS / 1000 + 20
    uas = Sipp(
        scenario_path("uas_bench.xml"),
        workdir=workdir / "uas",
        local_ip=HOST,
        local_port=target.uas_port,
        calls=calls,
        timeout=sipp_timeout + 10,
        trace_messages=False,
    )
    uac = Sipp(
        scenario_path("uac_bench.xml"),
        workdir=workdir / "uac",
        remote=target.remote,
        local_ip=HOST,
        service=target.service,
        keys={"domain": target.domain, "caller": CALLER},
        calls=calls,
        call_rate=rate,
        pause_ms=HOLD_MS,
        recv_timeout_ms=RECV_TIMEOUT_MS,
        timeout=sipp_timeout,
        trace_messages=False,
    )
    cpu_before = tree_cpu_seconds(target.root_pid, target.labels)
    sipp_before = reaped_children_cpu_seconds()
    started = time.monotonic()
    uas.start()
    try:
        result = uac.run()
    finally:
        uas.stop()
    seconds = time.monotonic() - started
    cpu_after = tree_cpu_seconds(target.root_pid, target.labels)
    cpu_percent = sorted(
        (
            (label, 100.0 * (used - cpu_before.get(label, 0.0)) / seconds)
            for label, used in cpu_after.items()
        ),
        key=lambda item: -item[1],
    )
    # Both sipp processes of the step have been reaped by now; the systems under
    # test have not (they are not finished), so this delta is sipp's alone.
    sipp_percent = 100.0 * (reaped_children_cpu_seconds() - sipp_before) / seconds
    rows = read_rtt_rows(workdir / "uac")
    times = [response for _, response in rows]
    rate_seen = answer_rate(rows)
    p99_ms = percentile(times, 0.99)
    verdict = judge(result, rate, calls, rate_seen, p99_ms, config)
    if verdict is not StepVerdict.PASSED:
        logger.info("step %d/s on %s: %s\n%s", rate, target.name, verdict.value, result.describe())
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
    )


def search(target: Target, description: str, config: BenchConfig, workdir: Path) -> SystemResult:
    """Climb the rate ladder until a step fails, the ladder ends or time runs out."""
    started = time.monotonic()
    warmup = run_step(target, WARMUP_RATE, WARMUP_CALLS, workdir / "warmup", config)
    print_step(target.name, warmup, label="warm-up")
    if not warmup.passed:
        return SystemResult(target.name, description, warmup, (), SearchEnd.WARMUP_FAILED)
    steps: list[StepResult] = []
    end = SearchEnd.LADDER_TOP
    for rate in config.rates:
        calls = config.calls_for(rate)
        needed = calls / rate + HOLD_MS / 1000 + STEP_OVERHEAD_S
        if time.monotonic() - started + needed > config.budget_per_system_s:
            end = SearchEnd.TIME_BUDGET
            break
        step = run_step(target, rate, calls, workdir / f"step-{rate:05d}", config)
        steps.append(step)
        print_step(target.name, step)
        if not step.passed:
            end = SearchEnd.STEP_FAILED
            break
        # Let the previous step's last transactions and timers drain.
        time.sleep(2.0)
    return SystemResult(target.name, description, warmup, tuple(steps), end)


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


@dataclass(frozen=True)
class DemoExtension:
    """The demo file's extension behind BENCH_NUMBER, with what registering needs."""

    tenant: str
    domain: str
    extension: str
    password: str


def bench_extension(platform: PlatformFile) -> DemoExtension:
    for number in platform.numbers:
        if number.spec.number != BENCH_NUMBER:
            continue
        tenant = next(t for t in platform.tenants if t.metadata.name == number.spec.tenant)
        config = next(c for c in platform.configs if c.metadata.name == number.spec.tenant)
        for user in config.spec.users:
            if user.extension == number.spec.entry:
                return DemoExtension(
                    tenant=tenant.metadata.name,
                    domain=tenant.spec.sip_domain,
                    extension=user.extension,
                    password=user.sip_password.get_secret_value(),
                )
    raise BenchError(f"{BENCH_NUMBER} must route straight to one extension in the platform file")


@contextlib.contextmanager
def running_vpbx(config: BenchConfig, workdir: Path) -> Iterator[Target]:
    extension = bench_extension(load_platform_file(config.platform_file))
    workdir.mkdir(parents=True, exist_ok=True)
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
        "-f", str(config.platform_file),
        "--host", HOST,
        "--sip-port", str(sip_port),
        "--node-port-base", str(node_base),
        "--rtp-port-base", str(rtp_base),
        "--redis-port", str(redis_port),
        "--var-dir", str(workdir / "var"),
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
        uas_port = free_port(socket.SOCK_DGRAM, HOST)
        register = Sipp(
            scenario_path("register.xml"),
            workdir=workdir / "register",
            remote=(HOST, sip_port),
            local_ip=HOST,
            local_port=uas_port,
            keys={
                "domain": extension.domain,
                "user": extension.extension,
                "expires": str(REGISTER_EXPIRES_S),
            },
            credentials=(extension.extension, extension.password),
            timeout=30,
        ).run()
        if not register.all_succeeded:
            raise BenchError(f"the UAS could not register:\n{register.describe()}")
        yield Target(
            name="vpbx",
            remote=(HOST, sip_port),
            uas_port=uas_port,
            domain=HOST,
            service=BENCH_NUMBER,
            root_pid=process.pid,
            labels=labels,
        )
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
def running_kamailio(workdir: Path) -> Iterator[Target]:
    binary = shutil.which("kamailio")
    if binary is None:
        raise BenchError("kamailio is not installed (Debian package kamailio)")
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / "run"
    run_dir.mkdir(exist_ok=True)
    port = free_port_pair(HOST)
    uas_port = free_port(socket.SOCK_DGRAM, HOST)
    children = max(1, os.cpu_count() or 1)
    command = [
        binary, "-DD", "-E",
        "-f", str(KAMAILIO_CFG),
        "-l", f"udp:{HOST}:{port}",
        "-A", f'UAS_URI="sip:{HOST}:{uas_port}"',
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
        yield Target(
            name="kamailio",
            remote=(HOST, port),
            uas_port=uas_port,
            domain=HOST,
            service=BENCH_NUMBER,
            root_pid=process.pid,
            # One label for the main process and its workers: the proxy as a whole.
            labels=all_as(process.pid, "kamailio"),
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
        f"{step.verdict.value}; {_cpu(step)}"
    )


def _cpu(step: StepResult, count: int = 2) -> str:
    busiest = [f"{label} {percent:.0f}%" for label, percent in step.cpu_percent[:count]]
    return ", ".join([*busiest, f"sipp {step.sipp_cpu_percent:.0f}%"])


def print_step(system: str, step: StepResult, label: str = "step") -> None:
    print(step_line(system, step, label), flush=True)


def summary_lines(results: Sequence[SystemResult]) -> list[str]:
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
    return lines


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


def write_json(path: Path, config: BenchConfig, results: Sequence[SystemResult]) -> None:
    def encode(value: object) -> object:
        if isinstance(value, enum.Enum):
            return value.name
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"cannot encode {type(value).__name__}")

    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
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
        "--budget", type=float, default=300.0, help="seconds of search per system (default 300)"
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
    parser.add_argument("--platform-file", type=Path, default=DEMO)
    parser.add_argument("-v", "--verbose", action="store_true", help="log sipp failures in full")
    return parser.parse_args(argv)


def _parse_rates(text: str) -> tuple[int, ...]:
    rates = tuple(int(part) for part in text.split(",") if part.strip())
    if not rates or any(rate <= 0 for rate in rates) or list(rates) != sorted(set(rates)):
        raise BenchError(f"--rates must be rising positive integers, not {text!r}")
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rates = _parse_rates(args.rates)
    except (BenchError, ValueError) as exc:
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
        f"bench-sip: ladder {','.join(map(str, rates))} calls/s, {config.step_seconds:g} s "
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
            system_dir = workdir / name
            if name == "vpbx":
                with running_vpbx(config, system_dir) as target:
                    description = "vpbx edge + media node (examples/demo.yaml, globex)"
                    results.append(search(target, description, config, system_dir))
            else:
                with running_kamailio(system_dir) as target:
                    description = "Kamailio stateful relay (loadtest/kamailio/kamailio.cfg)"
                    results.append(search(target, description, config, system_dir))
    except BenchError as exc:
        print(f"bench-sip: {exc}", file=sys.stderr)
        return 1
    finally:
        if results:
            write_json(workdir / "results.json", config, results)
    print(flush=True)
    for line in summary_lines(results):
        print(line, flush=True)
    print(f"details: {workdir / 'results.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

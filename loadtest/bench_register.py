"""`make bench-register`: digest-authenticated REGISTERs per second, vpbx vs Kamailio.

For each system the search offers rising rates of registrations (REGISTER, 401
challenge, REGISTER with MD5 digest credentials, 200 OK), each from another phone:
sipp takes the next extension and password of a users file per registration. A step
passes when every registration got its 200 OK, sipp retransmitted (almost) nothing,
the 200s came back at the offered rate and p99 registration time stayed within
500 ms; the search stops at the first failing step, at the top of the ladder or when
the time budget is spent (a failing step is tried once more first: the machine is
shared with other work, and one hiccup should not end a search). Then vpbx gets one
storm step at `--storm-factor` (3) x its highest passing rate, not judged: what the
phones of a failing or storm step were answered (503 with Retry-After when the system
sheds load; never 500 from vpbx) is counted from sipp's error log.

The systems (the same topology: a stateful proxy in front of a registrar):
  vpbx      `vpbx up` with a generated platform file: one tenant, `--users` users,
            one city; sipp -> edge (routing table and home city from Redis, Path)
            -> media node (digest against the compiled config's HA1s, bindings
            in Redis).
  kamailio  Debian's kamailio twice: loadtest/kamailio/register_relay.cfg (tm,
            add_path, relay to a fixed registrar) in front of
            loadtest/kamailio/registrar.cfg (auth_db over db_text with the same
            users' HA1s, usrloc in memory).

Everything runs on loopback in this one process tree and stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from tests.services.ports import free_port, free_port_pair
from tests.services.sipp import Sipp, SippResult, scenario_path

from loadtest.bench_sip import (
    REPO,
    BenchConfig,
    BenchError,
    StepVerdict,
    all_as,
    answer_rate,
    free_port_block,
    judge,
    percentile,
    process_tree,
    read_rtt_rows,
    reaped_children_cpu_seconds,
    started_children,
    stop_process,
    wait_answers_options,
    wait_vpbx_up,
)
from loadtest.sip_scenarios import HOST
from vpbx_common.manifests import load_platform_file

logger = logging.getLogger(__name__)

KAMAILIO_DIR = Path(__file__).resolve().parent / "kamailio"
DEFAULT_RATES = (
    *(50, 100, 150, 200, 250, 300, 400, 500, 600, 800),
    *(1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000),
)
DEFAULT_USERS = 2000
TENANT = "storm"
DOMAIN = "storm.vpbx.local"
FIRST_EXTENSION = 100000
EXPIRES_S = 3600
WARMUP_RATE = 20
WARMUP_REGISTRATIONS = 40
# sipp gives up on a registration that hears nothing for this long (the step fails).
RECV_TIMEOUT_MS = 10_000
STEP_OVERHEAD_S = 4.0

VPBX_BENCH_ENV = {
    "VPBX_LOG_LEVEL": "WARNING",
    # sipp 3.6.1 computes MD5 digests only; Kamailio challenges with MD5 too.
    "VPBX_DIGEST_ALGORITHMS": '["MD5"]',
    # The edge's per-source flood limit (200 requests/s) would count every phone of
    # the benchmark as one: they all are sipp on 127.0.0.1.
    "VPBX_SOURCE_RATE": "1000000",
    "VPBX_SOURCE_BURST": "1000000",
}

# sipp's error log: "Aborting call on unexpected message for Call-Id '…': while expecting
# '200' (index 3), received 'SIP/2.0 503 Service Unavailable<CRLF>…headers…'".
_ABORTED_ON_RE = re.compile(
    r"Aborting call on unexpected message[^\n]*received 'SIP/2\.0 (\d{3})([^']*)'", re.DOTALL
)


def password(extension: str) -> str:
    return f"storm-{extension}-secret"


def extensions(users: int) -> list[str]:
    return [str(FIRST_EXTENSION + index) for index in range(users)]


# --- the users, for each system ---------------------------------------------------------


def write_platform_file(path: Path, users: int) -> Path:
    """One tenant in one city with `users` users, each with its SIP password."""
    documents = [
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": TENANT},
            "spec": {
                "displayName": "Registration storm",
                "sipDomain": DOMAIN,
                "cities": [{"name": "msk"}],
            },
        },
        {
            "apiVersion": "config.vpbx.io/v1alpha1",
            "kind": "PbxConfig",
            "metadata": {"name": TENANT},
            "spec": {
                "users": [
                    {
                        "extension": extension,
                        "name": f"Phone {extension}",
                        "city": "msk",
                        "sipPassword": password(extension),
                    }
                    for extension in extensions(users)
                ],
            },
        },
    ]
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    load_platform_file(path)  # refuse to benchmark a file vpbx would not accept
    return path


def write_users_csv(path: Path, users: int) -> Path:
    """sipp's injection file: extension; its [authentication ...] keyword."""
    lines = ["SEQUENTIAL"]
    for extension in extensions(users):
        lines.append(
            f"{extension};[authentication username={extension} password={password(extension)}]"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def write_kamailio_db(directory: Path, users: int) -> Path:
    """db_text tables for auth_db: the same users with their HA1s (no passwords)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "version").write_text(
        "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n0:location:9\n"
    )
    rows = [
        "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) "
    ]
    for index, extension in enumerate(extensions(users), start=1):
        secret = password(extension)
        ha1 = hashlib.md5(f"{extension}:{DOMAIN}:{secret}".encode()).hexdigest()  # noqa: S324
        ha1b = hashlib.md5(f"{extension}@{DOMAIN}:{DOMAIN}:{secret}".encode()).hexdigest()  # noqa: S324
        rows.append(f"{index}:{extension}:{DOMAIN}:-:{ha1}:{ha1b}")
    (directory / "subscriber").write_text("\n".join(rows) + "\n")
    return directory


# --- systems under test -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    remote: tuple[str, int]
    # Process trees of the system, for CPU accounting, and names for their pids.
    roots: tuple[int, ...]
    labels: Mapping[int, str]


@contextlib.contextmanager
def running_vpbx(platform_file: Path, workdir: Path) -> Iterator[Target]:
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port = free_port_pair(HOST)
    node_base = free_port_block(8, 30000, 40000)
    rtp_base = free_port_block(16, 40000, 50000)
    redis_port = free_port(socket.SOCK_STREAM, HOST)
    env = dict(os.environ)
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
        node_ports = wait_vpbx_up(process, log_path, timeout=180)
        labels = {process.pid: "vpbx-up", **started_children(log_path)}
        for port in (sip_port, *node_ports):
            wait_answers_options(port, 60, log_path)
        for pid, name in process_tree(process.pid).items():
            if name.startswith("redis-server"):
                labels[pid] = "redis"
        yield Target("vpbx", (HOST, sip_port), (process.pid,), labels)
    finally:
        stop_process(process, signal.SIGINT, timeout=40)


def _start_kamailio(
    config: str, port: int, defines: Sequence[str], workdir: Path, name: str
) -> subprocess.Popen[bytes]:
    binary = shutil.which("kamailio")
    if binary is None:
        raise BenchError("kamailio is not installed (Debian package kamailio)")
    run_dir = workdir / f"run-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    children = max(1, os.cpu_count() or 1)
    command = [binary, "-DD", "-E", "-f", str(KAMAILIO_DIR / config), "-l", f"udp:{HOST}:{port}"]
    for define in (*defines, f"CHILDREN={children}"):
        command += ["-A", define]
    command += ["-m", "1024", "-M", "16", "-Y", str(run_dir)]
    print(f"starting: {' '.join(command)}", flush=True)
    with (workdir / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


@contextlib.contextmanager
def running_kamailio(users: int, workdir: Path) -> Iterator[Target]:
    workdir.mkdir(parents=True, exist_ok=True)
    database = write_kamailio_db(workdir / "db", users)
    registrar_port, relay_port = free_port_pair(HOST), free_port_pair(HOST)
    registrar = _start_kamailio(
        "registrar.cfg",
        registrar_port,
        [f'DBURL="text://{database}"'],
        workdir,
        "kamailio-registrar",
    )
    try:
        relay = _start_kamailio(
            "register_relay.cfg",
            relay_port,
            [f'REGISTRAR_URI="sip:{HOST}:{registrar_port}"'],
            workdir,
            "kamailio-relay",
        )
        try:
            wait_answers_options(registrar_port, 20, workdir / "kamailio-registrar.log")
            wait_answers_options(relay_port, 20, workdir / "kamailio-relay.log")
            labels = {
                **all_as(registrar.pid, "kamailio-registrar"),
                **all_as(relay.pid, "kamailio-relay"),
            }
            yield Target("kamailio", (HOST, relay_port), (relay.pid, registrar.pid), labels)
        finally:
            # SIGTERM makes kamailio's main process stop its children too.
            stop_process(relay, signal.SIGTERM, timeout=20)
    finally:
        stop_process(registrar, signal.SIGTERM, timeout=20)


# --- one step -------------------------------------------------------------------------


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
    # What failed registrations were answered, e.g. {"503+Retry-After": 120}; "none" =
    # no final answer before sipp gave up.
    failure_answers: dict[str, int]
    cpu_percent: tuple[tuple[str, float], ...]
    sipp_cpu_percent: float

    @property
    def passed(self) -> bool:
        return self.verdict is StepVerdict.PASSED


def failure_answers(result: SippResult) -> dict[str, int]:
    """What failed registrations were answered: "503+Retry-After", "500", "none"..."""
    counts: Counter[str] = Counter(
        status + ("+Retry-After" if re.search(r"^Retry-After:", rest, re.MULTILINE) else "")
        for status, rest in _ABORTED_ON_RE.findall(result.errors)
    )
    unexplained = result.stats.failed_calls - sum(counts.values())
    if unexplained > 0:
        counts["none"] += unexplained
    return dict(sorted(counts.items()))


def cpu_seconds(target: Target) -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for root in target.roots:
        for pid, name in process_tree(root).items():
            try:
                text = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2 :].split()
            label = target.labels.get(pid, name)
            used[label] = used.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def run_step(
    target: Target,
    rate: int,
    count: int,
    users_csv: Path,
    local_port: int,
    workdir: Path,
    config: BenchConfig,
) -> StepResult:
    offer_s = count / rate
    sipp = Sipp(
        scenario_path("register_bench.xml"),
        workdir=workdir,
        remote=target.remote,
        local_ip=HOST,
        # One port for the whole run: a phone re-registering in a later step refreshes
        # its binding instead of adding one (the 200 OK lists every binding).
        local_port=local_port,
        keys={"domain": DOMAIN, "expires": str(EXPIRES_S)},
        calls=count,
        call_rate=rate,
        recv_timeout_ms=RECV_TIMEOUT_MS,
        timeout=offer_s + RECV_TIMEOUT_MS / 1000 + 20,
        trace_messages=False,
        # An unexpected answer (503...) aborts the registration, without a BYE to the
        # registrar (-nd would ignore unexpected answers and wait for the 200 instead).
        extra_args=["-inf", str(users_csv), "-default_behaviors", "all,-bye"],
    )
    cpu_before = cpu_seconds(target)
    sipp_before = reaped_children_cpu_seconds()
    started = time.monotonic()
    result = sipp.run()
    seconds = time.monotonic() - started
    cpu_after = cpu_seconds(target)
    cpu_percent = sorted(
        (
            (label, 100.0 * (used - cpu_before.get(label, 0.0)) / seconds)
            for label, used in cpu_after.items()
        ),
        key=lambda item: -item[1],
    )
    sipp_percent = 100.0 * (reaped_children_cpu_seconds() - sipp_before) / seconds
    rows = read_rtt_rows(workdir)
    times = [response for _, response in rows]
    rate_seen = answer_rate(rows)
    p99_ms = percentile(times, 0.99)
    verdict = judge(result, rate, count, rate_seen, p99_ms, config)
    if verdict is not StepVerdict.PASSED:
        logger.info("step %d/s on %s: %s\n%s", rate, target.name, verdict.value, result.describe())
    return StepResult(
        rate=rate,
        planned=count,
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
        failure_answers=failure_answers(result),
        cpu_percent=tuple(cpu_percent),
        sipp_cpu_percent=sipp_percent,
    )


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
    # After the search: offered `storm_factor` x the highest passing rate, not judged;
    # shows how the system answers what it cannot take (503 + Retry-After, not 500).
    storm: StepResult | None = None

    @property
    def best(self) -> StepResult | None:
        passing = [step for step in self.steps if step.passed]
        return passing[-1] if passing else None


def search(
    target: Target,
    description: str,
    users_csv: Path,
    config: BenchConfig,
    workdir: Path,
    storm_factor: float = 0.0,
    retries: int = 1,
) -> SystemResult:
    started = time.monotonic()
    local_port = free_port(socket.SOCK_DGRAM, HOST)
    warmup = run_step(
        target, WARMUP_RATE, WARMUP_REGISTRATIONS, users_csv, local_port, workdir / "warmup", config
    )
    print(step_line(target.name, warmup, "warm-up"), flush=True)
    if not warmup.passed:
        return SystemResult(target.name, description, warmup, (), SearchEnd.WARMUP_FAILED)
    steps: list[StepResult] = []
    end = SearchEnd.LADDER_TOP
    for rate in config.rates:
        count = config.calls_for(rate)
        needed = count / rate + STEP_OVERHEAD_S
        if time.monotonic() - started + needed > config.budget_per_system_s:
            end = SearchEnd.TIME_BUDGET
            break
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(3.0)
            step = run_step(
                target,
                rate,
                count,
                users_csv,
                local_port,
                workdir / f"step-{rate:05d}" / f"attempt-{attempt + 1}",
                config,
            )
            steps.append(step)
            print(step_line(target.name, step, "retry" if attempt else "step"), flush=True)
            # The machine is shared: a step is tried again before it ends the search.
            if step.passed:
                break
        if not step.passed:
            end = SearchEnd.STEP_FAILED
            break
        time.sleep(2.0)  # let the last transactions of the step drain
    storm = None
    passed = [step.rate for step in steps if step.passed]
    if storm_factor > 0 and passed:
        time.sleep(2.0)
        rate = round(storm_factor * passed[-1])
        count = config.calls_for(rate)
        storm = run_step(target, rate, count, users_csv, local_port, workdir / "storm", config)
        print(step_line(target.name, storm, "storm"), flush=True)
    return SystemResult(target.name, description, warmup, tuple(steps), end, storm)


# --- report ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


STEP_HEADER = (
    f"{'system':<9} {'step':<8} {'rate/s':>6} {'regs':>6} {'ok':>6} {'failed':>6} "
    f"{'retrans':>7} {'200s/s':>7} {'p50 ms':>6} {'p99 ms':>6} {'max ms':>6}  "
    "verdict; failed answered; CPU of the busiest processes"
)


def step_line(system: str, step: StepResult, label: str = "step") -> str:
    answers = ", ".join(f"{status}: {n}" for status, n in step.failure_answers.items()) or "-"
    busiest = [f"{name} {percent:.0f}%" for name, percent in step.cpu_percent[:3]]
    rate_seen = "-" if step.answer_rate is None else f"{step.answer_rate:.1f}"
    return (
        f"{system:<9} {label:<8} {step.rate:>6} {step.planned:>6} {step.succeeded:>6} "
        f"{step.failed:>6} {step.retransmissions:>7} {rate_seen:>7} "
        f"{_ms(step.p50_ms):>6} {_ms(step.p99_ms):>6} {_ms(step.max_ms):>6}  "
        f"{step.verdict.value}; {answers}; "
        f"{', '.join([*busiest, f'sipp {step.sipp_cpu_percent:.0f}%'])}"
    )


def summary_lines(results: Sequence[SystemResult]) -> list[str]:
    lines = [
        f"{'system':<9} {'highest passing rate':>26} {'p50 ms':>7} {'p99 ms':>7}  search ended"
    ]
    for result in results:
        best = result.best
        rate = f"{best.rate} REGISTERs/s" if best else "none"
        lines.append(
            f"{result.name:<9} {rate:>26} {_ms(best.p50_ms if best else None):>7} "
            f"{_ms(best.p99_ms if best else None):>7}  {result.end.value}"
        )
        failing = result.steps[-1] if result.steps and not result.steps[-1].passed else None
        for step in (failing, result.storm):
            if step is not None:
                answered = ", ".join(f"{k}: {v}" for k, v in step.failure_answers.items())
                lines.append(
                    f"{'':<9} at {step.rate}/s: {step.succeeded} of {step.planned} registered; "
                    f"the others got: {answered or '-'}"
                )
    by_name = {result.name: result for result in results}
    vpbx, kamailio = by_name.get("vpbx"), by_name.get("kamailio")
    if vpbx is not None and kamailio is not None and vpbx.best and kamailio.best:
        bound = "at most " if kamailio.end is not SearchEnd.STEP_FAILED else ""
        lines.append(
            f"ratio vpbx/kamailio (highest passing rates): {bound}"
            f"{vpbx.best.rate / kamailio.best.rate:.3f}"
        )
    return lines


def write_json(
    path: Path, config: BenchConfig, users: int, results: Sequence[SystemResult]
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
        "users": users,
        "results": [
            {**asdict(result), "best_rate": result.best.rate if result.best else None}
            for result in results
        ],
    }
    path.write_text(json.dumps(document, indent=2, default=encode))


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_register",
        description="Stepped sipp search of digest-authenticated REGISTERs/s: vpbx vs Kamailio.",
    )
    parser.add_argument("--rates", default=",".join(str(rate) for rate in DEFAULT_RATES))
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--max-per-step", type=int, default=15000)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds per system")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="phones (extensions)")
    parser.add_argument("--systems", default="vpbx,kamailio")
    parser.add_argument("--max-p99-ms", type=float, default=500.0)
    parser.add_argument(
        "--retries", type=int, default=1, help="tries of a failing step before it ends a search"
    )
    parser.add_argument(
        "--storm-factor",
        type=float,
        default=3.0,
        help="after vpbx's search, offer this x its highest passing rate once (0: skip)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    rates = tuple(int(part) for part in args.rates.split(",") if part.strip())
    if not rates or list(rates) != sorted(set(rates)) or rates[0] <= 0 or args.users < 1:
        print("bench-register: --rates must be rising positive integers", file=sys.stderr)
        return 2
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    if not systems or set(systems) - {"vpbx", "kamailio"}:
        print(f"bench-register: unknown systems in {args.systems!r}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or REPO / "var" / "bench-register" / stamp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    platform_file = write_platform_file(workdir / "storm.yaml", args.users)
    users_csv = write_users_csv(workdir / "users.csv", args.users)
    config = BenchConfig(
        rates=rates,
        step_seconds=args.step_seconds,
        max_calls_per_step=args.max_per_step,
        budget_per_system_s=args.budget,
        max_retransmission_ratio=0.01,
        min_answer_rate_ratio=0.9,
        max_p99_ms=args.max_p99_ms,
        workdir=workdir,
        platform_file=platform_file,
    )
    print(
        f"bench-register: {args.users} phones of {DOMAIN}, ladder {','.join(map(str, rates))} "
        f"REGISTERs/s, {config.step_seconds:g} s per step (at most {config.max_calls_per_step}); "
        f"{os.cpu_count()} CPUs shared by everything; files in {workdir}",
        flush=True,
    )
    print(
        f"pass: 0 failed, retransmissions <= {config.max_retransmission_ratio:.0%}, 200s at >= "
        f"{config.min_answer_rate_ratio:.0%} of the offered rate, p99 REGISTER->200 (both round "
        f"trips) <= {config.max_p99_ms:g} ms; load average before: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        flush=True,
    )
    print(STEP_HEADER, flush=True)
    results: list[SystemResult] = []
    try:
        for name in systems:
            system_dir = workdir / name
            if name == "vpbx":
                with running_vpbx(platform_file, system_dir) as target:
                    description = "vpbx edge + media node (Redis bindings)"
                    results.append(
                        search(
                            target,
                            description,
                            users_csv,
                            config,
                            system_dir,
                            args.storm_factor,
                            args.retries,
                        )
                    )
            else:
                with running_kamailio(args.users, system_dir) as target:
                    description = "Kamailio relay (tm, path) + registrar (auth_db, usrloc)"
                    results.append(
                        search(
                            target,
                            description,
                            users_csv,
                            config,
                            system_dir,
                            retries=args.retries,
                        )
                    )
    except BenchError as exc:
        print(f"bench-register: {exc}", file=sys.stderr)
        return 1
    finally:
        if results:
            write_json(workdir / "results.json", config, args.users, results)
    print(flush=True)
    for line in summary_lines(results):
        print(line, flush=True)
    print(f"details: {workdir / 'results.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run sipp (Debian's sip-tester) scenarios from loadtest/scenarios as bounded subprocesses.

A `Sipp` owns one sipp process and a private work directory holding every trace file
sipp writes there; `SippResult` is what the run proved: exit code, call counters from
the -trace_stat CSV, response times from -trace_rtt, and the RTP counters sipp shows
on its screen.

RTP visibility in sipp 3.6.1: `rtp_stream` playback counts packets *sent* only (its
"RTP IN" rate stays 0 even when packets arrive); `-rtp_echo` counts packets received
on the echo port (and sends them back). Both counters exist only on the live screen,
so the runner asks sipp for screen dumps (SIGUSR2) while it runs and keeps the
highest value seen. uac_call.xml therefore reports `rtp_packets_sent`, and
uac_call_echo.xml reports `rtp_packets_echoed` (= received by sipp).
"""

from __future__ import annotations

import csv
import enum
import logging
import math
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.services.ports import free_port

logger = logging.getLogger(__name__)

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "loadtest" / "scenarios"
# The scenarios name this file literally: sipp caches rtp_stream files at load time,
# before any -key substitution, so the name cannot be a parameter.
TONE_FILE_NAME = "tone-1khz.pcmu"

_SCREEN_DUMP_INTERVAL_S = 0.5
_SIGUSR2_MASK = 1 << (signal.SIGUSR2 - 1)
_RTP_SENT_RE = re.compile(r"(\d+) Total RTP pckts sent")
_RTP_ECHOED_RE = re.compile(r"(\d+) Total echo RTP pckts 1st stream")


class SippExit(enum.Enum):
    """sipp's documented exit codes (`sipp -h`), plus our own deadline."""

    ALL_CALLS_SUCCEEDED = 0
    SOME_CALLS_FAILED = 1
    INTERNAL_COMMAND = 97
    NO_CALLS_PROCESSED = 99
    FATAL_ERROR = 255
    SOCKET_BIND_ERROR = 254
    KILLED_AT_DEADLINE = -1000
    OTHER = -1001

    @classmethod
    def from_returncode(cls, returncode: int) -> SippExit:
        code = returncode & 0xFF if returncode >= 0 else returncode
        for member in cls:
            if member.value == code:
                return member
        return cls.OTHER


def _linear_to_ulaw(sample: int) -> int:
    """G.711 mu-law encoding of one 16-bit sample (ITU-T G.711, with the 0x84 bias)."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def write_pcmu_tone(path: Path, frequency_hz: float = 1000.0, seconds: float = 1.0) -> Path:
    """Write raw PCMU (8 kHz mono, no header) holding a sine tone; sipp loops it."""
    sample_count = int(8000 * seconds)
    amplitude = 8000
    data = bytes(
        _linear_to_ulaw(int(amplitude * math.sin(2 * math.pi * frequency_hz * index / 8000)))
        for index in range(sample_count)
    )
    path.write_bytes(data)
    return path


def scenario_path(name: str) -> Path:
    path = SCENARIO_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no sipp scenario {name!r} in {SCENARIO_DIR}")
    return path


def uas_reject_scenario(workdir: Path, status: int, reason: str) -> Path:
    """A copy of uas_reject.xml answering `status reason` instead of 486 Busy Here.

    sipp validates response codes when loading the scenario, so the code cannot be a
    runtime parameter.
    """
    if not 300 <= status <= 699:
        raise ValueError(f"a rejecting final status must be 300-699, not {status}")
    text = scenario_path("uas_reject.xml").read_text(encoding="iso-8859-1")
    target = workdir / f"uas_reject_{status}.xml"
    target.write_text(text.replace("486 Busy Here", f"{status} {reason}"), encoding="iso-8859-1")
    return target


def _duration_ms(value: str) -> float | None:
    """sipp's HH:MM:SS:micro durations, e.g. 00:00:02:008000."""
    parts = value.strip().split(":")
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        return None
    hours, minutes, seconds, micros = (int(part) for part in parts)
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


@dataclass(frozen=True)
class SippStats:
    """The last row of sipp's -trace_stat CSV (cumulative counters)."""

    counters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SippStats:
        rows = [row for row in csv.reader(text.splitlines(), delimiter=";") if row]
        if len(rows) < 2:
            return cls()
        header, last = rows[0], rows[-1]
        return cls(dict(zip(header, last, strict=False)))

    def count(self, name: str) -> int:
        value = self.counters.get(name, "")
        return int(value) if value.isdigit() else 0

    @property
    def successful_calls(self) -> int:
        return self.count("SuccessfulCall(C)")

    @property
    def failed_calls(self) -> int:
        return self.count("FailedCall(C)")

    @property
    def created_calls(self) -> int:
        return self.count("TotalCallCreated")

    @property
    def retransmissions(self) -> int:
        return self.count("Retransmissions(C)")

    @property
    def average_response_time_ms(self) -> float | None:
        return _duration_ms(self.counters.get("ResponseTime1(C)", ""))

    @property
    def average_call_length_ms(self) -> float | None:
        return _duration_ms(self.counters.get("CallLength(C)", ""))


def parse_rtt(text: str) -> tuple[float, ...]:
    """Response times (ms) from a -trace_rtt CSV: `Date_ms;response_time_ms;rtd_no`."""
    times: list[float] = []
    for row in csv.reader(text.splitlines()[1:], delimiter=";"):
        if len(row) >= 2:
            try:
                times.append(float(row[1]))
            except ValueError:
                logger.warning("sipp rtt line not understood: %r", row)
    return tuple(times)


def parse_screen_rtp(text: str) -> tuple[int | None, int | None]:
    """Highest (sent, echoed) RTP packet counters in sipp screen dumps, None if absent."""
    sent = [int(match) for match in _RTP_SENT_RE.findall(text)]
    echoed = [int(match) for match in _RTP_ECHOED_RE.findall(text)]
    return (max(sent) if sent else None, max(echoed) if echoed else None)


@dataclass(frozen=True)
class SippResult:
    exit: SippExit
    returncode: int
    stats: SippStats
    response_times_ms: tuple[float, ...]
    rtp_packets_sent: int | None
    rtp_packets_echoed: int | None
    errors: str
    logs: str
    output: str
    workdir: Path

    @property
    def successful_calls(self) -> int:
        return self.stats.successful_calls

    @property
    def failed_calls(self) -> int:
        return self.stats.failed_calls

    @property
    def all_succeeded(self) -> bool:
        return self.exit is SippExit.ALL_CALLS_SUCCEEDED and self.failed_calls == 0

    def describe(self) -> str:
        """A failure message for assertions: what sipp said and where its files are."""
        return (
            f"sipp exit={self.exit.name} ({self.returncode}) ok={self.successful_calls} "
            f"failed={self.failed_calls} workdir={self.workdir}\n"
            f"errors:\n{self.errors[-3000:]}\nlogs:\n{self.logs[-2000:]}\n"
            f"output tail:\n{self.output[-3000:]}"
        )


class SippState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    FINISHED = "finished"


def wait_for_udp_bound(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until some process has bound the UDP port (our bind then fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing bound UDP {host}:{port} after {timeout}s")


class Sipp:
    """One sipp process running one scenario; a UAC when `remote` is given, else a UAS.

    `timeout` bounds the whole run: sipp gets `-timeout` slightly below it (so it
    writes its statistics itself), and the runner kills it shortly after.
    """

    def __init__(
        self,
        scenario: str | Path,
        *,
        workdir: Path,
        remote: tuple[str, int] | None = None,
        local_ip: str = "127.0.0.1",
        local_port: int | None = None,
        media_port: int | None = None,
        service: str | None = None,
        keys: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        calls: int = 1,
        call_rate: float | None = None,
        concurrent_limit: int | None = None,
        pause_ms: int | None = None,
        rtp_echo: bool = False,
        credentials: tuple[str, str] | None = None,
        recv_timeout_ms: int | None = 10_000,
        timeout: float = 30.0,
        trace_messages: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        binary = shutil.which("sipp")
        if binary is None:
            raise FileNotFoundError("sipp is not installed (Debian package sip-tester)")
        self._binary = binary
        self.scenario = scenario if isinstance(scenario, Path) else scenario_path(scenario)
        self.workdir = workdir
        self.remote = remote
        self.local_ip = local_ip
        self.local_port = local_port if local_port is not None else free_port(socket.SOCK_DGRAM)
        self.media_port = media_port if media_port is not None else free_port(socket.SOCK_DGRAM)
        self.service = service
        self.keys = dict(keys or {})
        self.variables = dict(variables or {})
        self.calls = calls
        self.call_rate = call_rate
        self.concurrent_limit = concurrent_limit
        self.pause_ms = pause_ms
        self.rtp_echo = rtp_echo
        self.credentials = credentials
        self.recv_timeout_ms = recv_timeout_ms if remote is not None else None
        self.timeout = timeout
        self.trace_messages = trace_messages
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._state = SippState.NEW
        self._started_at = 0.0
        self._result: SippResult | None = None

    @property
    def state(self) -> SippState:
        return self._state

    def _set_state(self, state: SippState) -> None:
        logger.debug("sipp %s: %s -> %s", self.scenario.name, self._state.name, state.name)
        self._state = state

    def _file(self, name: str) -> Path:
        return self.workdir / name

    def command(self) -> list[str]:
        sipp_timeout_s = max(1, int(self.timeout) - 2)
        args = [self._binary]
        if self.remote is not None:
            args.append(f"{self.remote[0]}:{self.remote[1]}")
        args += [
            "-sf", str(self.scenario),
            "-i", self.local_ip,
            "-p", str(self.local_port),
            "-mi", self.local_ip,
            "-mp", str(self.media_port),
            "-m", str(self.calls),
            "-nostdin",
            "-timeout", f"{sipp_timeout_s}s",
            "-timeout_error",
            "-trace_stat", "-fd", "1", "-stf", str(self._file("stat.csv")),
            "-trace_err", "-error_file", str(self._file("errors.log")),
            "-trace_logs", "-log_file", str(self._file("logs.log")),
            "-trace_screen", "-screen_file", str(self._file("screen.log")),
            "-trace_rtt", "-rtt_freq", "1",
        ]  # fmt: skip
        if self.trace_messages:
            args += ["-trace_msg", "-message_file", str(self._file("messages.log"))]
        if self.service is not None:
            args += ["-s", self.service]
        if self.call_rate is not None:
            args += ["-r", str(self.call_rate)]
        if self.concurrent_limit is not None:
            args += ["-l", str(self.concurrent_limit)]
        if self.pause_ms is not None:
            args += ["-d", str(self.pause_ms)]
        if self.rtp_echo:
            args.append("-rtp_echo")
        if self.credentials is not None:
            args += ["-au", self.credentials[0], "-ap", self.credentials[1]]
        if self.recv_timeout_ms is not None:
            args += ["-recv_timeout", str(self.recv_timeout_ms)]
        for name, value in self.keys.items():
            args += ["-key", name, value]
        for name, value in self.variables.items():
            args += ["-set", name, value]
        args += self.extra_args
        return args

    def start(self) -> None:
        if self._state is not SippState.NEW:
            raise RuntimeError(f"sipp already {self._state.value}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_pcmu_tone(self.workdir / TONE_FILE_NAME)
        command = self.command()
        logger.info("starting sipp: %s", " ".join(command))
        # cwd matters: the scenarios name the tone file relatively; the rtt CSV lands here.
        with self._file("stdout.log").open("wb") as output:
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started_at = time.monotonic()
        self._set_state(SippState.RUNNING)
        if self.remote is None:
            # A UAS is useful only once it listens; a UAC started after this is safe.
            try:
                wait_for_udp_bound(self.local_ip, self.local_port, timeout=10.0)
            except TimeoutError:
                self.stop()
                raise

    def _handles_sigusr2(self) -> bool:
        """SIGUSR2 kills sipp until it installs its handler, so look before signalling."""
        if self._process is None:
            return False
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text()
        except OSError:
            return False
        for line in status.splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & _SIGUSR2_MASK)
        return False

    def _request_screen_dump(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        if self._handles_sigusr2():
            try:
                self._process.send_signal(signal.SIGUSR2)
            except ProcessLookupError:
                logger.debug("sipp exited before the screen dump request")

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to finish (bounded), then collect its result."""
        if self._result is not None:
            return self._result
        if self._process is None:
            raise RuntimeError("sipp was not started")
        budget = self.timeout + 5.0 if timeout is None else timeout
        deadline = time.monotonic() + budget
        next_dump = time.monotonic() + _SCREEN_DUMP_INTERVAL_S
        killed = False
        while self._process.poll() is None:
            now = time.monotonic()
            if now >= deadline:
                logger.warning(
                    "sipp %s still running after %.1fs: killing", self.scenario.name, budget
                )
                self._kill()
                killed = True
                break
            if now >= next_dump:
                self._request_screen_dump()
                next_dump = now + _SCREEN_DUMP_INTERVAL_S
            time.sleep(0.05)
        return self._collect(killed)

    def run(self) -> SippResult:
        self.start()
        return self.wait()

    def _kill(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)

    def stop(self) -> SippResult | None:
        """Always reaps the process; returns what it had produced so far."""
        if self._process is None:
            return None
        if self._result is not None:
            return self._result
        killed = self._process.poll() is None
        self._kill()
        return self._collect(killed)

    def _read(self, name: str) -> str:
        path = self._file(name)
        return path.read_text(errors="replace") if path.is_file() else ""

    def _collect(self, killed: bool) -> SippResult:
        if self._process is None:
            raise RuntimeError("sipp was not started")
        returncode = self._process.wait(timeout=5)
        rtt_text = "".join(path.read_text() for path in sorted(self.workdir.glob("*_rtt.csv")))
        output = self._read("stdout.log")
        sent, echoed = parse_screen_rtp(self._read("screen.log") + output)
        self._result = SippResult(
            exit=SippExit.KILLED_AT_DEADLINE if killed else SippExit.from_returncode(returncode),
            returncode=returncode,
            stats=SippStats.parse(self._read("stat.csv")),
            response_times_ms=parse_rtt(rtt_text),
            rtp_packets_sent=sent,
            rtp_packets_echoed=echoed,
            errors=self._read("errors.log"),
            logs=self._read("logs.log"),
            output=output,
            workdir=self.workdir,
        )
        self._set_state(SippState.FINISHED)
        logger.info(
            "sipp %s finished: %s ok=%d failed=%d",
            self.scenario.name,
            self._result.exit.name,
            self._result.successful_calls,
            self._result.failed_calls,
        )
        return self._result

    def __enter__(self) -> Sipp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class SippFactory:
    """Creates Sipp runners in numbered private directories and stops all of them."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._created: list[Sipp] = []

    def __call__(self, scenario: str | Path, **options: Any) -> Sipp:
        workdir = self._base_dir / f"sipp-{len(self._created)}"
        runner = Sipp(scenario, workdir=workdir, **options)
        self._created.append(runner)
        return runner

    def stop_all(self) -> None:
        for runner in self._created:
            runner.stop()


@pytest.fixture
def sipp_factory(tmp_path: Path) -> Iterator[SippFactory]:
    """`sipp_factory("uac_call.xml", remote=(host, port), ...)`; every process reaped."""
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed; run scripts/install-deps.sh")
    factory = SippFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


__all__ = [
    "SCENARIO_DIR",
    "TONE_FILE_NAME",
    "Sipp",
    "SippExit",
    "SippFactory",
    "SippResult",
    "SippState",
    "SippStats",
    "parse_rtt",
    "parse_screen_rtp",
    "scenario_path",
    "sipp_factory",
    "uas_reject_scenario",
    "wait_for_udp_bound",
    "write_pcmu_tone",
]

"""A real baresip 1.0.0 user agent for tests: private config, no audio hardware, G.711 only.

The audio source is `ausine` (a 1 kHz tone, resampled by baresip to 8 kHz mono), the
player is an `aubridge` device nobody listens to, calls are auto-answered, and the
`ctrl_tcp` module (netstring-framed JSON) is the control channel:
`{"command": ..., "params": ..., "token": ...}` in, `{"response": true, ...}` and
`{"event": true, "type": ...}` out.

RTP statistics: baresip 1.0.0 offers no per-call packet counters on the control
channel (`callstat` prints SDP only), but prints a summary on stdout whenever a call
closes:

    audio           Transmit:     Receive:
    packets:            151          150
    errors:               0            0

`rtp_stats()` parses those blocks from the process log, one per closed call, in order.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.services.ports import free_port, free_port_pair

logger = logging.getLogger(__name__)

MODULE_PATH = Path("/usr/lib/baresip/modules")
# Kept outside the kernel's ephemeral range so free_port() picks for other services
# cannot race with baresip's random RTP ports.
RTP_PORT_RANGE = (10000, 19999)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_STATS_RE = re.compile(
    r"audio\s+Transmit:\s+Receive:\s*\n"
    r"packets:\s+(?P<tx>\d+)\s+(?P<rx>\d+)\s*\n"
    r"(?:avg\. bitrate:[^\n]*\n)?"
    r"errors:\s+(?P<tx_err>-?\d+)\s+(?P<rx_err>-?\d+)"
)
_CALL_LINE_RE = re.compile(
    r"\[line (?P<line>\d+)\]\s+(?P<duration>\d+:\d\d:\d\d)\s+(?P<state>[A-Z_]+)\s+(?P<peer>\S+)"
)


class BaresipState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class RegistrationStatus(enum.Enum):
    """What `reginfo` shows for the account: OK, ERR, or zzz (not yet answered)."""

    REGISTERED = "OK"
    FAILED = "ERR"
    PENDING = "zzz"
    NOT_REGISTERING = "-"


@dataclass(frozen=True)
class RtpStats:
    """One closed call's audio stream summary, as baresip printed it."""

    packets_sent: int
    packets_received: int
    errors_sent: int
    errors_received: int

    @classmethod
    def parse_all(cls, text: str) -> list[RtpStats]:
        return [
            cls(
                packets_sent=int(match["tx"]),
                packets_received=int(match["rx"]),
                errors_sent=int(match["tx_err"]),
                errors_received=int(match["rx_err"]),
            )
            for match in _STATS_RE.finditer(_ANSI_RE.sub("", text))
        ]


@dataclass(frozen=True)
class CallInfo:
    """One line of `listcalls`."""

    line: int
    duration: str
    state: str
    peer_uri: str

    @classmethod
    def parse_all(cls, text: str) -> list[CallInfo]:
        return [
            cls(
                line=int(match["line"]),
                duration=match["duration"],
                state=match["state"],
                peer_uri=match["peer"],
            )
            for match in _CALL_LINE_RE.finditer(_ANSI_RE.sub("", text))
        ]


class BaresipError(RuntimeError):
    pass


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class _ControlChannel:
    """A blocking ctrl_tcp client; events arriving between responses are kept."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""
        self._token_counter = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self._sock.close()

    def _next_message(self, deadline: float) -> dict[str, Any] | None:
        while True:
            colon = self._buffer.find(b":")
            if colon > 0:
                length_text = self._buffer[:colon]
                if not length_text.isdigit():
                    raise BaresipError(
                        f"ctrl_tcp sent a malformed netstring: {self._buffer[:40]!r}"
                    )
                length = int(length_text)
                end = colon + 1 + length
                if len(self._buffer) > end:
                    payload = self._buffer[colon + 1 : end]
                    self._buffer = self._buffer[end + 1 :]
                    message: dict[str, Any] = json.loads(payload)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise BaresipError("baresip closed the control connection")
            self._buffer += chunk

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        self._token_counter += 1
        token = f"t{self._token_counter}"
        request = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._sock.sendall(_netstring(request))
        deadline = time.monotonic() + timeout
        while True:
            message = self._next_message(deadline)
            if message is None:
                raise TimeoutError(f"baresip did not answer {name!r} within {timeout}s")
            if message.get("event"):
                self.events.append(message)
                continue
            if message.get("response") and message.get("token") == token:
                data = str(message.get("data", ""))
                if not message.get("ok", False):
                    raise BaresipError(f"baresip refused {name!r}: {data.strip()}")
                return data

    def drain_events(self, wait: float = 0.0) -> None:
        deadline = time.monotonic() + wait
        while True:
            message = self._next_message(deadline)
            if message is None:
                return
            if message.get("event"):
                self.events.append(message)


def _free_sip_port(host: str) -> int:
    """baresip binds UDP+TCP on the SIP port and TLS on the next one: all must be free."""
    for _ in range(100):
        port = free_port_pair(host)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tls:
            try:
                tls.bind((host, port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free SIP port pair for baresip on loopback")


class Baresip:
    """One baresip process with one account.

    `proxy=(host, port)` makes it register (every `regint` seconds, 0 = never) through
    that outbound proxy, since tenant domains such as acme.vpbx.local do not resolve.
    Without a proxy it only listens; call it at `local_uri`.
    """

    def __init__(
        self,
        user: str,
        password: str | None = None,
        domain: str = "127.0.0.1",
        *,
        proxy: tuple[str, int] | None = None,
        local_port: int | None = None,
        workdir: Path,
        host: str = "127.0.0.1",
        regint: int = 60,
        auto_answer: bool = True,
        tone_hz: int = 1000,
        record: bool = False,
        jitter_buffer: bool = True,
    ) -> None:
        binary = shutil.which("baresip")
        if binary is None:
            raise FileNotFoundError("baresip is not installed")
        self._binary = binary
        self.user = user
        self.password = password
        self.domain = domain
        self.proxy = proxy
        self.host = host
        self.local_port = local_port if local_port is not None else _free_sip_port(host)
        self.workdir = workdir
        self.regint = regint if proxy is not None else 0
        self.auto_answer = auto_answer
        self.tone_hz = tone_hz
        # The sndfile module dumps what each call sent and heard to WAV files.
        self.record = record
        # False: no jitter buffer (fine on loopback). baresip 1.0.0 keeps its buffer's
        # sequence state across an SSRC change and drops a new stream whose sequence
        # numbers happen to be behind as late; the node's relay keeps each leg's outgoing
        # RTP one stream (docs/architecture.md, Node), so the default (on, as on real
        # phones) is what tests use; False is left for tests that want no buffering.
        self.jitter_buffer = jitter_buffer
        self.control_port = self._pick_control_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: _ControlChannel | None = None
        self._state = BaresipState.NEW

    def _pick_control_port(self) -> int:
        for _ in range(100):
            port = free_port(host=self.host)
            if port not in (self.local_port, self.local_port + 1):
                return port
        raise RuntimeError("no free control port for baresip")

    @property
    def state(self) -> BaresipState:
        return self._state

    def _set_state(self, state: BaresipState) -> None:
        logger.info("baresip %s: %s -> %s", self.aor, self._state.name, state.name)
        self._state = state

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def local_uri(self) -> str:
        """Where to send an INVITE directly, bypassing any registrar."""
        return f"sip:{self.user}@{self.host}:{self.local_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    def account_line(self) -> str:
        params = [f"regint={self.regint}", "audio_codecs=PCMU,PCMA"]
        if self.password is not None:
            params.insert(0, f"auth_pass={self.password}")
        if self.proxy is not None:
            params.append(f'outbound="sip:{self.proxy[0]}:{self.proxy[1]}"')
        params.append(f"answermode={'auto' if self.auto_answer else 'manual'}")
        return f"<{self.aor}>;" + ";".join(params)

    def config_text(self) -> str:
        # 48 kHz stereo because ausine produces nothing else; baresip resamples to G.711.
        lines = [
            ("poll_method", "epoll"),
            ("sip_listen", f"{self.host}:{self.local_port}"),
            ("net_interface", self.host),
            ("call_local_timeout", "120"),
            ("call_max_calls", "8"),
            ("audio_player", "aubridge,nowhere"),
            ("audio_alert", "aubridge,nowhere"),
            ("audio_source", f"ausine,{self.tone_hz}"),
            ("ausrc_srate", "48000"),
            ("ausrc_channels", "2"),
            ("rtp_ports", f"{RTP_PORT_RANGE[0]}-{RTP_PORT_RANGE[1]}"),
            ("rtp_timeout", "0"),
            # Also what makes baresip print the per-call packet summary rtp_stats() reads
            # (and add an X-RTP-Stat header to the BYEs it sends).
            ("rtp_stats", "yes"),
            ("module_path", str(MODULE_PATH)),
            ("module", "g711.so"),
            ("module", "ausine.so"),
            ("module", "aubridge.so"),
            ("module_app", "account.so"),
            ("module_app", "menu.so"),
            ("module_app", "ctrl_tcp.so"),
            ("ctrl_tcp_listen", f"{self.host}:{self.control_port}"),
        ]
        if not self.jitter_buffer:
            lines.append(("jitter_buffer_delay", "0-0"))
        if self.record:
            lines += [("module", "sndfile.so"), ("snd_path", str(self.recordings_dir))]
        return "".join(f"{key}\t\t{value}\n" for key, value in lines)

    @property
    def recordings_dir(self) -> Path:
        return self.workdir / "recordings"

    def heard(self) -> list[Path]:
        """WAV files of what this phone heard, one per call (``record=True``), oldest first."""
        return sorted(self.recordings_dir.glob("dump-*-dec*"), key=lambda p: p.stat().st_mtime)

    def send_digits(self, digits: str) -> None:
        """Press keys in the current call (RFC 4733 telephone-event, as baresip sends them)."""
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(0.25)

    def start(self, timeout: float = 10.0) -> None:
        if self._state is not BaresipState.NEW:
            raise RuntimeError(f"baresip already {self._state.value}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.record:
            self.recordings_dir.mkdir(exist_ok=True)
        (self.workdir / "config").write_text(self.config_text())
        (self.workdir / "accounts").write_text(self.account_line() + "\n")
        (self.workdir / "contacts").write_text("")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [self._binary, "-f", str(self.workdir)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._set_state(BaresipState.RUNNING)
        try:
            self._connect_control(timeout)
        except BaseException:
            self.stop()
            raise

    def _connect_control(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BaresipError(
                    f"baresip exited with {self._process.returncode}:\n{self.log_text()[-2000:]}"
                )
            try:
                self._control = _ControlChannel(self.host, self.control_port, timeout=2.0)
                self._control.command("reginfo", timeout=2.0)
                return
            except (OSError, TimeoutError, BaresipError) as error:
                last_error = error
                if self._control is not None:
                    self._control.close()
                    self._control = None
                time.sleep(0.05)
        raise TimeoutError(
            f"baresip control port {self.control_port} not ready after {timeout}s "
            f"({last_error}):\n{self.log_text()[-2000:]}"
        )

    def _channel(self) -> _ControlChannel:
        if self._control is None:
            raise RuntimeError("baresip is not running")
        return self._control

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Any menu command (`help` lists them); returns baresip's text answer."""
        return self._channel().command(name, params, timeout)

    @property
    def events(self) -> list[dict[str, Any]]:
        """ctrl_tcp events seen so far (e.g. REGISTER_OK, CALL_ESTABLISHED, CALL_CLOSED)."""
        channel = self._channel()
        channel.drain_events()
        return list(channel.events)

    def registration_status(self) -> RegistrationStatus:
        text = _ANSI_RE.sub("", self.command("reginfo"))
        for line in text.splitlines():
            if self.aor.removeprefix("sip:") not in line:
                continue
            for status in (
                RegistrationStatus.REGISTERED,
                RegistrationStatus.FAILED,
                RegistrationStatus.PENDING,
            ):
                if re.search(rf"(?<!\w){re.escape(status.value)}(?!\w)", line):
                    return status
        return RegistrationStatus.NOT_REGISTERING

    def _wait_for(self, status: RegistrationStatus, failure_event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.registration_status()
            if current is status:
                return
            if any(event.get("type") == failure_event for event in self.events):
                raise BaresipError(
                    f"{self.aor}: got {failure_event} while waiting for {status.name}: "
                    f"{self._event_params(failure_event)}"
                )
            time.sleep(0.1)
        raise TimeoutError(f"{self.aor} not {status.name} after {timeout}s:\n{self.log_tail()}")

    def _event_params(self, event_type: str) -> list[str]:
        return [
            str(event.get("param", "")) for event in self.events if event.get("type") == event_type
        ]

    def wait_registered(self, timeout: float = 10.0) -> None:
        self._wait_for(RegistrationStatus.REGISTERED, "REGISTER_FAIL", timeout)

    def wait_registration_failed(self, timeout: float = 10.0) -> str:
        """Waits for a rejected REGISTER; returns baresip's reason (e.g. '403 Forbidden')."""
        self._wait_for(RegistrationStatus.FAILED, "REGISTER_OK", timeout)
        reasons = self._event_params("REGISTER_FAIL")
        if reasons:
            return reasons[-1]
        # The first REGISTER is answered before the control channel connects, so its
        # event is gone; baresip's log line carries the same reason.
        logged = re.findall(
            rf"reg: {re.escape(self.aor)}: ([^\n(]*)", _ANSI_RE.sub("", self.log_text())
        )
        return logged[-1].strip() if logged else ""

    def calls(self) -> list[CallInfo]:
        return CallInfo.parse_all(self.command("listcalls"))

    def wait_call_state(self, state: str = "ESTABLISHED", timeout: float = 10.0) -> CallInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call in self.calls():
                if call.state == state:
                    return call
            time.sleep(0.1)
        raise TimeoutError(f"{self.aor}: no call in state {state} after {timeout}s")

    def wait_no_calls(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.calls():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.aor}: calls still active after {timeout}s")

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def hangup(self) -> None:
        self.command("hangup")

    def log_text(self) -> str:
        if not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, characters: int = 2000) -> str:
        return self.log_text()[-characters:]

    def rtp_stats(self) -> list[RtpStats]:
        """Audio summaries of the calls closed so far, oldest first."""
        return RtpStats.parse_all(self.log_text())

    def wait_rtp_stats(self, count: int = 1, timeout: float = 5.0) -> list[RtpStats]:
        """Waits until `count` closed calls have printed their summaries."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.rtp_stats()
            if len(stats) >= count:
                return stats
            time.sleep(0.05)
        raise TimeoutError(f"{self.aor}: fewer than {count} call summaries after {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Always reaps the process: asks politely, then terminates, then kills."""
        if self._control is not None:
            try:
                self._control.command("quit", timeout=1.0)
            except (OSError, TimeoutError, BaresipError) as error:
                logger.debug("baresip quit command not answered: %s", error)
            self._control.close()
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.terminate()
                try:
                    self._process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=timeout)
        if self._state is BaresipState.RUNNING:
            self._set_state(BaresipState.STOPPED)

    def __enter__(self) -> Baresip:
        if self._state is BaresipState.NEW:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class BaresipFactory:
    """Creates Baresip agents in numbered private directories and stops all of them."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._created: list[Baresip] = []

    def __call__(
        self, user: str, password: str | None = None, domain: str = "127.0.0.1", **options: Any
    ) -> Baresip:
        workdir = self._base_dir / f"baresip-{len(self._created)}-{user}"
        agent = Baresip(user, password, domain, workdir=workdir, **options)
        self._created.append(agent)
        return agent

    def stop_all(self) -> None:
        for agent in self._created:
            agent.stop()


@pytest.fixture
def baresip_factory(tmp_path: Path) -> Iterator[BaresipFactory]:
    """`agent = baresip_factory("alice", "secret", "acme.vpbx.local", proxy=(host, port))`,
    then `agent.start()`; every process is reaped at teardown."""
    if shutil.which("baresip") is None:
        pytest.fail("baresip is not installed; run scripts/install-deps.sh")
    factory = BaresipFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


__all__ = [
    "Baresip",
    "BaresipError",
    "BaresipFactory",
    "BaresipState",
    "CallInfo",
    "RegistrationStatus",
    "RtpStats",
    "baresip_factory",
]

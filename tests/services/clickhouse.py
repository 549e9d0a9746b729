"""A private ClickHouse server (Debian's clickhouse-server 18.16) on loopback, and chdb data dirs.

The server gets its own config.xml/users.xml, data, tmp and log dirs inside a pytest tmp dir and
listens on 127.0.0.1 only, on free ports; no system service is touched. Findings on 18.16:
- it runs fine as root when started directly (only the init script switches to the clickhouse
  user), so no privilege dropping is needed;
- path, tmp_path, user_files_path and format_schema_path must all be set, or it falls back to
  /var/lib/clickhouse (shared with the system service); preprocessed configs land in <path>;
- every user needs a <quota> defined under <quotas>, else it exits at start with
  "Not found: users.default.quota", so users.xml carries a minimal unlimited quota;
- it has no --version flag and takes ~2 s to shut down cleanly on SIGTERM.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.ports import free_port

_CONFIG_XML = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{root}/log/clickhouse-server.log</log>
        <errorlog>{root}/log/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
    <keep_alive_timeout>3</keep_alive_timeout>
</yandex>
"""

_USERS_XML = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>1000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def _server_command(config: Path) -> list[str]:
    """Debian 18.16 ships clickhouse-server; newer packages ship one `clickhouse` binary."""
    server = shutil.which("clickhouse-server")
    if server is not None:
        return [server, f"--config-file={config}"]
    combined = shutil.which("clickhouse")
    if combined is not None:
        return [combined, "server", f"--config-file={config}"]
    pytest.fail("clickhouse-server is not installed; run the tests through `make test`")


class ClickHouseServer:
    """One private server whose process a test may stop and start again (same ports, same data)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tcp_port = free_port()
        self.http_port = free_port()
        for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.config = root / "config.xml"
        self.config.write_text(
            _CONFIG_XML.format(root=root, tcp_port=self.tcp_port, http_port=self.http_port)
        )
        (root / "users.xml").write_text(_USERS_XML)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"clickhouse://127.0.0.1:{self.tcp_port}/default"

    def database_url(self, database: str) -> str:
        return f"clickhouse://127.0.0.1:{self.tcp_port}/{database}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        stdout = (self.root / "log" / "stdout.log").open("ab")
        try:
            self._process = subprocess.Popen(
                _server_command(self.config),
                cwd=self.root,
                stdout=stdout,
                stderr=subprocess.STDOUT,
            )
        finally:
            stdout.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ping = f"http://127.0.0.1:{self.http_port}/ping"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited during start; see {self.root}/log")
            try:
                with urllib.request.urlopen(ping, timeout=1) as response:
                    if response.read().strip() == b"Ok.":
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise TimeoutError(f"clickhouse-server did not answer on {ping} within {timeout}s")

    def stop(self, timeout: float = 20.0) -> None:
        process = self._process
        self._process = None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def crash(self) -> None:
        """SIGKILL: an abrupt outage. A graceful stop() waits ~10 s for idle client connections
        (the shipper keeps one), which is too slow for a test; inserted parts are already in the
        files, so nothing acknowledged to a client is lost."""
        process = self._process
        self._process = None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=10)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        from clickhouse_driver import Client

        client = Client.from_url(self.url + "?connect_timeout=3&send_receive_timeout=30")
        try:
            return [tuple(row) for row in client.execute(sql)]
        finally:
            client.disconnect()


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """The session's private server. A test that stops it must start it again (try/finally)."""
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def clickhouse_url(clickhouse_server: ClickHouseServer) -> str:
    """Native-protocol URL of the session server's `default` database."""
    return clickhouse_server.url


@pytest.fixture
def clickhouse_database_url(clickhouse_server: ClickHouseServer) -> Iterator[str]:
    """A fresh, empty database on the session server for one test, dropped afterwards."""
    clickhouse_server.start()  # in case an earlier test left it stopped
    database = f"test_{uuid.uuid4().hex[:12]}"
    clickhouse_server.query(f"CREATE DATABASE {database}")
    try:
        yield clickhouse_server.database_url(database)
    finally:
        if clickhouse_server.running:
            clickhouse_server.query(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def chdb_path(tmp_path: Path) -> Path:
    """A fresh chdb data dir for one test."""
    path = tmp_path / "chdb"
    path.mkdir()
    return path

"""A private PostgreSQL server (Debian package) on loopback for the whole test session.

The schema is migrated once into a template database; every test that asks for
``postgres_url`` gets its own copy (CREATE DATABASE ... TEMPLATE), which takes
milliseconds, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.services.ports import free_port, wait_for_tcp

TEMPLATE_DATABASE = "vpbx_template"
_database_numbers = itertools.count(1)


class PostgresMissingError(RuntimeError):
    """PostgreSQL server binaries are not installed (run `make deps`)."""


def _binaries() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not candidates:
        raise PostgresMissingError("PostgreSQL is not installed; run `make deps`")
    return Path(candidates[-1]).parent


def _as_postgres_user() -> list[str]:
    # The server refuses to run as root; drop to the Debian package's account.
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam("postgres")
    for root, dirs, files in os.walk(path):
        os.chown(root, account.pw_uid, account.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)


class PostgresServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """SQLAlchemy async URL of ``database``."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        bin_dir = _binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        _chown_to_postgres(self.root)
        subprocess.run(
            [
                *_as_postgres_user(),
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.process = subprocess.Popen(
            [
                *_as_postgres_user(),
                str(bin_dir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.root),
                # A throwaway server: durability off makes CREATE DATABASE and commits fast.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_tcp("127.0.0.1", self.port, timeout=30)
        asyncio.run(self._wait_accepting())

    async def _wait_accepting(self) -> None:
        for _ in range(100):
            try:
                connection = await asyncpg.connect(self.admin_dsn())
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.1)
                continue
            await connection.close()
            return
        raise TimeoutError("PostgreSQL did not accept connections")

    def execute(self, sql: str, database: str = "postgres") -> None:
        async def run() -> None:
            connection = await asyncpg.connect(self.admin_dsn(database))
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        asyncio.run(run())

    def create_database(self, name: str, template: str | None = None) -> str:
        suffix = f" TEMPLATE {template}" if template else ""
        self.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def running_postgres(root: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: its parents are private to root, and the server
    # runs as the postgres account.
    root = Path(tempfile.mkdtemp(prefix="vpbx-postgres-"))
    try:
        with running_postgres(root) as server:
            yield server
    except PostgresMissingError as exc:
        pytest.fail(f"{exc} (run the tests through `make test`)")


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """A database holding the migrated schemas (control API and CRM), copied for every test."""
    from vpbx_control.db.migrate import upgrade_sync
    from vpbx_crm.db.migrate import upgrade_sync as upgrade_crm_sync

    url = postgres_server.create_database(TEMPLATE_DATABASE)
    upgrade_sync(url)
    # The CRM's tables in the same database, as a cluster may run them (own version table).
    upgrade_crm_sync(url)
    return TEMPLATE_DATABASE


@contextmanager
def fresh_database(server: PostgresServer, template: str) -> Iterator[str]:
    """A copy of the migrated template, dropped afterwards (SQLAlchemy async URL)."""
    name = f"vpbx_test_{os.getpid()}_{next(_database_numbers)}"
    url = server.create_database(name, template=template)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test (SQLAlchemy async URL)."""
    with fresh_database(postgres_server, postgres_template) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated database shared by the tests of one module (SQLAlchemy async URL)."""
    with fresh_database(postgres_server, postgres_template) as url:
        yield url

"""Fixtures and harness for the control API: a real app on PostgreSQL and Redis, driven over httpx.

Setup data (tenants, users, API keys) is written straight into the database,
so a test of one resource does not depend on the endpoints of another.
"""

from __future__ import annotations

import itertools
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from vpbx_control.apikeys.models import ApiKeyRow
from vpbx_control.app import create_app
from vpbx_control.auth.credentials import ApiKeySecret
from vpbx_control.auth.principal import Role
from vpbx_control.context import AppContext
from vpbx_control.settings import ControlSettings
from vpbx_control.tenants.models import TenantRow
from vpbx_control.users.models import UserRow

PLATFORM_TOKEN = "test-platform-admin-token"
SERVICE_TOKEN = "test-media-node-service-token"


def control_settings(**overrides: Any) -> ControlSettings:
    values: dict[str, Any] = {
        "mode": "test",
        "platform_admin_token": SecretStr(PLATFORM_TOKEN),
        "service_token": SecretStr(SERVICE_TOKEN),
        "token_secret": SecretStr("test-token-signing-secret-0123456789"),
        # The tests' webhook receivers listen on loopback; test_outbound.py and the
        # "outside_local_mode" tests check the refusal.
        "outbound_private_allowed": True,
        # Outside local mode the API refuses to start without one; tests that keep audio
        # give the app a store of their own (``api.context.objects``).
        "storage_url": (Path(tempfile.gettempdir()) / "vpbx-test-objects").as_uri(),
        # Real argon2id at its least cost (test mode only): the suites hash and verify
        # passwords for thousands of users and logins. test_auth.py checks that a hash of
        # other parameters is replaced at login and that outside test mode this is refused.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 8,
        # Stopping an app waits for its call-event readers' blocking reads: short ones make
        # the hundreds of app stops of the suites cheap.
        "call_events_block_s": 0.05,
    }
    values.update(overrides)
    return ControlSettings(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ApiHarness:
    app: FastAPI
    client: httpx.AsyncClient
    settings: ControlSettings
    _tokens: dict[tuple[str, Role], dict[str, str]] = field(default_factory=dict)

    @property
    def context(self) -> AppContext:
        context: AppContext = self.app.state.context
        return context

    @property
    def platform(self) -> dict[str, str]:
        return bearer(PLATFORM_TOKEN)

    @property
    def node(self) -> dict[str, str]:
        return bearer(SERVICE_TOKEN)

    async def add_tenant(
        self,
        name: str,
        *,
        cities: tuple[str, ...] = ("msk",),
        seats: int = 0,
        numbers: int = 0,
        concurrent_calls: int = 0,
    ) -> TenantRow:
        row = TenantRow(
            id=name,
            display_name=name.title(),
            sip_domain=f"{name}.vpbx.test",
            cities=list(cities),
            seats=seats,
            numbers=numbers,
            concurrent_calls=concurrent_calls,
            suspended=False,
            revision=1,
        )
        async with self.context.database.session() as session:
            session.add(row)
            await session.commit()
        return row

    async def add_user(
        self,
        tenant: str,
        *,
        role: Role = Role.AGENT,
        email: str | None = None,
        password: str = "correct horse battery staple",  # noqa: S107
        extension: str | None = None,
        name: str = "Test User",
        city: str | None = "msk",
    ) -> UserRow:
        row = UserRow(
            id=uuid.uuid4(),
            tenant_id=tenant,
            email=email or f"{secrets.token_hex(4)}@{tenant}.example",
            name=name,
            password_hash=self.context.passwords.hash(password),
            role=role,
            extension=extension,
            city=city,
            rank=0,
            skills=[],
            settings={},
            revision=1,
            token_generation=1,
        )
        async with self.context.database.session() as session:
            session.add(row)
            await session.commit()
        return row

    async def login(self, email: str, password: str) -> dict[str, str]:
        response = await self.client.post(
            "/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return bearer(response.json()["access_token"])

    async def as_role(self, tenant: str, role: Role = Role.TENANT_ADMIN) -> dict[str, str]:
        """Headers of a logged-in user with ``role`` in ``tenant`` (one user per pair)."""
        key = (tenant, role)
        if key not in self._tokens:
            password = "pw-" + secrets.token_hex(8)
            user = await self.add_user(tenant, role=role, password=password)
            self._tokens[key] = await self.login(user.email, password)
        return self._tokens[key]

    async def api_key(self, tenant: str, role: Role = Role.TENANT_ADMIN) -> dict[str, str]:
        key = ApiKeySecret.generate()
        row = ApiKeyRow(
            id=key.key_id,
            tenant_id=tenant,
            name="test key",
            role=role,
            secret_sha256=key.secret_sha256(),
            revision=1,
        )
        async with self.context.database.session() as session:
            session.add(row)
            await session.commit()
        return bearer(str(key))


@asynccontextmanager
async def serve_api(settings: ControlSettings) -> AsyncIterator[ApiHarness]:
    """The app of ``settings`` started (lifespan) and driven in process over httpx."""
    app = create_app(settings, migrate=False)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
            yield ApiHarness(app=app, client=client, settings=settings)


def harness_settings(
    database_url: str, redis_url: str, workdir: Path, **overrides: Any
) -> ControlSettings:
    """Settings of an app on ``database_url`` and ``redis_url`` keeping its files in
    ``workdir`` (numbers file, chdb, speech cache, object store)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "local_numbers_file": workdir / "numbers.yaml",
        "chdb_path": workdir / "chdb",
        "speech_cache_dir": workdir / "speech",
        "storage_url": (workdir / "objects").as_uri(),
    }
    values.update(overrides)
    return control_settings(**values)


@pytest.fixture
async def api(
    request: pytest.FixtureRequest, postgres_url: str, flushed_redis: str, tmp_path: Path
) -> AsyncIterator[ApiHarness]:
    """A running control API on a fresh, migrated PostgreSQL database and an empty Redis; its
    CDR store is a chdb dir of the test's own (``settings.chdb_path``).

    ``@pytest.mark.control_settings(name=value, ...)`` on a test changes its app's settings.
    """
    marker = request.node.get_closest_marker("control_settings")
    overrides = dict(marker.kwargs) if marker is not None else {}
    settings = harness_settings(postgres_url, flushed_redis, tmp_path, **overrides)
    async with serve_api(settings) as harness:
        yield harness


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_api(
    module_postgres_url: str, module_flushed_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiHarness]:
    """One running control API shared by the tests of a module, on a fresh, migrated database
    and an emptied Redis: for modules whose tests cannot interfere (each works in a tenant of
    its own, see ``unique_tenant``), where starting an app per test would cost most of the
    time. Its tests run on the module's event loop
    (``@pytest.mark.asyncio(loop_scope="module")``); the module must not use the
    function-scoped ``flushed_redis`` (it would empty the shared app's Redis).
    """
    workdir = tmp_path_factory.mktemp("module-api")
    settings = harness_settings(module_postgres_url, module_flushed_redis, workdir)
    async with serve_api(settings) as harness:
        yield harness


_tenant_numbers = itertools.count(1)


def unique_tenant(prefix: str) -> str:
    """A tenant id no other test of the session uses (``prefix`` and a number)."""
    return f"{prefix}{next(_tenant_numbers)}"

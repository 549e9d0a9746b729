"""Fixtures and harness for the CRM: its app and the control API it logs people in with,
both real and in process (the CRM reaches the control API through an in-process transport),
on one PostgreSQL database (as a cluster may run them) and Redis.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from tests.services.control_api import SERVICE_TOKEN, ApiHarness, harness_settings, serve_api
from vpbx_control.auth.principal import Role
from vpbx_crm.app import create_app
from vpbx_crm.context import CrmContext
from vpbx_crm.settings import CrmSettings


def crm_settings(database_url: str, redis_url: str | None, **overrides: Any) -> CrmSettings:
    values: dict[str, Any] = {
        "mode": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "control_url": "http://control",
        "service_token": SecretStr(SERVICE_TOKEN),
        # The tests change roles and revoke keys and look at the effect at once.
        "identity_cache_s": 0,
        "directory_cache_s": 0,
        "call_events_block_s": 0.05,
        # No analytics store unless a test gives one (a VPBX_CLICKHOUSE_URL of the shell
        # must not send every test's deals somewhere).
        "clickhouse_url": None,
        "chdb_path": None,
        "analytics_ship_interval_s": 0.05,
    }
    values.update(overrides)
    return CrmSettings(**values)


@dataclass
class CrmHarness:
    control: ApiHarness  # the control API: tenants, users, logins
    app: FastAPI
    client: httpx.AsyncClient  # to the CRM
    settings: CrmSettings

    @property
    def context(self) -> CrmContext:
        context: CrmContext = self.app.state.context
        return context

    @property
    def node(self) -> dict[str, str]:
        return self.control.node

    async def as_role(self, tenant: str, role: Role = Role.TENANT_ADMIN) -> dict[str, str]:
        return await self.control.as_role(tenant, role)


@asynccontextmanager
async def serve_crm(
    control: ApiHarness, database_url: str, redis_url: str | None, **overrides: Any
) -> AsyncIterator[CrmHarness]:
    settings = crm_settings(database_url, redis_url, **overrides)
    app = create_app(
        settings, control_transport=httpx.ASGITransport(app=control.app), migrate=False
    )
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm") as client:
            yield CrmHarness(control=control, app=app, client=client, settings=settings)


@pytest.fixture
async def crm(
    request: pytest.FixtureRequest, postgres_url: str, flushed_redis: str, tmp_path: Path
) -> AsyncIterator[CrmHarness]:
    """A running CRM and control API on a fresh, migrated PostgreSQL database and an empty
    Redis. ``@pytest.mark.crm_settings(name=value, ...)`` changes the CRM's settings."""
    marker = request.node.get_closest_marker("crm_settings")
    overrides = dict(marker.kwargs) if marker is not None else {}
    async with (
        serve_api(harness_settings(postgres_url, flushed_redis, tmp_path)) as control,
        serve_crm(control, postgres_url, flushed_redis, **overrides) as harness,
    ):
        yield harness


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_crm(
    module_postgres_url: str, module_flushed_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CrmHarness]:
    """One CRM and control API shared by a module's tests, each working in a tenant of its
    own (``crm_tenant``); the tests run on the module's event loop."""
    workdir = tmp_path_factory.mktemp("module-crm")
    async with (
        serve_api(harness_settings(module_postgres_url, module_flushed_redis, workdir)) as control,
        serve_crm(control, module_postgres_url, module_flushed_redis) as harness,
    ):
        yield harness


_tenants = itertools.count(1)


async def crm_tenant(crm: CrmHarness, prefix: str = "crm") -> str:
    """A new tenant no other test of the session uses."""
    name = f"{prefix}{next(_tenants)}"
    await crm.control.add_tenant(name)
    return name


async def crm_user(
    crm: CrmHarness, tenant: str, role: Role = Role.AGENT, name: str = "Test User"
) -> tuple[uuid.UUID, dict[str, str]]:
    """A new user of ``tenant``, logged in: their id and the headers of their requests."""
    password = "pw-" + secrets.token_hex(8)
    user = await crm.control.add_user(tenant, role=role, password=password, name=name)
    return user.id, await crm.control.login(user.email, password)

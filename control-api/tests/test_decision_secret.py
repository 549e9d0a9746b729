"""/v1/route-plans/decision-secret: the key that signs a tenant's HTTP decisions.

Shown once (on rotation), never read back, made with the first HTTP-decision
step, carried to the media nodes in their config, and one tenant's alone.
Also migration 0007 (the table that holds it) up and down on both databases.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from tests.services.control_api import ApiHarness

from vpbx_common.nodeconfig import config_channel
from vpbx_control.auth.principal import Role
from vpbx_control.db.migrate import downgrade, upgrade
from vpbx_control.db.session import Database

PATH = "/v1/route-plans/decision-secret"


def _decision_step(**extra: Any) -> dict[str, Any]:
    return {
        "type": "http-decision",
        "url": "https://crm.example.com/vpbx/route",
        "fallback": {"type": "hangup"},
        **extra,
    }


async def _node_config(api: ApiHarness, tenant: str = "acme") -> tuple[Any, str]:
    response = await api.client.get(f"/internal/v1/node-config/{tenant}/msk", headers=api.node)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["ETag"]


async def _status(api: ApiHarness, headers: dict[str, str]) -> Any:
    response = await api.client.get(PATH, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _rotate(api: ApiHarness, headers: dict[str, str]) -> Any:
    response = await api.client.post(PATH, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Location"] == PATH
    return response.json()


async def test_a_rotation_shows_the_secret_once_and_reaches_the_nodes(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    assert await _status(api, admin) == {"configured": False, "created_at": None}
    config, etag = await _node_config(api)
    assert config["decision_secret"] is None

    assert api.context.redis is not None
    listener = api.context.redis.pubsub()
    await listener.subscribe(config_channel("acme"))
    revision = await api.context.publisher.revision("acme")
    try:
        issued = await _rotate(api, admin)
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message["data"] == b"acme"  # the nodes are told to reload
    finally:
        await listener.aclose()
    assert await api.context.publisher.revision("acme") != revision
    assert set(issued) == {"secret", "created_at"}
    secret = issued["secret"]
    assert len(secret) == 43

    status = await _status(api, admin)
    assert status == {"configured": True, "created_at": issued["created_at"]}
    read = await api.client.get(PATH, headers=admin)
    assert secret not in read.text  # never shown again

    config, rotated_etag = await _node_config(api)
    assert config["decision_secret"] == secret
    assert rotated_etag != etag

    again = await _rotate(api, admin)
    assert again["secret"] != secret
    assert dt.datetime.fromisoformat(again["created_at"]) >= dt.datetime.fromisoformat(
        issued["created_at"]
    )
    config, last_etag = await _node_config(api)
    assert config["decision_secret"] == again["secret"]
    assert last_etag != rotated_etag
    assert (await _status(api, admin))["created_at"] == again["created_at"]


async def test_only_tenant_admins_see_or_rotate_it(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    for headers in (
        await api.as_role("acme", Role.AGENT),
        await api.as_role("acme", Role.SUPERVISOR),
        await api.api_key("acme", Role.AGENT),
        api.node,
        api.platform,
    ):
        for method in ("GET", "POST"):
            response = await api.client.request(method, PATH, headers=headers)
            assert response.status_code == 403, (method, response.text)
            assert response.json()["error_id"] == "forbidden"
    assert (await api.client.get(PATH)).status_code == 401
    assert await _status(api, await api.api_key("acme")) == {
        "configured": False,
        "created_at": None,
    }  # nothing was made by all of that


async def test_another_tenant_never_sees_or_changes_it(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    globex = await api.as_role("globex")
    acme_secret = (await _rotate(api, acme))["secret"]

    assert await _status(api, globex) == {"configured": False, "created_at": None}
    globex_config, _ = await _node_config(api, "globex")
    assert globex_config["decision_secret"] is None

    globex_secret = (await _rotate(api, globex))["secret"]  # its own, not acme's
    assert globex_secret != acme_secret
    assert (await _node_config(api, "acme"))[0]["decision_secret"] == acme_secret
    assert (await _node_config(api, "globex"))[0]["decision_secret"] == globex_secret

    # A globex plan with an HTTP decision leaves acme's secret alone too.
    plan = await api.client.post(
        "/v1/route-plans", json={"name": "ask", "steps": [_decision_step()]}, headers=globex
    )
    assert plan.status_code == 201, plan.text
    assert (await _node_config(api, "acme"))[0]["decision_secret"] == acme_secret
    assert (await _node_config(api, "globex"))[0]["decision_secret"] == globex_secret


async def test_the_first_http_decision_step_makes_a_secret(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    plain = await api.client.post(
        "/v1/route-plans",
        json={"name": "plain", "steps": [{"type": "hangup"}]},
        headers=admin,
    )
    assert plain.status_code == 201, plain.text
    assert (await _status(api, admin))["configured"] is False

    # A change that adds one (here nested in a schedule branch) makes it.
    schedule = await api.client.post(
        "/v1/schedules", json={"name": "office", "time_zone": "Europe/Moscow"}, headers=admin
    )
    assert schedule.status_code == 201, schedule.text
    steps = [
        {
            "type": "schedule",
            "schedule_id": schedule.json()["id"],
            "branches": {"open": [_decision_step()], "closed": []},
        },
        {"type": "hangup"},
    ]
    changed = await api.client.patch(
        f"/v1/route-plans/{plain.json()['id']}", json={"steps": steps}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    status = await _status(api, admin)
    assert status["configured"] is True
    config, _ = await _node_config(api)
    secret = config["decision_secret"]
    assert isinstance(secret, str)
    assert len(secret) == 43
    assert secret not in changed.text

    # Later plans with decisions keep it; the admin reads one by rotating.
    second = await api.client.post(
        "/v1/route-plans",
        json={"name": "ask", "steps": [_decision_step(timeout_ms=800)]},
        headers=admin,
    )
    assert second.status_code == 201, second.text
    assert secret not in second.text
    assert await _status(api, admin) == status
    assert (await _node_config(api))[0]["decision_secret"] == secret
    rotated = await _rotate(api, admin)
    assert (await _node_config(api))[0]["decision_secret"] == rotated["secret"] != secret


async def test_a_first_plan_with_a_decision_makes_it_too(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    plan = await api.client.post(
        "/v1/route-plans", json={"name": "ask", "steps": [_decision_step()]}, headers=admin
    )
    assert plan.status_code == 201, plan.text
    assert (await _status(api, admin))["configured"] is True
    steps = (await _node_config(api))[0]["route_plans"][0]["steps"]
    assert [step["type"] for step in steps] == ["http-decision"]
    assert (await _node_config(api))[0]["decision_secret"]

    # A refused plan (bad URL) makes nothing.
    await api.add_tenant("globex")
    globex = await api.as_role("globex")
    api.context.outbound.allow_private = False
    try:
        refused = await api.client.post(
            "/v1/route-plans",
            json={"name": "ask", "steps": [_decision_step(url="http://10.0.0.1/route")]},
            headers=globex,
        )
    finally:
        api.context.outbound.allow_private = True
    assert refused.status_code == 422, refused.text
    assert (await _status(api, globex))["configured"] is False


# --- migration 0007 --------------------------------------------------------------------------


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names)


async def _execute(url: str, statement: str, **parameters: Any) -> list[Any]:
    database = Database(url)  # as the app opens it: foreign keys enforced on SQLite too
    try:
        async with database.engine.begin() as connection:
            result = await connection.execute(sa.text(statement), parameters)
            return list(result.fetchall()) if result.returns_rows else []
    finally:
        await database.dispose()


async def _up_and_down(url: str) -> None:
    """From 0006 with a tenant in it, up to 0007 and back, twice; nothing else is lost."""
    await upgrade(url, "0006")
    assert "decision_secrets" not in await _tables(url)
    await _execute(
        url,
        "INSERT INTO tenants (id, display_name, sip_domain, cities, seats, numbers,"
        " concurrent_calls, suspended, revision) VALUES ('acme', 'Acme', 'acme.test',"
        " '[\"msk\"]', 0, 0, 0, false, 1)",
    )
    await upgrade(url)
    assert "decision_secrets" in await _tables(url)
    await _execute(
        url, "INSERT INTO decision_secrets (tenant_id, secret) VALUES ('acme', :s)", s="k" * 43
    )
    [(secret, created_at)] = await _execute(
        url, "SELECT secret, created_at FROM decision_secrets WHERE tenant_id = 'acme'"
    )
    assert secret == "k" * 43
    assert created_at is not None  # the server default

    await downgrade(url, "0006")
    assert "decision_secrets" not in await _tables(url)
    assert await _execute(url, "SELECT id FROM tenants") == [("acme",)]
    await upgrade(url)  # and up again: the table comes back, empty
    assert await _execute(url, "SELECT tenant_id FROM decision_secrets") == []

    # A deleted tenant takes its secret along.
    await _execute(
        url, "INSERT INTO decision_secrets (tenant_id, secret) VALUES ('acme', :s)", s="k" * 43
    )
    await _execute(url, "DELETE FROM tenants WHERE id = 'acme'")
    assert await _execute(url, "SELECT tenant_id FROM decision_secrets") == []


async def test_migration_0007_up_and_down_on_sqlite(tmp_path: Path) -> None:
    await _up_and_down(f"sqlite+aiosqlite:///{tmp_path / 'control.db'}")


async def test_migration_0007_up_and_down_on_postgresql(postgres_url: str) -> None:
    await downgrade(postgres_url, "0006")  # the test database comes migrated to the head
    await _up_and_down(postgres_url)

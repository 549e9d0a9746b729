"""Login, token kinds, brute-force limits and the error body."""

from __future__ import annotations

import pytest
from tests.services.control_api import ApiHarness, bearer

from vpbx_control.auth.principal import Role


async def test_login_returns_a_bearer_token_that_identifies_the_user(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    user = await api.add_user("acme", role=Role.SUPERVISOR, email="boss@acme.example")
    response = await api.client.post(
        "/v1/auth/login",
        json={"email": "Boss@Acme.example", "password": "correct horse battery staple"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    me = await api.client.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == {
        "kind": "user",
        "tenant_id": "acme",
        "role": "supervisor",
        "user_id": str(user.id),
    }


async def test_wrong_password_and_unknown_email_look_the_same(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", email="a@acme.example")
    wrong = await api.client.post(
        "/v1/auth/login", json={"email": "a@acme.example", "password": "nope"}
    )
    unknown = await api.client.post(
        "/v1/auth/login", json={"email": "ghost@acme.example", "password": "nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error_id"] == "not-authenticated"


async def test_repeated_failures_lock_the_account_but_not_others(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", email="victim@acme.example", password="right")
    await api.add_user("acme", email="other@acme.example", password="right")
    limit = api.settings.login_failures_per_account
    for _ in range(limit):
        response = await api.client.post(
            "/v1/auth/login", json={"email": "victim@acme.example", "password": "guess"}
        )
        assert response.status_code == 401
    locked = await api.client.post(
        "/v1/auth/login", json={"email": "victim@acme.example", "password": "right"}
    )
    assert locked.status_code == 429
    assert locked.json()["error_id"] == "too-many-requests"
    assert int(locked.headers["Retry-After"]) > 0
    other = await api.client.post(
        "/v1/auth/login", json={"email": "other@acme.example", "password": "right"}
    )
    assert other.status_code == 200


async def test_one_address_is_limited_across_accounts(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    for attempt in range(api.settings.login_failures_per_address):
        response = await api.client.post(
            "/v1/auth/login", json={"email": f"u{attempt}@acme.example", "password": "x"}
        )
        assert response.status_code == 401
    blocked = await api.client.post(
        "/v1/auth/login", json={"email": "fresh@acme.example", "password": "x"}
    )
    assert blocked.status_code == 429


async def test_garbage_and_missing_credentials_are_401(api: ApiHarness) -> None:
    for headers in ({}, bearer("garbage"), bearer("vpbx_" + "0" * 32 + "_nope")):
        response = await api.client.get("/v1/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["error_id"] == "not-authenticated"


async def test_api_key_and_platform_token_are_recognised(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    key_me = await api.client.get("/v1/auth/me", headers=await api.api_key("acme"))
    assert key_me.json()["kind"] == "api-key"
    assert key_me.json()["tenant_id"] == "acme"
    platform_me = await api.client.get("/v1/auth/me", headers=api.platform)
    assert platform_me.status_code == 403


async def test_validation_error_names_the_field(api: ApiHarness) -> None:
    response = await api.client.post("/v1/auth/login", json={"email": "a@b.c"})
    assert response.status_code == 422
    body = response.json()
    assert body["error_id"] == "validation-failed"
    assert [d["field"] for d in body["details"]] == ["body.password"]


async def test_health_and_docs_are_served(api: ApiHarness) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ready", "problems": {}}
    assert (await api.client.get("/docs")).status_code == 200
    document = (await api.client.get("/openapi.json")).json()
    assert "/v1/auth/login" in document["paths"]


async def test_metrics_count_requests_by_route_template(api: ApiHarness) -> None:
    await api.client.get("/healthz")
    text = (await api.client.get("/metrics")).text
    assert 'vpbx_api_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_default_secrets_are_refused_outside_local_mode() -> None:
    import pytest
    from pydantic import SecretStr

    from vpbx_common.settings import InsecureDefaultSecretError
    from vpbx_control.app import create_app
    from vpbx_control.settings import ControlSettings

    with pytest.raises(InsecureDefaultSecretError, match="VPBX_PLATFORM_ADMIN_TOKEN"):
        create_app(ControlSettings(mode="cluster"))
    create_app(ControlSettings(mode="local"))  # the development defaults are fine locally
    same = SecretStr("the-same-long-random-value-0123456789")
    with pytest.raises(InsecureDefaultSecretError, match="must differ"):
        create_app(
            ControlSettings(
                mode="cluster",
                platform_admin_token=same,
                service_token=same,
                token_secret=SecretStr("another-long-random-value-0123456789"),
            )
        )


def test_weak_password_hashing_is_refused_outside_test_mode() -> None:
    import pytest
    from pydantic import SecretStr

    from vpbx_control.app import create_app
    from vpbx_control.settings import ControlSettings, WeakPasswordHashingError

    secrets = {
        "platform_admin_token": SecretStr("a-long-random-platform-token-0123456789"),
        "service_token": SecretStr("a-long-random-service-token-0123456789"),
        "token_secret": SecretStr("a-long-random-signing-secret-0123456789"),
    }
    for weak in ({"password_hash_time_cost": 1}, {"password_hash_memory_kib": 1024}):
        for mode in ("local", "cluster"):
            with pytest.raises(WeakPasswordHashingError, match="only in test mode"):
                create_app(ControlSettings(mode=mode, **secrets, **weak))
        create_app(ControlSettings(mode="test", **secrets, **weak))  # the suites' own hashing
    create_app(ControlSettings(mode="cluster", **secrets))  # the default is OWASP's floor


async def test_a_hash_of_other_parameters_is_replaced_at_login(api: ApiHarness) -> None:
    from sqlalchemy import select

    from vpbx_control.auth.passwords import Passwords
    from vpbx_control.users.models import UserRow

    await api.add_tenant("acme")
    user = await api.add_user("acme", email="old@acme.example", password="an old password")
    old = Passwords(time_cost=3, memory_cost=1024).hash("an old password")
    async with api.context.database.session() as session:
        row = await session.get(UserRow, user.id)
        assert row is not None
        row.password_hash = old
        await session.commit()
    await api.login("old@acme.example", "an old password")
    async with api.context.database.session() as session:
        stored = await session.scalar(select(UserRow.password_hash).where(UserRow.id == user.id))
    assert stored is not None
    assert stored != old
    assert not api.context.passwords.needs_rehash(stored)
    assert api.context.passwords.verify(stored, "an old password")


async def test_nul_characters_are_refused_naming_where(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    in_body = await api.client.post(
        "/v1/schedules", json={"name": "a\x00b", "time_zone": "UTC"}, headers=admin
    )
    assert in_body.status_code == 422
    assert [d["field"] for d in in_body.json()["details"]] == ["body"]
    in_query = await api.client.get("/v1/schedules", params={"name": "\x00"}, headers=admin)
    assert in_query.status_code == 422
    assert [d["field"] for d in in_query.json()["details"]] == ["query.name"]
    # An escaped backslash followed by "u0000" is ordinary text.
    literal = await api.client.post(
        "/v1/schedules", json={"name": "a\\u0000b", "time_zone": "UTC"}, headers=admin
    )
    assert literal.status_code == 201, literal.text


WORKSPACE = "http://crm.example.com:8001"


@pytest.mark.control_settings(cors_origins=[WORKSPACE])
async def test_the_crm_workspace_may_log_in_from_its_own_origin_and_no_other(
    api: ApiHarness,
) -> None:
    """The CRM's web app calls the login and fetches recordings cross-origin (CORS), with a
    bearer token, never cookies; other pages' scripts get no CORS headers."""
    await api.add_tenant("acme")
    await api.add_user("acme", email="agent@acme.example", password="right")
    preflight = await api.client.options(
        "/v1/auth/login",
        headers={
            "Origin": WORKSPACE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == WORKSPACE
    assert "access-control-allow-credentials" not in preflight.headers
    login = await api.client.post(
        "/v1/auth/login",
        json={"email": "agent@acme.example", "password": "right"},
        headers={"Origin": WORKSPACE},
    )
    assert login.status_code == 200
    assert login.headers["access-control-allow-origin"] == WORKSPACE
    refused = await api.client.post(
        "/v1/auth/login",
        json={"email": "agent@acme.example", "password": "wrong"},
        headers={"Origin": WORKSPACE},
    )
    assert refused.status_code == 401  # errors are readable by the page too
    assert refused.headers["access-control-allow-origin"] == WORKSPACE
    other = await api.client.options(
        "/v1/auth/login",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


async def test_no_cross_origin_calls_unless_configured(api: ApiHarness) -> None:
    response = await api.client.get("/healthz", headers={"Origin": WORKSPACE})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers

"""The agent workspace served at /: the built app, its caching, and the API it must not
shadow (JSON 404s and 405s stay the API's). No services needed: a built directory is faked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from vpbx_crm.app import create_app
from vpbx_crm.settings import CrmSettings
from vpbx_crm.web.static import content_security_policy

INDEX = "<!doctype html><title>vpbx CRM</title><div id=root></div>"


def _settings(tmp_path: Path, web_dir: Path) -> CrmSettings:
    return CrmSettings(
        mode="local",
        web_dir=web_dir,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
        redis_url=None,
        control_url="http://control.invalid:8000",
        control_public_url="https://pbx.example.com/",
    )


async def _client(settings: CrmSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, migrate=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm") as client:
            yield client


@pytest.fixture
def built(tmp_path: Path) -> Path:
    web = tmp_path / "dist"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text(INDEX)
    (web / "assets" / "index-AbC123.js").write_text("console.log('app')")
    (web / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("not for the web")
    return web


@pytest.fixture
async def client(tmp_path: Path, built: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(_settings(tmp_path, built)):
        yield client


async def test_the_app_answers_every_client_route_with_index_html_revalidated(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/", "/contacts", "/contacts/0b8e6a52-8f0e-4c39-9a41-0d2b9c1d2e3f/edit"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.text == INDEX
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-cache"
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "connect-src 'self' https://pbx.example.com" in policy
    head = await client.head("/tasks")
    assert head.status_code == 200
    assert head.content == b""
    # no-cache means revalidate: an unchanged index.html is a 304.
    again = await client.get("/", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


async def test_hashed_assets_are_cached_for_a_year_and_missing_files_are_404(
    client: httpx.AsyncClient,
) -> None:
    asset = await client.get("/assets/index-AbC123.js")
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in asset.headers["content-type"]
    icon = await client.get("/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["cache-control"] == "no-cache"
    for missing in ("/assets/index-old.js", "/robots.txt", "/assets/%2e%2e/%2e%2e/secret.txt"):
        response = await client.get(missing)
        assert response.status_code == 404, missing
        assert response.json()["error_id"] == "not-found"
        assert "not for the web" not in response.text


async def test_the_api_is_not_shadowed(client: httpx.AsyncClient) -> None:
    for path in ("/v1/nothing-here", "/internal/nothing", "/v1"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error_id"] == "not-found"
    wrong_method = await client.put("/v1/contacts")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error_id"] == "method-not-allowed"
    unauthenticated = await client.get("/v1/contacts")
    assert unauthenticated.status_code == 401
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "vpbx CRM"
    assert "swagger" in (await client.get("/docs")).text.lower()
    posted = await client.post("/contacts")
    assert posted.status_code in (404, 405)
    assert posted.headers["content-type"] == "application/json"


async def test_config_json_tells_the_workspace_where_the_login_is(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/config.json")
    assert response.status_code == 200
    assert response.json() == {
        "control_url": "https://pbx.example.com",
        "default_country": "RU",
        "sip_ws_url": "",
        "live_path": "/v1/live",
    }
    assert response.headers["cache-control"] == "no-cache"


async def test_without_a_build_the_root_says_how_to_build_it(tmp_path: Path) -> None:
    async for client in _client(_settings(tmp_path, tmp_path / "nowhere")):
        response = await client.get("/contacts")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert "make web" in response.text
        assert response.headers["cache-control"] == "no-store"
        api = await client.get("/v1/nothing-here")
        assert api.status_code == 404
        assert api.json()["error_id"] == "not-found"


def test_the_softphones_websocket_may_be_reached_and_nothing_else() -> None:
    policy = content_security_policy("https://pbx.example.com", "wss://sip.example.com:5066/")
    assert "connect-src 'self' https://pbx.example.com wss://sip.example.com:5066;" in policy
    assert "connect-src 'self' https://pbx.example.com;" in content_security_policy(
        "https://pbx.example.com"
    )


def test_a_sip_websocket_url_must_be_ws_or_wss() -> None:
    with pytest.raises(ValueError, match="sip_ws_url"):
        CrmSettings(mode="local", sip_ws_url="http://sip.example.com")
    assert CrmSettings(mode="local", sip_ws_url="ws://127.0.0.1:5066").sip_ws_url

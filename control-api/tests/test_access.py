"""Every route declares who may call it, and the declaration is enforced.

The routes are enumerated from the app itself, so a route added later without
an access policy, or with a policy that is not enforced, fails here.

One app serves all the cases (``module_api``): each case works in a tenant of its
own, with callers of its own, and asks about ids nobody has, so no case sees
another's effects.
"""

from __future__ import annotations

import re
import uuid
from functools import cache
from typing import Any

import pytest
from fastapi.routing import APIRoute
from tests.services.control_api import ApiHarness, control_settings, unique_tenant

from vpbx_control.app import create_app
from vpbx_control.auth.principal import AccessPolicy, Role
from vpbx_control.deps import route_policy

# Served by FastAPI itself, or deliberately public.
FRAMEWORK_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@cache
def _api_routes() -> tuple[APIRoute, ...]:
    app = create_app(control_settings())
    return tuple(route for route in app.routes if isinstance(route, APIRoute))


def _route_policy(route: APIRoute) -> AccessPolicy:
    policy = route_policy(route)
    assert policy is not None, f"{route.methods} {route.path} declares no access policy"
    return policy


def test_every_route_declares_an_access_policy() -> None:
    routes = _api_routes()
    assert len(routes) > 10
    undeclared = [
        f"{sorted(route.methods)} {route.path}" for route in routes if route_policy(route) is None
    ]
    assert undeclared == []


def test_no_route_is_closed_to_everybody() -> None:
    closed = []
    for route in _api_routes():
        policy = _route_policy(route)
        if not (policy.roles or policy.platform or policy.node or policy.public):
            closed.append(f"{sorted(route.methods)} {route.path}")
    assert closed == []


def test_only_login_and_probes_are_public() -> None:
    public = {route.path for route in _api_routes() if _route_policy(route).public}
    assert public == {"/v1/auth/login", "/healthz", "/readyz", "/metrics"}


def _concrete_path(path: str) -> str:
    # Unknown ids: the policy is checked before the object is looked up.
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


def _cases() -> list[Any]:
    cases = []
    for route in _api_routes():
        policy = _route_policy(route)
        if policy.public:
            continue
        for method in sorted(route.methods - {"HEAD"}):
            cases.append(pytest.param(method, route.path, policy, id=f"{method} {route.path}"))
    return cases


CALLERS = ("anonymous", "agent", "supervisor", "tenant-admin", "agent-key", "platform", "node")


async def _headers(api: ApiHarness, tenant: str, caller: str) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    if caller == "platform":
        return api.platform
    if caller == "node":
        return api.node
    if caller == "agent-key":
        return await api.api_key(tenant, Role.AGENT)
    return await api.as_role(tenant, Role(caller))


def _admitted(policy: AccessPolicy, caller: str) -> bool:
    match caller:
        case "platform":
            return policy.platform
        case "node":
            return policy.node
        case "agent-key":
            return Role.AGENT in policy.roles
        case _:
            return Role(caller) in policy.roles


@pytest.mark.asyncio(loop_scope="module")  # module_api's loop
@pytest.mark.parametrize(("method", "path", "policy"), _cases())
async def test_policy_is_enforced(
    module_api: ApiHarness, method: str, path: str, policy: AccessPolicy
) -> None:
    api = module_api
    tenant = unique_tenant("acme")
    await api.add_tenant(tenant)
    url = _concrete_path(path)
    for caller in CALLERS:
        headers = await _headers(api, tenant, caller)
        response = await api.client.request(method, url, headers=headers, json={})
        if caller == "anonymous":
            assert response.status_code == 401, (caller, response.text)
        elif _admitted(policy, caller):
            assert response.status_code not in (401, 403), (caller, response.text)
        else:
            assert response.status_code == 403, (caller, response.text)
            assert response.json()["error_id"] == "forbidden"

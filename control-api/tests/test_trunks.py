"""/v1/trunks: a tenant's own carrier trunks; the platform's trunks from a file; both
compiled into the node config (tenant's first, each by priority, passwords in clear).

Also: the password is never answered or logged, the outbound URL policy applies to a
trunk's host outside local mode, registration status is read from a real Redis as the
nodes write it, and migration 0012 runs up and down on both databases.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from tests.services.control_api import ApiHarness, control_settings, serve_api

from vpbx_common.manifests import PLATFORM_API_VERSION, Number
from vpbx_common.routing import RoutingTable
from vpbx_common.trunks import RegistrationState, TrunkRegistrationStatus, TrunkStatusStore
from vpbx_control.auth.principal import Role
from vpbx_control.db.migrate import downgrade, upgrade
from vpbx_control.db.session import Database
from vpbx_control.settings import ControlSettings
from vpbx_control.trunks.models import TrunkRow
from vpbx_control.trunks.platform import PlatformTrunks, PlatformTrunksError

PASSWORD = "carrier-secret-Zq81x"  # looked for in every answer and log line
BEELINE: dict[str, Any] = {
    "name": "beeline",
    "uri": "sip:sip.beeline.example:5062;transport=tcp",
    "register": True,
    "username": "74950000001",
    "password": PASSWORD,
    "allowed_addresses": ["192.0.2.0/24", "198.51.100.7"],
    "priority": 1,
    "passes_caller_id": False,
}
IP_TRUNK: dict[str, Any] = {"name": "mts", "uri": "sip:127.0.0.1"}

PLATFORM_TRUNKS = """\
apiVersion: config.vpbx.io/v1alpha1
kind: Trunk
metadata: {name: backup-carrier}
spec:
  uri: sip:backup.carrier.example
  priority: 50
  allowedAddresses: [203.0.113.0/24]
---
apiVersion: config.vpbx.io/v1alpha1
kind: Trunk
metadata: {name: main-carrier}
spec:
  uri: sip:main.carrier.example:5070;transport=tcp
  register: true
  username: operator
  password: operator-carrier-password
  priority: 10
  passesCallerId: true
"""


def _fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


async def _trunk(api: ApiHarness, headers: dict[str, str], body: dict[str, Any]) -> Any:
    response = await api.client.post("/v1/trunks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _node_config(api: ApiHarness, tenant: str = "acme") -> tuple[dict[str, Any], str]:
    response = await api.client.get(f"/internal/v1/node-config/{tenant}/msk", headers=api.node)
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()
    return config, response.headers["ETag"]


async def _add_number(api: ApiHarness, tenant: str, number: str) -> None:
    await api.context.numbers.create_number(
        Number.model_validate(
            {
                "apiVersion": PLATFORM_API_VERSION,
                "kind": "Number",
                "metadata": {"name": f"{tenant}-{number.lstrip('+')}"},
                "spec": {"number": number, "tenant": tenant, "city": "msk", "entry": "unrouted"},
            }
        )
    )


# --- the resource -----------------------------------------------------------------------------


async def test_create_list_read_change_delete(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    created = await api.client.post("/v1/trunks", json=BEELINE, headers=admin)
    assert created.status_code == 201, created.text
    trunk = created.json()
    url = f"/v1/trunks/{trunk['id']}"
    assert created.headers["Location"] == url
    assert {key: trunk[key] for key in BEELINE if key != "password"} == {
        **{key: value for key, value in BEELINE.items() if key != "password"},
        "uri": "sip:sip.beeline.example:5062;transport=tcp",
        "allowed_addresses": ["192.0.2.0/24", "198.51.100.7/32"],
    }
    assert trunk["password_set"] is True
    assert "password" not in trunk
    assert trunk["registration"] == {
        "state": "unknown",  # no node has reported yet
        "reason": "",
        "cities": {
            "msk": {"state": "unknown", "reason": "", "expires_at": None, "updated_at": None}
        },
    }
    ip = await _trunk(api, admin, IP_TRUNK)
    assert ip["uri"] == "sip:127.0.0.1:5060;transport=udp"  # normalised, the defaults written
    assert (ip["register"], ip["username"], ip["password_set"], ip["priority"]) == (
        False,
        None,
        False,
        100,
    )
    assert ip["registration"] == {"state": "not-registering", "reason": "", "cities": {}}

    listed = await api.client.get("/v1/trunks", headers=admin)
    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()["items"]] == ["beeline", "mts"]  # by priority
    read = await api.client.get(url, headers=admin)
    assert read.json() == trunk
    assert read.headers["ETag"] == created.headers["ETag"]

    # Fields left out keep their value, the password included.
    changed = await api.client.patch(
        url, json={"priority": 200, "uri": "sip:sip2.beeline.example"}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["priority"] == 200
    assert changed.json()["uri"] == "sip:sip2.beeline.example:5060;transport=udp"
    assert changed.json()["password_set"] is True
    [entry] = [t for t in (await _node_config(api))[0]["trunks"] if t["name"] == "beeline"]
    assert entry["password"] == PASSWORD
    new_password = await api.client.patch(url, json={"password": "a new one"}, headers=admin)
    assert new_password.status_code == 200, new_password.text
    [entry] = [t for t in (await _node_config(api))[0]["trunks"] if t["name"] == "beeline"]
    assert entry["password"] == "a new one"
    listed = await api.client.get("/v1/trunks", headers=admin)
    assert [item["name"] for item in listed.json()["items"]] == ["mts", "beeline"]

    stale = await api.client.patch(
        url, json={"priority": 3}, headers={**admin, "If-Match": created.headers["ETag"]}
    )
    assert stale.status_code == 412
    # An IP trunk may drop its credentials; a registering one may not.
    dropped = await api.client.patch(
        url, json={"register": False, "username": None, "password": None}, headers=admin
    )
    assert dropped.status_code == 200, dropped.text
    assert (dropped.json()["username"], dropped.json()["password_set"]) == (None, False)

    deleted = await api.client.delete(url, headers=admin)
    assert deleted.status_code == 204
    assert (await api.client.get(url, headers=admin)).status_code == 404
    assert (await api.client.delete(url, headers=admin)).status_code == 404
    assert [t["name"] for t in (await _node_config(api))[0]["trunks"]] == ["mts"]


async def test_the_password_is_never_answered_nor_logged(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    bodies = []
    created = await api.client.post("/v1/trunks", json=BEELINE, headers=admin)
    bodies.append(created.text)
    url = f"/v1/trunks/{created.json()['id']}"
    for method, path, body in (
        ("GET", "/v1/trunks", None),
        ("GET", url, None),
        ("PATCH", url, {"password": PASSWORD, "priority": 7}),
        ("PATCH", url, {"password": PASSWORD, "uri": "not a uri"}),  # refused: the 422 too
        ("POST", "/v1/trunks", {**BEELINE, "allowed_addresses": ["nope"]}),
        ("POST", "/v1/trunks", BEELINE),  # the 409
    ):
        response = await api.client.request(method, path, json=body, headers=admin)
        assert response.status_code < 500, response.text
        bodies.append(response.text)
    openapi = await api.client.get("/openapi.json")
    assert all(PASSWORD not in body for body in bodies)
    assert PASSWORD not in openapi.text
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)
    # The nodes alone get it (they answer the carrier's digest challenges).
    config, _ = await _node_config(api)
    assert config["trunks"][0]["password"] == PASSWORD


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({**BEELINE, "uri": "http://carrier.example/"}, ["body.uri"]),
        ({**BEELINE, "uri": "sip:carrier.example;transport=sctp"}, ["body.uri"]),
        ({**BEELINE, "uri": "sip:carrier.example:70000"}, ["body.uri"]),
        ({**BEELINE, "uri": "sips:carrier.example"}, ["body.uri"]),
        (
            {**BEELINE, "allowed_addresses": ["192.0.2.0/24", "10.0.0.300/8"]},
            ["body.allowed_addresses"],
        ),
        ({**BEELINE, "priority": -1}, ["body.priority"]),
        ({**BEELINE, "name": ""}, ["body.name"]),
        ({**BEELINE, "register": "sometimes"}, ["body.register"]),
        ({**BEELINE, "registers": True}, ["body.registers"]),  # the field is `register`
        ({**BEELINE, "password": None}, ["body.password"]),
        ({**BEELINE, "username": None, "password": None}, ["body.username", "body.password"]),
        ({**BEELINE, "username": "a\r\nb"}, ["body.username"]),
    ]
    for body, expected in cases:
        response = await api.client.post("/v1/trunks", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error_id"] == "validation-failed"
        assert _fields(response) == expected, body
    bad_uri = await api.client.post("/v1/trunks", json={**BEELINE, "uri": "sip:"}, headers=admin)
    [detail] = bad_uri.json()["details"]
    assert "sip:HOST[:PORT][;transport=udp|tcp]" in detail["message"]

    ip = await _trunk(api, admin, IP_TRUNK)
    url = f"/v1/trunks/{ip['id']}"
    # Turning registration on needs the credentials, in the same change or before.
    refused = await api.client.patch(url, json={"register": True}, headers=admin)
    assert refused.status_code == 422
    assert _fields(refused) == ["body.username", "body.password"]
    on = await api.client.patch(
        url, json={"register": True, "username": "u", "password": "p"}, headers=admin
    )
    assert on.status_code == 200, on.text
    cleared = await api.client.patch(url, json={"password": None}, headers=admin)
    assert cleared.status_code == 422
    assert _fields(cleared) == ["body.password"]
    for body, field in (
        ({"uri": "sip:a b"}, "body.uri"),
        ({"allowed_addresses": ["::1/129"]}, "body.allowed_addresses"),
        ({"colour": "red"}, "body.colour"),
    ):
        response = await api.client.patch(url, json=body, headers=admin)
        assert response.status_code == 422, body
        assert _fields(response) == [field]


async def test_a_name_is_used_once_per_tenant(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    await _trunk(api, admin, BEELINE)
    twice = await api.client.post("/v1/trunks", json=BEELINE, headers=admin)
    assert twice.status_code == 409
    assert twice.json()["error_id"] == "trunk-name-taken"
    assert _fields(twice) == ["body.name"]
    other = await _trunk(api, admin, IP_TRUNK)
    renamed = await api.client.patch(
        f"/v1/trunks/{other['id']}", json={"name": "beeline"}, headers=admin
    )
    assert renamed.status_code == 409
    # Another tenant may use the name.
    await _trunk(api, await api.as_role("globex"), BEELINE)


async def test_another_tenants_trunk_is_not_found(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    trunk = await _trunk(api, await api.as_role("acme"), BEELINE)
    url = f"/v1/trunks/{trunk['id']}"
    for globex in (await api.as_role("globex"), await api.api_key("globex")):
        for method, body in (("GET", None), ("PATCH", {"priority": 5}), ("DELETE", None)):
            response = await api.client.request(method, url, json=body, headers=globex)
            assert response.status_code == 404, (method, response.text)
        listed = await api.client.get("/v1/trunks", headers=globex)
        assert listed.json()["total"] == 0
    config, _ = await _node_config(api, "acme")
    assert [t["priority"] for t in config["trunks"]] == [1]  # untouched
    globex_config = await api.client.get("/internal/v1/node-config/globex/msk", headers=api.node)
    assert globex_config.json()["trunks"] == []


async def test_only_tenant_admins_see_or_touch_trunks(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    trunk = await _trunk(api, admin, BEELINE)
    url = f"/v1/trunks/{trunk['id']}"
    routes = (
        ("GET", "/v1/trunks", None),
        ("POST", "/v1/trunks", {**BEELINE, "name": "other"}),
        ("GET", url, None),
        ("PATCH", url, {"priority": 5}),
        ("DELETE", url, None),
        ("GET", "/v1/outbound-policy", None),
    )
    for role in (Role.AGENT, Role.SUPERVISOR):
        for headers in (await api.as_role("acme", role), await api.api_key("acme", role)):
            for method, path, body in routes:
                response = await api.client.request(method, path, json=body, headers=headers)
                assert response.status_code == 403, (role, method, path)
                assert PASSWORD not in response.text
    assert (await api.client.get(url, headers=admin)).json()["priority"] == 1


async def test_every_change_makes_the_nodes_reload(api: ApiHarness) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    _, etag = await _node_config(api)
    async with api.context.redis.pubsub() as pubsub:
        await pubsub.subscribe("vpbx:config:acme")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        trunk = await _trunk(api, admin, BEELINE)
        url = f"/v1/trunks/{trunk['id']}"
        for method, body in (
            ("POST", None),
            ("PATCH", {"priority": 2}),
            ("PATCH", {"password": "rotated"}),
            ("DELETE", None),
        ):
            if method != "POST":
                response = await api.client.request(method, url, json=body, headers=admin)
                assert response.status_code in (200, 204), response.text
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, (method, body)
            assert message["data"] == b"acme"
            _, new_etag = await _node_config(api)
            assert new_etag != etag, (method, body)
            etag = new_etag


# --- the outbound URL policy on the trunk's host -------------------------------------------------


async def test_outside_local_mode_a_trunk_must_be_on_the_internet(api: ApiHarness) -> None:
    """In a cluster a tenant's trunk must not become a way into the platform's network."""
    api.context.outbound.allow_private = False  # what VPBX_MODE=cluster gets by default
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    for uri, words in (
        ("sip:127.0.0.1", "not a private address"),
        ("sip:10.96.0.1:5060", "not a private address"),
        ("sip:[::1]:5060;transport=tcp", "not a private address"),
        ("sip:2130706433", "not a private address"),  # 127.0.0.1 as one number
        ("sip:localhost", "not an internal name"),
        ("sip:kamailio.vpbx.svc.cluster.local", "not an internal name"),
        ("sip:no-such-carrier.invalid", "could not be resolved"),
    ):
        refused = await api.client.post("/v1/trunks", json={**BEELINE, "uri": uri}, headers=admin)
        assert refused.status_code == 422, (uri, refused.text)
        assert _fields(refused) == ["body.uri"]
        assert refused.json()["message"].startswith("body.uri: the trunk's host"), refused.text
        assert words in refused.json()["message"], refused.text
    public = await _trunk(api, admin, {**BEELINE, "uri": "sip:93.184.216.34:5060"})
    moved = await api.client.patch(
        f"/v1/trunks/{public['id']}", json={"uri": "sip:192.168.1.10"}, headers=admin
    )
    assert moved.status_code == 422
    assert _fields(moved) == ["body.uri"]

    # A name is resolved when the trunk is saved: the machine's own host name resolves to a
    # loopback or private address here, and that address is not told to the tenant.
    host = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 5060, type=socket.SOCK_DGRAM)}
    if all(ipaddress.ip_address(address).is_global for address in resolved):
        pytest.skip(f"{host} resolves to public addresses only ({resolved})")
    sneaky = await api.client.post(
        "/v1/trunks", json={**BEELINE, "name": "sneaky", "uri": f"sip:{host}"}, headers=admin
    )
    assert sneaky.status_code == 422, sneaky.text
    assert _fields(sneaky) == ["body.uri"]
    assert "does not resolve to an address on the Internet" in sneaky.json()["message"]
    assert not any(address in sneaky.text for address in resolved)

    # Local mode: the carrier (or a test peer) may run on the same machine.
    api.context.outbound.allow_private = True
    local = await _trunk(api, admin, {**BEELINE, "name": "local", "uri": "sip:127.0.0.1:5080"})
    assert local["uri"] == "sip:127.0.0.1:5080;transport=udp"
    assert (await _trunk(api, admin, {**BEELINE, "name": "host", "uri": f"sip:{host}"}))["uri"]


# --- registration status, as the nodes write it into Redis ---------------------------------------


async def test_registration_is_read_from_what_the_nodes_report(api: ApiHarness) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme", cities=("msk", "ekb"))
    admin = await api.as_role("acme")
    trunk = await _trunk(api, admin, BEELINE)
    url = f"/v1/trunks/{trunk['id']}"
    store = TrunkStatusStore(api.context.redis)
    now = int(time.time() * 1000)

    async def registration() -> dict[str, Any]:
        response = await api.client.get(url, headers=admin)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["registration"]
        listed = (await api.client.get("/v1/trunks", headers=admin)).json()["items"]
        assert listed[0]["registration"] == result  # the list says the same
        return result

    assert (await registration())["state"] == "unknown"
    await store.put(
        "acme",
        trunk["id"],
        "msk",
        TrunkRegistrationStatus(
            state=RegistrationState.REGISTERED, expires_at_ms=now + 300_000, updated_at_ms=now
        ),
    )
    seen = await registration()
    assert seen["state"] == "unknown"  # ekb's node has not reported
    assert seen["cities"]["msk"]["state"] == "registered"
    assert seen["cities"]["msk"]["expires_at"].startswith(time.strftime("%Y-", time.gmtime()))
    assert seen["cities"]["ekb"]["state"] == "unknown"
    await store.put(
        "acme",
        trunk["id"],
        "ekb",
        TrunkRegistrationStatus(state=RegistrationState.REGISTERING, updated_at_ms=now),
    )
    assert (await registration())["state"] == "registering"
    await store.put(
        "acme",
        trunk["id"],
        "ekb",
        TrunkRegistrationStatus(
            state=RegistrationState.REGISTERED, expires_at_ms=now + 300_000, updated_at_ms=now
        ),
    )
    assert (await registration())["state"] == "registered"
    await store.put(
        "acme",
        trunk["id"],
        "ekb",
        TrunkRegistrationStatus(
            state=RegistrationState.FAILED, reason="403 Forbidden", updated_at_ms=now
        ),
    )
    failed = await registration()
    assert (failed["state"], failed["reason"]) == ("failed", "ekb: 403 Forbidden")
    assert failed["cities"]["ekb"]["reason"] == "403 Forbidden"
    # A binding its node stopped refreshing is not shown as registered.
    await store.put(
        "acme",
        trunk["id"],
        "ekb",
        TrunkRegistrationStatus(
            state=RegistrationState.REGISTERED,
            expires_at_ms=now - 1000,
            updated_at_ms=now - 301_000,
        ),
    )
    lapsed = await registration()
    assert lapsed["state"] == "unknown"
    assert lapsed["cities"]["ekb"]["state"] == "unknown"
    assert "lapsed" in lapsed["cities"]["ekb"]["reason"]

    # Register off: not-registering, whatever an old node may still say.
    off = await api.client.patch(url, json={"register": False}, headers=admin)
    assert off.json()["registration"] == {"state": "not-registering", "reason": "", "cities": {}}
    # Deleting the trunk forgets its reports.
    key = f"vpbx:trunk-status:acme:{trunk['id']}"
    assert await api.context.redis.exists(key)
    assert (await api.client.delete(url, headers=admin)).status_code == 204
    assert not await api.context.redis.exists(key)


# --- the node config: tenant trunks, then platform trunks; outbound policy; caller IDs -----------


@pytest.fixture
async def platform_api(
    postgres_url: str, flushed_redis: str, tmp_path: Path
) -> AsyncIterator[ApiHarness]:
    """The API with platform trunks from VPBX_PLATFORM_TRUNKS_FILE (as the chart mounts it),
    compiling a new config on every ask (no cache), so a changed file shows at once."""
    trunks_file = tmp_path / "trunks.yaml"
    trunks_file.write_text(PLATFORM_TRUNKS)
    settings = control_settings(
        database_url=postgres_url,
        redis_url=flushed_redis,
        local_numbers_file=tmp_path / "numbers.yaml",
        chdb_path=tmp_path / "chdb",
        speech_cache_dir=tmp_path / "speech",
        storage_url=(tmp_path / "objects").as_uri(),
        platform_trunks_file=trunks_file,
        node_config_cache_s=0,
    )
    async with serve_api(settings) as harness:
        yield harness


async def test_node_config_has_tenant_trunks_then_platform_trunks_each_by_priority(
    platform_api: ApiHarness,
) -> None:
    api = platform_api
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    await _trunk(api, admin, {**BEELINE, "priority": 20})
    await _trunk(api, admin, {"name": "mts", "uri": "sip:127.0.0.1:5080", "priority": 5})
    config, _ = await _node_config(api)
    assert [(t["scope"], t["name"]) for t in config["trunks"]] == [
        ("tenant", "mts"),
        ("tenant", "beeline"),
        ("platform", "main-carrier"),
        ("platform", "backup-carrier"),
    ]
    mts, beeline, main, backup = config["trunks"]
    assert beeline == {
        "id": beeline["id"],
        "name": "beeline",
        "scope": "tenant",
        "host": "sip.beeline.example",
        "port": 5062,
        "transport": "tcp",
        "registers": True,
        "username": "74950000001",
        "password": PASSWORD,
        "register_expires_s": 300,
        "allowed_addresses": ["192.0.2.0/24", "198.51.100.7/32"],
        "priority": 20,
        "passes_caller_id": False,
    }
    assert (mts["host"], mts["port"], mts["transport"], mts["registers"]) == (
        "127.0.0.1",
        5080,
        "udp",
        False,
    )
    assert main == {
        "id": "platform:main-carrier",
        "name": "main-carrier",
        "scope": "platform",
        "host": "main.carrier.example",
        "port": 5070,
        "transport": "tcp",
        "registers": True,
        "username": "operator",
        "password": "operator-carrier-password",
        "register_expires_s": 300,
        "allowed_addresses": [],
        "priority": 10,
        "passes_caller_id": True,
    }
    assert (backup["id"], backup["registers"], backup["password"]) == (
        "platform:backup-carrier",
        False,
        None,
    )
    assert backup["allowed_addresses"] == ["203.0.113.0/24"]
    # Every tenant gets the platform's trunks, none of another tenant's.
    globex = await api.client.get("/internal/v1/node-config/globex/msk", headers=api.node)
    assert [t["name"] for t in globex.json()["trunks"]] == ["main-carrier", "backup-carrier"]
    # The platform's trunks are not the tenant's to see or change.
    listed = await api.client.get("/v1/trunks", headers=admin)
    assert [item["name"] for item in listed.json()["items"]] == ["mts", "beeline"]

    # A Secret updated in place: the file is read again when it changes.
    path = api.settings.platform_trunks_file
    assert path is not None
    path.write_text(PLATFORM_TRUNKS.replace("priority: 50", "priority: 1"))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    config, _ = await _node_config(api)
    assert [t["name"] for t in config["trunks"]][2:] == ["backup-carrier", "main-carrier"]
    # A broken file keeps the trunks read last (and says so in the log).
    path.write_text("kind: Trunk\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000_000))
    config, _ = await _node_config(api)
    assert [t["name"] for t in config["trunks"]][2:] == ["backup-carrier", "main-carrier"]


async def test_outbound_policy_and_caller_ids_reach_the_node_config(api: ApiHarness) -> None:
    created = await api.client.post(
        "/v1/platform/tenants",
        json={
            "id": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.vpbx.example",
            "cities": ["msk"],
            "outbound": {"international": True, "max_concurrent": 4, "max_minutes_per_day": 600},
        },
        headers=api.platform,
    )
    assert created.status_code == 201, created.text
    await _add_number(api, "acme", "+74950000001")
    await _add_number(api, "acme", "+74950000002")
    admin = await api.as_role("acme")
    config, _ = await _node_config(api)
    assert config["outbound"] == {
        "country": "RU",
        "international": True,
        "premium": False,
        "max_concurrent": 4,
        "max_minutes_per_day": 600,
        "default_caller_id": None,
    }
    changed = await api.client.patch(
        "/v1/platform/tenants/acme",
        json={"outbound": {"default_caller_id": "+74950000002", "premium": True}},
        headers=api.platform,
    )
    assert changed.status_code == 200, changed.text
    config, _ = await _node_config(api)
    assert config["outbound"]["default_caller_id"] == "+74950000002"
    assert (config["outbound"]["premium"], config["outbound"]["max_concurrent"]) == (True, 4)
    policy = await api.client.get("/v1/outbound-policy", headers=admin)
    assert policy.status_code == 200
    assert policy.json() == config["outbound"]

    ivan = await api.add_user("acme", extension="101")
    response = await api.client.patch(
        f"/v1/users/{ivan.id}", json={"settings": {"caller_id": "+74950000001"}}, headers=admin
    )
    assert response.status_code == 200, response.text
    [user] = [u for u in (await _node_config(api))[0]["users"] if u["extension"] == "101"]
    assert user["settings"]["caller_id"] == "+74950000001"

    # A number released since: the nodes never show it (region, then the default instead).
    await api.context.numbers.delete_number("acme-74950000001")
    await api.context.numbers.delete_number("acme-74950000002")
    await api.context.publisher.changed("acme")
    config, _ = await _node_config(api)
    [user] = [u for u in config["users"] if u["extension"] == "101"]
    assert user["settings"]["caller_id"] is None
    assert config["outbound"]["default_caller_id"] is None


# --- where the tenant's carriers call from (the edge routing table) -----------------------------


async def test_the_edge_learns_where_the_tenants_trunks_call_from_with_every_change(
    api: ApiHarness,
) -> None:
    """The edge takes calls to the tenant's numbers from its trunks' networks: written with
    each trunk change (allowed_addresses, else the host's address), dropped with the
    last trunk, and with the tenant."""
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    assert api.context.redis is not None
    table = RoutingTable(api.context.redis)

    beeline = await _trunk(api, admin, BEELINE)
    assert await table.tenant_carriers("acme") == ["192.0.2.0/24", "198.51.100.7/32"]
    ip_trunk = await _trunk(api, admin, IP_TRUNK)  # no allowed_addresses: its host's address
    assert await table.tenant_carriers("acme") == [
        "127.0.0.1/32",
        "192.0.2.0/24",
        "198.51.100.7/32",
    ]
    assert await table.tenant_carriers("globex") == []

    changed = await api.client.patch(
        f"/v1/trunks/{beeline['id']}",
        json={"allowed_addresses": ["203.0.113.0/28"]},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert await table.tenant_carriers("acme") == ["127.0.0.1/32", "203.0.113.0/28"]

    for trunk in (beeline, ip_trunk):
        current = await api.client.get(f"/v1/trunks/{trunk['id']}", headers=admin)
        deleted = await api.client.delete(
            f"/v1/trunks/{trunk['id']}", headers={**admin, "If-Match": current.headers["ETag"]}
        )
        assert deleted.status_code == 204, deleted.text
    assert await api.context.redis.exists(table.tenant_carriers_key("acme")) == 0

    # A tenant gone (deleted behind the API's back here): the periodic pass drops its entry,
    # and writes the others again (a Redis that lost them).
    await _trunk(api, admin, IP_TRUNK)
    await api.context.redis.set(table.tenant_carriers_key("initech"), b'["192.0.2.1/32"]')
    await api.context.redis.delete(table.tenant_carriers_key("acme"))
    assert api.context.carriers is not None
    assert await api.context.carriers.rewrite_all() == 2
    assert await table.tenant_carriers("acme") == ["127.0.0.1/32"]
    assert await api.context.redis.exists(table.tenant_carriers_key("initech")) == 0


# --- where platform trunks come from -----------------------------------------------------------


def test_platform_trunks_come_from_the_seed_file_in_local_mode_or_their_own_file(
    tmp_path: Path,
) -> None:
    seed = tmp_path / "demo.yaml"
    own = tmp_path / "trunks.yaml"
    local = ControlSettings(mode="local", seed_file=seed)
    assert local.platform_trunks_path == seed
    assert (
        ControlSettings(mode="local", seed_file=seed, platform_trunks_file=own).platform_trunks_path
        == own
    )
    assert ControlSettings(mode="cluster", seed_file=seed).platform_trunks_path is None
    assert ControlSettings(mode="cluster", platform_trunks_file=own).platform_trunks_path == own
    assert PlatformTrunks(None).current() == []

    demo = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
    seed.write_text(demo.read_text() + "\n---\n" + PLATFORM_TRUNKS)
    assert [t.name for t in PlatformTrunks(seed).current()] == [
        "local-carrier",  # the demo's own: where its callers send from
        "backup-carrier",
        "main-carrier",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PLATFORM_TRUNKS + "---\n" + PLATFORM_TRUNKS.split("---\n")[0], "defined twice"),
        (PLATFORM_TRUNKS.replace("uri: sip:backup.carrier.example", "uri: http://x"), "spec.uri"),
        (
            PLATFORM_TRUNKS.replace("password: operator-carrier-password", ""),
            "username and password",
        ),
    ],
    ids=["twice", "bad-uri", "no-password"],
)
def test_a_broken_platform_trunks_file_stops_the_start(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "trunks.yaml"
    path.write_text(text)
    with pytest.raises(PlatformTrunksError, match=message):
        PlatformTrunks(path)
    with pytest.raises(PlatformTrunksError, match="cannot read"):
        PlatformTrunks(tmp_path / "missing.yaml")


# --- migration 0012 -------------------------------------------------------------------------------


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
    """From 0011 with a tenant in it, up to 0012 and back, twice; nothing else is lost."""
    await upgrade(url, "0011")
    assert "trunks" not in await _tables(url)
    await _execute(
        url,
        "INSERT INTO tenants (id, display_name, sip_domain, cities, seats, numbers,"
        " concurrent_calls, suspended, revision) VALUES ('acme', 'Acme', 'acme.test',"
        " '[\"msk\"]', 0, 0, 0, false, 1)",
    )
    await upgrade(url)
    assert "trunks" in await _tables(url)
    # The existing tenant reads the Tenant resource's defaults.
    assert await _execute(
        url,
        "SELECT outbound_country, outbound_international, outbound_premium,"
        " outbound_max_concurrent, outbound_max_minutes_per_day, outbound_default_caller_id"
        " FROM tenants",
    ) == [("RU", False, False, 0, 0, None)]
    await _execute(
        url,
        "INSERT INTO trunks (id, tenant_id, name, uri, registers, allowed_addresses, priority,"
        " passes_caller_id, revision) VALUES (:id, 'acme', 'beeline', 'sip:x:5060;transport=udp',"
        " false, '[]', 1, false, 1)",
        id="00000000-0000-0000-0000-000000000001",
    )
    duplicate = sa.exc.IntegrityError
    with pytest.raises(duplicate):
        await _execute(
            url,
            "INSERT INTO trunks (id, tenant_id, name, uri, registers, allowed_addresses,"
            " priority, passes_caller_id, revision) VALUES (:id, 'acme', 'beeline', 'sip:y',"
            " false, '[]', 1, false, 1)",
            id="00000000-0000-0000-0000-000000000002",
        )

    await downgrade(url, "0011")
    assert "trunks" not in await _tables(url)
    assert await _execute(url, "SELECT id FROM tenants") == [("acme",)]
    await upgrade(url)  # and up again: the table comes back, empty
    assert await _execute(url, "SELECT name FROM trunks") == []

    # A deleted tenant takes its trunks along.
    await _execute(
        url,
        "INSERT INTO trunks (id, tenant_id, name, uri, registers, allowed_addresses, priority,"
        " passes_caller_id, revision) VALUES (:id, 'acme', 'beeline', 'sip:x', false, '[]', 1,"
        " false, 1)",
        id="00000000-0000-0000-0000-000000000003",
    )
    await _execute(url, "DELETE FROM tenants WHERE id = 'acme'")
    assert await _execute(url, "SELECT name FROM trunks") == []


async def test_migration_0012_up_and_down_on_sqlite(tmp_path: Path) -> None:
    await _up_and_down(f"sqlite+aiosqlite:///{tmp_path / 'control.db'}")


async def test_migration_0012_up_and_down_on_postgresql(postgres_url: str) -> None:
    await downgrade(postgres_url, "0011")  # the test database comes migrated to the head
    await _up_and_down(postgres_url)


def test_the_trunk_row_never_shows_its_password() -> None:
    row = TrunkRow(name="beeline", uri="sip:x", password=PASSWORD, tenant_id="acme")
    assert PASSWORD not in repr(row)


async def test_registrations_are_exported_as_a_gauge_per_tenant_trunk_and_city(
    api: ApiHarness,
) -> None:
    assert api.context.redis is not None
    store = TrunkStatusStore(api.context.redis)
    now = int(time.time() * 1000)
    held = TrunkRegistrationStatus(
        state=RegistrationState.REGISTERED,
        expires_at_ms=now + 300_000,
        updated_at_ms=now,
        name="beeline",
    )
    refused = TrunkRegistrationStatus(
        state=RegistrationState.FAILED, reason="403 Forbidden", updated_at_ms=now, name="mts"
    )
    lapsed = TrunkRegistrationStatus(
        state=RegistrationState.REGISTERED,
        expires_at_ms=now - 1000,
        updated_at_ms=now - 400_000,
        name="beeline",
    )
    off = TrunkRegistrationStatus(state=RegistrationState.NOT_REGISTERING, name="ip-only")
    await store.put("acme", "t-1", "msk", held)
    await store.put("acme", "t-1", "ekb", lapsed)
    await store.put("acme", "t-2", "msk", refused)
    await store.put("globex", "t-9", "msk", off)

    page = (await api.client.get("/metrics")).text

    def gauge(tenant: str, trunk: str, name: str, city: str) -> str:
        labels = f'city="{city}",tenant="{tenant}",trunk="{trunk}",trunk_name="{name}"'
        return f"vpbx_trunk_registered{{{labels}}}"

    assert f"{gauge('acme', 't-1', 'beeline', 'msk')} 1.0" in page
    assert f"{gauge('acme', 't-1', 'beeline', 'ekb')} 0.0" in page  # its node stopped
    assert f"{gauge('acme', 't-2', 'mts', 'msk')} 0.0" in page
    assert 'tenant="globex"' not in page  # a trunk that does not register is no alarm

    await store.forget("acme", "t-2")
    assert 'trunk="t-2"' not in (await api.client.get("/metrics")).text

"""Live config: a change made through the control API reaches the running media nodes.

`vpbx up` in a subprocess (control API seeded from examples/demo.yaml, media
nodes fetching their config from it), real Redis for the invalidations, sipp
as the carrier and baresip as the phones, all on loopback.

One `vpbx up` serves the module's tests (each starts from the demo's routing: the
``platform`` fixture puts it back) but the last, which needs room for more nodes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.services.baresip import Baresip, BaresipFactory
from tests.services.platform import RunningPlatform, sip_options
from tests.services.sipp import SippFactory
from tests.test_call_routing import route_as_in_the_demo, wait_for_reload

pytestmark = pytest.mark.integration

ACME = "acme.vpbx.local"
ACME_MAIN = "+74950000001"  # entry: the sales group (101, 102, 201), ring-all
CALLER = "+79130000001"
ACME_ADMIN = ("admin@acme.vpbx.local", "acme-admin-secret")


def phone(
    factory: BaresipFactory,
    platform: RunningPlatform,
    user: str,
    password: str,
    *,
    auto_answer: bool = True,
    timeout: float = 15,
) -> Baresip:
    agent = factory(
        user, password, ACME, proxy=(platform.host, platform.sip_port), auto_answer=auto_answer
    )
    agent.start()
    agent.wait_registered(timeout=timeout)
    return agent


def node_etag(
    platform: RunningPlatform, if_none_match: str | None = None, city: str = "msk"
) -> tuple[int, str]:
    """(status, ETag) of an acme node's config, as the node itself asks for it."""
    headers = {"Authorization": f"Bearer {platform.service_token}"}
    if if_none_match:
        headers["If-None-Match"] = if_none_match
    with platform.api(headers) as client:
        response = client.get(f"/internal/v1/node-config/acme/{city}")
    assert response.status_code in (200, 304), response.text
    return response.status_code, response.headers["ETag"]


def unquote(etag: str) -> str:
    return etag.strip('"')


def wait_for_node_log(
    platform: RunningPlatform, fragment: str, timeout: float, *, since: int = 0
) -> float:
    """Seconds until ``fragment`` appears in the platform log after character ``since``."""
    started = time.monotonic()
    while fragment not in platform.log()[since:]:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not in the log after {timeout}s: {fragment!r}")
        time.sleep(0.05)
    return time.monotonic() - started


def wait_for_node_version(
    platform: RunningPlatform, old: str, new: str, timeout: float, *, since: int = 0
) -> float:
    """Seconds until the acme/msk node logs that it switched from ``old`` to ``new``."""
    line = f"tenant=acme city=msk config version {unquote(old)} -> {unquote(new)}"
    return wait_for_node_log(platform, line, timeout, since=since)


@pytest.fixture
def platform(shared_platform: RunningPlatform) -> RunningPlatform:
    """The module's platform routed as in the demo, its calls() those of this test."""
    route_as_in_the_demo(shared_platform)
    return shared_platform.for_one_test()


def user_id(client: Any, extension: str) -> str:
    users = client.get("/v1/users", params={"limit": 200}).json()["items"]
    [found] = [user["id"] for user in users if user["extension"] == extension]
    return str(found)


def test_a_change_takes_effect_on_the_next_call_and_the_call_in_progress_continues(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    admin = platform.login(*ACME_ADMIN)
    ivan = phone(baresip_factory, platform, "101", "acme-101-secret")
    status, before = node_etag(platform)
    assert status == 200
    assert node_etag(platform, before) == (304, before)  # nothing changed: nothing to fetch
    node_pid = platform.pid_of("vpbx-node-acme-msk")

    in_progress = sipp_factory(
        "uac_call.xml",
        remote=(platform.host, platform.sip_port),
        service=ACME_MAIN,
        keys={"domain": platform.host, "caller": CALLER},
        pause_ms=8000,
        timeout=40,
    )
    in_progress.start()
    ivan.wait_call_state("ESTABLISHED", timeout=15)

    # While Ivan talks, the admin leaves only Maria (102) in the sales group.
    log_before_change = len(platform.log())
    with platform.api(admin) as api:
        [sales] = api.get("/v1/groups", params={"limit": 200}).json()["items"]
        assert sales["name"] == "sales"
        changed = api.patch(
            f"/v1/groups/{sales['id']}", json={"members": [{"user_id": user_id(api, "102")}]}
        )
        assert changed.status_code == 200, changed.text
    status, after = node_etag(platform, before)
    assert (status, after != before) == (200, True)
    assert node_etag(platform, after) == (304, after)
    wait_for_node_version(platform, before, after, timeout=5, since=log_before_change)
    maria = phone(baresip_factory, platform, "102", "acme-102-secret")

    finished = in_progress.wait()
    assert finished.all_succeeded, finished.describe() + platform.log()[-3000:]
    ivan.wait_no_calls(timeout=10)
    [first] = platform.calls(1, wait_for=1)
    assert first["answered_by"] == "101"
    assert first["end_reason"] == "completed"
    assert first["hangup_by"] == "caller"
    assert first["talk_ms"] >= 7500, "the call in progress was cut short"

    # The next call follows the new config: Ivan, still registered, no longer rings.
    next_call = sipp_factory(
        "uac_call.xml",
        remote=(platform.host, platform.sip_port),
        service=ACME_MAIN,
        keys={"domain": platform.host, "caller": CALLER},
        pause_ms=500,
        timeout=30,
    ).run()
    assert next_call.all_succeeded, next_call.describe() + platform.log()[-3000:]
    maria.wait_no_calls(timeout=10)
    records = platform.calls(2, wait_for=2)
    assert [r["answered_by"] for r in records] == ["102", "101"], records
    assert [r["end_reason"] for r in records] == ["completed", "completed"]
    assert not [e for e in ivan.events if e.get("type") == "CALL_INCOMING"][1:], ivan.events
    assert platform.pid_of("vpbx-node-acme-msk") == node_pid  # reloaded, not restarted


def test_a_device_created_through_the_api_registers_without_a_node_restart(
    platform: RunningPlatform, baresip_factory: BaresipFactory
) -> None:
    node_pid = platform.pid_of("vpbx-node-acme-msk")
    _, before = node_etag(platform)
    log_before = len(platform.log())
    with platform.api(platform.login(*ACME_ADMIN)) as api:
        created = api.post(
            "/v1/users",
            json={"email": "olga@acme.example", "name": "Olga", "extension": "103", "city": "msk"},
        )
        assert created.status_code == 201, created.text
        olga = created.json()["id"]
        devices = [
            api.post(f"/v1/users/{olga}/devices", json={"name": name, "username": username})
            for name, username in (("desk", "olga-desk"), ("mobile", "olga-mobile"))
        ]
    assert [d.status_code for d in devices] == [201, 201], devices[-1].text
    desk_password, mobile_password = (d.json()["password"] for d in devices)

    # The node picks the devices up by itself within seconds (the Redis invalidation)...
    _, after = node_etag(platform)
    assert after != before
    wait_for_node_log(platform, f" -> {unquote(after)} ", timeout=10, since=log_before)
    # ... and each device registers with its own credentials.
    desk = phone(
        baresip_factory, platform, "olga-desk", desk_password, auto_answer=False, timeout=5
    )
    mobile = phone(
        baresip_factory, platform, "olga-mobile", mobile_password, auto_answer=False, timeout=5
    )
    # The node went through the versions of the user and the devices without a restart.
    log = platform.log()[log_before:]
    assert f"tenant=acme city=msk config version {unquote(before)} -> " in log
    assert f" -> {unquote(after)} " in log
    assert platform.pid_of("vpbx-node-acme-msk") == node_pid

    # Both devices ring extension 103; the one that answers gets the call.
    ivan = phone(baresip_factory, platform, "101", "acme-101-secret")
    ivan.dial(f"sip:103@{ACME}")
    desk.wait_call_state("INCOMING", timeout=15)
    mobile.wait_call_state("INCOMING", timeout=5)
    mobile.command("accept")
    ivan.wait_call_state("ESTABLISHED", timeout=15)
    ivan.hangup()
    mobile.wait_no_calls(timeout=10)
    desk.wait_no_calls(timeout=10)
    assert "CALL_ESTABLISHED" not in [event.get("type") for event in desk.events]
    [record] = platform.calls(1, wait_for=1)
    assert record["direction"] == "internal"
    assert (record["caller"], record["dialled"], record["answered_by"]) == ("101", "103", "103")
    assert record["end_reason"] == "completed"


@pytest.fixture
def globex_plan_kept(platform: RunningPlatform) -> Iterator[None]:
    """Globex's plan limit on calls at once as it was before the test, after it: the tests
    after this one share the platform."""
    token = platform.env.get("VPBX_PLATFORM_ADMIN_TOKEN", "local-dev-secret")
    with platform.api({"Authorization": f"Bearer {token}"}) as client:
        plan = client.get("/v1/platform/tenants/globex").json()["plan"]
    yield
    with platform.api({"Authorization": f"Bearer {token}"}) as client:
        restored = client.patch(
            "/v1/platform/tenants/globex",
            json={"plan": {"concurrent_calls": plan["concurrent_calls"]}},
        )
    assert restored.status_code == 200, restored.text
    wait_for_reload(platform, tenant="globex")


@pytest.mark.usefixtures("globex_plan_kept")
def test_the_plans_concurrent_call_limit_busies_the_extra_call_until_a_line_frees(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    agent = baresip_factory(
        "101", "globex-101-secret", "globex.vpbx.local", proxy=(platform.host, platform.sip_port)
    )
    agent.start()
    agent.wait_registered(timeout=15)
    token = platform.env.get("VPBX_PLATFORM_ADMIN_TOKEN", "local-dev-secret")
    log_before_change = len(platform.log())
    with platform.api({"Authorization": f"Bearer {token}"}) as client:
        changed = client.patch(
            "/v1/platform/tenants/globex", json={"plan": {"concurrent_calls": 2}}
        )
    assert changed.status_code == 200, changed.text
    wait_for_node_log(
        platform, "tenant=globex city=msk config version ", timeout=10, since=log_before_change
    )

    def calls(count: int) -> Any:
        return sipp_factory(
            "uac_call.xml",
            remote=(platform.host, platform.sip_port),
            service="+74950000009",
            keys={"domain": platform.host, "caller": "+79130000002"},
            timeout=40,
            pause_ms=4000,
            calls=count,
            call_rate=count,
            concurrent_limit=count,
        ).run()

    three_at_once = calls(3)
    assert three_at_once.successful_calls == 2, three_at_once.describe()
    assert three_at_once.failed_calls == 1, three_at_once.describe()
    refusal = "tenant=globex refused: all 2 lines of the plan in use"
    assert refusal in platform.log()[log_before_change:]
    agent.wait_no_calls(timeout=10)
    # The busied customer still shows in the tenant's call history as a missed call.
    records = platform.calls(3, wait_for=3)
    [refused] = [record for record in records if record["end_reason"] == "busy"]
    assert (refused["direction"], refused["caller"], refused["dialled"]) == (
        "inbound",
        "+79130000002",
        "+74950000009",
    )
    assert (refused["sip_status"], refused["answered_by"], refused["hangup_by"]) == (
        486,
        "",
        "system",
    )
    assert sorted(record["end_reason"] for record in records) == ["busy", "completed", "completed"]
    # The lines came back when those calls ended.
    two_more = calls(2)
    assert two_more.all_succeeded, two_more.describe()


def test_a_user_created_through_the_api_registers_with_their_citys_node(
    platform: RunningPlatform, baresip_factory: BaresipFactory
) -> None:
    """Acme works in Moscow and Ekaterinburg; Pavel, added in Ekaterinburg, lands on ekb."""
    before = len(platform.log())
    with platform.api(platform.login(*ACME_ADMIN)) as api:
        created = api.post(
            "/v1/users",
            json={
                "email": "pavel@acme.example",
                "name": "Pavel",
                "extension": "204",
                "city": "ekb",
            },
        )
        assert created.status_code == 201, created.text
        device = api.post(
            f"/v1/users/{created.json()['id']}/devices",
            json={"name": "desk", "username": "pavel-desk"},
        )
        assert device.status_code == 201, device.text
    _, with_device = node_etag(platform, city="ekb")
    wait_for_node_log(platform, f" -> {unquote(with_device)} ", timeout=10, since=before)

    pavel = phone(
        baresip_factory, platform, "pavel-desk", device.json()["password"], auto_answer=False
    )
    log = platform.log()
    assert "tenant=acme city=ekb ext=204 registered 1 binding(s) (device pavel-desk)" in log
    assert "city=msk ext=204 registered" not in log

    # A Moscow colleague reaches him across cities.
    ivan = phone(baresip_factory, platform, "101", "acme-101-secret")
    ivan.dial(f"sip:204@{ACME}")
    pavel.wait_call_state("INCOMING", timeout=15)
    pavel.command("accept")
    ivan.wait_call_state("ESTABLISHED", timeout=15)
    ivan.hangup()
    pavel.wait_no_calls(timeout=10)


def test_a_numbers_channel_limit_set_through_the_api_busies_the_extra_caller(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    """The admin lets the main number carry one call at a time; the second caller is busied."""
    phone(baresip_factory, platform, "101", "acme-101-secret")
    log_before_change = len(platform.log())
    with platform.api(platform.login(*ACME_ADMIN)) as api:
        numbers = api.get("/v1/numbers", params={"limit": 200}).json()["items"]
        [main] = [n["id"] for n in numbers if n["number"] == ACME_MAIN]
        changed = api.patch(f"/v1/numbers/{main}", json={"channels": 1})
    assert changed.status_code == 200, changed.text
    assert changed.json()["channels"] == 1
    wait_for_node_log(
        platform, "tenant=acme city=msk config version ", timeout=10, since=log_before_change
    )

    two_at_once = sipp_factory(
        "uac_call.xml",
        remote=(platform.host, platform.sip_port),
        service=ACME_MAIN,
        keys={"domain": platform.host, "caller": CALLER},
        timeout=40,
        pause_ms=3000,
        calls=2,
        call_rate=2,
        concurrent_limit=2,
    ).run()
    assert (two_at_once.successful_calls, two_at_once.failed_calls) == (1, 1), (
        two_at_once.describe()
    )
    records = platform.calls(2, wait_for=2)
    assert sorted((r["end_reason"], r["sip_status"]) for r in records) == [
        ("busy", 486),
        ("completed", 200),
    ]
    [busied] = [r for r in records if r["end_reason"] == "busy"]
    assert (busied["caller"], busied["dialled"], busied["answered_by"]) == (CALLER, ACME_MAIN, "")


# --- tenants managed through the platform API ------------------------------------------

PLATFORM_TOKEN = "test-platform-admin-a1b2c3d4e5f6a7b8"
INITECH = "initech.vpbx.local"
INITECH_NUMBER = "+78120000001"
INITECH_ADMIN = ("boss@initech.example", "initech-admin-secret")


def wait_for_answer(platform: RunningPlatform, uri: str, status: int, timeout: float) -> None:
    """Until the edge answers ``status`` to an OPTIONS for ``uri`` (routed as a call is)."""
    deadline = time.monotonic() + timeout
    answer = sip_options(platform.host, platform.sip_port, uri=uri)
    while answer != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"OPTIONS {uri}: {answer}, not {status} after {timeout}s")
        time.sleep(0.1)
        answer = sip_options(platform.host, platform.sip_port, uri=uri)


def node_address(platform: RunningPlatform, node: str, *, since: int = 0) -> str:
    """host:port the launcher gave a node started while it ran (from its log)."""
    wait_for_node_log(platform, f"  node {node}: ", timeout=20, since=since)
    [line] = [x for x in platform.log()[since:].splitlines() if x.startswith(f"  node {node}: ")]
    return line.rsplit(" ", 1)[1]


def route(platform: RunningPlatform, key: str) -> dict[str, Any] | None:
    """An entry of the edge routing table: ``number:<e164>`` or ``domain:<domain>``."""
    client = redis.Redis.from_url(platform.env["VPBX_REDIS_URL"])
    try:
        raw = client.get(f"vpbx:route:{key}")
    finally:
        client.close()
    return None if raw is None else dict(json.loads(raw))


def test_a_tenant_created_through_the_platform_api_gets_its_nodes_and_routes(
    platform_factory: Any,
) -> None:
    """Initech is created, given a number, suspended, given a city and deleted, all
    through the API while `vpbx up` runs: its node processes and edge routes follow."""
    platform: RunningPlatform = platform_factory(
        # Room in the test's port blocks for the two nodes added here.
        rtp_ports_per_node=100,
        extra_env={"VPBX_PLATFORM_ADMIN_TOKEN": PLATFORM_TOKEN},
    )
    number_uri = f"sip:{INITECH_NUMBER}@{platform.host}"
    domain_uri = f"sip:{INITECH}"
    wait_for_answer(platform, number_uri, 404, timeout=5)
    wait_for_answer(platform, domain_uri, 404, timeout=5)
    platform_admin = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}
    before = len(platform.log())
    with platform.api(platform_admin) as api:
        created = api.post(
            "/v1/platform/tenants",
            json={
                "id": "initech",
                "display_name": "Initech",
                "sip_domain": INITECH,
                "cities": ["spb"],
                "admin": {"email": INITECH_ADMIN[0], "password": INITECH_ADMIN[1]},
            },
        )
        assert created.status_code == 201, created.text
        pooled = api.post("/v1/platform/pool", json={"numbers": [INITECH_NUMBER], "city": "spb"})
        assert pooled.status_code == 201, pooled.text
    with platform.api(platform.login(*INITECH_ADMIN)) as admin:
        provisioned = admin.post("/v1/numbers", json={"number": INITECH_NUMBER})
        assert provisioned.status_code == 201, provisioned.text
    number_id = provisioned.json()["id"]

    # Its own node: the edge routes the number and the domain to it.
    spb = node_address(platform, "vpbx-node-initech-spb", since=before)
    assert spb not in [f"{platform.host}:{port}" for port in platform.node_ports]
    wait_for_answer(platform, number_uri, 200, timeout=20)
    wait_for_answer(platform, domain_uri, 200, timeout=5)
    routed = route(platform, f"number:{INITECH_NUMBER}")
    assert routed is not None
    assert (routed["tenant"], routed["city"], routed["address"]) == ("initech", "spb", spb)
    node_pid = platform.pid_of("vpbx-node-initech-spb")

    # Suspended: refused at the edge; the node, its settings and number stay.
    with platform.api(platform_admin) as api:
        patched = api.patch("/v1/platform/tenants/initech", json={"suspended": True})
        assert patched.status_code == 200, patched.text
    wait_for_answer(platform, number_uri, 403, timeout=10)
    wait_for_answer(platform, domain_uri, 403, timeout=5)
    with platform.api(platform_admin) as api:
        patched = api.patch("/v1/platform/tenants/initech", json={"suspended": False})
        assert patched.status_code == 200, patched.text
    wait_for_answer(platform, number_uri, 200, timeout=10)
    assert platform.pid_of("vpbx-node-initech-spb") == node_pid
    with platform.api(platform.login(*INITECH_ADMIN)) as admin:
        assert admin.get(f"/v1/numbers/{number_id}").status_code == 200

    # A second city gets a second node (on ports of its own, the first one kept) and
    # the domain route names it; given up again, the node is stopped.
    since = len(platform.log())
    with platform.api(platform_admin) as api:
        patched = api.patch("/v1/platform/tenants/initech", json={"cities": ["spb", "kzn"]})
        assert patched.status_code == 200, patched.text
    kzn = node_address(platform, "vpbx-node-initech-kzn", since=since)
    assert kzn not in (spb, *[f"{platform.host}:{port}" for port in platform.node_ports])
    deadline = time.monotonic() + 10  # the routes are written just after the node starts
    while (route(platform, f"domain:{INITECH}") or {}).get("nodes") != {"spb": spb, "kzn": kzn}:
        assert time.monotonic() < deadline, route(platform, f"domain:{INITECH}")
        time.sleep(0.05)
    with platform.api(platform_admin) as api:
        patched = api.patch("/v1/platform/tenants/initech", json={"cities": ["spb"]})
        assert patched.status_code == 200, patched.text
    wait_for_node_log(platform, "  stopped vpbx-node-initech-kzn", timeout=20, since=since)
    wait_for_answer(platform, domain_uri, 200, timeout=5)

    # Deleted (its number released first): no node, and the edge knows it no more.
    with platform.api(platform.login(*INITECH_ADMIN)) as admin:
        assert admin.delete(f"/v1/numbers/{number_id}").status_code == 204
    with platform.api(platform_admin) as api:
        deleted = api.delete("/v1/platform/tenants/initech")
        assert deleted.status_code == 204, deleted.text
    wait_for_answer(platform, domain_uri, 404, timeout=10)
    wait_for_answer(platform, number_uri, 404, timeout=5)
    wait_for_node_log(platform, "  stopped vpbx-node-initech-spb", timeout=20, since=since)
    # The demo's tenants were never touched.
    wait_for_answer(platform, f"sip:{ACME_MAIN}@{platform.host}", 200, timeout=5)

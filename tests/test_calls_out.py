"""Calling out through a carrier, end to end with real peers.

`vpbx up` in a subprocess; sipp plays the carrier (loadtest/scenarios/uas_carrier.xml):
it challenges the tenant trunk's REGISTER and checks the digest itself, then takes
the calls and logs the number each one shows (From and P-Asserted-Identity). sipp
also plays the tenant's phone (extension 101 of the demo tenant acme) dialling
numbers in the forms people type. The control API adds two numbers (Novosibirsk and
St Petersburg, the tenant's default caller ID) to acme's Moscow and Yekaterinburg
ones, and the trunk through ``POST /v1/trunks``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.platform import RunningPlatform
from tests.services.sipp import Sipp, SippFactory, SippResult, uas_reject_scenario

pytestmark = pytest.mark.integration

ACME = "acme.vpbx.local"
ACME_ADMIN = ("admin@acme.vpbx.local", "acme-admin-secret")
PHONE = ("101", "acme-101-secret")
PLATFORM_TOKEN = "platform-admin-token-for-calls-out-0123456789"
MOSCOW, YEKATERINBURG = "+74950000001", "+73430000001"
NOVOSIBIRSK, PETERSBURG = "+73832000001", "+78120000001"
REALM, TRUNK_USER, TRUNK_PASSWORD = "carrier.test", "acme-trunk", "carrier-secret-42"
CARRIER_LINE = re.compile(r"call to (\S+) from (\S+) pai (\S*) privacy (\S*)")


def platform_admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {PLATFORM_TOKEN}"}


def add_numbers(platform: RunningPlatform) -> None:
    with platform.api(platform_admin()) as api:
        pooled = api.post(
            "/v1/platform/pool", json={"numbers": [NOVOSIBIRSK, PETERSBURG], "city": "msk"}
        )
        assert pooled.status_code == 201, pooled.text
        patched = api.patch(
            "/v1/platform/tenants/acme", json={"outbound": {"default_caller_id": PETERSBURG}}
        )
        assert patched.status_code in (200, 422), patched.text
    with platform.api(platform.login(*ACME_ADMIN)) as admin:
        for number in (NOVOSIBIRSK, PETERSBURG):
            created = admin.post("/v1/numbers", json={"number": number})
            assert created.status_code == 201, created.text
    if patched.status_code == 422:  # the default must be one of the tenant's numbers first
        with platform.api(platform_admin()) as api:
            patched = api.patch(
                "/v1/platform/tenants/acme", json={"outbound": {"default_caller_id": PETERSBURG}}
            )
            assert patched.status_code == 200, patched.text


def add_trunk(admin: httpx.Client, name: str, port: int, priority: int, **fields: Any) -> str:
    body = {
        "name": name,
        "uri": f"sip:127.0.0.1:{port};transport=udp",
        "register": False,
        "allowed_addresses": ["127.0.0.1/32"],
        "priority": priority,
        **fields,
    }
    created = admin.post("/v1/trunks", json=body)
    assert created.status_code == 201, created.text
    assert "password" not in created.json()
    return str(created.json()["id"])


def wait_registered(admin: httpx.Client, trunk_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        trunk = admin.get(f"/v1/trunks/{trunk_id}").json()
        if trunk["registration"]["state"] == "registered":
            return dict(trunk)
        if time.monotonic() > deadline:
            raise AssertionError(f"the trunk never registered: {trunk}")
        time.sleep(0.2)


def dial(
    sipp: SippFactory, platform: RunningPlatform, number: str, scenario: str = "uac_call.xml"
) -> SippResult:
    call = sipp(
        scenario,
        remote=(platform.host, platform.sip_port),
        service=number,
        keys={"domain": ACME, "caller": PHONE[0]},
        credentials=PHONE,
        pause_ms=300,
        timeout=30,
    )
    result = call.run()
    assert result.all_succeeded, result.describe()
    return result


def carrier_calls(carrier: Sipp) -> list[tuple[str, ...]]:
    result = carrier.wait(timeout=30)
    return [match.groups() for match in CARRIER_LINE.finditer(result.logs)]


def test_calls_out_show_the_callees_region_number_and_go_to_the_next_trunk_on_failure(
    platform_factory: Any, sipp_factory: SippFactory, tmp_path: Path
) -> None:
    platform = platform_factory(extra_env={"VPBX_PLATFORM_ADMIN_TOKEN": PLATFORM_TOKEN})
    # Two registrations (acme's nodes in msk and ekb each register) and five calls, the
    # last one after the flaky trunk's 503.
    carrier = sipp_factory(
        "uas_carrier.xml",
        keys={"realm": REALM, "user": TRUNK_USER, "password": TRUNK_PASSWORD, "expires": "3600"},
        calls=7,
        timeout=150,
    )
    carrier.start()
    add_numbers(platform)
    with platform.api(platform.login(*ACME_ADMIN)) as admin:
        trunk_id = add_trunk(
            admin,
            "carrier",
            carrier.local_port,
            10,
            register=True,
            username=TRUNK_USER,
            password=TRUNK_PASSWORD,
        )
        trunk = wait_registered(admin, trunk_id)
        assert "password" not in trunk

    # The forms people dial, each shown the tenant's number nearest to the callee.
    for dialled in ("8 (495) 123-45-67", "83432123456", "+79130001234", "88001234567"):
        dial(sipp_factory, platform, dialled.replace(" ", "").replace("(", "").replace(")", ""))

    # Abroad: refused before any carrier sees it.
    refused = dial(sipp_factory, platform, "+493012345678", "uac_auth_refused.xml")
    assert "refused: International Calls Not Allowed" in refused.logs

    # A trunk tried first that fails: the call goes on through the next one.
    flaky = sipp_factory(uas_reject_scenario(tmp_path, 503, "Service Unavailable"), calls=1)
    flaky.start()
    with platform.api(platform.login(*ACME_ADMIN)) as admin:
        add_trunk(admin, "flaky", flaky.local_port, 1)
    time.sleep(1.0)  # the node reloads its config (announced over Redis)
    dial(sipp_factory, platform, "84957654321")
    assert flaky.wait(timeout=20).successful_calls == 1

    calls = carrier_calls(carrier)
    shown = [(callee, sender) for callee, sender, asserted, _ in calls if sender == asserted]
    assert shown == [
        ("+74951234567", MOSCOW),
        ("+73432123456", YEKATERINBURG),
        ("+79130001234", NOVOSIBIRSK),
        ("+78001234567", PETERSBURG),
        ("+74957654321", MOSCOW),
    ], calls
    records = platform.calls(last=10, wait_for=6)
    outbound = [r for r in records if r["direction"] == "outbound"]
    assert {r["dialled"] for r in outbound} >= {"+74951234567", "+493012345678"}
    assert any(r["end_reason"] == "rejected" for r in outbound)

"""Every call lands in the CRM, end to end: `vpbx up` with its CRM, a real caller (sipp)
and real phones (baresip). An unknown caller becomes a contact with the ad channel of the
number they dialled; a missed call becomes a task for the person it rang, or for the
client's responsible manager.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.services.baresip import BaresipFactory
from tests.services.platform import RunningPlatform
from tests.services.sipp import SippFactory
from tests.test_call_routing import ACME_ADMIN, agent, wait_for_reload

pytestmark = pytest.mark.integration

TRACKED_NUMBER = "+74950000002"  # the demo's yandex-direct number, to the sales group


@pytest.fixture(scope="module")
def pbx(crm_platform: RunningPlatform) -> RunningPlatform:
    """The CRM modules' shared platform (tests/services/platform.py)."""
    return crm_platform


def missed_call_from(sipp: SippFactory, platform: RunningPlatform, caller: str) -> None:
    """``caller`` calls the tracked number and hangs up while it rings."""
    result = sipp(
        "uac_cancel.xml",
        remote=(platform.host, platform.sip_port),
        service=TRACKED_NUMBER,
        keys={"domain": platform.host, "caller": caller},
        timeout=30,
    ).run()
    assert result.all_succeeded, result.describe()


def eventually(read: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("the CRM never showed it")
        time.sleep(0.2)


def users_by_extension(platform: RunningPlatform, headers: dict[str, str]) -> dict[str, str]:
    with platform.api(headers) as api:
        users = api.get("/v1/users", params={"limit": 200}).json()["items"]
    return {user["extension"]: user["id"] for user in users if user["extension"]}


def missed_tasks(crm: httpx.Client, phone: str) -> list[dict[str, Any]]:
    contacts = crm.get("/v1/contacts", params={"phone": phone}).json()["items"]
    if not contacts:
        return []
    listed = crm.get("/v1/tasks", params={"kind": "missed-call", "contact_id": contacts[0]["id"]})
    return list(listed.json()["items"])


def test_an_unknown_callers_missed_call_becomes_a_contact_and_a_task_for_the_rung_agent(
    pbx: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    admin = pbx.login(*ACME_ADMIN)
    users = users_by_extension(pbx, admin)
    phone = agent(baresip_factory, pbx, "101", answers=False)
    missed_call_from(sipp_factory, pbx, "+74957770001")
    phone.stop()

    with pbx.crm(admin) as crm:
        [task] = eventually(lambda: missed_tasks(crm, "+74957770001"))
        [contact] = crm.get("/v1/contacts", params={"phone": "8 495 777-00-01"}).json()["items"]
        calls = crm.get(f"/v1/contacts/{contact['id']}/calls").json()["items"]
    assert contact["source_label"] == "yandex-direct"
    assert (contact["region"], contact["region_name"]) == ("RU-MOW", "Moscow")  # +7 495
    assert task["assignee_user_id"] == users["101"]
    assert task["status"] == "open"
    [call] = calls
    assert call["missed"] is True
    assert call["end_reason"] == "cancelled"
    assert call["number"] == TRACKED_NUMBER
    # The same call id as the CDR's: the card links to the control API's call record.
    # The CDR reaches the store a moment after the event (the node's shipper batches).
    with pbx.api(admin) as api:
        record = eventually(
            lambda: (found := api.get(f"/v1/calls/{call['call_id']}")).status_code == 200 and found
        )
    assert record.json()["call_id"] == call["call_id"]


def test_a_known_clients_missed_call_is_a_task_for_their_manager(
    pbx: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    admin = pbx.login(*ACME_ADMIN)
    # 101 is rung first, but the client is 102's.
    phone = agent(baresip_factory, pbx, "101", answers=False)
    users = users_by_extension(pbx, admin)
    with pbx.crm(admin) as crm:
        created = crm.post(
            "/v1/contacts",
            json={
                "name": "ООО Ромашка",
                "phones": ["+7 913 555-00-02"],
                "owner_user_id": users["102"],
                "vip": True,
            },
        )
        assert created.status_code == 201, created.text
        missed_call_from(sipp_factory, pbx, "+79135550002")
        phone.stop()
        [task] = eventually(lambda: missed_tasks(crm, "+79135550002"))
        contacts = crm.get("/v1/contacts", params={"q": "Ромашка"}).json()
    assert task["assignee_user_id"] == users["102"]
    assert task["contact_id"] == created.json()["id"]
    assert contacts["total"] == 1  # the call did not make a second contact


MAIN_NUMBER = "+74950000001"


def answered_call_from(sipp: SippFactory, platform: RunningPlatform, caller: str) -> None:
    result = sipp(
        "uac_call.xml",
        remote=(platform.host, platform.sip_port),
        service=MAIN_NUMBER,
        keys={"domain": platform.host, "caller": caller},
        timeout=40,
        pause_ms=500,
    ).run()
    assert result.all_succeeded, result.describe()


def last_answered_by(platform: RunningPlatform, caller: str, seen: int) -> tuple[str, str]:
    """(extension that answered, the crm-lookup step's note) of ``caller``'s newest call."""
    records = [
        record
        for record in platform.calls(seen + 10, wait_for=1, timeout=30)
        if record["caller"] == caller
    ]
    newest = max(records, key=lambda record: int(record["start_ms"]))
    notes = [str(step) for step in newest["route"] if "crm" in str(step)]
    return newest["answered_by"], " ".join(notes)


def test_the_crm_routes_a_client_to_their_manager_at_once_after_a_reassignment_and_a_supplier(
    pbx: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    admin = pbx.login(*ACME_ADMIN)
    users = users_by_extension(pbx, admin)
    with pbx.api(admin) as api:
        plan = api.post(
            "/v1/route-plans",
            json={
                "name": "clients to their managers",
                "steps": [
                    {
                        "type": "crm-lookup",
                        "to_responsible_manager": True,
                        "manager_timeout_s": 15,
                        "group_timeout_s": 0,
                        "categories": {"supplier": {"type": "user", "user_id": users["101"]}},
                    },
                    {"type": "hangup", "reason": "unavailable"},
                ],
            },
        )
        assert plan.status_code == 201, plan.text
        numbers = api.get("/v1/numbers", params={"limit": 200}).json()["items"]
        [main] = [number for number in numbers if number["number"] == MAIN_NUMBER]
        routed = api.patch(
            f"/v1/numbers/{main['id']}",
            json={"entry": {"type": "route-plan", "route_plan_id": plan.json()["id"]}},
        )
        assert routed.status_code == 200, routed.text
    for extension in ("101", "102"):
        agent(baresip_factory, pbx, extension)  # answers; the factory reaps it
    client_phone, supplier_phone = "+79135551001", "+79135551002"
    with pbx.crm(admin) as crm:
        client = crm.post(
            "/v1/contacts",
            json={"name": "Client", "phones": [client_phone], "owner_user_id": users["102"]},
        )
        supplier = crm.post(
            "/v1/contacts",
            json={"name": "Supplier", "phones": [supplier_phone], "category": "supplier"},
        )
        assert client.status_code == 201, client.text
        assert supplier.status_code == 201, supplier.text
        wait_for_reload(pbx)

        answered_call_from(sipp_factory, pbx, client_phone)
        by, note = last_answered_by(pbx, client_phone, 0)
        assert by == "102", note

        # Reassigned a moment ago: the very next call goes to the new manager.
        moved = crm.patch(
            f"/v1/contacts/{client.json()['id']}", json={"owner_user_id": users["101"]}
        )
        assert moved.status_code == 200, moved.text
        answered_call_from(sipp_factory, pbx, client_phone)
        by, note = last_answered_by(pbx, client_phone, 1)
        assert by == "101", note

        answered_call_from(sipp_factory, pbx, supplier_phone)
        by, note = last_answered_by(pbx, supplier_phone, 2)
        assert by == "101", note
        assert "supplier" in note

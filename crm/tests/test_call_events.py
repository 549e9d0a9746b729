"""Every call becomes a CRM event: contacts, missed-call and voicemail tasks, the timeline.

The nodes' call events are written to the real Redis stream here, as a node writes them;
the CRM under test reads them in its own consumer group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
from tests.services.control_api import bearer
from tests.services.crm import CrmHarness, crm_tenant, serve_crm

from vpbx_common.events import CallEvent, CallEventPublisher, CallEventType
from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAIN = "+74950000001"
T = TypeVar("T")


def event(tenant: str, kind: CallEventType, call_id: str, **fields: Any) -> CallEvent:
    values: dict[str, Any] = {
        "type": kind,
        "call_id": call_id,
        "tenant": tenant,
        "city": "msk",
        "node": "node-1",
        "number": MAIN,
        "caller": "+79161234567",
        "callee": "",
        "at_ms": int(time.time() * 1000),
        "label": "yandex-direct",
    }
    values.update(fields)
    return CallEvent(**values)


async def publish(crm: CrmHarness, *events: CallEvent) -> None:
    client = redis.Redis.from_url(crm.settings.redis_url or "")
    try:
        publisher = CallEventPublisher(client)
        for item in events:
            await publisher.publish(item)
    finally:
        await client.aclose()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 10) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("the CRM never got there")
        await asyncio.sleep(0.05)


async def tasks_of(crm: CrmHarness, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    response = await crm.client.get("/v1/tasks", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_an_unknown_callers_missed_call_makes_a_contact_and_a_task_for_who_it_rang(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(
        tenant, name="Olga", extension="101", password="olga-pw-1"
    )
    await module_crm.control.add_user(tenant, name="Petr", extension="102")
    await publish(
        module_crm,
        event(tenant, CallEventType.RINGING, "c-missed", callee="101,102"),
        event(tenant, CallEventType.ENDED, "c-missed", callee="101,102", end_reason="cancelled"),
    )

    async def missed_task() -> list[dict[str, Any]] | None:
        return await tasks_of(module_crm, admin, kind="missed-call") or None

    [task] = await eventually(missed_task)
    assert task["call_id"] == "c-missed"
    assert task["assignee_user_id"] == str(olga.id)
    assert task["status"] == "open"
    assert task["due_at"] is not None
    [contact] = (
        await module_crm.client.get("/v1/contacts", params={"phone": "+79161234567"}, headers=admin)
    ).json()["items"]
    assert task["contact_id"] == contact["id"]
    assert contact["source_label"] == "yandex-direct"
    assert contact["name"] == "+7 916 123-45-67"
    assert contact["owner_user_id"] is None
    assert contact["region"] != ""
    listed = await module_crm.client.get(f"/v1/contacts/{contact['id']}/calls", headers=admin)
    assert listed.status_code == 200, listed.text
    calls = listed.json()["items"]
    assert [(call["call_id"], call["missed"], call["direction"]) for call in calls] == [
        ("c-missed", True, "inbound")
    ]
    # Olga is told in her workspace.
    olga_headers = await module_crm.control.login(olga.email, "olga-pw-1")
    notes = (await module_crm.client.get("/v1/notifications", headers=olga_headers)).json()["items"]
    assert [note["task_id"] for note in notes] == [task["id"]]


async def test_a_known_clients_missed_call_goes_to_their_manager_once(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    await module_crm.control.add_user(tenant, name="Olga", extension="101")
    manager = await module_crm.control.add_user(tenant, name="Ivan", extension="105")
    client = await module_crm.client.post(
        "/v1/contacts",
        json={"name": "ООО Ромашка", "phones": ["+79169998877"], "owner_user_id": str(manager.id)},
        headers=admin,
    )
    assert client.status_code == 201
    ended = event(
        tenant,
        CallEventType.ENDED,
        "c-known",
        caller="+79169998877",
        callee="101",
        end_reason="no-answer",
    )
    # At least once: the same event may come twice.
    await publish(module_crm, ended, ended)

    async def missed_task() -> list[dict[str, Any]] | None:
        return await tasks_of(module_crm, admin, kind="missed-call") or None

    [task] = await eventually(missed_task)
    assert task["assignee_user_id"] == str(manager.id)
    assert task["contact_id"] == client.json()["id"]
    await asyncio.sleep(0.3)
    assert len(await tasks_of(module_crm, admin, kind="missed-call")) == 1
    contacts = (await module_crm.client.get("/v1/contacts", headers=admin)).json()
    assert contacts["total"] == 1


async def test_an_answered_call_lands_on_the_card_with_its_recording_and_closes_the_missed_task(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    await module_crm.control.add_user(tenant, name="Olga", extension="101")
    await publish(
        module_crm,
        event(tenant, CallEventType.ENDED, "c-1", callee="101", end_reason="no-answer"),
    )
    started = int(time.time() * 1000) + 1000  # the call back, after the missed call

    async def open_task() -> list[dict[str, Any]] | None:
        return await tasks_of(module_crm, admin, kind="missed-call", status="open") or None

    [task] = await eventually(open_task)
    await publish(
        module_crm,
        event(tenant, CallEventType.RINGING, "c-2", callee="101", at_ms=started),
        event(tenant, CallEventType.ANSWERED, "c-2", callee="101", at_ms=started + 2000),
        event(
            tenant,
            CallEventType.ENDED,
            "c-2",
            callee="101",
            end_reason="completed",
            at_ms=started + 62000,
        ),
        event(
            tenant,
            CallEventType.RECORDING_READY,
            "c-2",
            callee="101",
            key=f"recordings/{tenant}/2026/12/07/c-2.ogg",
            duration_ms=60000,
        ),
    )

    async def recorded() -> dict[str, Any] | None:
        listed = await module_crm.client.get(
            f"/v1/contacts/{task['contact_id']}/calls", headers=admin
        )
        latest = listed.json()["items"][0]
        return latest if latest["recording_url"] else None

    call = await recorded_call(recorded)
    assert call["call_id"] == "c-2"
    assert call["answered_by"] == "101"
    assert call["talk_s"] == 60
    assert call["recording_url"] == "/v1/calls/c-2/recording"
    assert call["missed"] is False
    [closed] = await tasks_of(module_crm, admin, kind="missed-call")
    assert closed["status"] == "done"
    assert "c-2" in closed["result"]


async def recorded_call(check: Callable[[], Awaitable[dict[str, Any] | None]]) -> dict[str, Any]:
    return await eventually(check)


async def test_a_voice_message_is_a_task_for_the_boxs_owner(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga", extension="101")
    await publish(
        module_crm,
        event(
            tenant,
            CallEventType.VOICEMAIL_NEW,
            "c-vm",
            callee="101",
            key=f"voicemail/{tenant}/101/2026/12/07/c-vm.ogg",
            duration_ms=7000,
            box="101",
            box_user_id=str(olga.id),
        ),
        event(tenant, CallEventType.ENDED, "c-vm", callee="101", end_reason="voicemail"),
    )

    async def voicemail_task() -> list[dict[str, Any]] | None:
        return await tasks_of(module_crm, admin, kind="voicemail") or None

    [task] = await eventually(voicemail_task)
    assert task["assignee_user_id"] == str(olga.id)
    # A voice message is not also a missed call.
    assert await tasks_of(module_crm, admin, kind="missed-call") == []
    [call] = (
        await module_crm.client.get(f"/v1/contacts/{task['contact_id']}/calls", headers=admin)
    ).json()["items"]
    assert call["voicemail_url"].startswith("/v1/voicemails/")
    assert call["voicemail_ms"] == 7000


async def test_events_of_an_internal_call_or_another_tenant_stay_out(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    other = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    await publish(
        module_crm,
        event(tenant, CallEventType.ENDED, "c-int", caller="101", number="102", end_reason="busy"),
        event(other, CallEventType.ENDED, "c-other", end_reason="no-answer"),
    )

    async def others_task() -> list[dict[str, Any]] | None:
        other_admin = await module_crm.as_role(other)
        return await tasks_of(module_crm, other_admin, kind="missed-call") or None

    await eventually(others_task)
    assert await tasks_of(module_crm, admin) == []
    assert (await module_crm.client.get("/v1/calls", headers=admin)).json()["items"] == []
    assert (await module_crm.client.get("/v1/calls/c-other", headers=admin)).status_code == 404


async def test_a_queue_wait_writes_nothing_and_the_missed_call_after_it_is_a_task(
    module_crm: CrmHarness,
) -> None:
    """call.queued / call.dequeued are the live board's: the timeline ignores them (an
    older CRM would skip them as unknown types), and the call's own events work as ever."""
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    await module_crm.control.add_user(tenant, name="Olga", extension="101")
    await publish(
        module_crm,
        event(tenant, CallEventType.QUEUED, "c-waits", queue="support", position=1),
        event(tenant, CallEventType.QUEUED, "c-gave-up", queue="support", position=2),
        event(tenant, CallEventType.DEQUEUED, "c-gave-up", queue="support", queue_left="hung up"),
        event(tenant, CallEventType.ENDED, "c-gave-up", end_reason="cancelled", callee="101"),
    )

    async def missed() -> list[dict[str, Any]] | None:
        return await tasks_of(module_crm, admin, kind="missed-call") or None

    [task] = await eventually(missed)
    assert task["call_id"] == "c-gave-up"
    # Read in stream order: the waiting call's events were handled before, and left no row.
    assert (await module_crm.client.get("/v1/calls/c-waits", headers=admin)).status_code == 404
    calls = (await module_crm.client.get("/v1/calls", headers=admin)).json()["items"]
    assert [call["call_id"] for call in calls] == ["c-gave-up"]


@pytest.mark.asyncio(loop_scope="function")
async def test_calls_made_while_the_crm_was_down_are_not_lost(
    crm: CrmHarness, postgres_url: str
) -> None:
    tenant = await crm_tenant(crm)
    admin = await crm.as_role(tenant)
    # The reader is stopped (the CRM restarting) while a call is missed.
    await crm.app.state.call_events.stop()
    await publish(crm, event(tenant, CallEventType.ENDED, "c-down", end_reason="no-answer"))
    await asyncio.sleep(0.2)
    assert await tasks_of(crm, admin) == []
    async with serve_crm(crm.control, postgres_url, crm.settings.redis_url) as restarted:

        async def missed_task() -> list[dict[str, Any]] | None:
            return await tasks_of(restarted, admin, kind="missed-call") or None

        [task] = await eventually(missed_task)
        assert task["call_id"] == "c-down"


@pytest.mark.asyncio(loop_scope="function")
async def test_a_backlog_read_in_batches_gives_what_one_by_one_would(
    crm: CrmHarness, postgres_url: str
) -> None:
    """Two missed calls from one unknown number and the call back, all waiting while the
    CRM was down: read together, they make one contact, two tasks, both closed. The call
    back's id sorts first: the stream's order counts, not the ids'."""
    tenant = await crm_tenant(crm)
    admin = await crm.as_role(tenant)
    await crm.control.add_user(tenant, name="Olga", extension="101")
    await crm.app.state.call_events.stop()
    caller, start = "+79035550101", int(time.time() * 1000) - 60_000
    missed = [
        event(tenant, kind, call_id, caller=caller, callee="101", at_ms=start + offset, **extra)
        for call_id, offset in (("z-1", 0), ("z-2", 1000))
        for kind, extra in (
            (CallEventType.OFFERED, {"offered": ("101",)}),
            (CallEventType.RINGING, {}),
            (CallEventType.ENDED, {"end_reason": "no-answer"}),
        )
    ]
    answered = [
        event(tenant, kind, "a-3", caller=caller, callee="101", at_ms=start + 2000, **extra)
        for kind, extra in (
            (CallEventType.RINGING, {}),
            (CallEventType.ANSWERED, {}),
            (CallEventType.ENDED, {"end_reason": "completed"}),
        )
    ]
    await publish(crm, *missed, *answered)
    async with serve_crm(crm.control, postgres_url, crm.settings.redis_url) as restarted:

        async def closed_tasks() -> list[dict[str, Any]] | None:
            tasks = await tasks_of(restarted, admin, kind="missed-call")
            done = len(tasks) == 2 and all(task["status"] == "done" for task in tasks)
            return tasks if done else None

        tasks = await eventually(closed_tasks)
        assert sorted(task["call_id"] for task in tasks) == ["z-1", "z-2"]
        [contact] = (
            await restarted.client.get("/v1/contacts", params={"phone": caller}, headers=admin)
        ).json()["items"]
        assert {task["contact_id"] for task in tasks} == {contact["id"]}
        calls = (
            await restarted.client.get(f"/v1/contacts/{contact['id']}/calls", headers=admin)
        ).json()["items"]
        assert sorted((call["call_id"], call["missed"]) for call in calls) == [
            ("a-3", False),
            ("z-1", True),
            ("z-2", True),
        ]


async def test_agents_see_and_close_their_tasks_but_not_give_them_away(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    olga = await module_crm.control.add_user(tenant, name="Olga", password="olga-pw-2")
    petr = await module_crm.control.add_user(tenant, name="Petr")
    olga_headers = await module_crm.control.login(olga.email, "olga-pw-2")
    created = await module_crm.client.post(
        "/v1/tasks",
        json={"title": "Send the offer", "due_at": "2026-12-08T10:00:00+03:00"},
        headers=olga_headers,
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["assignee_user_id"] == str(olga.id)
    assert task["kind"] == "follow-up"
    mine = await tasks_of(module_crm, olga_headers, mine="true")
    assert [item["id"] for item in mine] == [task["id"]]
    given_away = await module_crm.client.patch(
        f"/v1/tasks/{task['id']}", json={"assignee_user_id": str(petr.id)}, headers=olga_headers
    )
    assert given_away.status_code == 403
    done = await module_crm.client.patch(
        f"/v1/tasks/{task['id']}",
        json={"status": "done", "result": "sent"},
        headers=olga_headers,
    )
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["result"]) == ("done", "sent")
    assert done.json()["done_at"] is not None
    naive = await module_crm.client.post(
        "/v1/tasks", json={"title": "x", "due_at": "2026-12-08T10:00:00"}, headers=olga_headers
    )
    assert naive.status_code == 422
    assert naive.json()["details"][0]["field"] == "body.due_at"
    unknown = await module_crm.client.post(
        "/v1/tasks", json={"title": "x", "kind": "dinner"}, headers=bearer("nonsense")
    )
    assert unknown.status_code == 401
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    reassigned = await module_crm.client.patch(
        f"/v1/tasks/{task['id']}", json={"assignee_user_id": str(petr.id)}, headers=supervisor
    )
    assert reassigned.status_code == 200
    assert reassigned.json()["assignee_user_id"] == str(petr.id)


async def test_a_second_task_of_a_kind_for_one_call_is_a_conflict(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    body = {"title": "call back", "kind": "call-back", "call_id": "c-twice"}
    first = await module_crm.client.post("/v1/tasks", json=body, headers=admin)
    assert first.status_code == 201, first.text
    second = await module_crm.client.post("/v1/tasks", json=body, headers=admin)
    assert second.status_code == 409, second.text
    assert second.json()["details"][0]["field"] == "body.call_id"

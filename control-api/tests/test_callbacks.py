"""GET/DELETE /v1/callbacks: the queue callbacks the media nodes keep in Redis, as the
tenant's people see them. The node's side (booking, calling back) is in
media-node/tests/test_queue_callbacks.py."""

from __future__ import annotations

import dataclasses
import time

from tests.services.control_api import ApiHarness

from vpbx_common.callbacks import (
    CallbackAttempt,
    CallbackRecord,
    CallbackStatus,
    CallbackStore,
)
from vpbx_control.auth.principal import Role


def record(number: int, tenant: str = "acme", **changes: object) -> CallbackRecord:
    booked = time.time() - 600 + number
    base = CallbackRecord(
        id=f"{number:032x}",
        tenant=tenant,
        group="support",
        caller=f"+7913000000{number}",
        dialled="+74950000001",
        label="billboard",
        call_id=f"call-{number}@carrier",
        node="acme-msk-0",
        booked_at=booked,
        joined_at=booked - 40,
        position=number,
        max_attempts=3,
        retry_s=120,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def seed(api: ApiHarness, *records: CallbackRecord) -> None:
    assert api.context.redis is not None
    store = CallbackStore(api.context.redis)
    for item in records:
        await store.save(item)


async def test_members_see_the_tenants_callbacks_newest_first_with_their_attempts(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    attempt = CallbackAttempt(at=time.time() - 60, agent="101", call_id="try-1", outcome="busy")
    await seed(
        api,
        record(1),
        record(2, status=CallbackStatus.WAITING, attempts=(attempt,), next_attempt_at=time.time()),
        record(3, status=CallbackStatus.CONNECTED, finished_at=time.time()),
        record(4, tenant="globex"),
    )
    agent = await api.as_role("acme", Role.AGENT)

    listed = await api.client.get("/v1/callbacks", headers=agent)
    waiting = await api.client.get("/v1/callbacks?status=waiting&limit=1", headers=agent)

    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 3
    assert [item["caller"] for item in body["items"]] == [
        "+79130000003",
        "+79130000002",
        "+79130000001",
    ]
    retried = body["items"][1]
    assert retried["attempts"] == [
        {
            "at": retried["attempts"][0]["at"],
            "agent_extension": "101",
            "call_id": "try-1",
            "outcome": "busy",
        }
    ]
    assert (retried["dialled_number"], retried["label"], retried["position"]) == (
        "+74950000001",
        "billboard",
        2,
    )
    assert waiting.json()["total"] == 2
    assert [item["caller"] for item in waiting.json()["items"]] == ["+79130000002"]


async def test_a_supervisor_cancels_a_waiting_callback_once(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await seed(api, record(1), record(2, status=CallbackStatus.CALLING))
    supervisor = await api.as_role("acme", Role.SUPERVISOR)
    agent = await api.as_role("acme", Role.AGENT)
    first, calling = f"{1:032x}", f"{2:032x}"

    by_agent = await api.client.delete(f"/v1/callbacks/{first}", headers=agent)
    cancelled = await api.client.delete(f"/v1/callbacks/{first}", headers=supervisor)
    again = await api.client.delete(f"/v1/callbacks/{first}", headers=supervisor)
    ringing = await api.client.delete(f"/v1/callbacks/{calling}", headers=supervisor)

    assert by_agent.status_code == 403
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["detail"].startswith("cancelled by user ")
    assert (again.status_code, again.json()["error_id"]) == (409, "callback-not-waiting")
    assert (ringing.status_code, ringing.json()["error_id"]) == (409, "callback-not-waiting")
    read = await api.client.get(f"/v1/callbacks/{first}", headers=agent)
    assert read.json()["status"] == "cancelled"


async def test_unknown_and_malformed_ids(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    missing = await api.client.get(f"/v1/callbacks/{9:032x}", headers=admin)
    malformed = await api.client.get("/v1/callbacks/not-an-id", headers=admin)
    bad_status = await api.client.get("/v1/callbacks?status=lost", headers=admin)
    assert (missing.status_code, missing.json()["error_id"]) == (404, "callback-not-found")
    assert malformed.status_code == 422
    assert malformed.json()["details"][0]["field"] == "path.callback_id"
    assert bad_status.status_code == 422
    assert bad_status.json()["details"][0]["field"] == "query.status"


async def test_a_queue_step_offering_a_callback_is_stored_and_compiled(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    user = await api.add_user("acme", extension="101")
    group = await api.client.post(
        "/v1/groups",
        json={"name": "support", "members": [{"user_id": str(user.id)}]},
        headers=admin,
    )
    step = {
        "type": "queue",
        "group_id": group.json()["id"],
        "callback_digit": "1",
        "callback_attempts": 2,
        "callback_retry_s": 60,
    }
    same_keys = await api.client.post(
        "/v1/route-plans",
        json={"name": "bad", "steps": [{**step, "exit_digit": "1"}]},
        headers=admin,
    )
    too_soon = await api.client.post(
        "/v1/route-plans",
        json={"name": "bad", "steps": [{**step, "callback_retry_s": 5}]},
        headers=admin,
    )
    created = await api.client.post(
        "/v1/route-plans", json={"name": "main", "steps": [step]}, headers=admin
    )

    assert same_keys.status_code == 422
    assert same_keys.json()["details"][0]["field"].startswith("body.steps[0]")
    assert "callback_digit" in same_keys.text
    assert too_soon.status_code == 422
    assert too_soon.json()["details"][0]["field"] == "body.steps[0].queue.callback_retry_s"
    assert created.status_code == 201, created.text
    config = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    [plan] = config.json()["route_plans"]
    [queue] = plan["steps"]
    assert (queue["callback_digit"], queue["callback_attempts"], queue["callback_retry_s"]) == (
        "1",
        2,
        60,
    )

"""Tenant isolation over every route: another tenant's objects are 404 everywhere.

Tenant acme gets one object of every kind through the API; then tenant globex,
as a logged-in admin and with an API key, calls every route that takes an id
with acme's ids and must get 404, and every list must show none of them. The
routes are enumerated from the app, so a new route is covered (or this test
fails because it does not know which id to put in it).
"""

from __future__ import annotations

import io
import re
import time
import wave
from typing import Any

import pytest
from fastapi.routing import APIRoute
from tests.services.control_api import ApiHarness

from vpbx_common.callbacks import CallbackRecord, CallbackStore
from vpbx_common.cdr import (
    CallRecord,
    Direction,
    EndReason,
    HangupBy,
    RouteStep,
    now_ms,
    open_cdr_store,
)
from vpbx_common.events import CallEvent, CallEventType
from vpbx_control.auth.principal import Role
from vpbx_control.voicemails.models import voicemail_id

# Routes that are not tenant-scoped: the platform admin's and the media nodes'.
NOT_TENANT_SCOPED = ("/v1/platform", "/internal/")

# Path parameters that are not ids: a value the route accepts.
NOT_IDS = {"action": "cancel", "month": "2026-11"}

# Ad channels are named by their label, which each tenant chooses: globex setting spend for
# the label acme uses makes globex's own channel (201), and must leave acme's alone.
OWN_NAME = {("PUT", "/v1/ad-channels/{label:path}/spend/{month}")}
ACME_LABEL = "acme-secret-channel"

# A body that would be accepted, so that the answer is about the id, not the body.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/users/{user_id}/presence"): {"presence": "away"},
    ("PATCH", "/v1/users/{user_id}/presence"): {"presence": "away"},
    ("POST", "/v1/users/{user_id}/devices"): {"name": "stolen"},
    ("PATCH", "/v1/voicemails/{voicemail_id}"): {"listened": True},
    # A live acme call cannot be steered from globex: no globex node has it.
    ("POST", "/v1/calls/{call_id:path}/transfer"): {"target": "102"},
    ("POST", "/v1/calls/{call_id:path}/monitor"): {"mode": "listen"},
    ("POST", "/v1/calls/{call_id:path}/conference"): {"to": "102"},
    ("PUT", "/v1/ad-channels/{label:path}/spend/{month}"): {"amount": "1"},
}


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x10" * 800)
    return buffer.getvalue()


async def _created(api: ApiHarness, path: str, body: dict[str, Any], headers: Any) -> Any:
    response = await api.client.post(path, json=body, headers=headers)
    assert response.status_code in (201, 202), (path, response.text)
    return response.json()


async def _seed_acme(api: ApiHarness) -> dict[str, str]:
    """One object of every kind in acme, made through the API; returns path parameter -> id."""
    admin = await api.as_role("acme")
    user = await _created(
        api,
        "/v1/users",
        {"email": "ivan@acme.example", "name": "Ivan", "role": "agent", "extension": "101"},
        admin,
    )
    device = await _created(api, f"/v1/users/{user['id']}/devices", {"name": "desk"}, admin)
    group = await _created(
        api,
        "/v1/groups",
        {"name": "sales", "strategy": "ring-all", "members": [{"user_id": user["id"]}]},
        admin,
    )
    schedule = await _created(
        api, "/v1/schedules", {"name": "office", "time_zone": "Europe/Moscow"}, admin
    )
    menu = await _created(
        api,
        "/v1/ivr-menus",
        {"name": "main", "options": {"1": {"type": "group", "group_id": group["id"]}}},
        admin,
    )
    plan = await _created(
        api,
        "/v1/route-plans",
        {"name": "day", "steps": [{"type": "group", "group_id": group["id"]}]},
        admin,
    )
    webhook = await _created(
        api, "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["call.ended"]}, admin
    )
    await _created(api, f"/v1/webhooks/{webhook['id']}/test", {}, admin)
    deliveries = await api.client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=admin)
    [delivery, *_] = deliveries.json()["items"]
    key = await _created(api, "/v1/api-keys", {"name": "crm"}, admin)
    uploaded = await api.client.post(
        "/v1/prompts", files={"file": ("music.wav", _wav(), "audio/wav")}, headers=admin
    )
    assert uploaded.status_code == 201, uploaded.text
    prompt = uploaded.json()
    room = await _created(
        api, "/v1/conference-rooms", {"extension": "800", "name": "board", "pin": "8642"}, admin
    )
    decision = await _created(api, "/v1/route-plans/decision-secret", {}, admin)
    trunk = await _created(
        api,
        "/v1/trunks",
        {
            "name": "carrier",
            "uri": "sip:127.0.0.1:5090",
            "register": True,
            "username": "acme",
            "password": "acme-trunk-password",
        },
        admin,
    )
    pool = await api.client.post(
        "/v1/platform/pool", json={"city": "msk", "numbers": ["+74950000001"]}, headers=api.platform
    )
    assert pool.status_code == 201, pool.text
    number = await _created(api, "/v1/numbers", {"city": "msk", "label": ACME_LABEL}, admin)
    spend = await api.client.put(
        f"/v1/ad-channels/{ACME_LABEL}/spend/2026-11", json={"amount": "1234.56"}, headers=admin
    )
    assert spend.status_code == 201, spend.text
    call_id = _acme_call(api)
    voicemail_id = await _acme_voicemail(api)
    callback_id = await _acme_callback(api)
    return {
        "user_id": user["id"],
        "device_id": device["id"],
        "group_id": group["id"],
        "schedule_id": schedule["id"],
        "menu_id": menu["id"],
        "route_plan_id": plan["id"],
        "webhook_id": webhook["id"],
        "delivery_id": delivery["id"],
        "key_id": key["id"],
        "number_id": number["id"],
        "prompt_id": prompt["id"],
        "trunk_id": trunk["id"],
        "room_id": room["id"],
        "label": ACME_LABEL,
        # Not ids: no route takes them, but no listing may show them (the leak check).
        "decision_secret": decision["secret"],
        "trunk_password": "acme-trunk-password",
        "call_id": call_id,
        "voicemail_id": voicemail_id,
        "callback_id": callback_id,
    }


async def _acme_callback(api: ApiHarness) -> str:
    """A waiting queue callback of acme, as its media node writes it."""
    assert api.context.redis is not None
    record = CallbackRecord(
        id="a" * 32,
        tenant="acme",
        group="sales",
        caller="+79130000001",
        dialled="+74950000001",
        label="",
        call_id="acme-cb-1@carrier",
        node="acme-msk-0",
        booked_at=time.time(),
        joined_at=time.time() - 30,
        position=1,
        max_attempts=3,
        retry_s=120,
    )
    await CallbackStore(api.context.redis).save(record)
    return record.id


async def _acme_voicemail(api: ApiHarness) -> str:
    """A voice message in acme's box 101, stored as the inbox stores a voicemail.new."""
    event = CallEvent(
        type=CallEventType.VOICEMAIL_NEW,
        call_id="acme-vm-1@carrier",
        tenant="acme",
        city="msk",
        node="acme-msk-0",
        number="+74950000001",
        caller="+79130000001",
        callee="101",
        at_ms=now_ms(),
        key="voicemail/acme/101/2026/12/07/acme-vm-1_carrier.ogg",
        duration_ms=1_000,
        size_bytes=100,
        box="101",
    )
    inbox = api.app.state.voicemail_inbox
    assert await inbox.handle(event)
    return str(voicemail_id("acme", event.call_id))


def _acme_call(api: ApiHarness) -> str:
    """A call of acme, written to the API's CDR store as a media node's shipper writes it."""
    assert api.settings.chdb_path is not None
    store = open_cdr_store(api.settings.clickhouse_url, api.settings.chdb_path)
    start = now_ms() - 60_000
    record = CallRecord.build(
        call_id="acme-call-1@carrier",
        tenant="acme",
        city="msk",
        node="acme-msk-0",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+74950000001",
        answered_by="101",
        start_ms=start,
        answer_ms=start + 3_000,
        end_ms=start + 30_000,
        end_reason=EndReason.COMPLETED,
        sip_status=200,
        hangup_by=HangupBy.CALLER,
        route=(RouteStep(0.0, "user:101", "ringing", "101"),),
    )
    try:
        store.migrate()
        store.insert([record])
    finally:
        store.close()
    return record.call_id


def _tenant_routes(api: ApiHarness) -> list[APIRoute]:
    return [
        route
        for route in api.app.routes
        if isinstance(route, APIRoute)
        and route.path.startswith("/v1/")
        and not route.path.startswith(NOT_TENANT_SCOPED)
        and not route.path.startswith("/v1/auth")
    ]


@pytest.mark.parametrize("credential", ["user", "api-key"])
async def test_another_tenants_objects_are_not_found_on_any_route(
    api: ApiHarness, credential: str
) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    ids = await _seed_acme(api)
    globex = (
        await api.as_role("globex")
        if credential == "user"
        else await api.api_key("globex", Role.TENANT_ADMIN)
    )
    checked = 0
    for route in _tenant_routes(api):
        # path_format: /v1/calls/{call_id:path} is /v1/calls/{call_id}
        parameters = re.findall(r"\{([^}]+)\}", route.path_format)
        for method in sorted(route.methods - {"HEAD"}):
            if not parameters:
                if method == "GET":
                    listed = await api.client.get(route.path_format, headers=globex)
                    # /v1/users/me is 404 for an API key: a key has no profile.
                    assert listed.status_code in (200, 404), (route.path, listed.text)
                    leaked = [name for name, value in ids.items() if value in listed.text]
                    assert leaked == [], (route.path, leaked)
                continue
            unknown = [name for name in parameters if name not in ids and name not in NOT_IDS]
            assert unknown == [], f"{method} {route.path}: no acme id for {unknown}"
            url = route.path_format.format(**ids, **NOT_IDS)
            if route.path.endswith("/prompt") and method == "POST":
                files = {"file": ("prompt.wav", _wav(), "audio/wav")}
                response = await api.client.post(url, files=files, headers=globex)
            else:
                body = BODIES.get((method, route.path), {})
                response = await api.client.request(method, url, json=body, headers=globex)
            if (method, route.path) in OWN_NAME:
                assert response.status_code == 201, (method, route.path, response.text)
                removed = await api.client.delete(url, headers=globex)  # globex's own again
                assert removed.status_code == 204, removed.text
                continue
            assert response.status_code == 404, (method, route.path, response.text)
            checked += 1
    assert checked >= 30

    # The routes without an id act on the caller's own tenant: globex rotating its
    # decision secret makes its own and leaves acme's alone.
    rotated = await api.client.post("/v1/route-plans/decision-secret", headers=globex)
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["secret"] != ids["decision_secret"]
    config = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    assert config.json()["decision_secret"] == ids["decision_secret"]

    # And nothing was changed or deleted in acme by all of that.
    acme = await api.as_role("acme")
    for name, path in (
        ("user_id", "/v1/users/{user_id}"),
        ("group_id", "/v1/groups/{group_id}"),
        ("number_id", "/v1/numbers/{number_id}"),
        ("key_id", "/v1/api-keys/{key_id}"),
        ("call_id", "/v1/calls/{call_id}"),
        ("voicemail_id", "/v1/voicemails/{voicemail_id}"),
        ("prompt_id", "/v1/prompts/{prompt_id}"),
        ("trunk_id", "/v1/trunks/{trunk_id}"),
        ("room_id", "/v1/conference-rooms/{room_id}"),
        ("callback_id", "/v1/callbacks/{callback_id}"),
        ("label", "/v1/ad-channels/{label}"),
    ):
        response = await api.client.get(path.format(**ids), headers=acme)
        assert response.status_code == 200, (name, response.text)
        assert response.json().get("revoked", False) is False
    channel = await api.client.get(f"/v1/ad-channels/{ACME_LABEL}/spend", headers=acme)
    assert channel.json() == [{"month": "2026-11", "amount": "1234.56", "currency": "RUB"}]

"""/v1/webhooks: subscriptions, secrets, isolation, roles, and real signed deliveries
with retries to an HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.services.control_api import ApiHarness
from tests.services.metrics import sample_sum

from vpbx_common.events import (
    CALL_EVENTS_STREAM,
    WEBHOOKS_GROUP,
    CallEvent,
    CallEventPublisher,
    CallEventType,
)
from vpbx_common.signing import verify
from vpbx_control.auth.principal import Role
from vpbx_control.webhooks.delivery import CallEventBridge, WebhookDispatcher, webhook_dispatcher

SECRET = "receiver-shared-secret-0123456789"


def _fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


# --- a webhook receiver: a real HTTP server on 127.0.0.1 -----------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers with ``statuses`` in turn, then ``then`` for ever; records every request."""

    statuses: list[int] = field(default_factory=list)
    then: int = 200
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/vpbx"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(headers, body))
            status = self.statuses.pop(0) if self.statuses else self.then
            answer = b"nope" if status >= 300 else b"ok"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(answer)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver


@pytest.fixture
async def dispatcher(api: ApiHarness) -> AsyncIterator[WebhookDispatcher]:
    """The app's delivery worker, tuned for speed: tiny backoff, three attempts."""
    running = getattr(api.app.state, "webhook_dispatcher", None)
    own = running is None
    worker = webhook_dispatcher(api.context) if own else running
    assert isinstance(worker, WebhookDispatcher)
    worker.retry_base_s = 0.05
    worker.max_attempts = 3
    worker.poll_interval_s = 0.05
    worker.timeout_s = 2.0
    if own:
        api.app.state.webhook_dispatcher = worker
        await worker.start()
    yield worker
    if own:
        await worker.stop()
        del api.app.state.webhook_dispatcher


async def _finished(api: ApiHarness, headers: dict[str, str], location: str) -> dict[str, Any]:
    """The delivery at ``location`` once it is no longer pending."""
    deadline = time.monotonic() + 15
    while True:
        delivery: dict[str, Any] = (await api.client.get(location, headers=headers)).json()
        if delivery["status"] != "pending" or time.monotonic() > deadline:
            return delivery
        await asyncio.sleep(0.05)


async def _webhook(
    api: ApiHarness, headers: dict[str, str], url: str, events: list[str], **extra: Any
) -> dict[str, Any]:
    created = await api.client.post(
        "/v1/webhooks", json={"url": url, "events": events, **extra}, headers=headers
    )
    assert created.status_code == 201, created.text
    webhook: dict[str, Any] = created.json()
    return webhook


# --- the resource --------------------------------------------------------------------------


async def test_create_read_update_delete_and_the_secret_shown_once(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    created = await api.client.post(
        "/v1/webhooks",
        json={
            "url": "https://crm.example.com/hooks/vpbx",
            "events": ["call.answered", "call.ended", "call.answered"],
            "description": "CRM call log",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    webhook = created.json()
    assert created.headers["Location"] == f"/v1/webhooks/{webhook['id']}"
    assert webhook["events"] == ["call.answered", "call.ended"]
    assert webhook["active"] is True
    secret = webhook.pop("secret")
    assert len(secret) >= 43  # 32 random bytes, URL-safe base64

    read = await api.client.get(f"/v1/webhooks/{webhook['id']}", headers=admin)
    assert read.json() == webhook  # everything but the secret
    assert secret not in read.text
    listed = await api.client.get("/v1/webhooks", headers=admin)
    assert listed.json()["items"] == [webhook]
    assert secret not in listed.text

    changed = await api.client.patch(
        f"/v1/webhooks/{webhook['id']}",
        json={"events": ["recording.ready"], "active": False, "description": None},
        headers={**admin, "If-Match": read.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["recording.ready"]
    assert changed.json()["description"] is None
    assert changed.json()["url"] == "https://crm.example.com/hooks/vpbx"
    stale = await api.client.patch(
        f"/v1/webhooks/{webhook['id']}",
        json={"active": True},
        headers={**admin, "If-Match": read.headers["ETag"]},
    )
    assert stale.status_code == 412

    filtered = await api.client.get("/v1/webhooks", params={"event": "call.ended"}, headers=admin)
    assert filtered.json()["total"] == 0
    filtered = await api.client.get(
        "/v1/webhooks", params={"event": "recording.ready", "active": "false"}, headers=admin
    )
    assert filtered.json()["total"] == 1

    rotated = await api.client.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (secret, None)
    chosen = await api.client.post(
        f"/v1/webhooks/{webhook['id']}/rotate-secret", json={"secret": SECRET}, headers=admin
    )
    assert chosen.json()["secret"] == SECRET

    deleted = await api.client.delete(f"/v1/webhooks/{webhook['id']}", headers=admin)
    assert deleted.status_code == 204
    assert (await api.client.get(f"/v1/webhooks/{webhook['id']}", headers=admin)).status_code == 404


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    good: dict[str, Any] = {"url": "https://crm.example.com/hook", "events": ["call.ended"]}
    cases = [
        ({**good, "url": "ftp://crm.example.com/hook"}, "body.url"),
        ({**good, "url": "crm.example.com/hook"}, "body.url"),
        ({**good, "url": "https:///no-host"}, "body.url"),
        ({**good, "url": "https://example.com:99999/"}, "body.url"),
        ({**good, "events": ["call.exploded"]}, "body.events[0]"),
        ({**good, "events": ["call.ended", "ping"]}, "body.events[1]"),
        ({**good, "events": []}, "body.events"),
        ({**good, "secret": "short"}, "body.secret"),
        ({**good, "secret": "has spaces in it, sixteen+"}, "body.secret"),
        ({**good, "retries": 3}, "body.retries"),
    ]
    for body, field_name in cases:
        response = await api.client.post("/v1/webhooks", json=body, headers=admin)
        assert response.status_code == 422, body
        assert field_name in _fields(response), response.json()

    webhook = await _webhook(api, admin, "https://crm.example.com/hook", ["call.ended"])
    for patch, field_name in (
        ({"secret": SECRET}, "body.secret"),  # secrets change only by rotation
        ({"url": None}, "body.url"),
        ({"events": ["call.parked"]}, "body.events[0]"),
    ):
        response = await api.client.patch(
            f"/v1/webhooks/{webhook['id']}", json=patch, headers=admin
        )
        assert response.status_code == 422, patch
        assert field_name in _fields(response)
    bad_filter = await api.client.get(
        f"/v1/webhooks/{webhook['id']}/deliveries", params={"status": "lost"}, headers=admin
    )
    assert bad_filter.status_code == 422
    assert "query.status" in _fields(bad_filter)


async def test_another_tenants_webhook_and_log_are_not_found(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    webhook = await _webhook(api, admin, receiver.url, ["call.ended"])
    ping = await api.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=admin)
    await _finished(api, admin, ping.headers["Location"])
    globex = await api.api_key("globex")
    url = f"/v1/webhooks/{webhook['id']}"
    for method, path, body in (
        ("GET", url, None),
        ("PATCH", url, {"active": False}),
        ("DELETE", url, None),
        ("POST", f"{url}/rotate-secret", None),
        ("POST", f"{url}/test", None),
        ("GET", f"{url}/deliveries", None),
        ("GET", ping.headers["Location"], None),
    ):
        response = await api.client.request(method, path, json=body, headers=globex)
        assert response.status_code == 404, (method, path)
    assert (await api.client.get("/v1/webhooks", headers=globex)).json()["total"] == 0
    assert len(receiver.requests) == 1  # globex's test did not send anything


async def test_only_tenant_admins_see_or_touch_webhooks(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    webhook = await _webhook(api, admin, "https://crm.example.com/h", ["call.ended"])
    url = f"/v1/webhooks/{webhook['id']}"
    routes = (
        ("GET", "/v1/webhooks", None),
        ("POST", "/v1/webhooks", {"url": "https://x.example.com/", "events": ["call.ended"]}),
        ("GET", url, None),
        ("PATCH", url, {"active": False}),
        ("DELETE", url, None),
        ("POST", f"{url}/rotate-secret", None),
        ("POST", f"{url}/test", None),
        ("GET", f"{url}/deliveries", None),
    )
    for role in (Role.AGENT, Role.SUPERVISOR):
        for headers in (await api.as_role("acme", role), await api.api_key("acme", role)):
            for method, path, body in routes:
                response = await api.client.request(method, path, json=body, headers=headers)
                assert response.status_code == 403, (role, method, path)
    assert (await api.client.get(url, headers=admin)).json() == {
        key: value for key, value in webhook.items() if key != "secret"
    }


# --- delivery ------------------------------------------------------------------------------


async def test_a_test_ping_arrives_signed(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    webhook = await _webhook(api, admin, receiver.url, ["call.ended"], secret=SECRET)
    queued = await api.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=admin)
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "pending"
    delivery = await _finished(api, admin, queued.headers["Location"])
    assert delivery["status"] == "delivered", delivery
    assert (delivery["attempts"], delivery["last_status_code"]) == (1, 200)

    [request] = receiver.requests
    assert request.headers["x-vpbx-event"] == "ping"
    assert request.headers["x-vpbx-delivery"] == delivery["id"]
    assert request.headers["content-type"] == "application/json"
    signature = request.headers["x-vpbx-signature"]
    # The documented scheme, computed here independently: HMAC-SHA256 of "<t>.<raw body>".
    timestamp, digest = (part.partition("=")[2] for part in signature.split(","))
    assert abs(int(timestamp) - time.time()) < 60
    message = timestamp.encode() + b"." + request.body
    assert digest == hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert verify(SECRET, signature, request.body)
    assert not verify("another-secret-0123456789", signature, request.body)
    assert not verify(SECRET, signature, request.body + b" ")
    envelope = json.loads(request.body)
    assert envelope["id"] == delivery["id"]
    assert (envelope["event"], envelope["tenant"]) == ("ping", "acme")
    assert envelope["data"]["webhook_id"] == webhook["id"]
    assert delivery["payload"] == envelope["data"]

    # After a rotation, deliveries are signed with the new secret only.
    rotated = await api.client.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", headers=admin)
    new_secret = rotated.json()["secret"]
    again = await api.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=admin)
    await _finished(api, admin, again.headers["Location"])
    latest = receiver.requests[-1]
    assert verify(new_secret, latest.headers["x-vpbx-signature"], latest.body)
    assert not verify(SECRET, latest.headers["x-vpbx-signature"], latest.body)


async def test_events_go_to_the_active_subscribed_webhooks_and_are_retried(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    subscribed = await _webhook(api, admin, receiver.url, ["call.answered", "call.ended"])
    await _webhook(api, admin, receiver.url, ["call.ended"])
    await _webhook(api, admin, receiver.url, ["call.answered"], active=False)
    globex = await _webhook(api, await api.as_role("globex"), receiver.url, ["call.answered"])
    receiver.statuses = [500, 500]  # then 200

    payload = {"call_id": "c-1", "caller": "+74951234567", "callee": "101"}
    async with api.context.database.session() as session:
        queued = await dispatcher.enqueue(session, "acme", "call.answered", payload)
        await session.commit()
    assert [row.webhook_id for row in queued] == [uuid.UUID(subscribed["id"])]

    log_url = f"/v1/webhooks/{subscribed['id']}/deliveries"
    delivery = await _finished(api, admin, f"{log_url}/{queued[0].id}")
    assert delivery["status"] == "delivered", delivery
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200
    assert delivery["last_error"] is None
    assert [attempt["status_code"] for attempt in delivery["history"]] == [500, 500, 200]
    assert delivery["history"][0]["error"] == "HTTP 500 X: nope"
    assert delivery["payload"] == payload
    assert len(receiver.requests) == 3
    assert {request.headers["x-vpbx-delivery"] for request in receiver.requests} == {delivery["id"]}
    assert [r.headers["x-vpbx-attempt"] for r in receiver.requests] == ["1", "2", "3"]

    delivered = await api.client.get(log_url, params={"status": "delivered"}, headers=admin)
    assert [item["id"] for item in delivered.json()["items"]] == [delivery["id"]]
    failed = await api.client.get(log_url, params={"status": "failed"}, headers=admin)
    assert failed.json()["total"] == 0
    # Nothing went to globex's webhook for acme's call.
    globex_log = await api.client.get(
        f"/v1/webhooks/{globex['id']}/deliveries", headers=await api.as_role("globex")
    )
    assert globex_log.json()["total"] == 0


async def test_a_receiver_that_keeps_failing_gets_max_attempts(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    receiver.then = 503
    webhook = await _webhook(api, admin, receiver.url, ["call.missed"])
    async with api.context.database.session() as session:
        [queued] = await dispatcher.enqueue(session, "acme", "call.missed", {"call_id": "c-2"})
        await session.commit()
    log_url = f"/v1/webhooks/{webhook['id']}/deliveries"
    delivery = await _finished(api, admin, f"{log_url}/{queued.id}")
    assert delivery["status"] == "failed", delivery
    assert delivery["attempts"] == dispatcher.max_attempts == 3
    assert delivery["last_status_code"] == 503
    assert delivery["last_error"].startswith("HTTP 503")
    assert delivery["next_attempt_at"] is None
    assert len(receiver.requests) == 3
    listed = await api.client.get(log_url, params={"status": "failed"}, headers=admin)
    assert [item["id"] for item in listed.json()["items"]] == [delivery["id"]]
    # The operator's alert on webhook failures reads these.
    page = (await api.client.get("/metrics")).text
    assert sample_sum(page, "vpbx_webhook_attempts_total", {"outcome": "retry"}) == 2
    assert sample_sum(page, "vpbx_webhook_attempts_total", {"outcome": "failed"}) == 1
    assert sample_sum(page, "vpbx_webhook_attempts_total", {"outcome": "delivered"}) is None

    # Nobody listening at all: the connection error is what the log shows.
    receiver_gone = await _webhook(api, admin, "http://127.0.0.1:9/nothing", ["call.missed"])
    ping = await api.client.post(f"/v1/webhooks/{receiver_gone['id']}/test", headers=admin)
    unreachable = await _finished(api, admin, ping.headers["Location"])
    assert unreachable["status"] == "failed"
    assert unreachable["last_status_code"] is None
    assert "Connect" in unreachable["last_error"]
    assert len(unreachable["history"]) == 3


async def test_a_deleted_webhook_takes_its_log_along(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    webhook = await _webhook(api, admin, receiver.url, ["call.ended"])
    ping = await api.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=admin)
    await _finished(api, admin, ping.headers["Location"])
    assert (
        await api.client.delete(f"/v1/webhooks/{webhook['id']}", headers=admin)
    ).status_code == 204
    assert (await api.client.get(ping.headers["Location"], headers=admin)).status_code == 404


def _call_event(
    kind: CallEventType, end_reason: str = "", tenant: str = "acme", call_id: str = "call-42"
) -> CallEvent:
    return CallEvent(
        type=kind,
        call_id=call_id,
        tenant=tenant,
        city="msk",
        node=f"{tenant}-msk-0",
        number="+74951234567",
        caller="+79161234567",
        callee="101",
        at_ms=1_800_000_000_000,
        end_reason=end_reason,
        label="yandex",
    )


async def test_call_events_from_the_media_nodes_become_deliveries(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    webhook = await _webhook(api, admin, receiver.url, ["call.ended", "call.missed"])
    node = CallEventPublisher(api.context.redis)

    await node.publish(_call_event(CallEventType.ANSWERED))  # not subscribed
    missed = _call_event(CallEventType.ENDED, "no-answer")
    await node.publish(missed)
    await node.publish(missed)  # a duplicate
    await node.publish(_call_event(CallEventType.ENDED, "no-answer", tenant="globex"))
    # An entry claiming another tenant than its event's: skipped, not delivered.
    await api.context.redis.xadd(
        CALL_EVENTS_STREAM, {"tenant": "globex", "event": missed.to_json()}
    )

    log_url = f"/v1/webhooks/{webhook['id']}/deliveries"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        log = (await api.client.get(log_url, params={"status": "delivered"}, headers=admin)).json()
        if log["total"] >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a wrongly queued extra delivery to show up
    log = (await api.client.get(log_url, headers=admin)).json()
    assert sorted(item["event"] for item in log["items"]) == ["call.ended", "call.missed"]
    assert {item["status"] for item in log["items"]} == {"delivered"}
    bodies = sorted((json.loads(r.body) for r in receiver.requests), key=lambda b: b["event"])
    assert [body["event"] for body in bodies] == ["call.ended", "call.missed"]
    assert bodies[0]["data"] == {
        "call_id": "call-42",
        "number": "+74951234567",
        "caller": "+79161234567",
        "callee": "101",
        "city": "msk",
        "label": "yandex",
        "at": "2027-01-15T08:00:00+00:00",
        "end_reason": "no-answer",
    }
    # Every entry was read and acknowledged by the group, the odd one included.
    # (The voicemail inbox reads the stream in a group of its own.)
    groups = await api.context.redis.xinfo_groups(CALL_EVENTS_STREAM)
    [group] = [g for g in groups if _text(g["name"]) == WEBHOOKS_GROUP]
    assert (group["pending"], group["entries-read"]) == (0, 5)


async def test_call_offered_is_no_webhook_and_ringing_with_a_contact_is_delivered_as_before(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    refused = await api.client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["call.ringing", "call.offered"]},
        headers=admin,
    )
    assert refused.status_code == 422
    assert _fields(refused) == ["body.events[1]"]
    webhook = await _webhook(api, admin, receiver.url, ["call.ringing"])
    contact = {
        "id": "ct-7",
        "name": "Ivan",
        "category": "client",
        "owner_user_id": None,
        "vip": False,
    }
    node = CallEventPublisher(api.context.redis)
    for batch in (("101",), ("102", "103")):  # a sequential group's two turns
        offered = dataclasses.replace(
            _call_event(CallEventType.OFFERED), contact=contact, offered=batch
        )
        await node.publish(offered)
    await node.publish(dataclasses.replace(_call_event(CallEventType.RINGING), contact=contact))
    # A queue's wait (the CRM's live board) is no webhook either: read, acknowledged, dropped.
    for kind, left in ((CallEventType.QUEUED, ""), (CallEventType.DEQUEUED, "answered")):
        await node.publish(
            dataclasses.replace(_call_event(kind), queue="support", position=1, queue_left=left)
        )

    items = await _delivered(api, admin, webhook["id"], 1)
    assert [(item["event"], item["status"]) for item in items] == [("call.ringing", "delivered")]
    [body] = [json.loads(r.body) for r in receiver.requests]
    assert body["data"]["call_id"] == "call-42"
    groups = await api.context.redis.xinfo_groups(CALL_EVENTS_STREAM)
    [group] = [g for g in groups if _text(g["name"]) == WEBHOOKS_GROUP]
    assert (group["pending"], group["entries-read"]) == (0, 5)  # all read and acknowledged


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _delivered(
    api: ApiHarness, headers: dict[str, str], webhook_id: str, count: int
) -> list[dict[str, Any]]:
    log_url = f"/v1/webhooks/{webhook_id}/deliveries"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        log = (
            await api.client.get(log_url, params={"status": "delivered"}, headers=headers)
        ).json()
        if log["total"] >= count:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a wrongly queued extra delivery to show up
    items: list[dict[str, Any]] = (await api.client.get(log_url, headers=headers)).json()["items"]
    return items


async def test_call_events_published_while_no_replica_runs_are_delivered_when_one_starts(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    webhook = await _webhook(api, admin, receiver.url, ["call.ringing"])
    await dispatcher.stop()  # every API replica is down
    await CallEventPublisher(api.context.redis).publish(_call_event(CallEventType.RINGING))
    await asyncio.sleep(0.3)
    assert receiver.requests == []
    await dispatcher.start()
    items = await _delivered(api, admin, webhook["id"], 1)
    assert [(item["event"], item["status"]) for item in items] == [("call.ringing", "delivered")]


async def test_an_event_a_dead_replica_already_queued_is_acknowledged_not_queued_again(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    """Replica 1 read the event and committed its deliveries, then died before XACK:
    replica 2 reclaims the entry, finds the deliveries queued and only acknowledges it."""
    assert api.context.redis is not None
    assert dispatcher.bridge is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    webhook = await _webhook(api, admin, receiver.url, ["call.ended", "call.missed"])
    await dispatcher.bridge.stop()  # the app's own replica keeps out of the way
    missed = _call_event(CallEventType.ENDED, "no-answer")
    await CallEventPublisher(api.context.redis).publish(missed)
    # Replica 1: reads, queues and commits, never acknowledges.
    [[_, [_entry]]] = await api.context.redis.xreadgroup(
        WEBHOOKS_GROUP, "api-1", {CALL_EVENTS_STREAM: ">"}, count=1
    )
    assert await dispatcher.bridge.handle(missed) == 2

    replica = CallEventBridge(
        api.context.redis,
        dispatcher,
        consumer="api-2",
        claim_idle_s=0.2,
        claim_interval_s=0.1,
        block_s=0.1,
    )
    await replica.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if replica.consumer.handled >= 1:
                break
            await asyncio.sleep(0.05)
        assert (replica.consumer.claimed, replica.consumer.handled) == (1, 1)
    finally:
        await replica.stop()
    summary = await api.context.redis.xpending(CALL_EVENTS_STREAM, WEBHOOKS_GROUP)
    assert summary["pending"] == 0
    items = await _delivered(api, admin, webhook["id"], 2)
    assert sorted(item["event"] for item in items) == ["call.ended", "call.missed"]
    assert len(receiver.requests) == 2
    assert await dispatcher.bridge.handle(missed) == 0  # and once more by hand: nothing new


async def test_outside_local_mode_webhooks_cannot_reach_internal_hosts(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    """In a cluster a tenant's webhook must not become a way into the platform's network."""
    api.context.outbound.allow_private = False  # what VPBX_MODE=cluster gets by default
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    for url in (
        receiver.url,
        "http://10.96.0.1/api",
        "http://[::1]:8080/",
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://redis.vpbx.svc.cluster.local:6379/",
        "http://localhost/",
    ):
        refused = await api.client.post(
            "/v1/webhooks", json={"url": url, "events": ["call.ended"]}, headers=admin
        )
        assert refused.status_code == 422, (url, refused.text)
        assert _fields(refused) == ["body.url"]
    public = await _webhook(api, admin, "https://crm.example.com/hooks", ["call.ended"])
    moved = await api.client.patch(
        f"/v1/webhooks/{public['id']}", json={"url": "http://192.168.1.10/"}, headers=admin
    )
    assert moved.status_code == 422
    assert _fields(moved) == ["body.url"]

    # A name that passes the check when saved but points inside when sending is not called:
    # the machine's own host name resolves to a loopback or private address here.
    host = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    if all(ipaddress.ip_address(address).is_global for address in resolved):
        pytest.skip(f"{host} resolves to public addresses only ({resolved})")
    sneaky = await _webhook(api, admin, f"http://{host}:{receiver.port}/hooks/vpbx", ["call.ended"])
    queued = await api.client.post(f"/v1/webhooks/{sneaky['id']}/test", headers=admin)
    delivery = await _finished(api, admin, queued.headers["Location"])
    assert delivery["status"] == "failed", delivery
    assert delivery["last_error"] == (
        "not sent: the host does not resolve to an address on the Internet"
    ), delivery
    assert receiver.requests == []  # and the tenant learns no internal address


async def test_the_bridge_reads_subscriptions_once_and_sees_a_change_at_once(
    api: ApiHarness, dispatcher: WebhookDispatcher, receiver: Receiver
) -> None:
    """Events of a tenant without webhooks cost no database work; a webhook made (by
    any replica) is used from the next event on."""
    assert dispatcher.bridge is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    bridge = dispatcher.bridge
    cache = bridge.subscriptions
    for _ in range(20):
        assert await bridge.handle(_call_event(CallEventType.ANSWERED)) == 0
    assert cache.loads == 1  # the first event read the (empty) subscriptions, the rest none

    webhook = await _webhook(api, admin, receiver.url, ["call.answered"])
    assert await bridge.handle(_call_event(CallEventType.ANSWERED)) == 1
    loads = cache.loads
    assert await bridge.handle(_call_event(CallEventType.ANSWERED, call_id="call-43")) == 1
    assert cache.loads == loads

    changed = await api.client.patch(
        f"/v1/webhooks/{webhook['id']}", json={"active": False}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert await bridge.handle(_call_event(CallEventType.ANSWERED, call_id="call-44")) == 0

"""Voice messages: voicemail.new events on the real Redis stream become inbox rows (once, however
often delivered); /v1/voicemails per role and tenant; the audio; webhooks for voicemail.new and
recording.ready delivered to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import time
import uuid
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from tests.services.control_api import ApiHarness
from tests.services.objects import dominant_frequency, opus_ogg

from vpbx_common.events import CallEvent, CallEventPublisher, CallEventType
from vpbx_common.signing import verify
from vpbx_common.storage import RECORDING_CONTENT_TYPE, recording_key, voicemail_key
from vpbx_common.storage.local import LocalObjectStore
from vpbx_control.auth.principal import Role
from vpbx_control.voicemails.inbox import VoicemailInbox
from vpbx_control.voicemails.models import voicemail_id
from vpbx_control.webhooks.delivery import WebhookDispatcher, call_payload, webhook_events
from vpbx_control.webhooks.schemas import WebhookEvent

MONO = opus_ogg((440.0,))
AT_MS = 1_800_000_000_000
AT = dt.datetime.fromtimestamp(AT_MS / 1000, dt.UTC)
SECRET = "receiver-shared-secret-0123456789"


def _event(
    kind: CallEventType,
    call_id: str,
    *,
    tenant: str = "acme",
    box: str = "",
    box_user_id: str = "",
    key: str | None = None,
    at_ms: int = AT_MS,
) -> CallEvent:
    if key is None:
        key = (
            voicemail_key(tenant, box, call_id, AT)
            if kind is CallEventType.VOICEMAIL_NEW
            else recording_key(tenant, call_id, AT)
        )
    return CallEvent(
        type=kind,
        call_id=call_id,
        tenant=tenant,
        city="msk",
        node=f"{tenant}-msk-0",
        number="+74951234567",
        caller="+79161234567",
        callee=box,
        at_ms=at_ms,
        key=key,
        duration_ms=2_000,
        size_bytes=len(MONO),
        box=box,
        box_user_id=box_user_id,
    )


def _inbox(api: ApiHarness) -> VoicemailInbox:
    inbox = api.app.state.voicemail_inbox
    assert isinstance(inbox, VoicemailInbox)
    return inbox


async def _until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def people(api: ApiHarness, object_store: LocalObjectStore) -> dict[str, Any]:
    api.context.objects = object_store
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    password = "agents-long-password"
    ivan = await api.add_user("acme", extension="101", password=password)
    petr = await api.add_user("acme", extension="102", password=password)
    return {
        "ivan": ivan,
        "petr": petr,
        "ivan_headers": await api.login(ivan.email, password),
        "petr_headers": await api.login(petr.email, password),
    }


async def _publish_voicemails(api: ApiHarness, store: LocalObjectStore) -> list[CallEvent]:
    """Ivan's box (named by the node's box_user_id), the general box, and globex's 101."""
    assert api.context.redis is not None
    ivan_id = await api.client.get(
        "/v1/users", params={"extension": "101"}, headers=await api.as_role("acme")
    )
    events = [
        _event(
            CallEventType.VOICEMAIL_NEW,
            "vm-1@carrier",
            box="101",
            box_user_id=ivan_id.json()["items"][0]["id"],
        ),
        _event(CallEventType.VOICEMAIL_NEW, "vm-2@carrier", at_ms=AT_MS + 60_000),
        _event(CallEventType.VOICEMAIL_NEW, "vm-3@carrier", tenant="globex", box="101"),
    ]
    node = CallEventPublisher(api.context.redis)
    for event in events:
        await store.put_bytes(event.key, MONO, RECORDING_CONTENT_TYPE)
        await node.publish(event)
    await node.publish(events[0])  # delivered twice: at least once
    inbox = _inbox(api)
    await _until(lambda: _handled(inbox, 4))
    return events


async def _handled(inbox: VoicemailInbox, count: int) -> bool:
    return inbox.consumer.handled >= count


async def test_each_voicemail_is_stored_once_and_listed_per_role(
    api: ApiHarness, object_store: LocalObjectStore, people: dict[str, Any]
) -> None:
    await _publish_voicemails(api, object_store)
    admin = await api.as_role("acme")
    listed = await api.client.get("/v1/voicemails", headers=admin)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)
    newest, oldest = body["items"]
    assert newest["call_id"] == "vm-2@carrier"
    assert (newest["box"], newest["user_id"]) == (None, None)
    ivan_id = str(people["ivan"].id)
    message_id = str(voicemail_id("acme", "vm-1@carrier"))
    assert oldest == {
        "id": message_id,
        "call_id": "vm-1@carrier",
        "box": "101",
        "user_id": ivan_id,
        "caller": "+79161234567",
        "number": "+74951234567",
        "city": "msk",
        "duration_s": 2.0,
        "size_bytes": len(MONO),
        "created_at": "2027-01-15T08:00:00Z",
        "listened": False,
        "listened_at": None,
        "audio_url": f"/v1/voicemails/{message_id}/audio",
        "wav_url": f"/v1/voicemails/{message_id}/audio?format=wav",
    }
    # Filters.
    by_user = await api.client.get("/v1/voicemails", params={"user_id": ivan_id}, headers=admin)
    assert [item["call_id"] for item in by_user.json()["items"]] == ["vm-1@carrier"]
    later = await api.client.get(
        "/v1/voicemails", params={"from": "2027-01-15T08:00:30Z"}, headers=admin
    )
    assert [item["call_id"] for item in later.json()["items"]] == ["vm-2@carrier"]
    earlier = await api.client.get(
        "/v1/voicemails", params={"to": "2027-01-15T08:00:30+00:00"}, headers=admin
    )
    assert [item["call_id"] for item in earlier.json()["items"]] == ["vm-1@carrier"]
    inverted = await api.client.get(
        "/v1/voicemails",
        params={"from": "2027-01-15T09:00:00Z", "to": "2027-01-15T08:00:00Z"},
        headers=admin,
    )
    assert inverted.status_code == 422
    assert inverted.json()["details"][0]["field"] == "query.from"
    naive = await api.client.get(
        "/v1/voicemails", params={"from": "2027-01-15T09:00"}, headers=admin
    )
    assert naive.status_code == 422
    assert naive.json()["details"][0]["field"] == "query.from"
    # The box owner sees their box; another agent sees nothing of it.
    own = await api.client.get("/v1/voicemails", headers=people["ivan_headers"])
    assert [item["call_id"] for item in own.json()["items"]] == ["vm-1@carrier"]
    other = await api.client.get("/v1/voicemails", headers=people["petr_headers"])
    assert other.json()["total"] == 0
    hidden = await api.client.get(f"/v1/voicemails/{message_id}", headers=people["petr_headers"])
    assert hidden.status_code == 404
    assert hidden.json()["error_id"] == "voicemail-not-found"
    supervisor = await api.as_role("acme", Role.SUPERVISOR)
    assert (await api.client.get("/v1/voicemails", headers=supervisor)).json()["total"] == 2
    # Another tenant sees only its own; acme's message is 404 there.
    globex = await api.as_role("globex")
    theirs = await api.client.get("/v1/voicemails", headers=globex)
    assert [item["call_id"] for item in theirs.json()["items"]] == ["vm-3@carrier"]
    foreign = await api.client.get(f"/v1/voicemails/{message_id}/audio", headers=globex)
    assert foreign.status_code == 404


async def test_the_inbox_is_idempotent_and_drops_what_it_cannot_store(
    api: ApiHarness, people: dict[str, Any]
) -> None:
    inbox = _inbox(api)
    event = _event(CallEventType.VOICEMAIL_NEW, "vm-9@carrier", box="102")
    assert await inbox.handle(event) is True
    assert await inbox.handle(event) is False
    # Not for the inbox, or not storable: acknowledged without a row, never a crash.
    assert await inbox.handle(_event(CallEventType.RECORDING_READY, "rec-1")) is False
    outside = _event(CallEventType.VOICEMAIL_NEW, "vm-10", key="voicemail/globex/101/x.ogg")
    assert await inbox.handle(outside) is False
    assert await inbox.handle(_event(CallEventType.VOICEMAIL_NEW, "x", tenant="nobody")) is False
    admin = await api.as_role("acme")
    listed = (await api.client.get("/v1/voicemails", headers=admin)).json()
    assert [(item["call_id"], item["user_id"]) for item in listed["items"]] == [
        ("vm-9@carrier", str(people["petr"].id))  # the owner found by the box's extension
    ]


async def test_audio_listened_and_delete(
    api: ApiHarness, object_store: LocalObjectStore, people: dict[str, Any]
) -> None:
    events = await _publish_voicemails(api, object_store)
    ivan = people["ivan_headers"]
    message = f"/v1/voicemails/{voicemail_id('acme', 'vm-1@carrier')}"
    audio = await api.client.get(f"{message}/audio", headers=ivan)
    assert audio.status_code == 200
    assert audio.content == MONO
    assert audio.headers["content-type"] == "audio/ogg"
    part = await api.client.get(f"{message}/audio", headers={**ivan, "Range": "bytes=-100"})
    assert part.status_code == 206
    assert part.content == MONO[-100:]
    wav = await api.client.get(f"{message}/audio", params={"format": "wav"}, headers=ivan)
    assert wav.status_code == 200
    with wave.open(io.BytesIO(wav.content)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 8000)
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    assert abs(dominant_frequency(samples, 8000) - 440) < 10

    listened = await api.client.patch(message, json={"listened": True}, headers=ivan)
    assert listened.status_code == 200, listened.text
    assert listened.json()["listened"] is True
    admin = await api.as_role("acme")
    new_only = await api.client.get("/v1/voicemails", params={"listened": False}, headers=admin)
    assert [item["call_id"] for item in new_only.json()["items"]] == ["vm-2@carrier"]
    invalid = await api.client.patch(message, json={"listened": "maybe"}, headers=ivan)
    assert invalid.status_code == 422
    assert invalid.json()["details"][0]["field"] == "body.listened"

    # Petr cannot delete Ivan's message; Ivan can, and the audio goes with it.
    refused = await api.client.delete(message, headers=people["petr_headers"])
    assert refused.status_code == 404
    deleted = await api.client.delete(message, headers=ivan)
    assert deleted.status_code == 204
    assert not (object_store.root / events[0].key).exists()
    assert (await api.client.get(message, headers=ivan)).status_code == 404
    # The same event delivered once more does not bring it back.
    assert await _inbox(api).handle(events[0]) is False
    assert (await api.client.get(message, headers=admin)).status_code == 404
    # A message whose audio vanished from the store says so.
    await object_store.delete(events[1].key)
    general = f"/v1/voicemails/{voicemail_id('acme', 'vm-2@carrier')}/audio"
    missing = await api.client.get(general, headers=admin)
    assert missing.status_code == 404
    assert missing.json()["error_id"] == "voicemail-audio-missing"


# --- webhooks ------------------------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.bodies.append((headers, body))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
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


async def test_voicemail_and_recording_webhooks(
    api: ApiHarness, people: dict[str, Any], receiver: Receiver
) -> None:
    assert api.context.redis is not None
    dispatcher = api.app.state.webhook_dispatcher
    assert isinstance(dispatcher, WebhookDispatcher)
    dispatcher.poll_interval_s = 0.05
    admin = await api.as_role("acme")
    created = await api.client.post(
        "/v1/webhooks",
        json={
            "url": f"http://127.0.0.1:{receiver.port}/hook",
            "events": ["voicemail.new", "recording.ready"],
            "secret": SECRET,
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    node = CallEventPublisher(api.context.redis)
    await node.publish(_event(CallEventType.VOICEMAIL_NEW, "vm-1@carrier", box="101"))
    await node.publish(_event(CallEventType.RECORDING_READY, "odd/rec@carrier"))
    await node.publish(_event(CallEventType.ANSWERED, "rec-2"))  # not subscribed

    async def both() -> bool:
        return len(receiver.bodies) >= 2

    await _until(both)
    await asyncio.sleep(0.3)  # room for a wrong extra delivery
    assert len(receiver.bodies) == 2
    bodies = {}
    for headers, raw in receiver.bodies:
        assert verify(SECRET, headers["x-vpbx-signature"], raw)
        body = json.loads(raw)
        assert headers["x-vpbx-event"] == body["event"]
        bodies[body["event"]] = body["data"]
    message = str(voicemail_id("acme", "vm-1@carrier"))
    common = {
        "number": "+74951234567",
        "caller": "+79161234567",
        "city": "msk",
        "label": None,
        "at": "2027-01-15T08:00:00+00:00",
        "duration_s": 2.0,
        "size_bytes": len(MONO),
    }
    assert bodies["voicemail.new"] == {
        **common,
        "call_id": "vm-1@carrier",
        "callee": "101",
        "voicemail_id": message,
        "box": "101",
        "user_id": str(people["ivan"].id),  # found by the box's extension
        "audio": {
            "url": f"/v1/voicemails/{message}/audio",
            "wav_url": f"/v1/voicemails/{message}/audio?format=wav",
        },
    }
    assert bodies["recording.ready"] == {
        **common,
        "call_id": "odd/rec@carrier",
        "callee": "",
        "recording": {
            "url": "/v1/calls/odd%2Frec@carrier/recording",
            "wav_url": "/v1/calls/odd%2Frec@carrier/recording?format=wav",
        },
    }
    # Nothing names the storage key.
    assert all(
        b"voicemail/acme" not in raw and b"recordings/" not in raw for _, raw in receiver.bodies
    )
    assert uuid.UUID(message)


def test_every_call_event_type_maps_to_webhooks_without_failing() -> None:
    """A type the bridge has no webhook for maps to none (acknowledged, nothing sent)."""
    for kind in CallEventType:
        names = webhook_events(_event(kind, "c-1"))
        assert all(name.value == kind.value or kind is CallEventType.ENDED for name in names)
        call_payload(_event(kind, "c-1"))  # every type has a payload
    assert webhook_events(_event(CallEventType.RECORDING_READY, "c")) == [
        WebhookEvent.RECORDING_READY
    ]
    assert webhook_events(_event(CallEventType.VOICEMAIL_NEW, "c")) == [WebhookEvent.VOICEMAIL_NEW]

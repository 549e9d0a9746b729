"""GET /v1/calls/{id}/recording: real Ogg/Opus recordings (made with PyAV) in an object store,
CDRs in the API's chdb, served whole, by byte range and decoded to WAV, per role and tenant."""

from __future__ import annotations

import datetime as dt
import io
import uuid
import wave
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import pytest
from tests.services.control_api import ApiHarness
from tests.services.objects import dominant_frequency, opus_ogg
from tests.services.ports import free_port

from vpbx_common.cdr import (
    CallRecord,
    Direction,
    EndReason,
    HangupBy,
    RouteStep,
    now_ms,
    open_cdr_store,
)
from vpbx_common.storage import RECORDING_CONTENT_TYPE, recording_key
from vpbx_common.storage.local import LocalObjectStore
from vpbx_common.storage.s3 import S3ObjectStore
from vpbx_control.audio.errors import RangeNotSatisfiable
from vpbx_control.audio.serve import ByteRange, parse_range
from vpbx_control.auth.principal import Role

STEREO = opus_ogg((440.0, 1000.0))  # caller left, agent right


def _record(
    call_id: str,
    start_ms: int,
    *,
    tenant: str = "acme",
    answered_by: str = "",
    caller: str = "+79130000001",
    direction: Direction = Direction.INBOUND,
    recorded: bool = True,
    route: tuple[RouteStep, ...] = (),
) -> CallRecord:
    started = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC)
    return CallRecord.build(
        call_id=call_id,
        tenant=tenant,
        city="msk",
        node=f"{tenant}-msk-0",
        direction=direction,
        caller=caller,
        dialled="+74950000001" if direction is Direction.INBOUND else "+74951112233",
        answered_by=answered_by,
        start_ms=start_ms,
        answer_ms=start_ms + 3_000 if answered_by else None,
        end_ms=start_ms + 30_000,
        end_reason=EndReason.COMPLETED if answered_by else EndReason.NO_ANSWER,
        sip_status=200 if answered_by else 480,
        hangup_by=HangupBy.CALLER,
        route=route,
        recording=recording_key(tenant, call_id, started) if recorded else "",
    )


@dataclass
class Scene:
    store: LocalObjectStore
    records: dict[str, CallRecord]
    ivan: dict[str, str]  # agent, extension 101
    petr: dict[str, str]  # agent, extension 102


@pytest.fixture
async def scene(api: ApiHarness, object_store: LocalObjectStore) -> Scene:
    api.context.objects = object_store
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    password = "agents-long-password"
    ivan = await api.add_user("acme", extension="101", password=password)
    petr = await api.add_user("acme", extension="102", password=password)
    now = now_ms()
    records = [
        _record("rec-1@carrier", now - 60_000, answered_by="101"),
        # Answered by 102 after ringing 101 too: Ivan sees the call, not its recording.
        _record(
            "rec-2@carrier",
            now - 120_000,
            answered_by="102",
            route=(
                RouteStep(0.0, "group:sales", "ringing", "101"),
                RouteStep(0.0, "group:sales", "ringing", "102"),
                RouteStep(3.0, "group:sales", "answered", "102"),
            ),
        ),
        _record("norec-3@carrier", now - 180_000, answered_by="101", recorded=False),
        _record("pending-4@carrier", now - 240_000, answered_by="101"),
        _record("out-5", now - 300_000, caller="101", direction=Direction.OUTBOUND),
        _record("odd/id@host", now - 360_000, answered_by="101"),
        _record("globex-6@carrier", now - 60_000, tenant="globex", answered_by="101"),
    ]
    assert api.settings.chdb_path is not None
    cdrs = open_cdr_store(api.settings.clickhouse_url, api.settings.chdb_path)
    try:
        cdrs.migrate()
        cdrs.insert(records)
    finally:
        cdrs.close()
    for record in records:
        if record.recording and not record.call_id.startswith("pending"):
            await object_store.put_bytes(record.recording, STEREO, RECORDING_CONTENT_TYPE)
    return Scene(
        store=object_store,
        records={record.call_id: record for record in records},
        ivan=await api.login(ivan.email, password),
        petr=await api.login(petr.email, password),
    )


def _url(call_id: str, suffix: str = "/recording") -> str:
    return f"/v1/calls/{quote(call_id, safe='@')}{suffix}"


async def test_the_recording_is_the_stored_ogg(api: ApiHarness, scene: Scene) -> None:
    admin = await api.as_role("acme")
    response = await api.client.get(_url("rec-1@carrier"), headers=admin)
    assert response.status_code == 200, response.text
    assert response.content == STEREO
    assert response.headers["content-type"] == "audio/ogg"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(len(STEREO))
    # A Call-ID with '/' (sent as %2F) reaches the recording route, not the call route.
    odd = await api.client.get(_url("odd/id@host"), headers=admin)
    assert odd.status_code == 200, odd.text
    assert odd.content == STEREO


async def test_byte_ranges(api: ApiHarness, scene: Scene) -> None:
    admin = await api.as_role("acme")
    size = len(STEREO)
    url = _url("rec-1@carrier")
    for header, start, end in (
        ("bytes=0-99", 0, 100),
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=-100", size - 100, size),
        (f"bytes={size - 10}-", size - 10, size),
        (f"bytes=5-{size + 1000}", 5, size),  # the end is cut to the object
    ):
        response = await api.client.get(url, headers={**admin, "Range": header})
        assert response.status_code == 206, (header, response.text)
        assert response.content == STEREO[start:end], header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", header
        assert response.headers["content-length"] == str(end - start)
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        refused = await api.client.get(url, headers={**admin, "Range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{size}"
        assert refused.json()["error_id"] == "range-not-satisfiable"
    # Ignored as the RFC allows: several ranges, another unit, nonsense, If-Range.
    for extra in (
        {"Range": "bytes=0-1,5-9"},
        {"Range": "items=0-1"},
        {"Range": "bytes=9-2"},
        {"Range": "bytes=0-1", "If-Range": '"something"'},
    ):
        whole = await api.client.get(url, headers={**admin, **extra})
        assert whole.status_code == 200, extra
        assert whole.content == STEREO


def test_parse_range() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == ByteRange(0, 1)
    assert parse_range("bytes=-20", 10) == ByteRange(0, 10)
    assert parse_range("bytes= 2-4 ", 10) == ByteRange(2, 5)
    assert parse_range("bytes=-", 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


def _wav(data: bytes) -> tuple[int, int, int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as reader:
        channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)
    return channels, width, rate, samples


async def test_wav_is_decoded_stereo_8khz_with_each_side_on_its_channel(
    api: ApiHarness, scene: Scene
) -> None:
    admin = await api.as_role("acme")
    url = _url("rec-1@carrier")
    response = await api.client.get(url, params={"format": "wav"}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    channels, width, rate, samples = _wav(response.content)
    assert (channels, width, rate) == (2, 2, 8000)
    assert abs(len(samples) - 16_000) <= 400  # two seconds
    assert abs(dominant_frequency(samples[:, 0], rate) - 440) < 10  # the caller, left
    assert abs(dominant_frequency(samples[:, 1], rate) - 1000) < 10  # the agent, right
    # Range works on the WAV too.
    part = await api.client.get(
        url, params={"format": "wav"}, headers={**admin, "Range": "bytes=0-43"}
    )
    assert part.status_code == 206
    assert part.content == response.content[:44]
    assert part.headers["content-range"] == f"bytes 0-43/{len(response.content)}"
    bad = await api.client.get(url, params={"format": "mp3"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "query.format"


async def test_agents_hear_the_calls_they_answered_or_placed(api: ApiHarness, scene: Scene) -> None:
    own = await api.client.get(_url("rec-1@carrier"), headers=scene.ivan)
    assert own.status_code == 200
    placed = await api.client.get(_url("out-5"), headers=scene.ivan)
    assert placed.status_code == 200
    # Petr answered rec-2; Ivan was only rung: he sees the call, but not its recording.
    offered = await api.client.get(_url("rec-2@carrier"), headers=scene.ivan)
    assert offered.status_code == 404
    assert offered.json()["error_id"] == "call-not-found"
    call = await api.client.get(_url("rec-2@carrier", ""), headers=scene.ivan)
    assert call.status_code == 200
    assert call.json()["recording"] is None
    assert (await api.client.get(_url("rec-2@carrier"), headers=scene.petr)).status_code == 200
    assert (await api.client.get(_url("rec-1@carrier"), headers=scene.petr)).status_code == 404
    supervisor = await api.as_role("acme", Role.SUPERVISOR)
    for call_id in ("rec-1@carrier", "rec-2@carrier", "out-5"):
        heard = await api.client.get(_url(call_id), headers=supervisor)
        assert heard.status_code == 200, call_id


async def test_another_tenants_recording_is_not_found(api: ApiHarness, scene: Scene) -> None:
    globex = await api.as_role("globex")
    response = await api.client.get(_url("rec-1@carrier"), headers=globex)
    assert response.status_code == 404
    assert response.json()["error_id"] == "call-not-found"
    acme = await api.as_role("acme")
    theirs = await api.client.get(_url("globex-6@carrier"), headers=acme)
    assert theirs.status_code == 404
    assert theirs.json()["error_id"] == "call-not-found"


async def test_not_recorded_and_not_ready_are_distinct_404s(api: ApiHarness, scene: Scene) -> None:
    admin = await api.as_role("acme")
    unrecorded = await api.client.get(_url("norec-3@carrier"), headers=admin)
    assert unrecorded.status_code == 404
    assert unrecorded.json()["error_id"] == "recording-not-found"
    pending = await api.client.get(_url("pending-4@carrier"), headers=admin)
    assert pending.status_code == 404
    assert pending.json()["error_id"] == "recording-not-ready"
    assert pending.headers["retry-after"] == "5"
    unknown = await api.client.get(_url(f"{uuid.uuid4()}@nowhere"), headers=admin)
    assert unknown.json()["error_id"] == "call-not-found"


async def test_calls_link_their_recording(api: ApiHarness, scene: Scene) -> None:
    admin = await api.as_role("acme")
    listed = await api.client.get("/v1/calls", headers=admin)
    links = {item["call_id"]: item["recording"] for item in listed.json()["items"]}
    assert links["rec-1@carrier"] == {
        "url": "/v1/calls/rec-1@carrier/recording",
        "wav_url": "/v1/calls/rec-1@carrier/recording?format=wav",
    }
    assert links["norec-3@carrier"] is None
    assert links["odd/id@host"]["url"] == "/v1/calls/odd%2Fid@host/recording"
    # The link works as given.
    fetched = await api.client.get(links["odd/id@host"]["wav_url"], headers=admin)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "audio/wav"
    detail = await api.client.get(_url("rec-1@carrier", ""), headers=scene.ivan)
    assert detail.json()["recording"]["url"] == "/v1/calls/rec-1@carrier/recording"


async def test_without_an_object_store_the_answer_is_503(api: ApiHarness, scene: Scene) -> None:
    # An S3 endpoint nobody listens on: the store is down.
    api.context.objects = S3ObjectStore(
        endpoint=f"http://127.0.0.1:{free_port()}",
        bucket="recordings",
        access_key="test",
        secret_key="test-secret",
    )
    admin = await api.as_role("acme")
    response = await api.client.get(_url("rec-1@carrier"), headers=admin)
    assert response.status_code == 503
    assert response.json()["error_id"] == "object-store-unavailable"

"""/v1/calls: the tenant's CDRs, read from a real CDR store (ClickHouse 18.16 server and chdb).

The records are written through the store as the media nodes' shipper writes them; the API reads
them back with filters, pages, per-role visibility and tenant isolation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.services.control_api import ApiHarness, control_settings, serve_api
from tests.services.ports import free_port

from vpbx_common.cdr import (
    CallRecord,
    CdrStore,
    Direction,
    EndReason,
    HangupBy,
    RouteStep,
    now_ms,
    open_cdr_store,
)
from vpbx_control.auth.principal import Role
from vpbx_control.calls.schemas import CallStatus

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


def call(
    call_id: str,
    *,
    start_ms: int,
    tenant: str = "acme",
    direction: Direction = Direction.INBOUND,
    caller: str = "+79130000001",
    dialled: str = "+74950000001",
    label: str = "",
    answered_by: str = "",
    end_reason: EndReason = EndReason.COMPLETED,
    route: tuple[RouteStep, ...] = (),
) -> CallRecord:
    answered = bool(answered_by)
    return CallRecord.build(
        call_id=call_id,
        tenant=tenant,
        city="msk",
        node=f"{tenant}-msk-0",
        direction=direction,
        caller=caller,
        dialled=dialled,
        label=label,
        answered_by=answered_by,
        start_ms=start_ms,
        answer_ms=start_ms + 4_250 if answered else None,
        end_ms=start_ms + 65_123,
        end_reason=end_reason,
        sip_status=200 if answered else 480,
        hangup_by=HangupBy.CALLER,
        route=route,
    )


SALES_ROUTE = (
    RouteStep(0.0, "plan:main step 1 (group)", "entered"),
    RouteStep(0.002, "group:sales", "ringing", "101"),
    RouteStep(0.003, "group:sales", "ringing", "102"),
    RouteStep(4.25, "group:sales", "answered", "101", 'reply 200 {"x": "y"} \'quoted\'\n'),
)


@dataclass
class Calls:
    """The calls of the scenario, by name, and the people of acme."""

    now_ms: int
    records: dict[str, CallRecord]
    ivan: uuid.UUID  # agent, extension 101
    petr: uuid.UUID  # agent, extension 102
    globex_101: uuid.UUID  # globex's user with extension 101


def scenario(now: int) -> list[CallRecord]:
    return [
        # Answered by 101 after ringing 101 and 102; an older node-lost version of it is
        # inserted first and must never show.
        call(
            "in-1@carrier",
            start_ms=now - 10 * MINUTE_MS,
            label="billboard",
            answered_by="101",
            route=SALES_ROUTE,
        ),
        # Nobody answered: 101 was skipped (on a call), only 102 rang.
        call(
            "in-2@carrier",
            start_ms=now - 20 * MINUTE_MS,
            dialled="+74950000002",
            label="radio",
            end_reason=EndReason.NO_ANSWER,
            route=(
                RouteStep(0.0, "group:sales", "skipped", "101", "on a call"),
                RouteStep(0.001, "group:sales", "ringing", "102"),
                RouteStep(20.0, "group:sales", "no-answer", None, "nobody answered in 20 s"),
                # Text that looks like an offer to 101 inside a detail is no offer.
                RouteStep(
                    20.01,
                    "plan:main step 2 (http decision)",
                    "decided",
                    None,
                    'reply 200 {"outcome":"ringing","member":"101"}',
                ),
            ),
        ),
        # Voicemail after a queue offered it to 102.
        call(
            "vm-3@carrier",
            start_ms=now - 30 * MINUTE_MS,
            end_reason=EndReason.VOICEMAIL,
            route=(
                RouteStep(0.0, "queue:support", "queued", None, "joined"),
                RouteStep(1.0, "queue:support", "queued", "102", "offered"),
                RouteStep(30.0, "voicemail:support", "recorded"),
            ),
        ),
        # 101 calls 102, who answers.
        call(
            "int-4",
            start_ms=now - 40 * MINUTE_MS,
            direction=Direction.INTERNAL,
            caller="101",
            dialled="102",
            answered_by="102",
            route=(
                RouteStep(0.0, "user:102", "ringing", "102"),
                RouteStep(2.0, "user:102", "answered", "102"),
            ),
        ),
        # Eight days ago: outside the default period.
        call("old-5@carrier", start_ms=now - 8 * DAY_MS, answered_by="101"),
        # Another tenant's call, answered by its own extension 101.
        call("globex-1@carrier", start_ms=now - 5 * MINUTE_MS, tenant="globex", answered_by="101"),
        # A Call-ID with a slash (legal in SIP) and quotes.
        call("odd/'id\"@host", start_ms=now - 50 * MINUTE_MS, end_reason=EndReason.CANCELLED),
    ]


def node_lost_version(record: CallRecord) -> CallRecord:
    """What a restarted node reconstructs from its journal: a lower version of the same call."""
    assert record.answer_ms is not None
    end_ms = record.answer_ms + 1_000
    return dataclasses.replace(
        record,
        end_ms=end_ms,
        talk_ms=end_ms - record.answer_ms,
        end_reason=EndReason.NODE_LOST,
        hangup_by=HangupBy.SYSTEM,
        route=record.route[:2],
    )


@dataclass
class Backend:
    name: str
    clickhouse_url: str | None
    chdb_path: Path

    def store(self) -> CdrStore:
        return open_cdr_store(self.clickhouse_url, self.chdb_path)


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = None
    if request.param == "clickhouse-18.16":
        url = request.getfixturevalue("clickhouse_database_url")
    return Backend(request.param, url, tmp_path / "chdb")


@pytest.fixture
async def calls_api(
    postgres_url: str, flushed_redis: str, tmp_path: Path, backend: Backend
) -> AsyncIterator[ApiHarness]:
    settings = control_settings(
        database_url=postgres_url,
        redis_url=flushed_redis,
        local_numbers_file=tmp_path / "numbers.yaml",
        clickhouse_url=backend.clickhouse_url,
        chdb_path=backend.chdb_path,
    )
    async with serve_api(settings) as harness:
        yield harness


@pytest.fixture
async def calls(calls_api: ApiHarness, backend: Backend) -> Calls:
    api = calls_api
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    ivan = await api.add_user("acme", extension="101", name="Ivan")
    petr = await api.add_user("acme", extension="102", name="Petr")
    globex_101 = await api.add_user("globex", extension="101", name="Globex 101")
    now = now_ms()
    records = scenario(now)
    store = backend.store()
    try:
        store.migrate()
        store.insert([node_lost_version(records[0])])  # a separate insert: a separate part
        store.insert(records)
    finally:
        store.close()
    return Calls(now, {r.call_id: r for r in records}, ivan.id, petr.id, globex_101.id)


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["call_id"] for item in response.json()["items"]]


def iso(ms: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)).isoformat()


RECENT_ACME = ["in-1@carrier", "in-2@carrier", "vm-3@carrier", "int-4", "odd/'id\"@host"]


# -- the list --------------------------------------------------------------------------------


async def test_list_is_newest_first_over_the_last_seven_days(
    calls_api: ApiHarness, calls: Calls
) -> None:
    admin = await calls_api.as_role("acme")
    response = await calls_api.client.get("/v1/calls", headers=admin)
    assert ids(response) == RECENT_ACME
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 50, 0)
    first = body["items"][0]
    record = calls.records["in-1@carrier"]
    assert first == {
        "call_id": "in-1@carrier",
        "direction": "inbound",
        "caller": "+79130000001",
        "number": "+74950000001",
        "label": "billboard",
        "answered_by": "101",
        "answered_by_user_id": str(calls.ivan),
        "started_at": first["started_at"],
        "answered_at": first["answered_at"],
        "ended_at": first["ended_at"],
        "ring_s": 4.25,
        "talk_s": 60.873,
        "end_reason": "completed",
        "sip_status": 200,
        "hangup_by": "caller",
        "city": "msk",
        "recording": None,
    }
    assert "route" not in first
    for field, ms in (
        ("started_at", record.start_ms),
        ("answered_at", record.answer_ms),
        ("ended_at", record.end_ms),
    ):
        assert ms is not None
        assert dt.datetime.fromisoformat(first[field]) == dt.datetime.fromisoformat(iso(ms))
    missed = body["items"][1]
    assert (missed["answered_by"], missed["answered_by_user_id"], missed["answered_at"]) == (
        None,
        None,
        None,
    )
    assert (missed["label"], missed["ring_s"], missed["talk_s"]) == ("radio", 65.123, 0.0)


async def test_pages(calls_api: ApiHarness, calls: Calls) -> None:
    admin = await calls_api.as_role("acme")
    response = await calls_api.client.get("/v1/calls?limit=2&offset=1", headers=admin)
    assert ids(response) == RECENT_ACME[1:3]
    assert (response.json()["total"], response.json()["limit"]) == (5, 2)
    beyond = await calls_api.client.get("/v1/calls?offset=50", headers=admin)
    assert ids(beyond) == []
    assert beyond.json()["total"] == 5


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("number=8 (495) 000-00-01", ["in-1@carrier", "vm-3@carrier", "odd/'id\"@host"]),
        ("number=+74950000002", ["in-2@carrier"]),
        ("direction=internal", ["int-4"]),
        ("status=answered", ["in-1@carrier", "int-4"]),
        ("status=missed", ["in-2@carrier", "vm-3@carrier", "odd/'id\"@host"]),
        ("status=voicemail", ["vm-3@carrier"]),
        ("status=no-answer", ["in-2@carrier"]),
        # Only an older version of in-1 ended node-lost; the latest one completed.
        ("status=node-lost", []),
        ("label=radio", ["in-2@carrier"]),
        ("label=x' OR '1'='1", []),
        ("direction=inbound&status=answered", ["in-1@carrier"]),
    ],
)
async def test_filters(
    calls_api: ApiHarness, calls: Calls, query: str, expected: list[str]
) -> None:
    admin = await calls_api.as_role("acme")
    response = await calls_api.client.get(f"/v1/calls?{query}", headers=admin)
    assert ids(response) == expected
    assert response.json()["total"] == len(expected)


async def test_period(calls_api: ApiHarness, calls: Calls) -> None:
    admin = await calls_api.as_role("acme")
    nine_days_ago = iso(calls.now_ms - 9 * DAY_MS)
    response = await calls_api.client.get(
        "/v1/calls", params={"from": nine_days_ago}, headers=admin
    )
    assert ids(response) == [*RECENT_ACME, "old-5@carrier"]
    # `to` alone: the seven days before it. `from` is inclusive, `to` exclusive.
    old = calls.records["old-5@carrier"]
    response = await calls_api.client.get(
        "/v1/calls", params={"to": iso(calls.now_ms - 7 * DAY_MS)}, headers=admin
    )
    assert ids(response) == ["old-5@carrier"]
    exact = {"from": iso(old.start_ms), "to": iso(old.start_ms + 1)}
    assert ids(await calls_api.client.get("/v1/calls", params=exact, headers=admin)) == [
        "old-5@carrier"
    ]
    exact = {"from": iso(old.start_ms - 1), "to": iso(old.start_ms)}
    assert ids(await calls_api.client.get("/v1/calls", params=exact, headers=admin)) == []
    # Any offset is the same instant.
    in_moscow = (
        dt.datetime.fromisoformat(iso(calls.now_ms - 15 * MINUTE_MS))
        .astimezone(dt.timezone(dt.timedelta(hours=3)))
        .isoformat()
    )
    response = await calls_api.client.get("/v1/calls", params={"from": in_moscow}, headers=admin)
    assert ids(response) == ["in-1@carrier"]


async def test_user_filter_finds_the_calls_a_user_answered_was_offered_or_placed(
    calls_api: ApiHarness, calls: Calls
) -> None:
    admin = await calls_api.as_role("acme")
    get = calls_api.client.get
    # 101 answered in-1 and placed int-4; in in-2 it was skipped, not rung.
    ivan = await get("/v1/calls", params={"user": str(calls.ivan)}, headers=admin)
    assert ids(ivan) == ["in-1@carrier", "int-4"]
    # 102 rang in in-1 and in-2, was offered vm-3 by the queue and answered int-4.
    petr = await get("/v1/calls", params={"user": str(calls.petr)}, headers=admin)
    assert ids(petr) == ["in-1@carrier", "in-2@carrier", "vm-3@carrier", "int-4"]
    both = await get(
        "/v1/calls", params={"user": str(calls.petr), "status": "answered"}, headers=admin
    )
    assert ids(both) == ["in-1@carrier", "int-4"]
    # A user without an extension, one of another tenant, nobody: no calls, nothing revealed.
    nobody = await calls_api.add_user("acme", name="No Phone")
    globex_user = await calls_api.add_user("globex", extension="102")
    for user_id in (nobody.id, globex_user.id, uuid.uuid4()):
        response = await get("/v1/calls", params={"user": str(user_id)}, headers=admin)
        assert ids(response) == []
        assert response.json()["total"] == 0


# -- one call ----------------------------------------------------------------------------------


async def test_detail_has_the_route(calls_api: ApiHarness, calls: Calls) -> None:
    admin = await calls_api.as_role("acme")
    response = await calls_api.client.get("/v1/calls/in-1@carrier", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    listed = (await calls_api.client.get("/v1/calls?limit=1", headers=admin)).json()["items"][0]
    assert {key: value for key, value in body.items() if key != "route"} == listed
    assert body["route"] == [step.to_json() for step in SALES_ROUTE]
    assert body["route"][3] == {
        "after_s": 4.25,
        "subject": "group:sales",
        "outcome": "answered",
        "member": "101",
        "detail": 'reply 200 {"x": "y"} \'quoted\'\n',
    }
    odd = await calls_api.client.get("/v1/calls/odd%2F'id%22@host", headers=admin)
    assert odd.status_code == 200, odd.text
    assert (odd.json()["call_id"], odd.json()["route"]) == ("odd/'id\"@host", [])


async def test_unknown_call_is_not_found(calls_api: ApiHarness, calls: Calls) -> None:
    admin = await calls_api.as_role("acme")
    for call_id in ("nope", "in-1", "x' OR '1'='1"):
        response = await calls_api.client.get(f"/v1/calls/{call_id}", headers=admin)
        assert response.status_code == 404, response.text
        assert response.json()["error_id"] == "call-not-found"


# -- who sees what -----------------------------------------------------------------------------


async def test_agents_see_the_calls_of_their_extension(calls_api: ApiHarness, calls: Calls) -> None:
    api = calls_api
    password = "correct horse battery staple"
    token_101 = await api.login(await _email(api, calls.ivan), password)
    token_102 = await api.login(await _email(api, calls.petr), password)
    assert ids(await api.client.get("/v1/calls", headers=token_101)) == ["in-1@carrier", "int-4"]
    assert ids(await api.client.get("/v1/calls", headers=token_102)) == [
        "in-1@carrier",
        "in-2@carrier",
        "vm-3@carrier",
        "int-4",
    ]
    # The agent's view and the filters combine.
    response = await api.client.get(
        "/v1/calls", params={"user": str(calls.petr)}, headers=token_101
    )
    assert ids(response) == ["in-1@carrier", "int-4"]
    for mine in ("int-4", "old-5@carrier"):  # a call's detail is not limited to a period
        assert (await api.client.get(f"/v1/calls/{mine}", headers=token_101)).status_code == 200
    for hidden in ("in-2@carrier", "vm-3@carrier", "globex-1@carrier"):
        response = await api.client.get(f"/v1/calls/{hidden}", headers=token_101)
        assert response.status_code == 404, (hidden, response.text)
        assert response.json()["error_id"] == "call-not-found"
    # An agent without an extension, or an agent API key (no person behind it): no calls.
    for headers in (await api.as_role("acme", Role.AGENT), await api.api_key("acme", Role.AGENT)):
        response = await api.client.get("/v1/calls", headers=headers)
        assert (ids(response), response.json()["total"]) == ([], 0)
        assert (await api.client.get("/v1/calls/int-4", headers=headers)).status_code == 404


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.TENANT_ADMIN])
async def test_supervisors_and_admins_see_every_call(
    calls_api: ApiHarness, calls: Calls, role: Role
) -> None:
    for headers in (await calls_api.as_role("acme", role), await calls_api.api_key("acme", role)):
        assert ids(await calls_api.client.get("/v1/calls", headers=headers)) == RECENT_ACME
        response = await calls_api.client.get("/v1/calls/in-2@carrier", headers=headers)
        assert response.status_code == 200


async def test_another_tenants_calls_are_invisible(calls_api: ApiHarness, calls: Calls) -> None:
    api = calls_api
    globex = await api.as_role("globex")
    listed = await api.client.get("/v1/calls", params={"status": "answered"}, headers=globex)
    assert ids(listed) == ["globex-1@carrier"]
    # Its extension 101 is globex's own user, not acme's 101.
    assert listed.json()["items"][0]["answered_by_user_id"] == str(calls.globex_101)
    for call_id in RECENT_ACME:
        response = await api.client.get(f"/v1/calls/{call_id.replace('/', '%2F')}", headers=globex)
        assert response.status_code == 404, (call_id, response.text)
        assert response.json()["error_id"] == "call-not-found"
    acme = await api.as_role("acme")
    assert (await api.client.get("/v1/calls/globex-1@carrier", headers=acme)).status_code == 404


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "error_id"),
    [
        ({"from": "yesterday"}, "query.from", "validation-failed"),
        ({"from": "2025-11-22T10:00:00"}, "query.from", "validation-failed"),  # no offset
        ({"to": "2025-13-01T00:00:00Z"}, "query.to", "validation-failed"),
        (
            {"from": "2025-11-22T10:00:00Z", "to": "2025-11-22T13:00:00+03:00"},
            "query.from",
            "time-range-inverted",
        ),
        ({"number": "not a number"}, "query.number", "validation-failed"),
        ({"user": "ivan"}, "query.user", "validation-failed"),
        ({"status": "lost"}, "query.status", "validation-failed"),
        ({"direction": "sideways"}, "query.direction", "validation-failed"),
        ({"limit": "0"}, "query.limit", "validation-failed"),
    ],
)
async def test_bad_filters_are_422_naming_the_field(
    api: ApiHarness, params: dict[str, str], field: str, error_id: str
) -> None:
    await api.add_tenant("acme")
    response = await api.client.get("/v1/calls", params=params, headers=await api.as_role("acme"))
    assert response.status_code == 422, response.text
    assert response.json()["error_id"] == error_id
    assert [detail["field"] for detail in response.json()["details"]] == [field]


def test_every_end_reason_is_a_status() -> None:
    for reason in EndReason:
        assert CallStatus(reason.value).end_reason is reason
    assert CallStatus.ANSWERED.end_reason is None
    assert CallStatus.MISSED.end_reason is None


# -- the store ---------------------------------------------------------------------------------


@pytest.fixture
def unreachable_clickhouse() -> str:
    # A free port nothing listens on: connections are refused at once.
    return f"clickhouse://127.0.0.1:{free_port()}/default?connect_timeout=1"


async def test_without_a_store_calls_are_503(
    postgres_url: str, flushed_redis: str, tmp_path: Path, unreachable_clickhouse: str
) -> None:
    base = {
        "database_url": postgres_url,
        "redis_url": flushed_redis,
        "local_numbers_file": tmp_path / "numbers.yaml",
    }
    cases = (
        (control_settings(**base), "cdr-store-not-configured"),  # not local mode, no path
        (control_settings(**base, clickhouse_url=unreachable_clickhouse), "cdr-store-unavailable"),
    )
    for index, (settings, error_id) in enumerate(cases):
        async with serve_api(settings) as api:
            if index == 0:  # one database for both
                await api.add_tenant("acme")
            admin = await api.as_role("acme")
            for path in ("/v1/calls", "/v1/calls/in-1"):
                response = await api.client.get(path, headers=admin)
                assert response.status_code == 503, response.text
                assert response.json()["error_id"] == error_id
            # The rest of the API does not depend on the CDR store.
            assert (await api.client.get("/v1/users", headers=admin)).status_code == 200
            assert (await api.client.get("/readyz")).status_code == 200


async def _email(api: ApiHarness, user_id: uuid.UUID) -> str:
    from vpbx_control.users.models import UserRow

    async with api.context.database.session() as session:
        row = await session.get(UserRow, user_id)
        assert row is not None
        return row.email

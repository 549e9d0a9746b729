"""/v1/reports/calls and /v1/reports/clients on a real chdb CDR store, through the API.

A small set of calls is described once as plain data (``SCENARIO``); the CDRs are built from
it and written through CdrStore.insert as the media nodes' shipper writes them, and the
expected figures are counted from the same data here, in Python, without the report's SQL.
The set has the edges a user notices: a call at 23:59 and one at 00:30 Moscow time (which
is still the previous day in UTC), calls just outside the period, a missed caller called
back later and one never called back, and another tenant's calls, one of which calls acme's
missed caller back (it must not count as acme's callback).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import zoneinfo
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import openpyxl
import pytest
import pytest_asyncio
from tests.services.control_api import ApiHarness

from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, open_cdr_store
from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")  # module_api's loop

MSK = "Europe/Moscow"
WEEK: dict[str, Any] = {"from": "2026-12-01", "to": "2026-12-07"}


@dataclass(frozen=True)
class Call:
    """One call as the test sees it; ``ring_s`` is start to answer (or to the end if missed)."""

    call_id: str
    tenant: str
    local: dt.datetime  # start, Moscow time
    caller: str
    dialled: str
    label: str
    answered_by: str = ""
    ring_s: int = 5
    talk_s: int = 0
    direction: Direction = Direction.INBOUND
    contact: str = ""
    category: str = ""
    vip: bool = False

    @property
    def answered(self) -> bool:
        return bool(self.answered_by)

    @property
    def start_ms(self) -> int:
        return int(self.local.timestamp() * 1000)

    def record(self) -> CallRecord:
        answer_ms = self.start_ms + self.ring_s * 1000 if self.answered else None
        end_ms = self.start_ms + (self.ring_s + self.talk_s) * 1000
        return CallRecord.build(
            call_id=self.call_id,
            tenant=self.tenant,
            city="msk",
            node=f"{self.tenant}-msk-0",
            direction=self.direction,
            caller=self.caller,
            dialled=self.dialled,
            label=self.label,
            answered_by=self.answered_by,
            start_ms=self.start_ms,
            answer_ms=answer_ms,
            end_ms=end_ms,
            end_reason=EndReason.COMPLETED if self.answered else EndReason.NO_ANSWER,
            sip_status=200 if self.answered else 480,
            hangup_by=HangupBy.CALLER,
            contact_id=self.contact,
            contact_category=self.category,
            contact_vip=self.vip,
        )


def msk(day: int, hour: int, minute: int = 0, month: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=zoneinfo.ZoneInfo(MSK))


YANDEX, RADIO = "+74950000001", "+74950000002"
SCENARIO = (
    Call(
        "a1",
        "acme",
        msk(1, 10),
        "+79130000001",
        YANDEX,
        "yandex",
        "101",
        2,
        60,
        contact="c-1",
        category="wholesale",
    ),
    Call("a2", "acme", msk(1, 23, 59), "+79130000002", YANDEX, "yandex", ring_s=30),
    # 00:30 in Moscow is 21:30 of the day before in UTC.
    Call(
        "a3",
        "acme",
        msk(2, 0, 30),
        "+79130000003",
        RADIO,
        "radio",
        ring_s=20,
        contact="c-3",
        category="retail",
        vip=True,
    ),
    Call(
        "a4",
        "acme",
        msk(3, 9),
        "+79130000001",
        YANDEX,
        "yandex",
        "102",
        5,
        120,
        contact="c-1",
        category="wholesale",
    ),
    Call("a5", "acme", msk(5, 15), "+79130000004", YANDEX, "yandex", "103", 9, 30),
    # 102 calls a3's caller back.
    Call(
        "o1",
        "acme",
        msk(3, 12),
        "102",
        "+79130000003",
        "",
        "+79130000003",
        3,
        45,
        direction=Direction.OUTBOUND,
    ),
    # Outside the Moscow week: the minute before it, and its end (7 Dec 21:00 UTC, which
    # a UTC week of the same dates includes).
    Call("x1", "acme", msk(30, 23, 59, month=11), "+79130000006", YANDEX, "yandex", "101", 1, 5),
    Call("x2", "acme", msk(8, 0), "+79130000005", YANDEX, "yandex", ring_s=15),
    # globex: its own call, and a call to acme's missed caller a2 (not acme's callback).
    Call(
        "g1",
        "globex",
        msk(2, 10),
        "+79130000009",
        "+74990000001",
        "tv",
        "101",
        3,
        40,
        contact="g-1",
        category="retail",
        vip=True,
    ),
    Call(
        "g2",
        "globex",
        msk(4, 10),
        "101",
        "+79130000002",
        "",
        "+79130000002",
        2,
        50,
        direction=Direction.OUTBOUND,
    ),
)


# -- the expected figures, counted in Python ---------------------------------------------


def in_period(call: Call, tenant: str, first: dt.date, last: dt.date, tz: str) -> bool:
    day = call.local.astimezone(zoneinfo.ZoneInfo(tz)).date()
    return call.tenant == tenant and first <= day <= last


def called_back(missed: Call) -> bool:
    """A later answered call of the same tenant connecting the missed caller's number."""
    return any(
        other.tenant == missed.tenant
        and other.answered
        and other.start_ms > missed.start_ms
        and missed.caller in (other.caller, other.dialled)
        for other in SCENARIO
    )


def nearest_rank(values: list[int], q: float) -> float | None:
    """The q-quantile by nearest rank. Every group of the scenario has an odd number of
    answered calls (or one), where the common definitions agree."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[math.ceil(q * len(ordered)) - 1])


def figures(key: str, calls: list[Call]) -> dict[str, Any]:
    answered = [c for c in calls if c.answered]
    missed = [c for c in calls if not c.answered]
    rings = [c.ring_s for c in answered]
    return {
        "key": key,
        "total": len(calls),
        "answered": len(answered),
        "missed": len(missed),
        "missed_not_called_back": sum(1 for c in missed if not called_back(c)),
        "answer_p50_s": nearest_rank(rings, 0.5),
        "answer_p90_s": nearest_rank(rings, 0.9),
        "talk_s": float(sum(c.talk_s for c in answered)),
    }


def expected_calls(
    key_of: Callable[[Call, dt.datetime], str], tz: str = MSK, tenant: str = "acme"
) -> dict[str, Any]:
    first, last = dt.date(2026, 12, 1), dt.date(2026, 12, 7)
    calls = [
        c
        for c in SCENARIO
        if c.direction is Direction.INBOUND and in_period(c, tenant, first, last, tz)
    ]
    groups: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        groups[key_of(call, call.local.astimezone(zoneinfo.ZoneInfo(tz)))].append(call)
    return {
        "rows": [figures(key, groups[key]) for key in sorted(groups)],
        "totals": figures("total", calls),
    }


FIXED = (
    *("key", "total", "answered", "missed", "missed_not_called_back"),
    *("answer_p50_s", "answer_p90_s", "talk_s"),
)


def fixed_fields(document: dict[str, Any]) -> dict[str, Any]:
    """The issue's fixed fields of a calls report (the report has more)."""
    return {
        "rows": [{f: row[f] for f in FIXED} for row in document["rows"]],
        "totals": {f: document["totals"][f] for f in FIXED},
    }


# -- the app and the calls ---------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reports_api(module_api: ApiHarness) -> AsyncIterator[ApiHarness]:
    api = module_api
    for tenant in ("acme", "globex"):
        await api.add_tenant(tenant)
    chdb = api.settings.cdr_chdb_path
    assert chdb is not None
    store = open_cdr_store(None, chdb)
    try:
        store.migrate()
        store.insert([call.record() for call in SCENARIO])
    finally:
        store.close()
    yield api


async def get(api: ApiHarness, path: str, *, role: Role = Role.SUPERVISOR, **params: Any) -> Any:
    headers = await api.as_role(str(params.pop("tenant", "acme")), role)
    return await api.client.get(path, params=params, headers=headers)


async def report(api: ApiHarness, path: str, **params: Any) -> dict[str, Any]:
    response = await get(api, path, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


KEYS: dict[str, Callable[[Call, dt.datetime], str]] = {
    "day": lambda _, local: local.date().isoformat(),
    "week": lambda _, local: (local.date() - dt.timedelta(days=local.weekday())).isoformat(),
    "month": lambda _, local: f"{local.year:04d}-{local.month:02d}",
    "hour": lambda _, local: f"{local.hour:02d}",
    "weekday": lambda _, local: str(local.isoweekday()),
    "user": lambda call, _: call.answered_by,  # the missed ones rang nobody: ''
    "number": lambda call, _: call.dialled,
    "label": lambda call, _: call.label,
}


@pytest.mark.parametrize("group_by", list(KEYS))
async def test_calls_by_every_key_in_moscow_time(reports_api: ApiHarness, group_by: str) -> None:
    body = await report(reports_api, "/v1/reports/calls", tz=MSK, group_by=group_by, **WEEK)
    assert fixed_fields(body) == expected_calls(KEYS[group_by])
    assert (body["group_by"], body["direction"]) == (group_by, "inbound")
    assert body["period"] == {
        "from": "2026-12-01",
        "to": "2026-12-07",
        "tz": MSK,
        "start_ms": int(msk(1, 0).timestamp() * 1000),
        "end_ms": int(msk(8, 0).timestamp() * 1000),
    }


async def test_the_days_follow_the_time_zone(reports_api: ApiHarness) -> None:
    moscow = await report(reports_api, "/v1/reports/calls", tz=MSK, **WEEK)
    utc = await report(reports_api, "/v1/reports/calls", tz="UTC", **WEEK)
    # What a user sees: 23:59 stays on the 1st in Moscow, 00:30 is the 2nd; in UTC both
    # are the 1st, and the Moscow 8th's first minutes are the UTC 7th.
    assert [(r["key"], r["total"]) for r in moscow["rows"]] == [
        ("2026-12-01", 2),
        ("2026-12-02", 1),
        ("2026-12-03", 1),
        ("2026-12-05", 1),
    ]
    assert fixed_fields(utc) == expected_calls(KEYS["day"], tz="UTC")
    assert [(r["key"], r["total"]) for r in utc["rows"]] == [
        ("2026-12-01", 3),
        ("2026-12-03", 1),
        ("2026-12-05", 1),
        ("2026-12-07", 1),
    ]


async def test_the_default_tz_is_utc(reports_api: ApiHarness) -> None:
    utc = await report(reports_api, "/v1/reports/calls", **WEEK)
    assert utc["period"]["tz"] == "UTC"
    assert fixed_fields(utc) == expected_calls(KEYS["day"], tz="UTC")


async def test_direction_and_service_level(reports_api: ApiHarness) -> None:
    everything = await report(reports_api, "/v1/reports/calls", tz=MSK, direction="all", **WEEK)
    assert everything["totals"]["total"] == 6  # the five inbound and the callback o1
    outbound = await report(reports_api, "/v1/reports/calls", tz=MSK, direction="outbound", **WEEK)
    assert (outbound["totals"]["total"], outbound["totals"]["talk_s"]) == (1, 45.0)
    # Answered within 5 s: a1 (2 s) and a4 (5 s) of the five inbound calls.
    within = await report(reports_api, "/v1/reports/calls", tz=MSK, service_level_s=5, **WEEK)
    assert (within["service_level_s"], within["totals"]["answered_within_sl"]) == (5, 2)
    assert within["totals"]["service_level"] == pytest.approx(2 / 5)


async def test_another_tenants_calls_never_count(reports_api: ApiHarness) -> None:
    acme = await report(reports_api, "/v1/reports/calls", tz=MSK, group_by="user", **WEEK)
    # globex's 101 answered g1 and called acme's missed caller back: neither is acme's.
    assert [r["key"] for r in acme["rows"]] == ["", "101", "102", "103"]
    assert acme["totals"]["missed_not_called_back"] == 1  # a2 is still not called back
    globex = await report(reports_api, "/v1/reports/calls", tenant="globex", tz=MSK, **WEEK)
    assert fixed_fields(globex) == expected_calls(KEYS["day"], tenant="globex")
    assert globex["totals"]["total"] == 1
    clients = await report(reports_api, "/v1/reports/clients", tenant="globex", tz=MSK, **WEEK)
    assert (clients["total"], clients["vip"], clients["by_category"]) == (1, 1, {"retail": 1})


async def test_clients(reports_api: ApiHarness) -> None:
    body = await report(reports_api, "/v1/reports/clients", tz=MSK, **WEEK)
    inbound = [
        c
        for c in SCENARIO
        if c.direction is Direction.INBOUND
        and in_period(c, "acme", dt.date(2026, 12, 1), dt.date(2026, 12, 7), MSK)
    ]
    known = [c for c in inbound if c.contact]
    categories: dict[str, int] = defaultdict(int)
    for call in known:
        categories[call.category] += 1
    expected = {
        "total": len(inbound),
        "existing": len(known),
        "unknown": len(inbound) - len(known),
        "vip": sum(1 for c in inbound if c.vip),
        "by_category": dict(categories),
    }
    assert {key: body[key] for key in expected} == expected
    assert expected == {
        "total": 5,
        "existing": 3,
        "unknown": 2,
        "vip": 1,
        "by_category": {"wholesale": 2, "retail": 1},
    }
    # +79130000001 called twice (a1, a4).
    assert body["repeated"] == [{"number": "+79130000001", "calls": 2}]


# -- exports -------------------------------------------------------------------------------


async def test_csv_export_parses_back_to_the_report(reports_api: ApiHarness) -> None:
    api = reports_api
    params: dict[str, Any] = {"tz": MSK, **WEEK}
    json_body = await report(api, "/v1/reports/calls", **params)
    headers = {**await api.as_role("acme", Role.SUPERVISOR), "Accept": "text/csv"}
    response = await api.client.get("/v1/reports/calls", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="calls-2026-12-01_2026-12-07.csv"'
    )
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    expected = [*json_body["rows"], json_body["totals"]]
    assert [row["key"] for row in rows] == [row["key"] for row in expected]
    for got, want in zip(rows, expected, strict=True):
        for field in FIXED:
            value = want[field]
            assert got[field] == ("" if value is None else str(value)), field
    # ?format=csv says the same.
    by_query = await get(api, "/v1/reports/calls", format="csv", **params)
    assert by_query.content == response.content


async def test_xlsx_export_has_a_header_and_numbers(reports_api: ApiHarness) -> None:
    api = reports_api
    params: dict[str, Any] = {"tz": MSK, "group_by": "label", **WEEK}
    json_body = await report(api, "/v1/reports/calls", **params)
    response = await get(api, "/v1/reports/calls", format="xlsx", **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert response.headers["content-disposition"] == (
        'attachment; filename="calls-2026-12-01_2026-12-07.xlsx"'
    )
    workbook = openpyxl.load_workbook(io.BytesIO(response.content))
    sheet = workbook["calls"]
    table = [[cell.value for cell in row] for row in sheet.iter_rows()]
    header, *rows = table
    assert header[0] == "key"
    assert set(FIXED) <= set(header)
    expected = [*json_body["rows"], json_body["totals"]]
    assert [dict(zip(header, row, strict=True)) for row in rows] == expected
    # Numbers are numeric cells (a spreadsheet sums them), not text.
    talk = [row[header.index("talk_s")] for row in rows]
    assert all(isinstance(value, int | float) for value in talk)
    assert talk[-1] == 210


async def test_clients_exports(reports_api: ApiHarness) -> None:
    api = reports_api
    params: dict[str, Any] = {"tz": MSK, **WEEK}
    as_csv = await get(api, "/v1/reports/clients", format="csv", **params)
    assert as_csv.status_code == 200, as_csv.text
    figures = dict(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert figures["figure"] == "value"
    assert (figures["total"], figures["existing"], figures["unknown"]) == ("5", "3", "2")
    assert (figures["by_category.wholesale"], figures["by_category.retail"]) == ("2", "1")
    headers = {
        **await api.as_role("acme", Role.SUPERVISOR),
        "Accept": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    as_xlsx = await api.client.get("/v1/reports/clients", params=params, headers=headers)
    workbook = openpyxl.load_workbook(io.BytesIO(as_xlsx.content))
    summary = {row[0].value: row[1].value for row in workbook["clients"].iter_rows(min_row=2)}
    assert (summary["total"], summary["vip"], summary["by_category.retail"]) == (5, 1, 1)
    repeated = [[c.value for c in row] for row in workbook["repeated"].iter_rows()]
    assert repeated == [["number", "calls"], ["+79130000001", 2]]


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01", "to": "2026-12-07"}, "query.from"),
        ({"from": "2026-12-01", "to": "yesterday"}, "query.to"),
        ({"from": "2026-12-08", "to": "2026-12-07"}, "query.from"),
        ({"from": "2025-11-01", "to": "2026-12-06"}, "query.to"),  # 401 days; 400 is the most
        ({"from": "1900-01-01", "to": "1900-01-02"}, "query.from"),
        ({"tz": "Mars/Olympus_Mons", **WEEK}, "query.tz"),
        ({"tz": "", **WEEK}, "query.tz"),
        ({"group_by": "year", **WEEK}, "query.group_by"),
        ({"direction": "sideways", **WEEK}, "query.direction"),
        ({"service_level_s": "-1", **WEEK}, "query.service_level_s"),
        ({"format": "pdf", **WEEK}, "query.format"),
    ],
)
async def test_bad_queries_are_422_naming_the_field(
    reports_api: ApiHarness, params: dict[str, Any], field: str
) -> None:
    response = await get(reports_api, "/v1/reports/calls", **params)
    assert response.status_code == 422, response.text
    assert [detail["field"] for detail in response.json()["details"]] == [field]


async def test_four_hundred_days_are_allowed(reports_api: ApiHarness) -> None:
    body = await report(
        reports_api, "/v1/reports/calls", **{"from": "2025-11-03", "to": "2026-12-07"}
    )
    assert body["totals"]["total"] == 7  # every inbound call of acme (x1 and x2 too)


@pytest.mark.parametrize("path", ["/v1/reports/calls", "/v1/reports/clients"])
async def test_agents_may_not_read_reports(reports_api: ApiHarness, path: str) -> None:
    assert (await get(reports_api, path, role=Role.AGENT, **WEEK)).status_code == 403
    assert (await get(reports_api, path, role=Role.TENANT_ADMIN, **WEEK)).status_code == 200

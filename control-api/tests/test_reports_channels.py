"""/v1/reports/channels and /v1/reports/managers on a real chdb store, through the API.

Calls and deal steps are written through the CDR store as the media nodes and the CRM ship
them; the spend is entered through /v1/ad-channels. The period is 16 November to 15 December
2026 (UTC): half of November (30 days) and half of December (31 days), so each month's spend
counts for 15 of its days. The expected figures are worked out below by hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openpyxl
import pytest
import pytest_asyncio
from tests.services.control_api import ApiHarness

from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, open_cdr_store
from vpbx_common.cdr.deals import DealEvent, DealEventKind
from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")  # module_api's loop

PERIOD: dict[str, Any] = {"from": "2026-11-16", "to": "2026-12-15", "tz": "UTC"}


def utc_ms(month: int, day: int, hour: int = 12) -> int:
    return int(dt.datetime(2026, month, day, hour, tzinfo=dt.UTC).timestamp() * 1000)


def call(
    call_id: str,
    start_ms: int,
    caller: str,
    label: str,
    answered_by: str = "",
    tenant: str = "acme",
    talk_s: int = 60,
) -> CallRecord:
    answer_ms = start_ms + 4_000 if answered_by else None
    return CallRecord.build(
        call_id=call_id,
        tenant=tenant,
        city="msk",
        node=f"{tenant}-msk-0",
        direction=Direction.INBOUND,
        caller=caller,
        dialled="+74950000001",
        label=label,
        answered_by=answered_by,
        start_ms=start_ms,
        answer_ms=answer_ms,
        end_ms=(answer_ms or start_ms) + (talk_s * 1000 if answered_by else 20_000),
        end_reason=EndReason.COMPLETED if answered_by else EndReason.NO_ANSWER,
        sip_status=200 if answered_by else 480,
        hangup_by=HangupBy.CALLER,
    )


CALLS = (
    # +79130000003 first called in October: not a first-time caller in the period.
    call("r0", utc_ms(10, 1), "+79130000003", "radio", "101"),
    call("y1", utc_ms(11, 20), "+79130000001", "yandex", "101", talk_s=100),  # first time
    call("y2", utc_ms(12, 1), "+79130000001", "yandex", "102", talk_s=200),  # a second call
    call("y3", utc_ms(12, 10), "+79130000002", "yandex"),  # first time, missed
    call("r1", utc_ms(12, 5), "+79130000003", "radio", "101", talk_s=30),
    call("r2", utc_ms(12, 12), "+79130000004", "radio", "105", talk_s=10),  # first time
    call("late", utc_ms(12, 16), "+79130000005", "radio", "101"),  # after the period
    call("g1", utc_ms(12, 2), "+79130000009", "yandex", "101", tenant="globex"),
)


@dataclass
class People:
    ivan: uuid.UUID  # extension 101
    petr: uuid.UUID  # extension 102


def deal_events(people: People) -> list[DealEvent]:
    ivan, petr = str(people.ivan), str(people.petr)

    def event(n: int, deal: str, kind: DealEventKind, at_ms: int, **fields: Any) -> DealEvent:
        tenant = str(fields.pop("tenant", "acme"))
        return DealEvent(tenant, f"e{n}", deal, kind, at_ms, **fields)

    return [
        # Ivan's deal from yandex, closed (won) by Petr: 50 000.00 RUB.
        event(
            1,
            "d1",
            DealEventKind.CREATED,
            utc_ms(11, 21),
            label="yandex",
            user_id=ivan,
            owner_user_id=ivan,
        ),
        event(
            2,
            "d1",
            DealEventKind.WON,
            utc_ms(12, 3),
            label="yandex",
            user_id=petr,
            owner_user_id=ivan,
            amount=5_000_000,
            currency="RUB",
        ),
        # A radio deal Ivan created and lost.
        event(
            3,
            "d2",
            DealEventKind.CREATED,
            utc_ms(12, 6),
            label="radio",
            user_id=ivan,
            owner_user_id=ivan,
        ),
        event(
            4,
            "d2",
            DealEventKind.LOST,
            utc_ms(12, 8),
            label="radio",
            user_id=ivan,
            owner_user_id=ivan,
        ),
        # globex's win by the same label is not acme's.
        event(
            5,
            "g-d1",
            DealEventKind.WON,
            utc_ms(12, 4),
            label="yandex",
            amount=100,
            currency="RUB",
            tenant="globex",
        ),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channels_api(module_api: ApiHarness) -> AsyncIterator[tuple[ApiHarness, People]]:
    api = module_api
    for tenant in ("acme", "globex"):
        await api.add_tenant(tenant)
    ivan = await api.add_user("acme", extension="101", name="Ivan")
    petr = await api.add_user("acme", extension="102", name="Petr")
    people = People(ivan.id, petr.id)
    chdb = api.settings.cdr_chdb_path
    assert chdb is not None
    store = open_cdr_store(None, chdb)
    try:
        store.migrate()
        store.insert(list(CALLS))
        store.insert_deal_events(deal_events(people))
    finally:
        store.close()
    admin = await api.as_role("acme")
    for label, month, amount in (
        ("yandex", "2026-11", "30000.00"),  # 1000 a day
        ("yandex", "2026-12", "31000.00"),  # 1000 a day
        ("radio", "2026-12", "3100.00"),  # 100 a day
        ("radio", "2027-01", "99999.00"),  # after the period
        ("billboard", "2026-11", "600.00"),  # 20 a day; no calls
    ):
        put = await api.client.put(
            f"/v1/ad-channels/{label}/spend/{month}", json={"amount": amount}, headers=admin
        )
        assert put.status_code == 201, put.text
    globex = await api.as_role("globex")
    put = await api.client.put(
        "/v1/ad-channels/yandex/spend/2026-12", json={"amount": "77777.00"}, headers=globex
    )
    assert put.status_code == 201, put.text
    yield api, people


async def get(api: ApiHarness, path: str, *, tenant: str = "acme", **params: Any) -> Any:
    headers = await api.as_role(tenant, Role.SUPERVISOR)
    return await api.client.get(path, params={**PERIOD, **params}, headers=headers)


FIELDS = ("calls", "first_time_callers", "deals_won", "spend", "cost_per_call", "cost_per_won_deal")


async def test_channels_with_spend_and_costs(channels_api: tuple[ApiHarness, People]) -> None:
    api, _ = channels_api
    response = await get(api, "/v1/reports/channels")
    assert response.status_code == 200, response.text
    body = response.json()
    rows = {row["label"]: {f: row[f] for f in FIELDS} for row in body["rows"]}
    assert rows == {
        # y1, y2, y3; first-time: +79130000001 (y1) and +79130000002 (y3); d1 won.
        # Spend: 15 days of November (15 000) and 15 of December (15 000).
        "yandex": {
            "calls": 3,
            "first_time_callers": 2,
            "deals_won": 1,
            "spend": "30000.00",
            "cost_per_call": "10000.00",
            "cost_per_won_deal": "30000.00",
        },
        # r1 (a caller known since October) and r2 (first time); d2 was lost.
        # Spend: 15 days of December at 100.
        "radio": {
            "calls": 2,
            "first_time_callers": 1,
            "deals_won": 0,
            "spend": "1500.00",
            "cost_per_call": "750.00",
            "cost_per_won_deal": None,
        },
        # Spend and nothing else: 15 days of November at 20.
        "billboard": {
            "calls": 0,
            "first_time_callers": 0,
            "deals_won": 0,
            "spend": "300.00",
            "cost_per_call": None,
            "cost_per_won_deal": None,
        },
    }
    assert body["currency"] == "RUB"
    yandex = next(row for row in body["rows"] if row["label"] == "yandex")
    assert yandex["won_amount"] == "50000.00"
    assert yandex["cost_per_new_client"] == "15000.00"
    assert (body["totals"]["calls"], body["totals"]["spend"]) == (5, "31800.00")


async def test_another_tenants_calls_deals_and_spend_never_count(
    channels_api: tuple[ApiHarness, People],
) -> None:
    api, _ = channels_api
    body = (await get(api, "/v1/reports/channels", tenant="globex")).json()
    rows = {row["label"]: {f: row[f] for f in FIELDS} for row in body["rows"]}
    # 15 of December's 31 days of 77 777.00: 37 633.06 (1 166 655 / 31 = 37 634.032...).
    assert rows == {
        "yandex": {
            "calls": 1,
            "first_time_callers": 1,
            "deals_won": 1,
            "spend": "37634.03",
            "cost_per_call": "37634.03",
            "cost_per_won_deal": "37634.03",
        }
    }


async def test_managers_are_named_users(channels_api: tuple[ApiHarness, People]) -> None:
    api, people = channels_api
    response = await get(api, "/v1/reports/managers")
    assert response.status_code == 200, response.text
    rows = {row["key"]: row for row in response.json()["rows"]}
    ivan, petr = str(people.ivan), str(people.petr)
    assert set(rows) == {ivan, petr, "105"}
    picked = (
        *("user_id", "name", "extensions", "offered", "answered", "talk_s"),
        *("clients_brought", "deals_created", "deals_moved", "deals_won", "deals_closed"),
    )
    got = {key: {f: row[f] for f in picked} for key, row in rows.items()}
    assert got[ivan] == {
        "user_id": ivan,
        "name": "Ivan",
        "extensions": ["101"],
        "offered": 2,  # y1, r1 (r0 and `late` are outside the period)
        "answered": 2,
        "talk_s": 130.0,
        "clients_brought": 1,  # y1 was +79130000001's first call
        "deals_created": 2,
        "deals_moved": 1,  # lost d2
        "deals_won": 1,  # d1: he was responsible when it was won
        "deals_closed": 0,
    }
    assert got[petr] == {
        "user_id": petr,
        "name": "Petr",
        "extensions": ["102"],
        "offered": 1,
        "answered": 1,
        "talk_s": 200.0,
        "clients_brought": 0,
        "deals_created": 0,
        "deals_moved": 1,  # the winning step of d1
        "deals_won": 0,
        "deals_closed": 1,
    }
    # An extension nobody has now keeps its own row, unnamed.
    assert (got["105"]["user_id"], got["105"]["name"], got["105"]["answered"]) == ("", None, 1)
    assert rows[ivan]["won_amounts"] == {"RUB": "50000.00"}


async def test_channel_exports_have_money_as_numbers(
    channels_api: tuple[ApiHarness, People],
) -> None:
    api, _ = channels_api
    as_xlsx = await get(api, "/v1/reports/channels", format="xlsx")
    assert as_xlsx.status_code == 200, as_xlsx.text
    assert as_xlsx.headers["content-disposition"] == (
        'attachment; filename="channels-2026-11-16_2026-12-15.xlsx"'
    )
    sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content))["channels"]
    header, *rows = ([cell.value for cell in row] for row in sheet.iter_rows())
    table = {row[header.index("label")]: dict(zip(header, row, strict=True)) for row in rows}
    assert set(table) == {"billboard", "radio", "yandex", "total"}
    assert table["yandex"]["spend"] == 30000
    assert table["radio"]["cost_per_call"] == 750
    assert table["radio"]["cost_per_won_deal"] is None
    assert table["yandex"]["won_amounts.RUB"] == 50000
    assert table["total"]["spend"] == 31800
    as_csv = await get(api, "/v1/reports/channels", format="csv")
    csv_rows = {
        row["label"]: row for row in csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig")))
    }
    assert (csv_rows["yandex"]["spend"], csv_rows["billboard"]["cost_per_call"]) == (
        "30000.00",
        "",
    )
    assert csv_rows["yandex"]["funnel.first_calls"] == "2"
    managers = await get(api, "/v1/reports/managers", format="csv")
    names = [row["name"] for row in csv.DictReader(io.StringIO(managers.text.lstrip("\ufeff")))]
    assert sorted(names, key=str) == ["", "Ivan", "Petr"]


@pytest.mark.parametrize("path", ["/v1/reports/channels", "/v1/reports/managers"])
async def test_roles_and_bad_periods(channels_api: tuple[ApiHarness, People], path: str) -> None:
    api, _ = channels_api
    agent = await api.as_role("acme", Role.AGENT)
    assert (await api.client.get(path, params=PERIOD, headers=agent)).status_code == 403
    admin = await api.as_role("acme", Role.TENANT_ADMIN)
    assert (await api.client.get(path, params=PERIOD, headers=admin)).status_code == 200
    bad = await get(api, path, tz="Nowhere/Special")
    assert bad.status_code == 422
    assert [d["field"] for d in bad.json()["details"]] == ["query.tz"]

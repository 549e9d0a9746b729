"""/v1/ad-channels: the labels a tenant's numbers carry, spend per month, its proration
over a report's period, validation, roles and tenant isolation."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from tests.services.control_api import ApiHarness

from vpbx_control.adchannels.proration import MonthSpend, prorated
from vpbx_control.adchannels.service import AdChannelService
from vpbx_control.auth.principal import Principal, PrincipalKind, Role
from vpbx_control.numbers.models import PoolNumberRow

NOV = "/spend/2026-11"


async def add_number(api: ApiHarness, tenant: str, number: str, label: str | None) -> None:
    """A pool number provisioned to the tenant through /v1/numbers, with the label."""
    async with api.context.database.session() as session:
        session.add(PoolNumberRow(number=number, city="msk", tenant_id=None))
        await session.commit()
    body: dict[str, Any] = {"number": number, "label": label}
    response = await api.client.post("/v1/numbers", json=body, headers=await api.as_role(tenant))
    assert response.status_code == 201, response.text


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [detail["field"] for detail in response.json()["details"]]


@pytest.fixture
async def tenants(api: ApiHarness) -> ApiHarness:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    await add_number(api, "acme", "+74950000001", "yandex-direct")
    await add_number(api, "acme", "+74950000002", "radio")
    await add_number(api, "acme", "+74950000003", "yandex-direct")
    await add_number(api, "acme", "+74950000004", None)
    await add_number(api, "globex", "+74950000009", "tv")
    globex = await api.as_role("globex")
    response = await api.client.put(
        "/v1/ad-channels/tv/spend/2026-11", json={"amount": "777.00"}, headers=globex
    )
    assert response.status_code == 201, response.text
    return api


async def test_channels_are_the_numbers_labels_and_the_labels_with_spend(
    tenants: ApiHarness,
) -> None:
    api = tenants
    admin = await api.as_role("acme")
    # Spend for a campaign whose number is not labelled yet.
    put = await api.client.put(
        "/v1/ad-channels/billboard/spend/2026-11",
        json={"amount": "15000.00", "currency": "RUB"},
        headers=admin,
    )
    assert put.status_code == 201, put.text
    listed = await api.client.get("/v1/ad-channels", headers=admin)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {
        "items": [
            {
                "label": "billboard",
                "numbers": [],
                "spend": [{"month": "2026-11", "amount": "15000.00", "currency": "RUB"}],
            },
            {"label": "radio", "numbers": ["+74950000002"], "spend": []},
            {
                "label": "yandex-direct",
                "numbers": ["+74950000001", "+74950000003"],
                "spend": [],
            },
        ],
        "total": 3,
        "limit": 50,
        "offset": 0,
    }
    page = await api.client.get("/v1/ad-channels?limit=1&offset=1", headers=admin)
    assert [item["label"] for item in page.json()["items"]] == ["radio"]
    assert page.json()["total"] == 3
    one = await api.client.get("/v1/ad-channels/yandex-direct", headers=admin)
    assert one.json()["numbers"] == ["+74950000001", "+74950000003"]


async def test_spend_is_set_replaced_read_and_removed(tenants: ApiHarness) -> None:
    api = tenants
    admin = await api.as_role("acme")
    base = "/v1/ad-channels/yandex-direct"
    created = await api.client.put(f"{base}{NOV}", json={"amount": "15000"}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["amount"] == "15000.00"
    assert created.json()["currency"] == "RUB"  # the default before any spend
    assert created.headers["ETag"] == '"1"'
    # A JSON number works too; the second PUT replaces the month.
    replaced = await api.client.put(f"{base}{NOV}", json={"amount": 12500.5}, headers=admin)
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["amount"], replaced.json()["revision"]) == ("12500.50", 2)
    october = await api.client.put(f"{base}/spend/2026-10", json={"amount": "0"}, headers=admin)
    assert october.status_code == 201, october.text
    spend = await api.client.get(f"{base}/spend", headers=admin)
    assert spend.json() == [
        {"month": "2026-10", "amount": "0.00", "currency": "RUB"},
        {"month": "2026-11", "amount": "12500.50", "currency": "RUB"},
    ]
    month = await api.client.get(f"{base}{NOV}", headers=admin)
    assert (month.json()["label"], month.json()["amount"]) == ("yandex-direct", "12500.50")
    deleted = await api.client.delete(f"{base}{NOV}", headers=admin)
    assert deleted.status_code == 204
    gone = await api.client.get(f"{base}{NOV}", headers=admin)
    assert (gone.status_code, gone.json()["error_id"]) == (404, "spend-not-found")
    again = await api.client.delete(f"{base}{NOV}", headers=admin)
    assert again.status_code == 404
    # A label without numbers whose last spend went is no channel any more.
    await api.client.put("/v1/ad-channels/flyers/spend/2026-10", json={"amount": 1}, headers=admin)
    await api.client.delete("/v1/ad-channels/flyers/spend/2026-10", headers=admin)
    assert (await api.client.get("/v1/ad-channels/flyers", headers=admin)).status_code == 404


async def test_a_label_with_a_slash(tenants: ApiHarness) -> None:
    api = tenants
    admin = await api.as_role("acme")
    put = await api.client.put(
        "/v1/ad-channels/vk/retarget/spend/2026-11", json={"amount": "10"}, headers=admin
    )
    assert put.status_code == 201, put.text
    assert put.json()["label"] == "vk/retarget"
    read = await api.client.get("/v1/ad-channels/vk%2Fretarget/spend", headers=admin)
    assert read.status_code == 200, read.text
    assert [m["amount"] for m in read.json()] == ["10.00"]
    # A line break cannot be in a label: no route takes it (the documented 404), and
    # nothing is stored under it.
    broken = await api.client.put(
        "/v1/ad-channels/vk%0Aretarget/spend/2026-11", json={"amount": "10"}, headers=admin
    )
    assert broken.status_code == 404, broken.text
    listed = await api.client.get("/v1/ad-channels", headers=admin)
    assert not [item for item in listed.json()["items"] if "\n" in item["label"]]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/ad-channels/radio/spend/2026-13", {"amount": "1"}, "path.month"),
        ("/v1/ad-channels/radio/spend/2026-1", {"amount": "1"}, "path.month"),
        ("/v1/ad-channels/radio/spend/26-11", {"amount": "1"}, "path.month"),
        ("/v1/ad-channels/radio/spend/0000-01", {"amount": "1"}, "path.month"),
        ("/v1/ad-channels/radio/spend/2026-11", {"amount": "-0.01"}, "body.amount"),
        ("/v1/ad-channels/radio/spend/2026-11", {"amount": "1.001"}, "body.amount"),
        ("/v1/ad-channels/radio/spend/2026-11", {"amount": "NaN"}, "body.amount"),
        ("/v1/ad-channels/radio/spend/2026-11", {"amount": "lots"}, "body.amount"),
        ("/v1/ad-channels/radio/spend/2026-11", {}, "body.amount"),
        ("/v1/ad-channels/radio/spend/2026-11", {"amount": "1e15"}, "body.amount"),
        (
            "/v1/ad-channels/radio/spend/2026-11",
            {"amount": "1", "currency": "rub"},
            "body.currency",
        ),
        ("/v1/ad-channels/radio/spend/2026-11", {"amount": "1", "cost": 1}, "body.cost"),
        (f"/v1/ad-channels/{'x' * 64}/spend/2026-11", {"amount": "1"}, "path.label"),
        ("/v1/ad-channels/%20x/spend/2026-11", {"amount": "1"}, "path.label"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    tenants: ApiHarness, path: str, body: dict[str, Any], field: str
) -> None:
    admin = await tenants.as_role("acme")
    response = await tenants.client.put(path, json=body, headers=admin)
    assert fields(response) == [field]


async def test_one_currency_per_tenant(tenants: ApiHarness) -> None:
    api = tenants
    admin = await api.as_role("acme")
    first = await api.client.put(
        "/v1/ad-channels/radio/spend/2026-11",
        json={"amount": "5", "currency": "USD"},
        headers=admin,
    )
    assert first.status_code == 201, first.text
    other = await api.client.put(
        "/v1/ad-channels/yandex-direct/spend/2026-11",
        json={"amount": "5", "currency": "RUB"},
        headers=admin,
    )
    assert fields(other) == ["body.currency"]
    assert other.json()["error_id"] == "currency-mismatch"
    # Left out: the tenant's currency; globex (RUB) is not affected by acme's USD.
    implied = await api.client.put(
        "/v1/ad-channels/yandex-direct/spend/2026-11", json={"amount": "5"}, headers=admin
    )
    assert implied.json()["currency"] == "USD"


async def test_supervisors_read_admins_write_agents_neither(tenants: ApiHarness) -> None:
    api = tenants
    supervisor = await api.as_role("acme", Role.SUPERVISOR)
    agent = await api.as_role("acme", Role.AGENT)
    assert (await api.client.get("/v1/ad-channels", headers=supervisor)).status_code == 200
    assert (
        await api.client.get("/v1/ad-channels/radio/spend", headers=supervisor)
    ).status_code == 200
    write = await api.client.put(
        "/v1/ad-channels/radio/spend/2026-11", json={"amount": "1"}, headers=supervisor
    )
    assert write.status_code == 403
    assert (await api.client.get("/v1/ad-channels", headers=agent)).status_code == 403
    assert (await api.client.get("/v1/ad-channels/radio", headers=agent)).status_code == 403


async def test_another_tenants_channel_is_404(tenants: ApiHarness) -> None:
    api = tenants
    admin = await api.as_role("acme")
    listed = await api.client.get("/v1/ad-channels", headers=admin)
    assert "tv" not in [item["label"] for item in listed.json()["items"]]
    for method, path in (
        ("GET", "/v1/ad-channels/tv"),
        ("GET", "/v1/ad-channels/tv/spend"),
        ("GET", "/v1/ad-channels/tv/spend/2026-11"),
        ("DELETE", "/v1/ad-channels/tv/spend/2026-11"),
    ):
        response = await api.client.request(method, path, headers=admin)
        assert response.status_code == 404, f"{method} {path}: {response.text}"
    # acme may have a "tv" channel of its own; globex's spend stays as it was.
    own = await api.client.put(
        "/v1/ad-channels/tv/spend/2026-11", json={"amount": "1"}, headers=admin
    )
    assert own.status_code == 201, own.text
    globex = await api.as_role("globex")
    theirs = await api.client.get("/v1/ad-channels/tv/spend", headers=globex)
    assert [m["amount"] for m in theirs.json()] == ["777.00"]


# -- proration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start_ms: int
    end_ms: int
    tz: str


def local_ms(day: dt.date, tz: str, hour: int = 0) -> int:
    moment = dt.datetime.combine(day, dt.time(hour), zoneinfo.ZoneInfo(tz))
    return int(moment.timestamp() * 1000)


def days(first: dt.date, last: dt.date, tz: str) -> Period:
    """Local midnight of ``first`` to local midnight after ``last``."""
    return Period(local_ms(first, tz), local_ms(last + dt.timedelta(days=1), tz), tz)


NOV_1 = dt.date(2026, 11, 1)
DEC_1 = dt.date(2026, 12, 1)


def test_a_month_is_spread_over_its_days() -> None:
    spends = [
        MonthSpend("radio", NOV_1, Decimal("30000.00")),  # 30 days: 1000 a day
        MonthSpend("radio", DEC_1, Decimal("31000.00")),  # 31 days: 1000 a day
        MonthSpend("tv", NOV_1, Decimal("100.00")),
        MonthSpend("flyers", dt.date(2026, 9, 1), Decimal("5.00")),
    ]
    # Nov 16 to Dec 15: 15 November days and 15 December days.
    period = days(dt.date(2026, 11, 16), dt.date(2026, 12, 15), "UTC")
    assert prorated(spends, period.start_ms, period.end_ms, period.tz) == {
        "radio": Decimal("30000.00"),
        "tv": Decimal("50.00"),
        "flyers": Decimal("0.00"),
    }
    # One day of a 31-day month: 100/31 = 3.2258... rounds to 3.23.
    one_day = days(dt.date(2026, 12, 7), dt.date(2026, 12, 7), "Europe/Moscow")
    spend = [MonthSpend("tv", DEC_1, Decimal("100.00"))]
    assert prorated(spend, one_day.start_ms, one_day.end_ms, one_day.tz) == {"tv": Decimal("3.23")}


def test_months_are_the_report_time_zones() -> None:
    spend = [MonthSpend("tv", DEC_1, Decimal("3100.00"))]
    # Dec 1 in Vladivostok (UTC+10) begins at 14:00 UTC on Nov 30: read in UTC the same
    # instants cover 10 hours of November and 14 hours of December 1.
    vladivostok = days(DEC_1, DEC_1, "Asia/Vladivostok")
    assert prorated(spend, vladivostok.start_ms, vladivostok.end_ms, "Asia/Vladivostok") == {
        "tv": Decimal("100.00")
    }
    assert prorated(spend, vladivostok.start_ms, vladivostok.end_ms, "UTC") == {
        "tv": Decimal("58.33")  # 100 x 14/24
    }


def test_a_dst_month_counts_days_not_hours() -> None:
    # March 2026 in Berlin has a 23-hour day (the 29th); the whole month is the whole spend,
    # and the short day is one day's share.
    march = dt.date(2026, 3, 1)
    spend = [MonthSpend("tv", march, Decimal("3100.00"))]
    whole = days(march, dt.date(2026, 3, 31), "Europe/Berlin")
    assert prorated(spend, whole.start_ms, whole.end_ms, whole.tz) == {"tv": Decimal("3100.00")}
    short_day = days(dt.date(2026, 3, 29), dt.date(2026, 3, 29), "Europe/Berlin")
    assert short_day.end_ms - short_day.start_ms == 23 * 3_600_000
    assert prorated(spend, short_day.start_ms, short_day.end_ms, short_day.tz) == {
        "tv": Decimal("100.00")
    }
    # Half of a day (noon to midnight) is half of its share.
    half = Period(
        local_ms(dt.date(2026, 3, 2), "UTC", 12), local_ms(dt.date(2026, 3, 3), "UTC"), "UTC"
    )
    assert prorated(spend, half.start_ms, half.end_ms, half.tz) == {"tv": Decimal("50.00")}


async def test_spend_over_a_period_is_the_tenants_own(tenants: ApiHarness) -> None:
    api = tenants
    admin = await api.as_role("acme")
    for month, amount in (("2026-11", "30000"), ("2026-12", "31000"), ("2027-01", "999")):
        response = await api.client.put(
            f"/v1/ad-channels/radio/spend/{month}", json={"amount": amount}, headers=admin
        )
        assert response.status_code == 201, response.text
    acme = Principal(kind=PrincipalKind.USER, tenant_id="acme", role=Role.TENANT_ADMIN)
    async with api.context.database.session() as session:
        service = AdChannelService(session, acme, api.context.numbers, api.context.publisher)
        spend = await service.spend_over(days(dt.date(2026, 11, 16), dt.date(2026, 12, 15), "UTC"))
    # globex's "tv" (777.00 in November) is not acme's.
    assert spend == {"radio": Decimal("30000.00")}

"""The calls and clients reports against known synthetic CDR sets, on ClickHouse 18.16 and chdb.

The records go in through CdrStore.insert (which derives the analytics columns and legs); the
expected figures are computed here, in plain Python, from the scenario truths the records were
made from (analytics_data.py), never from the derived columns or the SQL.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from vpbx_common.analytics import (
    REPORTS,
    CallDirection,
    CallsReport,
    ClientsReport,
    GroupBy,
    Report,
    ReportPeriod,
    TenantScope,
)
from vpbx_common.cdr import CdrStore, Direction, EndReason, open_cdr_store

from .analytics_data import (
    ACME,
    FIRST_DAY,
    GLOBEX,
    LAST_DAY,
    ZONES,
    Call,
    dataset,
    local_ms,
)

DATA = dataset()
REAL_NUMBER = frozenset(ACME.callers + GLOBEX.callers)


@pytest.fixture(scope="module", params=["clickhouse-18.16", "chdb"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CdrStore]:
    """One store per engine for the module, loaded with both tenants' calls."""
    url: str | None = None
    server: Any = None
    database = f"analytics_{uuid.uuid4().hex[:8]}"
    if request.param == "clickhouse-18.16":
        server = request.getfixturevalue("clickhouse_server")
        server.start()
        server.query(f"CREATE DATABASE {database}")
        url = server.database_url(database)
    cdr_store = open_cdr_store(url, tmp_path_factory.mktemp("chdb"))
    try:
        cdr_store.migrate()
        for calls in DATA.values():
            cdr_store.insert([call.record for call in calls])
        yield cdr_store
    finally:
        cdr_store.close()
        if server is not None and server.running:
            server.query(f"DROP DATABASE IF EXISTS {database}")


def run(store: CdrStore, report: Report) -> dict[str, Any]:
    return report.parse(store.read(*report.queries())).to_json()


# -- expected figures, from the truths --------------------------------------------------------


def local(call: Call, tz: str) -> datetime:
    return datetime.fromtimestamp(call.record.start_ms // 1000, ZoneInfo(tz))


KEYS: dict[GroupBy, Callable[[Call, str], str]] = {
    GroupBy.DAY: lambda c, tz: local(c, tz).date().isoformat(),
    GroupBy.WEEK: lambda c, tz: (
        local(c, tz).date() - timedelta(days=local(c, tz).weekday())
    ).isoformat(),
    GroupBy.MONTH: lambda c, tz: local(c, tz).strftime("%Y-%m"),
    GroupBy.HOUR: lambda c, tz: f"{local(c, tz).hour:02d}",
    GroupBy.WEEKDAY: lambda c, tz: str(local(c, tz).isoweekday()),
    GroupBy.USER: lambda c, tz: (
        c.record.caller
        if c.record.direction is Direction.OUTBOUND
        else c.record.answered_by or c.last_rung
    ),
    GroupBy.NUMBER: lambda c, tz: (
        c.record.dialled if c.record.direction is Direction.INBOUND else ""
    ),
    GroupBy.LABEL: lambda c, tz: c.record.label,
    GroupBy.GROUP: lambda c, tz: c.group,
}


def quantile(values: list[int], level: float) -> int:
    """ClickHouse's exact quantile, as docs/analytics.md defines it: the value at 0-based
    position floor(level * n) of the ascending values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.floor(level * len(ordered)))]


def in_period(calls: list[Call], period: ReportPeriod) -> list[Call]:
    return [c for c in calls if period.start_ms <= c.record.start_ms < period.end_ms]


def first_callback(call: Call, everything: list[Call]) -> int | None:
    """Start of the first later answered call connecting the missed caller's number."""
    number = call.record.caller
    starts = [
        other.record.start_ms
        for other in everything
        if other.record.answered
        and other.record.start_ms > call.record.start_ms
        and (
            (other.record.direction is Direction.OUTBOUND and other.record.dialled == number)
            or (other.record.direction is Direction.INBOUND and other.record.caller == number)
        )
    ]
    return min(starts, default=None)


def seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def expected_figures(
    key: str, calls: list[Call], everything: list[Call], sl_s: int
) -> dict[str, Any]:
    answered = [c for c in calls if c.record.answered]
    callable_ = [
        c
        for c in calls
        if c.record.direction is Direction.INBOUND
        and not c.record.answered
        and c.record.caller in REAL_NUMBER
    ]
    delays = [
        callback - c.record.start_ms
        for c in callable_
        if (callback := first_callback(c, everything)) is not None
    ]
    waits = [c.record.ring_ms for c in answered]
    within = sum(1 for c in answered if c.record.ring_ms <= sl_s * 1000)
    missed = [c for c in calls if not c.record.answered]
    return {
        "key": key,
        "total": len(calls),
        "answered": len(answered),
        "missed": len(missed),
        "missed_callable": len(callable_),
        "missed_not_called_back": len(callable_) - len(delays),
        "called_back": len(delays),
        "callback_p50_s": seconds(quantile(delays, 0.5)) if delays else None,
        "answer_p50_s": seconds(quantile(waits, 0.5)) if waits else None,
        "answer_p90_s": seconds(quantile(waits, 0.9)) if waits else None,
        "answered_within_sl": within,
        "service_level": round(within / len(calls), 4) if calls else None,
        "abandoned_in_queue": sum(1 for c in missed if c.abandoned == "queue"),
        "abandoned_in_ivr": sum(1 for c in missed if c.abandoned == "ivr"),
        "abandoned_in_ring": sum(1 for c in missed if c.abandoned == "ring"),
        "voicemail": sum(1 for c in calls if c.record.end_reason is EndReason.VOICEMAIL),
        "queued": sum(1 for c in calls if c.queued),
        "queue_wait_s": seconds(sum(c.queue_wait_ms for c in calls)),
        "talk_s": seconds(sum(c.record.talk_ms for c in calls)),
    }


def expected_calls(
    tenant: str,
    period: ReportPeriod,
    group_by: GroupBy,
    direction: CallDirection = CallDirection.INBOUND,
    sl_s: int = 20,
) -> dict[str, Any]:
    everything = DATA[tenant]
    calls = [
        c
        for c in in_period(everything, period)
        if direction is CallDirection.ALL or c.record.direction.value == direction.value
    ]
    by_key: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        by_key[KEYS[group_by](call, period.tz)].append(call)
    return {
        "group_by": group_by.value,
        "direction": direction.value,
        "service_level_s": sl_s,
        "rows": [expected_figures(key, by_key[key], everything, sl_s) for key in sorted(by_key)],
        "totals": expected_figures("total", calls, everything, sl_s),
    }


def period_in(tz: str) -> ReportPeriod:
    return ReportPeriod.from_dates(FIRST_DAY, LAST_DAY, tz)


# -- the calls report -------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("group_by", list(GroupBy))
def test_the_calls_report_matches_the_records(store: CdrStore, group_by: GroupBy, tz: str) -> None:
    period = period_in(tz)
    report = CallsReport(TenantScope(ACME.name), period, group_by=group_by)
    result = run(store, report)
    expected = expected_calls(ACME.name, period, group_by)
    assert result["totals"] == expected["totals"]
    assert result["rows"] == expected["rows"]
    assert result == expected


@pytest.mark.parametrize(
    "direction", [CallDirection.OUTBOUND, CallDirection.INTERNAL, CallDirection.ALL]
)
def test_the_calls_report_by_direction(store: CdrStore, direction: CallDirection) -> None:
    period = period_in(ZONES[0])
    report = CallsReport(TenantScope(ACME.name), period, group_by=GroupBy.USER, direction=direction)
    assert run(store, report) == expected_calls(ACME.name, period, GroupBy.USER, direction)


@pytest.mark.parametrize("sl_s", [0, 10, 60])
def test_the_service_level_threshold(store: CdrStore, sl_s: int) -> None:
    period = period_in(ZONES[1])
    report = CallsReport(
        TenantScope(ACME.name), period, group_by=GroupBy.WEEK, service_level_s=sl_s
    )
    result = run(store, report)
    assert result == expected_calls(ACME.name, period, GroupBy.WEEK, sl_s=sl_s)
    if sl_s == 0:
        assert result["totals"]["answered_within_sl"] == 0


def test_the_data_exercises_every_figure(store: CdrStore) -> None:
    """Guards the synthetic set itself: a figure that is 0 everywhere would prove nothing."""
    totals = run(store, CallsReport(TenantScope(ACME.name), period_in(ZONES[0])))["totals"]
    for name in (
        "answered",
        "missed",
        "missed_not_called_back",
        "called_back",
        "abandoned_in_queue",
        "abandoned_in_ivr",
        "abandoned_in_ring",
        "voicemail",
        "queued",
    ):
        assert totals[name] > 0, name
    assert 0 < totals["answered_within_sl"] < totals["answered"]


@pytest.mark.parametrize("tz", ZONES)
def test_a_call_at_23_59_local_lands_on_its_local_day(store: CdrStore, tz: str) -> None:
    period = period_in(tz)
    rows = run(store, CallsReport(TenantScope(ACME.name), period, group_by=GroupBy.DAY))["rows"]
    days = {row["key"]: row["total"] for row in rows}
    assert min(days) == FIRST_DAY.isoformat()
    assert max(days) == LAST_DAY.isoformat()  # 23:59 on the last day is in; its end is not
    late = local_ms(LAST_DAY, 23, 59, 30, tz)
    assert datetime.fromtimestamp(late // 1000, ZoneInfo("UTC")).date() > LAST_DAY or tz == ZONES[0]
    expected_late = [c for c in DATA[ACME.name] if c.record.start_ms == late]
    assert expected_late  # the edge call exists and is counted on the last day
    assert (
        days[LAST_DAY.isoformat()]
        == expected_calls(ACME.name, period, GroupBy.DAY)["rows"][-1]["total"]
    )


def test_new_yorks_short_day_has_no_2_am(store: CdrStore) -> None:
    period = ReportPeriod.from_dates(FIRST_DAY.replace(day=9), FIRST_DAY.replace(day=9), ZONES[1])
    rows = run(store, CallsReport(TenantScope(ACME.name), period, group_by=GroupBy.HOUR))["rows"]
    hours = [row["key"] for row in rows]
    assert "02" not in hours  # 02:00-03:00 does not exist on 9 March 2025 in New York
    assert {"01", "03", "23"} <= set(hours)
    assert rows == expected_calls(ACME.name, period, GroupBy.HOUR)["rows"]


def test_a_missed_call_returned_after_the_period_counts_as_called_back(store: CdrStore) -> None:
    number = ACME.callers[3]
    period = ReportPeriod.from_dates(LAST_DAY, LAST_DAY, ZONES[0])
    result = run(store, CallsReport(TenantScope(ACME.name), period, group_by=GroupBy.NUMBER))
    missed_from_number = [
        c
        for c in in_period(DATA[ACME.name], period)
        if c.record.caller == number and not c.record.answered
    ]
    assert missed_from_number
    assert all(first_callback(c, DATA[ACME.name]) is not None for c in missed_from_number)
    assert result == expected_calls(ACME.name, period, GroupBy.NUMBER)


def test_a_period_without_calls_gives_no_rows_and_empty_totals(store: CdrStore) -> None:
    period = ReportPeriod.from_dates(
        FIRST_DAY.replace(year=2024), FIRST_DAY.replace(year=2024), "UTC"
    )
    result = run(store, CallsReport(TenantScope(ACME.name), period))
    assert result["rows"] == []
    totals = result["totals"]
    assert (totals["total"], totals["answered"], totals["missed"]) == (0, 0, 0)
    assert (totals["answer_p50_s"], totals["service_level"], totals["callback_p50_s"]) == (
        None,
        None,
        None,
    )


# -- the clients report -----------------------------------------------------------------------


def expected_clients(tenant: str, period: ReportPeriod, top: int = 10) -> dict[str, Any]:
    calls = [
        c.record for c in in_period(DATA[tenant], period) if c.record.direction is Direction.INBOUND
    ]
    existing = [r for r in calls if r.contact_id]
    per_number = Counter(r.caller for r in calls if r.caller in REAL_NUMBER)
    repeated = {number: n for number, n in per_number.items() if n > 1}
    per_contact: dict[str, list[Any]] = defaultdict(list)
    for r in existing:
        per_contact[r.contact_id].append(r)
    clients = [
        {
            "contact_id": contact,
            "category": max(rs, key=lambda r: r.start_ms).contact_category,
            "vip": any(r.contact_vip for r in rs),
            "calls": len(rs),
            "answered": sum(1 for r in rs if r.answered),
        }
        for contact, rs in per_contact.items()
    ]
    clients.sort(key=lambda item: (-item["calls"], item["contact_id"]))
    return {
        "total": len(calls),
        "existing": len(existing),
        "unknown": len(calls) - len(existing),
        "vip": sum(1 for r in calls if r.contact_vip),
        "by_category": dict(sorted(Counter(r.contact_category for r in existing).items())),
        "clients": len(per_contact),
        "repeated_numbers": len(repeated),
        "repeated_calls": sum(repeated.values()),
        "repeated": [
            {"number": number, "calls": n}
            for number, n in sorted(repeated.items(), key=lambda item: (-item[1], item[0]))[:top]
        ],
        "top_clients": clients[:top],
    }


@pytest.mark.parametrize("tz", ZONES)
def test_the_clients_report_matches_the_records(store: CdrStore, tz: str) -> None:
    period = period_in(tz)
    result = run(store, ClientsReport(TenantScope(ACME.name), period))
    expected = expected_clients(ACME.name, period)
    assert result == expected
    assert min(result["existing"], result["unknown"], result["vip"]) > 0
    assert len(result["by_category"]) == len(ACME.categories)
    assert result["repeated_numbers"] > 0


def test_the_clients_report_of_one_day_and_a_short_top(store: CdrStore) -> None:
    period = ReportPeriod.from_dates(FIRST_DAY.replace(day=9), FIRST_DAY.replace(day=10), ZONES[1])
    result = run(store, ClientsReport(TenantScope(ACME.name), period, top=2))
    assert result == expected_clients(ACME.name, period, top=2)
    assert len(result["top_clients"]) <= 2


# -- isolation --------------------------------------------------------------------------------


def all_reports(store: CdrStore, tenant: str, period: ReportPeriod) -> dict[str, dict[str, Any]]:
    return {name: run(store, cls(TenantScope(tenant), period)) for name, cls in REPORTS.items()}


MARKERS = {
    GLOBEX.name: (
        *GLOBEX.callers,
        *GLOBEX.numbers,
        "globex-radio",
        "globex-cat",
        "globex-desk",
        "201",
        "202",
    ),
    ACME.name: (
        *ACME.callers,
        *ACME.numbers,
        "yandex",
        "billboard",
        "sales",
        "support",
        "supplier",
        "101",
        "102",
    ),
}


def test_no_report_shows_anything_of_another_tenant(
    store: CdrStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every registered report, for each tenant, on the store holding both, equals the same
    report on a store holding only that tenant's calls, and names nothing of the other."""
    period = period_in(ZONES[1])
    engine = request.node.callspec.params["store"]
    for tenant, other in ((ACME.name, GLOBEX.name), (GLOBEX.name, ACME.name)):
        shared = all_reports(store, tenant, period)
        url: str | None = None
        if engine == "clickhouse-18.16":
            server = request.getfixturevalue("clickhouse_server")
            database = f"solo_{uuid.uuid4().hex[:8]}"
            server.query(f"CREATE DATABASE {database}")
            url = server.database_url(database)
        (tmp_path / tenant).mkdir()
        solo = open_cdr_store(url, tmp_path / tenant)
        try:
            solo.migrate()
            solo.insert([call.record for call in DATA[tenant]])
            assert all_reports(solo, tenant, period) == shared
            assert all(
                value in (0, None, [], {})
                or name in ("group_by", "direction", "service_level_s", "currency")
                for result in all_reports(solo, other, period).values()
                for name, value in result.items()
                if name not in ("totals",)
            )
        finally:
            solo.close()
            if url is not None:
                server.query(f"DROP DATABASE IF EXISTS {database}")
        text = repr(shared)
        leaked = [marker for marker in MARKERS[other] if f"'{marker}'" in text]
        assert leaked == []
        assert shared["calls"]["totals"]["total"] > 0

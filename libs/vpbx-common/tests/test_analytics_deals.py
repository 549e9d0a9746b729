"""The channels and managers reports on both engines, against synthetic calls and deal steps
whose expected figures are computed here in plain Python from the same lists."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from vpbx_common.analytics import (
    REPORTS,
    ChannelsReport,
    ChannelsResult,
    ManagersReport,
    ManagersResult,
    ReportPeriod,
    TenantScope,
)
from vpbx_common.analytics.base import Report
from vpbx_common.cdr import (
    CallRecord,
    CdrStore,
    DealEvent,
    DealEventKind,
    Direction,
    EndReason,
    HangupBy,
    RouteStep,
    open_cdr_store,
)

TZ = "Asia/Novosibirsk"  # UTC+7 all year
FIRST_DAY = date(2026, 3, 2)
LAST_DAY = date(2026, 3, 15)
PERIOD = ReportPeriod.from_dates(FIRST_DAY, LAST_DAY, TZ)
DAY_MS = 86_400_000
# History starts two weeks before the period and goes on a week after it.
HISTORY_START = PERIOD.start_ms - 14 * DAY_MS
HISTORY_END = PERIOD.end_ms + 7 * DAY_MS

LABELS = ("yandex", "google", "radio", "")
NUMBERS = {"+73832000001": "yandex", "+73832000002": "google", "+73832000003": "radio"}
NUMBERS["+73832000009"] = ""
EXTENSIONS = ("101", "102", "103", "104")
USERS = {"101": "u-olga", "102": "u-petr"}  # 103, 104: no user known; u-anna has no extension
DEAL_USERS = ("u-olga", "u-petr", "u-anna", "")
REAL = re.compile(r"^[+]?[0-9]{7,15}$")


@dataclass(frozen=True, slots=True)
class DataSet:
    calls: list[CallRecord]
    rung: dict[str, set[str]]  # call id -> extensions a `ringing` step named
    events: list[DealEvent]


def synthetic(tenant: str, seed: int) -> DataSet:
    rng = random.Random(seed)
    callers = [f"+7913{seed:03d}{i:04d}" for i in range(120)] + ["anonymous", "5555"]
    contacts = {caller: f"{tenant}-contact-{i}" for i, caller in enumerate(callers[:70])}
    calls: list[CallRecord] = []
    rung: dict[str, set[str]] = {}
    # Distinct start times (first calls have no ties), spread over the whole history.
    starts = sorted(rng.sample(range(HISTORY_START + 500, HISTORY_END, 1000), 260))
    # The edges in the period's zone: the last millisecond of its last day is in, the next
    # midnight out, its first midnight in (the samples are off the whole seconds).
    starts += [PERIOD.end_ms - 1, PERIOD.end_ms, PERIOD.start_ms]
    for index, start in enumerate(starts):
        call_id = f"{tenant}-call-{index}"
        if rng.random() < 0.2:
            extension = rng.choice(EXTENSIONS)
            answered = rng.random() < 0.7
            calls.append(
                build(
                    call_id,
                    tenant,
                    Direction.OUTBOUND,
                    caller=extension,
                    dialled=rng.choice(callers[:120]),
                    start=start,
                    answered_by="" if not answered else "ext",
                    route=(),
                )
            )
            continue
        caller = rng.choice(callers)
        dialled = rng.choice(list(NUMBERS))
        ringing = rng.sample(EXTENSIONS, rng.randint(0, 3))
        answered_by = rng.choice(ringing) if ringing and rng.random() < 0.65 else ""
        direct = not ringing and rng.random() < 0.3  # put straight through: no route at all
        if direct:
            answered_by = rng.choice(EXTENSIONS)
        route = tuple(
            RouteStep(0.01 * (i + 1), "group:sales", "ringing", extension)
            for i, extension in enumerate(ringing)
        )
        if answered_by and route:
            route += (RouteStep(5.0, "group:sales", "answered", answered_by),)
        rung[call_id] = set(ringing)
        # Whether the CRM knew the caller at this call: a contact only from their third call.
        known = caller in contacts and rng.random() < 0.8
        calls.append(
            build(
                call_id,
                tenant,
                Direction.INBOUND,
                caller=caller,
                dialled=dialled,
                label=NUMBERS[dialled],
                start=start,
                answered_by=answered_by,
                route=route,
                contact_id=contacts[caller] if known else "",
            )
        )
    events: list[DealEvent] = []
    # Distinct moments (no two steps at once), each deal's steps in time order.
    moments = rng.sample(range(HISTORY_START + 500, HISTORY_END, 1000), 400)
    for deal in range(45):
        deal_id = f"{tenant}-deal-{deal}"
        label = rng.choice(LABELS)
        owner = rng.choice(DEAL_USERS[:3])
        currency = "USD" if deal % 9 == 0 else "RUB"
        amount = None if deal % 7 == 0 else rng.randint(1, 10_000_000)
        steps = [DealEventKind.CREATED]
        steps += rng.choice(
            [
                [],
                [DealEventKind.STAGE_CHANGED],
                [DealEventKind.STAGE_CHANGED, DealEventKind.WON],
                [DealEventKind.WON],
                [DealEventKind.LOST],
                [DealEventKind.WON, DealEventKind.REOPENED],
                [DealEventKind.WON, DealEventKind.REOPENED, DealEventKind.WON],
                [DealEventKind.WON, DealEventKind.LOST],
            ]
        )
        times = sorted(moments.pop() for _ in steps)
        for step, (kind, at_ms) in enumerate(zip(steps, times, strict=True)):
            if rng.random() < 0.3:
                amount = None if amount is None else amount + 100  # the amount changes
            events.append(
                DealEvent(
                    tenant=tenant,
                    event_id=f"{deal_id}-step-{step}",
                    deal_id=deal_id,
                    kind=kind,
                    at_ms=at_ms,
                    contact_id=rng.choice([*contacts.values(), ""]),
                    label=label,
                    stage=f"stage-{kind}",
                    pipeline="sales",
                    amount=amount,
                    currency=currency,
                    user_id=rng.choice(DEAL_USERS),
                    owner_user_id=owner,
                )
            )
    # A win at the last second of the period's last local day counts; one a second later not.
    for at_ms, suffix in ((PERIOD.end_ms - 1, "edge-in"), (PERIOD.end_ms, "edge-out")):
        events.append(
            DealEvent(
                tenant=tenant,
                event_id=f"{tenant}-{suffix}",
                deal_id=f"{tenant}-{suffix}",
                kind=DealEventKind.WON,
                at_ms=at_ms,
                label="radio",
                amount=5_000,
                currency="RUB",
                user_id="u-olga",
                owner_user_id="u-petr",
            )
        )
    return DataSet(calls, rung, events)


def build(
    call_id: str,
    tenant: str,
    direction: Direction,
    *,
    caller: str,
    dialled: str,
    start: int,
    answered_by: str,
    route: tuple[RouteStep, ...],
    label: str = "",
    contact_id: str = "",
) -> CallRecord:
    if answered_by == "ext":  # an outbound call answered by the far end
        answered_by = ""
        answer: int | None = start + 3_000
    else:
        answer = start + 6_000 if answered_by else None
    end = start + 6_000 + (int(call_id.rsplit("-", 1)[1]) % 50) * 1_000 + 1_000
    return CallRecord.build(
        call_id=call_id,
        tenant=tenant,
        city="nsk",
        node="node-0",
        direction=direction,
        caller=caller,
        dialled=dialled,
        label=label,
        answered_by=answered_by,
        start_ms=start,
        answer_ms=answer,
        end_ms=end,
        end_reason=EndReason.COMPLETED if answer is not None else EndReason.CANCELLED,
        sip_status=200 if answer is not None else 487,
        hangup_by=HangupBy.CALLER,
        route=route,
        contact_id=contact_id,
    )


# -- the expected figures, computed from the lists ---------------------------------------------


def in_period(ms: int) -> bool:
    return PERIOD.start_ms <= ms < PERIOD.end_ms


def first_calls(data: DataSet) -> dict[str, CallRecord]:
    """Each real caller's earliest inbound call of all time."""
    first: dict[str, CallRecord] = {}
    for call in sorted(data.calls, key=lambda c: c.start_ms):
        if call.direction is Direction.INBOUND and REAL.match(call.caller):
            first.setdefault(call.caller, call)
    return first


def won_deals(data: DataSet) -> dict[str, DealEvent]:
    """Deal -> its winning step, for deals whose last closing step in the period is a win."""
    last: dict[str, DealEvent] = {}
    closing = (DealEventKind.WON, DealEventKind.LOST, DealEventKind.REOPENED)
    for event in sorted(data.events, key=lambda e: e.at_ms):
        if in_period(event.at_ms) and event.kind in closing:
            last[event.deal_id] = event
    return {deal: event for deal, event in last.items() if event.kind is DealEventKind.WON}


def hundredths(units: int) -> Decimal:
    return (Decimal(units) / 100).quantize(Decimal("0.01"))


def expected_channels(data: DataSet, spend: dict[str, Decimal]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "calls": 0,
            "first_time_callers": 0,
            "new_contacts": 0,
            "deals_created": 0,
            "deals_won": 0,
            "won": defaultdict(Decimal),
        }
    )
    for label in spend:
        rows[label]["calls"] += 0
    for call in data.calls:
        if call.direction is Direction.INBOUND and in_period(call.start_ms):
            rows[call.label]["calls"] += 1
    for call in first_calls(data).values():
        if in_period(call.start_ms):
            rows[call.label]["first_time_callers"] += 1
    first_of_contact: dict[str, CallRecord] = {}
    for call in sorted(data.calls, key=lambda c: c.start_ms):
        if call.direction is Direction.INBOUND and call.contact_id:
            first_of_contact.setdefault(call.contact_id, call)
    for call in first_of_contact.values():
        if in_period(call.start_ms):
            rows[call.label]["new_contacts"] += 1
    for event in data.events:
        if event.kind is DealEventKind.CREATED and in_period(event.at_ms):
            rows[event.label]["deals_created"] += 1
    for event in won_deals(data).values():
        rows[event.label]["deals_won"] += 1
        rows[event.label]["won"][event.currency] += hundredths(event.amount or 0)
    return rows


def expected_managers(data: DataSet) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}

    def row(key: str, user_id: str) -> dict[str, Any]:
        return rows.setdefault(
            key,
            {
                "user_id": user_id,
                "extensions": set(),
                "offered": 0,
                "answered": 0,
                "talk_ms": 0,
                "outbound": 0,
                "outbound_answered": 0,
                "outbound_talk_ms": 0,
                "clients_brought": 0,
                "deals_created": set(),
                "deals_moved": set(),
                "deals_won": 0,
                "won": defaultdict(Decimal),
                "deals_closed": 0,
            },
        )

    def of_extension(extension: str) -> dict[str, Any]:
        user = USERS.get(extension, "")
        found = row(user or extension, user)
        found["extensions"].add(extension)
        return found

    for call in data.calls:
        if not in_period(call.start_ms):
            continue
        if call.direction is Direction.OUTBOUND:
            placed = of_extension(call.caller)
            placed["outbound"] += 1
            placed["outbound_answered"] += call.answer_ms is not None
            placed["outbound_talk_ms"] += call.talk_ms
            continue
        for extension in data.rung[call.call_id] | ({call.answered_by} - {""}):
            offered = of_extension(extension)
            offered["offered"] += 1
            if extension == call.answered_by:
                offered["answered"] += 1
                offered["talk_ms"] += call.talk_ms
    for call in first_calls(data).values():
        if in_period(call.start_ms) and call.answered_by:
            of_extension(call.answered_by)["clients_brought"] += 1
    for event in data.events:
        if in_period(event.at_ms) and event.user_id:
            mover = row(event.user_id, event.user_id)
            kind = "deals_created" if event.kind is DealEventKind.CREATED else "deals_moved"
            mover[kind].add(event.deal_id)
    for event in won_deals(data).values():
        if event.owner_user_id:
            owner = row(event.owner_user_id, event.owner_user_id)
            owner["deals_won"] += 1
            owner["won"][event.currency] += hundredths(event.amount or 0)
        if event.user_id:
            row(event.user_id, event.user_id)["deals_closed"] += 1
    return rows


# -- running the reports -----------------------------------------------------------------------


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def store(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[CdrStore]:
    url: str | None = None
    if request.param == "clickhouse-18.16":
        url = request.getfixturevalue("clickhouse_database_url")
    cdr_store = open_cdr_store(url, chdb_path)
    cdr_store.migrate()
    try:
        yield cdr_store
    finally:
        cdr_store.close()


@pytest.fixture
def loaded(store: CdrStore) -> tuple[CdrStore, DataSet]:
    acme = synthetic("acme", seed=1)
    globex = synthetic("globex", seed=2)  # another tenant's figures must not leak in
    for data in (acme, globex):
        store.insert(data.calls)
        store.insert_deal_events(data.events)
    # Shipped twice (a crash between insert and acknowledge): counted once.
    store.insert(acme.calls[:50])
    store.insert_deal_events(acme.events[:30])
    return store, acme


def run(store: CdrStore, report: Report) -> Any:
    return report.parse(store.read(*report.queries()))


SPEND = {"yandex": Decimal("30000"), "radio": Decimal("4999.99"), "tv": Decimal("1000.5")}


def test_channels_report_matches_the_figures_computed_from_the_data(
    loaded: tuple[CdrStore, DataSet],
) -> None:
    store, data = loaded
    result: ChannelsResult = run(store, ChannelsReport(TenantScope("acme"), PERIOD, spend=SPEND))
    expected = expected_channels(data, SPEND)
    assert [row.label for row in result.rows] == sorted(expected)
    assert "tv" in expected  # spend but no call or deal: a row all the same
    for row in result.rows:
        want = expected[row.label]
        spend = SPEND.get(row.label, Decimal(0)).quantize(Decimal("0.01"))
        got = (
            row.calls,
            row.first_time_callers,
            row.new_contacts,
            row.deals_created,
            row.deals_won,
            dict(row.won_amounts),
            row.won_amount,
            row.spend,
        )
        assert got == (
            want["calls"],
            want["first_time_callers"],
            want["new_contacts"],
            want["deals_created"],
            want["deals_won"],
            {currency: amount for currency, amount in want["won"].items()},
            want["won"].get("RUB", Decimal("0.00")),
            spend,
        ), row.label

        def per(count: int, spent: Decimal = spend) -> Decimal | None:
            return None if count == 0 else (spent / count).quantize(Decimal("0.01"))

        assert row.cost_per_call == per(want["calls"])
        assert row.cost_per_new_client == per(want["first_time_callers"])
        assert row.cost_per_won_deal == per(want["deals_won"])
    totals = result.totals
    assert totals.calls == sum(
        1 for c in data.calls if c.direction is Direction.INBOUND and in_period(c.start_ms)
    )
    assert totals.first_time_callers == sum(
        1 for c in first_calls(data).values() if in_period(c.start_ms)
    )
    assert totals.deals_won == len(won_deals(data))
    assert totals.spend == Decimal("36000.49")
    assert totals.cost_per_call == (Decimal("36000.49") / totals.calls).quantize(Decimal("0.01"))
    # The data is not degenerate: every figure is there to be got wrong.
    assert totals.first_time_callers
    assert totals.new_contacts
    assert totals.deals_created
    assert totals.deals_won >= 3
    assert set(totals.won_amounts) == {"RUB", "USD"}
    # The win at 23:59:59.999 local on the last day is in, the one at midnight is not.
    assert won_deals(data)["acme-edge-in"].deal_id == "acme-edge-in"
    assert "acme-edge-out" not in won_deals(data)


def test_channels_json_has_the_fixed_fields(loaded: tuple[CdrStore, DataSet]) -> None:
    store, _ = loaded
    result = run(store, ChannelsReport(TenantScope("acme"), PERIOD, spend=SPEND)).to_json()
    yandex = next(row for row in result["rows"] if row["label"] == "yandex")
    for name in (
        "label",
        "calls",
        "first_time_callers",
        "deals_won",
        "spend",
        "cost_per_call",
        "cost_per_won_deal",
        "new_contacts",
        "deals_created",
        "won_amount",
        "cost_per_new_client",
        "funnel",
    ):
        assert name in yandex
    assert yandex["spend"] == "30000.00"
    tv = next(row for row in result["rows"] if row["label"] == "tv")
    assert tv["cost_per_call"] is None
    assert tv["spend"] == "1000.50"
    funnel = yandex["funnel"]
    assert (funnel["first_calls"], funnel["deals_created"], funnel["deals_won"]) == (
        yandex["first_time_callers"],
        yandex["deals_created"],
        yandex["deals_won"],
    )
    assert result["totals"]["label"] == "total"


def test_managers_report_matches_the_figures_computed_from_the_data(
    loaded: tuple[CdrStore, DataSet],
) -> None:
    store, data = loaded
    result: ManagersResult = run(store, ManagersReport(TenantScope("acme"), PERIOD, users=USERS))
    expected = expected_managers(data)
    assert [row.key for row in result.rows] == sorted(expected)
    for row in result.rows:
        want = expected[row.key]
        assert row.to_json() == {
            "key": row.key,
            "user_id": want["user_id"],
            "extensions": sorted(want["extensions"]),
            "offered": want["offered"],
            "answered": want["answered"],
            "missed": want["offered"] - want["answered"],
            "talk_s": round(want["talk_ms"] / 1000, 3),
            "outbound": want["outbound"],
            "outbound_answered": want["outbound_answered"],
            "outbound_talk_s": round(want["outbound_talk_ms"] / 1000, 3),
            "clients_brought": want["clients_brought"],
            "deals_created": len(want["deals_created"]),
            "deals_moved": len(want["deals_moved"]),
            "deals_won": want["deals_won"],
            "won_amounts": {c: str(a) for c, a in sorted(want["won"].items())},
            "deals_closed": want["deals_closed"],
        }, row.key
    keys = {row.key for row in result.rows}
    # A user's extension and their deal steps are one row; an unknown extension its own;
    # a user with deals and no extension too.
    assert {"u-olga", "u-petr", "u-anna", "103", "104"} <= keys
    assert "101" not in keys
    olga = next(row for row in result.rows if row.key == "u-olga")
    assert olga.extensions == ("101",)
    assert olga.offered
    assert olga.deals_moved
    assert sum(row.clients_brought for row in result.rows) > 0
    assert sum(row.deals_closed for row in result.rows) > 0


def test_without_a_user_map_extensions_are_their_own_rows(
    loaded: tuple[CdrStore, DataSet],
) -> None:
    store, _ = loaded
    result: ManagersResult = run(store, ManagersReport(TenantScope("acme"), PERIOD))
    by_key = {row.key: row for row in result.rows}
    assert {"101", "102", "103", "104", "u-olga", "u-petr", "u-anna"} <= set(by_key)
    assert by_key["101"].user_id == ""
    assert by_key["u-olga"].offered == 0


def test_another_tenant_sees_only_its_own(loaded: tuple[CdrStore, DataSet], tmp_path: Path) -> None:
    store, _ = loaded
    # globex's reports on the store holding both tenants equal those on a store of its own.
    solo = open_cdr_store(None, tmp_path / "solo")
    solo.migrate()
    globex_only = synthetic("globex", seed=2)
    solo.insert(globex_only.calls)
    solo.insert_deal_events(globex_only.events)
    for report in (
        ChannelsReport(TenantScope("globex"), PERIOD, spend=SPEND),
        ManagersReport(TenantScope("globex"), PERIOD, users=USERS),
    ):
        alone = run(solo, report).to_json()
        assert run(store, report).to_json() == alone
        assert "acme" not in repr(alone)
    nobody = TenantScope("initech")
    channels: ChannelsResult = run(store, ChannelsReport(nobody, PERIOD))
    assert channels.rows == ()
    assert channels.totals.calls == 0
    managers: ManagersResult = run(store, ManagersReport(nobody, PERIOD))
    assert managers.rows == ()
    globex = run(store, ManagersReport(TenantScope("globex"), PERIOD))
    assert all("acme" not in key for key in (row.key for row in globex.rows))
    assert {"channels", "managers"} <= set(REPORTS)


def test_empty_period_and_an_empty_store_give_zeros(store: CdrStore) -> None:
    channels = run(store, ChannelsReport(TenantScope("acme"), PERIOD, spend=SPEND))
    assert [(row.label, row.calls, row.cost_per_call) for row in channels.rows] == [
        ("radio", 0, None),
        ("tv", 0, None),
        ("yandex", 0, None),
    ]
    assert run(store, ManagersReport(TenantScope("acme"), PERIOD)).rows == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"spend": {"yandex": Decimal(-1)}}, "spend of 'yandex' must be a non-negative"),
        ({"spend": {"yandex": 100}}, "spend of 'yandex' must be a non-negative Decimal"),
        ({"spend": {"x": Decimal("NaN")}}, "spend of 'x'"),
        ({"currency": ""}, "currency"),
    ],
)
def test_bad_channel_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChannelsReport(TenantScope("acme"), PERIOD, **options)


def test_bad_user_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="extensions must be non-empty"):
        ManagersReport(TenantScope("acme"), PERIOD, users={"": "u-1"})
    with pytest.raises(ValueError, match="the user id of '101'"):
        ManagersReport(TenantScope("acme"), PERIOD, users={"101": ""})


def test_a_win_undone_in_the_period_is_no_win(store: CdrStore) -> None:
    def step(deal: str, n: int, kind: DealEventKind, minute: int, user: str) -> DealEvent:
        return DealEvent(
            tenant="acme",
            event_id=f"{deal}-{n}",
            deal_id=deal,
            kind=kind,
            at_ms=PERIOD.start_ms + minute * 60_000,
            label="yandex",
            amount=100_00 * (n + 1),
            currency="RUB",
            user_id=user,
            owner_user_id="u-owner",
        )

    won, created, reopened = DealEventKind.WON, DealEventKind.CREATED, DealEventKind.REOPENED
    store.insert_deal_events(
        [
            # Won, then reopened: no win.
            step("undone", 0, created, 1, "u-a"),
            step("undone", 1, won, 2, "u-a"),
            step("undone", 2, reopened, 3, "u-a"),
            # Won, reopened, won again by someone else: one win, theirs, at the last amount.
            step("rewon", 0, won, 4, "u-a"),
            step("rewon", 1, reopened, 5, "u-a"),
            step("rewon", 2, won, 6, "u-b"),
        ]
    )
    channels: ChannelsResult = run(store, ChannelsReport(TenantScope("acme"), PERIOD))
    (yandex,) = channels.rows
    assert (yandex.deals_created, yandex.deals_won, yandex.won_amount) == (
        1,
        1,
        Decimal("300.00"),
    )
    managers: ManagersResult = run(store, ManagersReport(TenantScope("acme"), PERIOD))
    by_key = {row.key: row for row in managers.rows}
    assert (by_key["u-b"].deals_closed, by_key["u-a"].deals_closed) == (1, 0)
    assert by_key["u-owner"].deals_won == 1
    assert (by_key["u-a"].deals_created, by_key["u-a"].deals_moved) == (1, 2)

"""The CRM's deal steps in the analytics store (migration 8) on both engines."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from vpbx_common.cdr import (
    CdrStore,
    DealEvent,
    DealEventKind,
    from_minor_units,
    minor_units,
    open_cdr_store,
)

BASE_MS = 1_763_800_000_000


def event(event_id: str, **changes: object) -> DealEvent:
    values: dict[str, object] = {
        "tenant": "acme",
        "event_id": event_id,
        "deal_id": "deal-1",
        "kind": DealEventKind.CREATED,
        "at_ms": BASE_MS,
        "contact_id": "contact-1",
        "label": "yandex",
        "stage": "stage-new",
        "pipeline": "pipeline-sales",
        "amount": 150_050,
        "currency": "RUB",
        "user_id": "user-1",
        "owner_user_id": "user-2",
    }
    values.update(changes)
    return DealEvent(**values)  # type: ignore[arg-type]


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


def test_every_kind_and_field_round_trips(store: CdrStore) -> None:
    events = [
        event(f"ev-{index}", kind=kind, at_ms=BASE_MS + index)
        for index, kind in enumerate(DealEventKind)
    ]
    # No amount, no contact, no user (an API key's step), odd text in the label.
    events.append(
        event(
            "ev-bare",
            at_ms=BASE_MS + 100,
            amount=None,
            contact_id="",
            user_id="",
            label="radio 'Europa+'\n\\ tab\t",
        )
    )
    events.append(event("ev-negative", at_ms=BASE_MS + 101, amount=-(1 << 62)))
    store.insert_deal_events(events)
    assert store.deal_events("acme") == events


def test_a_batch_shipped_twice_is_one_row_per_step(store: CdrStore) -> None:
    batch = [event("dup-1"), event("dup-2", kind=DealEventKind.WON, at_ms=BASE_MS + 5)]
    store.insert_deal_events(batch)
    store.insert_deal_events(batch)
    store.insert_deal_events(batch[:1])
    assert store.deal_events("acme") == batch


def test_steps_are_read_per_tenant(store: CdrStore) -> None:
    ours = event("t-1")
    theirs = event("t-1", tenant="globex")  # the same event id in another tenant is its own
    store.insert_deal_events([ours, theirs])
    assert store.deal_events("acme") == [ours]
    assert store.deal_events("globex") == [theirs]
    assert store.deal_events("nobody") == []


def test_json_round_trip_and_refusals() -> None:
    full = event("j-1", kind=DealEventKind.STAGE_CHANGED)
    assert DealEvent.from_json(full.to_json()) == full
    assert full.to_json()["kind"] == "stage-changed"
    with pytest.raises(ValueError, match="'kind' must be one of"):
        DealEvent.from_json(full.to_json() | {"kind": "moved"})
    with pytest.raises(ValueError, match="unknown deal event fields: colour"):
        DealEvent.from_json(full.to_json() | {"colour": "red"})
    with pytest.raises(ValueError, match="missing deal event fields: deal_id"):
        DealEvent.from_json({k: v for k, v in full.to_json().items() if k != "deal_id"})
    with pytest.raises(ValueError, match="'tenant' must be a non-empty string"):
        dataclasses.replace(full, tenant="")
    with pytest.raises(ValueError, match="'amount'"):
        dataclasses.replace(full, amount=1 << 63)
    with pytest.raises(ValueError, match="'at_ms'"):
        DealEvent.from_json(full.to_json() | {"at_ms": "soon"})


@pytest.mark.parametrize(
    ("amount", "units"),
    [
        (Decimal("1500.50"), 150_050),
        (Decimal("0.01"), 1),
        (Decimal("0.005"), 0),  # half to even, as NUMERIC(14, 2) would keep it
        (Decimal("0.015"), 2),
        (Decimal("-12.30"), -1_230),
        (Decimal("999999999999.99"), 99_999_999_999_999),
    ],
)
def test_amounts_are_hundredths(amount: Decimal, units: int) -> None:
    assert minor_units(amount) == units
    assert from_minor_units(units) == amount.quantize(Decimal("0.01"))

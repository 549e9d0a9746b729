"""Deal steps reach the analytics store (ClickHouse ``deal_events``) through the CRM's outbox:
written with the change, shipped in batches, kept while the store is down."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tests.services.clickhouse import ClickHouseServer
from tests.services.control_api import harness_settings, serve_api
from tests.services.crm import CrmHarness, crm_tenant, crm_user, serve_crm

from vpbx_common.cdr import CdrStore, DealEvent, DealEventKind, open_cdr_store
from vpbx_common.events import CallEvent, CallEventType
from vpbx_control.auth.principal import Role
from vpbx_crm.analytics.models import DealOutboxRow
from vpbx_crm.analytics.shipper import DealEventShipper, ShipperState
from vpbx_crm.events.handler import CrmEventHandler


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def outbox_size(crm: CrmHarness) -> int:
    async with crm.context.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(DealOutboxRow)) or 0)


async def outbox_emptied(crm: CrmHarness, timeout: float = 30) -> None:
    """The shipper deletes a batch just after the store took it."""
    deadline = time.monotonic() + timeout
    while await outbox_size(crm):
        if time.monotonic() > deadline:
            raise AssertionError("the outbox was never emptied")
        await asyncio.sleep(0.05)


def stages_by_name(pipeline: dict[str, Any]) -> dict[str, str]:
    return {stage["name"]: stage["id"] for stage in pipeline["stages"]}


async def sales(crm: CrmHarness, headers: dict[str, str]) -> dict[str, Any]:
    listed = await crm.client.get("/v1/pipelines", headers=headers)
    assert listed.status_code == 200, listed.text
    pipeline: dict[str, Any] = listed.json()["items"][0]
    return pipeline


async def a_deal_through_its_life(crm: CrmHarness, tenant: str) -> tuple[dict[str, Any], list[str]]:
    """A contact from the 'yandex' channel, their deal created, moved, won; the deal and
    the ids of its history's steps."""
    me, agent = await crm_user(crm, tenant, Role.AGENT, name="Olga")
    contact = await crm.client.post(
        "/v1/contacts",
        json={"name": "Ivan", "phones": ["+79161234567"], "source_label": "yandex"},
        headers=agent,
    )
    assert contact.status_code == 201, contact.text
    stages = stages_by_name(await sales(crm, agent))
    created = await crm.client.post(
        "/v1/deals",
        json={"title": "PBX", "contact_id": contact.json()["id"], "amount": "1500.50"},
        headers=agent,
    )
    assert created.status_code == 201, created.text
    deal: dict[str, Any] = created.json()
    for stage in ("Qualified", "Won"):
        moved = await crm.client.patch(
            f"/v1/deals/{deal['id']}", json={"stage_id": stages[stage]}, headers=agent
        )
        assert moved.status_code == 200, moved.text
    history = await crm.client.get(f"/v1/deals/{deal['id']}/history", headers=agent)
    assert history.status_code == 200, history.text
    steps = [step["id"] for step in history.json()["items"]]
    assert [step["kind"] for step in history.json()["items"]] == ["created", "moved", "won"]
    assert deal["owner_user_id"] == str(me)
    return deal, steps


def expected_events(tenant: str, deal: dict[str, Any], steps: list[str]) -> list[tuple[Any, ...]]:
    owner = deal["owner_user_id"]
    return [
        (tenant, step, deal["id"], deal["contact_id"], "yandex", kind, 150_050, "RUB", owner, owner)
        for step, kind in zip(
            steps,
            [DealEventKind.CREATED, DealEventKind.STAGE_CHANGED, DealEventKind.WON],
            strict=True,
        )
    ]


def summary(events: list[DealEvent]) -> list[tuple[Any, ...]]:
    return [
        (
            e.tenant,
            e.event_id,
            e.deal_id,
            e.contact_id,
            e.label,
            e.kind,
            e.amount,
            e.currency,
            e.user_id,
            e.owner_user_id,
        )
        for e in events
    ]


async def test_a_deal_created_moved_and_won_lands_in_chdb(
    postgres_url: str, flushed_redis: str, tmp_path: Path
) -> None:
    # The control API's and the CRM's store is one chdb dir, as `vpbx up` gives them.
    chdb = tmp_path / "chdb"
    async with (
        serve_api(harness_settings(postgres_url, flushed_redis, tmp_path)) as control,
        serve_crm(control, postgres_url, flushed_redis, chdb_path=chdb) as crm,
    ):
        tenant = await crm_tenant(crm)
        other = await crm_tenant(crm)
        deal, steps = await a_deal_through_its_life(crm, tenant)
        store = open_cdr_store(None, chdb)
        await wait_for(lambda: len(store.deal_events(tenant)) == 3, "three steps in chdb")
        events = await asyncio.to_thread(store.deal_events, tenant)
        assert summary(events) == expected_events(tenant, deal, steps)
        pipeline = deal["pipeline_id"]
        assert [e.pipeline for e in events] == [pipeline] * 3
        stage_after = [step.stage for step in events]
        assert stage_after[-1] == deal_stage(await crm_deal(crm, tenant, deal["id"]))
        assert all(e.at_ms > 0 for e in events)
        assert await asyncio.to_thread(store.deal_events, other) == []
        await outbox_emptied(crm)


async def crm_deal(crm: CrmHarness, tenant: str, deal_id: str) -> dict[str, Any]:
    admin = await crm.as_role(tenant)
    read = await crm.client.get(f"/v1/deals/{deal_id}", headers=admin)
    assert read.status_code == 200, read.text
    found: dict[str, Any] = read.json()
    return found


def deal_stage(deal: dict[str, Any]) -> str:
    return str(deal["stage_id"])


async def test_a_store_outage_loses_no_deal_event(
    postgres_url: str,
    flushed_redis: str,
    tmp_path: Path,
    clickhouse_server: ClickHouseServer,
    clickhouse_database_url: str,
) -> None:
    async with (
        serve_api(harness_settings(postgres_url, flushed_redis, tmp_path)) as control,
        serve_crm(
            control,
            postgres_url,
            flushed_redis,
            clickhouse_url=clickhouse_database_url,
            analytics_ship_max_backoff_s=0.3,
        ) as crm,
    ):
        shipper: DealEventShipper = crm.app.state.deal_shipper
        store = open_cdr_store(clickhouse_database_url, Path("/nonexistent"))
        store.migrate()
        tenant = await crm_tenant(crm)
        _, agent = await crm_user(crm, tenant)
        first = await crm.client.post("/v1/deals", json={"title": "before"}, headers=agent)
        assert first.status_code == 201, first.text
        await wait_for(lambda: len(store.deal_events(tenant)) == 1, "the first deal shipped")
        await asyncio.to_thread(clickhouse_server.crash)
        try:
            titles = [f"during-{i}" for i in range(7)]
            for title in titles:
                made = await crm.client.post("/v1/deals", json={"title": title}, headers=agent)
                assert made.status_code == 201, made.text  # the CRM works without its store
            await wait_for(lambda: shipper.state is ShipperState.OUTAGE, "the outage noticed")
            await asyncio.sleep(0.5)  # several failed attempts
            assert await outbox_size(crm) == len(titles)
        finally:
            await asyncio.to_thread(clickhouse_server.start)
        await wait_for(lambda: len(store.deal_events(tenant)) == 8, "every deal shipped", 60)
        await wait_for(lambda: shipper.state is ShipperState.SHIPPING, "shipping again")
        await outbox_emptied(crm)
        events = await asyncio.to_thread(store.deal_events, tenant)
        assert [e.kind for e in events] == [DealEventKind.CREATED] * 8
        assert len({e.deal_id for e in events}) == 8
        store.close()


async def test_without_a_store_no_outbox_is_written(
    postgres_url: str, flushed_redis: str, tmp_path: Path
) -> None:
    async with (
        serve_api(harness_settings(postgres_url, flushed_redis, tmp_path)) as control,
        serve_crm(control, postgres_url, flushed_redis) as crm,
    ):
        assert not crm.settings.analytics_store_configured
        assert getattr(crm.app.state, "deal_shipper", None) is None
        tenant = await crm_tenant(crm)
        _, agent = await crm_user(crm, tenant)
        made = await crm.client.post("/v1/deals", json={"title": "quiet"}, headers=agent)
        assert made.status_code == 201, made.text
        assert await outbox_size(crm) == 0


async def test_a_shipped_batch_shipped_again_is_one_row_per_step(
    postgres_url: str, flushed_redis: str, tmp_path: Path
) -> None:
    """Two CRM replicas (or a crash between the insert and the delete) ship the same rows."""
    chdb = tmp_path / "chdb"
    async with (
        serve_api(harness_settings(postgres_url, flushed_redis, tmp_path)) as control,
        serve_crm(control, postgres_url, flushed_redis, chdb_path=chdb) as crm,
    ):
        running: DealEventShipper = crm.app.state.deal_shipper
        await running.stop()  # the rows stay in the outbox until the test's shippers run
        tenant = await crm_tenant(crm)
        _, agent = await crm_user(crm, tenant)
        for title in ("one", "two", "three"):
            made = await crm.client.post("/v1/deals", json={"title": title}, headers=agent)
            assert made.status_code == 201, made.text
        assert await outbox_size(crm) == 3

        def store() -> CdrStore:
            return open_cdr_store(None, chdb)

        replicas = [
            DealEventShipper(crm.context.database, store, batch_size=2, interval=0.05)
            for _ in range(2)
        ]
        check = store()
        check.migrate()
        await asyncio.gather(*(replica.start() for replica in replicas))
        try:
            await wait_for(lambda: len(check.deal_events(tenant)) == 3, "three deals shipped")
            await outbox_emptied(crm)
        finally:
            await asyncio.gather(*(replica.stop() for replica in replicas))
        assert len(await asyncio.to_thread(check.deal_events, tenant)) == 3
        assert sum(replica.shipped for replica in replicas) >= 3


async def answered_call(crm: CrmHarness, tenant: str, caller: str, extension: str) -> str:
    """A call the node reported ringing and answered at ``extension``, through the CRM's own
    call-event handler (what the Redis reader calls)."""
    call_id = f"call-{secrets.token_hex(6)}@test"
    now = int(time.time() * 1000)
    base: dict[str, Any] = {
        "call_id": call_id,
        "tenant": tenant,
        "city": "msk",
        "node": "n1",
        "number": "+74950000001",
        "caller": caller,
        "label": "radio",
        "direction": "inbound",
    }
    handler = CrmEventHandler(crm.context.database, crm.context.identity)
    for kind, at_ms in (
        (CallEventType.RINGING, now - 60_000),
        (CallEventType.ANSWERED, now - 50_000),
    ):
        await handler.handle(CallEvent(type=kind, callee=extension, at_ms=at_ms, **base))
    await handler.handle(
        CallEvent(
            type=CallEventType.ENDED,
            callee=extension,
            at_ms=now - 1_000,
            end_reason="completed",
            **base,
        )
    )
    return call_id


async def test_the_after_call_forms_deal_move_lands_and_a_refused_form_ships_nothing(
    postgres_url: str, flushed_redis: str, tmp_path: Path
) -> None:
    chdb = tmp_path / "chdb"
    async with (
        serve_api(harness_settings(postgres_url, flushed_redis, tmp_path)) as control,
        serve_crm(control, postgres_url, flushed_redis, chdb_path=chdb) as crm,
    ):
        tenant = await crm_tenant(crm)
        admin = await crm.as_role(tenant)
        anna = await crm.control.add_user(tenant, name="Anna", extension="101", password="pw-1")
        agent = await crm.control.login(anna.email, "pw-1")
        client = await crm.client.post(
            "/v1/contacts",
            json={"name": "Client", "phones": ["+79165550000"], "source_label": "radio"},
            headers=admin,
        )
        assert client.status_code == 201, client.text
        deal = await crm.client.post(
            "/v1/deals", json={"title": "PBX", "contact_id": client.json()["id"]}, headers=admin
        )
        assert deal.status_code == 201, deal.text
        stages = stages_by_name(await sales(crm, admin))
        call_id = await answered_call(crm, tenant, "+79165550000", "101")
        store = open_cdr_store(None, chdb)
        await wait_for(lambda: len(store.deal_events(tenant)) == 1, "the created step shipped")

        # The deal move is valid and flushed, then the task to close is not found: the
        # whole form is refused, the step (and its outbox row) rolled back with it.
        refused = await crm.client.post(
            f"/v1/calls/{call_id}/result",
            json={
                "outcome": "Lost it",
                "move_deal": {"deal_id": deal.json()["id"], "stage_id": stages["Qualified"]},
                "close_task_id": str(uuid.UUID(int=7)),
            },
            headers=agent,
        )
        assert refused.status_code == 404, refused.text
        assert await outbox_size(crm) == 0
        stored = await crm.client.post(
            f"/v1/calls/{call_id}/result",
            json={
                "outcome": "Signed",
                "move_deal": {"deal_id": deal.json()["id"], "stage_id": stages["Won"]},
            },
            headers=agent,
        )
        assert stored.status_code == 201, stored.text
        await wait_for(lambda: len(store.deal_events(tenant)) == 2, "the win shipped")
        await outbox_emptied(crm)
        created, won = await asyncio.to_thread(store.deal_events, tenant)
        assert (created.kind, won.kind) == (DealEventKind.CREATED, DealEventKind.WON)
        assert (won.user_id, won.label, won.stage) == (str(anna.id), "radio", stages["Won"])
        # The refused form's step never reached the store: two steps, no stage change.
        assert [e.kind for e in await asyncio.to_thread(store.deal_events, tenant)] == [
            DealEventKind.CREATED,
            DealEventKind.WON,
        ]

"""GET /v1/live: call events XADD'ed to the real Redis stream reach the right browsers.

The CRM is served on a loopback socket (uvicorn on the test's loop) and read with a real
WebSocket client. "Nobody else got it" is checked without waiting for silence: after the
event under test, each other subscriber is sent an event of their own, and the first thing
they receive must be that one (one stream, read in order; each feed is first in first out).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as redis
from tests.services.crm import CrmHarness, crm_tenant, crm_user
from tests.services.uvicorn_app import serving_here
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from vpbx_common.agents import AgentStateStore
from vpbx_common.crm import CrmContact
from vpbx_common.events import CallEvent, CallEventPublisher, CallEventType
from vpbx_common.queues import queue_key
from vpbx_control.auth.principal import Role
from vpbx_crm.live.board import TenantBoard

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAIN = "+74950000001"
CALLER = "+79161234567"
READ_TIMEOUT_S = 10  # a safety net for a broken hub, not a measured bound


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live_url(module_crm: CrmHarness) -> AsyncIterator[str]:
    async with serving_here(module_crm.app) as base:
        yield base.replace("http://", "ws://") + "/v1/live"


def event(tenant: str, kind: CallEventType, call_id: str, **fields: Any) -> CallEvent:
    values: dict[str, Any] = {
        "type": kind,
        "call_id": call_id,
        "tenant": tenant,
        "city": "msk",
        "node": "node-1",
        "number": MAIN,
        "caller": CALLER,
        "callee": "",
        "at_ms": int(time.time() * 1000),
        "direction": "inbound",
    }
    values.update(fields)
    return CallEvent(**values)


async def publish(crm: CrmHarness, *events: CallEvent) -> None:
    client = redis.Redis.from_url(crm.settings.redis_url or "")
    try:
        publisher = CallEventPublisher(client)
        for item in events:
            await publisher.publish(item)
    finally:
        await client.aclose()


BOARD = ("board", "board-call", "board-call-ended")


async def receive(ws: ClientConnection, *skip: str) -> dict[str, Any]:
    """The next message whose type is not in ``skip`` (pings and the board's calls always
    skipped: ``receive_board`` reads those)."""
    while True:
        text = await ws.recv(decode=True)
        message: dict[str, Any] = json.loads(text)
        if message["type"] not in ("ping", *BOARD, *skip):
            return message


async def receive_board(ws: ClientConnection) -> dict[str, Any]:
    """The next message of the board's calls (``board``, ``board-call``, ``board-call-ended``)."""
    while True:
        message: dict[str, Any] = json.loads(await ws.recv(decode=True))
        if message["type"] in BOARD:
            return message


@asynccontextmanager
async def feed(url: str, headers: dict[str, str]) -> AsyncIterator[ClientConnection]:
    token = headers["Authorization"].removeprefix("Bearer ")
    async with connect(url, open_timeout=READ_TIMEOUT_S) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        hello = await receive(ws)
        assert hello["type"] == "hello", hello
        yield ws


async def test_an_offered_call_pops_up_for_the_agent_it_rings_and_nobody_else(
    module_crm: CrmHarness, live_url: str
) -> None:
    crm = module_crm
    acme = await crm_tenant(crm)
    globex = await crm_tenant(crm)
    admin = await crm.as_role(acme)
    olga_id, olga = await crm_user(crm, acme, name="Olga Ivanova")
    petr_id, petr = await crm_user(crm, acme, name="Petr Sidorov")
    await crm.control.add_user(acme, name="Anna Owner")
    for user_id, extension in ((olga_id, "101"), (petr_id, "102")):
        response = await crm.control.client.patch(
            f"/v1/users/{user_id}", json={"extension": extension}, headers=admin
        )
        assert response.status_code == 200, response.text
    stranger_id, stranger = await crm_user(crm, globex, name="Globex Agent")
    globex_admin = await crm.as_role(globex)
    response = await crm.control.client.patch(
        f"/v1/users/{stranger_id}", json={"extension": "101"}, headers=globex_admin
    )
    assert response.status_code == 200, response.text
    _, boss = await crm_user(crm, acme, role=Role.SUPERVISOR, name="Boss")

    company = await crm.client.post("/v1/companies", json={"name": "Romashka LLC"}, headers=admin)
    assert company.status_code == 201, company.text
    client = await crm.client.post(
        "/v1/contacts",
        json={
            "name": "Ivan Petrov",
            "phones": [CALLER],
            "company_id": company.json()["id"],
            "owner_user_id": str(petr_id),
            "vip": True,
        },
        headers=admin,
    )
    assert client.status_code == 201, client.text
    contact = client.json()
    deal = await crm.client.post(
        "/v1/deals", json={"title": "50 chairs", "contact_id": contact["id"]}, headers=admin
    )
    assert deal.status_code == 201, deal.text
    summary = CrmContact(
        id=contact["id"],
        name="Ivan Petrov",
        category="client",
        owner_user_id=str(petr_id),
        vip=True,
    ).to_dict()

    async with (
        feed(live_url, olga) as olga_ws,
        feed(live_url, petr) as petr_ws,
        feed(live_url, boss) as boss_ws,
        feed(live_url, stranger) as stranger_ws,
    ):
        agents = await receive(boss_ws)
        assert agents["type"] == "agents"
        assert {a["name"]: a["state"] for a in agents["agents"]}["Olga Ivanova"] == "idle"

        call_id = f"call-{uuid.uuid4().hex}"
        await publish(
            crm, event(acme, CallEventType.OFFERED, call_id, offered=("101",), contact=summary)
        )

        pop = await receive(olga_ws)
        assert pop["type"] == "screen-pop"
        assert pop["call_id"] == call_id
        assert pop["caller"] == CALLER
        assert pop["contact"]["name"] == "Ivan Petrov"
        assert pop["contact"]["owner_name"] == "Petr Sidorov"
        assert pop["contact"]["vip"] is True
        card = await receive(olga_ws)
        assert card["type"] == "card"
        assert card["contact"]["company_name"] == "Romashka LLC"
        assert [d["title"] for d in card["contact"]["deals"]] == ["50 chairs"]
        assert card["contact"]["deals"][0]["stage"]

        seen = await receive(boss_ws)
        assert (seen["type"], seen["event"], seen["call_id"]) == ("call", "call.offered", call_id)
        board = await receive(boss_ws)
        states = {a["name"]: (a["state"], a["call_id"]) for a in board["agents"]}
        assert states["Olga Ivanova"] == ("ringing", call_id)
        assert states["Petr Sidorov"] == ("idle", "")

        # Petr (same tenant, not rung) and the other tenant's 101 got nothing of it: the
        # first thing each receives is the call offered to them afterwards.
        mine = f"call-{uuid.uuid4().hex}"
        theirs = f"call-{uuid.uuid4().hex}"
        await publish(
            crm,
            event(acme, CallEventType.OFFERED, mine, offered=("102",)),
            event(globex, CallEventType.OFFERED, theirs, offered=("101",)),
        )
        petr_pop = await receive(petr_ws)
        assert (petr_pop["type"], petr_pop["call_id"]) == ("screen-pop", mine)
        assert petr_pop["contact"] is None  # an unknown number for the node
        stranger_pop = await receive(stranger_ws)
        assert (stranger_pop["type"], stranger_pop["call_id"]) == ("screen-pop", theirs)
        assert stranger_pop["contact"] is None


async def test_answered_and_ended_reach_the_agent_and_the_board_shows_wrap_up(
    module_crm: CrmHarness, live_url: str
) -> None:
    crm = module_crm
    acme = await crm_tenant(crm)
    admin = await crm.as_role(acme)
    olga_id, olga = await crm_user(crm, acme, name="Olga Ivanova")
    response = await crm.control.client.patch(
        f"/v1/users/{olga_id}",
        json={"extension": "101", "settings": {"wrap_up_s": 600}},
        headers=admin,
    )
    assert response.status_code == 200, response.text

    async with feed(live_url, olga) as olga_ws, feed(live_url, admin) as admin_ws:
        await receive(admin_ws)  # the board at connect
        call_id = f"call-{uuid.uuid4().hex}"
        await publish(
            crm,
            event(acme, CallEventType.OFFERED, call_id, offered=("101",)),
            event(acme, CallEventType.ANSWERED, call_id, callee="101"),
        )
        assert (await receive(olga_ws, "card"))["type"] == "screen-pop"
        answered = await receive(olga_ws, "card")
        assert (answered["event"], answered["answered_by_user_id"]) == (
            "call.answered",
            str(olga_id),
        )
        board = await receive(admin_ws, "call")
        while board["agents"][0]["state"] != "talking":
            board = await receive(admin_ws, "call")
        assert board["agents"][0]["call_id"] == call_id

        await publish(
            crm, event(acme, CallEventType.ENDED, call_id, callee="101", end_reason="completed")
        )
        ended = await receive(olga_ws, "card")
        assert (ended["event"], ended["answered_by_user_id"]) == ("call.ended", str(olga_id))
        board = await receive(admin_ws, "call")
        (olga_row,) = board["agents"]
        assert olga_row["state"] == "wrap-up"
        assert olga_row["until_ms"] - olga_row["since_ms"] == 600_000


@pytest.mark.parametrize(
    "first",
    [
        "not json",
        json.dumps({"type": "auth"}),
        json.dumps({"type": "hello", "token": "x"}),
        json.dumps({"type": "auth", "token": "vpbx_not_a_real_key"}),
    ],
)
async def test_a_bad_first_message_closes_with_4401(
    module_crm: CrmHarness, live_url: str, first: str
) -> None:
    async with connect(live_url) as ws:
        await ws.send(first)
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_an_agents_api_key_has_no_feed_and_a_supervisors_key_sees_the_tenant(
    module_crm: CrmHarness, live_url: str
) -> None:
    acme = await crm_tenant(module_crm)
    agent_key = await module_crm.control.api_key(acme, Role.AGENT)
    async with connect(live_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": agent_key["Authorization"][7:]}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403

    supervisor_key = await module_crm.control.api_key(acme, Role.SUPERVISOR)
    async with feed(live_url, supervisor_key) as ws:
        assert (await receive(ws))["type"] == "agents"
        call_id = f"call-{uuid.uuid4().hex}"
        await publish(module_crm, event(acme, CallEventType.OFFERED, call_id, offered=("555",)))
        seen = await receive(ws, "agents")
        assert (seen["event"], seen["call_id"]) == ("call.offered", call_id)


async def test_a_foreign_stream_entry_does_not_stop_the_feed_and_pings_are_answered(
    module_crm: CrmHarness, live_url: str
) -> None:
    acme = await crm_tenant(module_crm)
    admin = await module_crm.as_role(acme)
    olga_id, olga = await crm_user(module_crm, acme, name="Olga Ivanova")
    response = await module_crm.control.client.patch(
        f"/v1/users/{olga_id}", json={"extension": "101"}, headers=admin
    )
    assert response.status_code == 200, response.text
    async with feed(live_url, olga) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"type": "pong"}
        client = redis.Redis.from_url(module_crm.settings.redis_url or "")
        try:
            await client.xadd("vpbx:call-events", {"tenant": acme, "event": "{not json"})
            await client.xadd("vpbx:call-events", {"something": "else"})
        finally:
            await client.aclose()
        call_id = f"call-{uuid.uuid4().hex}"
        await publish(module_crm, event(acme, CallEventType.OFFERED, call_id, offered=("101",)))
        pop = await receive(ws)
        assert (pop["type"], pop["call_id"]) == ("screen-pop", call_id)


async def test_the_board_shows_presence_and_calls_the_nodes_hold_in_redis(
    module_crm: CrmHarness, live_url: str
) -> None:
    """Presence set a moment ago and a call this CRM saw no event of (another replica's
    stream position, a restart) come from the shared agent state the nodes keep."""
    acme = await crm_tenant(module_crm)
    admin = await module_crm.as_role(acme)
    olga_id, olga = await crm_user(module_crm, acme, name="Olga Ivanova")
    response = await module_crm.control.client.patch(
        f"/v1/users/{olga_id}", json={"extension": "101"}, headers=admin
    )
    assert response.status_code == 200, response.text
    async with feed(live_url, admin) as ws:
        board = await receive(ws)
        assert [(a["presence"], a["state"]) for a in board["agents"]] == [("available", "idle")]

        away = await module_crm.control.client.patch(
            "/v1/users/me", json={"presence": "away"}, headers=olga
        )
        assert away.status_code == 200, away.text
        while board["agents"][0]["presence"] != "away":
            board = await receive(ws)
        assert board["agents"][0]["state"] == "idle"

        client = redis.Redis.from_url(module_crm.settings.redis_url or "")
        try:
            await AgentStateStore(client).call_answered(acme, "101", "call-on-another-replica")
        finally:
            await client.aclose()
        while board["agents"][0]["state"] != "talking":
            board = await receive(ws)
        assert board["agents"][0]["presence"] == "away"


async def test_a_removed_users_open_feed_is_closed(module_crm: CrmHarness, live_url: str) -> None:
    """The credential is checked again while the feed is open: a person removed from the
    tenant stops hearing its calls (within the recheck interval and the identity cache)."""
    acme = await crm_tenant(module_crm)
    admin = await module_crm.as_role(acme)
    user_id, headers = await crm_user(module_crm, acme, name="Leaving Soon")
    settings = module_crm.app.state.context.settings
    before, settings.live_recheck_s = settings.live_recheck_s, 0.2
    try:
        async with feed(live_url, headers) as ws:
            removed = await module_crm.control.client.delete(f"/v1/users/{user_id}", headers=admin)
            assert removed.status_code == 204, removed.text
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(receive(ws, "agents", "call", "card"), READ_TIMEOUT_S)
    finally:
        settings.live_recheck_s = before
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_the_supervisor_board_shows_a_queued_caller_waiting_then_ringing_then_talking(
    module_crm: CrmHarness, live_url: str
) -> None:
    crm = module_crm
    acme = await crm_tenant(crm)
    admin = await crm.as_role(acme)
    olga_id, olga = await crm_user(crm, acme, name="Olga Ivanova")
    response = await crm.control.client.patch(
        f"/v1/users/{olga_id}", json={"extension": "101"}, headers=admin
    )
    assert response.status_code == 200, response.text
    _, boss = await crm_user(crm, acme, role=Role.SUPERVISOR, name="Boss")
    call_id = f"call-{uuid.uuid4().hex}"
    joined = int(time.time() * 1000) - 30_000  # the caller has waited half a minute
    contact = CrmContact(id="ct-9", name="Ivan Petrov", category="client", vip=True)

    async with feed(live_url, boss) as boss_ws, feed(live_url, olga) as olga_ws:
        snapshot = await receive_board(boss_ws)
        assert (snapshot["type"], snapshot["calls"]) == ("board", [])
        await publish(
            crm,
            event(
                acme,
                CallEventType.QUEUED,
                call_id,
                at_ms=joined,
                queue="support",
                position=1,
                city="nsk",
                label="billboard",
                contact=contact.to_dict(),
            ),
        )
        row = (await receive_board(boss_ws))["call"]
        assert (row["call_id"], row["state"], row["queue"]) == (call_id, "queued", "support")
        assert (row["queued_ms"], row["since_ms"], row["caller"], row["city"]) == (
            joined,
            joined,
            CALLER,
            "nsk",
        )
        assert (row["label"], row["contact"]["name"], row["contact"]["vip"]) == (
            "billboard",
            "Ivan Petrov",
            True,
        )

        await publish(crm, event(acme, CallEventType.OFFERED, call_id, offered=("101",)))
        row = (await receive_board(boss_ws))["call"]
        assert (row["state"], row["ringing"], row["queue"]) == ("ringing", ["101"], "support")
        await publish(
            crm,
            event(acme, CallEventType.DEQUEUED, call_id, queue="support", queue_left="answered"),
            event(acme, CallEventType.ANSWERED, call_id, callee="101"),
        )
        row = (await receive_board(boss_ws))["call"]  # the wait is over, 101 still rings
        assert (row["state"], row["queue"]) == ("ringing", "")
        row = (await receive_board(boss_ws))["call"]
        assert (row["state"], row["answered_by"], row["answered_by_name"]) == (
            "talking",
            "101",
            "Olga Ivanova",
        )
        # The agent's own feed: the pop and the answer, never the queue's events.
        assert (await receive(olga_ws, "card"))["type"] == "screen-pop"
        answered = await receive(olga_ws, "card")
        assert answered["event"] == "call.answered"

        await publish(
            crm, event(acme, CallEventType.ENDED, call_id, callee="101", end_reason="completed")
        )
        gone = await receive_board(boss_ws)
        assert (gone["type"], gone["call_id"]) == ("board-call-ended", call_id)
        assert (await receive(olga_ws, "card"))["event"] == "call.ended"


async def test_a_supervisor_joining_late_gets_the_board_with_every_citys_waiting_callers(
    module_crm: CrmHarness, live_url: str
) -> None:
    """The snapshot holds what this replica saw, completed from Redis: a caller it never
    saw an event of (held by another city's node, joined before this CRM started) shows
    with its wait from the queue's keys, a call an agent talks on from the agents'
    talking set; each goes when Redis lets it go."""
    crm = module_crm
    acme = await crm_tenant(crm)
    admin = await crm.as_role(acme)
    olga_id, _ = await crm_user(crm, acme, name="Olga Ivanova")
    response = await crm.control.client.patch(
        f"/v1/users/{olga_id}", json={"extension": "101"}, headers=admin
    )
    assert response.status_code == 200, response.text
    group = await crm.control.client.post(
        "/v1/groups",
        json={"name": "support", "members": [{"user_id": str(olga_id)}]},
        headers=admin,
    )
    assert group.status_code == 201, group.text
    seen_call = f"call-{uuid.uuid4().hex}"
    unseen_call = f"call-{uuid.uuid4().hex}"
    talk_call = f"call-{uuid.uuid4().hex}"  # Olga talks on it, answered in another city
    now_s = time.time()
    client = redis.Redis.from_url(crm.settings.redis_url or "")
    try:
        await publish(
            crm,
            event(acme, CallEventType.QUEUED, seen_call, queue="support", position=1),
        )
        await client.zadd(queue_key(acme, "support", "wait"), {unseen_call: now_s - 95})
        await client.zadd(queue_key(acme, "support", "alive"), {unseen_call: now_s + 600})
        await client.zadd(queue_key(acme, "support", "wait"), {seen_call: now_s})
        await client.zadd(queue_key(acme, "support", "alive"), {seen_call: now_s + 600})
        await AgentStateStore(client).call_answered(acme, "101", talk_call)
        # The event went through the hub before anyone watched: wait for it to be read.
        hub = crm.app.state.live
        deadline = time.monotonic() + READ_TIMEOUT_S
        while seen_call not in hub._boards.get(acme, TenantBoard()).calls:
            assert time.monotonic() < deadline, "the hub never read the event"
            await asyncio.sleep(0.02)

        async with feed(live_url, admin) as ws:
            snapshot = await receive_board(ws)
            assert snapshot["type"] == "board"
            rows = {row["call_id"]: row for row in snapshot["calls"]}
            assert set(rows) == {seen_call, unseen_call, talk_call}
            talk = rows[talk_call]
            assert (talk["state"], talk["answered_by_name"], talk["partial"]) == (
                "talking",
                "Olga Ivanova",
                True,
            )
            assert (rows[seen_call]["caller"], rows[seen_call]["partial"]) == (CALLER, False)
            unseen = rows[unseen_call]
            assert (unseen["state"], unseen["queue"], unseen["partial"]) == (
                "queued",
                "support",
                True,
            )
            assert unseen["queued_ms"] == int((now_s - 95) * 1000)

            # The other city's caller is answered there; this replica hears nothing of it
            # but the queue's keys, and drops the row within a tick.
            await client.zrem(queue_key(acme, "support", "wait"), unseen_call)
            gone = await receive_board(ws)
            assert (gone["type"], gone["call_id"]) == ("board-call-ended", unseen_call)
            await AgentStateStore(client).call_ended(acme, "101", talk_call)
            gone = await receive_board(ws)
            assert (gone["type"], gone["call_id"]) == ("board-call-ended", talk_call)
    finally:
        await client.aclose()

"""CRM routing through a real node: scripted phones, a carrier, and a tiny HTTP server
standing in for the CRM service (``vpbx_common.crm``'s lookup contract).

The fake CRM (tests/services/fake_crm.py) answers per phone number from a book the test
edits, counts requests and connections, and can be slow or failing. The node asks it
through its real lookup client (``node/crmlookup.py``): known clients ring their manager,
a reassignment is seen by the very next call, suppliers go to their category's target,
and a CRM that fails or is slower than the lookup timeout sends the call on with the next
step, the CDR saying why.
Call events carry the contact, and call.offered is on the stream before the INVITE.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as redis
from tests.services.fake_crm import FakeCrm
from tests.services.ports import free_port
from tests.services.sippeers import NUMBER, Carrier, Node, Phone

from vpbx_common.cdr import CallRecord
from vpbx_common.crm import CrmContact
from vpbx_common.events import CallEvent, CallEventPublisher, CallEventType
from vpbx_common.nodeconfig import NodeConfig
from vpbx_media.node.crmlookup import CrmLookupClient
from vpbx_media.sip.message import SipMessage, SipRequest

CALLER = "+79130000001"  # the Carrier's default caller
TOKEN = "test-crm-service-token"
LOOKUP_MS = 300
ANNA_ID = "0b5e2c4c-8c1e-4a53-9a7d-3c2f1e0d9b8a"  # 101, a sales manager
BORIS_ID = "6f1d1b0e-3f7a-4f5e-9d1c-0c1d2e3f4a5b"  # 102, another one
STEP = "plan:main step 1 (crm-lookup)"


def client_of(owner: str) -> dict[str, Any]:
    return {"id": "ct-1", "name": "Ivan", "category": "client", "owner_user_id": owner}


SUPPLIER = {"id": "ct-2", "name": "Steel Ltd", "category": "supplier", "owner_user_id": None}


def config() -> NodeConfig:
    """The number goes to plan main: the CRM lookup (suppliers to purchasing, 103), then
    the reception group (104)."""

    def user(extension: str, ident: str | None = None) -> dict[str, Any]:
        return {"extension": extension, "name": extension, "city": "msk", "id": ident}

    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.test",
            "city": "msk",
            "suspended": False,
            "users": [user("101", ANNA_ID), user("102", BORIS_ID), user("103"), user("104")],
            "groups": [
                {"name": "purchasing", "members": ["103"], "ring_timeout_s": 30},
                {"name": "reception", "members": ["104"], "ring_timeout_s": 30},
            ],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": None,
                    "channels": 0,
                    "target": {"type": "route-plan", "name": "main"},
                }
            ],
            "route_plans": [
                {
                    "name": "main",
                    "steps": [
                        {
                            "type": "crm-lookup",
                            "categories": {"supplier": {"type": "group", "name": "purchasing"}},
                            "manager_timeout_s": 20,
                            "group_timeout_s": 0,
                        },
                        {"type": "group", "target": {"type": "group", "name": "reception"}},
                    ],
                }
            ],
        }
    ).with_version()


class SlowRecordingPublisher(CallEventPublisher):
    """Puts each event on the stream 0.2 s late and notes when it got there: a call.offered
    the node did not wait for would arrive after the phone's INVITE."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.published: list[tuple[float, CallEvent]] = []
        self.ended = asyncio.Event()  # call.ended is on the stream

    async def publish(self, event: CallEvent) -> str:
        await asyncio.sleep(0.2)
        entry_id = await super().publish(event)
        self.published.append((time.monotonic(), event))
        if event.type is CallEventType.ENDED:
            self.ended.set()
        return entry_id


class TimedPhone(Phone):
    """A phone noting when each message arrived."""

    def __init__(self, extension: str) -> None:
        super().__init__(extension)
        self.arrivals: list[tuple[float, SipMessage]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        super().datagram_received(data, addr)
        self.arrivals.append((time.monotonic(), self.seen[-1]))


async def start_node(node_factory: Any, crm: FakeCrm | str, **services: Any) -> Node:
    """A node asking ``crm`` (the fake, or a URL) with the real lookup client."""
    url = crm.url if isinstance(crm, FakeCrm) else crm
    lookups = CrmLookupClient(url, TOKEN, timeout_ms=LOOKUP_MS)
    await lookups.start()  # the node stops it
    node: Node = await node_factory(config(), crm=lookups, **services)
    return node


async def phones(node: Node, peers: Any) -> dict[str, TimedPhone]:
    found: dict[str, TimedPhone] = {}
    for extension in ("101", "102", "103", "104"):
        found[extension] = await peers(TimedPhone(extension))
        await node.register(found[extension])
    return found


def invited(phone: Phone) -> int:
    return sum(1 for m in phone.seen if isinstance(m, SipRequest) and m.method == "INVITE")


async def talk_and_hang_up(carrier: Carrier, phone: Phone) -> None:
    phone.answer()
    final = await carrier.final()
    assert final.status == 200
    carrier.bye()
    await phone.bye_answered()


def step_notes(record: CallRecord) -> list[tuple[str, str]]:
    return [(step.outcome, step.detail) for step in record.route if step.subject == STEP]


# --- known callers ------------------------------------------------------------------------


async def test_a_known_client_rings_their_manager_and_the_next_call_their_new_one(
    node_factory: Any, peers: Any, fake_crm: FakeCrm
) -> None:
    fake_crm.book[CALLER] = client_of(ANNA_ID)
    node = await start_node(node_factory, fake_crm)
    rung = await phones(node, peers)

    first = await peers(Carrier(node.address))
    first.invite()
    await rung["101"].ringing()
    assert [invited(rung[e]) for e in ("102", "103", "104")] == [0, 0, 0]
    await talk_and_hang_up(first, rung["101"])

    fake_crm.book[CALLER] = client_of(BORIS_ID)  # reassigned in the CRM a moment ago
    second = await peers(Carrier(node.address))
    second.invite()
    await rung["102"].ringing()
    assert invited(rung["101"]) == 1  # only the first call's INVITE
    await talk_and_hang_up(second, rung["102"])

    records = {r.call_id: r for r in await node.records(2)}
    anna_call, boris_call = records[first.call_id], records[second.call_id]
    assert (anna_call.answered_by, boris_call.answered_by) == ("101", "102")
    assert step_notes(anna_call) == [("entered", ""), ("decided", "contact ct-1 owner 101")]
    assert step_notes(boris_call) == [("entered", ""), ("decided", "contact ct-1 owner 102")]
    assert (boris_call.contact_id, boris_call.contact_category) == ("ct-1", "client")
    assert (boris_call.contact_owner_user_id, boris_call.contact_vip) == (BORIS_ID, False)
    # Asked once per call (no cache), with the service token, on one kept-alive connection.
    assert fake_crm.asked_for() == [CALLER, CALLER]
    assert [request.path for request in fake_crm.requests] == ["/internal/v1/lookup/acme"] * 2
    assert {r.headers["authorization"] for r in fake_crm.requests} == {f"Bearer {TOKEN}"}
    assert fake_crm.connections == 1


async def test_a_supplier_goes_to_the_category_target(
    node_factory: Any, peers: Any, fake_crm: FakeCrm
) -> None:
    fake_crm.book[CALLER] = SUPPLIER
    node = await start_node(node_factory, fake_crm)
    rung = await phones(node, peers)

    carrier = await peers(Carrier(node.address))
    carrier.invite()
    await rung["103"].ringing()
    assert [invited(rung[e]) for e in ("101", "102", "104")] == [0, 0, 0]
    await talk_and_hang_up(carrier, rung["103"])

    [record] = await node.records(1)
    assert record.answered_by == "103"
    assert step_notes(record)[-1] == ("decided", "contact ct-2 category supplier: group:purchasing")
    assert (record.contact_id, record.contact_category, record.contact_owner_user_id) == (
        "ct-2",
        "supplier",
        "",
    )


# --- the CRM not there in time ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "delay_s", "why"),
    [
        (503, 0.0, "CRM unavailable: HTTP 503"),
        (200, 3.0, f"CRM unavailable: timeout after {LOOKUP_MS} ms"),
    ],
)
async def test_a_failing_or_slow_crm_sends_the_call_on_and_the_cdr_says_why(
    node_factory: Any, peers: Any, fake_crm: FakeCrm, status: int, delay_s: float, why: str
) -> None:
    fake_crm.book[CALLER] = client_of(ANNA_ID)  # known, but the answer does not come (in time)
    fake_crm.status, fake_crm.delay_s = status, delay_s
    node = await start_node(node_factory, fake_crm)
    rung = await phones(node, peers)

    carrier = await peers(Carrier(node.address))
    started = time.monotonic()
    carrier.invite()
    await rung["104"].ringing(timeout=3.0)
    waited = time.monotonic() - started
    assert waited < 2.0  # the lookup timeout, not the CRM's 3 s
    assert invited(rung["101"]) == 0
    await talk_and_hang_up(carrier, rung["104"])

    [record] = await node.records(1)
    assert record.answered_by == "104"
    assert step_notes(record) == [("entered", ""), ("fell-through", why)]
    assert record.contact_id == ""  # nothing known about the caller


async def test_a_crm_that_is_down_sends_the_call_on(node_factory: Any, peers: Any) -> None:
    node = await start_node(node_factory, f"http://127.0.0.1:{free_port()}")  # nobody there
    rung = await phones(node, peers)

    carrier = await peers(Carrier(node.address))
    carrier.invite()
    await rung["104"].ringing(timeout=3.0)
    await talk_and_hang_up(carrier, rung["104"])

    [record] = await node.records(1)
    [(outcome, detail)] = step_notes(record)[1:]
    assert outcome == "fell-through"
    assert detail.startswith("CRM unavailable: connection failed")


async def test_an_unknown_caller_goes_on_with_the_next_step(
    node_factory: Any, peers: Any, fake_crm: FakeCrm
) -> None:
    node = await start_node(node_factory, fake_crm)
    rung = await phones(node, peers)
    carrier = await peers(Carrier(node.address))
    carrier.invite()
    await rung["104"].ringing()
    await talk_and_hang_up(carrier, rung["104"])
    [record] = await node.records(1)
    assert step_notes(record) == [("entered", ""), ("fell-through", "unknown caller")]
    assert fake_crm.asked_for() == [CALLER]


# --- call events -------------------------------------------------------------------------------


async def test_events_carry_the_contact_and_call_offered_precedes_the_invite(
    node_factory: Any, peers: Any, fake_crm: FakeCrm, flushed_redis: str
) -> None:
    fake_crm.book[CALLER] = client_of(ANNA_ID)
    events_redis = redis.Redis.from_url(flushed_redis)
    publisher = SlowRecordingPublisher(events_redis)
    try:
        node = await start_node(node_factory, fake_crm, events=publisher)
        node.service.screen_pop_lead_s = 0.25
        rung = await phones(node, peers)

        carrier = await peers(Carrier(node.address))
        carrier.invite()
        await rung["101"].ringing()
        await talk_and_hang_up(carrier, rung["101"])
        await asyncio.wait_for(publisher.ended.wait(), 5)
    finally:
        await events_redis.aclose()

    by_type = {event.type: (at, event) for at, event in publisher.published}
    assert [e.type for _, e in publisher.published][:2] == [
        CallEventType.OFFERED,
        CallEventType.RINGING,
    ]
    offered_at, offered = by_type[CallEventType.OFFERED]
    assert offered.offered == ("101",)
    invite_at = next(
        at for at, m in rung["101"].arrivals if isinstance(m, SipRequest) and m.method == "INVITE"
    )
    # On the stream before the phone got its INVITE, with the screen pop's head start.
    assert invite_at - offered_at >= 0.25
    contact = CrmContact(id="ct-1", name="Ivan", category="client", owner_user_id=ANNA_ID)
    for kind in (
        CallEventType.OFFERED,
        CallEventType.RINGING,
        CallEventType.ANSWERED,
        CallEventType.ENDED,
    ):
        _, event = by_type[kind]
        assert event.crm_contact == contact, kind
        assert event.direction == "inbound", kind

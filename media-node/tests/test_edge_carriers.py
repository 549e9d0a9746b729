"""Calls to numbers reach the edge from carriers only.

A real edge (SIP over UDP on loopback) reads a real routing table in Redis and relays
to a real node (tests/services/sippeers.py); carriers are scripted peers bound to
loopback addresses of their own (127.0.0.0/8 is all loopback): 127.0.0.1 is the
platform's carrier, 127.0.0.3 a trunk of the tenant acme, 127.0.0.2 nobody's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as redis
from tests.services.ports import free_port_pair
from tests.services.sippeers import EDGE_SECRET, NUMBER, Carrier, Phone, config

from vpbx_common.routing import NumberRoute, RoutingSnapshot, RoutingTable
from vpbx_media.edge.flowtoken import EdgeTokens
from vpbx_media.edge.proxy import EdgeProxy
from vpbx_media.edge.relayproof import PROOF_PARAM
from vpbx_media.node.legs.sip import SipUasLeg
from vpbx_media.runtime import sip_stack
from vpbx_media.settings import EdgeSettings
from vpbx_media.sip.headers import Via

PLATFORM_CARRIER, STRANGER, ACME_TRUNK = "127.0.0.1", "127.0.0.2", "127.0.0.3"
GLOBEX_NUMBER = "+74950000009"
UNKNOWN_NUMBER = "+74950000077"


def number_route(number: str, tenant: str, address: str) -> NumberRoute:
    return NumberRoute(
        number=number,
        tenant=tenant,
        city="msk",
        node=f"vpbx-node-{tenant}-msk",
        address=address,
        entry="sales",
    )


@dataclass
class Edge:
    proxy: EdgeProxy
    address: tuple[str, int]


EdgeFactory = Callable[[tuple[str, int]], Awaitable[Edge]]


@pytest.fixture
async def edge_factory(flushed_redis: str) -> AsyncIterator[EdgeFactory]:
    """An edge whose routing table sends acme's number to ``node`` and globex's elsewhere,
    with the platform's carrier at 127.0.0.1 and acme's own trunk at 127.0.0.3."""
    stops: list[Callable[[], Awaitable[None]]] = []

    async def start(node: tuple[str, int]) -> Edge:
        client = redis.Redis.from_url(flushed_redis)
        table = RoutingTable(client)
        nowhere = f"127.0.0.1:{free_port_pair()}"  # globex's node: never reached here
        await table.replace(
            RoutingSnapshot(
                numbers={
                    NUMBER: number_route(NUMBER, "acme", f"{node[0]}:{node[1]}"),
                    GLOBEX_NUMBER: number_route(GLOBEX_NUMBER, "globex", nowhere),
                },
                carriers=[f"{PLATFORM_CARRIER}/32"],
            )
        )
        async with client.pipeline(transaction=True) as pipe:
            table.replace_tenant_carriers(pipe, "acme", [f"{ACME_TRUNK}/32"])
            await pipe.execute()
        settings = EdgeSettings(sip_host="127.0.0.1", sip_port=free_port_pair(), sip_t1=0.05)
        transport, layer_factory = sip_stack(settings)
        proxy = EdgeProxy(transport, layer_factory, table, EdgeTokens(EDGE_SECRET))
        await transport.start()

        async def stop() -> None:
            await proxy.stop()
            await transport.stop()
            await client.aclose()

        stops.append(stop)
        return Edge(proxy, ("127.0.0.1", transport.port))

    yield start
    for stop in reversed(stops):
        await stop()


async def carrier_at(peers: Any, edge: Edge, host: str, number: str = NUMBER) -> Carrier:
    carrier: Carrier = await peers(
        Carrier(edge.address, via_edge=False, host=host, uri_user=number, to_user=number)
    )
    return carrier


async def test_a_platform_carriers_call_is_routed_to_the_node_with_the_edges_proof(
    node_factory: Any, peers: Any, edge_factory: EdgeFactory
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101"]}))
    edge = await edge_factory(node.address)
    phone = await peers(Phone("101"))
    await node.register(phone)
    carrier = await carrier_at(peers, edge, PLATFORM_CARRIER)

    carrier.invite()
    await phone.ringing()
    phone.answer()
    final = await carrier.final()
    assert final.status == 200
    # The node took it because the edge signed the Via it put on top.
    leg = node.service.calls[carrier.call_id].caller
    assert isinstance(leg, SipUasLeg)
    assert Via.parse(leg.request.headers.values("Via")[0]).param(PROOF_PARAM)
    # The proof stays between edge and node: the carrier's answer has its own Via only.
    assert [Via.parse(v).host for v in final.headers.values("Via")] == [PLATFORM_CARRIER]

    carrier.bye()  # in-dialog, through the edge's Record-Route
    await phone.bye_answered()
    [record] = await node.records(1)
    assert (record.direction, record.dialled, record.end_reason) == (
        "inbound",
        NUMBER,
        "completed",
    )
    assert edge.proxy.not_carriers.total == 0


async def test_a_stranger_is_refused_whatever_it_dials(
    node_factory: Any, peers: Any, edge_factory: EdgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101"]}))
    edge = await edge_factory(node.address)
    caplog.set_level(logging.INFO, logger="vpbx_media.edge.proxy")

    answers = []
    for number in (NUMBER, GLOBEX_NUMBER, UNKNOWN_NUMBER):
        stranger = await carrier_at(peers, edge, STRANGER, number)
        stranger.invite()
        answers.append(await stranger.final())
    # The same answer for a number that exists and one that does not: nothing learnt.
    assert [(a.status, a.reason) for a in answers] == [(403, "Not From A Carrier")] * 3
    assert edge.proxy.not_carriers.total == 3
    # One line per interval, naming the source.
    lines = [r.getMessage() for r in caplog.records if "Not From A Carrier" in r.getMessage()]
    assert len(lines) == 1
    assert "from 127.0.0.2:" in lines[0]
    assert lines[0].startswith("edge: 1 request(s) answered 403 Not From A Carrier")
    assert node.service.calls == {}

    # A platform carrier dialling a number nobody has gets "not found".
    carrier = await carrier_at(peers, edge, PLATFORM_CARRIER, UNKNOWN_NUMBER)
    carrier.invite()
    assert (await carrier.final()).status == 404


async def test_a_tenants_own_trunk_calls_that_tenants_numbers_only(
    node_factory: Any, peers: Any, edge_factory: EdgeFactory
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101"]}))
    edge = await edge_factory(node.address)
    phone = await peers(Phone("101"))
    await node.register(phone)

    trunk = await carrier_at(peers, edge, ACME_TRUNK)
    trunk.invite()
    await phone.ringing()
    phone.reply(486)
    assert (await trunk.final()).status >= 400  # routed: the phone rang, then was busy
    assert len(await node.records(1)) == 1

    elsewhere = await carrier_at(peers, edge, ACME_TRUNK, GLOBEX_NUMBER)
    elsewhere.invite()
    answer = await elsewhere.final()
    assert (answer.status, answer.reason) == (403, "Not From A Carrier")


async def test_a_new_invite_routed_by_a_replayed_record_route_is_refused_by_the_node(
    node_factory: Any, peers: Any, edge_factory: EdgeFactory
) -> None:
    """A caller learns the edge's Record-Route (token included) from its 200; a new
    INVITE sent with it as Route goes to the node without the edge's checks, hence
    without the signed Via, and the node refuses it."""
    node = await node_factory(config({"strategy": "ring-all", "members": ["101"]}))
    edge = await edge_factory(node.address)
    phone = await peers(Phone("101"))
    await node.register(phone)
    carrier = await carrier_at(peers, edge, PLATFORM_CARRIER)
    carrier.invite()
    await phone.ringing()
    phone.answer()
    assert (await carrier.final()).status == 200
    route = list(carrier.route)
    assert route

    # A new call (no To tag), from the very flow the token names, preloaded with the route.
    call_id = f"replay-{carrier.call_id}"
    routes = "".join(f"Route: {entry}\r\n" for entry in route)
    carrier.send(
        f"INVITE sip:{NUMBER}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{carrier.port};branch=z9hG4bK-replay;rport\r\n{routes}"
        f"Max-Forwards: 70\r\nFrom: <sip:+79130000001@127.0.0.1>;tag=replay\r\n"
        f"To: <sip:{NUMBER}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:carrier@127.0.0.1:{carrier.port}>\r\nContent-Length: 0\r\n\r\n",
        edge.address,
    )
    async with asyncio.timeout(5):
        while True:
            answer = await carrier.next_response()
            if answer.call_id == call_id and answer.status >= 200:
                break
    assert (answer.status, answer.reason) == (403, "Not From A Trunk")
    assert node.service.not_from_trunks.total == 1

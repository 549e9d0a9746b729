"""The SIP edge under a registration storm: what it cannot pass on it sheds as 503 + Retry-After.

A real edge (SIP over UDP on loopback) in front of a stand-in node whose answers the
test chooses: silent, shedding load itself, failing, or registering.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.services.ports import free_port_pair

from vpbx_common.routing import DomainRoute, NumberRoute
from vpbx_media.edge.flowtoken import EdgeTokens
from vpbx_media.edge.proxy import EdgeProxy
from vpbx_media.runtime import sip_stack
from vpbx_media.settings import EdgeSettings
from vpbx_media.sip.message import SipRequest, SipResponse, make_response, parse_message

DOMAIN = "acme.vpbx.local"
Answer = Callable[[SipRequest], SipResponse | None]


class StandInNode(asyncio.DatagramProtocol):
    """A node that answers every request with `answer(request)` (None: stays silent)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.call_ids: set[str] = set()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        self.call_ids.add(request.call_id)
        response = self.answer(request)
        if response is not None and self.transport is not None:
            self.transport.sendto(bytes(response), addr)


class Routes:
    """The routing table of one tenant with one node."""

    def __init__(self, node_port: int) -> None:
        self.route = DomainRoute(
            domain=DOMAIN,
            tenant="acme",
            nodes={"msk": f"127.0.0.1:{node_port}"},
            default_city="msk",
        )

    async def lookup_number_from(self, e164: str, source: str) -> tuple[NumberRoute | None, bool]:
        return None, False

    async def lookup_domain_user(
        self, domain: str, username: str | None
    ) -> tuple[DomainRoute | None, str | None]:
        return (self.route, None) if domain == DOMAIN else (None, None)


@dataclass
class Rig:
    edge: EdgeProxy
    edge_port: int
    node: StandInNode
    phone: socket.socket = field(default_factory=lambda: socket.socket(type=socket.SOCK_DGRAM))

    async def register_all(self, count: int, timeout: float) -> list[tuple[float, SipResponse]]:
        """Send `count` REGISTERs at once; (seconds after sending, final answer) of each."""
        loop = asyncio.get_running_loop()
        port = self.phone.getsockname()[1]
        started = loop.time()
        for index in range(count):
            self.phone.sendto(register(index, port), ("127.0.0.1", self.edge_port))
        answers: dict[str, tuple[float, SipResponse]] = {}
        while len(answers) < count:
            data = await asyncio.wait_for(loop.sock_recv(self.phone, 65535), timeout)
            response = parse_message(data)
            assert isinstance(response, SipResponse)
            if response.status >= 200:
                answers.setdefault(response.call_id, (loop.time() - started, response))
        return list(answers.values())


def register(index: int, port: int) -> bytes:
    user = f"{100 + index}"
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{DOMAIN}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{user}@{DOMAIN}>\r\n"
        f"Call-ID: storm-{index}-{secrets.token_hex(4)}\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{user}@127.0.0.1:{port}>\r\nExpires: 600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig_factory() -> AsyncIterator[RigFactory]:
    stops: list[Callable[[], Awaitable[None]]] = []

    async def start(answer: Answer, **edge_options: Any) -> Rig:
        loop = asyncio.get_running_loop()
        node_transport, node = await loop.create_datagram_endpoint(
            lambda: StandInNode(answer), local_addr=("127.0.0.1", 0)
        )
        node_port = node_transport.get_extra_info("sockname")[1]
        settings = EdgeSettings(sip_host="127.0.0.1", sip_port=free_port_pair(), sip_t1=0.1)
        transport, layer_factory = sip_stack(settings)
        edge = EdgeProxy(
            transport,
            layer_factory,
            Routes(node_port),
            EdgeTokens(b"test-edge-secret"),
            **edge_options,
        )
        await transport.start()
        rig = Rig(edge, transport.port, node)
        rig.phone.bind(("127.0.0.1", 0))
        rig.phone.setblocking(False)

        async def stop() -> None:
            rig.phone.close()
            await edge.stop()
            await transport.stop()
            node_transport.close()

        stops.append(stop)
        return rig

    yield start
    for stop in reversed(stops):
        await stop()


def retry_after(response: SipResponse) -> int:
    value = response.header("Retry-After")
    assert value is not None, f"503 without Retry-After:\n{response}"
    return int(value)


async def test_registers_beyond_the_in_flight_bound_are_shed_at_once(
    rig_factory: RigFactory,
) -> None:
    silent = await rig_factory(
        lambda request: None, max_registers_in_flight=4, register_timeout=1.0, retry_after_s=3
    )

    answers = await silent.register_all(10, timeout=5)

    assert [response.status for _, response in answers] == [503] * 10
    assert all(3 <= retry_after(response) <= 6 for _, response in answers)
    shed_at_once = [after for after, _ in answers if after < 0.5]
    timed_out = [after for after, _ in answers if after >= 0.9]
    # Six over the bound never reached the node; the four it held were given up on.
    assert (len(shed_at_once), len(timed_out)) == (6, 4)
    assert len(silent.node.call_ids) == 4
    assert silent.edge.registers_in_flight == 0


@pytest.mark.parametrize(
    ("node_status", "node_retry_after", "expected_retry_after"),
    [(503, None, range(5, 11)), (503, "42", range(42, 43)), (500, None, range(5, 11))],
)
async def test_a_node_overloaded_or_failing_becomes_503_with_retry_after(
    rig_factory: RigFactory,
    node_status: int,
    node_retry_after: str | None,
    expected_retry_after: range,
) -> None:
    extra = [("Retry-After", node_retry_after)] if node_retry_after else []
    rig = await rig_factory(lambda request: make_response(request, node_status, extra=extra))

    answers = await rig.register_all(3, timeout=5)

    for _, response in answers:
        assert response.status == 503
        assert retry_after(response) in expected_retry_after


async def test_a_node_that_keeps_up_registers_everyone(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(
        lambda request: make_response(request, 200, to_tag="t"), max_registers_in_flight=2
    )

    answers = await rig.register_all(2, timeout=5)

    assert [response.status for _, response in answers] == [200, 200]
    assert len(rig.node.call_ids) == 2

"""A registration storm at a real node (SIP over UDP, real Redis): 200 or 503, never 500.

The node's Redis pool is made tiny through its settings, then more authenticated
REGISTERs than it has connections arrive at once. With time to wait for a
connection every phone is registered; without, the ones that cannot get Redis in
time are told to come back (503 + Retry-After), and none gets a 500.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.services.ports import free_port_pair

from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.sipauth import DigestAlgorithm, ha1
from vpbx_media.cdr.spool import CdrSpool
from vpbx_media.node.bindings import BindingStore
from vpbx_media.node.configsource import ConfigHolder
from vpbx_media.node.registrar import Authenticator
from vpbx_media.node.service import NodeIdentity, NodeService
from vpbx_media.rtp.ports import PortAllocator
from vpbx_media.runtime import open_redis, sip_stack
from vpbx_media.settings import NodeSettings
from vpbx_media.sip.digest import (
    DigestAuthenticator,
    DigestChallenge,
    NonceService,
    build_credentials,
)
from vpbx_media.sip.message import SipResponse, parse_message
from vpbx_media.sip.transport import Address

REALM = "storm.vpbx.test"
USERS = 120  # far more than the pool's connections


def password(extension: str) -> str:
    return f"storm-{extension}-secret"


def storm_config() -> NodeConfig:
    users = []
    for index in range(USERS):
        extension = str(1000 + index)
        users.append(
            {
                "extension": extension,
                "name": f"User {extension}",
                "city": "msk",
                "ha1_md5": ha1(extension, REALM, password(extension), DigestAlgorithm.MD5),
                "ha1_sha256": ha1(extension, REALM, password(extension), DigestAlgorithm.SHA256),
            }
        )
    return NodeConfig.model_validate(
        {
            "tenant": "storm",
            "display_name": "Storm",
            "sip_domain": REALM,
            "city": "msk",
            "suspended": False,
            "users": users,
            "devices": [],
            "groups": [],
            "numbers": [],
        }
    ).with_version()


@dataclass
class RunningNode:
    settings: NodeSettings
    service: NodeService


NodeFactory = Callable[..., Awaitable[RunningNode]]


@pytest.fixture
async def node_factory(flushed_redis: str, tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """Start a node (as vpbx_media.node.app does, minus the CDR shipper) from settings."""
    stops: list[Callable[[], Awaitable[None]]] = []

    async def start(**overrides: Any) -> RunningNode:
        settings = NodeSettings(
            sip_host="127.0.0.1",
            sip_port=free_port_pair(),
            redis_url=flushed_redis,
            spool_dir=tmp_path / f"spool-{len(stops)}",
            **overrides,
        )
        redis_client = open_redis(settings)
        holder = ConfigHolder(storm_config())
        digest = DigestAuthenticator(NonceService(secrets.token_bytes(16)), REALM)
        transport, layer_factory = sip_stack(settings)
        service = NodeService(
            NodeIdentity(
                "storm", "msk", "node-storm", Address("127.0.0.1", settings.sip_port), "127.0.0.1"
            ),
            holder,
            layer_factory,
            BindingStore(redis_client),
            Authenticator(digest, holder),
            PortAllocator(40000, 40099),
            CdrSpool(settings.spool_dir),
            redis_client,
        )
        await transport.start()
        service.start()
        # The queue dispatcher holds one connection for its pub/sub hints for good.
        await asyncio.wait_for(service.queues.subscribed.wait(), 5)

        async def stop() -> None:
            await service.stop()
            await transport.stop()
            await redis_client.aclose()

        stops.append(stop)
        return RunningNode(settings, service)

    yield start
    for stop in reversed(stops):
        await stop()


def register(extension: str, local_port: int, cseq: int, authorization: str | None) -> bytes:
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{extension}@{REALM}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{extension}@{REALM}>",
        f"Call-ID: storm-{extension}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{extension}@127.0.0.1:{local_port}>;expires=600",
        "User-Agent: storm-test",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


async def storm(node: RunningNode) -> list[SipResponse]:
    """One REGISTER per user, all at once, with valid credentials; every final answer."""
    loop = asyncio.get_running_loop()
    target = ("127.0.0.1", node.settings.sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phones:
        phones.bind(("127.0.0.1", 0))
        phones.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        phones.setblocking(False)
        port = phones.getsockname()[1]
        # One challenge: every user answers the same nonce, each with the next nonce count.
        phones.sendto(register("1000", port, 1, None), target)
        challenged = parse_message(await asyncio.wait_for(loop.sock_recv(phones, 65535), 5))
        assert isinstance(challenged, SipResponse)
        assert challenged.status == 401
        challenge = next(
            DigestChallenge.parse(value)
            for value in challenged.headers.values("WWW-Authenticate")
            if "MD5" in value
        )
        requests: dict[str, bytes] = {}
        for index in range(USERS):
            extension = str(1000 + index)
            answer = build_credentials(
                challenge, extension, password(extension), "REGISTER", f"sip:{REALM}", nc=index + 1
            )
            request = register(extension, port, 2, str(answer))
            requests[f"storm-{extension}"] = request
            phones.sendto(request, target)
        # A burst overflows the node's socket buffer; phones retransmit (RFC 3261 timer E)
        # and the node's server transactions absorb the copies of what it already has.
        answers: dict[str, SipResponse] = {}
        deadline = loop.time() + 30
        while len(answers) < USERS:
            assert loop.time() < deadline, f"only {len(answers)} of {USERS} answered"
            try:
                data = await asyncio.wait_for(loop.sock_recv(phones, 65535), 0.5)
            except TimeoutError:
                for call_id, request in requests.items():
                    if call_id not in answers:
                        phones.sendto(request, target)
                continue
            response = parse_message(data)
            assert isinstance(response, SipResponse)
            if response.status >= 200:
                answers[response.call_id] = response
    return list(answers.values())


async def test_a_burst_bigger_than_the_pool_waits_for_connections(
    node_factory: NodeFactory,
) -> None:
    # One connection is the queue dispatcher's subscription: two are left for the burst.
    node = await node_factory(redis_max_connections=3, redis_pool_timeout=10.0)

    answers = await storm(node)

    assert {answer.status for answer in answers} == {200}
    for extension in ("1000", "1042", str(1000 + USERS - 1)):
        bindings = await node.service.bindings.list("storm", extension)
        assert [b.contact.split("@")[0] for b in bindings] == [f"sip:{extension}"]


async def test_a_burst_nobody_can_wait_for_is_shed_with_503_and_retry_after(
    node_factory: NodeFactory,
) -> None:
    # One connection each for the subscriptions of the queue dispatcher and of the
    # control API's commands, one for the burst.
    node = await node_factory(
        redis_max_connections=3, redis_pool_timeout=0.0, overload_retry_after=7
    )
    node.service.registrar.retry_after_s = node.settings.overload_retry_after

    answers = await storm(node)

    statuses = [answer.status for answer in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses, statuses
    assert 503 in statuses, statuses
    for answer in answers:
        if answer.status == 503:
            assert 7 <= int(answer.header("Retry-After") or "0") <= 14, answer

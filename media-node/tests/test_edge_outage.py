"""The SIP edge when its routing table (Redis) cannot be read: it answers, it does not hang."""

from __future__ import annotations

import asyncio
import secrets
import socket

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tests.services.ports import free_port, free_port_pair

from vpbx_common.routing import RoutingTable
from vpbx_media.edge.flowtoken import EdgeTokens
from vpbx_media.edge.proxy import EdgeProxy
from vpbx_media.runtime import sip_stack
from vpbx_media.settings import EdgeSettings


def _register(port: int, local_port: int) -> bytes:
    tag, call_id = secrets.token_hex(4), secrets.token_hex(8)
    return (
        f"REGISTER sip:acme.vpbx.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:olga-desk@acme.vpbx.local>;tag={tag}\r\n"
        "To: <sip:olga-desk@acme.vpbx.local>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:olga-desk@127.0.0.1:{local_port}>\r\nExpires: 60\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_a_phone_gets_503_while_the_routing_table_is_unreachable() -> None:
    settings = EdgeSettings(sip_host="127.0.0.1", sip_port=free_port_pair(), sip_t1=0.1)
    dead_redis = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    transport, layer_factory = sip_stack(settings)
    proxy = EdgeProxy(
        transport, layer_factory, RoutingTable(dead_redis), EdgeTokens(b"test-edge-secret")
    )
    await transport.start()
    loop = asyncio.get_running_loop()
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    try:
        for _ in range(2):  # and the edge is still there for the next one
            phone.sendto(
                _register(transport.port, phone.getsockname()[1]), ("127.0.0.1", transport.port)
            )
            answer = await asyncio.wait_for(loop.sock_recv(phone, 65535), 5)
            status_line = answer.split(b"\r\n", 1)[0]
            assert status_line.startswith(b"SIP/2.0 503"), answer
            retry_after = answer.split(b"\r\nRetry-After: ", 1)[1].split(b"\r\n", 1)[0]
            assert 5 <= int(retry_after) <= 10  # spread: phones must not all come back at once
    finally:
        phone.close()
        await proxy.stop()
        await transport.stop()
        await dead_redis.aclose()

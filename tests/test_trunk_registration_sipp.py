"""A node registers a carrier trunk at a real registrar: sipp with digest auth, real Redis.

sipp (loadtest/scenarios/uas_registrar_auth.xml) plays the carrier: it challenges the
first REGISTER, checks the node's MD5 credentials with its own ``verifyauth``, grants
the binding, then expects the unregister when the node stops. The node runs in
process as vpbx_media.node.app assembles it (NodeService on a real SIP transport, the
ConfigHolder telling it of config changes); the trunk is switched to registering by a
config change, and the status the node writes is read back with the control API's
reader (``TrunkStatusStore.get``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
import redis.asyncio as redis

from tests.services.ports import free_port_pair
from tests.services.sipp import SippFactory
from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.trunks import RegistrationState, TrunkStatusStore
from vpbx_media.cdr.spool import CdrSpool
from vpbx_media.node.bindings import BindingStore
from vpbx_media.node.configsource import ConfigHolder
from vpbx_media.node.registrar import Authenticator
from vpbx_media.node.service import NodeIdentity, NodeService
from vpbx_media.rtp.ports import PortAllocator
from vpbx_media.runtime import open_redis, sip_stack
from vpbx_media.settings import NodeSettings
from vpbx_media.sip.digest import DigestAuthenticator, NonceService
from vpbx_media.sip.transport import Address

pytestmark = pytest.mark.integration

REALM = "carrier.test"
USER = "acme-trunk"
PASSWORD = "carrier-pass-7"
GRANTED_S = 120


def node_config(registrar_port: int, *, registers: bool) -> NodeConfig:
    trunk = {
        "id": "carrier-1",
        "name": "Carrier",
        "scope": "platform",
        "host": "127.0.0.1",
        "port": registrar_port,
        "registers": registers,
        "username": USER,
        "password": PASSWORD,
        "register_expires_s": 300,
    }
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.vpbx.test",
            "city": "msk",
            "suspended": False,
            "users": [],
            "groups": [],
            "numbers": [],
            "trunks": [trunk],
        }
    ).with_version()


async def test_the_node_registers_its_trunk_at_sipp_and_says_so_in_redis(
    flushed_redis: str, sipp_factory: SippFactory, tmp_path: Path
) -> None:
    registrar = sipp_factory(
        "uas_registrar_auth.xml",
        keys={"realm": REALM, "user": USER, "password": PASSWORD, "expires": str(GRANTED_S)},
        timeout=40,
    )
    await asyncio.to_thread(registrar.start)

    settings = NodeSettings(
        sip_host="127.0.0.1",
        sip_port=free_port_pair(),
        redis_url=flushed_redis,
        spool_dir=tmp_path / "spool",
    )
    redis_client = open_redis(settings)
    holder = ConfigHolder(node_config(registrar.local_port, registers=False))
    transport, layer_factory = sip_stack(settings)
    service = NodeService(
        NodeIdentity(
            "acme", "msk", "node-acme", Address("127.0.0.1", settings.sip_port), "127.0.0.1"
        ),
        holder,
        layer_factory,
        BindingStore(redis_client),
        Authenticator(
            DigestAuthenticator(NonceService(secrets.token_bytes(16)), "acme.vpbx.test"), holder
        ),
        PortAllocator(40100, 40199),
        CdrSpool(settings.spool_dir),
        redis_client,
        url_policy=settings.outbound_policy(),
    )
    holder.listen(service.config_changed)
    statuses = TrunkStatusStore(redis.Redis.from_url(flushed_redis))
    await transport.start()
    service.start()
    stopped = False
    try:
        await service.trunks.settled()
        assert service.trunks.registrations == {}
        assert await statuses.get("acme", "carrier-1") == {}

        holder.current = node_config(registrar.local_port, registers=True)
        deadline = time.monotonic() + 10
        while True:
            reported = await statuses.get("acme", "carrier-1")
            status = reported.get("msk")
            if status is not None and status.state is RegistrationState.REGISTERED:
                break
            assert time.monotonic() < deadline, f"not registered: {reported}"
            await asyncio.sleep(0.1)
        assert set(reported) == {"msk"}
        assert status.reason == ""
        now_ms = time.time() * 1000
        assert now_ms + (GRANTED_S - 5) * 1000 < status.expires_at_ms <= now_ms + GRANTED_S * 1000
        registration = service.trunks.registrations["carrier-1"]
        assert registration.state is RegistrationState.REGISTERED

        await service.stop()  # unregisters, as a node does on its way out
        stopped = True
        result = await asyncio.to_thread(registrar.wait, 15)
        assert result.all_succeeded, result.describe()
        assert result.successful_calls == 1
        # A stopping node leaves its city's entry alone (it lapses by expires_at_ms).
        after = await statuses.get("acme", "carrier-1")
        assert after["msk"].state is RegistrationState.REGISTERED
    finally:
        if not stopped:
            await service.stop()
        await transport.stop()
        await redis_client.aclose()
        await statuses.client.aclose()

"""Run one tenant media node process (`vpbx node`)."""

from __future__ import annotations

import logging

import redis.asyncio as redis

from vpbx_common.cdr.store import open_cdr_store
from vpbx_common.nodeconfig import NodeConfig

from ..cdr.shipper import CdrShipper
from ..cdr.spool import CdrSpool
from ..rtp.ports import PortAllocator
from ..runtime import configure_logging, run, sip_stack, wait_for_stop_signal
from ..settings import NodeSettings
from ..sip.digest import DigestAuthenticator, NonceService
from ..sip.transport import Address
from .bindings import BindingStore
from .registrar import Authenticator
from .service import NodeIdentity, NodeService

logger = logging.getLogger(__name__)


class ConfigHolder:
    """The node's current config; replaced whole when a new version arrives."""

    def __init__(self, config: NodeConfig) -> None:
        self.current = config

    def __call__(self) -> NodeConfig:
        return self.current


async def run_node(settings: NodeSettings) -> None:
    settings.check_secrets()
    if not settings.redis_url:
        raise SystemExit("VPBX_REDIS_URL is required for a media node")
    config = ConfigHolder(NodeConfig.from_json(settings.node_config.read_bytes()))
    tenant = settings.tenant or config.current.tenant
    city = settings.city or config.current.city
    redis_client = redis.Redis.from_url(settings.redis_url)
    spool = CdrSpool(settings.spool_dir)
    shipper = CdrShipper(spool, lambda: open_cdr_store(settings.clickhouse_url, settings.chdb_path))
    nonces = NonceService(
        settings.nonce_secret.get_secret_value().encode().ljust(16, b"\0"),
        lifetime_s=settings.nonce_lifetime,
    )
    authenticator = Authenticator(
        DigestAuthenticator(nonces, config.current.sip_domain, tuple(settings.digest_algorithms)),
        config,
        tuple(settings.digest_md5_only_agents),
    )
    transport, layer_factory = sip_stack(settings)

    identity = NodeIdentity(
        tenant=tenant,
        city=city,
        node_name=settings.node_name,
        sip_address=Address(settings.advertised_host or settings.sip_host, settings.sip_port),
        media_address=settings.advertised_media_host or settings.media_host,
    )
    service = NodeService(
        identity,
        config,
        layer_factory,
        BindingStore(redis_client),
        authenticator,
        PortAllocator(settings.rtp_port_min, settings.rtp_port_max),
        spool,
        redis_client,
        shipper=shipper,
        registrar_limits=(settings.min_register_expires, settings.max_register_expires),
    )
    recovered = service.recover()
    await transport.start()
    await shipper.start()
    service.start()
    logger.info(
        "node %s (tenant=%s city=%s) listening on %s:%d; %d open call(s) recovered",
        settings.node_name,
        tenant,
        city,
        settings.sip_host,
        transport.port,
        recovered,
    )
    try:
        await wait_for_stop_signal()
        logger.info("node %s draining %d call(s)", settings.node_name, len(service.calls))
        await service.drain(settings.drain_timeout)
    finally:
        await service.stop()
        await transport.stop()
        await shipper.stop()
        await redis_client.aclose()


def main() -> None:
    settings = NodeSettings()
    configure_logging(settings.log_level)
    run(lambda: run_node(settings))

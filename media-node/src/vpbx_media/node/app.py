"""Run one tenant media node process (`vpbx node`)."""

from __future__ import annotations

import logging

from vpbx_common.cdr.store import open_cdr_store
from vpbx_common.events import CallEventPublisher
from vpbx_common.storage import ObjectStore
from vpbx_common.storage.s3 import S3ObjectStore
from vpbx_common.storage.settings import open_object_store

from ..cdr.shipper import CdrShipper
from ..cdr.spool import CdrSpool
from ..edge.relayproof import RelayProofs
from ..metrics import NodeMetrics, serve_metrics
from ..rtp.ports import PortAllocator
from ..runtime import configure_logging, open_redis, run, sip_stack, wait_for_stop_signal
from ..settings import NodeSettings
from ..sip.digest import DigestAuthenticator, NonceService
from ..sip.transport import Address
from ..webrtc.gateway import WebRtcGateway
from .bindings import BindingStore
from .configsource import ConfigClient, ConfigHolder, ConfigWatcher, read_config_file
from .crmlookup import CrmLookupClient
from .decisions import DecisionClient
from .prompts import PromptLibrary
from .recordings import RecordingService
from .registrar import Authenticator
from .service import NodeIdentity, NodeService

logger = logging.getLogger(__name__)

__all__ = ["ConfigHolder", "main", "run_node"]


async def run_node(settings: NodeSettings) -> None:
    settings.check_secrets()
    if not settings.redis_url:
        raise SystemExit("VPBX_REDIS_URL is required for a media node")
    redis_client = open_redis(settings)
    watcher: ConfigWatcher | None = None
    prompts = PromptLibrary()
    if settings.config_url:
        if not (settings.tenant and settings.city):
            raise SystemExit("VPBX_TENANT and VPBX_CITY are required with VPBX_CONFIG_URL")
        client = ConfigClient(
            settings.config_url,
            settings.service_token.get_secret_value(),
            settings.tenant,
            settings.city,
            timeout=settings.config_fetch_timeout,
        )
        config = ConfigHolder(await client.fetch_initial())
        prompts = PromptLibrary(client.fetch_prompt, fetch_speech=client.fetch_speech)
        watcher = ConfigWatcher(
            client, config, redis_client, poll_interval=settings.config_poll_interval
        )
    else:
        config = ConfigHolder(read_config_file(settings.node_config))
    tenant = settings.tenant or config.current.tenant
    city = settings.city or config.current.city
    spool = CdrSpool(settings.spool_dir)
    metrics = NodeMetrics(tenant, city)
    shipper = CdrShipper(
        spool,
        lambda: open_cdr_store(settings.clickhouse_url, settings.chdb_path),
        on_shipped=metrics.cdrs_shipped,
        on_store=metrics.cdr_store_reachable,
    )
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
    decisions = DecisionClient.from_settings(settings, tenant)
    await decisions.start()
    crm = CrmLookupClient.from_settings(settings)
    if crm is not None:
        await crm.start()
    events = CallEventPublisher(redis_client, max_len=settings.call_events_max_len)
    store: ObjectStore | None = None
    if settings.storage_url or settings.is_local:
        store = open_object_store(settings)
        if isinstance(store, S3ObjectStore):
            await store.ensure_bucket()
    else:
        # A cluster installed without object storage still takes calls.
        logger.warning("no VPBX_STORAGE_URL: calls are not recorded and nobody has voicemail")
    recordings = RecordingService(settings.spool_dir, store, events.publish)
    # Browsers' media (ICE, DTLS-SRTP) in worker processes, off this loop.
    # ICE candidates on the address the relay advertises (the pod's, in a cluster), never
    # on a wildcard bind address a browser cannot reach.
    # 0 workers: no gateway (a node without browser agents saves its ~70 MB per
    # worker); browsers' calls are then refused 488.
    webrtc: WebRtcGateway | None = None
    if settings.webrtc_workers != 0:
        webrtc = WebRtcGateway(
            workers=settings.webrtc_workers, media_address=identity.media_address
        )
        await webrtc.start()
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
        prompts=prompts,
        decisions=decisions,
        crm=crm,
        events=events,
        recordings=recordings,
        url_policy=settings.outbound_policy(),
        relay_proofs=RelayProofs(settings.edge_secret.get_secret_value().encode()),
        webrtc=webrtc,
        metrics=metrics,
    )
    if webrtc is not None:
        webrtc.on_failed = service.webrtc_failed
    config.listen(service.config_changed)
    service.registrar.retry_after_s = settings.overload_retry_after
    service.screen_pop_lead_s = settings.screen_pop_lead_ms / 1000
    recovered = service.recover()
    await transport.start()
    exporter = serve_metrics(metrics.registry, settings.metrics_host, settings.metrics_port)
    await shipper.start()
    await recordings.start()
    service.start()
    if watcher is not None:
        watcher.start()
    logger.info(
        "node %s (tenant=%s city=%s) listening on %s:%d; config %s; %d open call(s) recovered",
        settings.node_name,
        tenant,
        city,
        settings.sip_host,
        transport.port,
        config.current.version,
        recovered,
    )
    try:
        await wait_for_stop_signal()
        logger.info("node %s draining %d call(s)", settings.node_name, len(service.calls))
        await service.drain(settings.drain_timeout)
    finally:
        if watcher is not None:
            await watcher.stop()
            await watcher.client.aclose()
        await service.stop()
        if webrtc is not None:
            await webrtc.stop()
        await transport.stop()
        await recordings.stop()
        if store is not None:
            await store.close()
        await shipper.stop()
        await redis_client.aclose()
        if exporter is not None:
            exporter.shutdown()


def main() -> None:
    settings = NodeSettings()
    configure_logging(settings.log_level)
    # httpx logs every config fetch at INFO; the watcher logs what matters (version changes).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run(lambda: run_node(settings))

"""Run the per-city SIP edge process (`vpbx edge`)."""

from __future__ import annotations

import logging

from vpbx_common.routing import RoutingTable

from ..metrics import process_registry, serve_metrics
from ..runtime import configure_logging, open_redis, run, sip_stack, wait_for_stop_signal
from ..settings import EdgeSettings
from ..sip.websocket import WebSocketListener, ssl_context_from
from .flowtoken import EdgeTokens
from .proxy import EdgeProxy, SourceLimiter
from .relayproof import RelayProofs

logger = logging.getLogger(__name__)


async def run_edge(settings: EdgeSettings) -> None:
    settings.check_secrets()
    if not settings.redis_url:
        raise SystemExit("VPBX_REDIS_URL is required for the SIP edge")
    redis_client = open_redis(settings)
    transport, layer_factory = sip_stack(settings)

    secret = settings.edge_secret.get_secret_value().encode()
    limiter = SourceLimiter(settings.source_rate, settings.source_burst)
    websocket: WebSocketListener | None = None
    if settings.edge_ws_port:
        websocket = WebSocketListener(
            transport,
            settings.sip_host,
            settings.edge_ws_port,
            ssl_context=ssl_context_from(settings.edge_ws_cert_file, settings.edge_ws_key_file),
            max_message_size=settings.edge_ws_max_message_size,
            max_per_source=settings.edge_ws_max_connections_per_source,
            # A new connection costs its source a token, like a request does: a
            # connection flood is cut off by the same bucket as a request flood.
            admit=limiter.allow,
        )
    proxy = EdgeProxy(
        transport,
        layer_factory,
        RoutingTable(redis_client, carriers_ttl_s=settings.carriers_cache_s),
        EdgeTokens(secret),
        limiter=limiter,
        proofs=RelayProofs(secret),
        max_registers_in_flight=settings.max_registers_in_flight,
        register_timeout=settings.register_timeout,
        retry_after_s=settings.overload_retry_after,
        pod_host=settings.pod_ip,
    )
    await transport.start()
    exporter = serve_metrics(process_registry(), settings.metrics_host, settings.metrics_port)
    logger.info("SIP edge listening on %s:%d (UDP and TCP)", settings.sip_host, transport.port)
    if websocket is not None:
        await websocket.start()
        logger.info(
            "SIP edge listening on %s://%s:%d (SIP over WebSocket)",
            websocket.scheme,
            settings.sip_host,
            websocket.port,
        )
    try:
        await wait_for_stop_signal()
    finally:
        if websocket is not None:
            await websocket.stop()
        await proxy.stop()
        await transport.stop()
        await redis_client.aclose()
        if exporter is not None:
            exporter.shutdown()


def main() -> None:
    settings = EdgeSettings()
    configure_logging(settings.log_level)
    run(lambda: run_edge(settings))

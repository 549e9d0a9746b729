"""Process plumbing shared by the edge and node roles: event loop, logging, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as redis
import uvloop

from .settings import SipSettings
from .sip.transaction import Timers, TransactionLayer, TransactionUser
from .sip.transport import SipTransport


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # The driver logs a traceback per failed connection; the shipper reports outages once.
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)


async def wait_for_stop_signal() -> signal.Signals:
    """Resolve on the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not stopped.done():
            stopped.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return await stopped


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a role's main coroutine on uvloop (see the brief: the default loop drops RTP)."""
    uvloop.run(main())


def sip_stack(
    settings: SipSettings,
) -> tuple[SipTransport, Callable[[TransactionUser], TransactionLayer]]:
    """The role's SIP transport and a factory binding a transaction layer to its user."""
    transport = SipTransport(
        settings.sip_host,
        settings.sip_port,
        advertised_host=settings.advertised_host,
        max_message_size=settings.max_message_size,
    )
    timers = Timers(t1=settings.sip_t1)

    def layer_factory(user: TransactionUser) -> TransactionLayer:
        return TransactionLayer(transport, user, timers)

    return transport, layer_factory


def open_redis(settings: SipSettings) -> redis.Redis:
    """A Redis client on a bounded pool that waits for a free connection.

    redis-py's default asyncio pool raises "Too many connections" the moment its
    limit is reached; under a burst of REGISTERs that became 500s. This pool makes a
    request wait up to `redis_pool_timeout` seconds, then raises ConnectionError
    (a RedisError), which the edge and the node answer with 503 + Retry-After.
    """
    if not settings.redis_url:
        raise ValueError("VPBX_REDIS_URL is not set")
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout,
    )
    return redis.Redis.from_pool(pool)

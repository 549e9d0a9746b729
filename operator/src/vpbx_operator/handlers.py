"""kopf handlers: thin. They feed the reconciler and own its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
import redis.asyncio as redis
from kubernetes import client, config
from prometheus_client import start_http_server

from vpbx_common.carriers import platform_networks
from vpbx_common.platformtrunks import PlatformTrunks
from vpbx_common.routing import RoutingTable

from .kube import KubeCluster
from .reconciler import Reconciler
from .render import API_GROUP, API_VERSION
from .settings import OperatorSettings

logger = logging.getLogger(__name__)

_state: dict[str, Any] = {}


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    operator_settings = OperatorSettings()
    # One replica, no peering CRDs to install; watches reconnect well before idle cut-offs.
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.posting.level = logging.WARNING
    routing = None
    if operator_settings.redis_url:
        redis_client = redis.Redis.from_url(operator_settings.redis_url)
        _state["redis"] = redis_client
        routing = RoutingTable(redis_client)
    else:
        logger.warning("VPBX_REDIS_URL unset: the edge routing table is not maintained")
    if operator_settings.metrics_port:
        start_http_server(operator_settings.metrics_port)
    # A broken trunks file stops the start (as it does the control API's).
    trunks = PlatformTrunks(operator_settings.platform_trunks_file)
    if operator_settings.platform_trunks_file is None:
        logger.warning(
            "VPBX_PLATFORM_TRUNKS_FILE unset: no platform carriers, the edges take calls to "
            "numbers only from tenants' own trunks"
        )

    async def carriers() -> list[str]:
        return await platform_networks(trunks.current())

    reconciler = Reconciler(
        KubeCluster(_api_client()),
        routing,
        namespace=operator_settings.namespace,
        template=operator_settings.node_template(),
        resync_interval=operator_settings.resync_interval,
        carriers=carriers,
    )
    _state["reconciler"] = reconciler
    _state["task"] = asyncio.get_running_loop().create_task(reconciler.run())


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    task = _state.pop("task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    redis_client = _state.pop("redis", None)
    if redis_client is not None:
        await redis_client.aclose()


def _observe(plural: str, event: kopf.RawEvent, body: kopf.Body) -> None:
    reconciler: Reconciler | None = _state.get("reconciler")
    if reconciler is None:
        raise kopf.TemporaryError("the reconciler is not running yet", delay=1)
    deleted = isinstance(event, dict) and event.get("type") == "DELETED"
    reconciler.observe(plural, dict(body), deleted=deleted)


@kopf.on.event(API_GROUP, API_VERSION, "tenants")
def tenant_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    _observe("tenants", event, body)


@kopf.on.event(API_GROUP, API_VERSION, "numbers")
def number_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    _observe("numbers", event, body)


@kopf.on.probe(id="reconciles")
def reconciles(**_: Any) -> int:
    reconciler: Reconciler | None = _state.get("reconciler")
    return reconciler.passes if reconciler is not None else 0

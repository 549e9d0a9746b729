"""The CRM app factory: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import redis.asyncio as redis
from fastapi import FastAPI

from vpbx_common.agents import AgentStateStore
from vpbx_common.cdr import CdrStore, open_cdr_store
from vpbx_common.events import CRM_GROUP, CallEventConsumer
from vpbx_control.app import document_common_errors
from vpbx_control.db.session import Database
from vpbx_control.errors import install_error_handlers
from vpbx_control.inputs import RefuseNulMiddleware
from vpbx_control.observability import Metrics, ObservabilityMiddleware

from . import health
from .analytics.shipper import DealEventShipper
from .calls.router import router as calls_router
from .companies.router import router as companies_router
from .contacts.phones import region_of_phones
from .contacts.router import router as contacts_router
from .context import CrmContext
from .db.migrate import upgrade
from .deals.router import router as deals_router
from .directory.router import router as directory_router
from .events.handler import CrmEventHandler
from .identity import IdentityClient
from .live.hub import LiveHub
from .live.router import router as live_router
from .lookup.router import router as lookup_router
from .notes.router import router as notes_router
from .pipelines.router import router as pipelines_router
from .scripts.router import router as scripts_router
from .settings import CrmSettings
from .tasks.router import router as tasks_router
from .transfer.router import router as transfer_router
from .web.config import router as workspace_config_router
from .web.static import WorkspaceRoute, first_segment

logger = logging.getLogger(__name__)

ROUTERS = (
    # First: routes are matched in order, and the nodes' lookup runs on every call.
    lookup_router,
    health.router,
    contacts_router,
    companies_router,
    pipelines_router,
    deals_router,
    notes_router,
    tasks_router,
    calls_router,
    scripts_router,
    directory_router,
    transfer_router,
    workspace_config_router,
    live_router,
)

SHUTDOWN_STEP_S = 5.0


async def _bounded(step: Awaitable[None], what: str) -> None:
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_S)
    except TimeoutError:
        logger.warning("CRM shutdown: %s did not stop within %.0f s", what, SHUTDOWN_STEP_S)


DESCRIPTION = """\
The vpbx CRM: contacts and companies, deals in pipelines, tasks, notes and the call
timeline every call of the tenant's numbers lands in.

One login for the whole product: authenticate with `Authorization: Bearer <token>`, a
user access token from the control API's `POST /v1/auth/login` or a tenant API key
(`vpbx_...`); the roles are the control API's (agent, supervisor, tenant-admin). Every
error has the body `{"error_id", "message", "details"}`. Updates accept `If-Match`.
"""


def _analytics_store(settings: CrmSettings) -> CdrStore:
    # The server if its URL is set; else chdb on the nodes' data dir (the settings make
    # sure one of the two is there before a shipper exists).
    if settings.chdb_path is None and not settings.clickhouse_url:
        raise RuntimeError("no analytics store is configured")
    return open_cdr_store(settings.clickhouse_url, settings.chdb_path or Path())


def build_context(
    settings: CrmSettings, control_transport: httpx.AsyncBaseTransport | None = None
) -> CrmContext:
    client = httpx.AsyncClient(
        base_url=settings.control_url,
        timeout=settings.control_timeout_s,
        transport=control_transport,
    )
    return CrmContext(
        settings=settings,
        database=Database(settings.database_url, echo=settings.database_echo),
        identity=IdentityClient(
            client,
            settings.service_token.get_secret_value(),
            identity_cache_s=settings.identity_cache_s,
            directory_cache_s=settings.directory_cache_s,
        ),
        redis=redis.Redis.from_url(settings.redis_url) if settings.redis_url else None,
    )


def create_app(
    settings: CrmSettings,
    *,
    control_transport: httpx.AsyncBaseTransport | None = None,
    migrate: bool = True,
) -> FastAPI:
    """``control_transport``: how to reach the control API (tests pass its app in process)."""
    settings.check_secrets()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade(settings.database_url)
        context = build_context(settings, control_transport)
        app.state.context = context
        # The first foreign phone would import phonenumbers' geocoder (seconds) on the
        # event loop, stalling the nodes' lookups: load it now, off the loop.
        await asyncio.to_thread(region_of_phones, ["+493012345678"])
        # Every call becomes a CRM event: the CRM's own group on the durable stream, so
        # nothing is lost while it restarts.
        reader: CallEventConsumer | None = None
        if context.redis is not None:
            handler = CrmEventHandler(context.database, context.identity)
            app.state.call_events = reader = CallEventConsumer(
                context.redis,
                CRM_GROUP,
                handler.handle,
                batch_handler=handler.handle_many,
                batch_size=64,
                block_s=settings.call_events_block_s,
                linger_s=settings.call_events_linger_s,
            )
            await reader.start()
        # The browsers' live feed: a tail of its own (see live/hub.py), not this reader.
        hub: LiveHub | None = None
        if settings.redis_url:
            app.state.live = hub = LiveHub(
                settings.redis_url,
                context.identity,
                context.database,
                block_s=settings.call_events_block_s,
                directory_ttl_s=settings.directory_cache_s,
                agents=AgentStateStore(context.redis) if context.redis is not None else None,
            )
            await hub.start()
        # Deal events for the analytics store: the outbox the deal changes write is emptied
        # into it (nothing is written to the outbox without a store, see DealService).
        shipper: DealEventShipper | None = None
        if settings.analytics_store_configured:
            app.state.deal_shipper = shipper = DealEventShipper(
                context.database,
                lambda: _analytics_store(settings),
                batch_size=settings.analytics_ship_batch,
                interval=settings.analytics_ship_interval_s,
                max_backoff=settings.analytics_ship_max_backoff_s,
            )
            await shipper.start()
        try:
            yield
        finally:
            # Each step bounded: a stop that hangs (a client library waiting on a
            # connection a cancelled read left behind) must not hold the others up.
            if shipper is not None:
                await _bounded(shipper.stop(), "the deal event shipper")
            if hub is not None:
                await _bounded(hub.stop(), "the live feed")
            if reader is not None:
                await _bounded(reader.stop(), "the call-event reader")
            await _bounded(context.identity.aclose(), "the control API client")
            await _bounded(context.database.dispose(), "the database pool")
            if context.redis is not None:
                await _bounded(context.redis.aclose(), "the Redis client")

    app = FastAPI(title="vpbx CRM", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RefuseNulMiddleware)
    # Added last, so outermost: refused requests are counted and logged too.
    app.add_middleware(ObservabilityMiddleware, metrics=Metrics())
    for router in ROUTERS:
        app.include_router(router)
    document_common_errors(app)
    # Last: the agent workspace answers what no API route claims (GET and HEAD outside the
    # API's path segments), so it shadows none of them.
    app.router.routes.append(
        WorkspaceRoute(
            settings.web_dir,
            reserved={first_segment(getattr(route, "path", "/")) for route in app.routes},
            control_url=settings.browser_control_url,
            sip_ws_url=settings.sip_ws_url,
        )
    )
    return app

"""The control API app factory: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from vpbx_common.storage import ObjectStore

from . import health
from .adchannels.router import router as ad_channels_router
from .apikeys.router import router as api_keys_router
from .audio.serve import MAX_DECODES
from .audio.store import open_objects
from .auth.credentials import CredentialVerifier
from .auth.passwords import Passwords
from .auth.ratelimit import LoginLimiter, MemoryFailureCounter, RedisFailureCounter
from .auth.router import router as auth_router
from .auth.tokens import TokenSigner
from .callbacks.router import router as callbacks_router
from .calls.router import router as calls_router
from .calls.store import CdrReader
from .conferences.router import router as conference_rooms_router
from .context import AppContext
from .db.migrate import upgrade
from .db.session import Database
from .decisions.router import router as decision_secret_router
from .deps import route_policy
from .errors import ErrorBody, install_error_handlers
from .features.router import router as feature_codes_router
from .groups.router import router as groups_router
from .identity.router import router as identity_router
from .inputs import RefuseNulMiddleware
from .ivr.router import router as ivr_router
from .ivr.speech import SpeechEngine
from .nodeconfig.cache import NodeConfigCache
from .nodeconfig.homes import HomeDirectory
from .nodeconfig.phrases import SpokenPhrases
from .nodeconfig.publisher import ConfigPublisher
from .nodeconfig.router import router as nodeconfig_router
from .numbers.backends import open_number_store
from .numbers.router import router as numbers_router
from .numbers.store import NumberStore
from .observability import Metrics, ObservabilityMiddleware
from .outbound.router import router as outbound_router
from .platform.router import router as platform_router
from .prompts.router import router as prompts_router
from .reports.router import router as reports_router
from .routeplans.router import router as route_plans_router
from .schedules.router import router as schedules_router
from .settings import ControlSettings
from .trunks.carriers import TenantCarriers
from .trunks.platform import PlatformTrunks
from .trunks.router import router as trunks_router
from .users.router import router as users_router
from .voicemails.inbox import VoicemailInbox
from .voicemails.router import router as voicemails_router
from .webhooks.delivery import webhook_dispatcher
from .webhooks.router import router as webhooks_router

logger = logging.getLogger(__name__)

ROUTERS = (
    health.router,
    auth_router,
    numbers_router,
    users_router,
    groups_router,
    schedules_router,
    ivr_router,
    prompts_router,
    decision_secret_router,  # before /v1/route-plans/{route_plan_id}
    route_plans_router,
    conference_rooms_router,
    webhooks_router,
    trunks_router,
    outbound_router,
    feature_codes_router,
    api_keys_router,
    calls_router,
    callbacks_router,
    ad_channels_router,
    reports_router,
    voicemails_router,
    platform_router,
    nodeconfig_router,
    identity_router,
)

DESCRIPTION = """\
Tenant self-service provisioning for vpbx: numbers, users and their SIP devices,
ring groups, schedules, IVR menus, route plans, conference rooms, webhooks, carrier
trunks and API keys; the tenant's outbound policy and feature codes; click-to-call,
transfers, supervisor monitoring and three-way calls; queue callbacks; call records,
call recordings and voice messages.

Authenticate with `Authorization: Bearer <token>`, where the token is a user access
token from `POST /v1/auth/login`, a tenant API key (`vpbx_...`), or the platform
admin token. Every error has the body `{"error_id", "message", "details"}`.
Updates accept `If-Match` with the ETag of a previous read and answer 412 when
somebody else changed the object in between.
"""


def build_context(
    settings: ControlSettings,
    metrics: Metrics,
    number_store: NumberStore | None = None,
    object_store: ObjectStore | None = None,
) -> AppContext:
    # First: a broken trunks file stops the start before anything is opened.
    platform_trunks = PlatformTrunks(settings.platform_trunks_path)
    redis_client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    counter = RedisFailureCounter(redis_client) if redis_client else MemoryFailureCounter()
    signer = TokenSigner(
        settings.token_secret.get_secret_value().encode(), settings.access_token_ttl_s
    )
    database = Database(settings.database_url, echo=settings.database_echo)
    homes = HomeDirectory(redis_client, database) if redis_client is not None else None
    carriers = TenantCarriers(redis_client, database) if redis_client is not None else None
    publisher = ConfigPublisher(redis_client, homes, carriers)
    speech = SpeechEngine(settings.espeak_ng_command, timeout_s=settings.tts_timeout_s)
    return AppContext(
        settings=settings,
        database=database,
        homes=homes,
        carriers=carriers,
        redis=redis_client,
        passwords=Passwords.from_settings(settings),
        credentials=CredentialVerifier(
            platform_token=settings.platform_admin_token.get_secret_value(),
            service_token=settings.service_token.get_secret_value(),
            signer=signer,
        ),
        login_limiter=LoginLimiter(
            counter,
            per_account=settings.login_failures_per_account,
            per_address=settings.login_failures_per_address,
            window_s=settings.login_window_s,
        ),
        publisher=publisher,
        node_configs=NodeConfigCache(publisher, max_age_s=settings.node_config_cache_s),
        numbers=number_store or open_number_store(settings, redis_client),
        outbound=settings.outbound_policy(),
        speech=speech,
        phrases=SpokenPhrases(speech, settings.speech_cache_dir),
        metrics=metrics,
        calls=CdrReader.from_settings(settings),
        objects=object_store or open_objects(settings),
        audio_decodes=asyncio.Semaphore(MAX_DECODES),
        platform_trunks=platform_trunks,
    )


def create_app(
    settings: ControlSettings,
    *,
    number_store: NumberStore | None = None,
    object_store: ObjectStore | None = None,
    migrate: bool = True,
) -> FastAPI:
    settings.check_secrets()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade(settings.database_url)
        context = build_context(settings, metrics, number_store, object_store)
        app.state.context = context
        await context.numbers.start()
        rewriting: list[asyncio.Task[None]] = []
        stop_rewriting = asyncio.Event()
        if context.homes is not None:
            rewriting.append(
                asyncio.create_task(
                    context.homes.keep_rewriting(settings.home_directory_rewrite_s, stop_rewriting),
                    name="home-directory",
                )
            )
        if context.carriers is not None:
            rewriting.append(
                asyncio.create_task(
                    context.carriers.keep_rewriting(
                        settings.carrier_networks_rewrite_s, stop_rewriting
                    ),
                    name="carrier-networks",
                )
            )
        app.state.webhook_dispatcher = dispatcher = webhook_dispatcher(context)
        await dispatcher.start()
        # The voicemail inbox reads the call events like the webhook bridge, in its own group.
        inbox = None
        if context.redis is not None:
            app.state.voicemail_inbox = inbox = VoicemailInbox(
                context.database, context.redis, block_s=settings.call_events_block_s
            )
            await inbox.start()
        try:
            yield
        finally:
            stop_rewriting.set()
            for task in rewriting:
                await task
            if inbox is not None:
                await inbox.stop()
            await dispatcher.stop()
            await context.numbers.stop()
            await context.calls.close()
            await context.objects.close()
            await context.database.dispose()
            if context.redis is not None:
                await context.redis.aclose()

    app = FastAPI(
        title="vpbx control API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RefuseNulMiddleware)
    # Added late, so outer: refused requests are counted and logged too.
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    if settings.cors_origins:
        # Outermost: preflights are answered here, and every answer, errors included,
        # carries the CORS headers the browser needs to show it to the page.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "Range"],
            expose_headers=["ETag", "Location", "Content-Range", "Retry-After"],
            max_age=600,
        )
    for router in ROUTERS:
        app.include_router(router)
    document_common_errors(app)
    return app


def document_common_errors(app: FastAPI) -> None:
    """Errors any protected route or any request body can produce, in the OpenAPI document."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        policy = route_policy(route)
        if policy is None or not policy.public:
            route.responses.setdefault(
                401, {"model": ErrorBody, "description": "no or bad credentials"}
            )
            route.responses.setdefault(
                403, {"model": ErrorBody, "description": "the credential's role may not do this"}
            )
        if route.body_field is not None:
            route.responses.setdefault(
                400, {"model": ErrorBody, "description": "the body could not be parsed"}
            )
        route.responses.setdefault(
            422, {"model": ErrorBody, "description": "invalid input; details name the fields"}
        )

"""Everything the app holds for its lifetime, built by the app factory's lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as redis

from vpbx_common.outbound import OutboundPolicy
from vpbx_common.storage import ObjectStore

from .auth.credentials import CredentialVerifier
from .auth.passwords import Passwords
from .auth.ratelimit import LoginLimiter
from .calls.store import CdrReader
from .db.session import Database
from .ivr.speech import SpeechEngine
from .nodeconfig.cache import NodeConfigCache
from .nodeconfig.homes import HomeDirectory
from .nodeconfig.phrases import SpokenPhrases
from .nodeconfig.publisher import ConfigPublisher
from .numbers.store import NumberStore
from .observability import Metrics
from .settings import ControlSettings
from .trunks.carriers import TenantCarriers
from .trunks.platform import PlatformTrunks


@dataclass
class AppContext:
    settings: ControlSettings
    database: Database
    redis: redis.Redis | None
    passwords: Passwords
    credentials: CredentialVerifier
    login_limiter: LoginLimiter
    publisher: ConfigPublisher
    homes: HomeDirectory | None  # None without Redis (nothing to route by)
    carriers: TenantCarriers | None  # tenants' trunks' networks for the edge; None without Redis
    node_configs: NodeConfigCache
    numbers: NumberStore
    outbound: OutboundPolicy
    speech: SpeechEngine  # text to speech for IVR prompts (espeak-ng)
    phrases: SpokenPhrases  # the platform's own spoken phrases (queue announcements)
    metrics: Metrics
    calls: CdrReader  # the CDR store /v1/calls reads
    objects: ObjectStore  # call recordings and voice messages (audio/store.py)
    audio_decodes: asyncio.Semaphore  # bounds WAV decodes at once (audio/serve.py)
    platform_trunks: PlatformTrunks  # the operator's carriers, in every tenant's node config

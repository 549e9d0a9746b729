"""Everything the CRM app holds for its lifetime, built by the app factory's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from vpbx_control.db.session import Database

from .identity import IdentityClient
from .settings import CrmSettings


@dataclass
class CrmContext:
    settings: CrmSettings
    database: Database
    identity: IdentityClient
    redis: redis.Redis | None  # the call-event stream; None: no events are read

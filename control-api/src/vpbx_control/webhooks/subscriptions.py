"""Which webhook events each tenant listens to, without a database query per call event.

The bridge sees every call event of every tenant; most tenants have no webhooks,
and a session with a query per event made the API spend a third of a core at 50
calls/s on nothing. The bridge now keeps each tenant's subscribed events in
memory, valid while the tenant's webhook revision in Redis
(``vpbx:webhooks:revision:<tenant>``, bumped after every committed webhook change
by any API replica) is unchanged: one GET per event instead of a session. An entry
is also reloaded after ``MAX_AGE_S``, so a bump lost to a Redis outage heals by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy import select

from ..db.session import Database
from .models import WebhookRow

logger = logging.getLogger(__name__)

MAX_AGE_S = 60.0


def revision_key(tenant_id: str) -> str:
    return f"vpbx:webhooks:revision:{tenant_id}"


async def bump_revision(client: redis.Redis | None, tenant_id: str) -> None:
    """Tell every replica's cache that the tenant's webhooks changed (after the commit)."""
    if client is None:
        return
    try:
        await client.incr(revision_key(tenant_id))
    except RedisError as exc:
        logger.warning(
            "tenant=%s webhook change not announced (%s): other replicas see it within %.0f s",
            tenant_id,
            exc,
            MAX_AGE_S,
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    revision: bytes | None
    events: frozenset[str]
    loaded_at: float


class SubscriptionCache:
    def __init__(
        self,
        client: redis.Redis,
        database: Database,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._database = database
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self.loads = 0  # database reads, for tests

    async def events(self, tenant_id: str) -> frozenset[str]:
        """The events the tenant's active webhooks are subscribed to (maybe none).

        Raises RedisError when the revision cannot be read: the caller retries the event
        rather than guess.
        """
        raw = await self._redis.get(revision_key(tenant_id))
        revision = raw.encode() if isinstance(raw, str) else raw
        now = self._clock()
        entry = self._entries.get(tenant_id)
        if entry is not None and entry.revision == revision and now - entry.loaded_at < MAX_AGE_S:
            return entry.events
        async with self._database.session() as session:
            lists = await session.scalars(
                select(WebhookRow.events).where(
                    WebhookRow.tenant_id == tenant_id, WebhookRow.active.is_(True)
                )
            )
            events = frozenset(event for names in lists for event in names)
        self.loads += 1
        self._entries[tenant_id] = _Entry(revision, events, now)
        return events

"""A trunk's registration as the tenant's nodes report it (vpbx_common.trunks.TrunkStatusStore).

Each node that registers a trunk writes its outcome into Redis per city; this
module reads those reports and sums them up for ``GET /v1/trunks/{id}``. Without
Redis, or with Redis unreachable, the state is ``unknown``: the API never guesses.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence

import redis.asyncio as redis

from vpbx_common import trunks as reported

from .models import TrunkRow
from .schemas import CityRegistration, Registration, RegistrationState

logger = logging.getLogger(__name__)

Reports = Mapping[str, reported.TrunkRegistrationStatus]

# Which city decides the trunk's state: the first (in the tenant's order) in the first
# of these states any city is in.
_RANK = {
    state: rank
    for rank, state in enumerate(
        (
            RegistrationState.FAILED,
            RegistrationState.REGISTERING,
            RegistrationState.UNKNOWN,
            RegistrationState.REGISTERED,
        )
    )
}
_UNAVAILABLE = "the nodes' reports cannot be read right now"
_LAPSED = "the binding lapsed and the node has not reported since"
_NOT_LOADED = "the node has not loaded the change yet"


def _moment(milliseconds: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(milliseconds / 1000, dt.UTC) if milliseconds else None


def _city(status: reported.TrunkRegistrationStatus, now_ms: int) -> CityRegistration:
    state = RegistrationState(status.state.value)
    reason = status.reason
    if state is RegistrationState.REGISTERED and 0 < status.expires_at_ms < now_ms:
        state, reason = RegistrationState.UNKNOWN, _LAPSED
    elif state is RegistrationState.NOT_REGISTERING:
        # The trunk registers now; this node still runs on the config from before.
        state, reason = RegistrationState.UNKNOWN, _NOT_LOADED
    return CityRegistration(
        state=state,
        reason=reason,
        expires_at=_moment(status.expires_at_ms),
        updated_at=_moment(status.updated_at_ms),
    )


def registration(
    row: TrunkRow, cities: Sequence[str], reports: Reports | None, now_ms: int | None = None
) -> Registration:
    """The trunk's registration from its nodes' ``reports`` (None: they cannot be read)."""
    if not row.registers:
        return Registration(state=RegistrationState.NOT_REGISTERING, reason="", cities={})
    unknown = CityRegistration(
        state=RegistrationState.UNKNOWN, reason="", expires_at=None, updated_at=None
    )
    if reports is None:
        return Registration(
            state=RegistrationState.UNKNOWN,
            reason=_UNAVAILABLE,
            cities={city: unknown for city in cities},
        )
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    by_city = {city: _city(reports[city], now) if city in reports else unknown for city in cities}
    if not any(city in reports for city in cities):
        return Registration(state=RegistrationState.UNKNOWN, reason="", cities=by_city)
    city, entry = min(by_city.items(), key=lambda item: _RANK.get(item[1].state, len(_RANK)))
    reason = f"{city}: {entry.reason}" if entry.reason else ""
    return Registration(state=entry.state, reason=reason, cities=by_city)


class TrunkStatuses:
    """Reads (and forgets) the nodes' reports; tolerant of a missing or failing Redis."""

    def __init__(self, client: redis.Redis | None, tenant_id: str) -> None:
        self.store = reported.TrunkStatusStore(client) if client is not None else None
        self.tenant_id = tenant_id

    async def reports(self, trunk_id: str) -> Reports | None:
        if self.store is None:
            return None
        try:
            return await self.store.get(self.tenant_id, trunk_id)
        except redis.RedisError as exc:
            logger.warning(
                "tenant=%s trunk %s registration status unreadable: %s",
                self.tenant_id,
                trunk_id,
                exc,
            )
            return None

    async def forget(self, trunk_id: str) -> None:
        if self.store is None:
            return
        try:
            await self.store.forget(self.tenant_id, trunk_id)
        except redis.RedisError as exc:
            # The reports lapse by their TTL anyway; nothing reads a deleted trunk's.
            logger.warning(
                "tenant=%s trunk %s registration status not forgotten: %s",
                self.tenant_id,
                trunk_id,
                exc,
            )

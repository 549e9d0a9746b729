"""Calling out: what a dialled number means, whether the tenant may call it, and as whom.

Three questions, in this order, before any carrier sees the call:

1. the destination: what a person dialled (``8 916 123-45-67``, ``+7...``,
   ``916...``) read as E.164 with the tenant's country;
2. the policy (fraud protection: the operator pays the carriers): calls abroad
   and to premium-rate numbers only when allowed, at most ``max_concurrent``
   outbound calls at once and ``max_minutes_per_day`` minutes a day across all
   the tenant's nodes; the plan's line limit counts outbound calls as well;
3. the caller ID: per call (API), else the user's own, else the tenant's
   number in or nearest to the callee's region (local presence), else the
   tenant's default.

The counters live in Redis, taken in one script per call (one round trip):
calls in progress in sorted sets scored by when they stop counting even if
nobody removes them (a node killed mid-call, as ``calllimit``), minutes as
seconds talked per UTC day.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis

from vpbx_common.e164 import InvalidPhoneNumber, country_of, normalize_e164
from vpbx_common.nodeconfig import NodeConfig, UserEntry
from vpbx_common.phoneregion import DestinationClass, LocalPresence, destination_class

from .calllimit import STALE_AFTER_S

logger = logging.getLogger(__name__)


class OutboundRefusal(enum.StrEnum):
    INTERNATIONAL = "international"
    PREMIUM = "premium"
    NO_TRUNK = "no-trunk"
    NO_CALLER_ID = "no-caller-id"
    CONCURRENT_LIMIT = "concurrent-limit"
    PLAN_LIMIT = "plan-limit"
    DAILY_MINUTES = "daily-minutes"

    @property
    def sip_status(self) -> tuple[int, str]:
        return _ANSWERS[self]


# What the phone shows: a refusal the user can act on (call a manager) says so.
_ANSWERS = {
    OutboundRefusal.INTERNATIONAL: (403, "International Calls Not Allowed"),
    OutboundRefusal.PREMIUM: (403, "Premium-Rate Numbers Not Allowed"),
    OutboundRefusal.NO_TRUNK: (503, "No Carrier Trunk"),
    OutboundRefusal.NO_CALLER_ID: (403, "No Number To Call From"),
    OutboundRefusal.CONCURRENT_LIMIT: (486, "Outbound Call Limit Reached"),
    OutboundRefusal.PLAN_LIMIT: (486, "Plan Call Limit Reached"),
    OutboundRefusal.DAILY_MINUTES: (403, "Daily Outbound Minutes Used Up"),
}


@dataclass(frozen=True, slots=True)
class CallerId:
    number: str
    reason: str  # "call", "user", "same-region", "nearest-region", "default"


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """What the node decided for a call out before ringing the carrier."""

    number: str  # E.164
    caller_id: CallerId
    withheld: bool  # the caller asked not to show their number (Privacy: id)
    max_talk_s: float | None  # the tenant's minutes left today; None: no cap


@dataclass(frozen=True, slots=True)
class OutboundAdmission:
    """An outbound call may go: counted until ``release``; at most ``max_talk_s`` long."""

    max_talk_s: float | None  # None: no daily cap


# KEYS: the plan's lines, the outbound calls, today's outbound seconds.
# ARGV: now, plan limit (0 none), outbound limit (0 none), stale-after score, call id,
#       key TTL, seconds a day (0 none).
# Returns {code, seconds left (-1 none)}; code 0 admitted, 1 plan full, 2 outbound full,
# 3 minutes used up. Admitted: counted in both sets.
_ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local plan_limit = tonumber(ARGV[2])
if plan_limit > 0 and redis.call('ZCARD', KEYS[1]) >= plan_limit then
    return {1, 0}
end
local outbound_limit = tonumber(ARGV[3])
if outbound_limit > 0 and redis.call('ZCARD', KEYS[2]) >= outbound_limit then
    return {2, 0}
end
local left = -1
local per_day = tonumber(ARGV[7])
if per_day > 0 then
    local used = tonumber(redis.call('GET', KEYS[3]) or '0')
    if used >= per_day then
        return {3, 0}
    end
    left = per_day - used
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {0, left}
"""

_REFUSALS_BY_CODE = {
    1: OutboundRefusal.PLAN_LIMIT,
    2: OutboundRefusal.CONCURRENT_LIMIT,
    3: OutboundRefusal.DAILY_MINUTES,
}
_DAY_KEY_TTL_S = 2 * 24 * 3600


def outbound_counters_key(tenant: str) -> str:
    """Refused outbound calls by reason (a hash per tenant): the count an operator's alert
    reads (the control API exports ``call.refused`` events as a metric as well)."""
    return f"vpbx:outbound:refused:{tenant}"


class OutboundGate:
    def __init__(
        self,
        client: redis.Redis,
        tenant: str,
        *,
        plan_prefix: str = "vpbx:calls:active",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._tenant = tenant
        self._clock = clock
        self._plan_key = f"{plan_prefix}:{tenant}"
        self._outbound_key = f"vpbx:outbound:active:{tenant}"
        self._admit = client.register_script(_ADMIT)
        self._presence: tuple[str, LocalPresence | None] | None = None  # per config version

    # --- pure decisions ---------------------------------------------------------

    @staticmethod
    def destination(dialled: str, config: NodeConfig) -> str | None:
        """The E.164 number ``dialled`` means with the tenant's country; None: no number."""
        try:
            return normalize_e164(dialled, config.outbound.country)
        except InvalidPhoneNumber:
            return None

    @staticmethod
    def policy_refusal(number: str, config: NodeConfig) -> OutboundRefusal | None:
        """The policy's objection to calling ``number`` (before any counter is asked)."""
        policy = config.outbound
        kind = destination_class(number, policy.country)
        if kind is DestinationClass.PREMIUM and not policy.premium:
            return OutboundRefusal.PREMIUM
        if kind is DestinationClass.INTERNATIONAL and not policy.international:
            return OutboundRefusal.INTERNATIONAL
        if not config.trunks:
            return OutboundRefusal.NO_TRUNK
        return None

    def caller_id(
        self, config: NodeConfig, user: UserEntry | None, callee: str, chosen: str | None = None
    ) -> CallerId | None:
        """The number the callee sees; None when the tenant has no number to show."""
        if chosen:
            return CallerId(chosen, "call")
        if user is not None and user.settings.caller_id:
            return CallerId(user.settings.caller_id, "user")
        presence = self._local_presence(config)
        if presence is None:
            return None
        if country_of(callee) != config.outbound.country:
            # Abroad nobody is "local"; and the geocoder of foreign numbers takes seconds
            # to load, which the node's event loop must never wait for.
            return CallerId(presence.default, "default")
        choice = presence.choose(callee)
        return CallerId(choice.number, choice.reason)

    def _local_presence(self, config: NodeConfig) -> LocalPresence | None:
        if self._presence is None or self._presence[0] != config.version:
            # Foreign numbers of the tenant would load the geocoder (seconds); they are
            # never local to a callee in the tenant's country anyway.
            country = config.outbound.country
            numbers = [
                entry.number for entry in config.numbers if country_of(entry.number) == country
            ]
            default = config.outbound.default_caller_id
            presence = LocalPresence(numbers, default) if numbers or default else None
            self._presence = (config.version, presence)
        return self._presence[1]

    # --- counters ---------------------------------------------------------------

    def _day_key(self, now: float) -> str:
        day = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d")
        return f"vpbx:outbound:seconds:{self._tenant}:{day}"

    async def admit(self, call_id: str, config: NodeConfig) -> OutboundAdmission | OutboundRefusal:
        """Count the call against the plan's lines and the outbound caps, or say which is full."""
        policy = config.outbound
        now = self._clock()
        code, left = await self._admit(
            keys=[self._plan_key, self._outbound_key, self._day_key(now)],
            args=[
                now,
                config.concurrent_calls,
                policy.max_concurrent,
                now + STALE_AFTER_S,
                call_id,
                STALE_AFTER_S,
                policy.max_minutes_per_day * 60,
            ],
        )
        refusal = _REFUSALS_BY_CODE.get(int(code))
        if refusal is not None:
            return refusal
        return OutboundAdmission(None if int(left) < 0 else float(left))

    async def release(self, call_id: str, talked_s: float) -> None:
        """The call ended: free its places and add what it talked to today's minutes."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._plan_key, call_id)
            pipe.zrem(self._outbound_key, call_id)
            if talked_s > 0:
                key = self._day_key(self._clock())
                pipe.incrby(key, round(talked_s))
                pipe.expire(key, _DAY_KEY_TTL_S)
            await pipe.execute()

    async def count_refusal(self, refusal: OutboundRefusal) -> None:
        await self._redis.hincrby(outbound_counters_key(self._tenant), str(refusal), 1)

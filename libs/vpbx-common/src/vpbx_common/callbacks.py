"""Queue callbacks: a caller waiting in a queue asks to be called back and keeps their place.

The media node holding the caller's place writes the record (``node/callbacks.py``)
and the control API reads it (``GET /v1/callbacks``) and may cancel one still
waiting. Keys per tenant::

    vpbx:callbacks:<tenant>        hash id -> JSON record
    vpbx:callbacks:<tenant>:order  zset id -> booked at (epoch s): newest first, and
                                   what to forget once finished for ``KEEP_S``

A record lives ``KEEP_S`` after it was booked (a week: its outcome stays visible;
the CDRs of its calls keep it for good). ``holder`` names the node process holding
it; that process keeps ``vpbx:callbacks:<tenant>:holder:<holder>`` alive (``HOLDER_TTL_S``)
so another process of the same node (after a restart, or the next pod of a rolling
update) adopts only what nobody holds any more.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis.asyncio as redis

KEEP_S = 7 * 24 * 3600
HOLDER_TTL_S = 10
# The longest a callback waits for its turn: past it nobody is called back any more
# (the caller's need is probably gone, and a queue entry nobody serves blocks nobody).
MAX_WAIT_S = 4 * 3600


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CallbackStatus(enum.StrEnum):
    WAITING = "waiting"  # keeps its place in the queue (or waits for the next attempt)
    CALLING = "calling"  # an agent is rung, then the caller is called (and talked to)
    CONNECTED = "connected"  # the caller answered and talked with the agent (final, at the end)
    FAILED = "failed"  # attempts used up, refused by the outbound policy, expired (final)
    CANCELLED = "cancelled"  # through the API (final)

    @property
    def final(self) -> bool:
        return self in (CallbackStatus.CONNECTED, CallbackStatus.FAILED, CallbackStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One call to the caller, placed after the agent answered."""

    at: float  # epoch s the agent answered
    agent: str  # extension
    call_id: str  # the attempt's own call (its CDR: outbound, route "queue-callback")
    outcome: str = "calling"  # answered, no-answer, busy, failed, refused


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    id: str
    tenant: str
    group: str
    caller: str  # E.164: whom to call back
    dialled: str  # the tenant's number they called: shown to them as the caller ID
    label: str  # its ad-channel label
    call_id: str  # the call that booked it (and its place in the queue)
    node: str  # the node holding the place
    booked_at: float
    joined_at: float  # when the caller joined the queue: the place kept
    position: int | None  # the place when booked
    max_attempts: int
    retry_s: int
    status: CallbackStatus = CallbackStatus.WAITING
    attempts: tuple[CallbackAttempt, ...] = ()
    next_attempt_at: float | None = None  # a retry waits until then (out of the queue)
    detail: str = ""  # the last outcome in words
    finished_at: float | None = None
    holder: str = ""  # the node process holding it (its heartbeat key says it lives)

    def as_json(self) -> str:
        document = asdict(self)
        document["status"] = self.status.value
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: bytes | str) -> CallbackRecord:
        document: dict[str, Any] = json.loads(text)
        document["status"] = CallbackStatus(document["status"])
        document["attempts"] = tuple(
            CallbackAttempt(**attempt) for attempt in document.get("attempts", [])
        )
        return cls(**document)

    def finished(self, status: CallbackStatus, detail: str, at: float) -> CallbackRecord:
        return replace(self, status=status, detail=detail, finished_at=at, next_attempt_at=None)


@dataclass(slots=True)
class CallbackPage:
    items: list[CallbackRecord] = field(default_factory=list)
    total: int = 0


# A finished record stays as it finished (a cancellation through the API wins over
# whatever a node writes after it; a late write never reopens a finished callback).
_SAVE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
    local status = cjson.decode(raw)['status']
    if status == 'cancelled' or status == 'connected' or status == 'failed' then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# Cancel only what waits: a callback ringing now is the agent's call to end.
_CANCEL = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'missing', ''} end
local record = cjson.decode(raw)
if record['status'] ~= 'waiting' then return {'busy', raw} end
record['status'] = 'cancelled'
record['detail'] = ARGV[3]
record['finished_at'] = tonumber(ARGV[2])
record['next_attempt_at'] = cjson.null
local encoded = cjson.encode(record)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
return {'ok', encoded}
"""


class CallbackNotWaitingError(Exception):
    """The callback is ringing or finished: there is nothing to cancel."""

    def __init__(self, record: CallbackRecord) -> None:
        super().__init__(f"callback {record.id} is {record.status.value}")
        self.record = record


class CallbackStore:
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._clock = clock
        self._cancel = client.register_script(_CANCEL)
        self._save = client.register_script(_SAVE)

    @staticmethod
    def keys(tenant: str) -> tuple[str, str]:
        base = f"vpbx:callbacks:{tenant}"
        return base, f"{base}:order"

    async def save(self, record: CallbackRecord) -> bool:
        """Write the record; False: it had finished meanwhile (cancelled) and stays so."""
        written = await self._save(
            keys=list(self.keys(record.tenant)),
            args=[record.id, record.as_json(), record.booked_at],
        )
        await self._forget_old(record.tenant, self._clock())
        return bool(int(written))

    async def get(self, tenant: str, callback_id: str) -> CallbackRecord | None:
        raw = await self._redis.hget(self.keys(tenant)[0], callback_id)
        return CallbackRecord.from_json(raw) if raw is not None else None

    async def all(self, tenant: str) -> list[CallbackRecord]:
        """Every record kept, newest first."""
        records, order = self.keys(tenant)
        ids = [_text(item) for item in await self._redis.zrevrange(order, 0, -1)]
        if not ids:
            return []
        raws = await self._redis.hmget(records, ids)
        return [CallbackRecord.from_json(raw) for raw in raws if raw is not None]

    async def page(
        self,
        tenant: str,
        *,
        status: CallbackStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> CallbackPage:
        matching = [r for r in await self.all(tenant) if status is None or r.status is status]
        return CallbackPage(items=matching[offset : offset + limit], total=len(matching))

    async def cancel(self, tenant: str, callback_id: str, detail: str) -> CallbackRecord | None:
        """Cancel a waiting callback (its node lets the place go); None: no such callback.
        Raises ``CallbackNotWaitingError`` when it rings now or has finished."""
        records, _ = self.keys(tenant)
        result, raw = await self._cancel(keys=[records], args=[callback_id, self._clock(), detail])
        outcome = _text(result)
        if outcome == "missing":
            return None
        record = CallbackRecord.from_json(raw)
        if outcome != "ok":
            raise CallbackNotWaitingError(record)
        return record

    def _holder_key(self, tenant: str, holder: str) -> str:
        return f"{self.keys(tenant)[0]}:holder:{holder}"

    async def hold(self, tenant: str, holder: str) -> None:
        """``holder`` lives (refreshed well within ``HOLDER_TTL_S``)."""
        await self._redis.set(self._holder_key(tenant, holder), "1", ex=HOLDER_TTL_S)

    async def let_go(self, tenant: str, holder: str) -> None:
        """``holder`` stops: its records may be adopted at once."""
        await self._redis.delete(self._holder_key(tenant, holder))

    async def held(self, tenant: str, holder: str) -> bool:
        return bool(holder) and bool(await self._redis.exists(self._holder_key(tenant, holder)))

    async def _forget_old(self, tenant: str, now: float) -> None:
        """Records booked before KEEP_S go: long finished, or held by a node that is gone
        (a callback waits ``MAX_WAIT_S`` at the most)."""
        records, order = self.keys(tenant)
        old = [_text(item) for item in await self._redis.zrangebyscore(order, "-inf", now - KEEP_S)]
        if old:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(records, *old)
                pipe.zrem(order, *old)
                await pipe.execute()

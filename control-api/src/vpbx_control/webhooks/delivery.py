"""Webhook delivery: an outbox in the database and one worker that empties it.

``WebhookDispatcher.enqueue`` writes one pending WebhookDeliveryRow per active
webhook of the tenant subscribed to the event, in the caller's transaction (so
an event is queued exactly when the change that caused it is committed). The
worker (``start()``/``stop()``, one asyncio task owned by the dispatcher) claims
due deliveries, POSTs them signed (vpbx_common.signing) and records every attempt:

- a 2xx answer delivers; anything else (other status, timeout, refused
  connection) is retried after ``retry_base_s * 2**n`` seconds (n = 0, 1, ...;
  at most ``max_backoff_s``, and no sooner than a Retry-After the receiver
  sent), and the delivery fails after ``max_attempts`` attempts;
- several API replicas may run a worker each: a delivery is claimed with a
  lease (and FOR UPDATE SKIP LOCKED on PostgreSQL), so one worker sends it; a
  worker that dies mid-send leaves it to be retried when the lease runs out
  (at-least-once: receivers deduplicate by X-Vpbx-Delivery);
- redirects are not followed, and only the first KiB of an error answer is kept.

With a Redis client, the dispatcher also reads the media nodes' call events from
the stream ``vpbx:call-events`` as a consumer of the group ``webhooks``
(vpbx_common.events) and queues ``call.ringing``, ``call.answered``, ``call.ended``
and, for calls nobody answered, ``call.missed``, plus ``recording.ready`` and
``voicemail.new`` (CallEventBridge); event types without a webhook (``call.offered``,
the CRM's screen-pop signal) are acknowledged and ignored. An event is
acknowledged on the stream once its deliveries are committed; one read twice (a
replica died before acknowledging) finds them queued already and adds none.

The body of every delivery::

    {"id": "<delivery id>", "event": "call.answered", "tenant": "acme",
     "created_at": "2026-11-23T10:00:00Z", "data": {...the event's payload...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as redis
from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as OrmSession

from vpbx_common.cdr.record import UNANSWERED_REASONS
from vpbx_common.events import WEBHOOKS_GROUP, CallEvent, CallEventConsumer, CallEventType
from vpbx_common.outbound import OutboundPolicy, OutboundRefusedError, pin
from vpbx_common.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

from ..calls.schemas import RecordingLink
from ..context import AppContext
from ..db.base import as_utc, utcnow
from ..db.session import Database
from ..observability import Metrics
from ..voicemails.inbox import box_owner
from ..voicemails.models import voicemail_id
from ..voicemails.schemas import audio_url as voicemail_audio_url
from .models import WebhookDeliveryRow, WebhookRow
from .repository import DeliveryQueue, DeliveryRepository, WebhookRepository
from .schemas import PING_EVENT, DeliveryStatus, WebhookEvent
from .subscriptions import SubscriptionCache

logger = logging.getLogger(__name__)

USER_AGENT = "vpbx-webhooks/1.0"
ATTEMPT_HEADER = "X-Vpbx-Attempt"
_ERROR_BODY_LIMIT = 1024


class DispatcherState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass(frozen=True)
class _Job:
    delivery_id: uuid.UUID
    tenant_id: str
    event: str
    payload: dict[str, Any]
    created_at: dt.datetime
    attempt: int
    url: str
    secret: str
    active: bool


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after_s: float | None = None
    final: bool = False  # no point retrying (the webhook was switched off)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookAttemptOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # failed; tried again later
    FAILED = "failed"  # failed for good (attempts used up, or the webhook was switched off)


def delivery_body(
    delivery_id: uuid.UUID,
    tenant_id: str,
    event: str,
    created_at: dt.datetime,
    payload: Mapping[str, Any],
) -> bytes:
    envelope = {
        "id": str(delivery_id),
        "event": event,
        "tenant": tenant_id,
        "created_at": as_utc(created_at).isoformat().replace("+00:00", "Z"),
        "data": payload,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignored, our own backoff applies


class WebhookDispatcher:
    """Queues webhook deliveries and sends them in the background.

    The tuning attributes (``timeout_s``, ``max_attempts``, ``retry_base_s``,
    ``max_backoff_s``, ``poll_interval_s``, ``batch_size``) are read on every
    round, so they may be changed on a running dispatcher.
    """

    def __init__(
        self,
        database: Database,
        *,
        outbound: OutboundPolicy,
        timeout_s: float = 5.0,
        max_attempts: int = 6,
        retry_base_s: float = 2.0,
        max_backoff_s: float = 3600.0,
        poll_interval_s: float = 1.0,
        batch_size: int = 20,
        retention: dt.timedelta = dt.timedelta(days=30),
        clock: Callable[[], dt.datetime] = utcnow,
        redis_client: redis.Redis | None = None,
        on_event: Callable[[CallEvent], None] | None = None,
        events_block_s: float = 0.5,
        on_attempt: Callable[[str, WebhookAttemptOutcome], None] | None = None,
    ) -> None:
        self.database = database
        # Sees each attempt's outcome with the tenant's id (metrics).
        self.on_attempt = on_attempt
        self.outbound = outbound
        # Sees every call event the bridge handles (metrics), subscribed to or not.
        self.on_event = on_event
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.retention = retention
        self.clock = clock
        self.state = DispatcherState.STOPPED
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.bridge = (
            CallEventBridge(redis_client, self, block_s=events_block_s)
            if redis_client is not None
            else None
        )
        self._client: httpx.AsyncClient | None = None
        self._last_prune: dt.datetime | None = None

    # --- queueing ----------------------------------------------------------------------

    async def enqueue(
        self,
        session: AsyncSession,
        tenant_id: str,
        event: str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> list[WebhookDeliveryRow]:
        """Queue ``event`` for every active webhook of the tenant subscribed to it.

        The rows are added to ``session``; they are sent once the caller commits. With a
        ``dedupe_key``, webhooks that already have a delivery with that key get none.
        """
        webhooks = await WebhookRepository(session, tenant_id).subscribed(event)
        if dedupe_key is not None and webhooks:
            queued = await DeliveryRepository(session, tenant_id).webhooks_queued(dedupe_key)
            webhooks = [webhook for webhook in webhooks if webhook.id not in queued]
        deliveries = self.queue_for(session, webhooks, event, payload, dedupe_key=dedupe_key)
        if deliveries:
            self.wake_after_commit(session)
        return deliveries

    def queue_for(
        self,
        session: AsyncSession,
        webhooks: list[WebhookRow],
        event: str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> list[WebhookDeliveryRow]:
        now = self.clock()
        return [
            DeliveryRepository(session, webhook.tenant_id).queue(
                webhook, event, payload, now, dedupe_key
            )
            for webhook in webhooks
        ]

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wake.set()

    def wake_after_commit(self, session: AsyncSession) -> None:
        def committed(_: OrmSession) -> None:
            self._wake.set()

        orm_event.listen(session.sync_session, "after_commit", committed, once=True)

    # --- lifecycle ---------------------------------------------------------------------

    def _set_state(self, state: DispatcherState) -> None:
        logger.info("webhook dispatcher %s -> %s", self.state.value, state.value)
        self.state = state

    async def start(self) -> None:
        if self._task is not None:
            return
        self._client = self._new_client()
        self._set_state(DispatcherState.RUNNING)
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")
        if self.bridge is not None:
            await self.bridge.start()

    async def stop(self) -> None:
        """Finish the round in flight (bounded by the send timeout), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._set_state(DispatcherState.STOPPING)
        if self.bridge is not None:
            await self.bridge.stop()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.timeout_s + 1.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._set_state(DispatcherState.STOPPED)

    async def _run(self) -> None:
        while self.state is DispatcherState.RUNNING:
            self._wake.clear()
            delay = self.poll_interval_s
            try:
                handled = await self.run_once()
                if handled >= self.batch_size:
                    continue  # more may be due already
                delay = await self._delay_until_next()
                await self._prune_now_and_then()
            except Exception:
                logger.exception("webhook delivery round failed; retrying in %.1f s", delay)
            if self.state is not DispatcherState.RUNNING:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _delay_until_next(self) -> float:
        async with self.database.session() as session:
            due = await DeliveryQueue(session).next_due()
        if due is None:
            return self.poll_interval_s
        wait = (as_utc(due) - self.clock()).total_seconds()
        return min(self.poll_interval_s, max(0.0, wait))

    async def _prune_now_and_then(self) -> None:
        now = self.clock()
        if self._last_prune is not None and now - self._last_prune < dt.timedelta(hours=1):
            return
        self._last_prune = now
        async with self.database.session() as session:
            removed = await DeliveryQueue(session).prune(now - self.retention)
            await session.commit()
        if removed:
            logger.info("forgot %d webhook deliveries older than %s", removed, self.retention)

    # --- one round ---------------------------------------------------------------------

    async def run_once(self) -> int:
        """Send every due delivery (up to ``batch_size``) once; the number sent."""
        now = self.clock()
        lease = dt.timedelta(seconds=max(30.0, 3 * self.timeout_s))
        async with self.database.session() as session:
            claimed = await DeliveryQueue(session).claim_due(now, now + lease, self.batch_size)
            jobs = [
                _Job(
                    delivery_id=delivery.id,
                    tenant_id=delivery.tenant_id,
                    event=delivery.event,
                    payload=delivery.payload,
                    created_at=delivery.created_at,
                    attempt=delivery.attempts + 1,
                    url=webhook.url,
                    secret=webhook.secret,
                    active=webhook.active,
                )
                for delivery, webhook in claimed
            ]
            await session.commit()
        if not jobs:
            return 0
        async with contextlib.AsyncExitStack() as stack:
            client = self._client
            if client is None:  # run_once without start(): a client for this round
                client = await stack.enter_async_context(self._new_client())
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._attempt(client, job)) for job in jobs]
        async with self.database.session() as session:
            queue = DeliveryQueue(session)
            for job, task in zip(jobs, tasks, strict=True):
                row = await queue.get(job.delivery_id)
                if row is not None:  # else the webhook was deleted meanwhile
                    self._record(row, job, task.result())
            await session.commit()
        return len(jobs)

    def _new_client(self) -> httpx.AsyncClient:
        # Requests pinned to checked addresses must not share connections: a
        # connection opened for one tenant's host would carry another's request
        # to the same address under the first host's TLS session.
        keepalive = 20 if self.outbound.allow_private else 0
        return httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_keepalive_connections=keepalive),
        )

    async def _attempt(self, client: httpx.AsyncClient, job: _Job) -> AttemptResult:
        if not job.active and job.event != PING_EVENT:
            return AttemptResult(None, "the webhook was deactivated before delivery", 0, final=True)
        body = delivery_body(job.delivery_id, job.tenant_id, job.event, job.created_at, job.payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(job.secret, body),
            EVENT_HEADER: job.event,
            DELIVERY_HEADER: str(job.delivery_id),
            ATTEMPT_HEADER: str(job.attempt),
        }
        started = time.monotonic()

        def elapsed_ms() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    destination = await self.outbound.destination(job.url)
                except OutboundRefusedError as exc:
                    return AttemptResult(None, f"not sent: {exc}", elapsed_ms())
                pinned = pin(job.url, destination)
                request = client.build_request(
                    "POST",
                    pinned.url,
                    content=body,
                    headers={**headers, **pinned.headers},
                    timeout=self.timeout_s,
                    extensions=pinned.extensions,
                )
                response = await client.send(request, stream=True)
                try:
                    code = response.status_code
                    if 200 <= code < 300:
                        return AttemptResult(code, None, elapsed_ms())
                    snippet = await _read_some(response, _ERROR_BODY_LIMIT)
                finally:
                    await response.aclose()
        except TimeoutError:
            return AttemptResult(None, f"no answer within {self.timeout_s:g} s", elapsed_ms())
        except httpx.HTTPError as exc:
            return AttemptResult(None, _describe(exc), elapsed_ms())
        except Exception as exc:  # a URL httpx refuses, ...: recorded, never fatal to the round
            logger.warning("webhook delivery %s: %r", job.delivery_id, exc)
            return AttemptResult(None, _describe(exc), elapsed_ms())
        error = f"HTTP {code} {response.reason_phrase}".strip()
        if snippet:
            error += f": {snippet}"
        return AttemptResult(
            code,
            error,
            elapsed_ms(),
            retry_after_s=_retry_after(response.headers.get("Retry-After")),
        )

    def backoff_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt (1, 2, ...)."""
        return float(min(self.max_backoff_s, self.retry_base_s * 2 ** (attempts - 1)))

    def _record(self, row: WebhookDeliveryRow, job: _Job, result: AttemptResult) -> None:
        now = self.clock()
        row.attempts += 1
        row.last_status_code = result.status_code
        row.last_error = result.error
        row.history = [
            *row.history,
            {
                "attempt": row.attempts,
                "at": now.isoformat(),
                "status_code": result.status_code,
                "error": result.error,
                "duration_ms": result.duration_ms,
            },
        ]
        if result.delivered:
            outcome = WebhookAttemptOutcome.DELIVERED
            row.status = DeliveryStatus.DELIVERED.value
            row.delivered_at = now
            row.next_attempt_at = None
        elif result.final or row.attempts >= self.max_attempts:
            outcome = WebhookAttemptOutcome.FAILED
            row.status = DeliveryStatus.FAILED.value
            row.next_attempt_at = None
            logger.warning(
                "webhook delivery %s of %s for tenant %s failed after %d attempts: %s",
                row.id,
                row.event,
                row.tenant_id,
                row.attempts,
                result.error,
            )
        else:
            outcome = WebhookAttemptOutcome.RETRY
            wait = self.backoff_s(row.attempts)
            if result.retry_after_s is not None:
                wait = min(self.max_backoff_s, max(wait, result.retry_after_s))
            row.next_attempt_at = now + dt.timedelta(seconds=wait)
        if self.on_attempt is not None:
            self.on_attempt(str(row.tenant_id), outcome)


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


async def _read_some(response: httpx.Response, limit: int) -> str:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit].decode("utf-8", "replace").strip()


def webhook_events(event: CallEvent) -> list[WebhookEvent]:
    """The webhook events a media node's call event stands for (none for a type that has
    no webhook: the entry is acknowledged and nothing is sent)."""
    match event.type:
        case CallEventType.OFFERED:
            # Not a webhook: a call offers several batches of phones (sequential turns,
            # queue offers, a CRM escalation), and it exists to reach the CRM's screen pop
            # before a phone rings, which a retried outbox delivery cannot promise.
            # Webhook receivers get call.ringing, once per call.
            return []
        case CallEventType.RINGING:
            return [WebhookEvent.CALL_RINGING]
        case CallEventType.ANSWERED:
            return [WebhookEvent.CALL_ANSWERED]
        case CallEventType.ENDED if event.end_reason in UNANSWERED_REASONS:
            return [WebhookEvent.CALL_ENDED, WebhookEvent.CALL_MISSED]
        case CallEventType.ENDED:
            return [WebhookEvent.CALL_ENDED]
        case CallEventType.RECORDING_READY:
            return [WebhookEvent.RECORDING_READY]
        case CallEventType.VOICEMAIL_NEW:
            return [WebhookEvent.VOICEMAIL_NEW]
        case CallEventType.REFUSED:
            return [WebhookEvent.CALL_REFUSED]
        case _:
            return []


def call_payload(event: CallEvent, box_user_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The ``data`` of a call webhook. Audio is named by its API URL (relative to the API's
    base), never by its storage key: the key is the platform's business, and the URL is
    what a receiver can fetch with its API key."""
    payload: dict[str, Any] = {
        "call_id": event.call_id,
        "number": event.number,
        "caller": event.caller,
        "callee": event.callee,
        "city": event.city,
        "label": event.label or None,
        "at": dt.datetime.fromtimestamp(event.at_ms / 1000, dt.UTC).isoformat(),
    }
    match event.type:
        case CallEventType.ENDED | CallEventType.REFUSED:
            payload["end_reason"] = event.end_reason
        case CallEventType.RECORDING_READY:
            link = RecordingLink.of(event.call_id)
            payload.update(
                duration_s=event.duration_ms / 1000,
                size_bytes=event.size_bytes,
                recording={"url": link.url, "wav_url": link.wav_url},
            )
        case CallEventType.VOICEMAIL_NEW:
            message = voicemail_id(event.tenant, event.call_id)
            url = voicemail_audio_url(message)
            payload.update(
                voicemail_id=str(message),
                box=event.box or None,
                user_id=None if box_user_id is None else str(box_user_id),
                duration_s=event.duration_ms / 1000,
                size_bytes=event.size_bytes,
                audio={"url": url, "wav_url": f"{url}?format=wav"},
            )
    return payload


def call_dedupe_key(event: CallEvent, webhook_event: WebhookEvent) -> str:
    """What a delivery for ``webhook_event`` of ``event``'s call stands for (fixed length,
    whatever the length of the SIP Call-ID)."""
    return hashlib.sha256(f"{event.call_id}\n{webhook_event.value}".encode()).hexdigest()


class CallEventBridge:
    """Turns the media nodes' call events (stream ``vpbx:call-events``) into deliveries.

    Every API replica runs one consumer of the group ``webhooks``; the replicas share
    the group, so each stream entry is handled by one of them. ``handle`` commits the
    deliveries before the entry is acknowledged; an event handled twice (read again
    after a replica died, or published twice) queues nothing new: each delivery
    carries a dedupe key unique per webhook.
    """

    def __init__(
        self,
        client: redis.Redis,
        dispatcher: WebhookDispatcher,
        *,
        consumer: str | None = None,
        **tuning: Any,
    ) -> None:
        self.dispatcher = dispatcher
        self.subscriptions = SubscriptionCache(client, dispatcher.database)
        self.consumer = CallEventConsumer(
            client, WEBHOOKS_GROUP, self.handle, consumer=consumer, **tuning
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def handle(self, event: CallEvent) -> int:
        """Queue and commit the deliveries for one call event; the number queued."""
        if self.dispatcher.on_event is not None:
            self.dispatcher.on_event(event)
        names = webhook_events(event)
        if not names:
            return 0
        subscribed = await self.subscriptions.events(event.tenant)
        names = [name for name in names if name.value in subscribed]
        if not names:
            return 0  # the usual case: nobody listens, no database work
        queued = 0
        async with self.dispatcher.database.session() as session:
            owner = None
            if event.type is CallEventType.VOICEMAIL_NEW:
                owner = await box_owner(session, event.tenant, event)
            payload = call_payload(event, owner)
            for name in names:
                rows = await self.dispatcher.enqueue(
                    session,
                    event.tenant,
                    name.value,
                    payload,
                    dedupe_key=call_dedupe_key(event, name),
                )
                queued += len(rows)
            await session.commit()
        if queued:
            logger.info(
                "call=%s tenant=%s %s: %d webhook deliveries queued",
                event.call_id,
                event.tenant,
                event.type.value,
                queued,
            )
        return queued


def webhook_dispatcher(context: AppContext) -> WebhookDispatcher:
    """The dispatcher of a running app, tuned by its settings (VPBX_WEBHOOK_*)."""
    settings = context.settings
    return WebhookDispatcher(
        context.database,
        outbound=context.outbound,
        timeout_s=settings.webhook_timeout_s,
        max_attempts=settings.webhook_max_attempts,
        retry_base_s=settings.webhook_retry_base_s,
        redis_client=context.redis,
        on_event=lambda event: count_event(context.metrics, event),
        on_attempt=lambda tenant, outcome: context.metrics.webhook_attempts.labels(
            tenant, outcome.value
        ).inc(),
        events_block_s=settings.call_events_block_s,
    )


def count_event(metrics: Metrics, event: CallEvent) -> None:
    """What the operator's alerts read from the call events."""
    if event.type is CallEventType.REFUSED:
        metrics.outbound_refused.labels(event.tenant, event.end_reason).inc()

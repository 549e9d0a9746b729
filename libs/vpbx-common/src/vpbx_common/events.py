"""Call events: the media nodes write them to one Redis stream; consumers read it in groups.

The stream
----------
One stream for every tenant, ``vpbx:call-events`` (``CALL_EVENTS_STREAM``). A media
node appends one entry per event (``CallEventPublisher.publish``: a single XADD)::

    XADD vpbx:call-events MAXLEN ~ 1000000 * tenant acme type call.answered event {...}

Fields of an entry:

- ``tenant``: the tenant id (the same as the event's; lets a reader filter without parsing);
- ``type``: the event type (``call.offered``, ``call.ringing``, ``call.answered``,
  ``call.ended``, ``recording.ready``, ``voicemail.new``, ``call.refused``,
  ``call.queued``, ``call.dequeued``);
- ``event``: the ``CallEvent`` as JSON, the source of truth. Its shape only grows: new
  fields get defaults, none is removed, and readers ignore fields they do not know.

The stream is trimmed approximately (``MAXLEN ~``) to ``VPBX_CALL_EVENTS_MAX_LEN`` entries,
1,000,000 by default (a few hundred MB of Redis memory; days of traffic for a busy
platform). A consumer group that falls further behind than that loses the oldest
entries.

The consumers
-------------
Every kind of consumer has its own consumer group (``webhooks`` and ``voicemails`` in
the control API, ``crm`` in the CRM; the CRM's live board tails the stream without a
group), so each kind sees every event; the
processes of one kind share their group, so each event is handled by one of them.
``CallEventConsumer`` is the reading loop they all use: it creates the group if missing
(from the start of the stream, so nothing published before the first consumer started is
lost), reads with a bounded BLOCK, acknowledges an entry only after its handler returned, retries
failed entries, reclaims entries a dead consumer left pending, and acknowledges and
skips entries that are not valid events. Delivery is at least once: a handler must
tolerate seeing an event twice (a consumer that dies between its handler and the
XACK, or a handler slower than the claim idle time).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from vpbx_common.crm import CrmContact, CrmContactError

logger = logging.getLogger(__name__)

CALL_EVENTS_STREAM = "vpbx:call-events"
# Approximate bound of the stream (XADD MAXLEN ~); VPBX_CALL_EVENTS_MAX_LEN.
DEFAULT_STREAM_MAX_LEN = 1_000_000

# Consumer groups, one per kind of consumer.
WEBHOOKS_GROUP = "webhooks"
# The control API's voicemail inbox: one row per voicemail.new.
VOICEMAILS_GROUP = "voicemails"
CRM_GROUP = "crm"
BOARD_GROUP = "board"


class CallEventType(StrEnum):
    # Phones are about to ring for the call: ``offered`` names the extensions of this batch
    # (the first, and each later one: sequential turns, queue offers, a CRM escalation).
    # Published before their INVITEs leave the node, so a screen pop comes before the ring.
    OFFERED = "call.offered"
    # The call's first ring (once per call, for webhooks).
    RINGING = "call.ringing"
    ANSWERED = "call.answered"
    ENDED = "call.ended"
    # The call's recording is encoded and stored under ``key`` (after call.ended).
    RECORDING_READY = "recording.ready"
    # A voice message was left in ``box`` (an extension; '' for the tenant's general box)
    # and stored under ``key``.
    VOICEMAIL_NEW = "voicemail.new"
    # An outbound call the tenant's policy refused before it reached a carrier;
    # ``end_reason`` names the rule (vpbx_media.node.outbound.OutboundRefusal values).
    REFUSED = "call.refused"
    # The caller waits in ``queue`` (a group) at ``position`` (1 = next, all cities
    # counted): on joining, and again each time an unanswered offer hands them back to
    # their place (nobody rings for them any more). Only queued calls publish these.
    QUEUED = "call.queued"
    # The caller stopped waiting in ``queue``; ``queue_left`` says why ("answered", "hung
    # up", "callback", "waited 60 s", "caller pressed 0", ...).
    DEQUEUED = "call.dequeued"


class CallEventError(ValueError):
    """A stream entry or a JSON document that is not a valid call event."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    type: CallEventType
    call_id: str
    tenant: str
    city: str
    node: str
    number: str
    caller: str
    callee: str
    at_ms: int
    end_reason: str = ""
    label: str = ""
    # recording.ready and voicemail.new: where the audio is stored (vpbx_common.storage),
    # how long it lasts and how big the stored file is.
    key: str = ""
    duration_ms: int = 0
    size_bytes: int = 0
    box: str = ""  # voicemail.new: the box's extension, '' for the general box
    box_user_id: str = ""  # voicemail.new: the box owner's user id, when the config has it
    # The CDR's Direction value (inbound, outbound, internal); '' from writers before it.
    direction: str = ""
    # The caller as the CRM knows them (``CrmContact.to_dict()``), on every event after the
    # node's lookup found them; None: not looked up, or unknown to the CRM.
    contact: dict[str, Any] | None = None
    # call.offered: the extensions about to ring in this batch.
    offered: tuple[str, ...] = ()
    # call.queued / call.dequeued: the group whose queue it is, the caller's place on
    # (re)joining, and why the wait ended.
    queue: str = ""
    position: int = 0
    queue_left: str = ""

    @property
    def crm_contact(self) -> CrmContact | None:
        """``contact`` as a ``CrmContact`` (validated when the event was read)."""
        return None if self.contact is None else CrmContact.from_dict(self.contact)

    def to_json(self) -> str:
        document = asdict(self)
        if not self.queue:
            # Only queue events carry these: every other event stays byte for byte what it
            # was before queues were on the stream (readers apply the defaults).
            for name in _QUEUE_FIELDS:
                del document[name]
        return json.dumps(document)

    @classmethod
    def from_json(cls, text: str | bytes) -> CallEvent:
        """The event in ``text``; fields it does not know are ignored (a newer writer).

        Raises CallEventError when ``text`` is not a call event.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CallEventError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CallEventError("not a JSON object")
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name not in data:
                if field.name in _OPTIONAL_FIELDS:
                    continue
                raise CallEventError(f"{field.name}: missing")
            value = data[field.name]
            if field.name == "contact":
                values["contact"] = _contact(value)
                continue
            if field.name == "offered":
                values["offered"] = _extensions(value)
                continue
            expected = int if field.name in _INT_FIELDS else str
            if not isinstance(value, expected) or isinstance(value, bool):
                raise CallEventError(f"{field.name}: not a {expected.__name__}")
            values[field.name] = value
        try:
            values["type"] = CallEventType(values["type"])
        except ValueError as exc:
            raise CallEventError(f"type: unknown event type {values['type']!r}") from exc
        if not values["tenant"] or not values["call_id"]:
            raise CallEventError("tenant and call_id must not be empty")
        return cls(**values)


_OPTIONAL_FIELDS = frozenset(
    {
        "end_reason",
        "label",
        "key",
        "duration_ms",
        "size_bytes",
        "box",
        "box_user_id",
        "direction",
        "contact",
        "offered",
        "queue",
        "position",
        "queue_left",
    }
)
_QUEUE_FIELDS = ("queue", "position", "queue_left")
_INT_FIELDS = frozenset({"at_ms", "duration_ms", "size_bytes", "position"})


def _contact(value: object) -> dict[str, Any] | None:
    """An event's contact: null, or a valid contact summary (kept as the CRM's dict)."""
    if value is None:
        return None
    try:
        return CrmContact.from_dict(value).to_dict()
    except CrmContactError as exc:
        raise CallEventError(str(exc)) from exc


def _extensions(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CallEventError("offered: not a list of strings")
    return tuple(value)


def stream_fields(event: CallEvent) -> dict[str, str]:
    """The fields of the stream entry carrying ``event``."""
    return {"tenant": event.tenant, "type": event.type.value, "event": event.to_json()}


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def event_from_fields(entry: Mapping[Any, Any]) -> CallEvent:
    """The event in a stream entry's fields; CallEventError when it holds none."""
    values = {_text(key): _text(value) for key, value in entry.items()}
    document = values.get("event")
    if document is None:
        raise CallEventError("entry has no 'event' field (deleted or foreign entry)")
    event = CallEvent.from_json(document)
    if values.get("tenant") != event.tenant:
        raise CallEventError(
            f"entry tenant {values.get('tenant')!r} differs from event tenant {event.tenant!r}"
        )
    return event


class CallEventPublisher:
    """Appends call events to the stream; one XADD per event, trimmed approximately."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = CALL_EVENTS_STREAM,
        max_len: int = DEFAULT_STREAM_MAX_LEN,
    ) -> None:
        if max_len < 1:
            raise ValueError("max_len must be at least 1")
        self.redis = client
        self.stream = stream
        self.max_len = max_len

    async def publish(self, event: CallEvent) -> str:
        """Append ``event``; the entry id. Raises RedisError when Redis is unavailable."""
        entry: dict[FieldT, EncodableT] = dict(stream_fields(event).items())
        entry_id = await self.redis.xadd(
            self.stream,
            entry,
            maxlen=self.max_len,
            approximate=True,
        )
        return _text(entry_id) or ""


EventHandler = Callable[[CallEvent], Awaitable[object]]
BatchHandler = Callable[[Sequence[CallEvent]], Awaitable[object]]


def default_consumer_name() -> str:
    """This process's name inside a consumer group: host (the pod's name) and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ConsumerState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"
    STOPPING = "stopping"


class CallEventConsumer:
    """Reads the call-event stream as one consumer of a consumer group.

    ``handler`` is awaited once per event; the entry is acknowledged (XACK) only when
    it returns. When it raises, the entry stays pending and is handed to the handler
    again after ``retry_base_s`` (doubling per failed round, at most ``max_retry_s``);
    entries behind it are not held up. Entries pending for longer than
    ``claim_idle_s`` (their consumer died between reading and acknowledging) are taken
    over with XAUTOCLAIM every ``claim_interval_s``; ``claim_idle_s`` must be longer
    than a handler ever runs. On start, the consumer first handles what is pending
    under its own name (a restarted container keeps host name and pid).
    Entries that are not call events are acknowledged, logged and skipped.

    ``batch_handler``, when given, is awaited with all the events of a read at once (a
    store can then write them in one transaction: a backlog drains in fewer, bigger
    writes); the entries are acknowledged together when it returns. When it raises, the
    events are handed to ``handler`` one by one, so one bad event holds up only itself.
    ``linger_s``: after a read that brought fewer entries than ``batch_size``, wait that
    long before the next one, so a steady trickle is handled in batches too (the events
    reach the store that much later).

    ``start()`` runs the loop in a task; ``stop()`` lets the entry in hand finish and
    returns within about ``block_s`` (reads block at most that long), cancelling the
    loop only if a handler overruns ``stop_timeout_s``. Entries read but not handled
    yet when it stops stay pending and are reclaimed by another consumer.
    """

    def __init__(
        self,
        client: redis.Redis,
        group: str,
        handler: EventHandler,
        *,
        batch_handler: BatchHandler | None = None,
        consumer: str | None = None,
        stream: str = CALL_EVENTS_STREAM,
        batch_size: int = 16,
        block_s: float = 0.5,
        linger_s: float = 0.0,
        claim_idle_s: float = 30.0,
        claim_interval_s: float = 5.0,
        retry_base_s: float = 1.0,
        max_retry_s: float = 60.0,
        forget_idle_s: float = 3600.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.redis = client
        self.group = group
        self.handler = handler
        self.batch_handler = batch_handler
        self.consumer = consumer or default_consumer_name()
        self.stream = stream
        self.batch_size = batch_size
        self.block_s = block_s
        self.linger_s = linger_s
        self.claim_idle_s = claim_idle_s
        self.claim_interval_s = claim_interval_s
        self.retry_base_s = retry_base_s
        self.max_retry_s = max_retry_s
        self.forget_idle_s = forget_idle_s
        self.stop_timeout_s = stop_timeout_s
        self.state = ConsumerState.STOPPED
        # Counters (ints, for metrics and tests).
        self.handled = 0
        self.failed = 0
        self.skipped = 0
        self.claimed = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._group_ready = False
        self._retry_at: float | None = 0.0
        self._failed_rounds = 0
        self._claim_at = 0.0

    # --- lifecycle ---------------------------------------------------------------------

    def _set_state(self, state: ConsumerState) -> None:
        logger.info(
            "call events consumer %s/%s %s -> %s",
            self.group,
            self.consumer,
            self.state.value,
            state.value,
        )
        self.state = state

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping.clear()
        # Our own pending entries first: a former life's, or those left by a stop().
        self._retry_at = 0.0
        self._claim_at = 0.0
        self._set_state(ConsumerState.RUNNING)
        self._task = asyncio.create_task(self.run(), name=f"call-events-{self.group}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._set_state(ConsumerState.STOPPING)
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.stop_timeout_s)
        except TimeoutError:
            logger.warning(
                "call events consumer %s/%s: handler still busy after %.1f s; cancelled",
                self.group,
                self.consumer,
                self.stop_timeout_s,
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(ConsumerState.STOPPED)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """The loop (``start()`` runs it in a task); returns once ``stop()`` was called."""
        while not self.stopping:
            try:
                await self.poll_once()
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream or the group was deleted
                    self._group_ready = False
                    continue
                logger.warning("call events %s: Redis refused (%s); retrying", self.group, exc)
                await self._pause(1.0)
            except RedisError as exc:
                logger.warning(
                    "call events %s: Redis unavailable (%s); retrying in 1 s", self.group, exc
                )
                await self._pause(1.0)
            except Exception:
                logger.exception("call events %s: consumer round failed; retrying", self.group)
                await self._pause(1.0)
            # A read whose reply was lost left its entries pending with us: look again.
            if self._retry_at is None:
                self._retry_at = 0.0

    async def poll_once(self) -> int:
        """One round: due retries, due reclaims, then new entries (blocking up to
        ``block_s``). The number of entries handled successfully or skipped."""
        await self.ensure_group()
        done = 0
        now = time.monotonic()
        if self._retry_at is not None and now >= self._retry_at:
            done += await self._retry_own_pending()
        if now >= self._claim_at and not self.stopping:
            done += await self._claim_abandoned()
            self._claim_at = time.monotonic() + self.claim_interval_s
        if self.stopping:
            return done
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.batch_size,
            block=max(1, int(self.block_s * 1000)),
        )
        entries = _entries(reply)
        done += await self._process_all(entries)
        if self.linger_s > 0 and 0 < len(entries) < self.batch_size:
            await self._pause(self.linger_s)
        return done

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing, reading from the stream's start."""
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            logger.info("call events: consumer group %s created on %s", self.group, self.stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # --- entries -----------------------------------------------------------------------

    async def _process_all(self, entries: Sequence[tuple[Any, Any]]) -> int:
        entries = [(entry_id, entry) for entry_id, entry in entries if entry_id is not None]
        if self.batch_handler is not None and len(entries) > 1 and not self.stopping:
            batched = await self._process_batch(entries)
            if batched is not None:
                return batched
        done = 0
        for entry_id, entry in entries:
            if self.stopping:
                break  # the rest stay pending; another consumer reclaims them
            if await self._process(entry_id, entry):
                done += 1
        return done

    async def _process_batch(self, entries: Sequence[tuple[Any, Any]]) -> int | None:
        """The events of ``entries`` through the batch handler, acknowledged together; None
        when it failed (the caller then handles them one by one)."""
        assert self.batch_handler is not None
        events: list[CallEvent] = []
        for _, entry in entries:
            try:
                events.append(event_from_fields(entry or {}))
            except CallEventError:
                return None  # the one-by-one path skips and logs it
        try:
            await self.batch_handler(events)
        except Exception as exc:
            logger.warning(
                "call events %s: a batch of %d failed (%s: %s); handling them one by one",
                self.group,
                len(events),
                type(exc).__name__,
                exc,
            )
            return None
        await self.redis.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        self.handled += len(events)
        return len(events)

    async def _process(self, entry_id: bytes | str, entry: Mapping[Any, Any] | None) -> bool:
        """Handle one entry; True when it was acknowledged (handled or skipped)."""
        name = _text(entry_id)
        try:
            event = event_from_fields(entry or {})
        except CallEventError as exc:
            logger.warning(
                "call events %s: entry %s is not a call event (%s); skipped", self.group, name, exc
            )
            await self.redis.xack(self.stream, self.group, entry_id)
            self.skipped += 1
            return True
        try:
            await self.handler(event)
        except Exception:
            self.failed += 1
            if self._retry_at is None:
                self._retry_at = time.monotonic() + self._retry_delay()
            logger.exception(
                "call=%s tenant=%s call events %s: handling entry %s failed; retrying later",
                event.call_id,
                event.tenant,
                self.group,
                name,
            )
            return False
        await self.redis.xack(self.stream, self.group, entry_id)
        self.handled += 1
        return True

    def _retry_delay(self) -> float:
        return float(min(self.max_retry_s, self.retry_base_s * 2**self._failed_rounds))

    async def _retry_own_pending(self) -> int:
        """Hand this consumer's pending entries (failed ones, or a former life's) to the
        handler again, oldest first."""
        self._retry_at = None
        failed_before = self.failed
        done = 0
        cursor: bytes | str = "0"
        while not self.stopping:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: cursor}, count=self.batch_size
            )
            entries = _entries(reply)
            if not entries:
                break
            handled = await self._process_all(entries)
            done += handled
            if not handled:
                break  # a whole page failed (the handler's store is down?): back off
            cursor = entries[-1][0]
        if self.failed > failed_before:
            self._failed_rounds += 1
            self._retry_at = time.monotonic() + self._retry_delay()
        else:
            self._failed_rounds = 0
        return done

    async def _claim_abandoned(self) -> int:
        """Take over and handle entries idle for claim_idle_s (their consumer died)."""
        done = 0
        cursor: bytes | str = "0-0"
        while not self.stopping:
            reply = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle_s * 1000),
                start_id=cursor,
                count=self.batch_size,
            )
            cursor, entries = reply[0], [e for e in reply[1] if e[0] is not None]
            if entries:
                self.claimed += len(entries)
                logger.info(
                    "call events %s: %s took over %d entries left pending",
                    self.group,
                    self.consumer,
                    len(entries),
                )
                done += await self._process_all(entries)
            if _text(cursor) == "0-0":
                break
        if not self.stopping:
            await self._forget_gone_consumers()
        return done

    async def _forget_gone_consumers(self) -> None:
        """Drop consumers of the group idle for forget_idle_s with nothing pending
        (processes that ended; each process has its own name)."""
        consumers = await self.redis.xinfo_consumers(self.stream, self.group)
        for info in consumers:
            name = _text(info.get("name"))
            if (
                name is None
                or name == self.consumer
                or int(info.get("pending", 0)) > 0
                or int(info.get("idle", 0)) < self.forget_idle_s * 1000
            ):
                continue
            await self.redis.xgroup_delconsumer(self.stream, self.group, name)
            logger.info("call events %s: forgot idle consumer %s", self.group, name)


def _entries(reply: Any) -> list[tuple[Any, Any]]:
    """The entries of an XREADGROUP reply on one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [entry for entries in reply.values() for entry in (entries[0] if entries else [])]
    return list(reply[0][1])

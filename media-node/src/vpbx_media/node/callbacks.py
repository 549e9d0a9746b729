"""Queue callbacks: the caller hangs up, their place in the queue waits for them.

A queued caller presses the queue's callback key (the router's queue step); the
call's executor asks ``book``: the caller's entry in the queue dispatcher stays
where it is (same join time, so the same place, across cities) and from then on
its offers come here instead of to the call, which confirms and hangs up. The
record (``vpbx_common.callbacks``) is what the control API shows.

When the place's turn comes the dispatcher offers an agent as for any caller.
The node calls the agent first (``Originator.place``: their phones ring,
showing the caller's number); nothing is dialled out before a person is on the
line. The agent answering takes the place (``connected``: the queue moves on)
and the node calls the caller back from the number they dialled, through the
trunks, under the tenant's outbound policy and caps like any call out:

- the agent does not answer (or has no phone): the place goes back to the queue
  (``back``), another agent is offered;
- the caller answers: done (``connected``);
- the caller does not answer, is busy or the call fails: an attempt used; after
  ``retry_s`` the callback rejoins the queue at its original place, until
  ``max_attempts`` are used (``failed``);
- refused by the outbound policy: ``failed`` at once (retrying changes nothing).

Each attempt is a call of its own with a CDR (outbound, placed by the agent),
whose route starts with a ``queue-callback`` step naming the callback, the
attempt and the call that booked it; the record lists the attempts and the outcome.

A callback lives in the node process holding the place (the record's ``holder``,
whose heartbeat key it refreshes every ``check_s``). A process that stops lets go
(deletes its key), one that dies stops refreshing it; another process of the same
node (the restarted one, the next pod of a rolling update) then adopts the
records (``adopt``, every ``ADOPT_EVERY`` checks) and puts them back at their
places; one that is alive is never adopted from. Cancelled through the API, a
waiting callback leaves the queue at the next check. Unserved after
``MAX_WAIT_S`` it fails as expired. While the node drains, offers are handed back
(the calls it would start could not finish there); the tenant's lines or
calls-out cap being full hands the place back too (try again later), any other
refusal by the outbound policy fails the callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis

from vpbx_common.callbacks import (
    MAX_WAIT_S,
    CallbackAttempt,
    CallbackRecord,
    CallbackStatus,
    CallbackStore,
)
from vpbx_common.cdr import RouteStep
from vpbx_common.nodeconfig import NodeConfig

from .calls.originate import Placement, PlacementOutcome, PlacementResult
from .queues import QueueDispatcher
from .routing.queue import QUEUE_OFFER_RING_S

if TYPE_CHECKING:
    from .calls.facts import CallFacts
    from .calls.originate import Originator

logger = logging.getLogger(__name__)

CHECK_S = 1.0
ADOPT_EVERY = 5  # checks between two looks for callbacks nobody holds
_STOPPED = "queue stopped"  # QueueDispatcher.stop's reason: the node goes, the place stays


class QueueCallbacks:
    """One node's queue callbacks (see the module docstring)."""

    def __init__(
        self,
        store: CallbackStore,
        dispatcher: QueueDispatcher,
        originator: Originator,
        config: Callable[[], NodeConfig],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        clock: Callable[[], float] = time.time,
        *,
        check_s: float = CHECK_S,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._queues = dispatcher
        self._originator = originator
        self._config = config
        self._spawn = spawn
        self._draining = draining
        self.instance = uuid.uuid4().hex  # this process, as the records' holder
        self._clock = clock
        self.check_s = check_s
        self.tenant = dispatcher.tenant
        self.node_name = dispatcher.node_name
        self._held: dict[str, CallbackRecord] = {}  # id -> the record as this node knows it
        self._queued: set[str] = set()  # ids whose place is in the queue now
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"queue-callbacks-{self.tenant}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._store.let_go(self.tenant, self.instance)
        except redis.RedisError as exc:
            # The key lapses by itself (HOLDER_TTL_S): the successor adopts a little later.
            logger.warning("tenant=%s callbacks not let go: %s", self.tenant, exc)

    # --- the call's side --------------------------------------------------------

    async def book(
        self, facts: CallFacts, group: str, max_attempts: int, retry_s: int
    ) -> CallbackRecord | str:
        """Turn the waiting caller's place into a callback; the record, or why not."""
        call_id = facts.call_id
        try:
            joined = await self._queues.waiting_since(call_id, group)
            if joined is None:
                return "the caller no longer waits in the queue"
            position = await self._queues.position(call_id, group)
            now = self._clock()
            record = CallbackRecord(
                id=uuid.uuid4().hex,
                tenant=self.tenant,
                group=group,
                caller=facts.caller,
                dialled=facts.number,
                label=facts.label,
                call_id=call_id,
                node=self.node_name,
                booked_at=now,
                holder=self.instance,
                joined_at=joined,
                position=position,
                max_attempts=max(1, max_attempts),
                retry_s=max(0, retry_s),
                detail=f"booked at place {position}" if position else "booked",
            )
            await self._store.save(record)
        except redis.RedisError as exc:
            return f"Redis unavailable ({exc})"
        self._held[record.id] = record
        if await self._queues.hand_over(call_id, group, *self._handlers(record.id)) is None:
            await self._finish(record, CallbackStatus.FAILED, "the caller left before booking")
            return "the caller no longer waits in the queue"
        self._queued.add(record.id)
        self._log(logging.INFO, record, "booked for %s at place %s", record.caller, position)
        return record

    # --- offers and attempts --------------------------------------------------

    def _handlers(self, callback_id: str) -> tuple[Callable[[str], None], Callable[[str], None]]:
        def offered(extension: str) -> None:
            self._spawn(self._offered(callback_id, extension))

        def taken_out(reason: str) -> None:
            self._spawn(self._taken_out(callback_id, reason))

        return offered, taken_out

    async def _offered(self, callback_id: str, extension: str) -> None:
        record = self._held.get(callback_id)
        if record is None:
            return
        try:
            current = await self._store.get(self.tenant, callback_id)
        except redis.RedisError as exc:
            self._log(logging.WARNING, record, "not read back (%s): calling all the same", exc)
            current = record
        if current is not None and current.status is CallbackStatus.CANCELLED:
            await self._cancelled(record)
            return
        if callback_id not in self._held:
            return  # finished while its record was read
        if self._draining():
            await self._queues.back(record.call_id, record.group, extension)
            return
        record = dataclasses.replace(record, status=CallbackStatus.CALLING)
        if not await self._save(record):
            return  # cancelled meanwhile
        attempt = len(record.attempts) + 1
        group = self._config().group(record.group)
        ring_s = float(group.member_ring_s) if group and group.member_ring_s else None
        placement = Placement(
            extension=extension,
            to=record.caller,
            caller_id=record.dialled,
            first_step=RouteStep(
                after_s=0.0,
                subject="queue-callback",
                outcome="answered",
                member=extension,
                detail=(
                    f"callback {record.id} to {record.caller} for group:{record.group}, "
                    f"attempt {attempt} of {record.max_attempts}, booked by call {record.call_id}"
                ),
            ),
            ring_s=ring_s or QUEUE_OFFER_RING_S,
            label=record.label,
            on_user_answered=lambda call_id: self._agent_answered(callback_id, extension, call_id),
        )
        try:
            result = await self._originator.place(placement)
        except Exception as exc:
            # Whatever broke the attempt, the callback must not stay "calling" for good.
            self._log(logging.ERROR, record, "attempt failed: %s", exc, exc_info=True)
            result = PlacementResult(PlacementOutcome.UNANSWERED, detail=f"failed: {exc}")
        await self._after_attempt(callback_id, extension, result)

    def _agent_answered(self, callback_id: str, extension: str, call_id: str) -> None:
        """Noted at once (the attempt's end may come before any Redis round trip)."""
        record = self._held.get(callback_id)
        if record is None:
            return
        # The place is used: the queue moves on, the agent is busy with it.
        self._queued.discard(callback_id)
        # Its wait (since the caller first joined, hours ago perhaps) would make the
        # queue's announced waits long: not counted.
        self._spawn(self._queues.connected(record.call_id, record.group, extension, counts=False))
        attempt = CallbackAttempt(at=self._clock(), agent=extension, call_id=call_id)
        record = dataclasses.replace(record, attempts=(*record.attempts, attempt))
        self._held[callback_id] = record
        self._spawn(self._saved(record))

    async def _after_attempt(
        self, callback_id: str, extension: str, result: PlacementResult
    ) -> None:
        record = self._held.get(callback_id)
        if record is None:
            return
        outcome = result.outcome
        if outcome is PlacementOutcome.REFUSED and result.busy:
            # The tenant's lines or calls out are all taken just now: keep the place.
            await self._queues.back(record.call_id, record.group, extension)
            record = dataclasses.replace(
                record, status=CallbackStatus.WAITING, detail=f"not yet: {result.detail}"
            )
            self._held[callback_id] = record
            await self._save(record)
            return
        if outcome is PlacementOutcome.REFUSED:
            self._queued.discard(callback_id)
            await self._queues.leave(record.call_id, record.group)
            await self._finish(record, CallbackStatus.FAILED, f"refused: {result.detail}")
            return
        if outcome in (PlacementOutcome.UNREACHABLE, PlacementOutcome.UNANSWERED):
            # Nobody was called out: the place goes back, another agent gets it.
            await self._queues.back(record.call_id, record.group, extension)
            why = "has no registered phone" if outcome is PlacementOutcome.UNREACHABLE else ""
            record = dataclasses.replace(
                record,
                status=CallbackStatus.WAITING,
                detail=f"agent {extension} {why or 'did not answer'}",
            )
            self._held[callback_id] = record
            await self._save(record)
            return
        facts = result.facts
        answered = facts is not None and facts.answer_ms is not None
        said = "answered" if answered else str(facts.end_reason if facts else "failed")
        attempts = record.attempts
        if attempts and attempts[-1].call_id == result.call_id:
            attempts = (*attempts[:-1], dataclasses.replace(attempts[-1], outcome=said))
        record = dataclasses.replace(record, attempts=attempts)
        if answered:
            await self._finish(record, CallbackStatus.CONNECTED, f"talked with {extension}")
        elif len(attempts) >= record.max_attempts:
            await self._finish(
                record, CallbackStatus.FAILED, f"{len(attempts)} attempts, last: {said}"
            )
        else:
            retry_at = self._clock() + record.retry_s
            record = dataclasses.replace(
                record,
                status=CallbackStatus.WAITING,
                next_attempt_at=retry_at,
                detail=f"attempt {len(attempts)}: {said}; next after {record.retry_s} s",
            )
            self._held[callback_id] = record
            await self._save(record)
            self._log(logging.INFO, record, "attempt %d: %s", len(attempts), said)

    async def _taken_out(self, callback_id: str, reason: str) -> None:
        """The dispatcher dropped the place (the group went, the node stops)."""
        self._queued.discard(callback_id)
        record = self._held.get(callback_id)
        if record is None or reason == _STOPPED:
            return  # stays waiting in Redis: this node adopts it when it is back
        await self._finish(record, CallbackStatus.FAILED, f"queue closed: {reason}")

    # --- the loop: adoption, retries, cancellations, expiry ----------------------

    async def _run(self) -> None:
        passes = 0
        while True:
            try:
                await self._store.hold(self.tenant, self.instance)
                if passes % ADOPT_EVERY == 0:
                    await self.adopt()
                await self.check()
            except redis.RedisError as exc:
                logger.warning("tenant=%s callbacks not checked: %s", self.tenant, exc)
            passes += 1
            await asyncio.sleep(self.check_s)

    async def adopt(self) -> int:
        """Take over the callbacks of this node that no living process holds; how many."""
        adopted = 0
        for record in await self._store.all(self.tenant):
            mine = record.node == self.node_name and record.holder != self.instance
            if not mine or record.status.final or record.id in self._held:
                continue
            if await self._store.held(self.tenant, record.holder):
                continue  # its process lives (a rolling update's other pod): not ours
            record = dataclasses.replace(record, holder=self.instance)
            if record.status is CallbackStatus.CALLING:
                # The process went mid-attempt: that attempt is lost, the place is not.
                record = dataclasses.replace(
                    record, status=CallbackStatus.WAITING, detail="taken back after a restart"
                )
            self._held[record.id] = record
            await self._save(record)
            adopted += 1
            self._log(logging.INFO, record, "taken back")
        return adopted

    async def check(self) -> None:
        """One pass: cancelled ones leave, expired ones fail, due retries rejoin."""
        if not self._held:
            return
        now = self._clock()
        for callback_id, record in list(self._held.items()):
            if record.status is CallbackStatus.CALLING:
                continue
            current = await self._store.get(self.tenant, callback_id)
            if current is not None and current.status is CallbackStatus.CANCELLED:
                await self._cancelled(record)
            elif now >= record.booked_at + MAX_WAIT_S:
                if callback_id in self._queued:
                    self._queued.discard(callback_id)
                    await self._queues.leave(record.call_id, record.group)
                await self._finish(
                    record, CallbackStatus.FAILED, f"not served within {MAX_WAIT_S // 3600} h"
                )
            elif callback_id not in self._queued and (record.next_attempt_at or 0.0) <= now:
                await self._rejoin(record)

    async def _rejoin(self, record: CallbackRecord) -> None:
        await self._queues.join(
            record.call_id, record.group, *self._handlers(record.id), joined_at=record.joined_at
        )
        self._queued.add(record.id)
        record = dataclasses.replace(record, next_attempt_at=None)
        self._held[record.id] = record
        await self._save(record)

    async def _cancelled(self, record: CallbackRecord) -> None:
        if record.id in self._queued:
            self._queued.discard(record.id)
            await self._queues.leave(record.call_id, record.group)
        self._held.pop(record.id, None)
        self._log(logging.INFO, record, "cancelled")

    async def _finish(self, record: CallbackRecord, status: CallbackStatus, detail: str) -> None:
        self._held.pop(record.id, None)
        self._queued.discard(record.id)
        await self._save(record.finished(status, detail, self._clock()))
        self._log(logging.INFO, record, "%s: %s", status.value, detail)

    async def _save(self, record: CallbackRecord) -> bool:
        """Write the record; False: it had been cancelled through the API (now handled)."""
        if record.id in self._held and not record.status.final:
            self._held[record.id] = record
        try:
            if not await self._store.save(record):
                await self._cancelled(record)
                return False
        except redis.RedisError as exc:
            # What this node holds is the truth; the next save brings Redis up to date.
            self._log(logging.WARNING, record, "not saved: %s", exc)
        return True

    async def _saved(self, record: CallbackRecord) -> None:
        await self._save(record)

    def _log(
        self,
        level: int,
        record: CallbackRecord,
        message: str,
        *args: object,
        exc_info: bool = False,
    ) -> None:
        logger.log(
            level,
            "callback=%s tenant=%s " + message,
            record.id,
            record.tenant,
            *args,
            exc_info=exc_info,
        )

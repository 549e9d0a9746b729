"""Every call becomes a CRM event: the reader of the nodes' call events (group ``crm``).

For each call the timeline gets one row (``crm_calls``), tied to the contact whose phone
is the outside party's. An unknown caller becomes a contact (its source the label of the
number they dialled). A missed call becomes a task for the client's responsible manager,
else for the first person it was offered to; a voice message becomes a task for the
box's owner, else for the client's manager; each with a notification for the assignee.
A later answered call with the client closes their open missed-call tasks ("called back").

Delivery is at least once (vpbx_common.events): every step is idempotent (the call row is
keyed by call id, tasks are unique per call and kind, a contact is created only if no
contact has the phone). A failure raises, and the reader hands the event back later.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.cdr import EndReason
from vpbx_common.cdr.record import UNANSWERED_REASONS
from vpbx_common.e164 import is_e164
from vpbx_common.events import CallEvent, CallEventType
from vpbx_control.db.session import Database

from ..calls.models import CallRow
from ..contacts.models import ContactPhoneRow, ContactRow
from ..contacts.phones import region_of_phones
from ..identity import TenantDirectory
from ..tasks.models import TaskKind, TaskRow, TaskStatus
from ..tasks.service import notify

logger = logging.getLogger(__name__)

# A missed call: the caller gave up or nobody could take it. A voice message has a task of
# its own; a booked callback is the queue's to return; a refused call never rang anyone.
MISSED_REASONS = frozenset(UNANSWERED_REASONS) - {EndReason.VOICEMAIL, EndReason.CALLBACK}

# The events that may create a contact or change its tasks; the others only link the
# call to the contact once.
_CONTACT_EVENTS = frozenset(
    {CallEventType.ANSWERED, CallEventType.ENDED, CallEventType.VOICEMAIL_NEW}
)

# A queue's wait is the live board's (live/board.py); the timeline has nothing to write
# for it, so it costs the reader no transaction.
_LIVE_ONLY = frozenset({CallEventType.QUEUED, CallEventType.DEQUEUED})

INBOUND = "inbound"
OUTBOUND = "outbound"
INTERNAL = "internal"


def _moment(at_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC)


def direction_of(event: CallEvent) -> str:
    """The node's word for it; for events of older nodes: inbound when an outside number
    called a tenant number, outbound when a person called an outside number, else
    internal."""
    if event.direction in (INBOUND, OUTBOUND, INTERNAL):
        return event.direction
    if is_e164(event.caller) and is_e164(event.number):
        return INBOUND
    if is_e164(event.number) or is_e164(event.callee):
        return OUTBOUND
    return INTERNAL


def outside_party(event: CallEvent, direction: str) -> str:
    if direction == INBOUND:
        return event.caller
    if direction == OUTBOUND:
        return event.callee if is_e164(event.callee) else event.number
    return ""


def pretty_phone(phone: str) -> str:
    """+79161234567 -> +7 916 123-45-67: a new contact's name until someone names it."""
    if phone.startswith("+7") and len(phone) == 12:
        digits = phone[2:]
        return f"+7 {digits[:3]} {digits[3:6]}-{digits[6:8]}-{digits[8:]}"
    return phone


class DirectorySource(Protocol):
    """Who the tenant's people and numbers are (``IdentityClient``; a benchmark's fixed one)."""

    async def directory(self, tenant: str, *, fresh: bool = False) -> TenantDirectory: ...


class CrmEventHandler:
    def __init__(self, database: Database, identity: DirectorySource) -> None:
        self.database = database
        self.identity = identity

    async def handle(self, event: CallEvent) -> None:
        await self.handle_many([event])

    async def handle_many(self, events: Sequence[CallEvent]) -> None:
        """The events of one read in one transaction: a busy tenant's backlog drains in
        a few writes instead of one transaction per event."""
        by_call: dict[tuple[str, str], list[CallEvent]] = {}
        for event in events:
            if event.type in _LIVE_ONLY:
                continue
            if direction_of(event) != INTERNAL:  # calls between colleagues are nobody's client
                by_call.setdefault((event.tenant, event.call_id), []).append(event)
        if not by_call:
            return
        async with self.database.session() as session:
            # Locked: two CRM replicas handling two events of one call must not both start
            # from "ringing" (the later commit would undo the "ended"). Locked in one
            # order, so two replicas with overlapping reads cannot deadlock; then handled
            # in the stream's order (a missed call's task before the call back that
            # closes it), as one event at a time would have been.
            rows = {
                key: await session.get(CallRow, key, with_for_update=True)
                for key in sorted(by_call)
            }
            for key, events_of_call in by_call.items():
                await self._call(session, events_of_call, rows[key])
            await session.commit()

    async def _call(
        self, session: AsyncSession, events: Sequence[CallEvent], call: CallRow | None
    ) -> None:
        first = events[0]
        direction = direction_of(first)
        if call is None:
            call = CallRow(
                tenant_id=first.tenant,
                call_id=first.call_id,
                direction=direction,
                phone=outside_party(first, direction),
                started_at=_moment(first.at_ms),
                status="ringing",
            )
            session.add(call)
        looked_up = False
        for event in events:
            self._apply(call, event)
            needs_contact = event.type in _CONTACT_EVENTS
            if not needs_contact and (looked_up or call.contact_id is not None):
                continue
            looked_up = True
            directory = await self.identity.directory(event.tenant)
            contact = await self._contact(session, call, event, directory)
            if contact is not None and needs_contact:
                await self._tasks(session, call, event, contact, directory)

    @staticmethod
    def _apply(call: CallRow, event: CallEvent) -> None:
        call.number = event.number or call.number
        call.label = event.label or call.label
        call.caller = event.caller or call.caller
        match event.type:
            case CallEventType.OFFERED | CallEventType.RINGING:
                if call.status == "ringing":
                    call.callee = event.callee or call.callee
            case CallEventType.ANSWERED:
                if call.status != "ended":
                    call.status = "talking"
                call.answered_at = call.answered_at or _moment(event.at_ms)
                call.answered_by = event.callee or call.answered_by
            case CallEventType.ENDED | CallEventType.REFUSED:
                call.status = "ended"
                call.ended_at = _moment(event.at_ms)
                call.end_reason = event.end_reason
                if event.end_reason == EndReason.COMPLETED:
                    call.answered_by = call.answered_by or event.callee
                else:
                    call.callee = event.callee or call.callee
            case CallEventType.RECORDING_READY:
                call.recording_key = event.key
                call.recording_ms = event.duration_ms
            case CallEventType.VOICEMAIL_NEW:
                call.voicemail_key = event.key
                call.voicemail_ms = event.duration_ms

    async def _contact(
        self,
        session: AsyncSession,
        call: CallRow,
        event: CallEvent,
        directory: TenantDirectory,
    ) -> ContactRow | None:
        if call.contact_id is not None:
            return await session.get(ContactRow, call.contact_id)
        if not is_e164(call.phone):
            return None
        found = (
            await session.execute(
                select(ContactRow)
                .join(ContactPhoneRow, ContactPhoneRow.contact_id == ContactRow.id)
                .where(
                    ContactPhoneRow.tenant_id == event.tenant,
                    ContactPhoneRow.phone == call.phone,
                )
            )
        ).scalar_one_or_none()
        creates = event.type in (CallEventType.ENDED, CallEventType.VOICEMAIL_NEW)
        if found is None and call.direction == INBOUND and creates:
            found = await self._new_contact(session, call, directory)
            logger.info(
                "call=%s tenant=%s unknown caller became contact %s",
                call.call_id,
                call.tenant_id,
                found.id,
            )
        if found is not None:
            call.contact_id = found.id
        return found

    @staticmethod
    async def _new_contact(
        session: AsyncSession, call: CallRow, directory: TenantDirectory
    ) -> ContactRow:
        region, region_name = region_of_phones([call.phone])
        contact = ContactRow(
            id=uuid.uuid4(),
            tenant_id=call.tenant_id,
            name=pretty_phone(call.phone),
            emails=[],
            category="client",
            region=region,
            region_name=region_name,
            vip=False,
            source_label=call.label or directory.labels.get(call.number, ""),
            custom={},
            revision=1,
        )
        session.add(contact)
        # The tables have no relationship mapped: each row must exist before another
        # points at it.
        await session.flush()
        session.add(
            ContactPhoneRow(
                tenant_id=call.tenant_id, phone=call.phone, contact_id=contact.id, position=0
            )
        )
        await session.flush()
        return contact

    async def _tasks(
        self,
        session: AsyncSession,
        call: CallRow,
        event: CallEvent,
        contact: ContactRow,
        directory: TenantDirectory,
    ) -> None:
        if event.type is CallEventType.ANSWERED or (
            event.type is CallEventType.ENDED and event.end_reason == EndReason.COMPLETED
        ):
            await self._close_missed(session, call, contact)
        missed = (
            event.type is CallEventType.ENDED
            and call.direction == INBOUND
            and event.end_reason in MISSED_REASONS
        )
        if missed:
            # A manager no longer in the tenant sees no task: the people it rang do.
            owner = contact.owner_user_id
            if owner is not None and str(owner) not in directory.users:
                owner = None
            assignee = owner or self._first_offered(call, directory)
            await self._task(
                session,
                call,
                contact,
                TaskKind.MISSED_CALL,
                f"Missed call from {contact.name}: call back",
                assignee,
            )
        if event.type is CallEventType.VOICEMAIL_NEW:
            box_owner = directory.users.get(event.box_user_id) if event.box_user_id else None
            assignee = uuid.UUID(box_owner.id) if box_owner is not None else contact.owner_user_id
            await self._task(
                session,
                call,
                contact,
                TaskKind.VOICEMAIL,
                f"Voice message from {contact.name}: listen and call back",
                assignee,
            )

    @staticmethod
    def _first_offered(call: CallRow, directory: TenantDirectory) -> uuid.UUID | None:
        for extension in filter(None, call.callee.split(",")):
            user = directory.by_extension.get(extension)
            if user is not None:
                return uuid.UUID(user.id)
        return None

    @staticmethod
    async def _task(
        session: AsyncSession,
        call: CallRow,
        contact: ContactRow,
        kind: TaskKind,
        title: str,
        assignee: uuid.UUID | None,
    ) -> None:
        exists = await session.scalar(
            select(TaskRow.id).where(
                TaskRow.tenant_id == call.tenant_id,
                TaskRow.call_id == call.call_id,
                TaskRow.kind == kind,
            )
        )
        if exists is not None:
            return
        started = call.started_at
        task = TaskRow(
            id=uuid.uuid4(),
            tenant_id=call.tenant_id,
            kind=kind,
            title=title,
            status=TaskStatus.OPEN,
            contact_id=contact.id,
            call_id=call.call_id,
            assignee_user_id=assignee,
            # Call back within the hour: what callers of a company that answers expect.
            due_at=started + dt.timedelta(hours=1),
            result="",
            revision=1,
        )
        session.add(task)
        await session.flush()
        if assignee is not None:
            notify(session, call.tenant_id, assignee, title, task)

    @staticmethod
    async def _close_missed(session: AsyncSession, call: CallRow, contact: ContactRow) -> None:
        await session.execute(
            update(TaskRow)
            .where(
                TaskRow.tenant_id == call.tenant_id,
                TaskRow.contact_id == contact.id,
                TaskRow.kind == TaskKind.MISSED_CALL,
                TaskRow.status == TaskStatus.OPEN,
                # Only calls missed before this one: an answered call handled late (a
                # retried event) must not close a newer missed call's task.
                TaskRow.call_id.in_(
                    select(CallRow.call_id).where(
                        CallRow.tenant_id == call.tenant_id,
                        CallRow.contact_id == contact.id,
                        CallRow.started_at < call.started_at,
                    )
                ),
            )
            .values(
                status=TaskStatus.DONE,
                done_at=call.answered_at or call.ended_at or call.started_at,
                result=f"talked on call {call.call_id}",
                revision=TaskRow.revision + 1,
            )
        )

"""Tasks people do (and the ones calls create), and the notifications that announce them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.auth.principal import MANAGERS
from vpbx_control.db.base import utcnow
from vpbx_control.paging import PageParams

from ..contacts.models import ContactRow
from ..contacts.repository import Contacts
from ..errors import Conflict, FieldProblem, Forbidden, IdentityUnavailable, ReferenceNotFound
from ..identity import Caller, IdentityClient, IdentityUnavailableError
from ..repository import Scoped
from .models import NotificationRow, TaskKind, TaskRow, TaskStatus
from .schemas import Notification, Task, TaskCreate, TaskUpdate


class Tasks(Scoped[TaskRow]):
    model = TaskRow
    label = "task"


def task_view(row: TaskRow, contact_name: str | None = None) -> Task:
    task = Task.model_validate(row, from_attributes=True)
    task.contact_name = contact_name
    return task


def notification_view(row: NotificationRow) -> Notification:
    return Notification.model_validate(row, from_attributes=True)


def notify(
    session: AsyncSession, tenant: str, user_id: uuid.UUID, text: str, task: TaskRow
) -> None:
    """A notification for ``user_id`` about ``task`` (shown in their workspace)."""
    session.add(
        NotificationRow(
            id=uuid.uuid4(),
            tenant_id=tenant,
            user_id=user_id,
            kind=f"task.{task.kind.value}",
            text=text,
            task_id=task.id,
            contact_id=task.contact_id,
            created_at=utcnow(),
        )
    )


class TaskService:
    def __init__(self, session: AsyncSession, caller: Caller, identity: IdentityClient) -> None:
        self.session = session
        self.caller = caller
        self.identity = identity
        self.tasks = Tasks(session, caller.tenant)
        # False: writes are flushed as one step of a larger change that commits as a whole.
        self.autocommit = True

    def search(
        self,
        *,
        kind: TaskKind | None,
        status: TaskStatus | None,
        assignee_user_id: uuid.UUID | None,
        contact_id: uuid.UUID | None,
        call_id: str | None,
        due_before: dt.datetime | None,
    ) -> Select[tuple[TaskRow]]:
        query = self.tasks.scoped()
        if kind is not None:
            query = query.where(TaskRow.kind == kind)
        if status is not None:
            query = query.where(TaskRow.status == status)
        if assignee_user_id is not None:
            query = query.where(TaskRow.assignee_user_id == assignee_user_id)
        if contact_id is not None:
            query = query.where(TaskRow.contact_id == contact_id)
        if call_id is not None:
            query = query.where(TaskRow.call_id == call_id)
        if due_before is not None:
            query = query.where(TaskRow.due_at < due_before)
        # Soonest due first; tasks without a due time after them, newest first.
        return query.order_by(
            TaskRow.due_at.is_(None), TaskRow.due_at, TaskRow.created_at.desc(), TaskRow.id
        )

    async def page(
        self, query: Select[tuple[TaskRow]], params: PageParams
    ) -> tuple[list[Task], int]:
        """A page of tasks with their contacts' names, joined (not one read per task)."""
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        named = query.outerjoin(ContactRow, ContactRow.id == TaskRow.contact_id).add_columns(
            ContactRow.name
        )
        found = await self.session.execute(named.limit(params.limit).offset(params.offset))
        return [task_view(row, name) for row, name in found], int(total or 0)

    async def view(self, row: TaskRow) -> Task:
        name = None
        if row.contact_id is not None:
            name = await self.session.scalar(
                select(ContactRow.name).where(
                    ContactRow.tenant_id == self.caller.tenant, ContactRow.id == row.contact_id
                )
            )
        return task_view(row, name)

    async def create(self, body: TaskCreate) -> TaskRow:
        if body.contact_id is not None:
            await Contacts(self.session, self.caller.tenant).referenced(
                body.contact_id, "body.contact_id"
            )
        assignee = body.assignee_user_id or self.caller.user_id
        if assignee is not None and assignee != self.caller.user_id:
            await self._check_assignee(assignee, "body.assignee_user_id")
        row = self.tasks.add(
            TaskRow(
                id=uuid.uuid4(),
                kind=body.kind,
                title=body.title,
                status=TaskStatus.OPEN,
                contact_id=body.contact_id,
                call_id=body.call_id,
                assignee_user_id=assignee,
                due_at=body.due_at,
                result="",
                created_by=self.caller.user_id,
                revision=1,
            )
        )
        if assignee is not None and assignee != self.caller.user_id:
            notify(self.session, self.caller.tenant, assignee, f"New task: {body.title}", row)
        try:
            await self._save()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(
                f"the call already has a {body.kind.value} task",
                details=[FieldProblem(field="body.call_id", message="already has one")],
            ) from exc
        return row

    async def update(self, row: TaskRow, body: TaskUpdate) -> TaskRow:
        self._may_change(row)
        given = body.model_fields_set
        if "assignee_user_id" in given and body.assignee_user_id != row.assignee_user_id:
            if self.caller.role not in MANAGERS and body.assignee_user_id != self.caller.user_id:
                raise Forbidden("only supervisors and tenant admins give tasks to others")
            if body.assignee_user_id is not None:
                await self._check_assignee(body.assignee_user_id, "body.assignee_user_id")
                notify(
                    self.session,
                    self.caller.tenant,
                    body.assignee_user_id,
                    f"Task for you: {row.title}",
                    row,
                )
            row.assignee_user_id = body.assignee_user_id
        if body.title is not None:
            row.title = body.title
        if "due_at" in given:
            row.due_at = body.due_at
        if body.result is not None:
            row.result = body.result
        if body.status is not None and body.status is not row.status:
            row.status = body.status
            row.done_at = utcnow() if body.status is TaskStatus.DONE else None
        self.tasks.touch(row)
        await self._save()
        return row

    async def _save(self) -> None:
        if self.autocommit:
            await self.session.commit()
        else:
            await self.session.flush()

    async def delete(self, row: TaskRow) -> None:
        if self.caller.role not in MANAGERS and row.created_by != self.caller.user_id:
            raise Forbidden("only the task's author, supervisors and tenant admins delete it")
        await self.session.delete(row)
        await self.session.commit()

    def _may_change(self, row: TaskRow) -> None:
        if self.caller.role in MANAGERS:
            return
        me = self.caller.user_id
        if me is None or me not in (row.assignee_user_id, row.created_by):
            raise Forbidden("an agent changes only the tasks given to them or made by them")

    async def _check_assignee(self, user_id: uuid.UUID, field: str) -> None:
        try:
            user = await self.identity.user(self.caller.tenant, str(user_id))
        except IdentityUnavailableError as exc:
            raise IdentityUnavailable() from exc
        if user is None:
            raise ReferenceNotFound(field, "user")

    # --- notifications ---------------------------------------------------------------

    def notifications(self, unread_only: bool) -> Select[Any]:
        query = select(NotificationRow).where(
            NotificationRow.tenant_id == self.caller.tenant,
            NotificationRow.user_id == self.caller.user_id,
        )
        if unread_only:
            query = query.where(NotificationRow.read_at.is_(None))
        return query.order_by(NotificationRow.created_at.desc(), NotificationRow.id)

    async def notification(self, notification_id: uuid.UUID) -> NotificationRow | None:
        found = await self.session.execute(
            self.notifications(False).where(NotificationRow.id == notification_id)
        )
        row: NotificationRow | None = found.scalar_one_or_none()
        return row

"""/v1/tasks and /v1/notifications: what each person has to do, and what they were told."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from vpbx_control.db.base import utcnow
from vpbx_control.errors import error_responses
from vpbx_control.paging import IfMatchHeader, Page, check_if_match, fetch_page

from ..deps import Context, Paging, Session, TenantMember
from ..errors import NotFound
from .models import TaskKind, TaskRow, TaskStatus
from .schemas import Notification, Task, TaskCreate, TaskUpdate
from .service import TaskService, notification_view

router = APIRouter(tags=["tasks"])


def task_service(session: Session, caller: TenantMember, context: Context) -> TaskService:
    return TaskService(session, caller, context.identity)


Service = Annotated[TaskService, Depends(task_service)]


async def _task(service: TaskService, task_id: uuid.UUID) -> TaskRow:
    row = await service.tasks.find(task_id)
    if row is None:
        raise NotFound("task not found")
    return row


@router.post(
    "/v1/tasks",
    status_code=201,
    response_model=Task,
    summary="Create a task",
    responses=error_responses(403, 404),
)
async def create_task(body: TaskCreate, service: Service, response: Response) -> Task:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/tasks/{row.id}"
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.get("/v1/tasks", response_model=Page[Task], summary="Find tasks")
async def list_tasks(
    service: Service,
    paging: Paging,
    kind: TaskKind | None = None,
    status: TaskStatus | None = None,
    assignee_user_id: uuid.UUID | None = None,
    mine: Annotated[bool, Query(description="only the caller's own tasks")] = False,
    contact_id: uuid.UUID | None = None,
    call_id: Annotated[str | None, Query(max_length=1024)] = None,
    overdue: Annotated[bool, Query(description="only open tasks past their due time")] = False,
) -> Page[Task]:
    if mine:
        assignee_user_id = service.caller.user_id or uuid.UUID(int=0)
    due_before: dt.datetime | None = None
    if overdue:
        status, due_before = TaskStatus.OPEN, utcnow()
    query = service.search(
        kind=kind,
        status=status,
        assignee_user_id=assignee_user_id,
        contact_id=contact_id,
        call_id=call_id,
        due_before=due_before,
    )
    items, total = await service.page(query, paging)
    return Page[Task](
        items=items,
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/v1/tasks/{task_id}",
    response_model=Task,
    summary="Read a task",
    responses=error_responses(404),
)
async def read_task(task_id: uuid.UUID, service: Service, response: Response) -> Task:
    row = await _task(service, task_id)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.patch(
    "/v1/tasks/{task_id}",
    response_model=Task,
    summary="Change a task (close it with a result, move its due time, give it to someone)",
    responses=error_responses(403, 404, 412),
)
async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    service: Service,
    response: Response,
    if_match: IfMatchHeader = None,
) -> Task:
    row = await _task(service, task_id)
    check_if_match(if_match, row.etag())
    row = await service.update(row, body)
    response.headers["ETag"] = row.etag()
    return await service.view(row)


@router.delete(
    "/v1/tasks/{task_id}",
    status_code=204,
    summary="Delete a task",
    responses=error_responses(403, 404, 412),
)
async def delete_task(
    task_id: uuid.UUID, service: Service, if_match: IfMatchHeader = None
) -> Response:
    row = await _task(service, task_id)
    check_if_match(if_match, row.etag())
    await service.delete(row)
    return Response(status_code=204)


@router.get(
    "/v1/notifications",
    response_model=Page[Notification],
    summary="The caller's notifications, newest first",
)
async def list_notifications(
    service: Service, paging: Paging, unread: bool = False
) -> Page[Notification]:
    rows, total = await fetch_page(service.session, service.notifications(unread), paging)
    return Page[Notification](
        items=[notification_view(row) for row in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/v1/notifications/{notification_id}/read",
    response_model=Notification,
    summary="Mark a notification read",
    responses=error_responses(404),
)
async def read_notification(notification_id: uuid.UUID, service: Service) -> Notification:
    row = await service.notification(notification_id)
    if row is None:
        raise NotFound("notification not found")
    if row.read_at is None:
        row.read_at = utcnow()
        await service.session.commit()
    return notification_view(row)

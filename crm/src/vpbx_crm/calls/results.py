"""The after-call form's result: stored once on the call's timeline entry, with its actions
(move a deal of the contact, close a task, create a follow-up) in the same transaction.

A second result for a call is refused (409 ``call-result-exists``): the result is what
the agent did on the call, and the actions it took cannot be taken twice; a correction is
a note on the contact.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.db.base import utcnow

from ..deals.repository import Deals
from ..deals.schemas import DealUpdate
from ..deals.service import DealService
from ..errors import ApiError, Conflict, InvalidInput
from ..identity import Caller, IdentityClient
from ..scripts.service import CallScripts
from ..tasks.models import TaskKind, TaskStatus
from ..tasks.schemas import TaskCreate, TaskUpdate
from ..tasks.service import TaskService
from .models import CallRow
from .schemas import CallResult, CallResultCreate, DealMove, ScriptMark


class CallResultExists(Conflict):
    error_id = "call-result-exists"

    def __init__(self) -> None:
        super().__init__("the call already has its result; add a note to the contact instead")


def result_view(row: CallRow) -> CallResult | None:
    if row.result is None or row.result_at is None:
        return None
    stored: dict[str, Any] = row.result
    return CallResult.model_validate({**stored, "user_id": row.result_user_id, "at": row.result_at})


class CallResultService:
    def __init__(
        self,
        session: AsyncSession,
        caller: Caller,
        identity: IdentityClient,
        *,
        deal_outbox: bool = False,
    ) -> None:
        self.session = session
        self.caller = caller
        self.identity = identity
        self.deal_outbox = deal_outbox  # a deal it moves goes to the analytics outbox too

    async def store(self, call: CallRow, body: CallResultCreate) -> CallRow:
        """Everything or nothing: the services below flush, and only this commits."""
        if call.result is not None:
            raise CallResultExists()
        script_id, script_name, marks = await self._marks(body)
        deal_id = stage_id = closed_task_id = follow_up_id = None
        if body.move_deal is not None:
            deal_id, stage_id = await self._move_deal(call, body.move_deal)
        if body.close_task_id is not None:
            closed_task_id = await self._close_task(call, body.close_task_id, body.outcome)
        if body.follow_up is not None:
            tasks = self._tasks()
            created = await tasks.create(
                TaskCreate(
                    kind=TaskKind.FOLLOW_UP,
                    title=body.follow_up.title,
                    contact_id=call.contact_id,
                    call_id=call.call_id,
                    due_at=body.follow_up.due_at,
                )
            )
            follow_up_id = created.id
        result = CallResult(
            script_id=script_id,
            script_name=script_name,
            stages=marks,
            outcome=body.outcome,
            deal_id=deal_id,
            stage_id=stage_id,
            closed_task_id=closed_task_id,
            follow_up_task_id=follow_up_id,
            user_id=self.caller.user_id,
            at=utcnow(),
        )
        call.result = result.model_dump(mode="json", exclude={"user_id", "at"})
        call.result_user_id = result.user_id
        call.result_at = result.at
        await self.session.commit()
        return call

    async def _marks(
        self, body: CallResultCreate
    ) -> tuple[uuid.UUID | None, str, list[ScriptMark]]:
        if body.script_id is None:
            if body.checked:
                raise InvalidInput.at("body.checked", "checked stages need the script_id")
            return None, "", []
        scripts = CallScripts(self.session, self.caller.tenant)
        script = await scripts.referenced(body.script_id, "body.script_id")
        stages: list[str] = list(script.stages)
        for index, stage in enumerate(body.checked):
            if stage >= len(stages):
                raise InvalidInput.at(
                    f"body.checked[{index}]", f"the script has {len(stages)} stage(s)"
                )
        checked = set(body.checked)
        marks = [ScriptMark(text=text, checked=i in checked) for i, text in enumerate(stages)]
        return script.id, script.name, marks

    async def _move_deal(self, call: CallRow, move: DealMove) -> tuple[uuid.UUID, uuid.UUID]:
        deal = await Deals(self.session, self.caller.tenant).referenced(
            move.deal_id, "body.move_deal.deal_id"
        )
        if call.contact_id is None or deal.contact_id != call.contact_id:
            raise InvalidInput.at("body.move_deal.deal_id", "not a deal of the call's contact")
        deals = DealService(self.session, self.caller, self.identity, outbox=self.deal_outbox)
        deals.autocommit = False
        changes: dict[str, Any] = {"stage_id": move.stage_id}
        if move.loss_reason is not None:
            changes["loss_reason"] = move.loss_reason
        try:
            await deals.update(deal, DealUpdate.model_validate(changes))
        except ApiError as exc:
            _under(exc, "body.move_deal")
            raise
        return deal.id, move.stage_id

    async def _close_task(self, call: CallRow, task_id: uuid.UUID, outcome: str) -> uuid.UUID:
        tasks = self._tasks()
        task = await tasks.tasks.referenced(task_id, "body.close_task_id")
        related = task.call_id == call.call_id or (
            call.contact_id is not None and task.contact_id == call.contact_id
        )
        if not related:
            raise InvalidInput.at("body.close_task_id", "not a task of the call or its contact")
        if task.status is not TaskStatus.OPEN:
            raise InvalidInput.at("body.close_task_id", f"the task is {task.status.value}")
        await tasks.update(task, TaskUpdate(status=TaskStatus.DONE, result=outcome[:2000]))
        return task.id

    def _tasks(self) -> TaskService:
        tasks = TaskService(self.session, self.caller, self.identity)
        tasks.autocommit = False
        return tasks


def _under(error: ApiError, prefix: str) -> None:
    """The deal service names its own body's fields ("body.stage_id"): here they are the
    form's ("body.move_deal.stage_id")."""
    error.details = [
        detail.model_copy(update={"field": detail.field.replace("body.", f"{prefix}.", 1)})
        for detail in error.details
    ]
    error.message = error.message.replace("body.", f"{prefix}.", 1)

"""Call scripts: created and changed by supervisors and tenant admins, read by everyone.

A number or a campaign label belongs to one script of the tenant (409 naming the field
otherwise), so a call has at most one script: the one naming the dialled number, else the
one naming the number's campaign label.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.errors import FieldProblem

from ..errors import Conflict
from ..identity import Caller
from ..repository import Scoped
from .models import CallScriptRow
from .schemas import CallScript, CallScriptCreate, CallScriptUpdate

# Far more than a contact centre keeps; the matching reads them all.
MAX_SCRIPTS = 500


class CallScripts(Scoped[CallScriptRow]):
    model = CallScriptRow
    label = "call script"


class ScriptTaken(Conflict):
    error_id = "script-target-taken"

    def __init__(self, field: str, value: str, other: str) -> None:
        super().__init__(
            f"{value} already has the call script {other!r}",
            details=[FieldProblem(field=field, message=f"already has the script {other!r}")],
        )


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def script_view(row: CallScriptRow) -> CallScript:
    return CallScript(
        id=row.id,
        name=row.name,
        numbers=list(row.numbers),
        labels=list(row.labels),
        stages=list(row.stages),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def script_for(scripts: Sequence[CallScriptRow], number: str, label: str) -> CallScriptRow | None:
    """The script of a call to ``number`` (labelled ``label``): by number, else by label."""
    for row in scripts:
        if number and number in row.numbers:
            return row
    for row in scripts:
        if label and label in row.labels:
            return row
    return None


class CallScriptService:
    def __init__(self, session: AsyncSession, caller: Caller) -> None:
        self.session = session
        self.caller = caller
        self.scripts = CallScripts(session, caller.tenant)

    async def all(self) -> Sequence[CallScriptRow]:
        return await self.scripts.all(
            self.scripts.scoped().order_by(CallScriptRow.name, CallScriptRow.id)
        )

    async def for_call(self, number: str, label: str) -> CallScriptRow | None:
        return script_for(await self.all(), number, label)

    async def create(self, body: CallScriptCreate) -> CallScriptRow:
        numbers, labels = _unique(body.numbers), _unique(body.labels)
        await self._check_free(numbers, labels, None)
        row = self.scripts.add(
            CallScriptRow(
                id=uuid.uuid4(),
                name=body.name,
                numbers=numbers,
                labels=labels,
                stages=list(body.stages),
                revision=1,
            )
        )
        await self.session.commit()
        return row

    async def update(self, row: CallScriptRow, body: CallScriptUpdate) -> CallScriptRow:
        numbers = _unique(body.numbers) if body.numbers is not None else list(row.numbers)
        labels = _unique(body.labels) if body.labels is not None else list(row.labels)
        await self._check_free(numbers, labels, row.id)
        if body.name is not None:
            row.name = body.name
        row.numbers, row.labels = numbers, labels
        if body.stages is not None:
            row.stages = list(body.stages)
        self.scripts.touch(row)
        await self.session.commit()
        return row

    async def delete(self, row: CallScriptRow) -> None:
        await self.session.delete(row)
        await self.session.commit()

    async def _check_free(
        self, numbers: list[str], labels: list[str], own_id: uuid.UUID | None
    ) -> None:
        others = [row for row in await self.all() if row.id != own_id]
        if own_id is None and len(others) >= MAX_SCRIPTS:
            raise Conflict(f"a tenant has at most {MAX_SCRIPTS} call scripts")
        for index, number in enumerate(numbers):
            for other in others:
                if number in other.numbers:
                    raise ScriptTaken(f"body.numbers[{index}]", number, other.name)
        for index, label in enumerate(labels):
            for other in others:
                if label in other.labels:
                    raise ScriptTaken(f"body.labels[{index}]", label, other.name)

from __future__ import annotations

from ..errors import Conflict, FieldProblem


class ScheduleNameTaken(Conflict):
    error_id = "schedule-name-taken"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a schedule named {name!r} already exists",
            details=[FieldProblem(field="body.name", message="already used")],
        )
